"""Contour subtraction and constrained dilation on the CPU (numpy + scipy).

The paper's loop (Chen et al., HARU-Net, Algorithm 1) dilates every nucleus
over the whole image once per sweep. Each sweep hands every unlabelled mask
pixel the smallest id among its 8 neighbours that were labelled when the sweep
began; a pixel labelled in a sweep does not spread further in that sweep.

This version computes exactly those sweeps, but only where something can
change. After the first sweep, the only unlabelled pixels that can receive an
id are the 8-neighbours of the pixels labelled in the previous sweep (any
older labelled neighbour would already have claimed them), so each sweep
gathers the neighbours of the last front, keeps the unlabelled mask pixels, and
gives each the minimum id over its 8 neighbours. Every mask pixel enters the
front once, so the work is linear in the number of pixels, and the memory is
one padded ``int32`` image plus index arrays of the front.

Labels are kept in a padded ``uint32`` work image as ``id - 1`` so that a plain
minimum over neighbours ignores the three sentinels, all larger than any id:
``_OUTSIDE`` (not in the mask), ``_UNLABELLED`` (mask pixel without an id yet)
and ``_CLAIMED`` (chosen as a target in the current sweep).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ._common import STRUCTURE_8, check_binary_pair, check_min_size, label_seedless

_OUTSIDE = np.uint32(0xFFFFFFFF)
_UNLABELLED = np.uint32(0xFFFFFFFE)
_CLAIMED = np.uint32(0xFFFFFFFD)


def _neighbour_views(work: np.ndarray, padded_width: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Views of the flat padded ``work`` image for pixel indices ``s``.

    Pixels are addressed by ``s = padded_index - (padded_width + 1)``, so that
    ``centre[s]`` is the pixel and ``views[k][s]`` its k-th 8-neighbour:
    gathers need no index arithmetic.
    """
    base = padded_width + 1
    offsets = np.array([-base, -base + 1, -base + 2, -1, 1, base - 2, base - 1, base], dtype=np.intp)
    return offsets, [work[base + offset :] for offset in offsets], work[base:]


def _neighbour_min(views: list[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Minimum over the 8 neighbours of each pixel ``index``."""
    out = np.take(views[0], index, mode="clip")  # indices are in range: "clip" skips the checks
    scratch = np.empty_like(out)
    for view in views[1:]:
        np.minimum(out, np.take(view, index, out=scratch, mode="clip"), out=out)
    return out


def _grow(work: np.ndarray, padded_width: int, band: np.ndarray) -> int:
    """Run the sweeps in place on the flat padded ``work`` image.

    ``band`` holds the unlabelled mask pixels (as ``s`` indices, see
    :func:`_neighbour_views`). Returns the number of sweeps that labelled at
    least one pixel.
    """
    if band.size == 0:
        return 0
    offsets, views, centre = _neighbour_views(work, padded_width)
    # First sweep: every band pixel looks at its neighbours (the seeds).
    nearest = _neighbour_min(views, band)
    reached = nearest < _CLAIMED
    front = band[reached]
    centre[front] = nearest[reached]
    sweeps = int(front.size > 0)
    while front.size:
        parts = []
        for offset, view in zip(offsets, views):
            candidates = front[np.take(view, front, mode="clip") == _UNLABELLED] + offset
            centre[candidates] = _CLAIMED  # no pixel is taken twice in one sweep
            parts.append(candidates)
        targets = np.concatenate(parts)
        if targets.size == 0:
            break
        # Every target touches the last front, so its minimum is a real id;
        # claimed and unlabelled neighbours are larger than any id.
        centre[targets] = _neighbour_min(views, targets)
        front = targets
        sweeps += 1
    return sweeps


def contour_subtract_dilate(mask, contour, *, min_size: int = 0) -> np.ndarray:
    """Split a nucleus mask into instances with a contour map (HARU-Net, Algorithm 1).

    Seeds are the 8-connected components of ``mask & ~contour``, numbered
    1..n in raster order of their first pixel. They then grow inside ``mask``
    in sweeps: each sweep gives every unlabelled mask pixel the smallest id
    among its 8 neighbours that were labelled when the sweep began. The
    result equals the paper's loop (a 3x3 dilation per nucleus and sweep, ids
    ascending) wherever that loop terminates.

    The paper's loop never ends when an 8-connected region of the mask holds
    no seed (the contour covers a whole small nucleus). Here such regions get
    fresh ids n+1, n+2, ... in raster order of their first pixel, or stay
    background when they have fewer than ``min_size`` pixels. This is the one
    deliberate difference from the paper.

    Parameters
    ----------
    mask : (H, W) ndarray of bool
        Nucleus foreground.
    contour : (H, W) ndarray of bool
        Nucleus boundaries; pixels outside ``mask`` are ignored.
    min_size : int, optional
        Seedless regions with fewer pixels are dropped (left 0). It does not
        touch regions that hold a seed, so with ``min_size`` of any value the
        result equals the paper's loop wherever that loop terminates. To remove
        small final instances use :func:`probabilities_to_instances`.

    Returns
    -------
    labels : (H, W) ndarray of int32
        0 outside the mask (and in dropped seedless regions), ids 1..N inside:
        1..n for the seeds, n+1..N for the kept seedless regions.

    Raises
    ------
    TypeError
        If ``mask`` or ``contour`` is not boolean.
    ValueError
        If they are not 2-D arrays of the same shape, or ``min_size < 0``.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.ones((1, 7), bool)
    >>> contour = np.array([[0, 1, 1, 1, 1, 1, 0]], bool)
    >>> contour_subtract_dilate(mask, contour)
    array([[1, 1, 1, 1, 2, 2, 2]], dtype=int32)
    """
    mask, contour = check_binary_pair(mask, contour)
    min_size = check_min_size(min_size)
    height, width = mask.shape
    if mask.size == 0:
        return np.zeros(mask.shape, dtype=np.int32)
    padded_width = width + 2
    seeds = np.zeros((height + 2, padded_width), dtype=bool)
    np.greater(mask, contour, out=seeds[1:-1, 1:-1])  # mask & ~contour
    padded = np.empty(seeds.shape, dtype=np.int32)
    n_seeds = ndi.label(seeds, STRUCTURE_8, output=padded)
    work = padded.reshape(-1).view(np.uint32)
    work -= np.uint32(1)  # id -> id - 1; background wraps to _OUTSIDE

    unlabelled = np.zeros(seeds.shape, dtype=bool)
    np.logical_and(mask, contour, out=unlabelled[1:-1, 1:-1])
    band = np.flatnonzero(unlabelled)
    band -= padded_width + 1  # the s index of _neighbour_views
    del unlabelled
    centre = work[padded_width + 1 :]
    centre[band] = _UNLABELLED
    _grow(work, padded_width, band)

    left = band[centre[band] == _UNLABELLED]
    if left.size:
        ids = label_seedless(left + (padded_width + 1), seeds.shape, first_id=n_seeds + 1, min_size=min_size)
        centre[left] = ids.view(np.uint32) - np.uint32(1)  # dropped regions -> _OUTSIDE
    return (padded[1:-1, 1:-1].view(np.uint32) + np.uint32(1)).view(np.int32)
