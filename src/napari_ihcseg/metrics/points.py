"""Point matching for point-annotated nuclei (e.g. Ki-67 positive/negative dots).

A predicted nucleus (its centroid) and an annotated point match when they lie
within ``radius`` pixels of each other; each may match at most once. Among
all such one-to-one matchings :func:`match_points` returns one with the most
pairs and, among those, the smallest summed distance (the Hungarian
algorithm, solved independently on each connected group of nearby points so
that fields with thousands of nuclei stay fast).

Empty inputs
------------
Ratios whose denominator is 0 are ``nan`` (precision without predictions,
recall without truth, agreement without matches, % positive without points);
average with :func:`numpy.nanmean`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ._common import ratio

__all__ = ["PointMatches", "match_points", "evaluate_points", "cohen_kappa", "values_at_points", "POINT_METRICS"]

#: Keys of :func:`evaluate_points`, in the order tables list them.
POINT_METRICS = (
    "n_pred", "n_truth", "tp", "fp", "fn", "precision", "recall", "f1",
    "accuracy", "kappa", "pred_pct_positive", "truth_pct_positive", "abs_delta_pct_positive",
)


def _as_points(points, name: str) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.size == 0:
        return pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{name}: expected an (N, 2) array of (row, col) points, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{name}: points must be finite")
    return pts


@dataclass(frozen=True)
class PointMatches:
    """The result of :func:`match_points`.

    Attributes
    ----------
    pred_index, truth_index : ndarray of int
        Matched pairs, as row indices into the two point arrays, sorted by
        ``truth_index``.
    distance : ndarray of float
        Distance of each pair, at most the radius.
    n_pred, n_truth : int
        The number of points on each side.
    """

    pred_index: np.ndarray
    truth_index: np.ndarray
    distance: np.ndarray
    n_pred: int
    n_truth: int

    @property
    def tp(self) -> int:
        return int(self.pred_index.size)

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_truth - self.tp


def values_at_points(array, points) -> np.ndarray:
    """The values of a 2-D ``array`` (a region mask, labels) at the pixels nearest to ``points``.

    Parameters
    ----------
    array : (H, W) array_like
    points : (N, 2) array_like of float
        ``(row, col)`` positions; those beyond the edge take the edge pixel.

    Returns
    -------
    (N,) ndarray of ``array``'s dtype

    Examples
    --------
    >>> mask = np.zeros((4, 4), bool); mask[1, 2] = True
    >>> values_at_points(mask, [[1.2, 1.6], [0.0, 0.0], [9.0, -3.0]]).tolist()
    [True, False, False]
    """
    array = np.asarray(array)
    rc = np.rint(np.asarray(points, np.float64).reshape(-1, 2)).astype(np.intp)
    rc = np.clip(rc, 0, np.asarray(array.shape[:2]) - 1)
    return array[rc[:, 0], rc[:, 1]]


def match_points(pred_points, truth_points, *, radius: float) -> PointMatches:
    """Match predicted to annotated points one-to-one within a radius.

    Parameters
    ----------
    pred_points, truth_points : array_like, shape (N, 2) and (M, 2)
        Point coordinates (row, col) in pixels.
    radius : float
        The largest distance (inclusive) at which two points may match.

    Returns
    -------
    PointMatches
        A maximum-cardinality matching of least total distance.

    Examples
    --------
    >>> m = match_points([[0, 0], [0, 9]], [[0, 1], [0, 4], [20, 20]], radius=5)
    >>> m.pred_index, m.truth_index, m.tp, m.fp, m.fn
    (array([0, 1]), array([0, 1]), 2, 0, 1)
    """
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be a finite number >= 0, got {radius}")
    pred = _as_points(pred_points, "pred_points")
    truth = _as_points(truth_points, "truth_points")
    n_p, n_t = len(pred), len(truth)
    empty = np.zeros(0, dtype=np.intp)
    if n_p == 0 or n_t == 0:
        return PointMatches(empty, empty.copy(), np.zeros(0), n_p, n_t)
    pairs = cKDTree(pred).sparse_distance_matrix(cKDTree(truth), radius, output_type="ndarray")
    pi, ti, dist = pairs["i"].astype(np.intp), pairs["j"].astype(np.intp), pairs["v"]
    if pi.size == 0:
        return PointMatches(empty, empty.copy(), np.zeros(0), n_p, n_t)
    # Independent groups: connected components of the bipartite "within radius" graph.
    graph = coo_matrix((np.ones(pi.size), (pi, n_p + ti)), shape=(n_p + n_t, n_p + n_t))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[pi]
    size = np.bincount(comp)
    single = size[edge_comp] == 2  # one prediction, one truth, one edge: match it as is
    out_p, out_t, out_d = [pi[single]], [ti[single]], [dist[single]]
    multi = ~single
    if multi.any():
        order = np.argsort(edge_comp[multi], kind="stable")
        mp, mt, md, mc = pi[multi][order], ti[multi][order], dist[multi][order], edge_comp[multi][order]
        bounds = np.flatnonzero(np.diff(mc)) + 1
        for sp, st, sd in zip(np.split(mp, bounds), np.split(mt, bounds), np.split(md, bounds)):
            rows, r_loc = np.unique(sp, return_inverse=True)
            cols, c_loc = np.unique(st, return_inverse=True)
            # Non-edges cost more than any set of real pairs can, so fewer pairs never win.
            big = radius * (min(rows.size, cols.size) + 1) + 1.0
            cost = np.full((rows.size, cols.size), big)
            cost[r_loc, c_loc] = sd
            r, c = linear_sum_assignment(cost)
            ok = cost[r, c] < big
            out_p.append(rows[r[ok]])
            out_t.append(cols[c[ok]])
            out_d.append(cost[r[ok], c[ok]])
    p_idx, t_idx, d = np.concatenate(out_p), np.concatenate(out_t), np.concatenate(out_d)
    order = np.argsort(t_idx, kind="stable")
    return PointMatches(p_idx[order], t_idx[order], d[order], n_p, n_t)


def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two boolean ratings of the same items.

    Parameters
    ----------
    a, b : array_like of bool
        Ratings of equal length (e.g. positive / negative).

    Returns
    -------
    float
        ``(p_o - p_e) / (1 - p_e)``; ``nan`` with no items, or when both
        raters gave every item the same single class (``p_e = 1``), as in
        scikit-learn.

    Examples
    --------
    >>> cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0])
    0.5
    """
    a = np.asarray(a, dtype=bool).ravel()
    b = np.asarray(b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"ratings must have the same length, got {a.size} and {b.size}")
    if a.size == 0:
        return float("nan")
    p_o = float(np.mean(a == b))
    pa, pb = float(a.mean()), float(b.mean())
    p_e = pa * pb + (1 - pa) * (1 - pb)
    return ratio(p_o - p_e, 1.0 - p_e) if p_e < 1.0 else float("nan")


