"""Tests for napari_ihcseg.instances: the numpy and torch versions and probabilities_to_instances."""

from __future__ import annotations

import subprocess
import sys

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.measure import label as sk_label

from napari_ihcseg.instances import (
    contour_subtract_dilate,
    contour_subtract_dilate_torch,
    fill_instance_holes,
    probabilities_to_instances,
    remove_small_instances,
)

SQUARE = np.ones((3, 3), dtype=bool)
PROPERTY = settings(max_examples=100, deadline=None)


# -- the paper's loop, written literally (small images only) ------------------------------


def literal_loop(mask: np.ndarray, contour: np.ndarray) -> np.ndarray:
    """HARU-Net Algorithm 1 as written: one dilation per nucleus per sweep."""
    objects = sk_label(mask & ~contour, connectivity=2).astype(np.int32)
    n = int(objects.max())
    sweeps = 0
    while (mask & (objects == 0)).any():
        sweeps += 1
        if sweeps > mask.size:
            raise RuntimeError("the literal loop does not terminate on this input")
        for nucleus in range(1, n + 1):
            grown = ndi.binary_dilation(objects == nucleus, SQUARE)
            objects[grown & mask & (objects == 0)] = nucleus
    return objects


def drop_seedless(mask: np.ndarray, contour: np.ndarray) -> np.ndarray:
    """The mask without its 8-connected components that hold no seed."""
    components, count = ndi.label(mask, SQUARE)
    seeded = np.zeros(count + 1, dtype=bool)
    seeded[components[mask & ~contour]] = True
    seeded[0] = False
    return seeded[components]


@st.composite
def noise_pairs(draw, max_side: int = 12):
    """Independent random mask and contour pixels: many small, oddly shaped regions."""
    shape = (draw(st.integers(1, max_side)), draw(st.integers(1, max_side)))
    mask = draw(hnp.arrays(np.bool_, shape))
    contour = draw(hnp.arrays(np.bool_, shape))
    return mask, contour


@st.composite
def blob_pairs(draw, max_side: int = 24):
    """Smooth blobs and thick contours: long growth paths and touching nuclei."""
    seed = draw(st.integers(0, 2**32 - 1))
    shape = (draw(st.integers(4, max_side)), draw(st.integers(4, max_side)))
    sigma = draw(st.floats(0.8, 3.0))
    mask_fraction = draw(st.floats(0.2, 0.9))
    contour_fraction = draw(st.floats(0.1, 0.8))
    rng = np.random.default_rng(seed)
    a = ndi.gaussian_filter(rng.random(shape), sigma)
    b = ndi.gaussian_filter(rng.random(shape), sigma / 2)
    mask = a > np.quantile(a, 1 - mask_fraction)
    contour = b > np.quantile(b, 1 - contour_fraction)
    return mask, contour


