"""Tiles, crops, augmentation and the deterministic batch sampler."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_ihcseg.data.sample import Sample
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.stain import H_DAB, deconvolve
from napari_ihcseg.training.augment import (
    NO_AUGMENT,
    AugmentConfig,
    augment,
    geometric,
    he_to_ihc,
    is_he,
    nuclei_hsv_shift,
    stain_jitter,
)
from napari_ihcseg.training.batches import BatchSampler, crop_targets
from napari_ihcseg.training.tiles import Crop, Window, crop_window, grid_windows, random_crop


@pytest.fixture(scope="module")
def field():
    f = make_synthetic_ihc((96, 96), seed=3)
    return Sample(f.image, f.labels, name="syn", source="synthetic", stain="Ki-67")


def _he_like(shape=(64, 64), seed=0):
    """A pink background with purple nuclei and their labels."""
    rng = np.random.default_rng(seed)
    image = np.empty((*shape, 3), np.uint8)
    image[:] = (235, 170, 200)
    labels = np.zeros(shape, np.int32)
    for i, (y, x) in enumerate([(10, 10), (10, 40), (40, 15), (45, 45)], start=1):
        labels[y:y + 10, x:x + 10] = i
    image[labels > 0] = (90, 60, 150)
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    return image, labels


def test_grid_drops_empty_tiles(field):
    labels = np.zeros((128, 128), np.int32)
    labels[10:20, 10:20] = 1                      # only the top-left tile has a nucleus
    s = Sample(np.zeros((128, 128, 3), np.uint8), labels, name="a")
    assert grid_windows([s], tile=64, stride=64) == [Window(0, 0, 0)]
    assert len(grid_windows([s], tile=64, stride=64, drop_empty=False)) == 4


def test_crop_pads_small_images_and_marks_padding_invalid():
    s = Sample(np.full((40, 50, 3), 100, np.uint8), np.ones((40, 50), np.int32), name="small")
    crop = crop_window(s, 0, 0, 64)
    assert crop.image.shape == (64, 64, 3)
    assert crop.valid[:40, :50].all() and not crop.valid[40:].any() and not crop.valid[:, 50:].any()
    assert (crop.labels[40:] == 0).all()


def test_scaled_crop_keeps_labels_aligned(field):
    crop = crop_window(field, 0, 0, 48, 96)        # 2x zoom
    assert crop.image.shape == (96, 96, 3) and crop.labels.shape == (96, 96)
    small = field.labels[:48, :48]
    assert np.array_equal(crop.labels[::2, ::2], small)


def test_geometry_moves_image_and_labels_together(field):
    crop = crop_window(field, 0, 0, 96)
    for seed in range(8):
        out = geometric(crop, np.random.default_rng(seed))
        # Every nucleus keeps exactly its pixels' colours: check the mean colour per label.
        for lab in np.unique(field.labels)[1:5]:
            before = crop.image[crop.labels == lab].mean(0)
            after = out.image[out.labels == lab].mean(0)
            np.testing.assert_allclose(before, after, atol=1e-6)


def test_augment_is_reproducible_and_leaves_targets_alone(field):
    crop = random_crop(field, None, tile=64, stride=64, rng=np.random.default_rng(0))
    a = augment(crop, np.random.default_rng(7), AugmentConfig(), stain="Ki-67")
    b = augment(crop, np.random.default_rng(7), AugmentConfig(), stain="Ki-67")
    c = augment(crop, np.random.default_rng(8), AugmentConfig(), stain="Ki-67")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.uint8 and a.image.shape == (64, 64, 3)
    # Colour changes never change the label set.
    assert sorted(np.unique(a.labels)) == sorted(np.unique(crop.labels))
    same = augment(crop, np.random.default_rng(7), NO_AUGMENT, stain="Ki-67")
    assert np.array_equal(same.image, crop.image)


def test_he_to_ihc_puts_dab_only_in_positive_nuclei():
    image, labels = _he_like()
    out = he_to_ihc(image, labels, np.random.default_rng(1), positive_fraction=(1.0, 1.0))
    conc = deconvolve(out, H_DAB)
    inside = labels > 0
    from scipy import ndimage as ndi

    background = ~ndi.binary_dilation(inside, iterations=3)
    assert conc[..., 1][inside].mean() > 0.15            # brown nuclei (weak class or above)
    assert conc[..., 1][background].mean() < 0.06         # background only faintly brown
    assert conc[..., 0][inside].mean() > conc[..., 0][background].mean()   # hematoxylin kept in nuclei
    # Eosin gone: the background is near white-blue, no longer pink (red >> green).
    bg = out[background].astype(float).mean(0)
    assert bg[0] - bg[1] < 20
    none = he_to_ihc(image, labels, np.random.default_rng(1), positive_fraction=(0.0, 0.0))
    assert deconvolve(none, H_DAB)[..., 1][inside].mean() < 0.06   # all negative: blue nuclei


def test_he_to_ihc_pale_counterstain_scales_hematoxylin():
    image, labels = _he_like()
    inside = labels > 0
    strong = he_to_ihc(image, labels, np.random.default_rng(2), positive_fraction=(0.0, 0.0),
                       hematoxylin_scale=(1.0, 1.0))
    pale = he_to_ihc(image, labels, np.random.default_rng(2), positive_fraction=(0.0, 0.0),
                     hematoxylin_scale=(0.2, 0.2))
    h_strong = deconvolve(strong, H_DAB)[..., 0][inside].mean()
    h_pale = deconvolve(pale, H_DAB)[..., 0][inside].mean()
    assert 0.1 < h_pale / h_strong < 0.35              # a fifth of the optical density, give or take the stains
    assert deconvolve(pale, H_DAB)[..., 0][inside].mean() > deconvolve(pale, H_DAB)[..., 0][~inside].mean()


def test_he_to_ihc_brown_rim_and_haze_stay_outside_the_truth():
    from scipy import ndimage as ndi

    image, labels = _he_like()
    inside = labels > 0
    ring = ndi.binary_dilation(inside, iterations=3) & ~inside
    far = ~ndi.binary_dilation(inside, iterations=12)
    kw = dict(positive_fraction=(1.0, 1.0), hematoxylin_scale=(1.0, 1.0))
    plain = deconvolve(he_to_ihc(image, labels, np.random.default_rng(3), **kw), H_DAB)[..., 1]
    rim = deconvolve(he_to_ihc(image, labels, np.random.default_rng(3), cytoplasm_dab=0.5, cytoplasm_width=4,
                               **kw), H_DAB)[..., 1]
    # The rim browns the cytoplasm next to positive nuclei, less than the nuclei, and not far away.
    assert rim[ring].mean() > plain[ring].mean() + 0.05
    assert rim[ring].mean() < rim[inside].mean()
    assert abs(rim[far].mean() - plain[far].mean()) < 0.02
    haze = deconvolve(he_to_ihc(image, labels, np.random.default_rng(3), background_dab=0.2, **kw), H_DAB)[..., 1]
    assert haze[far].mean() > plain[far].mean() + 0.02 and haze[far].std() > plain[far].std()


def test_he_to_ihc_cytoplasmic_marker_browns_cells_not_nuclei():
    from scipy import ndimage as ndi

    image, labels = _he_like()
    inside = labels > 0
    ring = ndi.binary_dilation(inside, iterations=3) & ~inside
    out = he_to_ihc(image, labels, np.random.default_rng(4), positive_fraction=(0.0, 0.0),
                    hematoxylin_scale=(1.0, 1.0), cytoplasmic_stain=0.6, cytoplasm_width=4)
    dab = deconvolve(out, H_DAB)[..., 1]
    # Every nucleus stays blue (none is positive) while the cytoplasm around each turns brown.
    assert dab[inside].mean() < 0.08 and dab[ring].mean() > 0.25
    per_nucleus = ndi.mean(dab, ndi.label(ring)[0], index=np.arange(1, ndi.label(ring)[1] + 1))
    assert (np.asarray(per_nucleus) > 0.15).all()


def test_he_to_ihc_granular_dab_mottles_positive_nuclei_at_the_same_level():
    from scipy import ndimage as ndi

    image, labels = _he_like()
    core = ndi.binary_erosion(labels > 0, iterations=2)
    ids = np.arange(1, labels.max() + 1)

    def per_nucleus_cv(out):
        dab = deconvolve(out, H_DAB)[..., 1]
        lab = np.where(core, labels, 0)
        mean = np.asarray(ndi.mean(dab, lab, ids))
        std = np.asarray(ndi.standard_deviation(dab, lab, ids))
        return std / mean, mean

    kw = dict(positive_fraction=(1.0, 1.0), hematoxylin_scale=(1.0, 1.0))
    smooth_cv, smooth_mean = per_nucleus_cv(he_to_ihc(image, labels, np.random.default_rng(5), **kw))
    grain_cv, grain_mean = per_nucleus_cv(he_to_ihc(image, labels, np.random.default_rng(5), dab_granularity=0.8,
                                                    granule_sigma=1.2, **kw))
    # Clumps and holes inside every nucleus, while each nucleus keeps its intensity class on average.
    assert np.median(grain_cv) > 2 * np.median(smooth_cv)
    np.testing.assert_allclose(np.median(grain_mean), np.median(smooth_mean), rtol=0.25)


def test_he_to_ihc_faint_nuclei_barely_stand_out_from_the_cytoplasm():
    from scipy import ndimage as ndi

    image, labels = _he_like()
    image[labels == 0] = (215, 160, 205)          # cytoplasm with some hematoxylin, as in H&E
    core = ndi.binary_erosion(labels > 0, iterations=2)
    far = ndi.distance_transform_edt(labels == 0) > 3
    kw = dict(positive_fraction=(0.0, 0.0), hematoxylin_scale=(1.0, 1.0))

    def nucleus_to_cytoplasm(out):
        hema = deconvolve(out, H_DAB)[..., 0]
        return hema[core].mean() / hema[far].mean(), hema[far].mean()

    plain, plain_cyto = nucleus_to_cytoplasm(he_to_ihc(image, labels, np.random.default_rng(6), **kw))
    faint, faint_cyto = nucleus_to_cytoplasm(he_to_ihc(image, labels, np.random.default_rng(6),
                                                       nuclear_contrast=0.3, **kw))
    same, _ = nucleus_to_cytoplasm(he_to_ihc(image, labels, np.random.default_rng(6), nuclear_contrast=1.0, **kw))
    assert plain > 3.0 and same == pytest.approx(plain)
    # The nuclei keep 30 % of their excess over the cytoplasm, which itself does not change.
    assert faint - 1 == pytest.approx(0.3 * (plain - 1), rel=0.25)
    assert faint_cyto == pytest.approx(plain_cyto, rel=0.05)


class _RecordingRng:
    """A generator that records the name of every method called on it."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)
        self.calls = []

    def __getattr__(self, name):
        method = getattr(self._rng, name)

        def record(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)
        return record