def _positive(values, n: int, name: str) -> np.ndarray:
    pos = np.asarray(values)
    if pos.size and pos.dtype != bool and not np.issubdtype(pos.dtype, np.integer):
        raise TypeError(f"{name}: expected booleans (or 0/1), got dtype {pos.dtype}")
    pos = pos.astype(bool).ravel()
    if pos.size != n:
        raise ValueError(f"{name}: expected {n} values (one per point), got {pos.size}")
    return pos


def evaluate_points(
    pred_points, pred_positive, truth_points, truth_positive, *, radius: float
) -> dict[str, float | int]:
    """Detection and positive/negative agreement against point annotations.

    Parameters
    ----------
    pred_points : array_like, shape (N, 2)
        Predicted nucleus centroids (row, col).
    pred_positive : array_like of bool, shape (N,), or None
        Whether each predicted nucleus is called positive. ``None`` for a
        prediction without classes: the agreement and % positive figures are
        then ``nan`` and only detection is scored.
    truth_points : array_like, shape (M, 2)
        Annotated points (row, col).
    truth_positive : array_like of bool, shape (M,)
        Whether each annotated nucleus is positive.
    radius : float
        Matching radius in pixels (inclusive).

    Returns
    -------
    dict
        The keys of :data:`POINT_METRICS`: counts ``n_pred``, ``n_truth``,
        ``tp``, ``fp``, ``fn``; detection ``precision``, ``recall``, ``f1``;
        on the matched nuclei the class ``accuracy`` and Cohen's ``kappa``;
        ``pred_pct_positive`` and ``truth_pct_positive`` (over all points of
        each side, e.g. the Ki-67 index) and their ``abs_delta_pct_positive``.

    Examples
    --------
    >>> m = evaluate_points([[0, 0], [0, 10]], [True, False],
    ...                     [[1, 0], [0, 11], [30, 30]], [True, True, False], radius=3)
    >>> m["tp"], round(m["f1"], 2), m["accuracy"], round(m["abs_delta_pct_positive"], 1)
    (2, 0.8, 0.5, 16.7)
    """
    pred = _as_points(pred_points, "pred_points")
    truth = _as_points(truth_points, "truth_points")
    t_pos = _positive(truth_positive, len(truth), "truth_positive")
    m = match_points(pred, truth, radius=radius)
    nan = float("nan")
    truth_pct = 100.0 * float(t_pos.mean()) if t_pos.size else nan
    if pred_positive is None:
        accuracy = kappa = pred_pct = nan
    else:
        p_pos = _positive(pred_positive, len(pred), "pred_positive")
        a, b = p_pos[m.pred_index], t_pos[m.truth_index]
        accuracy = float(np.mean(a == b)) if a.size else nan
        kappa = cohen_kappa(a, b)
        pred_pct = 100.0 * float(p_pos.mean()) if p_pos.size else nan
    return {
        "n_pred": m.n_pred,
        "n_truth": m.n_truth,
        "tp": m.tp,
        "fp": m.fp,
        "fn": m.fn,
        "precision": ratio(m.tp, m.n_pred),
        "recall": ratio(m.tp, m.n_truth),
        "f1": ratio(2 * m.tp, m.n_pred + m.n_truth),
        "accuracy": accuracy,
        "kappa": kappa,
        "pred_pct_positive": pred_pct,
        "truth_pct_positive": truth_pct,
        "abs_delta_pct_positive": abs(pred_pct - truth_pct),
    }
