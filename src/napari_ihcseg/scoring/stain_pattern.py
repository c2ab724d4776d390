"""Where the DAB lies: in the nuclei, or around them (cytoplasm, membrane).

Nuclear scores (Ki-67 index, ER/PR Allred and ASCO/CAP) assume a nuclear
stain. A cytoplasmic or membranous stain (HER2, cytokeratins, many
antibodies) still gives every nucleus a DAB optical density, from the brown
cytoplasm that overlaps or blurs into it, and therefore a meaningless
"positive %". This module measures, for each nucleus, the mean DAB OD in a
ring around it (:func:`ring_dab_od`: background pixels within ``width``
pixels of the nucleus, other nuclei left out) and compares it with the DAB
inside (:func:`stain_pattern`).

The statistic is the **nuclear DAB share** of the stained cells: over the
nuclei where the nucleus or its ring reaches :data:`STAINED_OD`, the median
of ``nuclear DAB / (nuclear DAB + ring DAB)``. It is near 1 when the DAB lies
in nuclei and near or below 1/2 when it lies around them. The cut
:data:`NUCLEAR_SHARE_CUT` was calibrated on real nuclear stains (the Ki-67
sets) against a cytoplasmic one (scikit-image's FHL2 sample):
``benchmarks/calibrate_stain_pattern.py`` and ``docs/scoring.md``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from napari_ihcseg.stain import H_DAB, OD_LUT, StainVectors

#: A cell counts as stained when its nucleus or its ring reaches this DAB OD.
STAINED_OD = 0.15
#: Below this nuclear DAB share the stain is called cytoplasmic/membranous.
NUCLEAR_SHARE_CUT = 0.63
#: Fewer stained cells than this: no call (e.g. a Ki-67-negative field).
MIN_STAINED_CELLS = 10
#: Ring gap and width as fractions of the median equivalent radius of the nuclei.
RING_GAP, RING_WIDTH = 0.5, 1.0
#: Limits of the ring width (pixels).
RING_MIN_PX, RING_MAX_PX = 2, 24

#: ``stain_pattern`` values.
NUCLEAR, NON_NUCLEAR, NO_DAB = "nuclear", "cytoplasmic/membranous", "too little DAB to tell"
#: The warning a pathologist reads when the DAB is not nuclear.
NON_NUCLEAR_WARNING = ("DAB is mainly cytoplasmic/membranous: nuclear scores such as Ki-67 "
                       "and ER/PR Allred do not apply")


def ring_for(areas) -> tuple[int, int]:
    """Ring ``(gap, width)`` in pixels for nuclei of these areas (pixels).

    With ``r`` the median equivalent radius: a gap of :data:`RING_GAP` ``· r``
    (so that the blurred edge of a stained nucleus does not count as its
    surroundings) and a width of :data:`RING_WIDTH` ``· r`` (the perinuclear
    cytoplasm), the width at least :data:`RING_MIN_PX`, both at most
    :data:`RING_MAX_PX`; the same at any magnification.

    Examples
    --------
    >>> ring_for([314.0] * 3)     # radius 10 px
    (5, 10)
    >>> ring_for([])
    (0, 2)
    """
    areas = np.asarray(areas, np.float64)
    if areas.size == 0:
        return 0, RING_MIN_PX
    radius = float(np.sqrt(np.median(areas) / np.pi))
    gap = int(min(round(RING_GAP * radius), RING_MAX_PX))
    width = int(np.clip(round(RING_WIDTH * radius), RING_MIN_PX, RING_MAX_PX))
    return gap, width


def check_ring(ring) -> tuple[int, int]:
    """Validate a ``(gap, width)`` pair of pixels: gap >= 0, width >= 1."""
    try:
        gap, width = (int(v) for v in ring)
    except (TypeError, ValueError):
        raise ValueError(f"ring must be 'auto' or (gap, width) in pixels, got {ring!r}") from None
    if gap < 0 or width < 1:
        raise ValueError(f"ring needs gap >= 0 and width >= 1 pixels, got {ring!r}")
    return gap, width


def ring_dab_od(image: np.ndarray, labels: np.ndarray, label_ids, *, ring: tuple[int, int],
                stains: StainVectors = H_DAB) -> np.ndarray:
    """Mean DAB OD in a ring around each nucleus.

    The ring of a nucleus is the background (label 0) farther than ``gap``
    and at most ``gap + width`` pixels from it (chessboard metric); where
    rings of neighbours meet, a pixel goes to the larger label, and a pixel
    within ``gap`` of any nucleus belongs to no ring. Other nuclei are never
    part of a ring.

    Parameters
    ----------
    image : (H, W, 3) array of uint8
    labels : (H, W) array of int
    label_ids : sequence of int
        The nuclei to report, in this order.
    ring : (int, int)
        ``(gap, width)`` in pixels.
    stains : StainVectors

    Returns
    -------
    (len(label_ids),) ndarray of float64
        NaN for a nucleus without any ring pixel (e.g. buried among others).

    Examples
    --------
    >>> from napari_ihcseg.stain import compose
    >>> c = np.zeros((11, 11, 3), np.float32); c[..., 1] = 0.4; c[4:7, 4:7, 1] = 0.0
    >>> lab = np.zeros((11, 11), np.int32); lab[4:7, 4:7] = 1
    >>> round(float(ring_dab_od(compose(c), lab, [1], ring=(1, 2))[0]), 2)
    0.4
    """
    gap, width = check_ring(ring)
    label_ids = np.asarray(label_ids, np.int64)
    if label_ids.size == 0:
        return np.zeros(0)
    outer = ndi.maximum_filter(labels, size=2 * (gap + width) + 1, mode="constant", cval=0)
    near = ndi.maximum_filter(labels, size=2 * gap + 1, mode="constant", cval=0) if gap else labels
    rr, cc = np.nonzero((near == 0) & (outer > 0))
    owner = outer[rr, cc].astype(np.int64)
    pixels = image[rr, cc]
    n = label_ids.size
    order = np.argsort(label_ids, kind="stable")
    pos = np.minimum(np.searchsorted(label_ids[order], owner), n - 1)
    hit = label_ids[order][pos] == owner
    index = order[pos[hit]]
    count = np.bincount(index, minlength=n).astype(np.float64)
    od = np.stack([np.bincount(index, weights=OD_LUT[pixels[hit, ch]], minlength=n) for ch in range(3)], 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        od_mean = od / count[:, None]
    return (od_mean @ np.linalg.inv(stains.matrix))[:, 1]


def stain_pattern(nuclear_dab, ring_dab) -> dict:
    """Call the stain pattern from per-nucleus DAB inside and around nuclei.

    Parameters
    ----------
    nuclear_dab, ring_dab : array of float
        Mean DAB OD of each counted nucleus and of its ring (NaN: a nucleus
        without ring pixels, counted as stained by its nucleus alone and left
        out of the share).

    Returns
    -------
    dict
        ``stain_pattern`` (:data:`NUCLEAR`, :data:`NON_NUCLEAR` or
        :data:`NO_DAB`; ``None`` when enough cells are stained but too few
        of them have a ring to compare), ``dab_nuclear_share`` (``None``
        when not enough cells are stained) and ``n_stained_cells``.

    Examples
    --------
    >>> stain_pattern([0.5] * 30 + [0.0] * 70, [0.05] * 100)["stain_pattern"]
    'nuclear'
    >>> stain_pattern([0.2] * 100, [0.6] * 100)["stain_pattern"]
    'cytoplasmic/membranous'
    """
    nuc = np.asarray(nuclear_dab, np.float64)
    ring = np.asarray(ring_dab, np.float64)
    has_ring = np.isfinite(ring)
    stained = np.isfinite(nuc) & (np.fmax(nuc, np.where(has_ring, ring, -np.inf)) >= STAINED_OD)
    n_stained = int(stained.sum())
    if n_stained < MIN_STAINED_CELLS:
        return {"stain_pattern": NO_DAB, "dab_nuclear_share": None, "n_stained_cells": n_stained}
    judged = stained & has_ring
    if int(judged.sum()) < MIN_STAINED_CELLS:  # stained, but packed so tight that no ring is left to compare
        return {"stain_pattern": None, "dab_nuclear_share": None, "n_stained_cells": n_stained}
    inside, around = np.clip(nuc[judged], 0.0, None), np.clip(ring[judged], 0.0, None)
    share = float(np.median(inside / (inside + around)))
    return {"stain_pattern": NUCLEAR if share >= NUCLEAR_SHARE_CUT else NON_NUCLEAR,
            "dab_nuclear_share": share, "n_stained_cells": n_stained}


def pattern_of_cells(cells: pd.DataFrame, keep: np.ndarray | None = None) -> dict:
    """:func:`stain_pattern` of a scored cells table (``dab_od_mean``, ``dab_od_ring``).

    Only the rows ``keep`` count (default all). Without a ``dab_od_ring``
    column (e.g. a table read back from CSV) the pattern is unknown:
    ``{"stain_pattern": None, "dab_nuclear_share": None, "n_stained_cells": None}``.
    """
    if "dab_od_ring" not in cells:
        return {"stain_pattern": None, "dab_nuclear_share": None, "n_stained_cells": None}
    nuc = cells["dab_od_mean"].to_numpy(np.float64)
    ring = cells["dab_od_ring"].to_numpy(np.float64)
    if keep is not None:
        nuc, ring = nuc[keep], ring[keep]
    return stain_pattern(nuc, ring)
