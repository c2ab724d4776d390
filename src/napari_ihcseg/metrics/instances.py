"""Instance segmentation metrics: AJI, panoptic quality, F1 at an IoU threshold.

All figures come from one sparse contingency table,
:class:`~napari_ihcseg.metrics.overlap.InstanceOverlap` (module
:mod:`~napari_ihcseg.metrics.overlap`, whose names are importable from here
too): the area of every object and the intersection of every (prediction,
truth) pair that shares at least one pixel. Every function takes two label
maps, or one table as ``pred`` alone, to compute several figures from one
table.

Empty inputs
------------
With no object in either map every figure is 0 / 0 and is returned as ``nan``
(the COCO panoptic evaluation skips such cases); average with
:func:`numpy.nanmean`. With objects on one side only, AJI, PQ, DQ, SQ and F1
are 0. SQ is 0 whenever there is no true positive, as in the COCO panoptic
API, so that ``PQ = DQ * SQ`` always holds.

References
----------
.. [1] N. Kumar et al., "A dataset and a technique for generalized nuclear
       segmentation for computational pathology", IEEE TMI 36 (2017).
.. [2] A. Kirillov et al., "Panoptic segmentation", CVPR 2019.
.. [3] S. Graham et al., "HoVer-Net: simultaneous segmentation and
       classification of nuclei in multi-tissue histology images", MedIA 58
       (2019) — the per-image PQ for nuclei and the ``get_fast_aji`` convention.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._common import ratio
from .overlap import as_overlap, instance_overlap
from .pixel import dice_from_counts, iou_from_counts, tversky_from_counts

__all__ = [
    "aggregated_jaccard_index",
    "PQResult",
    "panoptic_quality",
    "f1_at_iou",
    "match_instances",
    "evaluate_instances",
    "average_by_source",
    "INSTANCE_METRICS",
]

#: Keys of :func:`evaluate_instances`, in the order tables list them.
INSTANCE_METRICS = (
    "n_pred", "n_truth", "dice", "iou", "tversky", "dice_loss", "iou_loss", "tversky_loss",
    "aji", "pq", "dq", "sq", "f1", "precision", "recall", "tp", "fp", "fn",
)


def aggregated_jaccard_index(pred, truth=None) -> float:
    """Aggregated Jaccard Index of Kumar et al. [1]_.

    For every truth object ``G`` take the prediction ``S`` with the largest
    IoU with it (ties go to the lowest label) and add ``|G∩S|`` to ``C`` and
    ``|G∪S|`` to ``U``. A truth object that no prediction touches adds ``|G|``
    to ``U`` only (the convention of HoVer-Net's ``get_fast_aji``; a literal
    ``argmax`` over all-zero IoUs would pair it with an arbitrary prediction).
    Finally add the area of every prediction that was never chosen to ``U``.
    ``AJI = C / U``.

    A prediction chosen by several truth objects (a merge) counts in the
    union of each of those pairs but, being used, is not added again as an
    unused prediction — the usual implementation detail, which makes merges
    cost more than in AJI+.

    Parameters
    ----------
    pred, truth : array_like of int
        Label maps of the same shape, or an :class:`InstanceOverlap` as
        ``pred`` alone.

    Returns
    -------
    float
        In [0, 1]; ``nan`` when neither map has an object.

    Examples
    --------
    >>> truth = [[1, 1, 0, 2, 2]]
    >>> pred = [[1, 1, 1, 1, 0]]    # one prediction merges both nuclei
    >>> aggregated_jaccard_index(pred, truth)  # C = 2 + 1, U = 4 + 5
    0.3333333333333333
    """
    ov = as_overlap(pred, truth)
    if ov.n_pred == 0 and ov.n_truth == 0:
        return float("nan")
    iou = ov.pair_iou
    # Per truth object: the pair with the largest IoU, ties to the lowest prediction.
    order = np.lexsort((ov.pair_pred, -iou, ov.pair_truth))
    t_sorted = ov.pair_truth[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = t_sorted[1:] != t_sorted[:-1]
    best = order[first]
    inter = int(ov.pair_inter[best].sum())
    union = int(ov.pair_union[best].sum())
    matched_truth = np.zeros(ov.n_truth, dtype=bool)
    matched_truth[ov.pair_truth[best]] = True
    used_pred = np.zeros(ov.n_pred, dtype=bool)
    used_pred[ov.pair_pred[best]] = True
    union += int(ov.truth_area[~matched_truth].sum()) + int(ov.pred_area[~used_pred].sum())
    return ratio(inter, union)


def match_instances(pred, truth=None, *, iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of objects with IoU above a threshold.

    For ``iou_threshold >= 0.5`` every pair above the threshold is already
    unique (an object cannot overlap two others by more than half of their
    union each), so the matching is exact and needs no search. Below 0.5 the
    pairs are assigned by the Hungarian algorithm to maximise the summed IoU
    (as StarDist's ``matching``).

    Parameters
    ----------
    pred, truth : array_like of int
        Label maps of the same shape, or an :class:`InstanceOverlap` as
        ``pred`` alone.
    iou_threshold : float
        Pairs need ``IoU > iou_threshold``; in [0, 1).

    Returns
    -------
    pred_index, truth_index : ndarray of int
        Indices into ``pred_ids`` and ``truth_ids`` of the matched pairs.
    iou : ndarray of float
        Their IoU.
    """
    if not 0 <= iou_threshold < 1:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
    ov = as_overlap(pred, truth)
    iou = ov.pair_iou
    keep = iou > iou_threshold
    pi, ti, iou = ov.pair_pred[keep], ov.pair_truth[keep], iou[keep]
    if iou_threshold < 0.5 and iou.size:
        rows, pi_local = np.unique(pi, return_inverse=True)
        cols, ti_local = np.unique(ti, return_inverse=True)
        score = np.zeros((rows.size, cols.size))
        score[pi_local, ti_local] = iou
        r, c = linear_sum_assignment(score, maximize=True)
        ok = score[r, c] > 0
        r, c = r[ok], c[ok]
        pi, ti, iou = rows[r], cols[c], score[r, c]
    return pi, ti, iou


