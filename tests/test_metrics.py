"""Metrics: hand-worked cases, invariants, and cross-checks against literal implementations."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_ihcseg.metrics import (
    INSTANCE_METRICS,
    POINT_METRICS,
    aggregated_jaccard_index,
    cohen_kappa,
    dice,
    dice_loss,
    evaluate_instances,
    evaluate_points,
    f1_at_iou,
    instance_overlap,
    iou,
    iou_loss,
    match_points,
    panoptic_quality,
    tversky_index,
    tversky_loss,
)


def boxes(shape, *rects):
    """A label map with rectangle k+1 at rows r0:r1, cols c0:c1 (later ones on top)."""
    out = np.zeros(shape, dtype=np.int32)
    for k, (r0, r1, c0, c1) in enumerate(rects, start=1):
        out[r0:r1, c0:c1] = k
    return out


# ---------------------------------------------------------------- hand-worked cases


def test_two_squares_one_shifted():
    # truth: A = rows 0-1 x cols 0-1, B = rows 3-4 x cols 3-4 (4 px each)
    # pred:  A shifted one column right (cols 1-2), B identical
    # A: inter 2, union 6, IoU 1/3 (no PQ match); B: IoU 1.
    # pixels: |P| = |T| = 8, overlap 6 -> Dice 12/16 = 0.75, IoU 6/10 = 0.6
    # AJI: C = 2 + 4 = 6, U = 6 + 4 = 10 -> 0.6
    # PQ: tp 1 (B), fp 1, fn 1 -> DQ = 1 / (1 + 1) = 0.5, SQ = 1, PQ = 0.5
    truth = boxes((6, 6), (0, 2, 0, 2), (3, 5, 3, 5))
    pred = boxes((6, 6), (0, 2, 1, 3), (3, 5, 3, 5))
    assert dice(pred, truth) == pytest.approx(0.75)
    assert iou(pred, truth) == pytest.approx(0.6)
    assert aggregated_jaccard_index(pred, truth) == pytest.approx(0.6)
    assert panoptic_quality(pred, truth) == pytest.approx((0.5, 0.5, 1.0, 1, 1, 1))
    assert f1_at_iou(pred, truth) == pytest.approx(0.5)
    assert dice_loss(pred, truth) == pytest.approx(0.25)
    assert iou_loss(pred, truth) == pytest.approx(0.4)


def test_split_nucleus():
    # truth: one 2x5 nucleus (10 px); pred splits it into 2x3 (6 px) and 2x2 (4 px)
    # IoU: 6/10 = 0.6 and 4/10 = 0.4. Pixels identical: Dice = IoU = 1.
    # AJI: best pred 0.6 -> C = 6, U = 10; unused pred adds 4 -> U = 14 -> 6/14 = 3/7
    # PQ: tp 1 (IoU 0.6), fp 1, fn 0 -> DQ = 1 / 1.5 = 2/3, SQ = 0.6, PQ = 0.4
    truth = boxes((2, 5), (0, 2, 0, 5))
    pred = boxes((2, 5), (0, 2, 0, 3), (0, 2, 3, 5))
    assert dice(pred, truth) == 1.0
    assert aggregated_jaccard_index(pred, truth) == pytest.approx(3 / 7)
    assert panoptic_quality(pred, truth) == pytest.approx((0.4, 2 / 3, 0.6, 1, 1, 0))


def test_merged_nuclei_count_the_prediction_in_each_union_but_once_as_unused():
    # truth: G1 = 2x3 (6 px) and G2 = 2x1 (2 px) side by side; pred merges both (2x4, 8 px)
    # IoU: G1 6/8 = 0.75, G2 2/8 = 0.25; both pick the merged prediction.
    # AJI: C = 6 + 2 = 8, U = 8 + 8 = 16 (the prediction is in both unions; being used,
    #      it is not added again as unused) -> 0.5
    # PQ: tp 1 (G1), fp 0, fn 1 -> DQ = 2/3, SQ = 0.75, PQ = 0.5
    truth = boxes((2, 4), (0, 2, 0, 3), (0, 2, 3, 4))
    pred = boxes((2, 4), (0, 2, 0, 4))
    assert aggregated_jaccard_index(pred, truth) == pytest.approx(0.5)
    assert panoptic_quality(pred, truth) == pytest.approx((0.5, 2 / 3, 0.75, 1, 0, 1))


def test_missed_nucleus_and_spurious_prediction():
    # truth: G1 2x2 at the top left, G2 2x2 at the bottom right
    # pred:  S1 = G1 exactly, S2 = a 1x3 bar touching nothing
    # AJI: G1 -> C = 4, U = 4; G2 has no overlapping prediction -> U += 4; S2 unused -> U += 3
    #      AJI = 4 / 11
    # PQ: tp 1, fp 1, fn 1 -> DQ 0.5, SQ 1, PQ 0.5
    truth = boxes((8, 8), (0, 2, 0, 2), (6, 8, 6, 8))
    pred = boxes((8, 8), (0, 2, 0, 2), (4, 5, 0, 3))
    assert aggregated_jaccard_index(pred, truth) == pytest.approx(4 / 11)
    assert panoptic_quality(pred, truth) == pytest.approx((0.5, 0.5, 1.0, 1, 1, 1))


def test_tversky_weights_false_positives_with_alpha_and_false_negatives_with_beta():
    # pred [1 1 0 0] vs truth [1 0 1 1]: TP 1, FP 1, FN 2
    pred, truth = np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 1]])
    assert tversky_index(pred, truth, alpha=0.3, beta=0.7) == pytest.approx(1 / (1 + 0.3 + 1.4))
    assert tversky_index(pred, truth, alpha=0.7, beta=0.3) == pytest.approx(1 / (1 + 0.7 + 0.6))
    assert tversky_index(pred, truth) == pytest.approx(dice(pred, truth)) == pytest.approx(0.4)
    assert tversky_index(pred, truth, alpha=1, beta=1) == pytest.approx(iou(pred, truth)) == pytest.approx(0.25)
    assert tversky_loss(pred, truth, alpha=0.3, beta=0.7) == pytest.approx(1 - 1 / 2.7)
    with pytest.raises(ValueError, match="alpha"):
        tversky_index(pred, truth, alpha=-1)


def test_tversky_from_counts_is_the_index_of_the_masks_and_of_one_overlap_table():
    from napari_ihcseg.metrics.overlap import as_overlap
    from napari_ihcseg.metrics.pixel import confusion_counts, tversky_from_counts

    truth = boxes((6, 6), (0, 2, 0, 2), (3, 5, 3, 5))
    pred = boxes((6, 6), (0, 2, 1, 3), (3, 6, 3, 5))
    counts = confusion_counts(pred, truth)
    table = instance_overlap(pred, truth)
    assert table.confusion_counts() == counts == (6, 4, 2)
    assert tversky_from_counts(*counts, alpha=0.3, beta=0.7) == pytest.approx(
        tversky_index(pred, truth, alpha=0.3, beta=0.7)) == pytest.approx(6 / (6 + 1.2 + 1.4))
    assert tversky_from_counts(0, 3, 0, alpha=0, beta=0) == 0.0  # no overlap scores 0, not 0 / 0
    assert math.isnan(tversky_from_counts(0, 0, 0))
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="alpha and beta must be finite and >= 0"):
            tversky_from_counts(*counts, beta=bad)
    assert as_overlap(table) is table and as_overlap(pred, truth).pair_inter.tolist() == table.pair_inter.tolist()
    with pytest.raises(TypeError, match="either an InstanceOverlap or two label maps"):
        aggregated_jaccard_index(table, truth)


def test_empty_inputs_follow_the_nan_convention():
    empty = np.zeros((5, 5), dtype=np.int32)
    one = boxes((5, 5), (1, 3, 1, 3))
    both_empty = evaluate_instances(empty, empty)
    for key in ("dice", "iou", "tversky", "aji", "pq", "dq", "sq", "f1", "precision", "recall"):
        assert math.isnan(both_empty[key]), key
    assert (both_empty["tp"], both_empty["fp"], both_empty["fn"]) == (0, 0, 0)
    for pred, truth in ((empty, one), (one, empty)):
        m = evaluate_instances(pred, truth)
        assert (m["dice"], m["iou"], m["aji"], m["pq"], m["dq"], m["sq"], m["f1"]) == (0, 0, 0, 0, 0, 0, 0)
        assert m["dice_loss"] == 1.0
    assert math.isnan(evaluate_instances(empty, one)["precision"])
    assert math.isnan(evaluate_instances(one, empty)["recall"])


def test_pq_below_half_uses_optimal_one_to_one_matching():
    # split case again: at IoU > 0.3 both halves qualify (0.6 and 0.4) for the one nucleus;
    # the matching keeps one pair, the one with the larger IoU.
    truth = boxes((2, 5), (0, 2, 0, 5))
    pred = boxes((2, 5), (0, 2, 0, 3), (0, 2, 3, 5))
    assert panoptic_quality(pred, truth, iou_threshold=0.3) == pytest.approx((0.4, 2 / 3, 0.6, 1, 1, 0))
    # 0.4 > 0.35 but G's best partner still wins
    assert f1_at_iou(pred, truth, iou_threshold=0.35) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="iou_threshold"):
        panoptic_quality(pred, truth, iou_threshold=1.0)


def test_evaluate_instances_keys_and_consistency():
    truth = boxes((6, 6), (0, 2, 0, 2), (3, 5, 3, 5))
    pred = boxes((6, 6), (0, 2, 1, 3), (3, 5, 3, 5))
    m = evaluate_instances(pred, truth, alpha=0.3, beta=0.7)
    assert tuple(m) == INSTANCE_METRICS
    assert m["pq"] == pytest.approx(m["dq"] * m["sq"])
    assert m["f1"] == pytest.approx(m["dq"])
    assert m["tversky"] == pytest.approx(tversky_index(pred, truth, alpha=0.3, beta=0.7))
    assert m["tversky_loss"] == pytest.approx(1 - m["tversky"])
    assert (m["n_pred"], m["n_truth"]) == (2, 2)


def test_input_validation():
    with pytest.raises(ValueError, match="same shape"):
        evaluate_instances(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(TypeError, match="integer label map"):
        aggregated_jaccard_index(np.zeros((3, 3), float), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match=">= 0"):
        panoptic_quality(-np.ones((3, 3), int), np.zeros((3, 3), int))
    with pytest.raises(TypeError, match="threshold probabilities"):
        dice(np.zeros((3, 3), np.float32), np.zeros((3, 3), int))


def test_sparse_and_huge_label_values_take_the_same_path_to_the_same_answer():
    truth = boxes((6, 6), (0, 2, 0, 2), (3, 5, 3, 5))
    pred = boxes((6, 6), (0, 2, 1, 3), (3, 5, 3, 5))
    huge = np.where(pred > 0, pred.astype(np.int64) * 2**40 + 7, 0)
    assert evaluate_instances(huge, truth) == evaluate_instances(pred, truth)
    table = instance_overlap(huge, truth)
    assert table.pred_ids.tolist() == [2**40 + 7, 2**41 + 7]
    assert table.pred_area.tolist() == [4, 4]


def test_1000x1000_with_700_nuclei_is_fast():
    rng = np.random.default_rng(0)
    truth = np.zeros((1000, 1000), dtype=np.int32)
    # 700 non-overlapping 20x20 nuclei on a 28 x 25 grid of 35 x 40 px cells
    cells = [(r, c) for r in range(28) for c in range(25)]
    for k, (r, c) in enumerate(cells, start=1):
        truth[r * 35 + 5 : r * 35 + 25, c * 40 + 5 : c * 40 + 25] = k
    pred = np.roll(truth, 3, axis=1)
    pred = np.where(pred > 0, rng.permutation(800)[pred] + 1, 0)
    best = min(_timed(evaluate_instances, pred, truth) for _ in range(3))
    m = evaluate_instances(pred, truth)
    assert m["n_truth"] == 700 and m["tp"] == 700  # IoU 340/460 for every nucleus
    assert m["sq"] == pytest.approx(340 / 460)
    assert best < 0.5, f"evaluate_instances took {best:.3f} s"


def _timed(fn, *args):
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- literal reference implementations


def slow_aji(pred, truth):
    """Kumar et al.'s loop over truth objects with full masks (first argmax on ties)."""
    p_ids = [i for i in np.unique(pred) if i]
    t_ids = [i for i in np.unique(truth) if i]
    if not p_ids and not t_ids:
        return float("nan")
    c = u = 0
    used = set()
    for t in t_ids:
        g = truth == t
        best, best_j = 0.0, None
        for j in p_ids:
            s = pred == j
            inter = np.logical_and(g, s).sum()
            value = inter / np.logical_or(g, s).sum()
            if value > best:
                best, best_j = value, j
        if best_j is None:
            u += g.sum()
        else:
            s = pred == best_j
            c += np.logical_and(g, s).sum()
            u += np.logical_or(g, s).sum()
            used.add(best_j)
    u += sum((pred == j).sum() for j in p_ids if j not in used)
    return c / u


