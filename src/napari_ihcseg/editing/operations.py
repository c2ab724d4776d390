"""Label edit operations: the edit record, and deleting and merging nuclei.

Every operation here is computed, not applied: it returns a :class:`LabelEdit`
holding the pixels that change, their new values and the nucleus ids it
creates, changes and deletes (a :class:`LabelChange`). ``edit.apply(labels)``
writes it into the array; a napari widget instead passes
``edit.indices, edit.values`` to ``Labels.data_setitem`` so that the edit joins
the layer's undo history.

Nuclei are deleted with :func:`delete_label` and merged with
:func:`merge_labels`; :mod:`~napari_ihcseg.editing.split` splits them.
:func:`next_free_label` and :func:`label_at` find ids; :func:`count_ids` counts
their pixels without an array as long as the largest id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

#: 4-connectivity: an 8-connected cut line separates the two sides.
_CROSS = ndi.generate_binary_structure(2, 1)
#: Ids below this are counted in an array indexed by id (``np.bincount``); larger ones one by one, so that
#: labels numbered in the billions (a uint32 id of 3,000,000,000) cost memory by their nuclei, not their ids.
DENSE_ID_LIMIT = 1 << 20


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


def check_new_ids(labels: np.ndarray, first: int, count: int = 1, *, given: bool = True,
                  areas: np.ndarray | None = None) -> None:
    """Refuse new nucleus ids ``first .. first + count - 1`` that are taken, not positive, or beyond the dtype.

    Parameters
    ----------
    labels : (H, W) ndarray of int
        The label image the new nuclei go into.
    first, count : int
        The ids an edit would create.
    given : bool
        Whether the caller chose ``first`` (``new_label``); ids from
        :func:`next_free_label` are free by construction and not searched for.
    areas : ndarray of int, optional
        Pixel count per id (index = id, as ``np.bincount(labels.ravel())``),
        when already known: the taken ids are looked up in it, not in the
        pixels; ids beyond its end count as free.

    Raises
    ------
    ValueError
        Naming the ids: below 1, beyond the largest the dtype holds (a uint8
        image has no id 256: it would wrap to background), or held by other
        nuclei (the new pixels would merge into them).

    Examples
    --------
    >>> check_new_ids(np.array([[0, 3], [1, 0]], np.uint8), 3)
    Traceback (most recent call last):
    ...
    ValueError: new_label=3: ids 3..3 are needed, and these belong to other nuclei: 3
    """
    last = first + count - 1
    if first < 1:
        raise ValueError(f"new_label={first}: nucleus ids must be 1 or more")
    if last > np.iinfo(labels.dtype).max:
        raise ValueError(f"no room for {count} new nucleus id(s) from {first} in a {labels.dtype} label image "
                         f"(largest id {np.iinfo(labels.dtype).max}); convert the labels to a wider integer type")
    if given and areas is not None:
        areas = np.asarray(areas)
        taken = np.flatnonzero(areas[first:min(last + 1, areas.size)]) + first
    elif given:
        taken = np.unique(labels[(labels >= first) & (labels <= last)])
    else:
        taken = ()
    if len(taken):
        raise ValueError(f"new_label={first}: ids {first}..{last} are needed, and these belong to other nuclei: "
                         f"{', '.join(str(int(v)) for v in taken[:5])}")


def count_ids(values, limit: int = DENSE_ID_LIMIT) -> tuple[np.ndarray, dict[int, int]]:
    """Pixel count of each id in ``values``: ids below ``limit`` in an array, the others in a dict.

    ``np.bincount`` makes an array as long as the largest id, 24 GB for one
    nucleus numbered 3,000,000,000; here ids from ``limit`` up are counted
    with ``np.unique``, costing memory by their number only. Negative values
    count as background (0).

    Returns
    -------
    dense : ndarray of int64
        ``dense[i]`` is the pixel count of id ``i`` (ids below ``limit``; as
        long as the largest of them, plus one).
    sparse : dict of int to int
        Pixel count of each id from ``limit`` up.

    Examples
    --------
    >>> dense, sparse = count_ids(np.array([0, 2, 2, 3_000_000_000], np.uint32), limit=10)
    >>> dense.tolist(), sparse
    ([1, 0, 2], {3000000000: 1})
    """
    values = np.asarray(values).ravel()
    top = values.max() if values.size else 0
    if top < limit:
        small, sparse = values, {}
    else:
        big = values >= limit
        ids, counts = np.unique(values[big], return_counts=True)
        small, sparse = values[~big], dict(zip(ids.tolist(), counts.tolist()))
    if small.dtype.kind == "i":
        small = np.clip(small, 0, None)
    dense = np.bincount(small.astype(np.intp, copy=False), minlength=1).astype(np.int64, copy=False)
    return dense, sparse


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