def test_faint_nuclei_are_drawn_only_when_enabled():
    image, labels = _he_like()
    crop = Crop(image=image, labels=labels, mask=labels > 0, valid=np.ones(labels.shape, bool))
    base = AugmentConfig(rot90=False, flips=False, p_stain_jitter=0, p_intensity=0, p_nuclei_hsv=0, p_blur=0,
                         p_noise=0, p_stain_transfer=1.0, p_granular_dab=0.0, p_faint_nuclei=0.0,
                         hematoxylin_scale=(1.0, 1.0), positive_fraction=(0.0, 0.0))
    off_rng, on_rng = _RecordingRng(3), _RecordingRng(3)
    off = augment(crop, off_rng, base, stain="H&E").image
    on = augment(crop, on_rng, replace(base, p_faint_nuclei=1.0, nuclear_contrast=(0.2, 0.2)), stain="H&E")
    # Off, not even its coin is tossed, so older recipes keep their random stream; on, one coin and one draw.
    assert on_rng.calls.count("random") == off_rng.calls.count("random") + 1
    assert on_rng.calls.count("uniform") == off_rng.calls.count("uniform") + 1
    hema_off = deconvolve(off, H_DAB)[..., 0]
    hema_on = deconvolve(on.image, H_DAB)[..., 0]
    assert hema_on[labels > 0].mean() < 0.7 * hema_off[labels > 0].mean()