def touching_disks(shape=(96, 96), count=30, seed=0, band=2):
    """Touching disks as instance labels, their union and an inner boundary band."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    best = np.full(shape, np.inf)
    labels = np.zeros(shape, dtype=np.int32)
    for k in range(1, count + 1):
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        d = np.hypot(yy - cy, xx - cx) / rng.uniform(4, 10)
        take = (d < 1) & (d < best)
        labels[take] = k
        best[take] = d[take]
    footprint = np.hypot(*np.mgrid[-band : band + 1, -band : band + 1]) <= band
    lo = ndi.minimum_filter(labels, footprint=footprint, mode="nearest")
    hi = ndi.maximum_filter(labels, footprint=footprint, mode="nearest")
    mask = labels > 0
    return mask, mask & (lo != hi)


# -- equality with the literal loop ------------------------------------------------------


@PROPERTY
@given(noise_pairs(), st.integers(0, 5))
def test_equals_literal_loop_on_noise(pair, min_size):
    mask, contour = pair
    mask = drop_seedless(mask, contour)
    expected = literal_loop(mask, contour)
    np.testing.assert_array_equal(contour_subtract_dilate(mask, contour, min_size=min_size), expected)


@PROPERTY
@given(blob_pairs())
def test_equals_literal_loop_on_blobs(pair):
    mask, contour = pair
    mask = drop_seedless(mask, contour)
    np.testing.assert_array_equal(contour_subtract_dilate(mask, contour), literal_loop(mask, contour))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_literal_loop_on_touching_nuclei(seed):
    mask, contour = touching_disks(seed=seed)
    mask = drop_seedless(mask, contour)
    expected = literal_loop(mask, contour)
    assert expected.max() >= 15
    np.testing.assert_array_equal(contour_subtract_dilate(mask, contour), expected)


def test_tie_goes_to_the_smaller_id_and_new_pixels_wait_a_sweep():
    # Seeds 1 (left) and 2 (right); the middle pixel is reached by both in
    # sweep 3 and takes 1. Were new pixels to spread within their sweep, id 1
    # would flood the whole row.
    mask = np.ones((1, 7), dtype=bool)
    contour = np.array([[0, 1, 1, 1, 1, 1, 0]], dtype=bool)
    np.testing.assert_array_equal(contour_subtract_dilate(mask, contour), [[1, 1, 1, 1, 2, 2, 2]])
    # The second seed is closer: it wins the pixels it reaches first.
    contour = np.array([[0, 1, 1, 1, 0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(contour_subtract_dilate(mask, contour), [[1, 1, 1, 2, 2, 2, 2]])


def test_growth_is_8_connected_and_stays_in_the_mask():
    mask = np.eye(5, dtype=bool)
    contour = mask.copy()
    contour[0, 0] = False
    np.testing.assert_array_equal(contour_subtract_dilate(mask, contour), mask.astype(np.int32))


# -- invariants, seedless regions included -----------------------------------------------


def check_invariants(mask, contour, min_size, out):
    assert out.dtype == np.int32 and out.shape == mask.shape
    assert not out[~mask].any(), "a pixel outside the mask is labelled"
    seeds, n = ndi.label(mask & ~contour, SQUARE)
    np.testing.assert_array_equal(out[seeds > 0], seeds[seeds > 0])  # each seed keeps its id
    ids = np.unique(out[out > 0])
    np.testing.assert_array_equal(ids, np.arange(1, ids.size + 1))
    components, count = ndi.label(mask, SQUARE)
    seedless_first = []
    for k, region in enumerate(ndi.find_objects(components), start=1):
        inside = components[region] == k
        values = out[region][inside]
        seed_ids = np.unique(seeds[region][inside & (seeds[region] > 0)])
        if seed_ids.size:
            assert values.all(), "a mask pixel of a seeded region is unlabelled"
            assert set(np.unique(values)) <= set(seed_ids), "an id crossed into another mask region"
        elif inside.sum() < min_size:
            assert not values.any(), "a small seedless region was kept"
        else:
            assert np.unique(values).size == 1 and values[0] > n, "a seedless region is not one fresh id"
            seedless_first.append((np.flatnonzero(components == k)[0], values[0]))
    seedless_first.sort()
    np.testing.assert_array_equal([v for _, v in seedless_first], np.arange(n + 1, n + 1 + len(seedless_first)))


@PROPERTY
@given(st.one_of(noise_pairs(), blob_pairs()), st.integers(0, 6))
def test_invariants(pair, min_size):
    mask, contour = pair
    check_invariants(mask, contour, min_size, contour_subtract_dilate(mask, contour, min_size=min_size))


def test_seeds_are_numbered_in_raster_order():
    mask, contour = touching_disks(shape=(64, 80), count=25, seed=4)
    out = contour_subtract_dilate(mask, contour)
    seeds = mask & ~contour
    first = [np.flatnonzero(seeds & (out == k))[0] for k in range(1, out[seeds].max() + 1)]
    assert np.all(np.diff(first) > 0)


def test_seedless_regions_terminate_and_get_fresh_ids():
    mask = np.zeros((9, 12), dtype=bool)
    mask[0:3, 0:3] = True  # covered by contour: seedless, 9 px
    mask[5:9, 2:10] = True  # has a seed
    mask[1:3, 8:10] = True  # covered by contour: seedless, 4 px
    contour = mask.copy()
    contour[7, 5] = False
    out = contour_subtract_dilate(mask, contour)
    assert (out[5:9, 2:10] == 1).all()
    assert (out[0:3, 0:3] == 2).all() and (out[1:3, 8:10] == 3).all()
    dropped = contour_subtract_dilate(mask, contour, min_size=5)
    assert (dropped[0:3, 0:3] == 2).all() and not dropped[1:3, 8:10].any()
    everything = contour_subtract_dilate(np.ones((50, 50), bool), np.ones((50, 50), bool))
    assert (everything == 1).all()


def test_min_size_does_not_touch_seeded_regions():
    mask = np.zeros((5, 5), dtype=bool)
    mask[2, 2] = True
    out = contour_subtract_dilate(mask, np.zeros_like(mask), min_size=100)
    assert out[2, 2] == 1


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_empty_images(shape):
    out = contour_subtract_dilate(np.zeros(shape, bool), np.zeros(shape, bool))
    assert out.shape == shape and out.dtype == np.int32


def test_without_contour_it_is_connected_components():
    mask, _ = touching_disks(seed=3)
    np.testing.assert_array_equal(contour_subtract_dilate(mask, np.zeros_like(mask)), ndi.label(mask, SQUARE)[0])


def test_bad_input():
    ok = np.zeros((4, 4), bool)
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        contour_subtract_dilate(ok.astype(np.uint8), ok)
    with pytest.raises(TypeError, match="contour must be a boolean array"):
        contour_subtract_dilate(ok, ok.astype(float))
    with pytest.raises(ValueError, match="same shape"):
        contour_subtract_dilate(ok, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="2-D"):
        contour_subtract_dilate(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError, match="min_size"):
        contour_subtract_dilate(ok, ok, min_size=-1)
    with pytest.raises(TypeError, match="min_size"):
        contour_subtract_dilate(ok, ok, min_size=2.5)


def test_strided_and_fortran_inputs():
    mask, contour = touching_disks(seed=6)
    view_mask, view_contour = mask[::2, ::-1], contour[::2, ::-1]
    expected = contour_subtract_dilate(view_mask.copy(), view_contour.copy())
    np.testing.assert_array_equal(contour_subtract_dilate(view_mask, view_contour), expected)
    np.testing.assert_array_equal(
        contour_subtract_dilate(np.asfortranarray(mask), np.asfortranarray(contour)),
        contour_subtract_dilate(mask, contour),
    )


def test_inputs_are_not_modified():
    mask, contour = touching_disks(seed=5)
    before = mask.copy(), contour.copy()
    contour_subtract_dilate(mask, contour, min_size=3)
    np.testing.assert_array_equal(mask, before[0])
    np.testing.assert_array_equal(contour, before[1])


# -- probabilities_to_instances ----------------------------------------------------------


def two_nuclei_probabilities():
    """Two 6x7 nuclei side by side, split by a contour column of probability 0.6."""
    mask_prob = np.zeros((10, 18))
    mask_prob[2:8, 2:16] = 0.9
    contour_prob = np.zeros((10, 18))
    contour_prob[:, 8:10] = 0.6
    return mask_prob, contour_prob


def test_thresholds_are_strict_and_tunable():
    mask_prob, contour_prob = two_nuclei_probabilities()
    labels = probabilities_to_instances(mask_prob, contour_prob, min_size=1)
    assert labels.dtype == np.int32 and labels.max() == 2
    np.testing.assert_array_equal(labels > 0, mask_prob > 0.5)
    assert probabilities_to_instances(mask_prob, contour_prob, contour_threshold=0.6, min_size=1).max() == 1
    assert not probabilities_to_instances(mask_prob, contour_prob, mask_threshold=0.9, min_size=1).any()
    assert probabilities_to_instances(mask_prob, contour_prob, mask_threshold=0.89, min_size=1).max() == 2


def test_min_size_removes_small_instances_and_renumbers():
    mask_prob = np.zeros((20, 30))
    mask_prob[1:6, 1:6] = 1  # 25 px -> 1
    mask_prob[1:3, 10:14] = 1  # 8 px, removed
    mask_prob[10:16, 10:16] = 1  # 36 px -> 2
    labels = probabilities_to_instances(mask_prob, np.zeros_like(mask_prob), min_size=9)
    assert labels[3, 3] == 1 and labels[12, 12] == 2 and labels.max() == 2
    assert not labels[1:3, 10:14].any()
    kept = probabilities_to_instances(mask_prob, np.zeros_like(mask_prob), min_size=8)
    assert kept[1, 10] == 2 and kept[12, 12] == 3


def test_erode_splits_seeds_joined_by_a_thin_bridge():
    mask_prob = np.zeros((12, 24))
    mask_prob[2:10, 2:10] = 1
    mask_prob[2:10, 14:22] = 1
    mask_prob[5, 10:14] = 1  # one-pixel bridge: a blurry boundary with no contour
    contour_prob = np.zeros_like(mask_prob)
    assert probabilities_to_instances(mask_prob, contour_prob).max() == 1
    labels = probabilities_to_instances(mask_prob, contour_prob, erode=1)
    assert labels.max() == 2 and labels[5, 5] != labels[5, 18]
    np.testing.assert_array_equal(labels > 0, mask_prob > 0.5)  # erosion does not shrink nuclei


def test_fill_holes_fills_a_nucleus_hole_but_not_a_shared_gap():
    mask_prob = np.zeros((20, 30))
    mask_prob[2:9, 2:9] = 1
    mask_prob[4:7, 4:7] = 0  # a hole in one nucleus
    mask_prob[10:18, 10:26] = 1
    mask_prob[12:16, 14:22] = 0  # a gap enclosed by two nuclei together
    contour_prob = np.zeros_like(mask_prob)
    contour_prob[10:18, 18] = 1
    filled = probabilities_to_instances(mask_prob, contour_prob)
    assert (filled[4:7, 4:7] == filled[2, 2]).all() and filled[2, 2] > 0
    assert not filled[12:16, 14:22].any()
    assert filled[11, 12] != filled[11, 24]
    unfilled = probabilities_to_instances(mask_prob, contour_prob, fill_holes=False)
    assert not unfilled[4:7, 4:7].any()


def test_fill_instance_holes_leaves_edge_background():
    labels = np.zeros((6, 6), dtype=np.int32)
    labels[:, 1] = labels[:, 3] = 1
    labels[0, 1:4] = 1
    filled = fill_instance_holes(labels)
    assert not filled[1:, 2].any()  # open at the bottom edge
    labels[5, 1:4] = 1
    assert (fill_instance_holes(labels)[1:5, 2] == 1).all()


def test_remove_small_instances_keeps_order():
    labels = np.array([[3, 3, 0, 1], [3, 5, 5, 5]], dtype=np.int32)
    np.testing.assert_array_equal(remove_small_instances(labels, 2), [[1, 1, 0, 0], [1, 2, 2, 2]])


def test_probabilities_bad_input():
    p = np.zeros((4, 4))
    with pytest.raises(ValueError, match="same shape"):
        probabilities_to_instances(p, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2-D"):
        probabilities_to_instances(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="NaN"):
        probabilities_to_instances(np.full((4, 4), np.nan), p)
    with pytest.raises(TypeError, match="real numbers"):
        probabilities_to_instances(p.astype(complex), p)
    with pytest.raises(ValueError, match="mask_threshold"):
        probabilities_to_instances(p, p, mask_threshold=float("nan"))
    with pytest.raises(ValueError, match="erode"):
        probabilities_to_instances(p, p, erode=-1)
    with pytest.raises(ValueError, match="backend"):
        probabilities_to_instances(p, p, backend="jax")


def test_package_import_does_not_load_torch():
    code = "import sys, napari_ihcseg.instances; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the torch version ---------------------------------------------------------------------


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@settings(max_examples=100, deadline=None)
@given(st.one_of(noise_pairs(), blob_pairs()), st.integers(0, 6))
def test_torch_equals_numpy(pair, min_size):
    mask, contour = pair
    expected = contour_subtract_dilate(mask, contour, min_size=min_size)
    got = contour_subtract_dilate_torch(mask, contour, min_size=min_size, device="cpu")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_equals_numpy_on_touching_nuclei_with_seedless_regions(device):
    mask, contour = touching_disks(shape=(120, 140), count=60, seed=7, band=3)
    expected = contour_subtract_dilate(mask, contour, min_size=10)
    assert expected.max() > 40
    got = contour_subtract_dilate_torch(mask, contour, min_size=10, device=device)
    np.testing.assert_array_equal(got, expected)


def test_tensor_inputs_and_their_device():
    mask, contour = touching_disks(seed=8)
    got = contour_subtract_dilate_torch(torch.from_numpy(mask), torch.from_numpy(contour))
    np.testing.assert_array_equal(got, contour_subtract_dilate(mask, contour))


def test_seedless_region_terminates():
    full = np.ones((40, 30), bool)
    assert (contour_subtract_dilate_torch(full, full, device="cpu") == 1).all()
    assert not contour_subtract_dilate_torch(full, full, min_size=1201, device="cpu").any()


def test_torch_bad_input():
    ok = np.zeros((4, 4), bool)
    with pytest.raises(TypeError, match="mask must be a boolean"):
        contour_subtract_dilate_torch(torch.zeros(4, 4), ok, device="cpu")
    with pytest.raises(ValueError, match="same shape"):
        contour_subtract_dilate_torch(ok, np.zeros((4, 5), bool), device="cpu")
    with pytest.raises(ValueError, match="2-D"):
        contour_subtract_dilate_torch(np.zeros(4, bool), np.zeros(4, bool), device="cpu")
    with pytest.raises(ValueError, match="device"):
        contour_subtract_dilate_torch(ok, ok, device="tpu")


def test_probabilities_backend_torch_equals_numpy():
    rng = np.random.default_rng(3)
    mask, contour = touching_disks(shape=(100, 100), count=40, seed=9)
    mask_prob = np.clip(mask * 0.8 + rng.normal(0, 0.15, mask.shape), 0, 1)
    contour_prob = np.clip(contour * 0.7 + rng.normal(0, 0.15, mask.shape), 0, 1)
    options = dict(min_size=8, erode=1)
    expected = probabilities_to_instances(mask_prob, contour_prob, **options)
    got = probabilities_to_instances(
        torch.from_numpy(mask_prob), torch.from_numpy(contour_prob), backend="torch", device="cpu", **options
    )
    assert expected.max() > 20
    np.testing.assert_array_equal(got, expected)


def test_bfloat16_tensors_are_accepted():
    mask = torch.zeros(8, 8)
    mask[2:6, 2:6] = 0.9
    labels = probabilities_to_instances(mask.bfloat16(), torch.zeros(8, 8).bfloat16(), min_size=1)
    assert labels.max() == 1 and (labels > 0).sum() == 16


def test_remove_small_instances_with_huge_sparse_ids():
    labels = np.zeros((5, 5), np.int64)
    labels[0, :3], labels[2, 2], labels[4, :] = 2**40, 7, 3
    np.testing.assert_array_equal(remove_small_instances(labels, 2), np.where(labels == 2**40, 2, labels == 3))


def test_an_erosion_wider_than_the_image_costs_no_more_than_one_as_wide():
    mask = np.zeros((64, 64), np.float32)
    mask[10:40, 10:40] = 0.9
    contour = np.zeros_like(mask)
    wide = probabilities_to_instances(mask, contour, erode=92, min_size=0)  # past the 90.5 px diagonal
    np.testing.assert_array_equal(probabilities_to_instances(mask, contour, erode=100_000, min_size=0), wide)
