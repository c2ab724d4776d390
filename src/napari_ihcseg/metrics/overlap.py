"""The sparse contingency table of two label maps, from which every instance metric is computed.

:class:`InstanceOverlap` holds the area of every object and the intersection
of every (prediction, truth) pair that shares at least one pixel, counted with
:func:`numpy.bincount` on combined pair keys. No per-object masks are ever
made, so a 1000×1000 field with 700 nuclei takes a few tens of milliseconds.

Label maps are integer arrays of any shape, 0 background; the label values
need not be consecutive and their order does not matter (only which pixels
share a value). Labels that never occur are not objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["InstanceOverlap", "as_overlap", "instance_overlap"]

# A dense lookup table / bincount is used while it stays this small relative to the image.
_DENSE_SLACK = 1 << 16


def _as_labels(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a.ravel().astype(np.intp)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer label map, got dtype {a.dtype}")
    flat = a.ravel()
    if flat.size and np.issubdtype(a.dtype, np.signedinteger) and flat.min() < 0:
        raise ValueError(f"{name}: label values must be >= 0 (0 is background), found {int(flat.min())}")
    if a.dtype.itemsize == 8 and flat.size and flat.max() > np.iinfo(np.intp).max:
        raise ValueError(f"{name}: label values above {np.iinfo(np.intp).max} are not supported")
    return flat.astype(np.intp, copy=False)


def _compact(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label values present (> 0), per-pixel codes 0..n (0 background), areas."""
    top = int(flat.max()) if flat.size else 0
    if top <= 2 * flat.size + _DENSE_SLACK:
        counts = np.bincount(flat, minlength=top + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        lut = np.zeros(top + 1, dtype=np.intp)
        lut[ids] = np.arange(1, ids.size + 1)
        return ids, lut[flat], counts[ids]
    values, codes = np.unique(flat, return_inverse=True)
    if values[0] != 0:
        codes = codes + 1
        values = np.concatenate([[0], values])
    codes = codes.astype(np.intp, copy=False)
    counts = np.bincount(codes, minlength=values.size)
    return values[1:], codes, counts[1:]


@dataclass(frozen=True)
class InstanceOverlap:
    """Sparse contingency table of two label maps.

    Attributes
    ----------
    pred_ids, truth_ids : ndarray of int
        The label values present in each map, ascending.
    pred_area, truth_area : ndarray of int
        Pixel count of each of those objects.
    pair_pred, pair_truth : ndarray of int
        For every overlapping pair, the index of the prediction in
        ``pred_ids`` and of the truth in ``truth_ids``.
    pair_inter : ndarray of int
        The pixels each pair shares (> 0).
    """

    pred_ids: np.ndarray
    truth_ids: np.ndarray
    pred_area: np.ndarray
    truth_area: np.ndarray
    pair_pred: np.ndarray
    pair_truth: np.ndarray
    pair_inter: np.ndarray

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def n_truth(self) -> int:
        return int(self.truth_ids.size)

    @property
    def pair_union(self) -> np.ndarray:
        return self.pred_area[self.pair_pred] + self.truth_area[self.pair_truth] - self.pair_inter

    @property
    def pair_iou(self) -> np.ndarray:
        return self.pair_inter / self.pair_union

    def confusion_counts(self) -> tuple[int, int, int]:
        """Foreground pixel counts ``(tp, fp, fn)``, as :func:`~.pixel.confusion_counts`."""
        tp = int(self.pair_inter.sum())
        return tp, int(self.pred_area.sum()) - tp, int(self.truth_area.sum()) - tp


def instance_overlap(pred, truth) -> InstanceOverlap:
    """Build the sparse contingency table of two label maps.

    Parameters
    ----------
    pred, truth : array_like of int
        Label maps of the same shape, 0 background.

    Returns
    -------
    InstanceOverlap
        Pass it instead of the label maps to the other functions of this
        module to compute several figures from one table.

    Examples
    --------
    >>> ov = instance_overlap([[1, 1, 0]], [[0, 5, 5]])
    >>> ov.pred_ids, ov.truth_ids, ov.pair_inter
    (array([1]), array([5]), array([1]))
    """
    p = _as_labels(pred, "pred")
    t = _as_labels(truth, "truth")
    if np.shape(pred) != np.shape(truth):
        raise ValueError(f"pred and truth must have the same shape, got {np.shape(pred)} and {np.shape(truth)}")
    pred_ids, pc, pred_area = _compact(p)
    truth_ids, tc, truth_area = _compact(t)
    stride = truth_ids.size + 1
    both = (pc > 0) & (tc > 0)
    keys = pc[both] * stride + tc[both]
    n_keys = (pred_ids.size + 1) * stride
    if n_keys <= 2 * p.size + _DENSE_SLACK:
        counts = np.bincount(keys, minlength=n_keys)
        keys = np.flatnonzero(counts)
        inter = counts[keys]
    else:
        keys, inter = np.unique(keys, return_counts=True)
    return InstanceOverlap(
        pred_ids=pred_ids, truth_ids=truth_ids, pred_area=pred_area, truth_area=truth_area,
        pair_pred=keys // stride - 1, pair_truth=keys % stride - 1, pair_inter=inter.astype(np.int64),
    )


def as_overlap(pred, truth=None) -> InstanceOverlap:
    """The contingency table of two label maps, or ``pred`` itself when it is one.

    The metrics of :mod:`~napari_ihcseg.metrics.instances` take either two
    label maps or an :class:`InstanceOverlap` as ``pred`` alone; this is how
    they tell which.

    Parameters
    ----------
    pred : array_like of int or InstanceOverlap
    truth : array_like of int or None
        ``None`` exactly when ``pred`` is an :class:`InstanceOverlap`.

    Returns
    -------
    InstanceOverlap

    Examples
    --------
    >>> ov = instance_overlap([[1, 0]], [[1, 1]])
    >>> as_overlap(ov) is ov, as_overlap([[1, 0]], [[1, 1]]).pair_inter
    (True, array([1]))
    """
    if isinstance(pred, InstanceOverlap):
        if truth is not None:
            raise TypeError("pass either an InstanceOverlap or two label maps, not both")
        return pred
    return instance_overlap(pred, truth)
