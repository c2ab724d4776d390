"""Tiled prediction in memory: seams, batching, cancel, progress, devices, precision."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from torch import nn

from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.inference import Cancelled, InferenceConfig, plan_tiles, predict, segment_image
from napari_ihcseg.inference.preprocess import PREPROCESSING, apply_preprocess, median3
from napari_ihcseg.inference.runtime import (
    CPU_BATCH_PIXELS,
    FALLBACK_BYTES_PER_PIXEL,
    MAX_BATCH,
    MEMORY_FRACTION,
    choose_batch_size,
    cpu_supports_bf16,
    resolve_runtime,
)
from napari_ihcseg.metrics import aggregated_jaccard_index

from fakes import ODNet


class OOMNet(ODNet):
    """Raises CUDA out-of-memory for batches larger than ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake, batch {x.shape[0]})")
        return super().forward(x)


@pytest.fixture(scope="module")
def field():
    # 352 x 416: not a multiple of the tile stride, nuclei everywhere.
    return make_synthetic_ihc((352, 416), seed=7, density=0.35)


def crosses_tile_edges(labels, plan) -> int:
    """How many nuclei straddle an inner tile edge of ``plan``."""
    edges_y = {b.y0 for b in plan.boxes if b.y0 > 0} | {b.y1 for b in plan.boxes if b.y1 < labels.shape[0]}
    edges_x = {b.x0 for b in plan.boxes if b.x0 > 0} | {b.x1 for b in plan.boxes if b.x1 < labels.shape[1]}
    ids = set()
    for y in edges_y:
        ids |= set(np.unique(labels[y - 1][labels[y - 1] == labels[y]]))
    for x in edges_x:
        ids |= set(np.unique(labels[:, x - 1][labels[:, x - 1] == labels[:, x]]))
    return len(ids - {0})


def test_tiles_give_the_same_instances_as_one_piece(field):
    model = ODNet()
    one = segment_image(field.image, model, tile=448, overlap=64, device="cpu", amp=False)
    assert len(model.batches) == 1  # one tile covers the whole field
    plan = plan_tiles(field.image.shape, tile=128, overlap=32)
    assert crosses_tile_edges(field.labels, plan) >= 20  # the test means something only with nuclei on seams
    tiled = segment_image(field.image, model, tile=128, overlap=32, device="cpu", amp=False)
    assert np.abs(one.mask_prob - tiled.mask_prob).max() < 1e-3
    assert np.abs(one.contour_prob - tiled.contour_prob).max() < 1e-3
    assert one.info.tiles == 1 and tiled.info.tiles == len(plan.boxes)
    assert tiled.labels.max() == one.labels.max() >= 100
    assert aggregated_jaccard_index(tiled.labels, one.labels) >= 0.99
    # And the detector finds the painted nuclei reasonably, so the seams are tested on real instances.
    assert aggregated_jaccard_index(tiled.labels, field.labels) > 0.5


def test_cropping_instead_of_blending_would_leave_seams(field):
    # The same tiles without overlap differ at the seams: the blending is what removes them.
    model, img = ODNet(), field.image[:256, :256]
    whole = predict(img, model, tile=256, overlap=0, device="cpu", amp=False).mask_prob
    no_overlap = predict(img, model, tile=128, overlap=0, device="cpu", amp=False).mask_prob
    blended = predict(img, model, tile=128, overlap=32, device="cpu", amp=False).mask_prob
    assert np.abs(no_overlap - whole).max() > 0.1
    assert np.abs(blended - whole).max() < 1e-3


def test_batch_size_does_not_change_the_result(field):
    model = ODNet()
    a = predict(field.image, model, tile=128, overlap=32, batch_size=1, device="cpu", amp=False)
    b = predict(field.image, model, tile=128, overlap=32, batch_size=5, device="cpu", amp=False)
    n = len(plan_tiles(field.image.shape, tile=128, overlap=32).boxes)
    assert n > 5 and set(model.batches) == {1, 5} | ({n % 5} - {0})
    np.testing.assert_allclose(a.mask_prob, b.mask_prob, atol=1e-6)
    np.testing.assert_allclose(a.contour_prob, b.contour_prob, atol=1e-6)
    assert (a.info.batch_size, b.info.batch_size) == (1, 5)


