"""R2U-Net: the recurrent residual U-Net, configured for IHC nuclei.

Alom et al. (2018) replace each convolution pair of a U-Net by recurrent
residual convolutional (RRCNN) blocks; Pitsun & Berezsky (2026) configure it
for immunohistochemistry: six levels of 32–1024 filters, GELU, batch
normalisation, max pooling, T = 3 recurrent iterations and two RRCNN blocks per
encoder level. Here the single 2-label softmax output is replaced by two
1-channel heads, nucleus mask and nucleus contour.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import layer_fusion
from ._base import (
    SIZE_MULTIPLE,
    ModelConfig,
    SegmentationModel,
    SideOutput,
    check_activation,
    check_bool,
    check_int,
    coerce_tuple,
    make_activation,
    upsample_like,
)


@dataclass(frozen=True)
class R2UNetConfig(ModelConfig):
    """Configuration of :class:`R2UNet`.

    Parameters
    ----------
    filters : tuple of int
        Channels per level, shallowest first; ``len(filters) - 1`` poolings.
    recur_num : int
        T: recurrent iterations of each recurrent convolution after its first,
        feed-forward step (T + 1 convolutions in all).
    stack_num_down, stack_num_up : int
        Recurrent convolutions per RRCNN block in the encoder and decoder.
    activation : str
        ``"gelu"`` (the paper's choice), ``"relu"``, ``"silu"`` or ``"leaky_relu"``.
    batch_norm : bool
        Batch normalisation after every convolution.
    share_recurrent_weights : bool
        If true (the recurrent convolutional layer of Liang & Hu, used by
        Alom et al.), one convolution is applied at every step, so T does not
        change the parameter count. If false, each step has its own kernel.
    """

    filters: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    recur_num: int = 3
    stack_num_down: int = 2
    stack_num_up: int = 2
    activation: str = "gelu"
    batch_norm: bool = True
    share_recurrent_weights: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        coerce_tuple(self, "filters", int)
        if len(self.filters) < 2 or min(self.filters) < 1:
            raise ValueError(f"filters needs at least two positive channel counts, got {self.filters}")
        check_int(self, "recur_num", minimum=0)
        check_int(self, "stack_num_down", minimum=1)
        check_int(self, "stack_num_up", minimum=1)
        check_activation(self)
        check_bool(self, "batch_norm")
        check_bool(self, "share_recurrent_weights")


class RecurrentConv(nn.Module):
    """A recurrent convolutional layer: y₀ = f(F(x)), yₜ = f(F(x + yₜ₋₁)), t = 1..T.

    F is a 3×3 convolution (shared across steps unless ``share_weights`` is
    false) followed by batch normalisation; each step has its own batch norm,
    since the statistics of x + yₜ₋₁ change from step to step. With
    ``final_activation=False`` the last step returns F(·) before f, so that a
    residual sum can be activated after the addition.
    """

    def __init__(
        self,
        channels: int,
        *,
        recur_num: int,
        activation: str,
        batch_norm: bool,
        share_weights: bool,
        final_activation: bool = True,
    ) -> None:
        super().__init__()
        steps = recur_num + 1
        n_convs = 1 if share_weights else steps
        self.recur_num = recur_num
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm) for _ in range(n_convs)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) if batch_norm else nn.Identity() for _ in range(steps))
        self.act = make_activation(activation)
        self.final_activation = final_activation

    def _step(self, t: int, x: torch.Tensor) -> torch.Tensor:
        conv = self.convs[t if len(self.convs) > 1 else 0]
        last_without_act = t == self.recur_num and not self.final_activation
        return layer_fusion.conv_bn_act(conv, self.norms[t], None if last_without_act else self.act, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._step(0, x)
        for t in range(1, self.recur_num + 1):
            y = self._step(t, layer_fusion.sum_into(y, x))
        return y


class RRCNNBlock(nn.Module):
    """Recurrent residual block: x' = conv1×1(x), y = f(x' + F(x')).

    The 1×1 convolution matches the channel count of the residual path; F is
    a stack of :class:`RecurrentConv` layers.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stack_num: int,
        recur_num: int,
        activation: str,
        batch_norm: bool,
        share_weights: bool,
    ) -> None:
        super().__init__()
        self.match = nn.Conv2d(in_channels, out_channels, 1)
        self.body = nn.Sequential(
            *(
                RecurrentConv(
                    out_channels,
                    recur_num=recur_num,
                    activation=activation,
                    batch_norm=batch_norm,
                    share_weights=share_weights,
                    final_activation=i < stack_num - 1,
                )
                for i in range(stack_num)
            )
        )
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._residual(self.match(x))

    def forward_decoder(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The block on ``cat([upsample(coarse), skip])``, which it need not build (see :mod:`.layer_fusion`)."""
        return self._residual(
            layer_fusion.conv1x1_of_upsampled_concat(self.match, coarse, skip, lambda t: upsample_like(t, skip)))

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        """``act(x + body(x))`` of the channel-matched input."""
        return self.act(layer_fusion.sum_into(self.body(x), x))


class R2UNet(SegmentationModel):
    """Recurrent residual U-Net with a nucleus-mask and a nucleus-contour head.

    Encoder: one :class:`RRCNNBlock` per level, 2×2 max pooling between levels.
    Decoder: bilinear 2× upsampling, concatenation with the skip connection,
    one :class:`RRCNNBlock`. Heads: a 1×1 convolution each.

    Parameters
    ----------
    config : R2UNetConfig

    Examples
    --------
    >>> from napari_ihcseg.models import build_model
    >>> model = build_model("r2unet-lite").eval()
    >>> mask, contour = model(torch.rand(1, 3, 64, 64))
    >>> tuple(mask.shape)
    (1, 1, 64, 64)
    """

    def __init__(self, config: R2UNetConfig) -> None:
        super().__init__(config)
        f = config.filters
        self.size_multiple = max(SIZE_MULTIPLE, 2 ** (len(f) - 1))
        common = dict(
            recur_num=config.recur_num,
            activation=config.activation,
            batch_norm=config.batch_norm,
            share_weights=config.share_recurrent_weights,
        )
        self.pool = nn.MaxPool2d(2)
        self.down = nn.ModuleList(
            RRCNNBlock(config.in_channels if i == 0 else f[i - 1], f[i], stack_num=config.stack_num_down, **common)
            for i in range(len(f))
        )
        self.up = nn.ModuleList(
            RRCNNBlock(f[i + 1] + f[i], f[i], stack_num=config.stack_num_up, **common)
            for i in reversed(range(len(f) - 1))
        )
        self.mask_head = nn.Conv2d(f[0], 1, 1)
        self.contour_head = nn.Conv2d(f[0], 1, 1)

    def forward_normalised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[SideOutput]]:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block.forward_decoder(x, skip)
        return self.mask_head(x), self.contour_head(x), []
