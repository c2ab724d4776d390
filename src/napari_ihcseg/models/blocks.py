"""Residual U-blocks (RSU) of U²-Net (Qin et al., 2020), the HARU-Net backbone.

An RSU-L block is a small U-Net of height L inside a residual connection:
an input convolution, L − 1 encoder convolutions separated by 2× max pooling
(L − 2 poolings), a dilated bottom convolution, a mirrored decoder with
concatenated skips, and the sum with the input convolution's output. The
RSU-4F variant replaces pooling by growing dilation, for the low-resolution
stages where further pooling would lose the image.
"""

from __future__ import annotations

import torch
from torch import nn

from . import layer_fusion
from ._base import ConvBNAct, upsample_like


class RSU(nn.Module):
    """Residual U-block of height ``height`` (RSU-7 … RSU-4).

    Parameters
    ----------
    height : int
        L ≥ 3: the block pools L − 2 times, so its input side should be a
        multiple of 2^(L − 2) for exact skips (other sizes still work, by
        ceil-mode pooling and resizing).
    in_channels, mid_channels, out_channels : int
        Channels of the input, of the inner U, and of the output.
    activation : str
        Activation after each convolution (U²-Net uses ReLU).
    """

    def __init__(
        self, height: int, in_channels: int, mid_channels: int, out_channels: int, *, activation: str = "relu"
    ) -> None:
        super().__init__()
        if height < 3:
            raise ValueError(f"an RSU block needs a height of at least 3, got {height}")
        self.height = height
        self.conv_in = ConvBNAct(in_channels, out_channels, activation=activation)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.encoder = nn.ModuleList(
            ConvBNAct(out_channels if i == 0 else mid_channels, mid_channels, activation=activation)
            for i in range(height - 1)
        )
        self.bottom = ConvBNAct(mid_channels, mid_channels, dilation=2, activation=activation)
        self.decoder = nn.ModuleList(
            ConvBNAct(2 * mid_channels, out_channels if i == height - 2 else mid_channels, activation=activation)
            for i in range(height - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        h = x_in
        skips = []
        for i, conv in enumerate(self.encoder):
            h = conv(h if i == 0 else self.pool(h))
            skips.append(h)
        h = self.bottom(h)
        for conv, skip in zip(self.decoder, reversed(skips)):
            h = conv(torch.cat([upsample_like(h, skip), skip], dim=1))
        return layer_fusion.sum_into(h, x_in)


class RSUF(nn.Module):
    """Dilated residual U-block RSU-4F: no pooling, dilations 1, 2, 4 and 8.

    Parameters
    ----------
    in_channels, mid_channels, out_channels : int
        Channels of the input, of the inner U, and of the output.
    activation : str
        Activation after each convolution.
    """

    #: Dilation of each encoder convolution; the bottom uses twice the last.
    DILATIONS = (1, 2, 4)

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, *, activation: str = "relu") -> None:
        super().__init__()
        d = self.DILATIONS
        self.conv_in = ConvBNAct(in_channels, out_channels, activation=activation)
        self.encoder = nn.ModuleList(
            ConvBNAct(out_channels if i == 0 else mid_channels, mid_channels, dilation=d[i], activation=activation)
            for i in range(len(d))
        )
        self.bottom = ConvBNAct(mid_channels, mid_channels, dilation=2 * d[-1], activation=activation)
        last = len(d) - 1
        self.decoder = nn.ModuleList(
            ConvBNAct(
                2 * mid_channels,
                out_channels if i == last else mid_channels,
                dilation=d[last - i],
                activation=activation,
            )
            for i in range(len(d))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_in = self.conv_in(x)
        h = x_in
        skips = []
        for conv in self.encoder:
            h = conv(h)
            skips.append(h)
        h = self.bottom(h)
        for conv, skip in zip(self.decoder, reversed(skips)):
            h = conv(torch.cat([h, skip], dim=1))
        return layer_fusion.sum_into(h, x_in)
