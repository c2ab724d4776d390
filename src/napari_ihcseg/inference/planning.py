"""Tile plans fitted to the image: the tile shape and count that compute the fewest pixels.

:func:`plan_tiles` chooses, per image, one tile shape within a memory budget
(``tile * tile`` pixels, sides multiples of the model's size multiple) and,
along each axis (:func:`fit_axis`), the number of evenly spread tiles that
covers the axis with at least ``overlap`` between neighbours while computing
the fewest pixels. Pure: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from .tiling import Box, round_up

#: H and W of a model's input must be multiples of this: five 2× poolings, the
#: depth of every registered model. A model's own ``size_multiple`` overrides it.
SIZE_MULTIPLE = 32


class AxisPlan(NamedTuple):
    """How one axis is tiled: tile length, tile starts, and the length covered.

    ``padded`` is the axis length the tiles cover: the axis itself, or, when
    one tile is longer than the axis, that tile (the image is padded to it).
    ``overlap`` is the smallest overlap of two neighbouring tiles (0 for one
    tile).
    """

    tile: int
    starts: tuple[int, ...]
    padded: int
    overlap: int

    @property
    def computed(self) -> int:
        """Pixels the network computes along the axis: tiles times tile length."""
        return len(self.starts) * self.tile


def fit_axis(size: int, max_tile: int, min_overlap: int, multiple: int = SIZE_MULTIPLE) -> AxisPlan:
    """The tiles that cover an axis of ``size`` pixels with the fewest pixels computed.

    Every tile has the same length, a multiple of ``multiple`` and at most
    ``max_tile``; neighbours overlap by at least ``min_overlap``. Among the
    tile counts that fit, the one that computes the fewest pixels is chosen
    (the fewer tiles on a tie), and its tiles are spread evenly, so the
    overlaps differ by at most one pixel. An axis that one tile covers is
    padded to the next multiple instead of being tiled.

    Parameters
    ----------
    size : int
        Axis length in pixels.
    max_tile : int
        Longest tile, a multiple of ``multiple``: the memory budget of a tile.
    min_overlap : int
        Least overlap of neighbouring tiles, ``0 <= min_overlap < max_tile``.
    multiple : int
        The size multiple the network needs.

    Returns
    -------
    AxisPlan

    Examples
    --------
    A 640-pixel axis is one tile; a 1100-pixel one two tiles of 608 (1216
    pixels computed), not three of 512 with the last one shifted back; with
    tiles of at most 512, three of 416, evenly spread:

    >>> fit_axis(640, 1024, 64)
    AxisPlan(tile=640, starts=(0,), padded=640, overlap=0)
    >>> fit_axis(1100, 1024, 64)
    AxisPlan(tile=608, starts=(0, 492), padded=1100, overlap=116)
    >>> fit_axis(1100, 512, 64).starts
    (0, 342, 684)
    """
    size, max_tile, min_overlap, multiple = int(size), int(max_tile), int(min_overlap), int(multiple)
    if size < 1:
        raise ValueError(f"cannot tile an axis of length {size}")
    if multiple < 1 or max_tile < multiple or max_tile % multiple:
        raise ValueError(f"the largest tile ({max_tile}) must be a positive multiple of {multiple}")
    if not 0 <= min_overlap < max_tile:
        raise ValueError(f"overlap must be in [0, tile) = [0, {max_tile}), got {min_overlap}")
    single = round_up(size, multiple)
    if single <= max_tile:
        return AxisPlan(single, (0,), single, 0)
    best: AxisPlan | None = None
    n = math.ceil((size - min_overlap) / (max_tile - min_overlap))
    # n tiles compute at least max(size + (n - 1) * min_overlap, n * multiple) pixels, which grows
    # with n; the first n (tiles of max_tile at most) always fits.
    while best is None or max(size + (n - 1) * min_overlap, n * multiple) < best.computed:
        tile = round_up(math.ceil((size + (n - 1) * min_overlap) / n), multiple)
        if tile <= min(max_tile, size):
            starts = tuple(round(i * (size - tile) / (n - 1)) for i in range(n))
            overlap = min(a + tile - b for a, b in zip(starts, starts[1:]))
            plan = AxisPlan(tile, starts, size, overlap)
            if best is None or plan.computed < best.computed:
                best = plan
        n += 1
    return best


#: The largest tile side by default: its square, one megapixel, bounds the
#: working memory of a forward pass (see ``docs/inference.md``), and with the
#: default 64-pixel overlap it keeps the pixels computed within 1.2 times the
#: image at every size.
DEFAULT_TILE = 1024
#: The least overlap of neighbouring tiles by default.
DEFAULT_OVERLAP = 64


#: The longest side of a whole-slide block's region (core and halos) by
#: default, the memory budget of a block (see ``docs/inference.md``).
DEFAULT_BLOCK_SIDE = 8192


def fit_block(halo: int, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
              max_side: int = DEFAULT_BLOCK_SIDE, multiple: int = SIZE_MULTIPLE) -> int:
    """The core size of whole-slide blocks whose regions are whole tiles.

    A block's region is its core plus a ``halo`` on each side. The region
    is computed by :func:`plan_tiles`; when its side is ``n`` tiles of
    ``tile`` overlapping by ``overlap`` exactly, ``n * tile - (n - 1) *
    overlap``, no tile is shortened or shifted back. Of those sides, the
    longest within ``max_side`` is chosen (at least one tile), so the halos
    and overlaps cost the fewest pixels the memory budget allows.

    Parameters
    ----------
    halo : int
        Context around each core, a multiple of ``multiple``.
    tile, overlap : int
        The tile plan's largest tile and least overlap (``InferenceConfig``).
    max_side : int
        Longest region side: the memory budget of a block.
    multiple : int
        The model's size multiple.

    Returns
    -------
    int
        The core side, a positive multiple of ``multiple``.

    Examples
    --------
    Eight 1024-pixel tiles cover 7744 pixels; less two halos of 128:

    >>> fit_block(128)
    7488
    >>> fit_block(128, max_side=4096)
    3648
    """
    stride = tile - overlap
    # The most tiles within max_side, but enough for a core of one size multiple inside the halos.
    n = max(1, (max_side - overlap) // stride, math.ceil((2 * halo + multiple - overlap) / stride))
    return (n * stride + overlap - 2 * halo) // multiple * multiple


class TilePlan(NamedTuple):
    """The tiles that cover an image: one tile shape, fitted to the image by :func:`plan_tiles`.

    ``padded_shape`` is the shape the tiles cover (an axis that one tile
    covers is padded up to it); ``overlap`` is the smallest overlap of
    neighbouring tiles along each axis (0 along an axis with one tile), the
    band over which predictions are blended.
    """

    shape: tuple[int, int]
    padded_shape: tuple[int, int]
    tile_shape: tuple[int, int]
    overlap: tuple[int, int]
    boxes: tuple[Box, ...]

    @property
    def computed_ratio(self) -> float:
        """Pixels the network computes over pixels of the image."""
        th, tw = self.tile_shape
        return len(self.boxes) * th * tw / (self.shape[0] * self.shape[1])


def plan_tiles(shape: Sequence[int], *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP,
               size_multiple: int = SIZE_MULTIPLE) -> TilePlan:
    """The tiles a network runs for an image of ``shape``, fitted to the image.

    The memory budget is the area of a ``tile × tile`` tile. Tiles hold at
    most that many pixels, with sides that are multiples of
    ``size_multiple`` and at most ``2 * tile`` long; each axis is tiled by
    :func:`fit_axis` (evenly spread tiles overlapping by at least
    ``overlap``), and of the tile shapes that fit the budget the one that
    computes the fewest pixels is chosen (the fewer tiles on a tie). A field
    up to ``tile`` on a side is one tile (padded to the size multiple), so a
    640 × 640 field computes its own pixels; with the defaults no image from
    256² up computes more than 1.2 times its pixels.

    Parameters
    ----------
    shape : sequence of int
        ``(H, W, ...)`` of the image the network sees.
    tile : int
        The side of the largest square tile, a multiple of ``size_multiple``:
        the memory budget of a tile is ``tile * tile`` pixels.
    overlap : int
        Least overlap of neighbouring tiles, ``0 <= overlap < tile``.
    size_multiple : int
        The size multiple of the model (:data:`SIZE_MULTIPLE`, 32, for every
        registered model).

    Returns
    -------
    TilePlan

    Examples
    --------
    >>> p = plan_tiles((4096, 3286))
    >>> len(p.boxes), p.tile_shape, round(p.computed_ratio, 2)
    (18, (736, 1152), 1.13)
    >>> plan_tiles((640, 640)).tile_shape, plan_tiles((100, 1000)).padded_shape
    ((640, 640), (128, 1024))
    """
    if len(shape) < 2 or min(int(shape[0]), int(shape[1])) < 1:
        raise ValueError(f"cannot tile an image of shape {tuple(shape)}")
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or tile < 1:
        raise ValueError(f"tile must be a positive int, got {tile!r}")
    if tile % size_multiple:
        raise ValueError(
            f"tile={tile} is not a multiple of the model's size multiple {size_multiple}; "
            f"use tile={round_up(tile, size_multiple)}"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or not 0 <= overlap < tile:
        raise ValueError(f"overlap must be an int in [0, tile) = [0, {tile}), got {overlap!r}; "
                         f"e.g. overlap={tile // 4}")
    h, w = int(shape[0]), int(shape[1])
    budget, m = int(tile) * int(tile), int(size_multiple)
    best = None
    for cap in range(m, min(2 * tile, round_up(h, m)) + 1, m):
        if cap <= overlap and cap < h:  # tiles this short cannot overlap enough
            continue
        ay = fit_axis(h, cap, min(overlap, cap - 1), m)
        x_cap = min(budget // ay.tile // m * m, 2 * tile)
        if x_cap < m or (x_cap <= overlap and x_cap < w):
            continue
        ax = fit_axis(w, x_cap, min(overlap, x_cap - 1), m)
        key = (ay.computed * ax.computed, len(ay.starts) * len(ax.starts), abs(ay.tile - ax.tile))
        if best is None or key < best[0]:
            best = (key, ay, ax)
    _, ay, ax = best
    boxes = tuple(Box(y, x, y + ay.tile, x + ax.tile) for y in ay.starts for x in ax.starts)
    return TilePlan((h, w), (ay.padded, ax.padded), (ay.tile, ax.tile), (ay.overlap, ax.overlap), boxes)
