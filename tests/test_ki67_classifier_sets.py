"""The cross-set Ki-67 classifier check (benchmarks/ki67_classifier_sets.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_ihcseg.scoring.calibrate import LabelledField
from napari_ihcseg.scoring.classifier import FEATURES


@pytest.fixture(scope="module")
def bench(benchmark):
    return benchmark("ki67_classifier_sets")


def field(name, dab, truth, hema_shift=0.0, seed=0):
    """Detections whose positives have high DAB; ``hema_shift`` darkens every counterstain (and DAB reading)."""
    rng = np.random.default_rng(seed)
    dab = np.asarray(dab, float)
    cells = pd.DataFrame({f: rng.normal(0.3, 0.05, len(dab)) for f in FEATURES})
    cells["dab_od_mean"] = dab + hema_shift
    cells["hematoxylin_od_mean"] = 0.3 + hema_shift
    cells["truth"] = np.asarray(truth, np.int8)
    n_pos = int(np.sum(np.asarray(truth) == 1))
    return LabelledField(name, cells, int(np.sum(np.asarray(truth) >= 0)), n_pos, 5.0)


def test_smaller_sets_are_repeated_to_weigh_like_the_largest(bench):
    fields = bench.balanced({"immunoratio": list(range(20)), "glioma": ["g1", "g2", "g3", "g4"]})
    assert len(fields) == 40 and fields.count("g1") == 5 and fields.count(0) == 1


def test_set_figures_average_the_index_error_and_agreement_over_cases(bench):
    a = field("a", [0.6, 0.1, 0.1, 0.1], [1, 0, 0, 0])      # called right: index 25 %, truth 25 %
    b = field("b", [0.6, 0.6, 0.1, 0.1], [1, 0, 0, -1])     # one negative called positive; one unmatched
    figures = bench.set_figures([a, b], lambda cells: cells["dab_od_mean"].to_numpy() >= 0.5)
    # b: index 2 of 4 counted = 50 %, truth 1 of 3 points = 33.3 %.
    assert figures["abs_delta_index"] == pytest.approx((0 + (50 - 100 / 3)) / 2)
    assert figures["agreement"] == pytest.approx((1 + 2 / 3) / 2)


def test_the_report_fits_on_training_cases_and_calls_the_held_out_ones(bench, monkeypatch, capsys, tmp_path):
    def cases(data):
        return {sel: [{"set": s, "name": f"{s}/{sel}"} for s in ("immunoratio", "glioma")]
                for sel in ("train", "held-out")}

    def fields(spec, cases, tile, cache):
        dab = np.r_[np.full(10, 0.5), np.full(30, 0.05)]
        truth = np.r_[np.ones(10), np.zeros(30)]
        return [field(c["name"], dab, truth, hema_shift=0.2 if c["set"] == "glioma" else 0.0, seed=i)
                for i, c in enumerate(cases)]

    monkeypatch.setattr(bench, "split_cases", cases)
    monkeypatch.setattr(bench, "labelled_fields", fields)
    assert bench.main(["--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "classifier fitted on immunoratio, on glioma" in out and "classifier fitted on both sets" in out
    # The preset cut reads the glioma frames' darker counterstain as DAB: every nucleus called positive.
    line = next(x for x in out.splitlines() if x.strip().startswith("preset cut") and "on glioma" in x)
    assert float(line.split()[-2].strip("/").split("/")[0]) == pytest.approx(75.0)
    # Fitted on both sets, the classifier learns a cut between the two sets' negatives and positives
    # (0.25 < cut < 0.5): every held-out field is called right.
    both = next(x for x in out.splitlines() if "classifier fitted on both sets" in x)
    assert both.count("0.00 /1.000") == 3, both
