"""Tiles, batches, blend windows and stitching: the pure parts of tiled inference.

Nothing here knows about models. An image of shape ``(H, W)`` is covered by
tiles of one fixed size that overlap by at least ``overlap`` pixels; the last
tile of a row or column is shifted back so that it ends on the image border,
so every tile lies inside the image and every pixel is covered. Overlapping
predictions are blended with a smooth window that falls to zero towards a
tile's inner edges, where a network sees the least context, and stays flat on
the sides that touch the image border. With the cosine window, neighbouring
tiles on a regular grid sum to exactly one, so blending is a partition of unity
and a constant prediction stays constant.

Examples
--------
>>> import numpy as np
>>> boxes = tile_boxes((600, 500), tile=256, overlap=32)
>>> len(boxes)
9
>>> st = Stitcher((600, 500), channels=1)
>>> for box in boxes:
...     w = blend_window(box.shape, 32, edges=box.edges((600, 500)))
...     st.add(box, np.ones((1, *box.shape), np.float32), w)
>>> bool(np.allclose(st.result(), 1.0))
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, TypeVar

import numpy as np

T = TypeVar("T")

#: Window shapes understood by :func:`blend_window`.
BLEND_KINDS = ("cosine", "gaussian", "constant")
#: Standard deviation of the Gaussian window, as a fraction of the tile size
#: (the value used by nnU-Net's sliding-window prediction).
GAUSSIAN_SIGMA_SCALE = 1.0 / 8.0
#: Smallest Gaussian weight, so that every pixel of a tile keeps some weight.
GAUSSIAN_FLOOR = 1e-3
#: The cosine window is zero on the outer quarter of the overlap band, where a
#: network's prediction suffers most from the missing context (zero padding),
#: and rises over the middle half.
ZERO_MARGIN_FRACTION = 0.25


class Box(NamedTuple):
    """A rectangle ``[y0, y1) × [x0, x1)`` in pixel coordinates."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(slice(y0, y1), slice(x0, x1))`` for indexing an array."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    def edges(self, shape: Sequence[int]) -> tuple[bool, bool, bool, bool]:
        """Which sides (top, bottom, left, right) lie on the border of ``shape``."""
        return (self.y0 == 0, self.y1 == shape[0], self.x0 == 0, self.x1 == shape[1])

    def shift(self, dy: int, dx: int) -> Box:
        """The same box moved by ``(dy, dx)``."""
        return Box(self.y0 + dy, self.x0 + dx, self.y1 + dy, self.x1 + dx)

    def clip(self, shape: Sequence[int]) -> Box:
        """The part of the box inside an array of ``shape`` (may be empty)."""
        h, w = int(shape[0]), int(shape[1])
        return Box(min(max(self.y0, 0), h), min(max(self.x0, 0), w),
                   min(max(self.y1, 0), h), min(max(self.x1, 0), w))


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start positions of tiles of length ``tile`` covering ``[0, size)``.

    Tiles step by ``tile - overlap``; the last one is shifted back to end at
    ``size``, so it may overlap its neighbour by more than ``overlap``. When
    ``size <= tile`` there is one tile at 0 (of length ``size``). A negative
    ``overlap`` leaves gaps between tiles (a sparse grid); the last tile still
    ends at ``size``. The one definition of a sliding window's starts:
    inference tiles, training grids and the tiles of saved training pairs use
    it (a grid with step ``stride`` is ``tile_starts(size, tile, tile - stride)``).

    Examples
    --------
    >>> tile_starts(1000, 256, 32)
    [0, 224, 448, 672, 744]
    >>> tile_starts(100, 256, 32)
    [0]
    >>> tile_starts(600, 256, 256 - 300)  # every 300 pixels
    [0, 300, 344]
    """
    if size <= 0:
        raise ValueError(f"cannot tile an axis of length {size}")
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    if overlap >= tile:
        raise ValueError(f"overlap must be smaller than the tile ({tile}), got {overlap}")
    if size <= tile:
        return [0]
    stride = tile - overlap
    n = math.ceil((size - tile) / stride) + 1
    return [i * stride for i in range(n - 1)] + [size - tile]


def round_up(value: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is ``>= value``."""
    return -(-int(value) // int(multiple)) * int(multiple)


def tile_boxes(shape: Sequence[int], tile: int | Sequence[int], overlap: int | Sequence[int]) -> list[Box]:
    """Boxes of one fixed size covering an image, in raster order.

    Parameters
    ----------
    shape : sequence of int
        The image shape; only the first two entries ``(H, W)`` are used.
    tile : int or (int, int)
        Tile height and width. Along an axis shorter than the tile, the tile
        is the whole axis.
    overlap : int or (int, int)
        The least overlap between neighbouring tiles, ``0 <= overlap < tile``.

    Returns
    -------
    boxes : list of Box
        Every box lies inside the image and every pixel is in at least one.

    Examples
    --------
    >>> tile_boxes((300, 200), 256, 64)
    [Box(y0=0, x0=0, y1=256, x1=200), Box(y0=44, x0=0, y1=300, x1=200)]
    """
    if len(shape) < 2:
        raise ValueError(f"expected an image shape (H, W, ...), got {tuple(shape)}")
    th, tw = _pair(tile, "tile")
    oy, ox = _pair(overlap, "overlap")
    h, w = int(shape[0]), int(shape[1])
    ys = tile_starts(h, th, oy)
    xs = tile_starts(w, tw, ox)
    return [Box(y, x, y + min(th, h), x + min(tw, w)) for y in ys for x in xs]


def batched(iterable: Iterable[T], n: int) -> Iterator[list[T]]:
    """Yield lists of ``n`` items (the last one may be shorter).

    Examples
    --------
    >>> list(batched(range(5), 2))
    [[0, 1], [2, 3], [4]]
    """
    if n < 1:
        raise ValueError(f"batch size must be at least 1, got {n}")
    it = iter(iterable)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def _window_1d(length: int, overlap: int, kind: str, flat_start: bool, flat_end: bool) -> np.ndarray:
    if kind == "constant" or length == 1:
        return np.ones(length, np.float64)
    if kind == "gaussian":
        sigma = max(length * GAUSSIAN_SIGMA_SCALE, 1.0)
        x = np.arange(length) - (length - 1) / 2.0
        w = np.exp(-0.5 * (x / sigma) ** 2)
        w = np.maximum(w / w.max(), GAUSSIAN_FLOOR)
        if flat_start:
            w[: length // 2] = 1.0
        if flat_end:
            w[(length + 1) // 2:] = 1.0
        return w
    w = np.ones(length, np.float64)
    band = min(overlap, length // 2)
    margin = int(band * ZERO_MARGIN_FRACTION)
    ramp_len = band - 2 * margin
    if ramp_len <= 0:
        return w
    # sin² of the pixel centres: ramp(i) + ramp(n - 1 - i) == 1, so the falling
    # ramp of one tile and the rising ramp of the next sum to one; the zero
    # margin of one tile lies where its neighbour is already flat at one.
    ramp = np.sin(0.5 * np.pi * (np.arange(ramp_len) + 0.5) / ramp_len) ** 2
    side = np.concatenate([np.zeros(margin), ramp])
    if not flat_start:
        w[:band - margin] = side
    if not flat_end:
        w[length - band + margin:] = side[::-1]
    return w


def blend_window(
    tile: int | Sequence[int],
    overlap: int | Sequence[int],
    kind: str = "cosine",
    *,
    edges: Sequence[bool] = (False, False, False, False),
) -> np.ndarray:
    """The weight of each pixel of a tile when overlapping tiles are blended.

    Parameters
    ----------
    tile : int or (int, int)
        Tile height and width.
    overlap : int or (int, int)
        Length of the ramp at each side (``"cosine"`` only); at most half the
        tile.
    kind : {"cosine", "gaussian", "constant"}
        ``"cosine"``: over the ``overlap`` band at each side, zero on the
        outer quarter (:data:`ZERO_MARGIN_FRACTION`), a raised-cosine (sin²)
        ramp over the middle half, one inside; on a regular grid the windows
        of neighbouring tiles sum to one, and no tile's outermost pixels are
        used. ``"gaussian"``: a Gaussian with ``sigma = tile / 8``, floored at
        1e-3. ``"constant"``: plain averaging.
    edges : 4 bools
        Sides (top, bottom, left, right) that lie on the image border; the
        window stays flat there because no neighbour shares those pixels.

    Returns
    -------
    window : (th, tw) ndarray of float32
        Non-negative weights, at most one. Used with the tiles of
        :func:`tile_boxes`, every pixel gets a positive total weight.

    Examples
    --------
    >>> w = blend_window((1, 8), 2)[0]
    >>> [round(float(v), 3) for v in w]
    [0.146, 0.854, 1.0, 1.0, 1.0, 1.0, 0.854, 0.146]
    >>> bool(np.allclose(w[:2] + w[:2][::-1], 1.0))  # neighbouring ramps sum to one
    True
    """
    if kind not in BLEND_KINDS:
        raise ValueError(f"unknown blend window {kind!r}; choose one of {', '.join(BLEND_KINDS)}")
    th, tw = _pair(tile, "tile")
    oy, ox = _pair(overlap, "overlap")
    if th < 1 or tw < 1:
        raise ValueError(f"tile size must be positive, got {(th, tw)}")
    if oy < 0 or ox < 0:
        raise ValueError(f"overlap must be non-negative, got {(oy, ox)}")
    top, bottom, left, right = (bool(e) for e in edges)
    wy = _window_1d(th, oy, kind, top, bottom)
    wx = _window_1d(tw, ox, kind, left, right)
    return np.outer(wy, wx).astype(np.float32)


class Stitcher:
    """Accumulate weighted tile predictions, then normalise by the weight sum.

    Parameters
    ----------
    shape : (int, int)
        The output height and width.
    channels : int
        Number of channels of each prediction; predictions are ``(C, h, w)``.
    zeros : callable, optional
        ``zeros(shape) -> array`` of float32 to accumulate into; numpy by
        default. Pass e.g. ``lambda s: torch.zeros(s, device="cuda")`` to
        stitch on a GPU: only indexing, ``+=``, ``*``, ``/=`` and comparisons
        are used, so any array library with numpy-style indexing works.

    Notes
    -----
    Memory is ``(channels + 1) * H * W * 4`` bytes. :meth:`result` divides in
    place and returns the accumulator without copying.
    """

    def __init__(self, shape: Sequence[int], channels: int = 1, *, zeros=None) -> None:
        h, w = int(shape[0]), int(shape[1])
        if h < 1 or w < 1 or channels < 1:
            raise ValueError(f"invalid stitcher shape {(channels, h, w)}")
        if zeros is None:
            def zeros(s):
                return np.zeros(s, np.float32)
        self.shape = (h, w)
        self.channels = int(channels)
        self._sum = zeros((self.channels, h, w))
        self._weight = zeros((h, w))
        self._done = False

    def add(self, box: Box, values, window) -> None:
        """Add ``values`` (C, h, w) weighted by ``window`` (h, w) at ``box``."""
        if self._done:
            raise RuntimeError("the stitcher was already normalised; create a new one")
        if isinstance(self._sum, np.ndarray):
            values = np.asarray(values, dtype=np.float32)
        if values.ndim == 2:
            values = values[None]
        if tuple(values.shape) != (self.channels, *box.shape) or tuple(window.shape) != box.shape:
            raise ValueError(
                f"tile of shape {tuple(values.shape)} with window {tuple(window.shape)} does not fit box {box} "
                f"for {self.channels} channel(s)"
            )
        if box.y0 < 0 or box.x0 < 0 or box.y1 > self.shape[0] or box.x1 > self.shape[1]:
            raise ValueError(f"box {box} lies outside the output of shape {self.shape}")
        sl = box.slices
        self._sum[(slice(None), *sl)] += values * window
        self._weight[sl] += window

    @property
    def coverage(self):
        """Boolean (H, W): pixels that received some weight."""
        return self._weight > 0

    def result(self):
        """The blended prediction ``(C, H, W)`` float32; 0 where nothing was added."""
        if not self._done:
            # weight + (weight == 0) is the weight, or 1 where nothing was added.
            self._sum /= self._weight + (self._weight == 0)
            self._done = True
        return self._sum


def pad_to_multiple(
    image: np.ndarray,
    multiple: int,
    *,
    min_shape: Sequence[int] = (1, 1),
    mode: str = "symmetric",
) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the bottom and right of an image so H and W are multiples of ``multiple``.

    Parameters
    ----------
    image : (H, W, ...) ndarray
        The image; trailing axes (channels) are not padded.
    multiple : int
        The size multiple a model needs (32 for every registered model).
    min_shape : (int, int)
        Pad at least to this size (rounded up to the multiple as well).
    mode : str
        :func:`numpy.pad` mode; ``"symmetric"`` mirrors the image, which keeps
        the statistics of the border and works for any size.

    Returns
    -------
    padded : ndarray
        The image itself when no padding is needed.
    original : (int, int)
        ``(H, W)`` before padding; crop with ``padded[:H, :W]``.

    Examples
    --------
    >>> import numpy as np
    >>> padded, hw = pad_to_multiple(np.zeros((20, 40, 3), np.uint8), 32)
    >>> padded.shape, hw
    ((32, 64, 3), (20, 40))
    """
    if multiple < 1:
        raise ValueError(f"size multiple must be positive, got {multiple}")
    h, w = image.shape[:2]
    th = round_up(max(h, int(min_shape[0])), multiple)
    tw = round_up(max(w, int(min_shape[1])), multiple)
    if (th, tw) == (h, w):
        return image, (h, w)
    pad = [(0, th - h), (0, tw - w)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode=mode), (h, w)