class PQResult(NamedTuple):
    """Panoptic quality and its parts, for one image.

    ``pq = dq * sq``; ``dq = tp / (tp + fp/2 + fn/2)`` is the F1 of detection;
    ``sq`` is the mean IoU of the matched pairs.
    """

    pq: float
    dq: float
    sq: float
    tp: int
    fp: int
    fn: int


def panoptic_quality(pred, truth=None, *, iou_threshold: float = 0.5) -> PQResult:
    """Panoptic quality (Kirillov et al. [2]_) of one image's nuclei.

    Parameters
    ----------
    pred, truth : array_like of int
        Label maps of the same shape, or an :class:`InstanceOverlap` as
        ``pred`` alone.
    iou_threshold : float
        A prediction and a truth object match when their IoU exceeds this;
        0.5 (the definition) makes every match unique.

    Returns
    -------
    PQResult
        ``(pq, dq, sq, tp, fp, fn)``; the scores are ``nan`` when neither map
        has an object, and ``sq`` (hence ``pq``) is 0 when ``tp`` is 0.

    Examples
    --------
    >>> truth = [[1, 1, 1, 1, 0, 2]]
    >>> pred = [[1, 1, 1, 0, 0, 0]]    # IoU 3/4 with nucleus 1; nucleus 2 missed
    >>> r = panoptic_quality(pred, truth)
    >>> r.tp, r.fp, r.fn, round(r.dq, 4), r.sq, round(r.pq, 4)
    (1, 0, 1, 0.6667, 0.75, 0.5)
    """
    ov = as_overlap(pred, truth)
    _, _, iou = match_instances(ov, iou_threshold=iou_threshold)
    tp = int(iou.size)
    fp, fn = ov.n_pred - tp, ov.n_truth - tp
    if tp + fp + fn == 0:
        nan = float("nan")
        return PQResult(nan, nan, nan, 0, 0, 0)
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(iou.sum()) / tp if tp else 0.0
    return PQResult(dq * sq, dq, sq, tp, fp, fn)


