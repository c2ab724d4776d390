"""Splitting a nucleus in two or more: along a line, by distance, or by the instance step.

Like every operation of :mod:`~napari_ihcseg.editing.operations`, a split is
computed, not applied: it returns a :class:`~napari_ihcseg.editing.operations.LabelEdit`.
The largest part keeps the nucleus's id; the others get new ids, from
:func:`~napari_ihcseg.editing.operations.next_free_label` or from
``new_label``, and a split refuses ids that are taken, not positive, or beyond
the label image's dtype.

:func:`split_label_by_line` cuts along a drawn polyline,
:func:`split_label_by_distance` runs a watershed on the distance transform,
and :func:`split_label_by_instances` re-runs the instance step inside the
nucleus.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .operations import (
    LabelChange,
    LabelEdit,
    _CROSS,
    _check_id,
    _nucleus_crop,
    check_labels,
    check_new_ids,
    next_free_label,
)


def _assign_to_nearest(parts: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Give every pixel of ``region`` the value of the nearest non-zero pixel of ``parts``."""
    _, (ir, ic) = ndi.distance_transform_edt(parts == 0, return_indices=True)
    return np.where(region, parts[ir, ic], 0)


def _split_result(action: str, labels: np.ndarray, label: int, box, mask: np.ndarray,
                  parts: np.ndarray, n_parts: int, new_label: int | None) -> LabelEdit:
    """Relabel ``parts`` (1..n_parts inside ``mask``): the largest keeps ``label``."""
    if n_parts < 2:
        raise ValueError(f"{action}: nucleus {label} could not be cut into two or more parts")
    full = _assign_to_nearest(parts, mask)
    sizes = np.bincount(full[mask], minlength=n_parts + 1)
    order = np.argsort(-sizes[1:], kind="stable") + 1
    first = next_free_label(labels) if new_label is None else int(new_label)
    check_new_ids(labels, first, n_parts - 1, given=new_label is not None)
    lut = np.zeros(n_parts + 1, dtype=np.int64)
    lut[order[0]] = label
    lut[order[1:]] = np.arange(first, first + n_parts - 1)
    new = np.where(mask, lut[full], labels[box])
    created = frozenset(int(v) for v in lut[order[1:]])
    return LabelEdit.from_crop("split", labels, box, new, LabelChange(created, frozenset({label}), frozenset()))