def test_progress_rises_to_the_number_of_tiles(field):
    calls = []
    predict(field.image, ODNet(), tile=128, overlap=32, batch_size=3, device="cpu",
            progress=lambda done, total: calls.append((done, total)))
    total = len(plan_tiles(field.image.shape, tile=128, overlap=32).boxes)
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    assert all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))


def test_segment_image_progress_counts_the_instance_step(field):
    calls = []
    segment_image(field.image[:128, :160], ODNet(), tile=64, overlap=16, device="cpu",
                  progress=lambda d, t: calls.append((d, t)))
    n = len(plan_tiles((128, 160), tile=64, overlap=16).boxes)
    assert calls[-1] == (n + 1, n + 1) and calls[-2] == (n, n + 1)


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_stops_within_one_batch(field, kind):
    model = ODNet()
    event = threading.Event()
    cancel = event if kind == "event" else event.is_set

    def progress(done, total):
        if done >= 2:  # the user clicks "cancel" while the first batch of two runs
            event.set()

    with pytest.raises(Cancelled):
        predict(field.image, model, tile=128, overlap=32, batch_size=2, device="cpu", progress=progress,
                cancel=cancel)
    assert model.batches == [2]


def test_cancel_before_the_instance_step(field):
    model = ODNet()
    event = threading.Event()

    def progress(done, total):
        if done == total - 1:  # all tiles done, the instance step is next
            event.set()

    with pytest.raises(Cancelled):
        segment_image(field.image[:96, :96], model, tile=64, overlap=16, device="cpu", progress=progress,
                      cancel=event)


def test_rejected_tiles_are_not_run(field):
    model = ODNet()
    calls = []
    plan = plan_tiles(field.image.shape, tile=128, overlap=32)
    xs = sorted({b.x0 for b in plan.boxes})
    assert len(xs) >= 3
    cut = xs[1] + plan.tile_shape[1]  # keep the first two columns of tiles
    full = predict(field.image, ODNet(), tile=128, overlap=32, device="cpu", amp=False).mask_prob
    kept_only = predict(field.image, model, tile=128, overlap=32, device="cpu", amp=False,
                        keep_tile=lambda box: box.x1 <= cut, progress=lambda d, t: calls.append((d, t)))
    mask, info = kept_only.mask_prob, kept_only.info
    kept = [b for b in plan.boxes if b.x1 <= cut]
    assert info.tiles == sum(model.batches) == len(kept) == calls[-1][1] < len(plan.boxes)
    # Left of the third column only kept tiles cover the pixels; right of the kept ones, nothing does.
    np.testing.assert_allclose(mask[:, :xs[2]], full[:, :xs[2]], atol=1e-5)
    assert (mask[:, cut:] == 0).all()