def slow_pq(pred, truth):
    p_ids = [i for i in np.unique(pred) if i]
    t_ids = [i for i in np.unique(truth) if i]
    if not p_ids and not t_ids:
        return (float("nan"),) * 3 + (0, 0, 0)
    ious = []
    for t, j in itertools.product(t_ids, p_ids):
        g, s = truth == t, pred == j
        value = np.logical_and(g, s).sum() / np.logical_or(g, s).sum()
        if value > 0.5:
            ious.append(value)
    tp = len(ious)
    fp, fn = len(p_ids) - tp, len(t_ids) - tp
    dq = tp / (tp + fp / 2 + fn / 2)
    sq = sum(ious) / tp if tp else 0.0
    return (dq * sq, dq, sq, tp, fp, fn)


@st.composite
def rect_labels(draw, shape=(12, 12), max_objects=6):
    out = np.zeros(shape, dtype=np.int32)
    for k in range(1, draw(st.integers(0, max_objects)) + 1):
        r0 = draw(st.integers(0, shape[0] - 1))
        c0 = draw(st.integers(0, shape[1] - 1))
        r1 = draw(st.integers(r0 + 1, min(shape[0], r0 + 6)))
        c1 = draw(st.integers(c0 + 1, min(shape[1], c0 + 6)))
        out[r0:r1, c0:c1] = k
    return out