def test_the_transfer_mixes_with_the_configured_stain_vector_spread():
    from napari_ihcseg.stain import rgb_to_od

    image, labels = _he_like()
    crop = Crop(image=image, labels=labels, mask=labels > 0, valid=np.ones(labels.shape, bool))
    base = AugmentConfig(rot90=False, flips=False, p_stain_jitter=0, p_intensity=0, p_nuclei_hsv=0, p_blur=0,
                         p_noise=0, p_stain_transfer=1.0, positive_fraction=(0.0, 0.0), p_background_dab=0.0,
                         p_faint_nuclei=0.0, p_cytoplasmic_stain=0.0, hematoxylin_scale=(1.0, 1.0))
    reference = np.asarray(H_DAB.hematoxylin)

    def counterstain_angle(spread, seed):
        out = augment(crop, np.random.default_rng(seed), replace(base, stain_vector_spread=spread), stain="H&E")
        od = rgb_to_od(out.image)
        direction = od[labels > 0].mean(axis=0) - od[labels == 0].mean(axis=0)   # the nuclei's hematoxylin
        cos = direction @ reference / np.linalg.norm(direction) / np.linalg.norm(reference)
        return np.degrees(np.arccos(min(cos, 1.0)))

    fixed = [counterstain_angle((0.0, 0.0), seed) for seed in range(5)]
    varied = [counterstain_angle((0.3, 0.06), seed) for seed in range(5)]
    # Without spread every transfer has the reference hue; with it, the counterstain hue moves.
    assert max(fixed) < 3.0
    assert np.median(varied) > 8.0


