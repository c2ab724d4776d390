"""Pixel-level overlap of foregrounds: Dice, IoU, Tversky and their losses.

Every function takes two arrays of the same shape, a prediction and the
truth, either boolean masks or instance label maps (anything above 0 is
foreground), and compares their foregrounds pixel by pixel. Instance
identities play no part here; see :mod:`napari_ihcseg.metrics.instances`.

Empty inputs
------------
When neither array has any foreground, every figure is a 0 / 0 and the
functions return ``nan`` (as MONAI's ``DiceMetric(ignore_empty=True)`` and the
COCO evaluation, which leave such cases out of the mean). Average with
:func:`numpy.nanmean`. When only one side is empty the overlap is 0 and the
index is 0 (the loss 1).

References
----------
.. [1] L. R. Dice, "Measures of the amount of ecologic association between
       species", Ecology 26 (1945).
.. [2] S. S. M. Salehi, D. Erdogmus and A. Gholipour, "Tversky loss function
       for image segmentation using 3D fully convolutional deep networks",
       MLMI 2017, arXiv:1706.05721.
.. [3] M. Z. Alom, C. Yakopcic, T. M. Taha and V. K. Asari, "Nuclei
       segmentation with recurrent residual convolutional neural networks
       based U-Net (R2U-Net)", NAECON 2018.
"""

from __future__ import annotations

import numpy as np

from ._common import ratio

__all__ = ["dice", "iou", "tversky_index", "dice_loss", "iou_loss", "tversky_loss", "confusion_counts",
           "tversky_from_counts", "dice_from_counts", "iou_from_counts"]


