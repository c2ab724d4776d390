"""Label edit operations: delete, merge and split nuclei in a label image.

Every operation here is computed, not applied: it returns a :class:`LabelEdit`
holding the pixels that change, their new values and the nucleus ids it
creates, changes and deletes (a :class:`LabelChange`). ``edit.apply(labels)``
writes it into the array; a napari widget instead passes
``edit.indices, edit.values`` to ``Labels.data_setitem`` so that the edit joins
the layer's undo history.

Nuclei are deleted with :func:`delete_label`, merged with :func:`merge_labels`
and split with :func:`split_label_by_line` (along a drawn polyline),
:func:`split_label_by_distance` (a watershed on the distance transform) or
:func:`split_label_by_instances` (the instance step re-run inside the
nucleus). :func:`next_free_label` and :func:`label_at` find ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

#: 4-connectivity: an 8-connected cut line separates the two sides.
_CROSS = ndi.generate_binary_structure(2, 1)


class LabelChange(NamedTuple):
    """Nucleus ids created, changed and deleted by one edit."""

    created: frozenset[int]
    changed: frozenset[int]
    deleted: frozenset[int]

    @property
    def touched(self) -> frozenset[int]:
        """Every id the edit involved."""
        return self.created | self.changed | self.deleted


@dataclass(frozen=True, eq=False)
class LabelEdit:
    """A change to a label image, not yet applied.

    Attributes
    ----------
    action : str
        ``"delete"``, ``"merge"``, ``"split"``...
    indices : tuple of ndarray
        Row and column indices of the pixels that change.
    values : ndarray
        Their new labels (same length as each index array).
    change : LabelChange
        The nucleus ids created, changed and deleted.
    """

    action: str
    indices: tuple[np.ndarray, np.ndarray]
    values: np.ndarray
    change: LabelChange

    @property
    def n_pixels(self) -> int:
        """How many pixels change."""
        return int(self.values.size)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Write the edit into ``labels`` in place and return it."""
        labels[self.indices] = self.values
        return labels

    @classmethod
    def from_crop(cls, action: str, labels: np.ndarray, box: tuple[slice, slice], new_crop: np.ndarray,
                  change: LabelChange) -> LabelEdit:
        """The pixels of ``labels[box]`` that differ from ``new_crop``, as an edit of ``labels``.

        ``action`` names the edit, ``change`` its nucleus ids; ``labels`` is
        left unchanged and the indices are those of the whole image.

        Examples
        --------
        >>> lab = np.array([[1, 1], [0, 2]])
        >>> edit = LabelEdit.from_crop("grow", lab, (slice(1, 2), slice(0, 2)), np.array([[2, 2]]),
        ...                            LabelChange(frozenset(), frozenset({2}), frozenset()))
        >>> edit.n_pixels, edit.apply(lab.copy()).tolist()
        (1, [[1, 1], [2, 2]])
        """
        diff = labels[box] != new_crop
        rr, cc = np.nonzero(diff)
        indices = (rr + box[0].start, cc + box[1].start)
        return cls(action, indices, new_crop[diff].astype(labels.dtype, copy=False), change)


