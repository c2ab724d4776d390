"""The registry of model architectures: name → (config class, model class, defaults).

``r2unet`` and ``harunet`` are the two architectures of the design at their
papers' sizes; ``r2unet-lite`` and ``harunet-lite`` are narrow variants (at most
5 M parameters) that run well on a CPU; ``unet-resnet50`` is a U-Net on a
ResNet-50 encoder.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._base import ModelConfig, SegmentationModel
from .harunet import HARUNet, HARUNetConfig
from .r2unet import R2UNet, R2UNetConfig
from .unet_resnet import UNetResNet, UNetResNetConfig


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture.

    Attributes
    ----------
    name : str
        The registry name.
    config_class : type
        Its frozen config dataclass.
    model_class : type
        The :class:`SegmentationModel` subclass built from the config.
    defaults : mapping
        Config fields that differ from the config class defaults.
    lite : bool
        Whether it is a small variant meant for the CPU.
    description : str
        One line for listings.
    """

    name: str
    config_class: type[ModelConfig]
    model_class: type[SegmentationModel]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    lite: bool = False
    description: str = ""

    def default_config(self) -> ModelConfig:
        """The config this name builds without overrides."""
        return self.config_class(**dict(self.defaults))


#: U²-Net-small widths (U²-NetP): 16 inner and 64 output channels at every stage.
_HARUNET_LITE = dict(encoder_mid=(16,) * 6, encoder_out=(64,) * 6, decoder_mid=(16,) * 5, decoder_out=(64,) * 5)

_REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "r2unet",
            R2UNetConfig,
            R2UNet,
            description="R2U-Net for IHC (Pitsun & Berezsky): filters 32–1024, T = 3, GELU",
        ),
        ModelSpec(
            "r2unet-lite",
            R2UNetConfig,
            R2UNet,
            defaults=dict(filters=(16, 32, 64, 128, 256, 256), recur_num=2),
            lite=True,
            description="R2U-Net, narrow: filters 16–256, T = 2",
        ),
        ModelSpec(
            "harunet",
            HARUNetConfig,
            HARUNet,
            description="HARU-Net (Chen et al.): U²-Net widths, CBAM skips, dual CF-block branches",
        ),
        ModelSpec(
            "harunet-lite",
            HARUNetConfig,
            HARUNet,
            defaults=_HARUNET_LITE,
            lite=True,
            description="HARU-Net at U²-Net-small widths (16/64)",
        ),
        ModelSpec(
            "unet-resnet50",
            UNetResNetConfig,
            UNetResNet,
            description="U-Net with a ResNet-50 encoder (Sudianjaya & Fatichah)",
        ),
    )
}


def list_models() -> list[str]:
    """Names of the registered architectures, in registry order.

    Examples
    --------
    >>> list_models()
    ['r2unet', 'r2unet-lite', 'harunet', 'harunet-lite', 'unet-resnet50']
    """
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_REGISTRY)}") from None


def make_config(name: str, overrides: Mapping[str, Any] | None = None, *, source: str = "overrides") -> ModelConfig:
    """The config of ``name`` with ``overrides`` applied to its defaults.

    Raises
    ------
    ValueError
        For an unknown name, an unknown option or a rejected value.
    """
    spec = get_spec(name)
    values = {**spec.defaults, **dict(overrides or {})}
    return spec.config_class.from_dict(values, source=f"{name} {source}" if source == "overrides" else source)


def build_from_config(name: str, config: ModelConfig) -> SegmentationModel:
    """Build the model ``name`` from a ready config."""
    spec = get_spec(name)
    if not isinstance(config, spec.config_class):
        raise TypeError(f"{name} needs a {spec.config_class.__name__}, got {type(config).__name__}")
    model = spec.model_class(config)
    model.arch = name
    return model


def build_model(name: str, /, **overrides: Any) -> SegmentationModel:
    """Build a registered architecture with random weights.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    **overrides
        Config fields that replace the defaults of ``name`` (e.g.
        ``filters=(16, 32, 64, 128, 256, 512)``, ``recur_num=2``).

    Returns
    -------
    SegmentationModel
        In training mode (as every fresh ``nn.Module``), with ``.arch`` and
        ``.config`` set.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names), an unknown
        option (the message lists the valid ones) or an invalid value.

    Examples
    --------
    >>> model = build_model("r2unet-lite", recur_num=1)
    >>> model.arch, model.config.recur_num
    ('r2unet-lite', 1)
    """
    return build_from_config(name, make_config(name, overrides))


def config_for_loading(name: str, data: Mapping[str, Any], *, source: str) -> ModelConfig:
    """A config read back from a checkpoint; build-only fields reset to defaults."""
    spec = get_spec(name)
    config = spec.config_class.from_dict(data, source=source)
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.name in config.BUILD_ONLY_FIELDS}
    return dataclasses.replace(config, **defaults) if defaults else config