def _foreground(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(
            f"{name}: expected a boolean mask or an integer label map, got dtype {a.dtype}; "
            "threshold probabilities first (e.g. prob > 0.5)"
        )
    return a > 0


def confusion_counts(pred, truth) -> tuple[int, int, int]:
    """Count true-positive, false-positive and false-negative foreground pixels.

    Parameters
    ----------
    pred, truth : array_like of bool or int
        Masks or label maps of the same shape; values above 0 are foreground.

    Returns
    -------
    tp, fp, fn : int
        Pixels that are foreground in both, only in ``pred``, only in ``truth``.

    Examples
    --------
    >>> confusion_counts([[1, 1, 0]], [[0, 2, 2]])
    (1, 1, 1)
    """
    p = _foreground(pred, "pred")
    t = _foreground(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"pred and truth must have the same shape, got {p.shape} and {t.shape}")
    n_p = int(np.count_nonzero(p))
    n_t = int(np.count_nonzero(t))
    tp = int(np.count_nonzero(p & t))
    return tp, n_p - tp, n_t - tp


def tversky_from_counts(tp: int, fp: int, fn: int, *, alpha: float = 0.5, beta: float = 0.5) -> float:
    """Tversky index ``TP / (TP + alpha*FP + beta*FN)`` from pixel counts.

    :func:`tversky_index` of two masks is this of their
    :func:`confusion_counts`; an
    :class:`~napari_ihcseg.metrics.overlap.InstanceOverlap` gives the counts
    without a second pass over the pixels.

    Parameters
    ----------
    tp, fp, fn : int
        True-positive, false-positive and false-negative pixels.
    alpha, beta : float
        Weights of false positives and false negatives, finite and >= 0.

    Returns
    -------
    float
        In [0, 1]; ``nan`` when all counts are 0, and 0 when ``tp`` is 0.

    Examples
    --------
    >>> round(tversky_from_counts(1, 1, 2, alpha=0.3, beta=0.7), 4)
    0.3704
    """
    if not (np.isfinite(alpha) and np.isfinite(beta)) or alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be finite and >= 0, got alpha={alpha}, beta={beta}")
    if tp + fp + fn == 0:
        return float("nan")
    den = tp + alpha * fp + beta * fn
    # tp == 0 with alpha = beta = 0 is a 0 / 0 although the sets differ: no overlap scores 0.
    return float(tp / den) if den > 0 else 0.0


def dice_from_counts(tp: int, fp: int, fn: int) -> float:
    """Dice coefficient ``2 TP / (2 TP + FP + FN)`` from the :func:`confusion_counts`.

    What :func:`dice` computes, for callers that already hold the counts (an
    :class:`~napari_ihcseg.metrics.overlap.InstanceOverlap`); ``nan`` when
    all counts are 0.

    Examples
    --------
    >>> dice_from_counts(1, 1, 1), dice_from_counts(0, 0, 0)
    (0.5, nan)
    """
    return ratio(2 * tp, 2 * tp + fp + fn)


def iou_from_counts(tp: int, fp: int, fn: int) -> float:
    """IoU (Jaccard index) ``TP / (TP + FP + FN)`` from the :func:`confusion_counts`.

    What :func:`iou` computes, for callers that already hold the counts;
    ``nan`` when all counts are 0.

    Examples
    --------
    >>> round(iou_from_counts(1, 1, 1), 4)
    0.3333
    """
    return ratio(tp, tp + fp + fn)


def tversky_index(pred, truth, *, alpha: float = 0.5, beta: float = 0.5) -> float:
    """Tversky index of the foregrounds: ``TP / (TP + alpha*FP + beta*FN)``.

    ``alpha`` weighs false positives (prediction outside the truth) and
    ``beta`` false negatives (truth the prediction missed), the convention of
    Salehi et al. [2]_, where ``P`` is the prediction and ``G`` the truth:
    ``|P∩G| / (|P∩G| + alpha |P\\G| + beta |G\\P|)``. ``alpha = beta = 0.5``
    gives the Dice coefficient and ``alpha = beta = 1`` the IoU (Jaccard);
    ``beta > alpha`` penalises missed nuclei more (Salehi et al. report their
    best results with ``alpha = 0.3, beta = 0.7``). Papers that report a
    Tversky figure next to Dice and IoU, such as the R2U-Net nucleus
    segmentation work [3]_, use this form; set ``alpha`` and ``beta`` to the
    values a paper states before comparing with its figures.

    Parameters
    ----------
    pred, truth : array_like of bool or int
        Masks or label maps of the same shape; values above 0 are foreground.
    alpha : float
        Weight of false-positive pixels, >= 0.
    beta : float
        Weight of false-negative pixels, >= 0.

    Returns
    -------
    float
        In [0, 1]; ``nan`` when both are empty.

    Examples
    --------
    >>> # TP = 1, FP = 1, FN = 2: 1 / (1 + 0.3 + 1.4)
    >>> round(tversky_index([[1, 1, 0, 0]], [[1, 0, 1, 1]], alpha=0.3, beta=0.7), 4)
    0.3704
    """
    return tversky_from_counts(*confusion_counts(pred, truth), alpha=alpha, beta=beta)


def dice(pred, truth) -> float:
    """Dice coefficient (F1) of the foregrounds: ``2|P∩G| / (|P| + |G|)``.

    Parameters
    ----------
    pred, truth : array_like of bool or int
        Masks or label maps of the same shape; values above 0 are foreground.

    Returns
    -------
    float
        In [0, 1]; ``nan`` when both are empty.

    Examples
    --------
    >>> dice([[1, 1, 0]], [[0, 3, 3]])
    0.5
    """
    return dice_from_counts(*confusion_counts(pred, truth))


def iou(pred, truth) -> float:
    """Intersection over union (Jaccard index) of the foregrounds.

    Parameters
    ----------
    pred, truth : array_like of bool or int
        Masks or label maps of the same shape; values above 0 are foreground.

    Returns
    -------
    float
        ``|P∩G| / |P∪G|`` in [0, 1]; ``nan`` when both are empty.

    Examples
    --------
    >>> round(iou([[1, 1, 0]], [[0, 3, 3]]), 4)
    0.3333
    """
    return iou_from_counts(*confusion_counts(pred, truth))


def dice_loss(pred, truth) -> float:
    """``1 - dice(pred, truth)``, the figure segmentation papers report as Dice loss.

    See Also
    --------
    dice
    """
    return 1.0 - dice(pred, truth)


def iou_loss(pred, truth) -> float:
    """``1 - iou(pred, truth)`` (Jaccard loss).

    See Also
    --------
    iou
    """
    return 1.0 - iou(pred, truth)


def tversky_loss(pred, truth, *, alpha: float = 0.5, beta: float = 0.5) -> float:
    """``1 - tversky_index(pred, truth, alpha=alpha, beta=beta)``.

    See Also
    --------
    tversky_index : which weight applies to which error.
    """
    return 1.0 - tversky_index(pred, truth, alpha=alpha, beta=beta)
