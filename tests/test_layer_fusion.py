"""Eval-mode batch norms folded into their convolutions, activations fused, outputs unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from napari_ihcseg.models import build_model, layer_fusion


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters far from the identity, as after training."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
            module.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            module.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


@pytest.mark.parametrize("arch", ["r2unet-lite", "harunet-lite"])
def test_folded_forward_matches_the_separate_batch_norm(arch, monkeypatch):
    torch.manual_seed(0)
    model = build_model(arch)
    _randomise_norms(model)
    model.eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        today = model(x)
        monkeypatch.setattr(layer_fusion, "SPLIT_SKIP_CONV", False)
        concatenated = model(x)
        monkeypatch.setattr(layer_fusion, "SUM_IN_PLACE", False)
        fused = model(x)
        monkeypatch.setattr(layer_fusion, "FUSE_ACTIVATION", False)
        folded = model(x)
        monkeypatch.setattr(layer_fusion, "FOLD_BATCH_NORM", False)
        separate = model(x)
    assert all(torch.equal(a, b) for a, b in zip(concatenated, fused)), \
        "sums in place must not change a single value"
    for out in (today, fused, folded):
        for a, b in zip(out, separate):
            assert torch.allclose(a, b, atol=2e-4, rtol=1e-4), float((a - b).abs().max())


def test_eval_mode_runs_no_batch_norm_pass_and_training_keeps_batch_statistics():
    model = build_model("r2unet-lite")
    calls = []
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.register_forward_hook(lambda *_: calls.append(1))
    model.eval()
    with torch.inference_mode():
        model(torch.rand(1, 3, 64, 64))
    assert calls == [], "an eval-mode batch norm ran as its own pass"
    model.train()
    before = norms[0].running_mean.clone()
    model(torch.rand(2, 3, 64, 64) * 3)
    assert len(calls) == len(norms), "training runs every batch norm on its batch"
    assert not torch.equal(before, norms[0].running_mean), "training must update the running statistics"


def test_folding_follows_parameter_changes_and_keeps_gradients_out_of_eval():
    conv, norm = nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4).eval()
    _randomise_norms(norm)
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(layer_fusion.conv_bn_act(conv, norm, None, x), norm(conv(x)), atol=1e-5)
    with torch.no_grad():
        norm.weight.mul_(3.0)
        conv.weight.add_(0.1)
    assert torch.allclose(layer_fusion.conv_bn_act(conv, norm, None, x), norm(conv(x)), atol=1e-5), \
        "folded weights must come from the current parameters, not a stale copy"
    assert torch.equal(layer_fusion.conv_bn_act(conv, nn.Identity(), None, x), conv(x))


@pytest.mark.parametrize("act", [nn.GELU(), nn.GELU(approximate="tanh"), nn.ReLU(), nn.SiLU(), nn.LeakyReLU(0.1),
                                 nn.Tanh(), None])
def test_every_activation_gives_the_separate_layers_result(act):
    torch.manual_seed(1)
    conv, norm = nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(8)
    _randomise_norms(norm)
    norm.eval()
    x = torch.randn(1, 8, 20, 24).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = norm(conv(x)) if act is None else act(norm(conv(x)))
        got = layer_fusion.conv_bn_act(conv, norm, act, x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), float((got - expected).abs().max())


def test_gradients_and_autocast_take_the_plain_layers():
    conv, norm = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4).eval()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = layer_fusion.conv_bn_act(conv, norm, nn.GELU(), x)
    out.sum().backward()
    assert x.grad is not None and conv.weight.grad is not None, "an eval-mode model must still give gradients"
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = layer_fusion.conv_bn_act(conv, norm, nn.GELU(), x.detach())
    assert low.dtype == torch.bfloat16, "under autocast the convolution runs at the autocast precision"


def test_sums_are_written_in_place_only_without_autograd():
    x = torch.rand(1, 4, 8, 8, requires_grad=True)
    fresh = torch.rand(1, 4, 8, 8, requires_grad=True) * 1.0   # a layer's new output
    out = layer_fusion.sum_into(fresh, x)
    assert out is not fresh, "with autograd the operands must stay as they were"
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    with torch.inference_mode():
        a, b = torch.rand(3, 3), torch.rand(3, 3)
        expected = a + b
        out = layer_fusion.sum_into(a, b)
    assert out is a and torch.equal(out, expected)


def test_the_decoder_convolution_before_the_upsampling_equals_the_concatenation():
    import torch.nn.functional as F

    torch.manual_seed(2)
    conv = nn.Conv2d(24 + 8, 8, 1)
    coarse, skip = torch.randn(2, 24, 7, 9), torch.randn(2, 8, 14, 18)   # odd sizes: edge pixels clamp

    def up(t):
        return F.interpolate(t, size=skip.shape[-2:], mode="bilinear", align_corners=False)

    direct = conv(torch.cat([up(coarse), skip], dim=1))
    with torch.inference_mode():
        split = layer_fusion.conv1x1_of_upsampled_concat(conv, coarse, skip, up)
    assert torch.allclose(split, direct, atol=1e-5), float((split - direct).abs().max())
    coarse.requires_grad_(True)
    out = layer_fusion.conv1x1_of_upsampled_concat(conv, coarse, skip, up)   # training: as written
    out.sum().backward()
    assert coarse.grad is not None and torch.allclose(out, direct, atol=1e-6)
    wide = nn.Conv2d(32, 8, 3, padding=1)   # not 1×1: the concatenation as written
    with torch.inference_mode():
        assert torch.allclose(layer_fusion.conv1x1_of_upsampled_concat(wide, coarse, skip, up),
                              wide(torch.cat([up(coarse), skip], dim=1)), atol=1e-6)
