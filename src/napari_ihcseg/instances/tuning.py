"""Choose a model's instance-step thresholds on labelled validation images.

The mask and contour thresholds and the smallest nucleus kept suit one model
better than another: a model with soft contours splits touching nuclei only
at a lower contour threshold, and one that leaves specks of foreground in the
stroma loses them only with a larger ``min_size``. Like StarDist's threshold
optimisation, :func:`tune_instance_params` tries a grid of settings on images
with instance truth and keeps the one with the best mean of AJI and PQ. The
chosen settings are stored in the checkpoint (see
:func:`napari_ihcseg.models.set_instance_params`) and used whenever the user
does not set them.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The instance-step settings a checkpoint may carry, and their values when
#: neither the user nor the checkpoint sets them.
INSTANCE_DEFAULTS: dict[str, Any] = {"mask_threshold": 0.5, "contour_threshold": 0.5, "min_size": 16}

#: The settings :func:`tune_instance_params` tries by default (60 in all).
DEFAULT_GRID: dict[str, tuple] = {
    "mask_threshold": (0.4, 0.5, 0.6),
    "contour_threshold": (0.3, 0.4, 0.5, 0.6),
    "min_size": (16, 40, 60, 100, 160),
}


def check_instance_params(params: Mapping[str, Any], source: str = "instance settings") -> dict[str, Any]:
    """Validate instance-step settings and return them as plain numbers.

    Parameters
    ----------
    params : mapping
        Any of ``mask_threshold`` and ``contour_threshold`` (in (0, 1)) and
        ``min_size`` (an integer >= 0).
    source : str
        Named in error messages (a file, say).

    Raises
    ------
    ValueError
        For an unknown key or a value out of range.

    Examples
    --------
    >>> check_instance_params({"min_size": 60, "contour_threshold": 0.4})
    {'min_size': 60, 'contour_threshold': 0.4}
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"{source}: expected a mapping of instance settings, got {type(params).__name__}")
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in INSTANCE_DEFAULTS:
            raise ValueError(f"{source}: unknown instance setting {key!r}; valid: {', '.join(INSTANCE_DEFAULTS)}")
        if key == "min_size":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{source}: min_size must be an integer >= 0, got {value!r}")
            out[key] = int(value)
        else:
            if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                    or not 0 < value < 1):
                raise ValueError(f"{source}: {key} must be a number in (0, 1), got {value!r}")
            out[key] = float(value)
    return out


@dataclass(frozen=True)
class TuningResult:
    """The outcome of :func:`tune_instance_params`.

    Attributes
    ----------
    params : dict
        The chosen ``mask_threshold``, ``contour_threshold`` and ``min_size``.
    score : float
        Their objective: the mean of AJI and PQ, averaged per source.
    default_score : float
        The objective of :data:`INSTANCE_DEFAULTS` on the same images.
    images : int
        How many images were scored.
    scales : tuple of float
        The scale each image was predicted at (see ``scales`` of
        :func:`tune_instance_params`).
    table : list of dict
        One row per setting tried: the settings, ``aji``, ``pq`` and ``score``.
    """

    params: dict[str, Any]
    score: float
    default_score: float
    images: int
    scales: tuple[float, ...] = ()
    table: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_card(self) -> dict[str, Any]:
        """A JSON-ready summary for a model card."""
        def number(x: float) -> float | None:
            return round(x, 4) if x == x else None  # JSON has no NaN

        card = {"params": dict(self.params), "objective": "mean of AJI and PQ, averaged per source",
                "score": number(self.score), "default_score": number(self.default_score), "images": self.images}
        if any(scale != 1.0 for scale in self.scales):
            card["scales"] = {f"{scale:g}": self.scales.count(scale) for scale in sorted(set(self.scales))}
        return card


