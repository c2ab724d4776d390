"""Attention modules of HARU-Net: CBAM on the skips and the context-fusion block.

CBAM (Woo et al., 2018) reweights a feature map first per channel, from an
MLP on its global average- and max-pooled descriptors, then per pixel, from a
convolution on its channel-wise mean and maximum. The context-fusion block
(CF-block) of HARU-Net applies the same channel reweighting to the stack of
upsampled side outputs before a 3×3 convolution fuses them into one map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """x · σ(MLP(avgpool(x)) + MLP(maxpool(x))), one weight per channel.

    Parameters
    ----------
    channels : int
        Channels of the input.
    reduction : int
        The MLP's hidden layer has ``max(channels // reduction, min_hidden)`` units.
    min_hidden : int
        Lower bound on the hidden width, for narrow inputs.
    hidden : int, optional
        The hidden width itself; overrides ``reduction`` and ``min_hidden``.
    """

    def __init__(
        self, channels: int, *, reduction: int = 16, min_hidden: int = 4, hidden: int | None = None
    ) -> None:
        super().__init__()
        if hidden is None:
            hidden = max(channels // reduction, min_hidden)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The N×C×1×1 channel weights in (0, 1)."""
        avg = x.mean(dim=(2, 3), keepdim=True)
        peak = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(self.mlp(avg) + self.mlp(peak))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class SpatialAttention(nn.Module):
    """x · σ(conv([mean_c(x), max_c(x)])), one weight per pixel.

    Parameters
    ----------
    kernel_size : int
        Odd size of the convolution on the two pooled maps (7 in CBAM).
    """

    def __init__(self, *, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"the spatial attention kernel must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional block attention: channel attention, then spatial attention.

    Parameters
    ----------
    channels : int
        Channels of the input.
    reduction : int
        Reduction ratio of the channel MLP.
    kernel_size : int
        Kernel of the spatial attention convolution.
    """

    def __init__(self, channels: int, *, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction=reduction)
        self.spatial = SpatialAttention(kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class ContextFusion(nn.Module):
    """CF-block: fuse same-size side outputs into one map.

    The side maps are concatenated into a ``n_inputs``-channel stack; an MLP on
    its global average- and max-pooled descriptors, then a sigmoid, weights
    each channel (each context scale); a 3×3 convolution of the weighted stack
    gives the fused map.

    Parameters
    ----------
    n_inputs : int
        Number of side outputs (each with ``channels`` channels).
    hidden : int
        Hidden units of the weighting MLP.
    channels : int
        Channels per side output and of the fused map.
    """

    def __init__(self, n_inputs: int, *, hidden: int = 16, channels: int = 1) -> None:
        super().__init__()
        self.n_inputs = n_inputs
        stacked = n_inputs * channels
        self.attention = ChannelAttention(stacked, hidden=hidden)
        self.fuse = nn.Conv2d(stacked, channels, 3, padding=1)

    def forward(self, sides: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(sides) != self.n_inputs:
            raise ValueError(f"the CF-block expects {self.n_inputs} side outputs, got {len(sides)}")
        stack = torch.cat(list(sides), dim=1)
        return self.fuse(self.attention(stack))