def test_auto_device_reports_the_device_it_used(field):
    info = predict(field.image[:64, :64], ODNet(), tile=64, overlap=16, device="auto").info
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert info.device.startswith(expected)
    assert expected in info.description and info.tiles == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_explicit_missing_device_fails_clearly(field):
    with pytest.raises(ValueError, match="'cuda' was requested but is not available"):
        predict(field.image[:64, :64], ODNet(), tile=64, overlap=16, device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        predict(field.image[:64, :64], ODNet(), tile=64, overlap=16, device="tpu")


def test_out_of_memory_halves_the_batch_and_goes_on(field):
    reference = predict(field.image, ODNet(), tile=128, overlap=32, batch_size=1, device="cpu", amp=False)
    model = OOMNet(limit=2)
    halved = predict(field.image, model, tile=128, overlap=32, batch_size=8, device="cpu", amp=False)
    assert halved.info.batch_size == 2
    assert max(model.batches) == 2
    np.testing.assert_allclose(halved.mask_prob, reference.mask_prob, atol=1e-6)
    np.testing.assert_allclose(halved.contour_prob, reference.contour_prob, atol=1e-6)


def test_out_of_memory_at_batch_one_is_raised(field):
    with pytest.raises(torch.cuda.OutOfMemoryError):
        predict(field.image[:96, :96], OOMNet(limit=0), tile=64, overlap=16, batch_size=4, device="cpu")


def test_batch_size_from_free_memory():
    rt = resolve_runtime("cpu", amp=False)
    model = ODNet()
    tile_bytes = 100 * 2**20
    assert choose_batch_size(model, (512, 512), rt, free_bytes=10 * 2**30, tile_bytes=tile_bytes) == int(
        MEMORY_FRACTION * 10 * 2**30 // tile_bytes)
    assert choose_batch_size(model, (512, 512), rt, free_bytes=10 * 2**40, tile_bytes=tile_bytes) == MAX_BATCH
    assert choose_batch_size(model, (512, 512), rt, free_bytes=2**20, tile_bytes=tile_bytes) == 1
    assert choose_batch_size(model, (512, 512), rt, free_bytes=10 * 2**30, tile_bytes=tile_bytes, n_tiles=3) == 3
    # The CPU's pixel budget per forward pass: two 512² tiles, at least one tile.
    assert CPU_BATCH_PIXELS == 2 * 512 * 512
    assert choose_batch_size(model, (512, 512), rt) == 2
    assert choose_batch_size(model, (256, 256), rt) == 8
    assert choose_batch_size(model, (1024, 1024), rt) == 1
    assert choose_batch_size(model, (256, 256), rt, n_tiles=3) == 3
    # Free memory known but the tile not measured: the documented per-pixel estimate.
    assert choose_batch_size(model, (512, 512), rt, free_bytes=20 * 2**30) == int(
        MEMORY_FRACTION * 20 * 2**30 // (FALLBACK_BYTES_PER_PIXEL * 512 * 512))


def test_bf16_probabilities_match_fp32(field):
    # The default on a CPU with native bf16; the accuracy is documented in docs/inference.md.
    model = ODNet()
    fp32 = predict(field.image, model, tile=128, overlap=32, device="cpu", amp=False)
    bf16 = predict(field.image, model, tile=128, overlap=32, device="cpu", amp="bf16")
    assert bf16.info.precision == "bf16"
    for low, full in ((bf16.mask_prob, fp32.mask_prob), (bf16.contour_prob, fp32.contour_prob)):
        assert np.abs(low - full).max() < 0.05
        assert np.abs(low - full).mean() < 2e-3
        assert np.mean((low > 0.5) != (full > 0.5)) < 0.005
    from napari_ihcseg.instances import probabilities_to_instances

    labels16 = probabilities_to_instances(bf16.mask_prob, bf16.contour_prob)
    labels32 = probabilities_to_instances(fp32.mask_prob, fp32.contour_prob)
    assert aggregated_jaccard_index(labels16, labels32) >= 0.95


def test_default_precision_on_this_cpu():
    rt = resolve_runtime("cpu")
    assert rt.precision == ("bf16" if cpu_supports_bf16() else "fp32")
    assert resolve_runtime("cpu", amp=False).precision == "fp32"
    assert resolve_runtime("cpu", amp="fp16").precision == "fp16"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_runtime("cpu", amp="int8")


def test_small_images_are_padded_and_cropped_back():
    img = make_synthetic_ihc((40, 75), seed=2).image
    pred = predict(img, ODNet(), tile=512, device="cpu")
    mask, contour = pred.mask_prob, pred.contour_prob
    assert mask.shape == contour.shape == (40, 75) and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1


def test_the_model_is_left_in_its_mode(field):
    model = ODNet().train()
    predict(field.image[:64, :64], model, tile=64, overlap=16, device="cpu")
    assert model.training


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        (np.zeros((32, 32, 4), np.uint8), ValueError, "alpha"),
        (np.zeros((32, 32), np.uint8), ValueError, r"\(H, W, 3\)"),
        (np.zeros((32, 32, 3), np.float32), TypeError, "uint8"),
    ],
)
def test_bad_images_are_explained(image, error, match):
    with pytest.raises(error, match=match):
        predict(image, ODNet(), tile=32, overlap=8, device="cpu")


def test_models_that_break_the_contract_are_explained():
    class OneOutput(nn.Module):
        def forward(self, x):
            return x[:, :1]

    class WrongShape(nn.Module):
        def forward(self, x):
            return x[:, :1, ::2], x[:, :1]

    img = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(TypeError, match=r"\(mask_logits, contour_logits\)"):
        predict(img, OneOutput(), tile=32, overlap=8, device="cpu")
    with pytest.raises(ValueError, match="expected"):
        predict(img, WrongShape(), tile=32, overlap=8, device="cpu")


def test_predict_takes_a_config_and_overrides(field):
    cfg = InferenceConfig(tile=64, overlap=16, device="cpu", amp=False, batch_size=1)
    img = field.image[:96, :128]
    by_config = predict(img, ODNet(), cfg)
    by_keywords = predict(img, ODNet(), tile=64, overlap=16, device="cpu", amp=False, batch_size=1)
    np.testing.assert_array_equal(by_config.mask_prob, by_keywords.mask_prob)
    assert by_config.info.batch_size == 1 and by_config.info.tiles == by_keywords.info.tiles > 1
    assert predict(img, ODNet(), cfg, batch_size=2).info.batch_size == 2
    # The config checks the options once, for predict as for segment_image.
    with pytest.raises(ValueError, match="blend"):
        predict(img, ODNet(), cfg, blend="box")
    with pytest.raises(TypeError, match="unknown inference option"):
        predict(img, ODNet(), cfg, tiles=3)


def test_segment_image_takes_a_config_and_overrides(field):
    cfg = InferenceConfig(tile=128, overlap=32, device="cpu", min_size=40)
    img = field.image[:192, :224]
    small = segment_image(img, ODNet(), cfg).labels
    smaller = segment_image(img, ODNet(), cfg, min_size=4).labels
    assert small.dtype == np.int32 and smaller.max() > small.max()
    sizes = np.bincount(small.ravel())[1:]
    assert sizes.min() >= 40
    with pytest.raises(TypeError, match="unknown inference option"):
        segment_image(field.image, ODNet(), cfg, tiles=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(tile=512, overlap=512), "overlap"), (dict(mask_threshold=2), "mask_threshold"),
     (dict(preprocess="sharpen"), "unknown preprocessing"), (dict(blend="box"), "blend"),
     (dict(amp="x"), "unknown precision 'x'"), (dict(device="gpu"), "unknown device 'gpu'"),
     (dict(erode=200), r"erode must be an int in \[0, 32\]"), (dict(tile=256.0), "tile must be a whole number")],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InferenceConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [dict(amp=None), dict(channels_last="no"), dict(fill_holes="no")])