@st.composite
def label_pairs(draw):
    truth = draw(rect_labels())
    if draw(st.booleans()):
        pred = draw(rect_labels())
    else:  # a perturbed copy, so that IoU > 0.5 matches occur
        pred = np.roll(truth, (draw(st.integers(-1, 1)), draw(st.integers(-1, 1))), axis=(0, 1))
        extra = draw(rect_labels(max_objects=2))
        pred = np.where(extra > 0, extra + 100, pred)
    return pred, truth


def _relabel(labels, rng):
    ids = np.unique(labels)
    ids = ids[ids > 0]
    new = rng.choice(np.arange(1, 10_000), size=ids.size, replace=False)
    lut = np.zeros(labels.max() + 1, dtype=np.int64)
    lut[ids] = new
    return lut[labels]


def _has_aji_tie(pred, truth):
    """Whether some truth object has two predictions with the same, best, non-zero IoU."""
    table = instance_overlap(pred, truth)
    iou_ = table.pair_iou
    for t in np.unique(table.pair_truth):
        values = np.sort(iou_[table.pair_truth == t])[::-1]
        if values.size > 1 and values[0] == values[1]:
            return True
    return False


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(label_pairs())
def test_aji_and_pq_agree_with_the_literal_definitions(pair):
    pred, truth = pair
    expected_aji = slow_aji(pred, truth)
    got = aggregated_jaccard_index(pred, truth)
    if math.isnan(expected_aji):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected_aji, abs=1e-12)
    expected_pq = slow_pq(pred, truth)
    got_pq = panoptic_quality(pred, truth)
    assert got_pq[3:] == expected_pq[3:]
    assert np.allclose(got_pq[:3], expected_pq[:3], equal_nan=True)


