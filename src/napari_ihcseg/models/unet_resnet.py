"""U-Net with a ResNet-50 encoder (as used by Sudianjaya & Fatichah, 2024).

The encoder is :class:`~napari_ihcseg.models.resnet.ResNetEncoder`; ImageNet
weights load from a user-supplied file (``encoder_weights``). The decoder has
five blocks, each a bilinear 2× upsampling, concatenation with the encoder
map of the same stride (none at full resolution) and two 3×3
convolution–batch-norm–activation layers; two 3×3 heads give the nucleus mask
and contour logits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ._base import (
    ConvBNAct,
    ModelConfig,
    SegmentationModel,
    SideOutput,
    check_activation,
    coerce_tuple,
    upsample_like,
)
from .resnet import RESNET50_DEPTHS, ResNetEncoder


@dataclass(frozen=True)
class UNetResNetConfig(ModelConfig):
    """Configuration of :class:`UNetResNet`.

    Parameters
    ----------
    encoder_depths : tuple of 4 int
        Bottleneck blocks per encoder stage; ``(3, 4, 6, 3)`` is ResNet-50.
    decoder_channels : tuple of 5 int
        Output channels of the five decoder blocks, deepest first.
    encoder_weights : str or None
        Path to a torchvision-style ResNet-50 state dict (``.safetensors``, or
        ``.pth`` read with ``weights_only=True``) loaded into the encoder when
        the model is built. ``None`` leaves it randomly initialised. Loading a
        checkpoint ignores it: the checkpoint holds every weight.
    activation : str
        Activation of the decoder.
    """

    encoder_depths: tuple[int, ...] = RESNET50_DEPTHS
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    encoder_weights: str | None = None
    activation: str = "relu"

    BUILD_ONLY_FIELDS: ClassVar[tuple[str, ...]] = ("encoder_weights",)

    def __post_init__(self) -> None:
        super().__post_init__()
        coerce_tuple(self, "encoder_depths", int)
        if len(self.encoder_depths) != 4 or min(self.encoder_depths) < 1:
            raise ValueError(f"encoder_depths needs 4 positive block counts, got {self.encoder_depths}")
        coerce_tuple(self, "decoder_channels", int)
        if len(self.decoder_channels) != 5 or min(self.decoder_channels) < 1:
            raise ValueError(f"decoder_channels needs 5 positive channel counts, got {self.decoder_channels}")
        if isinstance(self.encoder_weights, os.PathLike):
            object.__setattr__(self, "encoder_weights", os.fspath(self.encoder_weights))
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            raise TypeError(f"encoder_weights must be a file path or None, got {self.encoder_weights!r}")
        check_activation(self)


class UNetResNet(SegmentationModel):
    """U-Net decoder on a ResNet-50 encoder, with mask and contour heads.

    Parameters
    ----------
    config : UNetResNetConfig

    Examples
    --------
    >>> from napari_ihcseg.models import build_model
    >>> model = build_model("unet-resnet50", encoder_depths=(1, 1, 1, 1)).eval()
    >>> mask, contour = model(torch.rand(1, 3, 64, 64))
    >>> tuple(contour.shape)
    (1, 1, 64, 64)
    """

    def __init__(self, config: UNetResNetConfig) -> None:
        super().__init__(config)
        self.encoder = ResNetEncoder(config.encoder_depths, in_channels=config.in_channels)
        if config.encoder_weights is not None:
            self.encoder.load_pretrained(config.encoder_weights)
        skips = self.encoder.out_channels[3::-1] + (0,)
        below = (self.encoder.out_channels[4], *config.decoder_channels[:-1])
        act = config.activation
        self.decoder = nn.ModuleList(
            nn.Sequential(
                ConvBNAct(b + s, c, activation=act),
                ConvBNAct(c, c, activation=act),
            )
            for b, s, c in zip(below, skips, config.decoder_channels)
        )
        last = config.decoder_channels[-1]
        self.mask_head = nn.Conv2d(last, 1, 3, padding=1)
        self.contour_head = nn.Conv2d(last, 1, 3, padding=1)

    def forward_normalised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[SideOutput]]:
        features = self.encoder(x)
        h = features[-1]
        skips = features[3::-1]
        for i, block in enumerate(self.decoder):
            if i < len(skips):
                skip = skips[i]
                h = torch.cat([upsample_like(h, skip), skip], dim=1)
            else:
                h = upsample_like(h, x)
            h = block(h)
        return self.mask_head(h), self.contour_head(h), []
