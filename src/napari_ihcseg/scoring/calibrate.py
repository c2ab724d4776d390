"""Calibrate the positive/negative call on point-annotated fields.

Pathologists mark Ki-67 nuclei as points, positive or negative, inside a
region where the annotation is complete. :func:`labelled_nuclei` segments
nothing itself: it takes a model's labels of such a field, measures every
detected nucleus (:func:`~napari_ihcseg.scoring.measure_nuclei` and
:func:`~napari_ihcseg.scoring.classifier.nucleus_features`) and matches the
detections inside the region to the points (:func:`~napari_ihcseg.metrics.match_points`,
radius half the median nucleus diameter): a matched detection takes its
point's class, an unmatched one is a detection no annotator counted.

:func:`calibrate_classifier` fits the classifier on the matched nuclei of
many fields (each field weighted equally, so that one large field does not
decide), and optionally a ``reject`` model on matched against unmatched
detections; :func:`best_dab_cut` finds the single DAB cut that the presets
would use instead. :func:`classification_figures` gives, per field, the class
agreement on matched nuclei and the Ki-67 index against the points, so that
both can be compared on held-out fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_ihcseg.scoring.classifier import (
    FEATURES,
    LogisticModel,
    NucleusClassifier,
    fit_logistic,
    nucleus_features,
)
from napari_ihcseg.scoring.measure import measure_nuclei
from napari_ihcseg.stain import H_DAB, StainVectors

#: Features of the reject model (size and contrast matter, absolute stain less).
REJECT_FEATURES = FEATURES


@dataclass(frozen=True)
class LabelledField:
    """The detections of one point-annotated field, matched to its points.

    Attributes
    ----------
    name : str
        The field (case) name.
    cells : pandas.DataFrame
        Every detection inside the region, with the features of
        :data:`~napari_ihcseg.scoring.classifier.FEATURES` and ``truth``:
        1 positive, 0 negative (matched to a point), -1 unmatched.
    n_points, n_positive_points : int
        The points inside the region, and how many are positive.
    radius : float
        The matching radius used (pixels).
    """

    name: str
    cells: pd.DataFrame
    n_points: int
    n_positive_points: int
    radius: float

    @property
    def truth_index(self) -> float:
        """The Ki-67 index of the points (percent)."""
        return 100.0 * self.n_positive_points / self.n_points if self.n_points else float("nan")


def labelled_nuclei(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    points,
    positive,
    *,
    region: np.ndarray | None = None,
    radius: float | None = None,
    stains: StainVectors = H_DAB,
) -> LabelledField:
    """Measure a field's detections and match them to its annotated points.

    Parameters
    ----------
    name : str
        Reported with the field.
    image : (H, W, 3) array of uint8
        The field.
    labels : (H, W) array of int
        Detected nuclei (e.g. from :func:`~napari_ihcseg.inference.segment_image`).
    points : (N, 2) array_like
        Annotated nucleus centres, (row, col) in the field's pixels.
    positive : (N,) array_like of bool
        The class of each point.
    region : (H, W) array of bool, optional
        Where the annotation is complete; detections and points outside it
        are ignored. Default: the whole field.
    radius : float, optional
        Matching radius; default half the median diameter of the detections.
    """
    from napari_ihcseg.metrics.points import match_points, values_at_points

    points = np.asarray(points, np.float64).reshape(-1, 2)
    positive = np.asarray(positive, bool).ravel()
    if region is None:
        region = np.ones(labels.shape, bool)
    region = np.asarray(region, bool)
    if region.shape != labels.shape:
        raise ValueError(f"{name}: region of shape {region.shape} does not match labels {labels.shape}")
    cells = measure_nuclei(image, labels, stains=stains)
    cells = nucleus_features(image, labels, cells, stains=stains)
    cells = cells[values_at_points(region, cells[["centroid_y", "centroid_x"]].to_numpy())].reset_index(drop=True)
    inside = values_at_points(region, points)
    points, positive = points[inside], positive[inside]
    if radius is None:
        area = float(np.median(cells["area_px"])) if len(cells) else 50.0
        radius = float(np.sqrt(area / np.pi))
    match = match_points(cells[["centroid_y", "centroid_x"]].to_numpy(), points, radius=radius)
    truth = np.full(len(cells), -1, np.int8)
    truth[match.pred_index] = positive[match.truth_index].astype(np.int8)
    cells["truth"] = truth
    return LabelledField(name, cells, int(len(points)), int(positive.sum()), float(radius))


def _pooled(fields: Sequence[LabelledField], matched_only: bool):
    tables, weights = [], []
    for field in fields:
        table = field.cells[field.cells["truth"] >= 0] if matched_only else field.cells
        if len(table):
            tables.append(table)
            weights.append(np.full(len(table), 1.0 / len(table)))
    if not tables:
        raise ValueError("no detection matched a point; nothing to calibrate on")
    return pd.concat(tables, ignore_index=True), np.concatenate(weights)


def calibrate_classifier(
    fields: Iterable[LabelledField],
    *,
    features: Sequence[str] = FEATURES,
    reject: bool = False,
    reject_threshold: float = 0.5,
    l2: float = 1e-3,
) -> NucleusClassifier:
    """Fit the positive/negative classifier (and optionally ``reject``) on labelled fields.

    Every field weighs the same in the fit, however many nuclei it has.
    ``reject`` learns matched (counted) against unmatched detections inside
    the regions.
    """
    fields = list(fields)
    table, weights = _pooled(fields, matched_only=True)
    x = table[list(features)].to_numpy(np.float64)
    model = fit_logistic(x, table["truth"].to_numpy() == 1, features=features, l2=l2, weights=weights)
    reject_model: LogisticModel | None = None
    if reject:
        every, w_all = _pooled(fields, matched_only=False)
        reject_model = fit_logistic(every[list(REJECT_FEATURES)].to_numpy(np.float64),
                                    every["truth"].to_numpy() < 0, features=REJECT_FEATURES, l2=l2,
                                    weights=w_all, threshold=reject_threshold)
    return NucleusClassifier(model, reject_model)


def best_dab_cut(fields: Iterable[LabelledField], grid: Sequence[float] | None = None) -> float:
    """The DAB OD cut with the smallest mean |Δ Ki-67 index| over the fields (ties: the lower cut)."""
    fields = list(fields)
    grid = np.round(np.arange(0.05, 0.6001, 0.01), 3) if grid is None else np.asarray(grid, np.float64)
    errors = [np.nanmean([abs(_index(f, f.cells["dab_od_mean"].to_numpy() >= cut) - f.truth_index)
                          for f in fields]) for cut in grid]
    return float(grid[int(np.nanargmin(errors))])


def _index(field: LabelledField, positive: np.ndarray, counted: np.ndarray | None = None) -> float:
    counted = np.ones(len(positive), bool) if counted is None else counted
    n = int(counted.sum())
    return 100.0 * float(np.sum(positive & counted)) / n if n else float("nan")


def classification_figures(field: LabelledField, positive: np.ndarray,
                           counted: np.ndarray | None = None) -> dict:
    """Class agreement on matched nuclei and the Ki-67 index of one field's calls.

    Parameters
    ----------
    field : LabelledField
    positive : (N,) array of bool
        The call of each detection of ``field.cells``.
    counted : (N,) array of bool, optional
        Which detections the score counts (default all).

    Returns
    -------
    dict
        ``agreement`` (matched nuclei), ``index`` and ``truth_index``
        (percent), ``abs_delta_index``, ``precision`` (counted detections
        that match a point) and ``n_counted``.
    """
    positive = np.asarray(positive, bool)
    counted = np.ones(len(positive), bool) if counted is None else np.asarray(counted, bool)
    truth = field.cells["truth"].to_numpy()
    matched = (truth >= 0) & counted
    agreement = float(np.mean(positive[matched] == (truth[matched] == 1))) if matched.any() else float("nan")
    index = _index(field, positive, counted)
    return {"agreement": agreement, "index": index, "truth_index": field.truth_index,
            "abs_delta_index": abs(index - field.truth_index),
            "precision": float(matched.sum() / counted.sum()) if counted.any() else float("nan"),
            "n_counted": int(counted.sum())}