def tune_instance_params(predictions: Sequence[tuple[np.ndarray, np.ndarray]], truths: Sequence[np.ndarray], *,
                         sources: Sequence[str] | None = None, grid: Mapping[str, Sequence] | None = None,
                         scales: Sequence[float] | None = None, cancel=None) -> TuningResult:
    """Pick the instance-step settings that best match labelled images.

    Every combination of ``grid`` is run through
    :func:`~napari_ihcseg.instances.probabilities_to_instances` on every
    image; the one with the highest mean of AJI and PQ wins (the defaults are
    scored too, for comparison, but win only when they are in the grid).
    Images that cannot be scored (no nuclei, none predicted) are left out. Images are
    averaged within each source and the sources then weigh equally, as in
    training validation, so a few IHC images count as much as many H&E ones.
    A tie goes to the defaults when they are in the grid, else to the
    earlier setting of the grid.

    ``min_size`` counts the pixels the model sees, as a checkpoint's tuned
    settings do (:func:`~napari_ihcseg.inference.config.model_min_size`):
    an image predicted at ``scale`` 2 (resized ×2 for the model, its
    probabilities resized back) keeps nuclei of a quarter of ``min_size``
    of its own pixels, exactly as segmenting it at that scale will.

    Parameters
    ----------
    predictions : sequence of (mask_prob, contour_prob)
        The model's probability maps of each image.
    truths : sequence of (H, W) int arrays
        Instance labels of each image (0 background).
    sources : sequence of str, optional
        The source of each image (default: all one source).
    grid : mapping, optional
        Values to try per setting (default :data:`DEFAULT_GRID`); a setting
        left out keeps its :data:`INSTANCE_DEFAULTS` value.
    scales : sequence of float, optional
        The scale each image's probabilities were predicted at (default 1
        for all).
    cancel : callable, optional
        Returns True to stop; the best setting so far is returned.

    Returns
    -------
    TuningResult

    Raises
    ------
    ValueError
        Without images, with mismatched lengths or shapes, a grid value out
        of range, or when no image can be scored.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.zeros((32, 32), int); truth[4:14, 4:14] = 1; truth[18:28, 18:28] = 2
    >>> mask = (truth > 0) * 0.7; mask[0, 0] = 0.9  # a one-pixel speck
    >>> contour = np.zeros((32, 32))
    >>> result = tune_instance_params([(mask, contour)], [truth], grid={"mask_threshold": (0.5, 0.8)})
    >>> result.params["mask_threshold"], result.score
    (0.5, 1.0)
    """
    from napari_ihcseg.inference.config import model_min_size
    from napari_ihcseg.metrics import average_by_source, evaluate_instances

    from .postprocess import probabilities_to_instances

    if len(predictions) != len(truths) or not len(truths):
        raise ValueError(f"need one truth per prediction and at least one image, got {len(predictions)} "
                         f"prediction(s) and {len(truths)} truth(s)")
    sources = list(sources) if sources is not None else [""] * len(truths)
    if len(sources) != len(truths):
        raise ValueError(f"need one source per image, got {len(sources)} for {len(truths)} images")
    scales = tuple(float(s) for s in scales) if scales is not None else (1.0,) * len(truths)
    if len(scales) != len(truths) or not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"need one positive scale per image, got {scales} for {len(truths)} images")
    grid = {**{k: (v,) for k, v in INSTANCE_DEFAULTS.items()}, **dict(grid if grid is not None else DEFAULT_GRID)}
    names = list(INSTANCE_DEFAULTS)
    combos = [check_instance_params(dict(zip(names, values)), "grid")
              for values in itertools.product(*(grid[k] for k in names))]

    def score_of(params: dict) -> dict[str, float]:
        # An image without nuclei predicted empty scores NaN (nothing to match): it is left
        # out of the means, as in training validation, rather than making its source NaN.
        by_source: dict[str, list[dict]] = defaultdict(list)
        for (mask_prob, contour_prob), truth, source, scale in zip(predictions, truths, sources, scales):
            options = {**params, "min_size": model_min_size(params["min_size"], scale)}
            by_source[source].append(evaluate_instances(probabilities_to_instances(mask_prob, contour_prob, **options),
                                                        truth))
        overall, _ = average_by_source(by_source, ("aji", "pq"))
        return {"aji": overall["aji"], "pq": overall["pq"], "score": (overall["aji"] + overall["pq"]) / 2}

    table: list[dict[str, Any]] = []
    for params in combos:
        if cancel is not None and cancel() and table:
            break
        table.append({**params, **score_of(params)})
    scored = [row for row in table if row["score"] == row["score"]]
    if not scored:
        raise ValueError("no image could be scored (every image has no nuclei and none were predicted); "
                         "tuning needs images with nuclei")

    def is_default(row: dict) -> bool:
        return all(row[k] == v for k, v in INSTANCE_DEFAULTS.items())

    # Ties go to the defaults, then to the first row: no change without a gain.
    best = max(scored, key=lambda row: (row["score"], is_default(row)))
    default = next((row for row in table if is_default(row)), None)
    default_score = default["score"] if default is not None else score_of(dict(INSTANCE_DEFAULTS))["score"]
    return TuningResult(params={k: best[k] for k in names}, score=best["score"], default_score=default_score,
                        images=len(truths), scales=scales, table=table)


__all__ = ["DEFAULT_GRID", "INSTANCE_DEFAULTS", "TuningResult", "check_instance_params", "tune_instance_params"]