def test_random_stain_vectors_are_never_almost_parallel():
    from napari_ihcseg.training.augment import MIN_STAIN_ANGLE_DEG, random_ihc_stains

    rng = np.random.default_rng(0)
    for _ in range(300):
        stains = random_ihc_stains(rng, spread=(0.5, 0.5))      # wide enough to collide often
        cos = np.dot(stains.hematoxylin, stains.dab)
        assert np.degrees(np.arccos(min(cos, 1.0))) >= MIN_STAIN_ANGLE_DEG - 1e-6


def test_wider_stain_vector_spread_varies_the_counterstain_hue_more():
    from napari_ihcseg.training.augment import random_ihc_stains

    def median_angle(spread, which):
        rng = np.random.default_rng(0)
        ref = np.asarray(getattr(H_DAB, which)) / np.linalg.norm(getattr(H_DAB, which))
        angles = []
        for _ in range(400):
            v = np.asarray(getattr(random_ihc_stains(rng, spread=spread), which))
            angles.append(np.degrees(np.arccos(np.clip(v @ ref / np.linalg.norm(v), -1, 1))))
        return np.median(angles)

    narrow, wide = median_angle(0.06, "hematoxylin"), median_angle((0.15, 0.06), "hematoxylin")
    assert 2 < narrow < 6 and 8 < wide < 13
    # The DAB vector keeps its own, narrower spread.
    assert median_angle((0.15, 0.06), "dab") == pytest.approx(median_angle(0.06, "dab"), rel=0.3)


