"""What every segmentation model shares: its config base, input checks, outputs.

Every registered model is a :class:`SegmentationModel`. It takes N×3×H×W RGB
in [0, 1], normalises it with buffers it owns, and returns
``(mask_logits, contour_logits)`` in eval mode, plus a list of deep-supervision
side outputs in training mode.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..inference.planning import SIZE_MULTIPLE
from . import layer_fusion

#: ImageNet mean and standard deviation of RGB in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Activation names a config may use.
ACTIVATIONS = ("relu", "gelu", "silu", "leaky_relu")

#: One deep-supervision output: (mask side logits, contour side logits).
SideOutput = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Fields shared by every model config.

    Parameters
    ----------
    in_channels : int
        Channels of the input image (3 for RGB).
    norm_mean, norm_std : tuple of float
        Per-channel mean and standard deviation used to normalise the input,
        which arrives in [0, 1]. ImageNet values by default.
    """

    #: Fields used only when a model is first built (e.g. a pretrained-weights
    #: path); loading a checkpoint resets them to their defaults.
    BUILD_ONLY_FIELDS: ClassVar[tuple[str, ...]] = ()

    in_channels: int = 3
    norm_mean: tuple[float, ...] = IMAGENET_MEAN
    norm_std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        check_int(self, "in_channels", minimum=1)
        coerce_tuple(self, "norm_mean", float)
        coerce_tuple(self, "norm_std", float)
        for name in ("norm_mean", "norm_std"):
            if len(getattr(self, name)) != self.in_channels:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} values but in_channels is {self.in_channels}"
                )
        if any(s <= 0 for s in self.norm_std):
            raise ValueError(f"norm_std must be positive, got {self.norm_std}")

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (tuples become lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of every field, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config") -> ModelConfig:
        """Build a config from a mapping, refusing unknown keys.

        Parameters
        ----------
        data : mapping
            Field values; missing fields take their defaults.
        source : str
            Named in error messages (a file name, or ``"overrides"``).

        Raises
        ------
        ValueError
            For a key that is not a field, or a value the config rejects.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: the config must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"{source}: unknown option(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
                f"valid options: {', '.join(cls.field_names())}"
            )
        try:
            return cls(**dict(data))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def coerce_tuple(config: Any, name: str, cast: type) -> None:
    """Coerce a sequence field of a frozen config to a tuple of ``cast``, in place.

    Called from a config's ``__post_init__``, so that a list read from JSON
    compares and hashes as the tuple the config declares.

    Parameters
    ----------
    config : dataclass instance
        The (frozen) config.
    name : str
        The field.
    cast : type
        ``int`` or ``float``; ``int`` refuses booleans and fractions.

    Raises
    ------
    TypeError
        When the field is not a sequence, or holds a non-integer for ``int``.
    """
    value = getattr(config, name)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of {cast.__name__}, got {value!r}")
    items = []
    for v in value:
        if cast is int and (isinstance(v, bool) or not float(v).is_integer()):
            raise TypeError(f"{name} must hold integers, got {value!r}")
        items.append(cast(v))
    object.__setattr__(config, name, tuple(items))


def check_int(config: Any, name: str, *, minimum: int) -> None:
    """Raise ``TypeError`` unless the field ``name`` of ``config`` is an int, ``ValueError`` if below ``minimum``."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def check_bool(config: Any, name: str) -> None:
    """Raise ``TypeError`` unless the field ``name`` of ``config`` is ``True`` or ``False``."""
    if not isinstance(getattr(config, name), bool):
        raise TypeError(f"{name} must be true or false, got {getattr(config, name)!r}")


def check_activation(config: Any, name: str = "activation") -> None:
    """Raise ``ValueError`` unless the field ``name`` of ``config`` is one of :data:`ACTIVATIONS`."""
    value = getattr(config, name)
    if value not in ACTIVATIONS:
        raise ValueError(f"{name} must be one of {', '.join(ACTIVATIONS)}, got {value!r}")


def make_activation(name: str) -> nn.Module:
    """A fresh activation module from its config name."""
    if name == "relu":
        return nn.ReLU()
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


class ConvBNAct(nn.Sequential):
    """Convolution, optional batch normalisation, activation ("same" padding)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        dilation: int = 1,
        activation: str = "relu",
        batch_norm: bool = True,
    ) -> None:
        padding = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=not batch_norm),
            nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity(),
            make_activation(activation),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm, act = self
        return layer_fusion.conv_bn_act(conv, norm, act, x)


def upsample_like(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` to the spatial size of ``reference``."""
    if x.shape[-2:] == reference.shape[-2:]:
        return x
    return F.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


def padded_size(height: int, width: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """The smallest (H, W) at least as large as the input and divisible by ``multiple``."""
    return (-(-height // multiple) * multiple, -(-width // multiple) * multiple)


class SegmentationModel(nn.Module, abc.ABC):
    """Base of every registered model: input checks, normalisation, outputs.

    Subclasses implement :meth:`forward_normalised`, which receives the
    normalised input and returns ``(mask_logits, contour_logits, side_outputs)``.

    Attributes
    ----------
    arch : str
        The registry name the model was built under (set by the registry).
    config : ModelConfig
        The frozen config the model was built from.
    size_multiple : int
        H and W of the input must be multiples of it.
    checkpoint_info : CheckpointInfo or None
        Where the weights came from; ``None`` for a freshly built model.
    """

    size_multiple: int = SIZE_MULTIPLE
    #: Whether training mode returns deep-supervision side outputs.
    deep_supervision: ClassVar[bool] = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.arch = ""
        self.checkpoint_info = None
        self.register_buffer("pixel_mean", torch.tensor(config.norm_mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(config.norm_std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def device(self) -> torch.device:
        """The device the model's buffers live on."""
        return self.pixel_mean.device

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error if ``x`` is not an N×C×H×W float batch of a valid size."""
        name = self.arch or type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"{name}: expected an N×{self.config.in_channels}×H×W batch, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point image in [0, 1], got {x.dtype} (divide uint8 by 255)")
        height, width = x.shape[-2:]
        m = self.size_multiple
        if height % m or width % m or height == 0 or width == 0:
            ph, pw = padded_size(max(int(height), 1), max(int(width), 1), m)
            raise ValueError(
                f"{name}: input size {height}×{width} is not a multiple of {m}; "
                f"pad it to {ph}×{pw} (napari_ihcseg.inference pads automatically)"
            )

    def forward(self, x: torch.Tensor):
        """Segment a batch.

        Parameters
        ----------
        x : torch.Tensor
            N×3×H×W RGB in [0, 1]; H and W multiples of :attr:`size_multiple`.

        Returns
        -------
        mask_logits, contour_logits : torch.Tensor
            N×1×H×W float32 logits.
        side_outputs : list of (torch.Tensor, torch.Tensor)
            Only in training mode: deep-supervision logits at full resolution
            (empty for models without deep supervision).
        """
        self.check_input(x)
        x = (x.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std
        mask, contour, sides = self.forward_normalised(x)
        if self.training:
            return mask.float(), contour.float(), [(m.float(), c.float()) for m, c in sides]
        return mask.float(), contour.float()

    @abc.abstractmethod
    def forward_normalised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[SideOutput]]:
        """Compute the logits from a normalised batch; every architecture defines it."""

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}"
