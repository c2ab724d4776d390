"""Choosing the Ki-67 DAB cut across sets (benchmarks/calibrate_ki67_sets.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(benchmark):
    return benchmark("calibrate_ki67_sets")


def calls(kind, dab, truth_index, name="case"):
    dab = np.asarray(dab, float)
    return {"set": kind, "name": name, "dab": dab, "matched_dab": dab[:0], "matched_truth": np.zeros(0, bool),
            "truth_index": float(truth_index)}


def test_a_case_counts_only_included_nuclei_inside_its_region_and_matches_within_half_a_nucleus(bench):
    region = np.zeros((60, 60), bool)
    region[:, :40] = True
    case = {"set": "immunoratio", "name": "immunoratio/x", "region": region,
            "points": np.array([[10.0, 10.0], [30.0, 30.0], [50.0, 20.0]]),
            "positive": np.array([True, False, False])}
    #                 y     x   positive included  DAB
    cells = np.array([[11.0, 12.0, 1, 1, 0.50],       # matches the positive point
                      [30.0, 38.0, 0, 1, 0.05],       # 8 px from (30, 30): counted, not matched
                      [20.0, 55.0, 1, 1, 0.90],       # outside the region
                      [50.0, 20.0, 1, 0, 0.70]])      # on a point, but left out by the score
    c = bench.case_calls(cells, case)
    np.testing.assert_allclose(c["dab"], [0.50, 0.05])
    np.testing.assert_allclose(c["matched_dab"], [0.50])
    assert c["matched_truth"].tolist() == [True]
    assert c["truth_index"] == pytest.approx(100 / 3)
    assert bench.index_error(c, 0.2) == pytest.approx(50 - 100 / 3)
    assert bench.agreement([c], 0.2) == 1.0 and bench.agreement([c], 0.6) == 0.0


def test_each_set_weighs_the_same_however_many_cases_it_has(bench):
    # Three breast cases are right between 0.1 and 0.25; one glioma frame only above 0.32.
    breast = [calls("immunoratio", [0.1] * 5 + [0.25] * 5, 50, f"b{i}") for i in range(3)]
    glioma = [calls("glioma", [0.32] * 10, 0, "g")]
    assert bench.choose_cut(breast) == pytest.approx(0.125), "ties go to the lower cut"
    assert bench.choose_cut(glioma) == pytest.approx(0.325)
    # Weighed by case the three breast cases would win (0.125); weighed by set, the glioma frame's
    # error of 100 points outweighs the breast fields' 50.
    assert bench.choose_cut(breast + glioma) == pytest.approx(0.325)
    assert bench.set_error(breast + glioma, 0.325) == pytest.approx(25.0)


def test_the_report_chooses_on_training_cases_only_and_scores_the_held_out_ones(bench, monkeypatch, tmp_path):
    def cases(data):
        points = np.array([[10.0, 10.0], [10.0, 30.0]])
        region = np.ones((40, 40), bool)
        return {s: [{"set": "immunoratio", "name": f"immunoratio/{s}", "region": region, "points": points,
                     "positive": np.array([True, False])}] for s in ("train", "held-out")}

    def cells(spec, cases, tile, cache):
        # Training case: the negative nucleus has DAB 0.15, so a cut above it is right.
        # Held-out case: its negative has DAB 0.4, which no cut chosen on training can fix.
        neg = 0.15 if cases[0]["name"].endswith("train") else 0.4
        return [np.array([[10.0, 10.0, 1, 1, 0.8], [10.0, 30.0, 0, 1, neg]])]

    monkeypatch.setattr(bench, "split_cases", cases)
    monkeypatch.setattr(bench, "predict_cells", cells)
    monkeypatch.setattr(bench, "outlined_glioma", lambda cases, cuts: [("glioma/f", 20.0, [10.0 * c for c in cuts])])
    out = tmp_path / "cut.json"
    assert bench.main(["--data-root", str(tmp_path), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["chosen"] == pytest.approx(0.175)
    assert figures["held_out"]["all held-out"]["chosen"]["abs_delta_index"] == pytest.approx(50.0)
    assert figures["held_out"]["all held-out"]["preset"]["agreement"] == pytest.approx(0.5)
    assert figures["glioma_outlined"][0]["index_at"]["0.175"] == pytest.approx(1.75)