def f1_at_iou(pred, truth=None, *, iou_threshold: float = 0.5) -> float:
    """Detection F1 with matches at ``IoU > iou_threshold``.

    ``2 tp / (2 tp + fp + fn)``; at a threshold of 0.5 this equals the DQ of
    :func:`panoptic_quality`.

    Parameters
    ----------
    pred, truth : array_like of int
        Label maps of the same shape, or an :class:`InstanceOverlap` as
        ``pred`` alone.
    iou_threshold : float
        In [0, 1).

    Returns
    -------
    float
        ``nan`` when neither map has an object.
    """
    ov = as_overlap(pred, truth)
    tp = int(match_instances(ov, iou_threshold=iou_threshold)[2].size)
    return ratio(2 * tp, ov.n_pred + ov.n_truth)


def evaluate_instances(
    pred, truth, *, iou_threshold: float = 0.5, alpha: float = 0.5, beta: float = 0.5
) -> dict[str, float | int]:
    """Every figure of one image, from a single contingency table.

    Parameters
    ----------
    pred, truth : array_like of int
        Label maps of the same shape, 0 background.
    iou_threshold : float
        Matching threshold of PQ / F1.
    alpha, beta : float
        Tversky weights of false positives and false negatives
        (see :func:`~napari_ihcseg.metrics.pixel.tversky_index`).

    Returns
    -------
    dict
        The keys of :data:`INSTANCE_METRICS`: object counts; pixel ``dice``,
        ``iou``, ``tversky`` and their ``*_loss`` (1 − index); ``aji``;
        ``pq``, ``dq``, ``sq``; ``f1``, ``precision``, ``recall`` of
        detection at the IoU threshold with their ``tp``, ``fp``, ``fn``.

    Examples
    --------
    >>> labels = [[0, 1, 1], [2, 0, 0]]
    >>> m = evaluate_instances(labels, labels)
    >>> m["dice"], m["aji"], m["pq"], m["f1"]
    (1.0, 1.0, 1.0, 1.0)
    """
    ov = instance_overlap(pred, truth)
    pixels = ov.confusion_counts()
    dice = dice_from_counts(*pixels)
    iou = iou_from_counts(*pixels)
    tversky = tversky_from_counts(*pixels, alpha=alpha, beta=beta)
    pq = panoptic_quality(ov, iou_threshold=iou_threshold)
    return {
        "n_pred": ov.n_pred,
        "n_truth": ov.n_truth,
        "dice": dice,
        "iou": iou,
        "tversky": tversky,
        "dice_loss": 1.0 - dice,
        "iou_loss": 1.0 - iou,
        "tversky_loss": 1.0 - tversky,
        "aji": aggregated_jaccard_index(ov),
        "pq": pq.pq,
        "dq": pq.dq,
        "sq": pq.sq,
        "f1": ratio(2 * pq.tp, ov.n_pred + ov.n_truth),
        "precision": ratio(pq.tp, ov.n_pred),
        "recall": ratio(pq.tp, ov.n_truth),
        "tp": pq.tp,
        "fp": pq.fp,
        "fn": pq.fn,
    }


def average_by_source(rows_by_source, keys) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Average per-image figures within each source, then over sources.

    Each source then weighs the same however many images it has (two IHC
    tiles as much as fifteen H&E images). ``nan`` figures (nothing to score)
    are left out of the means; a mean over nothing is ``nan``.

    Parameters
    ----------
    rows_by_source : mapping of str to sequence of mapping
        Per-image figures, grouped by source.
    keys : sequence of str
        The figures to average.

    Returns
    -------
    overall : dict
        The mean over sources of each figure.
    per_source : dict of dict
        The mean of each figure within each source.

    Examples
    --------
    >>> overall, _ = average_by_source({"he": [{"aji": 0.6}, {"aji": 0.8}], "ihc": [{"aji": 0.4}]}, ["aji"])
    >>> round(overall["aji"], 3)
    0.55
    """
    per_source = {src: {k: _nanmean([r[k] for r in rows]) for k in keys} for src, rows in rows_by_source.items()}
    overall = {k: _nanmean([v[k] for v in per_source.values()]) for k in keys}
    return overall, per_source


def _nanmean(values) -> float:
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else float("nan")
