"""Optical density, colour deconvolution and stain-vector estimation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ihcseg.stain import (
    DAB_RJ,
    H_DAB,
    HEMATOXYLIN_RJ,
    OD_LUT,
    OD_MAX,
    StainEstimationWarning,
    StainVectors,
    angle_deg,
    compose,
    deconvolve,
    estimate_stain_vectors,
    od_to_rgb,
    rgb_to_od,
)


# ------------------------------------------------------------ optical density

@pytest.mark.parametrize(("value", "expected"), [
    (255, 0.0),                       # white: no absorption
    (0, OD_MAX),                      # clipped to I = 1
    (1, OD_MAX),
    (25, -np.log10(25 / 255)),        # QuPath: -log10(I / 255)
])
def test_rgb_to_od_follows_the_qupath_convention(value, expected):
    od = rgb_to_od(np.full((1, 1, 3), value, np.uint8))
    np.testing.assert_allclose(od, expected, rtol=1e-6, atol=1e-7)


def test_od_lookup_table_is_rgb_to_od_of_every_8_bit_value():
    values = np.arange(256, dtype=np.uint8)
    np.testing.assert_allclose(OD_LUT[values], rgb_to_od(values[:, None].repeat(3, axis=1))[:, 0], rtol=1e-6)
    assert OD_LUT[0] == OD_LUT[1] == pytest.approx(OD_MAX) and OD_LUT[255] == 0.0


@pytest.mark.parametrize(("a", "b", "degrees"), [
    ((1, 0, 0), (1, 1, 0), 45.0),
    ((1, 0, 0), (3, 0, 0), 0.0),      # only the directions count
    ((1, 0, 0), (0, 0, 2), 90.0),
    ((1, 0, 0), (-1, 0, 0), 180.0),
])
def test_angle_between_vectors(a, b, degrees):
    assert angle_deg(a, b) == pytest.approx(degrees) == pytest.approx(angle_deg(b, a))


def test_od_round_trips_through_8_bit():
    rgb = np.arange(1, 256, dtype=np.uint8)[:, None].repeat(3, axis=1)
    np.testing.assert_array_equal(od_to_rgb(rgb_to_od(rgb)), rgb)


def test_rgb_to_od_rejects_non_rgb():
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_od(np.zeros((4, 4), np.uint8))


# -------------------------------------------------------------- deconvolution

def test_stain_vectors_are_unit_and_residual_orthogonal():
    m = H_DAB.matrix
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-12)
    assert abs(m[2] @ m[0]) < 1e-12 and abs(m[2] @ m[1]) < 1e-12
    assert angle_deg(H_DAB.hematoxylin, HEMATOXYLIN_RJ) < 1e-6
    assert angle_deg(H_DAB.dab, DAB_RJ) < 1e-6


@pytest.mark.parametrize("kwargs", [
    {"hematoxylin": (1, 1)},
    {"dab": (0, 0, 0)},
    {"dab": HEMATOXYLIN_RJ},
    {"dab": (np.nan, 1, 1)},
])
def test_stain_vectors_reject_bad_vectors(kwargs):
    with pytest.raises(ValueError):
        StainVectors(**kwargs)


@pytest.mark.parametrize(("h", "d"), [(0.0, 0.0), (0.6, 0.0), (0.0, 0.5), (0.3, 0.8), (1.2, 0.2)])
def test_deconvolve_recovers_composed_concentrations(h, d):
    conc = np.zeros((2, 2, 3), np.float32)
    conc[..., 0], conc[..., 1] = h, d
    out = deconvolve(compose(conc))
    # 8-bit rounding: half a grey level, i.e. at most ~0.01 OD at these values
    np.testing.assert_allclose(out[..., 0], h, atol=0.01)
    np.testing.assert_allclose(out[..., 1], d, atol=0.01)
    np.testing.assert_allclose(out[..., 2], 0.0, atol=0.01)


def test_compose_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match="3 stain channels"):
        compose(np.zeros((2, 2, 2)))


# ------------------------------------------------------------------ estimation

def _mixture(stains: StainVectors, *, dab_fraction=0.3, size=160, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    conc = np.zeros((size, size, 3), np.float32)
    conc[..., 0] = rng.uniform(0.05, 1.0, (size, size))
    conc[..., 1] = rng.uniform(0.1, 1.0, (size, size)) * (rng.random((size, size)) < dab_fraction)
    return compose(conc, stains)


def test_estimation_recovers_vectors_that_differ_from_the_reference():
    truth = StainVectors(hematoxylin=(0.55, 0.75, 0.35), dab=(0.30, 0.62, 0.72))
    assert angle_deg(truth.hematoxylin, H_DAB.hematoxylin) > 5  # not the reference itself
    est = estimate_stain_vectors(_mixture(truth))
    assert angle_deg(est.hematoxylin, truth.hematoxylin) < 2.0
    assert angle_deg(est.dab, truth.dab) < 4.0
    assert est.name == "H-DAB (estimated)"


def test_estimation_tells_hematoxylin_from_dab_when_dab_dominates():
    # Mostly DAB: the first principal direction is DAB, yet it must be labelled DAB.
    est = estimate_stain_vectors(_mixture(H_DAB, dab_fraction=0.9, seed=1))
    assert angle_deg(est.dab, H_DAB.dab) < 3.0
    assert angle_deg(est.hematoxylin, H_DAB.hematoxylin) < 3.0


def test_estimated_vectors_deconvolve_the_image_they_came_from():
    truth = StainVectors(hematoxylin=(0.55, 0.75, 0.35), dab=(0.30, 0.62, 0.72))
    conc = np.zeros((120, 120, 3), np.float32)
    rng = np.random.default_rng(3)
    conc[..., 0] = rng.uniform(0.1, 0.9, conc.shape[:2])
    conc[:60, :, 1] = 0.5
    conc[60:, :, 1] = rng.uniform(0.1, 0.9, (60, 120))
    rgb = compose(conc, truth)
    est = estimate_stain_vectors(rgb)
    dab = deconvolve(rgb, est)[..., 1]
    assert abs(float(dab[:60].mean()) - 0.5) < 0.05
    # the reference vectors get this image's DAB visibly wrong
    assert abs(float(deconvolve(rgb)[:60, :, 1].mean()) - 0.5) > 2 * abs(float(dab[:60].mean()) - 0.5)


def test_estimation_falls_back_with_a_warning_on_a_blank_image():
    with pytest.warns(StainEstimationWarning, match="stained pixels"):
        est = estimate_stain_vectors(np.full((64, 64, 3), 250, np.uint8))
    assert est == H_DAB


def test_estimation_keeps_the_reference_dab_when_there_is_no_dab():
    # Hematoxylin only: whatever the second direction is, it is not DAB.
    rng = np.random.default_rng(2)
    conc = np.zeros((128, 128, 3), np.float32)
    conc[..., 0] = rng.uniform(0.2, 1.0, conc.shape[:2])
    conc[..., 2] = rng.normal(0, 0.03, conc.shape[:2])
    with pytest.warns(StainEstimationWarning):
        est = estimate_stain_vectors(compose(conc))
    assert angle_deg(est.dab, H_DAB.dab) < 1e-6


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rgb": np.zeros((4, 4), np.uint8)}, "RGB"),
    ({"rgb": np.zeros((4, 4, 3), np.uint8), "alpha": 60}, "alpha"),
])
def test_estimation_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_stain_vectors(**kwargs)


def test_estimates_too_close_to_separate_fall_back_to_the_reference():
    """Every pixel a near-even mix of hematoxylin and DAB: the two estimated directions end up a few
    degrees apart; estimation falls back with a warning instead of refusing its own result."""
    rng = np.random.default_rng(0)
    share = rng.uniform(0.43, 0.57, (64, 64))
    amount = rng.uniform(0.4, 1.0, (64, 64))
    conc = np.zeros((64, 64, 3), np.float32)
    conc[..., 0], conc[..., 1] = amount * (1 - share), amount * share
    with pytest.warns(StainEstimationWarning, match="parallel"):
        est = estimate_stain_vectors(compose(conc))
    assert est == H_DAB
