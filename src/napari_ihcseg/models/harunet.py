"""HARU-Net: hybrid-attention residual U-blocks with a mask and a contour branch.

Chen et al., "Enhancing nucleus segmentation with HARU-Net". The backbone is
U²-Net's: encoder stages RSU-7, RSU-6, RSU-5, RSU-4, RSU-4F, RSU-4F separated
by 2× max pooling, and a mirrored decoder. Each skip connection passes through
an attention module (CBAM at the four upper levels, channel attention only at
the deepest). Two output branches, nucleus mask and nucleus contour, each take
six side outputs (a 3×3 convolution on the last encoder stage and on each
decoder stage), upsample them to the input size and fuse them with a
context-fusion block (CF-block).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._base import (
    ModelConfig,
    SegmentationModel,
    SideOutput,
    check_activation,
    check_int,
    coerce_tuple,
    upsample_like,
)
from .attention import CBAM, ChannelAttention, ContextFusion
from .blocks import RSU, RSUF

#: RSU height of each encoder stage; 0 marks a dilated RSU-4F stage.
ENCODER_HEIGHTS = (7, 6, 5, 4, 0, 0)
#: Skip levels (0 = shallowest) that get full CBAM; deeper skips get channel attention only.
CBAM_LEVELS = 4


@dataclass(frozen=True)
class HARUNetConfig(ModelConfig):
    """Configuration of :class:`HARUNet`; the defaults are U²-Net's widths.

    Parameters
    ----------
    encoder_mid, encoder_out : tuple of 6 int
        Inner and output channels of the encoder stages En_1 … En_6.
    decoder_mid, decoder_out : tuple of 5 int
        Inner and output channels of the decoder stages De_5 … De_1
        (deepest first).
    attention_reduction : int
        Reduction ratio of the channel-attention MLP on the skips.
    spatial_kernel : int
        Kernel size of the CBAM spatial-attention convolution.
    fusion_hidden : int
        Hidden units of the CF-block's channel-weighting MLP.
    activation : str
        Activation inside the RSU blocks (U²-Net uses ReLU).
    """

    encoder_mid: tuple[int, ...] = (32, 32, 64, 128, 256, 256)
    encoder_out: tuple[int, ...] = (64, 128, 256, 512, 512, 512)
    decoder_mid: tuple[int, ...] = (256, 128, 64, 32, 16)
    decoder_out: tuple[int, ...] = (512, 256, 128, 64, 64)
    attention_reduction: int = 16
    spatial_kernel: int = 7
    fusion_hidden: int = 16
    activation: str = "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, length in (("encoder_mid", 6), ("encoder_out", 6), ("decoder_mid", 5), ("decoder_out", 5)):
            coerce_tuple(self, name, int)
            value = getattr(self, name)
            if len(value) != length or min(value) < 1:
                raise ValueError(f"{name} needs {length} positive channel counts, got {value}")
        check_int(self, "attention_reduction", minimum=1)
        check_int(self, "spatial_kernel", minimum=1)
        if self.spatial_kernel % 2 != 1:
            raise ValueError(f"spatial_kernel must be odd, got {self.spatial_kernel}")
        check_int(self, "fusion_hidden", minimum=1)
        check_activation(self)


def _stage(height: int, in_ch: int, mid: int, out: int, activation: str) -> nn.Module:
    if height == 0:
        return RSUF(in_ch, mid, out, activation=activation)
    return RSU(height, in_ch, mid, out, activation=activation)


class HARUNet(SegmentationModel):
    """Hybrid-attention residual U-blocks network with two fused output branches.

    In training mode the six side outputs of each branch are returned, finest
    first (De_1, De_2, De_3, De_4, De_5, En_6), each upsampled to the input
    size, for deep supervision.

    Parameters
    ----------
    config : HARUNetConfig

    Examples
    --------
    >>> from napari_ihcseg.models import build_model
    >>> model = build_model("harunet-lite").train()
    >>> mask, contour, sides = model(torch.rand(2, 3, 64, 64))
    >>> len(sides), tuple(sides[0][1].shape)
    (6, (2, 1, 64, 64))
    """

    deep_supervision = True
    #: Side outputs per branch.
    N_SIDES = 6

    def __init__(self, config: HARUNetConfig) -> None:
        super().__init__(config)
        act = config.activation
        enc_in = (config.in_channels, *config.encoder_out[:-1])
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.encoder = nn.ModuleList(
            _stage(h, i, m, o, act)
            for h, i, m, o in zip(ENCODER_HEIGHTS, enc_in, config.encoder_mid, config.encoder_out)
        )
        # Decoder stage k (0 = De_5) joins the stage below it with skip level 4 - k.
        below = (config.encoder_out[5], *config.decoder_out[:-1])
        skip_ch = config.encoder_out[4::-1]
        dec_heights = ENCODER_HEIGHTS[4::-1]
        self.decoder = nn.ModuleList(
            _stage(h, b + s, m, o, act)
            for h, b, s, m, o in zip(dec_heights, below, skip_ch, config.decoder_mid, config.decoder_out)
        )
        self.skip_attention = nn.ModuleList(
            CBAM(c, reduction=config.attention_reduction, kernel_size=config.spatial_kernel)
            if level < CBAM_LEVELS
            else ChannelAttention(c, reduction=config.attention_reduction)
            for level, c in enumerate(config.encoder_out[:5])
        )
        side_ch = (*config.decoder_out[::-1], config.encoder_out[5])
        self.mask_sides = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in side_ch)
        self.contour_sides = nn.ModuleList(nn.Conv2d(c, 1, 3, padding=1) for c in side_ch)
        self.mask_fusion = ContextFusion(self.N_SIDES, hidden=config.fusion_hidden)
        self.contour_fusion = ContextFusion(self.N_SIDES, hidden=config.fusion_hidden)

    def forward_normalised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[SideOutput]]:
        features = []
        h = x
        for i, stage in enumerate(self.encoder):
            h = stage(h if i == 0 else self.pool(h))
            features.append(h)
        decoded = []
        for k, stage in enumerate(self.decoder):
            level = 4 - k
            skip = self.skip_attention[level](features[level])
            h = stage(torch.cat([upsample_like(h, skip), skip], dim=1))
            decoded.append(h)
        sources = [*decoded[::-1], features[5]]
        mask_sides = [upsample_like(conv(s), x) for conv, s in zip(self.mask_sides, sources)]
        contour_sides = [upsample_like(conv(s), x) for conv, s in zip(self.contour_sides, sources)]
        mask = self.mask_fusion(mask_sides)
        contour = self.contour_fusion(contour_sides)
        return mask, contour, list(zip(mask_sides, contour_sides))
