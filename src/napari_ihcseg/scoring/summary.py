"""Intensity classes and the per-image scores (positive %, H-score, Allred, Ki-67).

Everything here works on the per-nucleus table only, in a few vectorised
passes, so a score is recomputed in about a millisecond for tens of thousands
of nuclei when a threshold changes. Proportions are compared as exact integer
ratios (``100 * n_positive < n_nuclei`` rather than a rounded percentage), so
the category boundaries at 1 %, 10 %, 1/3 and 2/3 are exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_ihcseg.scoring.confidence import assess, percent_interval
from napari_ihcseg.scoring.hotspot import HotSpotSearch, search_hotspot
from napari_ihcseg.scoring.overrides import MODEL, human_classes
from napari_ihcseg.scoring.presets import ScoringConfig
from napari_ihcseg.scoring.stain_pattern import NON_NUCLEAR, NON_NUCLEAR_WARNING, pattern_of_cells
from napari_ihcseg.stain import StainVectors

#: Percentage points between a calibrated classifier's positive % and the DAB
#: cut's beyond which the summary warns that the image may lie outside the
#: classifier's calibration (a classifier fitted on breast fields once called
#: 82 % of a glioma frame positive where the cut and the truth said 20-22 %).
CLASSIFIER_DISAGREEMENT = 15.0

#: ``cells.attrs`` key set (to the image's "WxH") when the scoring region covers no pixel of the image.
REGION_MISSES_IMAGE = "region_misses_image"

#: The keys of an image summary, in order (see ``docs/scoring.md``).
SUMMARY_KEYS = (
    "n_nuclei", "n_positive", "positive_percent", "h_score",
    "allred_proportion_score", "allred_intensity_score", "allred_total_score",
    "interpretation", "ki67_index", "stain", "thresholds", "stain_vectors", "pixel_size_um",
    # How sure (scoring.confidence)
    "positive_percent_ci", "ki67_index_ci", "hotspot_ki67_index", "hotspot_ki67_index_ci",
    "allred_proportion_range", "min_cells", "enough_cells", "ki67_cutoff", "ki67_call",
    "uncertain_calls",
    # Where the DAB is (scoring.stain_pattern)
    "stain_pattern", "dab_nuclear_share", "n_stained_cells",
    # The Ki-67 hot spot (scoring.hotspot)
    "hotspot_n_cells", "hotspot_center_yx", "hotspot_radius_px", "hotspot_mode",
    "warnings",
)

#: ER/PR readings (ASCO/CAP 2020).
NEGATIVE, LOW_POSITIVE, POSITIVE = "negative", "low positive", "positive"


def intensity_classes(dab_od, thresholds) -> np.ndarray:
    """Intensity class of each DAB optical density: 0, 1, 2 or 3.

    A value equal to a threshold belongs to the higher class (class *k* when
    ``dab_od >= thresholds[k - 1]``). NaN gives class 0.

    Examples
    --------
    >>> intensity_classes([0.1, 0.2, 0.45, 0.9], (0.2, 0.4, 0.6)).tolist()
    [0, 1, 2, 3]
    """
    dab = np.asarray(dab_od, dtype=np.float64)
    cls = np.searchsorted(np.asarray(thresholds, np.float64), dab, side="right").astype(np.int8)
    cls[np.isnan(dab)] = 0
    return cls


def cell_classes(cells: pd.DataFrame, config: ScoringConfig) -> np.ndarray:
    """The intensity class of every nucleus of a table under ``config``.

    Without a classifier, the class of ``dab_od_mean`` (:func:`intensity_classes`).
    With one (:attr:`ScoringConfig.classifier`), negative nuclei are class 0
    and positive ones keep their DAB class, at least 1+.
    """
    cls = intensity_classes(cells["dab_od_mean"].to_numpy(), config.thresholds)
    if config.classifier is not None:
        positive = config.classifier.positive.predict(cells)
        cls = np.where(positive, np.maximum(cls, 1), 0).astype(np.int8)
    return cls


def scored_classes(cells: pd.DataFrame, config: ScoringConfig, model_classes: np.ndarray | None = None) -> np.ndarray:
    """The class each nucleus counts with: :func:`cell_classes`, except where set by hand.

    Rows whose ``class_source`` is ``"human"`` keep their ``intensity_class``
    whatever the thresholds or classifier (see
    :mod:`~napari_ihcseg.scoring.overrides`). ``model_classes``, when given,
    are the :func:`cell_classes` already computed.
    """
    cls = cell_classes(cells, config) if model_classes is None else np.array(model_classes, np.int8)
    human = human_classes(cells)
    if human.any():
        cls[human] = cells["intensity_class"].to_numpy(np.int8)[human]
    return cls


def rejected_mask(cells: pd.DataFrame, config: ScoringConfig) -> np.ndarray:
    """Detections the classifier's ``reject`` model leaves out (none without one)."""
    reject = config.classifier.reject if config.classifier is not None else None
    return np.zeros(len(cells), bool) if reject is None else reject.predict(cells)


