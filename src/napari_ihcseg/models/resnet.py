"""A ResNet-50 encoder (He et al., 2016) with torchvision-compatible parameter names.

The layout (v1.5: stride in the 3×3 convolution of each bottleneck) and the
names of parameters match ``torchvision.models.resnet50``, so an ImageNet state
dict saved from torchvision loads into :class:`ResNetEncoder` unchanged. The
weights are read from a file the user provides; nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

#: Bottleneck blocks per stage of ResNet-50.
RESNET50_DEPTHS = (3, 4, 6, 3)
#: Keys of a torchvision classifier state dict that the encoder does not use.
CLASSIFIER_PREFIXES = ("fc.",)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand ×4, plus the (projected) input."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, *, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet stem and four bottleneck stages, returning five feature maps.

    Parameters
    ----------
    depths : sequence of 4 int
        Bottleneck blocks per stage; ``(3, 4, 6, 3)`` is ResNet-50.
    in_channels : int
        Channels of the input image.

    Attributes
    ----------
    out_channels : tuple of int
        Channels of the returned maps at strides 2, 4, 8, 16 and 32.
    """

    def __init__(self, depths: Sequence[int] = RESNET50_DEPTHS, *, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        widths = (64, 128, 256, 512)
        for index, (width, depth) in enumerate(zip(widths, depths), start=1):
            blocks = []
            for b in range(depth):
                stride = 2 if (b == 0 and index > 1) else 1
                blocks.append(Bottleneck(channels, width, stride=stride))
                channels = width * Bottleneck.expansion
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
        self.out_channels = (64, *(w * Bottleneck.expansion for w in widths))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        c2 = self.layer1(self.maxpool(stem))
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [stem, c2, c3, c4, c5]

    def load_pretrained(self, path: str | os.PathLike) -> None:
        """Load ImageNet weights from a torchvision-style ResNet state dict file.

        Parameters
        ----------
        path : path-like
            A ``.safetensors`` file, or a ``.pth``/``.pt`` file read with
            ``torch.load(..., weights_only=True)`` (no arbitrary unpickling).
            The classifier (``fc.*``) is ignored; a ``"module."`` prefix or a
            ``{"state_dict": ...}`` wrapper is accepted.

        Raises
        ------
        ValueError
            If the file is missing or unreadable, or its tensors do not match
            the encoder (missing or unexpected names, wrong shapes).
        """
        state = read_state_dict(path)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or wrong:
            parts = []
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
                if keys:
                    parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
            raise ValueError(f"{path}: not a ResNet state dict matching this encoder: {'; '.join(parts)}")
        self.load_state_dict(state, strict=True)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a tensor dict from ``.safetensors`` or, safely, from a torch file.

    Raises
    ------
    ValueError
        If the file does not exist or does not hold a dict of tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: encoder weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise ValueError(f"{path}: cannot read encoder weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a state dict)")
    return dict(state)