def _polyline_pixels(points: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise a polyline whose two end segments are extended by ``reach`` pixels."""
    from skimage.draw import line

    pts = points.astype(np.float64).copy()
    for end, prev in ((0, 1), (-1, -2)):
        d = pts[end] - pts[prev]
        n = np.hypot(*d)
        if n > 0:
            pts[end] = pts[end] + d / n * reach
    rr, cc = [], []
    ip = np.round(pts).astype(np.int64)
    for (r0, c0), (r1, c1) in zip(ip[:-1], ip[1:]):
        r, c = line(r0, c0, r1, c1)
        rr.append(r)
        cc.append(c)
    return np.concatenate(rr), np.concatenate(cc)


def split_label_by_line(labels: np.ndarray, label: int, line_points, *, new_label: int | None = None,
                        min_fragment: int = 4) -> LabelEdit:
    """Cut a nucleus in two along a drawn polyline.

    The end segments are extended until they leave the nucleus, so the line
    need not reach across it. The larger side keeps ``label``; the other side
    gets ``new_label`` (by default the next free id). Pixels on the line go to
    the nearest side, so no pixel of the nucleus is lost.

    Parameters
    ----------
    labels : (H, W) ndarray of int
    label : int
        The nucleus to cut.
    line_points : (K, 2) array-like of float
        Vertices of the cut in (row, col) pixel coordinates, K >= 2.
    new_label : int, optional
        The first id given to the new part(s).
    min_fragment : int
        Pieces smaller than this many pixels are slivers of the cut itself and
        are joined to the nearest side.

    Returns
    -------
    LabelEdit

    Raises
    ------
    ValueError
        If the line does not cut the nucleus into two parts.

    Examples
    --------
    >>> lab = np.zeros((5, 9), int); lab[1:4, 1:8] = 7
    >>> edit = split_label_by_line(lab, 7, [(0, 4), (4, 4)])
    >>> sorted(np.unique(edit.apply(lab)).tolist())
    [0, 7, 8]
    """
    labels = check_labels(labels)
    label = _check_id(labels, label)
    pts = np.asarray(line_points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] < 2 or pts.shape[1] < 2:
        raise ValueError(f"line_points must be (K, 2) with K >= 2, got shape {pts.shape}")
    pts = pts[:, -2:]
    box, mask = _nucleus_crop(labels, label, 1)
    local = pts - [box[0].start, box[1].start]
    reach = float(np.hypot(*mask.shape)) + 2
    rr, cc = _polyline_pixels(local, reach)
    keep = (rr >= 0) & (rr < mask.shape[0]) & (cc >= 0) & (cc < mask.shape[1])
    cut = np.zeros_like(mask)
    cut[rr[keep], cc[keep]] = True
    pieces, n = ndi.label(mask & ~cut, structure=_CROSS)
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    big = np.flatnonzero(sizes >= max(int(min_fragment), 1))
    big = big[big > 0]
    lut = np.zeros(n + 1, dtype=np.int64)
    lut[big] = np.arange(1, big.size + 1)
    return _split_result("split", labels, label, box, mask, lut[pieces], int(big.size), new_label)


def split_label_by_distance(labels: np.ndarray, label: int, *, min_distance: int = 3,
                            new_label: int | None = None) -> LabelEdit:
    """Split a nucleus by a watershed on its distance transform.

    Used when no probability maps are at hand: each local maximum of the
    distance to the nucleus border at least ``min_distance`` pixels from
    another seeds one part.

    Raises
    ------
    ValueError
        If the shape has a single centre (nothing to split).
    """
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    labels = check_labels(labels)
    label = _check_id(labels, label)
    box, mask = _nucleus_crop(labels, label, 1)
    dist = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(dist, min_distance=max(int(min_distance), 1), labels=mask.astype(np.int32),
                           exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    parts = watershed(-dist, markers, mask=mask)
    return _split_result("split", labels, label, box, mask, parts, len(peaks), new_label)


def split_label_by_instances(labels: np.ndarray, label: int, mask_prob: np.ndarray, contour_prob: np.ndarray,
                             *, mask_threshold: float = 0.5, contour_threshold: float = 0.5, min_size: int = 16,
                             erode: int = 0, fill_holes: bool = True, new_label: int | None = None) -> LabelEdit:
    """Split a nucleus by re-running the instance step inside it.

    The model's mask and contour probabilities inside the nucleus's bounding
    box go through :func:`napari_ihcseg.instances.probabilities_to_instances`
    (usually with a lower ``contour_threshold`` than the one that merged the
    nuclei); pixels of the nucleus that no instance covers join the nearest.

    Parameters
    ----------
    labels : (H, W) ndarray of int
    label : int
    mask_prob, contour_prob : (H, W) ndarray of float
        Probability maps aligned with ``labels``.
    mask_threshold, contour_threshold, min_size, erode, fill_holes
        As for :func:`~napari_ihcseg.instances.probabilities_to_instances`.
    new_label : int, optional

    Returns
    -------
    LabelEdit

    Raises
    ------
    ValueError
        If the instance step finds fewer than two nuclei inside.
    """
    from napari_ihcseg.instances import probabilities_to_instances

    labels = check_labels(labels)
    label = _check_id(labels, label)
    for name, prob in (("mask_prob", mask_prob), ("contour_prob", contour_prob)):
        if np.shape(prob) != labels.shape:
            raise ValueError(f"{name} has shape {np.shape(prob)}, but the labels are {labels.shape}")
    box, mask = _nucleus_crop(labels, label, 2)
    mp = np.where(mask, np.asarray(mask_prob[box], dtype=np.float32), 0.0).astype(np.float32)
    cp = np.asarray(contour_prob[box], dtype=np.float32)
    found = probabilities_to_instances(mp, cp, mask_threshold=mask_threshold,
                                       contour_threshold=contour_threshold, min_size=min_size,
                                       erode=erode, fill_holes=fill_holes)
    found = np.where(mask, found, 0)
    ids = np.unique(found)
    ids = ids[ids > 0]
    lut = np.zeros(int(found.max()) + 1, dtype=np.int64)
    lut[ids] = np.arange(1, ids.size + 1)
    return _split_result("split", labels, label, box, mask, lut[found], int(ids.size), new_label)
