"""Input checks and the labelling steps shared by the numpy and torch versions."""

from __future__ import annotations

import numbers

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

#: 8-connectivity: the 3x3 square used for seeds, seedless regions and growth.
STRUCTURE_8 = np.ones((3, 3), dtype=bool)


def check_min_size(min_size: int, *, name: str = "min_size") -> int:
    """Return ``min_size`` as a non-negative ``int`` or raise."""
    if isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer (pixels), got {min_size!r}")
    if min_size < 0:
        raise ValueError(f"{name} must be a non-negative integer (pixels), got {min_size}")
    return int(min_size)


def check_binary_pair(mask, contour) -> tuple[np.ndarray, np.ndarray]:
    """Check that ``mask`` and ``contour`` are 2-D boolean arrays of one shape.

    Returns both as C-contiguous ``bool`` numpy arrays (no copy when they are
    already).
    """
    arrays = []
    for name, value in (("mask", mask), ("contour", contour)):
        arr = np.asarray(value)
        if arr.dtype != np.bool_:
            raise TypeError(
                f"{name} must be a boolean array, got dtype {arr.dtype}; threshold probability maps "
                "first (probabilities_to_instances does that)"
            )
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {arr.shape}")
        arrays.append(np.ascontiguousarray(arr))
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"mask and contour must have the same shape, got {arrays[0].shape} and {arrays[1].shape}")
    return arrays[0], arrays[1]


def label_seedless(flat_index: np.ndarray, shape: tuple[int, int], *, first_id: int, min_size: int) -> np.ndarray:
    """Give each seedless region a fresh id, or 0 when it is smaller than ``min_size``.

    The regions are found as the 8-connected components of the given pixels
    alone (a sparse graph), so the cost depends on their number of pixels, not
    on the image size.

    Parameters
    ----------
    flat_index : ndarray of int
        Sorted flat (row-major) indices, in an image of ``shape``, of the mask
        pixels still unlabelled after growth. They form whole 8-connected
        components of the mask (the components that hold no seed).
    shape : tuple of int
        The shape of the image the indices refer to.
    first_id : int
        The id of the first kept region; later regions follow in raster order
        of their first pixel.
    min_size : int
        Regions with fewer pixels get id 0 (they are dropped).

    Returns
    -------
    ids : ndarray of int32
        One id per entry of ``flat_index``.
    """
    count = flat_index.size
    if count == 0:
        return np.zeros(0, dtype=np.int32)
    width = shape[1]
    column = flat_index % width
    sources, targets = [], []
    # The four forward neighbours; with edges undirected they cover all eight.
    not_last, not_first = column < width - 1, column > 0
    for offset, valid in ((1, not_last), (width - 1, not_first), (width, None), (width + 1, not_last)):
        neighbour = flat_index + offset
        position = np.minimum(np.searchsorted(flat_index, neighbour), count - 1)
        found = flat_index[position] == neighbour
        if valid is not None:
            found &= valid
        sources.append(np.flatnonzero(found))
        targets.append(position[found])
    sources = np.concatenate(sources)
    graph = csr_matrix(
        (np.ones(sources.size, dtype=np.int8), (sources, np.concatenate(targets))), shape=(count, count)
    )
    _, component = connected_components(graph, directed=False)
    # Number components by their first pixel (the indices are sorted: raster order).
    _, first, component = np.unique(component, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    component = rank[component]
    keep = np.bincount(component) >= max(min_size, 1)
    new_ids = np.cumsum(keep, dtype=np.int64) + (first_id - 1)
    new_ids[~keep] = 0
    if new_ids.max(initial=0) > np.iinfo(np.int32).max:
        raise ValueError("too many instances for int32 labels")
    return new_ids[component].astype(np.int32)
