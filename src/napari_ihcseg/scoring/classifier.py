"""A per-nucleus positive/negative classifier calibrated on labelled nuclei.

A single DAB cut on the nucleus mean (the presets) calls a hematoxylin
nucleus positive when brown cytoplasm bleeds into its outline, and counts a
brown blob of cytoplasm as a positive nucleus. The classifier here looks at
the nucleus *and at a ring around it*: optical-density statistics of both
stains inside the nucleus (mean and quartiles), of DAB in the ring, their
difference, and the nucleus size. It is a logistic regression on standardised
features, stored as plain JSON numbers in a checkpoint's ``config.json``
(``classifiers``, keyed by stain), next to the instance settings, and used by
scoring unless the user sets the DAB thresholds.

An optional second logistic model, ``reject``, gives the probability that a
detection is not a nucleus an annotator would count (brown cytoplasm, debris,
stroma); rejected detections are left out of the score.

Features are measured by :func:`nucleus_features` (one vectorised pass over
the labelled and ring pixels); :func:`fit_logistic` fits a model by Newton's
method with a small L2 penalty. Calibration on point-annotated fields is in
:mod:`napari_ihcseg.scoring.calibrate`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_ihcseg.stain import H_DAB, OD_LUT, StainVectors

#: The features a classifier may use, in the order :func:`nucleus_features` adds them.
FEATURES = (
    "dab_od_mean", "dab_od_q25", "dab_od_q75", "hematoxylin_od_mean", "hematoxylin_od_q75",
    "ring_dab_od_mean", "ring_hematoxylin_od_mean", "dab_contrast", "log_area",
)
#: Ring width around each nucleus, as a fraction of the image's median nucleus diameter.
RING_FRACTION = 0.3
#: Range of the ring width in pixels.
RING_PX_RANGE = (2, 20)


def ring_width(areas) -> int:
    """The ring width in pixels for nuclei of these areas (a fraction of the median diameter).

    >>> ring_width([314.0] * 10)   # 20-px nuclei
    6
    """
    areas = np.asarray(areas, np.float64)
    if areas.size == 0:
        return RING_PX_RANGE[0]
    diameter = 2.0 * math.sqrt(float(np.median(areas)) / math.pi)
    return int(np.clip(round(RING_FRACTION * diameter), *RING_PX_RANGE))


def _concentrations(image: np.ndarray, rr: np.ndarray, cc: np.ndarray, stains: StainVectors) -> np.ndarray:
    """Per-pixel (hematoxylin, DAB) concentrations at ``(rr, cc)``."""
    od = OD_LUT[image[rr, cc]]
    return (od @ np.linalg.inv(stains.matrix))[:, :2]


def _per_label(index: np.ndarray, values: np.ndarray, n: int, quantiles: Sequence[float]):
    """Mean and quantiles of ``values`` grouped by ``index`` (0..n-1); NaN for empty groups."""
    counts = np.bincount(index, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(index, weights=values, minlength=n) / counts
    order = np.lexsort((values, index))
    ordered = values[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = []
    for q in quantiles:
        pos = start + np.floor(q * np.maximum(counts - 1, 0)).astype(np.int64)
        vals = ordered[np.minimum(pos, max(ordered.size - 1, 0))] if ordered.size else np.zeros(n)
        out.append(np.where(counts > 0, vals, np.nan))
    return mean, out


def _rows_of(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The row of ``ids`` holding each of ``values``, -1 where none does (sparse, so huge ids cost nothing).

    >>> _rows_of(np.array([7, 3, 5, 2**40]), np.array([2**40, 7, 3]))
    array([ 1,  2, -1,  0])
    """
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    values = np.asarray(values).astype(np.int64, copy=False)
    pos = np.clip(np.searchsorted(sorted_ids, values), 0, max(len(ids) - 1, 0))
    found = sorted_ids[pos] == values if len(ids) else np.zeros(len(values), bool)
    return np.where(found, order[pos] if len(ids) else -1, -1)