def test_switches_must_be_booleans(kwargs):
    """A string such as "no" (from a JSON file, say) would otherwise count as True."""
    with pytest.raises(TypeError, match="must be True or False"):
        InferenceConfig(**kwargs)


def test_numpy_numbers_are_accepted_and_stored_as_python_numbers():
    cfg = InferenceConfig(tile=np.int64(256), mask_threshold=np.float32(0.5), min_size=np.int64(5),
                          channels_last=np.bool_(False))
    assert (cfg.tile, cfg.mask_threshold, cfg.min_size, cfg.channels_last) == (256, 0.5, 5, False)
    assert type(cfg.tile) is int and type(cfg.mask_threshold) is float and type(cfg.channels_last) is bool


@pytest.mark.parametrize("name", list(PREPROCESSING))
def test_preprocessing_is_applied_before_the_model(field, name):
    img = field.image[:96, :128]
    direct = predict(apply_preprocess(img, name), ODNet(), tile=64, overlap=16, device="cpu", amp=False)
    via = predict(img, ODNet(), tile=64, overlap=16, device="cpu", amp=False, preprocess=name)
    np.testing.assert_array_equal(direct.mask_prob, via.mask_prob)
    assert apply_preprocess(img, name).dtype == np.uint8
    assert not np.array_equal(apply_preprocess(img, name), img)


def test_median3_removes_salt_noise():
    img = np.full((9, 9, 3), 120, np.uint8)
    img[4, 4] = 255
    img[2, 6] = 0
    assert (median3(img) == 120).all()
    assert apply_preprocess(img, None) is img
