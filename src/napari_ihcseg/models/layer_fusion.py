"""Layers fused at inference: convolution, batch norm and activation as one pass; sums in place.

In eval mode a batch norm is a fixed affine map per channel,
``y = γ (z − μ) / √(σ² + ε) + β``, so ``norm(conv(x))`` is one convolution
with its weights scaled by ``s = γ / √(σ² + ε)`` and a bias ``β − μ s``
(plus ``s`` times the convolution's own bias). The activation that follows
can then run inside the same oneDNN convolution as a post-op
(``torch.ops.mkldnn._convolution_pointwise``, the kernel ``torch.compile``
uses for the same fusion), instead of two more passes over every
activation. On two CPU cores these passes, not the convolutions, dominate
the full-resolution levels: for 16 channels at 512², convolution + GELU took
42 ms as two passes and 16 ms fused.

The folded weights are computed on every call from the current parameters
(a few hundred thousand multiplications against the billions of the
convolution), so nothing is cached and the module is not changed. Training
(which needs the batch statistics), autocast, other devices, gradients and
torch builds without oneDNN take the separate layers or the plain folded
convolution; the outputs agree with the separate layers to float rounding.

Without autograd, :func:`sum_into` also writes a residual or recurrent sum
into the fresh output it adds to, instead of a new full-size buffer whose
pages the CPU would fault in again on every sum, and
:func:`conv1x1_of_upsampled_concat` applies a decoder's 1×1 convolution to
the coarse map before upsampling it, instead of upsampling and
concatenating the wide map at full resolution: bilinear upsampling and a
1×1 convolution commute (each output pixel of the upsampling is a convex
combination of input pixels), so only the narrower output is upsampled, and
no concatenation is made.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

#: Fold eval-mode batch norms into their convolutions.
FOLD_BATCH_NORM = True
#: Run the activation as a post-op of the CPU convolution when it can be.
FUSE_ACTIVATION = True
#: Write sums into a fresh operand when no gradient is recorded.
SUM_IN_PLACE = True
#: Apply a decoder's 1×1 convolution before the upsampling and without the concatenation.
SPLIT_SKIP_CONV = True

_SWITCHES = ("FOLD_BATCH_NORM", "FUSE_ACTIVATION", "SUM_IN_PLACE", "SPLIT_SKIP_CONV")


@contextmanager
def switched(**values: bool):
    """Turn fusions off (or on) for the duration of a block, e.g. ``switched(FUSE_ACTIVATION=False)``.

    The benchmarks use it to time the layers as they were and to count FLOPs
    on the unfused convolutions.
    """
    unknown = set(values) - set(_SWITCHES)
    if unknown:
        raise ValueError(f"unknown switch(es) {', '.join(sorted(unknown))}; choose among {', '.join(_SWITCHES)}")
    before = {name: globals()[name] for name in values}
    globals().update(values)
    try:
        yield
    finally:
        globals().update(before)


def _recording() -> bool:
    """Whether autograd records: then every fusion steps aside."""
    return torch.is_grad_enabled()


def _folded(conv: nn.Conv2d, norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The convolution's weight and bias with ``norm`` folded in (``None`` when it cannot be folded)."""
    if isinstance(norm, nn.Identity):
        return conv.weight, conv.bias
    if (not FOLD_BATCH_NORM or not isinstance(norm, nn.BatchNorm2d) or norm.training
            or norm.running_mean is None or norm.running_var is None):
        return None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    return conv.weight * scale.reshape(-1, 1, 1, 1), shift


def _post_op(act: nn.Module | None) -> tuple[str, list, str] | None:
    """oneDNN's name, scalars and algorithm for ``act`` (``None`` for one it cannot fuse)."""
    if act is None or isinstance(act, nn.Identity):
        return "none", [], ""
    if isinstance(act, nn.GELU):
        return "gelu", [], act.approximate
    if isinstance(act, nn.ReLU):
        return "relu", [], ""
    if isinstance(act, nn.SiLU):
        return "swish", [], ""
    if isinstance(act, nn.LeakyReLU):
        return "leaky_relu", [act.negative_slope], ""
    return None