def nucleus_features(
    image: np.ndarray,
    labels: np.ndarray,
    cells: pd.DataFrame,
    *,
    stains: StainVectors = H_DAB,
) -> pd.DataFrame:
    """Add the classifier features of :data:`FEATURES` to a cells table.

    Parameters
    ----------
    image : (H, W, 3) array of uint8
        The RGB image the cells were measured on.
    labels : (H, W) array of int
        Its nucleus labels.
    cells : pandas.DataFrame
        From :func:`~napari_ihcseg.scoring.measure_nuclei` (``label``,
        ``area_px``, ``dab_od_mean``, ``hematoxylin_od_mean``).
    stains : StainVectors
        The colour-deconvolution vectors of the measurements.

    Returns
    -------
    pandas.DataFrame
        A copy of ``cells`` with the feature columns. The ring is the band of
        :func:`ring_width` pixels that :func:`skimage.segmentation.expand_labels`
        adds around each nucleus (never into another one); a nucleus without
        ring pixels gets its own means there (no contrast).

    Examples
    --------
    >>> from napari_ihcseg.scoring import measure_nuclei
    >>> from napari_ihcseg.stain import compose
    >>> c = np.zeros((20, 20, 3), np.float32); c[..., 1] = 0.4   # brown all over
    >>> c[5:12, 5:12, 0] = 0.6; c[5:12, 5:12, 1] = 0.05          # a blue nucleus
    >>> lab = np.zeros((20, 20), np.int32); lab[5:12, 5:12] = 1
    >>> image = compose(c)
    >>> f = nucleus_features(image, lab, measure_nuclei(image, lab))
    >>> bool(f.dab_contrast[0] < -0.3), bool(f.ring_dab_od_mean[0] > 0.35)
    (True, True)
    """
    from skimage.segmentation import expand_labels

    out = cells.copy()
    n = len(out)
    if n == 0:
        for name in FEATURES:
            out[name] = np.zeros(0)
        return out
    ids = out["label"].to_numpy(np.int64)

    rr, cc = np.nonzero(labels)
    index = _rows_of(labels[rr, cc], ids)
    keep = index >= 0
    conc = _concentrations(image, rr[keep], cc[keep], stains)
    _, (d25, d75) = _per_label(index[keep], conc[:, 1], n, (0.25, 0.75))
    _, (h75,) = _per_label(index[keep], conc[:, 0], n, (0.75,))

    width = ring_width(out["area_px"].to_numpy())
    grown = expand_labels(labels, distance=width)
    rr, cc = np.nonzero((grown > 0) & (labels == 0))
    index = _rows_of(grown[rr, cc], ids)
    keep = index >= 0
    ring = _concentrations(image, rr[keep], cc[keep], stains)
    ring_h, _ = _per_label(index[keep], ring[:, 0], n, ())
    ring_d, _ = _per_label(index[keep], ring[:, 1], n, ())

    dab, hema = out["dab_od_mean"].to_numpy(np.float64), out["hematoxylin_od_mean"].to_numpy(np.float64)
    ring_d = np.where(np.isnan(ring_d), dab, ring_d)
    ring_h = np.where(np.isnan(ring_h), hema, ring_h)
    out["dab_od_q25"], out["dab_od_q75"], out["hematoxylin_od_q75"] = d25, d75, h75
    out["ring_dab_od_mean"], out["ring_hematoxylin_od_mean"] = ring_d, ring_h
    out["dab_contrast"] = dab - ring_d
    out["log_area"] = np.log(np.maximum(out["area_px"].to_numpy(np.float64), 1.0))
    return out