@SETTINGS
@given(rect_labels())
def test_identical_labels_score_one(labels):
    m = evaluate_instances(labels, labels)
    if labels.any():
        for key in ("dice", "iou", "tversky", "aji", "pq", "dq", "sq", "f1"):
            assert m[key] == pytest.approx(1.0), key
        assert m["fp"] == m["fn"] == 0
    else:
        assert math.isnan(m["aji"]) and math.isnan(m["pq"])


@SETTINGS
@given(label_pairs(), st.integers(0, 2**32 - 1))
def test_permuting_label_ids_changes_nothing(pair, seed):
    pred, truth = pair
    rng = np.random.default_rng(seed)
    before = evaluate_instances(pred, truth)
    after = evaluate_instances(_relabel(pred, rng), _relabel(truth, rng))
    if _has_aji_tie(pred, truth):  # AJI takes the lowest label among exact ties, by definition
        before.pop("aji"), after.pop("aji")
    assert before.keys() == after.keys()
    for key in before:
        assert after[key] == pytest.approx(before[key], nan_ok=True), key


# ---------------------------------------------------------------- points


def test_optimal_point_matching_beats_greedy_nearest():
    # along one row: t1 at -2, p0 at 0, t0 at 1, p1 at 2.5; radius 2
    # greedy nearest pairs p0-t0 (d 1) and strands p1; the optimum pairs p0-t1 and p1-t0.
    pred = [[0, 0], [0, 2.5]]
    truth = [[0, 1], [0, -2]]
    m = match_points(pred, truth, radius=2)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert dict(zip(m.pred_index.tolist(), m.truth_index.tolist())) == {0: 1, 1: 0}
    assert m.distance.tolist() == [1.5, 2.0]  # sorted by truth index