def _can_fuse(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return (FUSE_ACTIVATION and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4
            and not torch.is_autocast_enabled("cpu") and not _recording()
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def conv_bn_act(conv: nn.Conv2d, norm: nn.Module, act: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """``act(norm(conv(x)))`` (``norm(conv(x))`` when ``act`` is None), in one pass where possible.

    Parameters
    ----------
    conv : torch.nn.Conv2d
    norm : torch.nn.Module
        A :class:`torch.nn.BatchNorm2d` (folded into ``conv`` when it is in
        eval mode and has running statistics), :class:`torch.nn.Identity`,
        or any other module (applied as it is).
    act : torch.nn.Module or None
        The activation; GELU, ReLU, SiLU and LeakyReLU run inside the CPU
        convolution when the input is float32 without autocast or gradients.
    x : torch.Tensor
        N×C×H×W input of ``conv``.

    Returns
    -------
    torch.Tensor

    Examples
    --------
    >>> conv, norm = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4).eval()
    >>> x = torch.rand(1, 3, 8, 8)
    >>> with torch.inference_mode():
    ...     fused = conv_bn_act(conv, norm, nn.GELU(), x)
    ...     bool(torch.allclose(fused, nn.GELU()(norm(conv(x))), atol=1e-5))
    True
    """
    folded = _folded(conv, norm)
    if folded is None:
        out = norm(conv(x))
        return out if act is None else act(out)
    weight, bias = folded
    post = _post_op(act)
    if post is not None and _can_fuse(conv, x):
        attr, scalars, algorithm = post
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups,
            attr, scalars, algorithm)
    out = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return out if act is None else act(out)


def sum_into(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``other + fresh``, written into ``fresh`` when no gradient is recorded.

    Parameters
    ----------
    fresh : torch.Tensor
        A layer's new output that nothing else holds: it is overwritten.
    other : torch.Tensor
        Broadcastable to ``fresh``.

    Returns
    -------
    torch.Tensor
        ``fresh`` itself without autograd (on a 1024² forward pass of
        ``r2unet-lite`` on the CPU, 8 % faster than new buffers), a new
        tensor with it.

    Examples
    --------
    >>> a, b = torch.ones(2), torch.full((2,), 2.0)
    >>> with torch.no_grad():
    ...     c = sum_into(a, b)
    >>> c is a, a.tolist()
    (True, [3.0, 3.0])
    """
    if SUM_IN_PLACE and not _recording():
        return fresh.add_(other)
    return other + fresh


def conv1x1_of_upsampled_concat(conv: nn.Conv2d, coarse: torch.Tensor, skip: torch.Tensor,
                                upsample) -> torch.Tensor:
    """``conv(cat([upsample(coarse), skip]))`` for a 1×1 ``conv``, without the concatenation.

    Parameters
    ----------
    conv : torch.nn.Conv2d
        A 1×1 convolution whose input channels are ``coarse``'s, then ``skip``'s.
    coarse : torch.Tensor
        N×C₁×h×w, the map to be upsampled.
    skip : torch.Tensor
        N×C₂×H×W, the skip connection at the output size.
    upsample : callable
        Linear, per-channel resizing of a tensor to ``skip``'s size
        (bilinear interpolation).

    Returns
    -------
    torch.Tensor
        N×C_out×H×W. Without autograd: ``upsample(conv_a(coarse)) +
        conv_b(skip)`` with ``conv``'s weights split by input channel, equal
        to float rounding; with it, the concatenation as written.

    Examples
    --------
    >>> import torch.nn.functional as F
    >>> conv = nn.Conv2d(6, 4, 1)
    >>> coarse, skip = torch.rand(1, 4, 8, 8), torch.rand(1, 2, 16, 16)
    >>> up = lambda t: F.interpolate(t, size=(16, 16), mode="bilinear", align_corners=False)
    >>> with torch.no_grad():
    ...     split = conv1x1_of_upsampled_concat(conv, coarse, skip, up)
    ...     direct = conv(torch.cat([up(coarse), skip], dim=1))
    >>> bool(torch.allclose(split, direct, atol=1e-5))
    True
    """
    plain = (not SPLIT_SKIP_CONV or _recording() or conv.kernel_size != (1, 1) or conv.groups != 1
             or tuple(conv.stride) != (1, 1) or tuple(conv.padding) != (0, 0)
             or conv.in_channels != coarse.shape[1] + skip.shape[1])
    if plain:
        return conv(torch.cat([upsample(coarse), skip], dim=1))
    n = coarse.shape[1]
    out = F.conv2d(skip, conv.weight[:, n:], conv.bias)
    return sum_into(out, upsample(F.conv2d(coarse, conv.weight[:, :n])))


__all__ = ["FOLD_BATCH_NORM", "FUSE_ACTIVATION", "SPLIT_SKIP_CONV", "SUM_IN_PLACE", "conv1x1_of_upsampled_concat",
           "conv_bn_act", "sum_into", "switched"]
