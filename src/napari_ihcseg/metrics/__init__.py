"""Evaluation metrics for nucleus segmentation and detection.

- :mod:`~napari_ihcseg.metrics.pixel`: foreground Dice, IoU, Tversky index
  and the corresponding losses (1 − index).
- :mod:`~napari_ihcseg.metrics.instances`: AJI, panoptic quality (DQ, SQ),
  F1 at an IoU threshold, all from one sparse contingency table, the
  :class:`~napari_ihcseg.metrics.overlap.InstanceOverlap` of
  :mod:`~napari_ihcseg.metrics.overlap`.
- :mod:`~napari_ihcseg.metrics.points`: one-to-one point matching within a
  radius, detection F1, positive/negative agreement and % positive.

Figures that would be 0 / 0 (nothing on either side) are ``nan``; average
them with :func:`numpy.nanmean`.
"""

from .instances import (
    INSTANCE_METRICS,
    PQResult,
    aggregated_jaccard_index,
    average_by_source,
    evaluate_instances,
    f1_at_iou,
    match_instances,
    panoptic_quality,
)
from .overlap import InstanceOverlap, instance_overlap
from .pixel import confusion_counts, dice, dice_loss, iou, iou_loss, tversky_index, tversky_loss
from .points import POINT_METRICS, PointMatches, cohen_kappa, evaluate_points, match_points, values_at_points

__all__ = [
    "INSTANCE_METRICS",
    "POINT_METRICS",
    "InstanceOverlap",
    "PQResult",
    "PointMatches",
    "aggregated_jaccard_index",
    "average_by_source",
    "cohen_kappa",
    "confusion_counts",
    "dice",
    "dice_loss",
    "evaluate_instances",
    "evaluate_points",
    "f1_at_iou",
    "instance_overlap",
    "iou",
    "iou_loss",
    "match_instances",
    "match_points",
    "panoptic_quality",
    "tversky_index",
    "tversky_loss",
    "values_at_points",
]
