"""How sure a score is: Wilson intervals, the minimum count, uncertain calls, in the summary and exports."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from napari_ihcseg.scoring import ScoringConfig, summarize
from napari_ihcseg.scoring.confidence import (
    allred_proportion_range,
    assess,
    cuts_inside,
    percent_interval,
    wilson_interval,
)


def test_wilson_interval_worked_by_hand():
    """10 positive of 100 at 95 %, by hand (docs/scoring.md):

    z = 1.9599640, z² = 3.8414588, z²/n = 0.0384146;
    centre = (0.1 + 0.0192073) / 1.0384146 = 0.1147974;
    half = 1.9599640 / 1.0384146 · sqrt(0.1·0.9/100 + 3.8414588/40000)
         = 1.8874581 · sqrt(0.0009960365) = 1.8874581 · 0.0315600 = 0.0595683;
    interval 0.0552291 to 0.1743657.
    """
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.0552291, abs=2e-7)
    assert high == pytest.approx(0.1743657, abs=2e-7)


@pytest.mark.parametrize("k, n", [(0, 1), (0, 50), (1, 3), (7, 7), (250, 500), (5, 1000), (999, 1000)])
def test_wilson_interval_contains_the_estimate_and_stays_in_range(k, n):
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    assert (low == 0.0) == (k == 0) and (high == 1.0) == (k == n)


def test_wilson_interval_narrows_with_more_cells_and_widens_with_confidence():
    widths = [np.subtract(*wilson_interval(n // 5, n)[::-1]) for n in (100, 500, 1000, 10000)]
    assert widths == sorted(widths, reverse=True)
    assert np.subtract(*wilson_interval(20, 100, confidence=0.99)[::-1]) > widths[0]
    # Large n: close to the normal interval p ± 1.96 sqrt(p(1-p)/n).
    low, high = wilson_interval(2000, 10000)
    assert (high - low) / 2 == pytest.approx(1.959964 * math.sqrt(0.2 * 0.8 / 10000), rel=1e-3)


def test_wilson_interval_refuses_bad_counts():
    assert wilson_interval(0, 0) is None and percent_interval(0, 0) is None
    for k, n in ((3, 2), (-1, 5)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            wilson_interval(k, n)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=1.5)


def test_allred_and_asco_cap_calls_are_uncertain_when_a_cut_lies_in_the_interval():
    # 10 of 100: 5.5–17.4 % straddles 10 % (Allred 2 vs 3, ASCO/CAP low positive vs positive).
    assert cuts_inside(wilson_interval(10, 100), (0.01, 0.1, 1 / 3, 2 / 3)) == [0.1]
    assert allred_proportion_range(wilson_interval(10, 100)) == [2, 3]
    er = assess(10, 100, stain="er")
    assert er["uncertain_calls"] == ["allred_proportion_score", "interpretation"]
    # 500 of 1000 (46.9–53.1 %): Allred 4 for sure, ASCO/CAP positive for sure.
    sure = assess(500, 1000, stain="pr")
    assert sure["uncertain_calls"] == [] and sure["allred_proportion_range"] == [4, 4]
    assert sure["enough_cells"] and sure["warnings"] == []


def test_ki67_cutoff_call_and_its_uncertainty():
    near = assess(190, 1000, stain="ki67", ki67_cutoff=20)    # 16.7–21.6 %: 20 inside
    far = assess(50, 1000, stain="ki67", ki67_cutoff=20)      # 3.8–6.5 %: no cut inside
    assert near["ki67_call"] == "low" and "ki67_call" in near["uncertain_calls"]
    assert far["ki67_call"] == "low" and far["uncertain_calls"] == []
    assert assess(200, 1000, stain="ki67", ki67_cutoff=20)["ki67_call"] == "high"   # at the cut: high
    assert assess(200, 1000, stain="ki67")["ki67_call"] is None


def test_too_few_cells_warns_with_the_configured_minimum():
    few = assess(30, 120, stain="ki67")
    assert not few["enough_cells"] and few["min_cells"] == 500
    assert "only 120 cells counted (at least 500 advised)" in few["warnings"][0]
    assert assess(30, 120, stain="ki67", min_cells=100)["enough_cells"]


@pytest.mark.parametrize("stain", ["er", "ki67"])
def test_no_cell_counted_says_there_is_no_score_not_a_wide_interval(stain):
    none = assess(0, 0, stain=stain, ki67_cutoff=20 if stain == "ki67" else None)
    assert none["positive_percent_ci"] is None and not none["enough_cells"]
    assert none["warnings"] == ["no cell counted (at least 500 advised): no score"]
    summary = summarize(_cells(0, 0), ScoringConfig(stain=stain))
    assert summary["n_nuclei"] == 0 and summary["positive_percent_ci"] is None
    assert any(w.startswith("no cell counted") for w in summary["warnings"])
    assert not any("interval" in w for w in summary["warnings"])


def _cells(n_pos, n_neg, *, spacing=10.0):
    n = n_pos + n_neg
    side = int(np.ceil(np.sqrt(n)))
    yy, xx = np.divmod(np.arange(n), side)
    dab = np.r_[np.full(n_pos, 0.5), np.full(n_neg, 0.05)]
    return pd.DataFrame({"label": np.arange(1, n + 1), "area_px": 36, "centroid_y": yy * spacing,
                         "centroid_x": xx * spacing, "dab_od_mean": dab})


def test_summary_carries_the_interval_minimum_and_uncertain_calls():
    s = summarize(_cells(10, 90), ScoringConfig(stain="er"))
    assert s["positive_percent_ci"] == pytest.approx([5.52291, 17.43657], abs=1e-4)
    assert s["ki67_index_ci"] is None and s["hotspot_ki67_index"] is None
    assert s["uncertain_calls"] == ["allred_proportion_score", "interpretation"]
    assert s["enough_cells"] is False and s["min_cells"] == 500
    k = summarize(_cells(10, 90), ScoringConfig(stain="ki67", min_cells=50, ki67_cutoff=14))
    assert k["ki67_index_ci"] == k["positive_percent_ci"] and k["enough_cells"]
    assert k["ki67_call"] == "low" and "ki67_call" in k["uncertain_calls"]


@pytest.mark.parametrize("field, value", [("min_cells", 0), ("min_cells", 2.5), ("ki67_cutoff", 0),
                                          ("ki67_cutoff", 120), ("hotspot_diameter_um", -5),
                                          ("hotspot_cells", 0), ("hotspot_cells", 1)])
def test_config_refuses_bad_confidence_settings(field, value):
    with pytest.raises(ValueError, match=field):
        ScoringConfig(**{field: value})


@pytest.mark.parametrize("cutoff", [16.1, 14.0, 20.0, 33.3, 57.7])
def test_an_index_equal_to_the_cut_off_is_high(cutoff):
    """The call is "high" for an index >= the cut-off, decimal cut-offs included."""
    n = 1000
    k = round(cutoff * n / 100)
    s = summarize(_cells(k, n - k), ScoringConfig(stain="ki67", ki67_cutoff=cutoff))
    assert s["ki67_call"] == "high"
    below = summarize(_cells(k - 1, n - k + 1), ScoringConfig(stain="ki67", ki67_cutoff=cutoff))
    assert below["ki67_call"] == "low"


def test_area_limits_in_square_micrometres_keep_a_nucleus_exactly_at_them():
    from napari_ihcseg.scoring import score_image
    from napari_ihcseg.stain import compose

    conc = np.zeros((40, 40, 3), np.float32)
    conc[..., 1] = 0.3
    labels = np.zeros((40, 40), np.int32)
    labels[:25, :40] = 1  # 1000 px = 10 um^2 at 0.1 um per pixel
    result = score_image(compose(conc), labels, stain="er", pixel_size_um=0.1)
    assert result.rescore(min_area_um2=10, max_area_um2=10).summary["n_nuclei"] == 1
    assert result.rescore(min_area_um2=10.01).summary["n_nuclei"] == 0
