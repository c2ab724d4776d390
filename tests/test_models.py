"""Model architectures: every registered model on tiny inputs, plus the pieces they rest on."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import torchvision_resnet_state

from napari_ihcseg.models import (
    HARUNetConfig,
    R2UNetConfig,
    build_model,
    get_spec,
    list_models,
    padded_size,
)
from napari_ihcseg.models.attention import CBAM, ContextFusion
from napari_ihcseg.models.r2unet import RRCNNBlock
from napari_ihcseg.models.resnet import ResNetEncoder

ALL = list_models()
LITE = [name for name in ALL if get_spec(name).lite]
#: Deep-supervision side outputs per branch in training mode.
N_SIDES = {"harunet": 6, "harunet-lite": 6}
#: bf16 autocast vs fp32: largest |Δ sigmoid| and largest |Δ logit| relative to the largest fp32 logit.
BF16_SIGMOID_ATOL = 0.01
BF16_LOGIT_RTOL = 0.03
MAX_LITE_PARAMS = 5_000_000
#: torchvision's resnet50 has 25,557,032 parameters, 2,049,000 of them in the classifier.
RESNET50_ENCODER_PARAMS = 23_508_032

pytestmark = pytest.mark.usefixtures("torch_seeded_one_thread")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names():
    assert ALL == ["r2unet", "r2unet-lite", "harunet", "harunet-lite", "unet-resnet50"]


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_training_mode(name):
    model = build_model(name).train()
    assert model.arch == name
    assert dataclasses.is_dataclass(model.config)
    assert model.size_multiple == 32
    x = torch.rand(2, 3, 32, 32)
    mask, contour, sides = model(x)
    assert mask.shape == contour.shape == (2, 1, 32, 32)
    assert mask.dtype == contour.dtype == torch.float32
    assert len(sides) == N_SIDES.get(name, 0)
    for side_mask, side_contour in sides:
        assert side_mask.shape == side_contour.shape == (2, 1, 32, 32)
    loss = mask.mean() + contour.mean() + sum(m.mean() + c.mean() for m, c in sides)
    loss.backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", ALL)
def test_eval_mode_returns_two_maps_matching_training_fused_output(name):
    model = build_model(name)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        model.eval()
        out = model(x)
        assert isinstance(out, tuple) and len(out) == 2
        assert all(o.shape == (1, 1, 64, 96) and torch.isfinite(o).all() for o in out)
        # training mode with frozen batch-norm statistics gives the same two maps, plus side outputs
        model.train()
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        mask, contour, _ = model(x)
    torch.testing.assert_close(mask, out[0])
    torch.testing.assert_close(contour, out[1])


@pytest.mark.parametrize("name", ALL)
def test_size_not_a_multiple_of_32_names_the_padded_size(name):
    model = build_model(name).eval()
    with pytest.raises(ValueError, match=r"50×70.*multiple of 32.*pad it to 64×96"):
        model(torch.rand(1, 3, 50, 70))


def test_bad_input_is_rejected_clearly():
    model = build_model("harunet-lite").eval()
    with pytest.raises(ValueError, match=r"N×3×H×W"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"N×3×H×W"):
        model(torch.rand(3, 32, 32))
    with pytest.raises(TypeError, match="divide uint8 by 255"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize(
    ("height", "width", "expected"), [(1, 1, (32, 32)), (32, 33, (32, 64)), (256, 250, (256, 256))]
)
def test_padded_size(height, width, expected):
    assert padded_size(height, width) == expected


def test_normalisation_lives_in_buffers():
    model = build_model("r2unet-lite")
    buffers = dict(model.named_buffers())
    torch.testing.assert_close(buffers["pixel_mean"].flatten(), torch.tensor(model.config.norm_mean))
    torch.testing.assert_close(buffers["pixel_std"].flatten(), torch.tensor(model.config.norm_std))
    assert "pixel_mean" in model.state_dict()


def test_parameter_counts():
    counts = {name: n_params(build_model(name)) for name in ALL}
    for name in LITE:
        assert counts[name] <= MAX_LITE_PARAMS, (name, counts[name])
    # HARU-Net keeps U²-Net's widths (about 44 M parameters)
    assert 43_000_000 < counts["harunet"] < 46_000_000
    assert counts["r2unet"] > 4 * counts["r2unet-lite"]
    assert n_params(ResNetEncoder()) == RESNET50_ENCODER_PARAMS


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'unet'.*r2unet, r2unet-lite, harunet, harunet-lite"):
        build_model("unet")


def test_overrides_are_applied_and_checked():
    model = build_model("r2unet", filters=[8, 16, 32, 64, 128, 256], recur_num=1, activation="relu")
    assert model.config.filters == (8, 16, 32, 64, 128, 256)
    assert model.config.recur_num == 1 and model.config.activation == "relu"
    assert isinstance(model.config, R2UNetConfig)
    assert n_params(model) < n_params(build_model("r2unet-lite"))
    with pytest.raises(ValueError, match=r"unknown option.*'filter'.*valid options:.*filters"):
        build_model("r2unet", filter=(8, 16))
    with pytest.raises(ValueError, match="activation must be one of"):
        build_model("r2unet-lite", activation="tanh")
    with pytest.raises(ValueError, match="filters needs at least two"):
        build_model("r2unet-lite", filters=(16,))
    with pytest.raises(ValueError, match="encoder_out needs 6"):
        build_model("harunet-lite", encoder_out=(64, 64))


def test_config_is_frozen():
    config = build_model("harunet-lite").config
    assert isinstance(config, HARUNetConfig)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.fusion_hidden = 3


def test_recurrent_weights_are_shared_across_iterations():
    def conv_params(model):
        return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d))

    small = dict(filters=(8, 16, 32, 64, 64, 64))
    shared = [conv_params(build_model("r2unet", **small, recur_num=t)) for t in (1, 3)]
    assert shared[0] == shared[1]
    unshared = [conv_params(build_model("r2unet", **small, recur_num=t, share_recurrent_weights=False)) for t in (1, 3)]
    assert unshared[1] > unshared[0] > shared[0]


def test_rrcnn_block_is_residual():
    block = RRCNNBlock(3, 8, stack_num=2, recur_num=3, activation="gelu", batch_norm=True, share_weights=True).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for layer in block.body:
            for conv in layer.convs:
                conv.weight.zero_()
        # F(x') = 0, so y = f(x' + 0) with x' the 1×1 channel-matching convolution
        torch.testing.assert_close(block(x), torch.nn.functional.gelu(block.match(x)))


def test_cbam_and_context_fusion_keep_shapes_and_weight_channels():
    x = torch.rand(2, 32, 16, 16)
    assert CBAM(32).eval()(x).shape == x.shape
    fusion = ContextFusion(6, hidden=8)
    sides = [torch.rand(2, 1, 16, 16) for _ in range(6)]
    assert fusion(sides).shape == (2, 1, 16, 16)
    with torch.no_grad():
        fusion.attention.mlp[2].weight.zero_()
        fusion.attention.mlp[2].bias.fill_(-30.0)  # every channel weighted by σ(−60) ≈ 0
    torch.testing.assert_close(fusion(sides), fusion.fuse.bias.view(1, 1, 1, 1).expand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="expects 6 side outputs"):
        fusion(sides[:5])


@pytest.mark.parametrize("name", LITE)
def test_bfloat16_autocast_channels_last_matches_float32(name):
    model = build_model(name)
    with torch.no_grad():
        model(torch.rand(2, 3, 64, 64))  # realistic batch-norm statistics
        model.eval()
        x = torch.rand(2, 3, 64, 64)
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(x.to(memory_format=torch.channels_last))
    for ref, out in zip(reference, fast):
        assert out.dtype == torch.float32
        assert (ref.sigmoid() - out.sigmoid()).abs().max() <= BF16_SIGMOID_ATOL
        assert (ref - out).abs().max() <= BF16_LOGIT_RTOL * ref.abs().max()


def test_resnet_encoder_loads_torchvision_style_weights(tmp_path):
    from safetensors.torch import save_file

    source, state = torchvision_resnet_state((1, 1, 1, 1))  # its classifier (fc.*) is ignored
    save_file(state, str(tmp_path / "resnet.safetensors"))
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "resnet.pth")
    for file in ("resnet.safetensors", "resnet.pth"):
        model = build_model("unet-resnet50", encoder_depths=(1, 1, 1, 1), encoder_weights=str(tmp_path / file))
        for key, value in source.state_dict().items():
            torch.testing.assert_close(model.encoder.state_dict()[key], value)


def test_resnet_encoder_weights_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.safetensors: encoder weights file not found"):
        build_model("unet-resnet50", encoder_depths=(1, 1, 1, 1), encoder_weights=str(tmp_path / "missing.safetensors"))
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ValueError, match=r"partial.safetensors: not a ResNet state dict.*missing"):
        build_model("unet-resnet50", encoder_depths=(1, 1, 1, 1), encoder_weights=str(tmp_path / "partial.safetensors"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth: cannot read encoder weights"):
        build_model("unet-resnet50", encoder_depths=(1, 1, 1, 1), encoder_weights=str(tmp_path / "junk.pth"))