def test_point_matching_radius_is_inclusive_and_prefers_short_distances():
    assert match_points([[0, 0]], [[3, 4]], radius=5).tp == 1
    assert match_points([[0, 0]], [[3, 4]], radius=4.99).tp == 0
    m = match_points([[0, 0]], [[0, 3], [0, 1]], radius=5)
    assert m.truth_index.tolist() == [1]
    empty = match_points(np.zeros((0, 2)), [[1, 1]], radius=3)
    assert (empty.tp, empty.fp, empty.fn) == (0, 0, 1)
    with pytest.raises(ValueError, match="radius"):
        match_points([[0, 0]], [[0, 0]], radius=-1)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        match_points([[0, 0, 0]], [[0, 0]], radius=1)


def _brute_force(pred, truth, radius):
    """(most pairs, least total distance) over every one-to-one matching."""
    d = np.hypot(*(pred[:, None, :] - truth[None, :, :]).transpose(2, 0, 1)) if len(pred) and len(truth) else None
    best = (0, 0.0)
    n_t = len(truth)
    for k in range(min(len(pred), n_t), 0, -1):
        for rows in itertools.combinations(range(len(pred)), k):
            for cols in itertools.permutations(range(n_t), k):
                dist = [d[r, c] for r, c in zip(rows, cols)]
                if max(dist) <= radius:
                    total = sum(dist)
                    if best[0] < k or total < best[1]:
                        best = (k, total)
        if best[0] == k:
            return best
    return best


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=5),
       st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=5),
       st.sampled_from([1.0, 2.5, 4.0]))
def test_point_matching_is_optimal(pred, truth, radius):
    pred = np.asarray(pred, float).reshape(-1, 2)
    truth = np.asarray(truth, float).reshape(-1, 2)
    m = match_points(pred, truth, radius=radius)
    assert len(set(m.pred_index.tolist())) == m.tp == len(set(m.truth_index.tolist()))
    assert np.all(m.distance <= radius)
    k, total = _brute_force(pred, truth, radius)
    assert m.tp == k
    assert m.distance.sum() == pytest.approx(total)


def test_many_points_match_quickly():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 2000, size=(4000, 2))
    pred = truth + rng.normal(0, 2, size=truth.shape)
    t0 = time.perf_counter()
    m = match_points(pred, truth, radius=8)
    assert time.perf_counter() - t0 < 5
    assert m.tp >= 3950  # a few near neighbours may swap, none should go unmatched


def test_evaluate_points_hand_case():
    # truth: 4 nuclei, 2 positive (50 %); pred: 4 nuclei, 3 positive (75 %)
    # matches: p0-t0 (+/+), p1-t1 (+/-), p2-t2 (-/-); p3 and t3 unmatched
    # detection: tp 3, fp 1, fn 1 -> precision = recall = F1 = 0.75
    # agreement on 3 matched: 2 of 3; kappa: p_o = 2/3, p_pred+ = 2/3, p_truth+ = 1/3,
    #   p_e = 2/9 + 2/9 = 4/9 -> kappa = (2/3 - 4/9) / (5/9) = 0.4
    truth = [[0, 0], [0, 20], [0, 40], [50, 50]]
    truth_pos = [True, False, False, True]
    pred = [[1, 0], [0, 21], [0, 39], [90, 90]]
    pred_pos = [True, True, False, True]
    m = evaluate_points(pred, pred_pos, truth, truth_pos, radius=3)
    assert tuple(m) == POINT_METRICS
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 1)
    assert m["precision"] == m["recall"] == m["f1"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["kappa"] == pytest.approx(0.4)
    assert (m["pred_pct_positive"], m["truth_pct_positive"], m["abs_delta_pct_positive"]) == (75.0, 50.0, 25.0)
    no_classes = evaluate_points(pred, None, truth, truth_pos, radius=3)
    assert no_classes["f1"] == pytest.approx(0.75)
    assert math.isnan(no_classes["kappa"]) and math.isnan(no_classes["abs_delta_pct_positive"])
    with pytest.raises(ValueError, match="one per point"):
        evaluate_points(pred, [True], truth, truth_pos, radius=3)


def test_cohen_kappa_edge_cases():
    assert cohen_kappa([1, 0, 1, 0], [1, 0, 1, 0]) == 1.0
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == -1.0
    assert math.isnan(cohen_kappa([0, 0], [0, 0]))  # one class only: undefined
    assert math.isnan(cohen_kappa([], []))
    empty = evaluate_points(np.zeros((0, 2)), [], np.zeros((0, 2)), [], radius=3)
    assert math.isnan(empty["f1"]) and math.isnan(empty["truth_pct_positive"])
