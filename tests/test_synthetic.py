"""The synthetic IHC generator: truth, stain model, determinism, slides."""

import time

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from napari_ihcseg.data import SyntheticIHC, labels_to_contour, make_synthetic_ihc, make_synthetic_slide
from napari_ihcseg.data.synthetic import DAB_CLASS_RANGES
from napari_ihcseg.data.synthetic_slide import GLASS_RGB
from napari_ihcseg.stain import deconvolve

THRESHOLDS = (0.2, 0.4, 0.6)  # the default DAB OD cut-offs of scoring


@pytest.fixture(scope="module")
def field() -> SyntheticIHC:
    return make_synthetic_ihc((256, 320), seed=7)


def _mean_per_label(values, labels, n):
    return ndi.mean(values, labels, np.arange(1, n + 1))


def test_outputs_are_consistent(field):
    n = field.n_nuclei
    assert n > 50
    assert field.image.shape == (256, 320, 3) and field.image.dtype == np.uint8
    assert field.labels.shape == (256, 320) and field.labels.dtype == np.int32
    np.testing.assert_array_equal(np.unique(field.labels), np.arange(n + 1))
    np.testing.assert_array_equal(field.contour, labels_to_contour(field.labels))
    assert field.intensity_class.shape == (n + 1,) and field.intensity_class[0] == -1
    assert set(field.intensity_class[1:]) <= {0, 1, 2, 3}
    assert field.dab_od.shape == (n + 1,) and field.dab_od[0] == 0
    for k, (low, high) in enumerate(DAB_CLASS_RANGES):
        od = field.dab_od[1:][field.intensity_class[1:] == k]
        assert np.all((od >= low) & (od <= high))
    assert field.seed == 7


def test_every_nucleus_is_one_connected_region(field):
    objects = ndi.find_objects(field.labels)
    for value, box in enumerate(objects, start=1):
        assert ndi.label(field.labels[box] == value)[1] == 1, f"nucleus {value} is split"


def test_nuclei_touch(field):
    # pixels whose right or lower neighbour is a different nucleus
    lab = field.labels
    right = (lab[:, :-1] > 0) & (lab[:, 1:] > 0) & (lab[:, :-1] != lab[:, 1:])
    down = (lab[:-1] > 0) & (lab[1:] > 0) & (lab[:-1] != lab[1:])
    assert right.sum() + down.sum() > 20


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_intensity_class_is_recovered_by_mean_dab(seed):
    field = make_synthetic_ihc((256, 256), seed=seed, positive_fraction=0.6)
    dab = deconvolve(field.image)[..., 1]
    measured = _mean_per_label(dab, field.labels, field.n_nuclei)
    classes = np.digitize(measured, THRESHOLDS)
    np.testing.assert_array_equal(classes, field.intensity_class[1:])
    assert len(set(classes)) == 4


def test_without_blur_and_noise_dab_is_exact():
    field = make_synthetic_ihc((192, 192), seed=3, blur_sigma=0, noise_std=0, positive_fraction=1.0)
    dab = deconvolve(field.image)[..., 1]
    measured = _mean_per_label(dab, field.labels, field.n_nuclei)
    np.testing.assert_allclose(measured, field.dab_od[1:], atol=0.02)


def test_nuclei_are_darker_in_hematoxylin_than_stroma(field):
    hema = deconvolve(field.image)[..., 0]
    negative = field.intensity_class[field.labels] == 0
    stroma = field.labels == 0
    assert hema[negative].mean() > 3 * hema[stroma].mean()
    assert 0.01 < hema[stroma].mean() < 0.2  # faint but present


def test_same_seed_same_field_other_seed_differs(field):
    again = make_synthetic_ihc((256, 320), seed=7)
    for name in ("image", "labels", "contour", "intensity_class", "dab_od"):
        np.testing.assert_array_equal(getattr(again, name), getattr(field, name))
    other = make_synthetic_ihc((256, 320), seed=8)
    assert not np.array_equal(other.image, field.image)
    assert not np.array_equal(other.labels, field.labels)


def test_class_options():
    assert set(make_synthetic_ihc((128, 128), positive_fraction=0).intensity_class[1:]) == {0}
    third = make_synthetic_ihc((128, 128), class_probabilities=(0, 0, 0, 1)).intensity_class[1:]
    assert set(third) == {3}


