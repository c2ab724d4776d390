"""The size multiple: one constant, and a model's own ``size_multiple`` wherever a model is at hand."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.inference import predict
from napari_ihcseg.inference.planning import SIZE_MULTIPLE
from napari_ihcseg.training.tiles import grid_windows

from fakes import ODNet


@pytest.fixture(scope="module")
def image():
    return make_synthetic_ihc((100, 150), seed=2, density=0.2).image


def _input_shapes(model):
    shapes = []
    model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape[-2:])))
    return shapes


def test_the_model_s_own_size_multiple_constrains_the_tile(image):
    model = ODNet()
    model.size_multiple = 2 * SIZE_MULTIPLE
    with pytest.raises(ValueError, match=r"tile=96 is not a multiple of the model's size multiple 64; use tile=128"):
        predict(image, model, tile=96, overlap=16, device="cpu", amp=False)
    shapes = _input_shapes(model)
    mask = predict(image, model, tile=128, overlap=16, device="cpu", amp=False).mask_prob
    assert mask.shape == image.shape[:2]
    assert shapes and all(h % 64 == 0 and w % 64 == 0 for h, w in shapes)


def test_a_model_without_size_multiple_gets_the_default(image):
    class Bare(nn.Module):  # a plain module that declares no size multiple
        def __init__(self) -> None:
            super().__init__()
            self.net = ODNet()

        def forward(self, x):
            return self.net(x)

    model = Bare()
    shapes = _input_shapes(model)
    mask = predict(image, model, tile=96, overlap=16, device="cpu", amp=False).mask_prob  # 96: a multiple of 32
    assert mask.shape == image.shape[:2]
    assert shapes and all(h % SIZE_MULTIPLE == 0 and w % SIZE_MULTIPLE == 0 for h, w in shapes)


def test_training_tiles_and_config_refuse_sizes_off_the_multiple():
    from napari_ihcseg.training.trainer import TrainConfig

    with pytest.raises(ValueError, match=f"TrainConfig.tile must be a multiple of {SIZE_MULTIPLE}, got 100"):
        TrainConfig(out="x", tile=100)

    class Sample:
        image = np.zeros((64, 64, 3), np.uint8)
        mask = None

    with pytest.raises(ValueError, match=f"tile must be at least {SIZE_MULTIPLE} pixels, got 16"):
        grid_windows([Sample()], tile=16, stride=16)


def test_cli_refuses_a_tile_off_the_multiple(tmp_path, capsys):
    from napari_ihcseg.cli import main

    assert main(["segment", str(tmp_path / "x.png"), "--out", str(tmp_path / "o"), "--tile", "100"]) == 2
    assert f"--tile: must be a multiple of {SIZE_MULTIPLE}, got 100" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--model", "harunet-lite", "--epochs", "1", "--out", str(tmp_path / "t"),
                 "--tile", "48"]) == 2
    assert f"--tile must be a multiple of {SIZE_MULTIPLE} and at least {2 * SIZE_MULTIPLE}, got 48" in (
        capsys.readouterr().err)
