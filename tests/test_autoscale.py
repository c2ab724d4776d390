"""Automatic image scale: from the file's pixel size, or from the nuclei of a first pass."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from napari_ihcseg import pipeline
from napari_ihcseg.cli import main
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.inference import InferenceConfig, segment_image
from napari_ihcseg.inference.autoscale import estimate_scale, nucleus_diameters, resolve_scale
from napari_ihcseg.inference.tiled import resize_image
from napari_ihcseg.pipeline import PipelineOptions, outputs_complete

from test_scale import SizedODNet

CONFIG = InferenceConfig(tile=128, overlap=32, device="cpu", amp=False)


@pytest.fixture(scope="module")
def field():
    return make_synthetic_ihc((512, 512), seed=5, radius_range=(8.0, 11.0), density=0.2, touching=0.0,
                              positive_fraction=0.3)


@pytest.fixture(scope="module")
def model(field):
    """A model whose checkpoint records its own median nucleus diameter at full resolution."""
    net = SizedODNet()
    diameter = float(np.median(nucleus_diameters(segment_image(field.image, net, CONFIG).labels)))
    net.checkpoint_info = SimpleNamespace(training={"nucleus_diameter_px": diameter, "pixel_size_um": 0.25})
    return net


def half(image: np.ndarray) -> np.ndarray:
    return resize_image(image, (image.shape[0] // 2, image.shape[1] // 2))


def test_full_resolution_keeps_scale_one(field, model):
    estimate = estimate_scale(field.image, model, config=CONFIG)
    assert (estimate.scale, estimate.source) == (1.0, "nuclei")
    assert estimate.n_nuclei >= 30


def test_half_resolution_picks_about_two(field, model):
    small = half(field.image)
    # At scale 1 the model loses most nuclei of half their size: the guess comes from a pass at 2.
    assert len(nucleus_diameters(segment_image(small, model, CONFIG).labels)) < 30
    estimate = estimate_scale(small, model, config=CONFIG)
    assert estimate.source == "nuclei"
    assert estimate.scale == 2.0, estimate
    raw = float(estimate.reason.split("factor ")[1].split(",")[0])
    assert 1.6 <= raw <= 2.4, estimate.reason
    # A quarter of the resolution is outside what the passes can see: it refuses rather than guesses.
    tiny = half(small)
    refused = estimate_scale(tiny, model, config=CONFIG)
    assert refused.scale == 1.0 and refused.source == "none"


def test_upsampled_image_picks_about_a_half(field, model):
    big = resize_image(field.image[:256, :256], (512, 512))
    estimate = estimate_scale(big, model, config=CONFIG)
    assert (estimate.source, estimate.scale) == ("nuclei", 0.5), estimate


@pytest.mark.parametrize("raw, step", [(1.29, 1.0), (1.4, 1.0), (1.45, 2.0), (1.55, 2.0), (2.07, 2.0),
                                       (0.7, 0.5), (0.75, 1.0), (3.2, 4.0), (20.0, 8.0)])
def test_a_factor_from_nuclei_is_taken_to_the_nearest_magnification_step(raw, step):
    from napari_ihcseg.inference.autoscale import _nearest_magnification

    assert _nearest_magnification(raw) == step


def test_refuses_without_nuclei(model):
    blank = np.full((256, 256, 3), 245, np.uint8)
    estimate = estimate_scale(blank, model, config=CONFIG)
    assert (estimate.scale, estimate.source) == (1.0, "none")
    assert "too few nuclei" in estimate.reason and estimate.n_nuclei < 30


def test_refuses_when_the_checkpoint_records_no_scale(field):
    estimate = estimate_scale(half(field.image), SizedODNet(), config=CONFIG)
    assert (estimate.scale, estimate.source) == (1.0, "none")
    assert "records no training" in estimate.reason


class Untouchable(SizedODNet):
    def forward(self, x):
        raise AssertionError("the pixel size alone decides; the model must not run")


def test_pixel_size_from_metadata_needs_no_pass(field):
    net = Untouchable()
    net.checkpoint_info = SimpleNamespace(training={"pixel_size_um": 0.25, "nucleus_diameter_px": 19.0})
    assert estimate_scale(field.image, net, pixel_size_um=0.5).scale == 2.0
    assert estimate_scale(field.image, net, pixel_size_um=0.26).scale == 1.0  # within the snap
    estimate = estimate_scale(field.image, net, pixel_size_um=0.125)
    assert (estimate.scale, estimate.source) == (0.5, "metadata")


def test_resolve_scale_passes_numbers_and_keeps_whole_slides_at_one(field, model):
    def never(size):
        raise AssertionError("a set scale reads nothing")

    assert resolve_scale(2.0, never, model).scale == 2.0
    small = half(field.image)
    whole = resolve_scale("auto", lambda size: small[:size, :size], model, config=CONFIG, whole_slide=True)
    assert whole.scale == 1.0 and "whole slide" in whole.reason
    assert whole.warning and "calls for scale 2" in whole.warning and "missed or merged" in whole.warning


def test_a_scale_set_against_the_files_pixel_size_is_warned_about(model):
    def never(size):
        raise AssertionError("a set scale reads nothing")

    against = resolve_scale(1.0, never, model, pixel_size_um=0.5)  # trained at 0.25 um: scale 2 is right
    assert "call for scale 2.00" in against.warning and against.to_dict()["warning"] == against.warning
    assert resolve_scale(2.0, never, model, pixel_size_um=0.5).warning is None
    assert resolve_scale(1.0, never, model, pixel_size_um=0.3).warning is None, "1.2x away: within reason"
    assert resolve_scale(1.0, never, model).warning is None, "no pixel size: nothing to compare"


def test_the_summary_warns_when_the_scale_contradicts_the_pixel_size(field, model, tmp_path, monkeypatch):
    import tifffile

    monkeypatch.setattr(pipeline, "resolve_model", lambda spec, device="auto": (model, "sized"))
    path = tmp_path / "half.tif"  # 0.5 um pixels: resolution in pixels per centimetre
    tifffile.imwrite(path, half(field.image), photometric="rgb", resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    forced = PipelineOptions(inference=CONFIG, auto_scale=False)
    summary = pipeline.process_image(path, tmp_path / "one", forced)
    assert summary["pixel_size_um"] == pytest.approx(0.5)
    assert any("call for scale 2.00" in w for w in summary["warnings"]), summary["warnings"]
    auto = pipeline.process_image(path, tmp_path / "auto", PipelineOptions(inference=CONFIG))
    assert auto["scale"]["scale"] == 2.0 and not any("scale" in w for w in auto["warnings"])
    assert "0.5 um from the file" in auto["scale"]["reason"]
    # A pixel size given by the user is reported as given, not as the file's.
    given = pipeline.process_image(path, tmp_path / "given", PipelineOptions(inference=CONFIG, pixel_size_um=0.25))
    assert given["scale"]["scale"] == 1.0 and "0.25 um as given" in given["scale"]["reason"]
    png = tmp_path / "half.png"
    Image.fromarray(half(field.image)).save(png)
    forced = PipelineOptions(inference=CONFIG, auto_scale=False, pixel_size_um=0.5)
    warning = next(w for w in pipeline.process_image(png, tmp_path / "png", forced)["warnings"] if "scale" in w)
    assert "(0.5 um as given)" in warning and "file" not in warning


def test_auto_is_the_default_and_reaches_the_segmentation(field, model, tmp_path, monkeypatch):
    assert PipelineOptions().auto_scale and PipelineOptions().inference.scale == 1.0
    monkeypatch.setattr(pipeline, "resolve_model", lambda spec, device="auto": (model, "sized"))
    path = tmp_path / "half.png"
    Image.fromarray(half(field.image)).save(path)
    out = tmp_path / "out"
    assert main(["segment", str(path), "--out", str(out), "--tile", "128", "--overlap", "32",
                 "--device", "cpu"]) == 0
    summary = json.loads((out / "half.summary.json").read_text())
    assert summary["options"]["auto_scale"] is True and summary["options"]["inference"]["scale"] == 1.0
    assert (summary["scale"]["source"], summary["scale"]["scale"]) == ("nuclei", 2.0)
    n_auto = summary["n_nuclei"]
    assert main(["segment", str(path), "--out", str(tmp_path / "one"), "--tile", "128", "--overlap", "32",
                 "--device", "cpu", "--scale", "1"]) == 0
    n_one = json.loads((tmp_path / "one" / "half.summary.json").read_text())["n_nuclei"]
    assert n_auto > 2 * n_one, (n_auto, n_one)
    assert outputs_complete(out, "half", PipelineOptions(inference=InferenceConfig(tile=128, overlap=32, device="cpu")))
    at_two = InferenceConfig(tile=128, overlap=32, device="cpu", scale=2.0)
    assert not outputs_complete(out, "half", PipelineOptions(inference=at_two, auto_scale=False))


def test_cli_refuses_a_bad_scale_word(tmp_path, capsys):
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    assert main(["segment", str(path), "--out", str(tmp_path / "o"), "--scale", "automatic"]) == 2
    assert "--scale" in capsys.readouterr().err