@dataclass(frozen=True)
class LogisticModel:
    """A logistic regression on standardised features, in plain numbers.

    ``p = 1 / (1 + exp(-(intercept + sum(coef * (x - mean) / scale))))``.
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5

    def __post_init__(self) -> None:
        k = len(self.features)
        if k == 0:
            raise ValueError("a classifier needs at least one feature")
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {', '.join(unknown)}; valid: {', '.join(FEATURES)}")
        for name in ("mean", "scale", "coef"):
            values = getattr(self, name)
            if len(values) != k:
                raise ValueError(f"{name} has {len(values)} values for {k} features")
            if not all(_is_finite_number(v) for v in values):
                raise ValueError(f"{name} must be finite numbers, got {list(values)}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if not all(v > 0 for v in self.scale):
            raise ValueError(f"scale must be positive, got {list(self.scale)}")
        if not _is_finite_number(self.intercept):
            raise ValueError(f"intercept must be a finite number, got {self.intercept!r}")
        if not _is_finite_number(self.threshold) or not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be a number in (0, 1), got {self.threshold!r}")
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "intercept", float(self.intercept))
        object.__setattr__(self, "threshold", float(self.threshold))

    def probability(self, table) -> np.ndarray:
        """The probability of each row of a table (DataFrame or mapping of columns)."""
        missing = [f for f in self.features if f not in table]
        if missing:
            raise ValueError(f"the cells table lacks the classifier feature(s) {', '.join(missing)}; "
                             "measure them with nucleus_features (score_image does)")
        x = np.stack([np.asarray(table[f], np.float64) for f in self.features], axis=1)
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale) @ np.asarray(self.coef) + self.intercept
        z = np.where(np.isnan(z), -np.inf, z)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))

    def predict(self, table) -> np.ndarray:
        """``probability >= threshold``."""
        return self.probability(table) >= self.threshold

    def to_dict(self) -> dict:
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept, "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "classifier") -> LogisticModel:
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a JSON object, got {type(data).__name__}")
        required = ("features", "mean", "scale", "coef", "intercept")
        missing = [k for k in required if k not in data]
        unknown = [k for k in data if k not in (*required, "threshold")]
        if missing or unknown:
            raise ValueError(f"{source}: " + "; ".join(
                [f"missing key(s) {', '.join(missing)}"] * bool(missing)
                + [f"unknown key(s) {', '.join(map(str, unknown))}"] * bool(unknown)))
        try:
            return cls(tuple(data["features"]), tuple(data["mean"]), tuple(data["scale"]),
                       tuple(data["coef"]), data["intercept"], data.get("threshold", 0.5))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None


@dataclass(frozen=True)
class NucleusClassifier:
    """Positive/negative call of each nucleus, and optionally which to leave out.

    Parameters
    ----------
    positive : LogisticModel
        Probability that a nucleus is positive.
    reject : LogisticModel, optional
        Probability that a detection is not a nucleus to count; those at or
        above its threshold are left out of the score.
    """

    positive: LogisticModel
    reject: LogisticModel | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """Every feature either model reads."""
        names = set(self.positive.features) | set(self.reject.features if self.reject else ())
        return tuple(f for f in FEATURES if f in names)

    def to_dict(self) -> dict:
        out = {"positive": self.positive.to_dict()}
        if self.reject is not None:
            out["reject"] = self.reject.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "classifier") -> NucleusClassifier:
        """Read a classifier back from :meth:`to_dict`'s JSON, validating every number."""
        if not isinstance(data, Mapping) or "positive" not in data:
            raise ValueError(f"{source}: expected a JSON object with a 'positive' model")
        unknown = [k for k in data if k not in ("positive", "reject")]
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {', '.join(map(str, unknown))}; valid: positive, reject")
        reject = data.get("reject")
        return cls(LogisticModel.from_dict(data["positive"], f"{source}.positive"),
                   None if reject is None else LogisticModel.from_dict(reject, f"{source}.reject"))


def check_classifiers(data, source: str = "classifiers") -> dict[str, dict]:
    """Validate a checkpoint's ``classifiers`` object (stain -> classifier JSON).

    Returns it with stain keys normalised (``"Ki-67"`` -> ``"ki67"``).
    """
    from napari_ihcseg.scoring.presets import get_preset

    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: expected a JSON object keyed by stain, got {type(data).__name__}")
    out = {}
    for stain, value in data.items():
        try:
            key = get_preset(stain).name
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None
        out[key] = NucleusClassifier.from_dict(value, f"{source}.{stain}").to_dict()
    return out


def fit_logistic(x, y, *, features: Sequence[str], l2: float = 1e-3, weights=None,
                 threshold: float = 0.5, max_iter: int = 50) -> LogisticModel:
    """Fit a logistic regression by Newton's method (L2-penalised, intercept free).

    Parameters
    ----------
    x : (N, K) array_like
        Feature values; rows with a non-finite value are dropped.
    y : (N,) array_like of bool
        The classes.
    features : sequence of str
        The names of the K columns (from :data:`FEATURES`).
    l2 : float
        Penalty on the standardised coefficients, per sample.
    weights : (N,) array_like, optional
        Sample weights (e.g. to balance cases).
    threshold : float
        The probability cut stored with the model.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(400, 1)); y = x[:, 0] + 0.3 * rng.normal(size=400) > 0
    >>> m = fit_logistic(x, y, features=["dab_od_mean"])
    >>> float(np.mean(m.predict({"dab_od_mean": x[:, 0]}) == y)) > 0.9
    True
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, bool).ravel()
    if x.ndim != 2 or x.shape[0] != y.size or x.shape[1] != len(features):
        raise ValueError(f"x must be (N, {len(features)}) with N = len(y) = {y.size}, got shape {x.shape}")
    w = np.ones(y.size) if weights is None else np.asarray(weights, np.float64).ravel()
    ok = np.isfinite(x).all(axis=1) & np.isfinite(w)
    x, y, w = x[ok], y[ok], w[ok]
    if y.all() or not y.any():
        raise ValueError(f"need examples of both classes to fit, got {int(y.sum())} of {y.size} true")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = np.column_stack([np.ones(len(x)), (x - mean) / scale])
    w = w / w.mean()
    beta = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2 * len(x))
    penalty[0] = 0.0
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -500, 500)))
        grad = z.T @ (w * (p - y)) + penalty * beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return LogisticModel(tuple(features), tuple(mean), tuple(scale), tuple(beta[1:]), float(beta[0]),
                         threshold)


def _is_finite_number(value) -> bool:
    return (not isinstance(value, bool) and isinstance(value, (int, float, np.floating, np.integer))
            and math.isfinite(float(value)))
