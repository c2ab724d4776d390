"""The blocks of a whole slide, and which block owns each nucleus.

A slide segmented or scored block by block is cut into square *cores* of
``block`` pixels (:func:`block_grid`); each core is read with a *halo* of
context around it, its *region*. A nucleus is owned by the core that holds
its centroid (:func:`owns`), so each nucleus is handled by exactly one block
however many regions see it: :func:`~napari_ihcseg.inference.segment_large`
writes it from there, and :func:`~napari_ihcseg.pipeline.process_image`
measures and scores it from there.

The module imports neither torch nor the model code.
"""

from __future__ import annotations

import numpy as np

from ..io import ImageReadError
from .tiling import Box

class BlockReadError(ImageReadError):
    """A block of a large image could not be read or decoded.

    The message is ``"<path>: cannot decode the block at y=…, x=… (…)"`` with
    the block's top-left corner in full-resolution pixels.
    """


def block_grid(shape, block: int, halo: int) -> list[tuple[Box, Box]]:
    """``(core, region)`` pairs: cores tile the image, regions add the halo (clipped).

    Examples
    --------
    >>> [(c, r) for c, r in block_grid((100, 60), 64, 8)][1]
    (Box(y0=64, x0=0, y1=100, x1=60), Box(y0=56, x0=0, y1=100, x1=60))
    """
    h, w = int(shape[0]), int(shape[1])
    out = []
    for y in range(0, h, block):
        for x in range(0, w, block):
            core = Box(y, x, min(y + block, h), min(x + block, w))
            region = Box(core.y0 - halo, core.x0 - halo, core.y1 + halo, core.x1 + halo).clip((h, w))
            out.append((core, region))
    return out


def owns(core: Box, cy, cx) -> np.ndarray:
    """True where the centroid ``(cy, cx)``, in slide pixels, lies in ``core``.

    The pixel holding the centroid (``floor``) decides, so the cores of
    :func:`block_grid`, which tile the slide, own each nucleus exactly once.

    Examples
    --------
    >>> owns(Box(0, 0, 64, 64), np.array([10.0, 63.9, 64.0]), np.array([5.0, 5.0, 5.0]))
    array([ True,  True, False])
    """
    y, x = np.floor(np.asarray(cy, float)), np.floor(np.asarray(cx, float))
    return (y >= core.y0) & (y < core.y1) & (x >= core.x0) & (x < core.x1)


def read_region(base, region: Box, source: str) -> np.ndarray:
    """Read ``region`` of a lazy array into memory; decoding errors name the place."""
    try:
        part = base[region.slices]
        if hasattr(part, "compute"):
            part = part.compute()
        return np.asarray(part)
    except MemoryError:
        raise
    except Exception as exc:  # codecs raise many types; all mean "this block is unreadable"
        detail = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
        raise BlockReadError(
            source, f"cannot decode the block at y={region.y0}, x={region.x0} "
                    f"(size {region.shape[0]}×{region.shape[1]}; {detail})"
        ) from exc


def owned_labels(labels: np.ndarray, core: Box, region: Box, shape) -> tuple[np.ndarray, int]:
    """The nuclei of ``region``'s ``labels`` that ``core`` owns (:func:`owns`), renumbered 1..k.

    Also returns how many of them touch the halo's outer edge (a side of
    ``region`` that is not the border of the slide of ``shape``): a halo too
    small for them.
    """
    n = int(labels.max())
    if n == 0:
        return labels, 0
    yy, xx = np.nonzero(labels)
    ids = labels[yy, xx]
    count = np.bincount(ids, minlength=n + 1).astype(np.float64)
    cy = np.bincount(ids, weights=yy, minlength=n + 1) / np.maximum(count, 1) + region.y0
    cx = np.bincount(ids, weights=xx, minlength=n + 1) / np.maximum(count, 1) + region.x0
    keep = (count > 0) & owns(core, cy, cx)
    keep[0] = False
    # Sides of the region that are halo edges (not the slide border).
    touching = np.zeros(n + 1, bool)
    for inner, side in ((region.y0 > 0, labels[0]), (region.y1 < shape[0], labels[-1]),
                        (region.x0 > 0, labels[:, 0]), (region.x1 < shape[1], labels[:, -1])):
        if inner:
            touching[side] = True
    touching[0] = False
    lut = np.cumsum(keep).astype(np.int64)
    lut[~keep] = 0
    return lut[labels], int((touching & keep).sum())


def _new_ids(owned: np.ndarray, current: np.ndarray, offset: int) -> tuple[np.ndarray, int]:
    """Global uint32 ids for a block's owned nuclei, and how many were dropped as duplicates.

    A nucleus whose pixels are mostly written already (by an earlier block)
    is the same nucleus seen from two blocks whose masks differ slightly, so
    both placed its centroid in their own core; it is dropped. The rest are
    numbered ``offset + 1, offset + 2, ...`` in order.
    """
    k = int(owned.max())
    size = np.bincount(owned.ravel(), minlength=k + 1)
    taken = np.bincount(owned[current > 0], minlength=k + 1)
    keep = (size > 0) & (2 * taken <= size)
    keep[0] = False
    lut = np.zeros(k + 1, np.uint32)
    lut[keep] = np.arange(offset + 1, offset + 1 + int(keep.sum()), dtype=np.uint32)
    return lut[owned], int((size[1:] > 0).sum() - keep[1:].sum())


def write_block(labels_out, region: Box, owned: np.ndarray, n_written: int) -> tuple[int, int]:
    """Merge a block's owned nuclei into the output; return the new count and the duplicates dropped."""
    if not owned.max():
        return n_written, 0
    current = np.asarray(labels_out[region.slices])
    ids, n_dup = _new_ids(owned, current, n_written)
    write = (ids > 0) & (current == 0)
    current[write] = ids[write]
    labels_out[region.slices] = current
    return max(n_written, int(ids.max())), n_dup


__all__ = ["BlockReadError", "block_grid", "owned_labels", "owns", "read_region", "write_block"]