def test_size_and_count_options():
    sparse = make_synthetic_ihc((256, 256), n_nuclei=15, seed=1)
    assert sparse.n_nuclei == 15
    areas = np.bincount(sparse.labels.ravel())[1:]
    radius = np.sqrt(areas / np.pi)
    assert np.all((radius > 4) & (radius < 14))  # radius_range (5, 12) with irregular outlines
    dense = make_synthetic_ihc((256, 256), density=0.4, seed=1)
    light = make_synthetic_ihc((256, 256), density=0.1, seed=1)
    assert dense.n_nuclei > 2 * light.n_nuclei
    assert 0.25 < (dense.labels > 0).mean() < 0.5


def test_small_field_is_fast():
    make_synthetic_ihc((64, 64), seed=0)  # warm up imports
    start = time.perf_counter()
    make_synthetic_ihc((512, 512), seed=0)
    # well under a second on a quiet machine; generous for shared CI runners
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (8, 8)},
        {"shape": (64,)},
        {"radius_range": (0.5, 3)},
        {"radius_range": (8, 4)},
        {"positive_fraction": 1.5},
        {"class_probabilities": (1, 0, 0)},
        {"class_probabilities": (-1, 1, 1, 1)},
        {"touching": -0.1},
        {"blur_sigma": -1},
        {"n_nuclei": -3},
    ],
)
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError):
        make_synthetic_ihc(**{"shape": (64, 64), **kwargs})


# ---------------------------------------------------------------------------
# Slides


def test_slide_is_a_tiled_pyramid(tmp_path):
    path = make_synthetic_slide(tmp_path / "slide.tif", (1536, 2560), tile=256, tissue_fraction=0.3,
                                pixel_size_um=0.25, seed=2)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff
        page = tif.pages.first
        assert page.is_tiled and page.tilelength == 256
        assert page.tags["XResolution"].value[0] / page.tags["XResolution"].value[1] == pytest.approx(1e4 / 0.25)
        levels = tif.series[0].levels
        # halved until one tile holds the level
        assert [lvl.shape[:2] for lvl in levels] == [(1536, 2560), (768, 1280), (384, 640), (192, 320), (96, 160)]
        level0 = levels[0].asarray()
        level1 = levels[1].asarray()
    glass = np.all(np.abs(level0.astype(int) - GLASS_RGB) <= 3, axis=-1)
    assert 0.4 < glass.mean() < 0.9  # empty glass to skip, and tissue
    halved = level0.reshape(768, 2, 1280, 2, 3).mean(axis=(1, 3))
    assert np.abs(halved - level1).mean() < 4  # level 1 is level 0 halved (JPEG both ways)
    tissue_dab = deconvolve(level0[~glass])[..., 1]
    assert (tissue_dab > 0.4).mean() > 0.01  # DAB-positive nuclei are there


def test_slide_is_deterministic_and_ome(tmp_path):
    a = make_synthetic_slide(tmp_path / "a.ome.tif", (600, 700), tile=256, compression="zlib", seed=5)
    b = make_synthetic_slide(tmp_path / "b.tif", (600, 700), tile=256, compression="zlib", seed=5)
    c = make_synthetic_slide(tmp_path / "c.tif", (600, 700), tile=256, compression="zlib", seed=6)
    with tifffile.TiffFile(a) as ta, tifffile.TiffFile(b) as tb, tifffile.TiffFile(c) as tc:
        assert ta.is_ome and 'PhysicalSizeX="0.5"' in ta.ome_metadata
        np.testing.assert_array_equal(ta.series[0].asarray(), tb.series[0].asarray())
        assert not np.array_equal(tb.series[0].asarray(), tc.series[0].asarray())
        assert len(ta.series[0].levels) == 3


def test_slide_reports_progress_and_refuses_bad_options(tmp_path):
    calls = []
    make_synthetic_slide(tmp_path / "p.tif", (512, 512), tile=256, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (5, 5) and len(calls) == 5  # 4 tiles at level 0, 1 at level 1
    with pytest.raises(ValueError, match="tile"):
        make_synthetic_slide(tmp_path / "x.tif", (512, 512), tile=100)
    with pytest.raises(FileExistsError):
        make_synthetic_slide(tmp_path / "p.tif", (512, 512), overwrite=False)
