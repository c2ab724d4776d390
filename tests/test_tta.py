"""Test-time augmentation: each tile and its three flips, averaged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from napari_ihcseg import pipeline
from napari_ihcseg.cli import main
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.inference import InferenceConfig, predict, segment_image, segment_large
from napari_ihcseg.pipeline import PipelineOptions, outputs_complete, process_image

from fakes import ODNet

CPU = {"device": "cpu", "amp": False}


class LeaningNet(nn.Module):
    """Not flip-equivariant: the mask logit is the optical density 4 px to the right."""

    size_multiple = 32

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        od = -torch.log10(x.clamp_min(1 / 255)).mean(1, keepdim=True)
        shifted = F.pad(od[..., 4:], (0, 4))
        return 10.0 * (shifted - 0.2), 10.0 * (od - shifted)


@pytest.fixture(scope="module")
def field():
    return make_synthetic_ihc((160, 144), seed=5, radius_range=(6.0, 9.0), density=0.2, positive_fraction=0.3)


def _flip_average(model: nn.Module, image: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    total = 0
    for dims in ((), (3,), (2,), (2, 3)):
        xi = x.flip(dims) if dims else x
        p = torch.sigmoid(torch.cat(model(xi)[:2], 1))
        total = total + (p.flip(dims) if dims else p)
    return (total / 4)[0].numpy()


def test_tta_averages_the_four_flips_of_a_tile(field):
    image = np.ascontiguousarray(field.image[:64, :64])
    model = LeaningNet()
    pred = predict(image, model, tile=64, overlap=16, tta=True, **CPU)
    mask, contour = pred.mask_prob, pred.contour_prob
    expected = _flip_average(model, image)
    np.testing.assert_allclose(mask, expected[0], atol=1e-5)
    np.testing.assert_allclose(contour, expected[1], atol=1e-5)
    plain = predict(image, model, tile=64, overlap=16, **CPU).mask_prob
    assert np.abs(plain - mask).max() > 0.1, "a model that leans one way must change under flips"


def test_tta_leaves_a_flip_equivariant_model_unchanged_over_many_tiles(field):
    image = field.image[:150, :130]
    plain = predict(image, ODNet(), tile=64, overlap=16, **CPU)
    flipped = predict(image, ODNet(), tile=64, overlap=16, tta=True, **CPU)
    np.testing.assert_allclose(plain.mask_prob, flipped.mask_prob, atol=1e-5)
    np.testing.assert_allclose(plain.contour_prob, flipped.contour_prob, atol=1e-5)


@pytest.mark.parametrize("options", [{"amp": "bf16"}, {"amp": False, "channels_last": False}])
def test_tta_under_bf16_autocast_and_without_channels_last(field, options):
    image = np.ascontiguousarray(field.image[:64, :64])
    pred = predict(image, LeaningNet(), tile=64, overlap=16, device="cpu", tta=True, **options)
    mask, contour = pred.mask_prob, pred.contour_prob
    expected = _flip_average(LeaningNet(), image)
    atol = 2e-2 if options["amp"] else 1e-5
    np.testing.assert_allclose(mask, expected[0], atol=atol)
    np.testing.assert_allclose(contour, expected[1], atol=atol)


def test_tta_on_a_whole_slide_block_by_block(field, tmp_path):
    import zarr

    image = field.image[:128, :128]
    config = InferenceConfig(tile=64, overlap=16, device="cpu", amp=False, tta=True)
    model = LeaningNet()
    result = segment_large(image, model, out=tmp_path / "tta.zarr", config=config, block=64, tissue=False)
    plain = LeaningNet()
    segment_large(image, plain, out=tmp_path / "plain.zarr", config=config.replace(tta=False), block=64,
                  tissue=False)
    assert model.calls == 4 * plain.calls > 0
    assert zarr.open_array(str(result.path), mode="r").attrs["inference"]["tta"] is True


def test_tta_runs_four_passes_per_batch_and_says_so(field):
    image = field.image[:64, :64]
    model = LeaningNet()
    info = predict(image, model, tile=64, overlap=16, batch_size=1, tta=True, **CPU).info
    assert model.calls == 4
    assert info.tta and "test-time augmentation" in info.describe()
    info = predict(image, model, tile=64, overlap=16, batch_size=1, **CPU).info
    assert model.calls == 5 and not info.tta and "augmentation" not in info.describe()


def test_tta_reaches_segment_image_through_the_config(field):
    image = field.image[:64, :64]
    config = InferenceConfig(tile=64, overlap=16, device="cpu", amp=False, tta=True)
    result = segment_image(image, LeaningNet(), config)
    np.testing.assert_allclose(result.mask_prob, _flip_average(LeaningNet(), np.ascontiguousarray(image))[0],
                               atol=1e-5)
    assert result.labels.shape == (64, 64) and result.info.tta


def test_tta_option_is_checked_and_round_trips():
    cfg = InferenceConfig(tta=True)
    assert cfg.tta is True
    assert InferenceConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="tta"):
        InferenceConfig(tta="yes")
    with pytest.raises(TypeError, match="tta"):
        predict(np.zeros((32, 32, 3), np.uint8), LeaningNet(), tile=32, overlap=0, tta=1, **CPU)


@pytest.fixture
def png(tmp_path, field):
    path = tmp_path / "in" / "field.png"
    path.parent.mkdir()
    Image.fromarray(field.image[:96, :80]).save(path)
    return path


def test_cli_tta_reaches_the_model_and_the_summary(png, tmp_path, monkeypatch):
    model = LeaningNet()
    monkeypatch.setattr(pipeline, "resolve_model", lambda spec, device="auto": (model, "leaning"))
    out = tmp_path / "out"
    assert main(["segment", str(png), "--out", str(out), "--tile", "128", "--overlap", "16", "--tta"]) == 0
    assert model.calls == 4, "one tile, four flips"
    summary = json.loads((out / "field.summary.json").read_text())
    assert summary["options"]["inference"]["tta"] is True
    assert outputs_complete(out, "field", PipelineOptions(inference=InferenceConfig(tile=128, overlap=16, tta=True)))
    assert not outputs_complete(out, "field", PipelineOptions(inference=InferenceConfig(tile=128, overlap=16))), \
        "a run without TTA is stale"


@pytest.mark.parametrize("option, other", [("tta", True), ("scale", 2.0)])
def test_summaries_from_before_an_option_existed_hold_its_default(png, tmp_path, option, other):
    """A summary written before ``scale`` / ``tta`` existed was made at scale 1 without TTA."""
    out = tmp_path / "out"
    # Scale 1 as then (the default is now "auto", which such a summary does not satisfy).
    options = PipelineOptions(inference=InferenceConfig(tile=64, overlap=16, scale=1.0), auto_scale=False)
    process_image(png, out, options, model=ODNet(), model_name="odnet")
    path = out / "field.summary.json"
    summary = json.loads(path.read_text())
    # The options as such a summary recorded them: flat, without the option.
    summary["options"] = {"device": "auto", "tile": 64, "overlap": 16, "mask_threshold": None,
                          "contour_threshold": None, "min_size": None, "stain": None, "thresholds": None,
                          "roi": None, "pixel_size_um": None, "estimate_stains": False, "save_probabilities": False,
                          "overlay": False, "block": 4096, "scale": 1.0, "tta": False}
    del summary["options"][option]
    path.write_text(json.dumps(summary))
    assert outputs_complete(out, "field", options)
    other_options = options.replace(inference=options.inference.replace(**{option: other}), auto_scale=False)
    assert not outputs_complete(out, "field", other_options)