def included_mask(cells: pd.DataFrame, config: ScoringConfig) -> np.ndarray:
    """Which nuclei count: inside the region (``in_roi``), within the area limits, not rejected."""
    n = len(cells)
    keep = np.ones(n, bool) if "in_roi" not in cells else cells["in_roi"].to_numpy(bool)
    keep = keep & ~(rejected_mask(cells, config) & ~human_classes(cells))  # a class set by hand is never rejected
    lo, hi = config.area_limits_px()
    if lo > 0 or np.isfinite(hi):
        area = cells["area_px"].to_numpy(np.float64)
        keep = keep & (area >= lo) & (area <= hi)
    return keep


def classify(cells: pd.DataFrame, config: ScoringConfig) -> pd.DataFrame:
    """A copy of ``cells`` with ``intensity_class``, ``positive``, ``included`` and ``class_source``.

    Rows whose ``class_source`` is ``"human"`` keep their class (see
    :mod:`~napari_ihcseg.scoring.overrides`); the others are ``"model"``.

    ``positive`` is 1 when the class is at least 1. ``included`` is false for
    nuclei outside the region of interest or the area limits; they keep their
    class but do not count in the summary.
    """
    out = cells.copy()
    cls = scored_classes(out, config)
    if not human_classes(out).any():
        out["class_source"] = MODEL
    out["intensity_class"] = cls
    out["positive"] = (cls >= 1).astype(np.int8)
    if "in_roi" not in out:
        out["in_roi"] = True
    out["included"] = included_mask(out, config)
    return out


def allred_proportion_score(n_positive: int, n_nuclei: int) -> int | None:
    """Allred proportion score from counts (Harvey et al. 1999).

    0 none; 1 under 1/100; 2 from 1/100 to 1/10; 3 above 1/10 up to 1/3;
    4 above 1/3 up to 2/3; 5 above 2/3. ``None`` when there are no nuclei.
    The boundaries are the fractions of the original table, which agree with
    the integer-percent table (1–10 %, 11–33 %, 34–66 %, 67–100 %); e.g.
    10.5 % scores 3.

    Examples
    --------
    >>> [allred_proportion_score(k, 100) for k in (0, 1, 10, 11, 33, 34, 66, 67)]
    [0, 2, 2, 3, 3, 4, 4, 5]
    >>> allred_proportion_score(21, 200)  # 10.5 %
    3
    """
    if n_nuclei <= 0:
        return None
    if n_positive <= 0:
        return 0
    if 100 * n_positive < n_nuclei:
        return 1
    if 10 * n_positive <= n_nuclei:
        return 2
    if 3 * n_positive <= n_nuclei:
        return 3
    if 3 * n_positive <= 2 * n_nuclei:
        return 4
    return 5


def asco_cap_interpretation(n_positive: int, n_nuclei: int) -> str | None:
    """ER/PR reading (Allison et al. 2020): negative under 1 %, low positive
    from 1 % to 10 % inclusive, positive above 10 %. ``None`` without nuclei.

    Examples
    --------
    >>> [asco_cap_interpretation(k, 1000) for k in (9, 10, 100, 101)]
    ['negative', 'low positive', 'low positive', 'positive']
    """
    if n_nuclei <= 0:
        return None
    if 100 * n_positive < n_nuclei:
        return NEGATIVE
    if 10 * n_positive <= n_nuclei:
        return LOW_POSITIVE
    return POSITIVE


def summarize(
    cells: pd.DataFrame,
    config: ScoringConfig,
    *,
    stain_vectors: StainVectors | None = None,
) -> dict:
    """Score an image from its per-nucleus table.

    The intensity classes are recomputed from ``dab_od_mean`` with
    ``config.thresholds`` (except on rows whose ``class_source`` is
    ``"human"``: see :mod:`~napari_ihcseg.scoring.overrides`), and the nuclei that count from ``in_roi`` and the
    area limits of ``config``, so this is all a threshold change needs.

    Parameters
    ----------
    cells : pandas.DataFrame
        At least ``dab_od_mean`` and ``area_px``; ``in_roi`` if a region
        limits the score.
    config : ScoringConfig
        Stain, thresholds, area limits.
    stain_vectors : StainVectors, optional
        The vectors the measurements used, recorded in the summary. By
        default ``config.stain_vectors`` or, when that is ``"estimate"``,
        ``cells.attrs["stain_vectors"]`` (set by ``score_image``).

    Returns
    -------
    summary : dict
        The keys :data:`SUMMARY_KEYS`, JSON-ready (``None`` where a value is
        undefined, e.g. percentages without nuclei). See ``docs/scoring.md``.
    """
    keep = included_mask(cells, config)
    dab = cells["dab_od_mean"].to_numpy(np.float64)[keep]
    model_cls = cell_classes(cells, config)
    disagreement = _classifier_disagreement(cells, config, model_cls, keep & ~human_classes(cells))
    all_cls = scored_classes(cells, config, model_cls)
    cls = all_cls[keep]
    counts = np.bincount(cls, minlength=4)
    n = int(keep.sum())
    n_pos = int(counts[1:].sum())

    percent = h_score = allred_i = allred_t = None
    if n:
        percent = 100.0 * n_pos / n
        h_score = 100.0 * float(counts[1] + 2 * counts[2] + 3 * counts[3]) / n
        allred_i = 0
        if n_pos:
            mean_pos = float(dab[cls >= 1].mean())
            allred_i = max(1, int(intensity_classes([mean_pos], config.thresholds)[0]))
    allred_p = allred_proportion_score(n_pos, n)
    if allred_p is not None:
        allred_t = 0 if n_pos == 0 else allred_p + allred_i

    preset = config.preset
    interpretation = (asco_cap_interpretation(n_pos, n)
                      if preset.interpretation == "asco_cap_2020" else None)
    if stain_vectors is None:
        stain_vectors = (config.stain_vectors if isinstance(config.stain_vectors, StainVectors)
                         else cells.attrs.get("stain_vectors"))
    vectors = stain_vectors.to_dict() if isinstance(stain_vectors, StainVectors) else None
    summary = {
        "n_nuclei": n,
        "n_positive": n_pos,
        "positive_percent": percent,
        "h_score": h_score,
        "allred_proportion_score": allred_p,
        "allred_intensity_score": allred_i,
        "allred_total_score": allred_t,
        "interpretation": interpretation,
        "ki67_index": percent if preset.name == "ki67" else None,
        "stain": preset.name,
        "thresholds": [float(t) for t in config.thresholds],
        "stain_vectors": vectors,
        "pixel_size_um": config.pixel_size_um,
        **_trust(cells, keep, all_cls, n_pos, n, config),
    }
    if disagreement:
        summary["warnings"].append(disagreement)
    return {key: summary[key] for key in SUMMARY_KEYS}


