"""The image scale option: resize before the network, labels at the input's shape."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.spatial import cKDTree
from skimage.measure import regionprops

from napari_ihcseg import pipeline
from napari_ihcseg.cli import main
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.inference import InferenceConfig, plan_tiles, predict, segment_image, segment_large
from napari_ihcseg.inference.tiled import resize_image
from napari_ihcseg.io import read_labels
from napari_ihcseg.pipeline import PipelineOptions, outputs_complete

from fakes import ODNet

CPU = {"device": "cpu", "amp": False}


class SizedODNet(ODNet):
    """:class:`ODNet` whose mask is opened by a ``k``×``k`` square: nuclei too small to hold it vanish.

    Nuclei of radius 8-11 px hold a 9×9 square; at half that size they do
    not, so what it finds depends on the size of the nuclei in pixels, as
    with a network trained at one magnification.
    """

    def __init__(self, k: int = 9) -> None:
        super().__init__(stains=(0, 1))
        self.k = k

    def forward(self, x):
        od = -torch.log10(x.clamp_min(1 / 255))
        h = F.conv2d((od * self.vec).sum(1, keepdim=True), self.blur, padding=2)
        k = self.k
        h = F.max_pool2d(-F.max_pool2d(-h, k, stride=1, padding=k // 2), k, stride=1, padding=k // 2)
        edge = F.conv2d(h, self.sobel, padding=1).pow(2).sum(1, keepdim=True).add(1e-6).sqrt()
        return 12.0 * (h - self.mask_at), 40.0 * (edge - self.edge_at)


@pytest.fixture(scope="module")
def field():
    return make_synthetic_ihc((384, 384), seed=3, radius_range=(8.0, 11.0), density=0.15, touching=0.0,
                              positive_fraction=0.3)


def _centroids(labels: np.ndarray) -> np.ndarray:
    return np.array([r.centroid for r in regionprops(labels)], float).reshape(-1, 2)


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_labels_and_probabilities_have_the_input_shape(field, scale):
    image = field.image[:101, :77]
    result = segment_image(image, ODNet(), tile=64, overlap=16, scale=scale, **CPU)
    labels, mask, contour = result.labels, result.mask_prob, result.contour_prob
    assert result.info.scale == scale
    assert labels.shape == mask.shape == contour.shape == (101, 77)
    assert labels.dtype == np.int32 and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0 and 0.0 <= contour.min() and contour.max() <= 1.0
    assert labels.max() > 0


def test_scale_one_is_the_plain_run(field):
    image = field.image[:128, :128]
    plain = predict(image, ODNet(), tile=64, overlap=16, **CPU)
    scaled = predict(image, ODNet(), tile=64, overlap=16, scale=1.0, **CPU)
    np.testing.assert_array_equal(plain.mask_prob, scaled.mask_prob)
    np.testing.assert_array_equal(plain.contour_prob, scaled.contour_prob)


def test_half_resolution_at_scale_2_finds_the_full_resolution_nuclei(field):
    model = SizedODNet()
    small = resize_image(field.image, (192, 192))
    full = segment_image(field.image, model, tile=128, overlap=32, **CPU).labels
    ignored = segment_image(small, model, tile=128, overlap=32, **CPU).labels
    scaled = segment_image(small, model, tile=128, overlap=32, scale=2.0, **CPU).labels
    assert scaled.shape == (192, 192)
    n_full, n_ignored, n_scaled = (len(np.unique(lab[lab > 0])) for lab in (full, ignored, scaled))
    assert n_full > 50
    # The model misses nuclei at half their size, so without the scale most are lost...
    assert n_ignored < 0.3 * n_full, (n_full, n_ignored)
    # ...and with it the same nuclei are found at the same places.
    assert abs(n_scaled - n_full) <= 0.15 * n_full, (n_full, n_scaled)
    in_full_pixels = (_centroids(scaled) + 0.5) * 2 - 0.5
    distance, _ = cKDTree(in_full_pixels).query(_centroids(full))
    assert np.mean(distance < 3.0) >= 0.85, np.sort(distance)


def test_progress_counts_the_tiles_of_the_scaled_image(field):
    calls = []
    segment_image(field.image[:128, :128], ODNet(), tile=64, overlap=16, scale=2.0,
                  progress=lambda done, total: calls.append((done, total)), **CPU)
    n_tiles = len(plan_tiles((256, 256), tile=64, overlap=16).boxes)
    assert calls[0] == (0, n_tiles + 1) and calls[-1] == (n_tiles + 1, n_tiles + 1)


def test_keep_tile_sees_boxes_of_the_input_image(field):
    image = field.image[:128, :128]
    seen = []

    def keep(box):
        seen.append(box)
        return box.y1 <= 64

    everything = predict(image, ODNet(), tile=64, overlap=16, scale=2.0, **CPU).mask_prob
    mask = predict(image, ODNet(), tile=64, overlap=16, scale=2.0, keep_tile=keep, **CPU).mask_prob
    assert len(seen) == len(plan_tiles((256, 256), tile=64, overlap=16).boxes)
    assert all(0 <= b.y0 < b.y1 <= 128 and 0 <= b.x0 < b.x1 <= 128 for b in seen)
    assert {b.y0 for b in seen} == {0, 24, 48, 72, 96}
    assert mask[64:].max() == 0.0
    np.testing.assert_allclose(mask[:40], everything[:40], atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 0.1, 10, math.nan, math.inf, "2", True, None])
def test_invalid_scale_is_refused(field, bad):
    with pytest.raises(ValueError, match="scale"):
        InferenceConfig(scale=bad)
    with pytest.raises(ValueError, match="scale"):
        predict(field.image[:64, :64], ODNet(), tile=64, overlap=16, scale=bad, **CPU)


def test_config_round_trip():
    cfg = InferenceConfig(scale=2)
    assert cfg.scale == 2.0 and isinstance(cfg.scale, float)
    assert InferenceConfig.from_dict(cfg.to_dict()) == cfg
    assert PipelineOptions(inference=InferenceConfig(scale=2), auto_scale=False).inference.scale == 2.0
    with pytest.raises(ValueError, match="auto_scale"):
        PipelineOptions(inference=InferenceConfig(scale=2))  # a scale set while the scale is chosen per image


def test_segment_large_refuses_a_scale(tmp_path):
    with pytest.raises(ValueError, match="in memory"):
        segment_large(np.zeros((64, 64, 3), np.uint8), ODNet(), out=tmp_path / "labels.zarr", tile=64,
                      overlap=16, tissue=False, scale=2.0, **CPU)
    assert not (tmp_path / "labels.zarr").exists()


# ------------------------------------------------------------ pipeline and CLI

@pytest.fixture
def png(tmp_path, field):
    path = tmp_path / "in" / "field.png"
    path.parent.mkdir()
    Image.fromarray(resize_image(field.image[:192, :160], (96, 80))).save(path)
    return path


@pytest.fixture
def odnet(monkeypatch):
    monkeypatch.setattr(pipeline, "resolve_model", lambda spec, device="auto": (ODNet(stains=(0, 1)), "odnet"))


def test_cli_scale_reaches_the_segmentation(png, tmp_path, odnet, monkeypatch, capsys):
    from napari_ihcseg import inference

    seen = []
    original = inference.segment_image

    def spy(image, model, config=None, **kwargs):
        seen.append(config.scale)
        return original(image, model, config, **kwargs)

    monkeypatch.setattr(inference, "segment_image", spy)
    out = tmp_path / "out"
    assert main(["segment", str(png), "--out", str(out), "--tile", "64", "--overlap", "16", "--scale", "2"]) == 0
    assert seen == [2.0]
    assert read_labels(out / "field.labels.tif").shape == (96, 80)
    summary = json.loads((out / "field.summary.json").read_text())
    assert summary["options"]["inference"]["scale"] == 2.0 and summary["options"]["auto_scale"] is False
    assert outputs_complete(out, "field", PipelineOptions(inference=InferenceConfig(tile=64, overlap=16, scale=2.0),
                                                          auto_scale=False))
    assert not outputs_complete(out, "field", PipelineOptions(inference=InferenceConfig(tile=64, overlap=16))), \
        "another scale is stale"


@pytest.mark.parametrize("value", ["0", "9", "nan"])
def test_cli_bad_scale_is_a_usage_error(png, tmp_path, odnet, capsys, value):
    assert main(["segment", str(png), "--out", str(tmp_path / "out"), "--scale", value]) == 2
    err = capsys.readouterr().err
    assert "--scale" in err and "Traceback" not in err


def test_cli_whole_slide_with_a_scale_is_a_usage_error_before_any_model_loads(png, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "LARGE_IMAGE_PIXELS", 1000)
    loaded = []
    monkeypatch.setattr(pipeline, "resolve_model", lambda *a, **k: loaded.append(a) or (ODNet(), "odnet"))
    out = tmp_path / "out"
    assert main(["segment", str(png), "--out", str(out), "--tile", "64", "--overlap", "16", "--scale", "2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "field.png" in err[0] and "whole slides" in err[0] and "use --scale 1" in err[0], err
    assert not loaded and not (out / "field.summary.json").exists()