def test_stain_transfer_only_on_he(field):
    image, labels = _he_like()
    crop = Crop(image=image, labels=labels, mask=labels > 0, valid=np.ones(labels.shape, bool))
    cfg = AugmentConfig(rot90=False, flips=False, p_stain_jitter=0, p_intensity=0, p_nuclei_hsv=0, p_blur=0,
                        p_noise=0, p_stain_transfer=1.0, positive_fraction=(1.0, 1.0))
    he = augment(crop, np.random.default_rng(0), cfg, stain="H&E")
    ihc = augment(crop, np.random.default_rng(0), cfg, stain="Ki-67")
    assert not np.array_equal(he.image, image) and np.array_equal(ihc.image, image)
    assert is_he("H&E") and is_he("he") and not is_he("Ki-67")


def test_nuclei_hsv_shift_changes_nuclei_only():
    image, labels = _he_like()
    out = nuclei_hsv_shift(image, labels, np.random.default_rng(0), hue=0.2, saturation=0.5, value=0.3)
    from scipy import ndimage as ndi

    far = ~ndi.binary_dilation(labels > 0, iterations=4)
    assert np.array_equal(out[far], image[far])
    assert np.abs(out[labels > 0].astype(int) - image[labels > 0]).mean() > 3


def test_stain_jitter_changes_colour_but_not_much_structure():
    image, labels = _he_like()
    out = stain_jitter(image, np.random.default_rng(0), scale=0.2, shift=0.03)
    assert not np.array_equal(out, image)
    # Nuclei stay darker than the background.
    assert out[labels > 0].mean() < out[labels == 0].mean()


def test_mask_only_crops_have_no_contour_target():
    mask = np.zeros((64, 64), bool)
    mask[10:30, 10:30] = True
    crop = Crop(image=np.zeros((64, 64, 3), np.uint8), labels=None, mask=mask, valid=np.ones((64, 64), bool))
    m, c, w = crop_targets(crop)
    assert w == 0.0 and not c.any() and np.array_equal(m, mask)
    labels = mask.astype(np.int32)
    m, c, w = crop_targets(Crop(crop.image, labels, mask, crop.valid))
    assert w == 1.0 and c.any() and not (c & ~m).any()


def test_batches_are_a_function_of_epoch_and_step(field):
    sampler = BatchSampler([field], tile=64, stride=32, batch_size=3, seed=5, augment=AugmentConfig(),
                           synthetic_fraction=0.3)
    a, b = sampler.batch(1, 2), sampler.batch(1, 2)
    c = sampler.batch(1, 3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.contour, b.contour)
    assert not np.array_equal(a.image, c.image)
    assert a.image.shape == (3, 3, 64, 64) and a.image.dtype == np.float32
    assert 0.0 <= a.image.min() and a.image.max() <= 1.0
    assert a.mask.shape == a.contour.shape == a.valid.shape == (3, 1, 64, 64)
    assert (a.contour <= a.mask).all()
    fresh = BatchSampler([field], tile=64, stride=32, batch_size=3, seed=5, augment=AugmentConfig(),
                         synthetic_fraction=0.3)
    assert np.array_equal(fresh.batch(1, 2).image, a.image), "a restarted run must see the same batches"


def test_training_recipe_overrides_augmentation_fields(train_recipe):
    """``scripts/train_default.py --augment FIELD=VALUE`` reproduces runs made with other settings."""
    recipe = train_recipe
    config = recipe.augment_config(["p_cytoplasmic_stain=0", "hematoxylin_scale=0.3,1.0", "flips=false"])
    assert config.p_cytoplasmic_stain == 0.0 and config.hematoxylin_scale == (0.3, 1.0) and config.flips is False
    assert config.p_stain_transfer == AugmentConfig().p_stain_transfer
    assert recipe.augment_config([], no_stain_transfer=True).p_stain_transfer == 0.0
    with pytest.raises(SystemExit, match="no_such_field"):
        recipe.augment_config(["no_such_field=1"])