def _classifier_disagreement(cells: pd.DataFrame, config: ScoringConfig, classes: np.ndarray,
                             decided: np.ndarray) -> str | None:
    """A warning when the classifier's positive % (``classes`` of the ``decided`` nuclei) strays from the DAB cut's."""
    if config.classifier is None or not decided.any():
        return None
    by_cut = 100.0 * float(np.mean(intensity_classes(cells["dab_od_mean"].to_numpy(np.float64)[decided],
                                                     config.thresholds) >= 1))
    by_model = 100.0 * float(np.mean(classes[decided] >= 1))
    if abs(by_model - by_cut) <= CLASSIFIER_DISAGREEMENT:
        return None
    return (f"the calibrated classifier calls {by_model:.1f} % of the nuclei positive where the DAB cut "
            f"{config.thresholds[0]:g} calls {by_cut:.1f} %: the image may lie outside the stains and tissues "
            "it was calibrated on; check some nuclei, or score with thresholds")


def hotspot_of_cells(cells: pd.DataFrame, config: ScoringConfig, keep: np.ndarray | None = None,
                     classes: np.ndarray | None = None) -> HotSpotSearch:
    """:func:`~napari_ihcseg.scoring.hotspot.search_hotspot` of the counted cells of a scored table.

    A nucleus is positive with the class it counts with in the summary
    (:func:`scored_classes`: the thresholds or classifier, and classes set by
    hand), unless ``classes`` gives them. The size comes from ``config``
    (:meth:`ScoringConfig.hotspot_size`).
    """
    keep = included_mask(cells, config) if keep is None else keep
    classes = scored_classes(cells, config) if classes is None else classes
    positive = np.asarray(classes)[keep] >= 1
    return search_hotspot(cells["centroid_y"].to_numpy(np.float64)[keep],
                          cells["centroid_x"].to_numpy(np.float64)[keep], positive,
                          min_cells=config.hotspot_min_cells, **config.hotspot_size())


def _trust(cells: pd.DataFrame, keep: np.ndarray, classes: np.ndarray, n_pos: int, n: int,
           config: ScoringConfig) -> dict:
    """The confidence, stain-pattern and hot-spot keys of the summary."""
    ki67 = config.preset.name == "ki67"
    out = assess(n_pos, n, stain=config.preset.name, ki67_cutoff=config.ki67_cutoff,
                 min_cells=config.min_cells)
    out["ki67_index_ci"] = out["positive_percent_ci"] if ki67 else None
    pattern = pattern_of_cells(cells, keep)
    out.update(pattern)
    if pattern["stain_pattern"] == NON_NUCLEAR:
        out["warnings"].insert(0, NON_NUCLEAR_WARNING)
    if cells.attrs.get(REGION_MISSES_IMAGE):
        out["warnings"].insert(0, f"the region (ROI) covers no pixel of the {cells.attrs[REGION_MISSES_IMAGE]} "
                                  "image, so no nucleus is counted; is it the region of another image?")
    spot = hotspot_of_cells(cells, config, keep, classes).hotspot if ki67 and "centroid_y" in cells and n else None
    out.update({
        "hotspot_ki67_index": spot.index if spot else None,
        "hotspot_ki67_index_ci": percent_interval(spot.n_positive, spot.n_cells) if spot else None,
        "hotspot_n_cells": spot.n_cells if spot else None,
        "hotspot_center_yx": list(spot.center) if spot else None,
        "hotspot_radius_px": spot.radius if spot else None,
        "hotspot_mode": spot.mode if spot else None,
    })
    return out