def check_labels(labels) -> np.ndarray:
    """``labels`` as a 2-D integer array (not copied); ``ValueError`` or ``TypeError`` otherwise.

    Examples
    --------
    >>> check_labels([[0, 1], [2, 2]]).shape
    (2, 2)
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D (H, W) array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}")
    return labels


def _check_id(labels: np.ndarray, label: int) -> int:
    label = int(label)
    if label <= 0:
        raise ValueError(f"nucleus id must be positive, got {label} (0 is background)")
    return label


def next_free_label(labels: np.ndarray) -> int:
    """The smallest id larger than every id in ``labels`` (1 for an empty image).

    Examples
    --------
    >>> next_free_label(np.array([[0, 3], [1, 0]]))
    4
    """
    labels = check_labels(labels)
    top = int(labels.max()) if labels.size else 0
    if top >= np.iinfo(labels.dtype).max:
        raise ValueError(f"no free nucleus id left in a {labels.dtype} label image")
    return max(top, 0) + 1


def label_at(labels: np.ndarray, position) -> int:
    """The id at ``position`` (row, col; rounded), or 0 outside the image."""
    labels = check_labels(labels)
    r, c = (int(round(float(p))) for p in position[-2:])
    if 0 <= r < labels.shape[0] and 0 <= c < labels.shape[1]:
        return int(labels[r, c])
    return 0


def _bbox(mask: np.ndarray, pad: int, shape) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return (slice(max(rows[0] - pad, 0), min(rows[-1] + pad + 1, shape[0])),
            slice(max(cols[0] - pad, 0), min(cols[-1] + pad + 1, shape[1])))


def _nucleus_crop(labels: np.ndarray, label: int, pad: int,
                  region: tuple[slice, slice] | None = None) -> tuple[tuple[slice, slice], np.ndarray]:
    """The padded bounding box of ``label`` and its mask inside it (searched in ``region`` only, if given)."""
    if region is not None:
        region = tuple(slice(*sl.indices(n)[:2]) for sl, n in zip(region, labels.shape))
        part = labels[region] == label
        if part.any():
            inner = _bbox(part, 0, part.shape)
            box = tuple(slice(max(r.start + i.start - pad, 0), min(r.start + i.stop + pad, n))
                        for r, i, n in zip(region, inner, labels.shape))
            return box, labels[box] == label
    mask = labels == label
    if not mask.any():
        raise ValueError(f"nucleus {label} is not in the label image")
    box = _bbox(mask, pad, labels.shape)
    return box, mask[box]


def delete_label(labels: np.ndarray, label: int, *, region: tuple[slice, slice] | None = None) -> LabelEdit:
    """Remove one nucleus (its pixels become background).

    ``region``, when given, is a part of the image known to hold the whole
    nucleus: only it is searched (a speed-up on large fields).

    Examples
    --------
    >>> lab = np.array([[1, 1, 0], [0, 2, 2]])
    >>> delete_label(lab, 2).apply(lab)
    array([[1, 1, 0],
           [0, 0, 0]])
    """
    labels = check_labels(labels)
    label = _check_id(labels, label)
    box, mask = _nucleus_crop(labels, label, 0, region)
    new = np.where(mask, 0, labels[box])
    return LabelEdit.from_crop("delete", labels, box, new, LabelChange(frozenset(), frozenset(), frozenset({label})))


def merge_labels(labels: np.ndarray, *ids: int, into: int | None = None, gap: int = 1) -> LabelEdit:
    """Merge two or more nuclei into one.

    Parameters
    ----------
    labels : (H, W) ndarray of int
    *ids : int
        The nuclei to merge (at least two distinct ids).
    into : int, optional
        The id the merged nucleus keeps; by default the smallest of ``ids``.
    gap : int
        Background gaps up to about this many pixels between the pieces are
        filled (a morphological closing restricted to background); 0 fills none.

    Returns
    -------
    LabelEdit

    Examples
    --------
    >>> lab = np.array([[1, 0, 2, 2]])
    >>> merge_labels(lab, 1, 2).apply(lab)
    array([[1, 1, 1, 1]])
    """
    labels = check_labels(labels)
    wanted = sorted({_check_id(labels, i) for i in ids})
    if len(wanted) < 2:
        raise ValueError(f"merging needs at least two different nuclei, got {list(ids)}")
    into = wanted[0] if into is None else int(into)
    if into not in wanted:
        raise ValueError(f"into={into} is not one of the nuclei being merged {wanted}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    union = np.isin(labels, wanted)
    present = set(np.unique(labels[union]).tolist())
    missing = [i for i in wanted if i not in present]
    if missing:
        raise ValueError(f"nucleus {missing[0]} is not in the label image")
    box = _bbox(union, gap + 1, labels.shape)
    crop = labels[box]
    part = union[box]
    new = np.where(part, into, crop)
    if gap:
        disk = ndi.iterate_structure(_CROSS, gap) if gap > 1 else np.ones((3, 3), bool)
        pad = gap + 1
        closed = ndi.binary_closing(np.pad(part, pad), structure=disk)[pad:-pad, pad:-pad]
        new = np.where(closed & (crop == 0), into, new)
    others = frozenset(wanted) - {into}
    return LabelEdit.from_crop("merge", labels, box, new, LabelChange(frozenset(), frozenset({into}), others))


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
    if new_label is not None and np.any(labels == first):
        raise ValueError(f"new_label={first} is already used by another nucleus")
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
