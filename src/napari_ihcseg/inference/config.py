"""The options of one inference run, as a frozen dataclass."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..device import check_device_name
from .planning import DEFAULT_OVERLAP, DEFAULT_TILE
from .tiling import BLEND_KINDS

#: Instance back ends; ``"auto"`` is torch on CUDA, numpy elsewhere.
INSTANCE_BACKENDS = ("auto", "numpy", "torch")
#: Smallest and largest image scale factor (see :attr:`InferenceConfig.scale`).
SCALE_RANGE = (0.25, 8.0)


#: Largest seed erosion radius: a larger one removes every seed of a nucleus (and its disk costs gigabytes).
MAX_ERODE = 32
#: Precisions ``amp`` may name (besides True / False); ``runtime.PRECISIONS`` maps them to torch dtypes.
PRECISION_NAMES = ("bf16", "fp16", "fp32")


def _positive_int(name: str, value: Any, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an ``int`` (numpy integers too) if ``minimum <= value <= maximum``, else :class:`ValueError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an int {bound}, got {value!r}")
    return int(value)


def _switch(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_scale(value: Any) -> float:
    """Return ``value`` as a float if it is a valid image scale factor, else raise :class:`ValueError`.

    Examples
    --------
    >>> check_scale(2)
    2.0
    """
    lo, hi = SCALE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise ValueError(f"scale must be a number in [{lo:g}, {hi:g}] (2.0 for images at half the "
                         f"magnification the model was trained at), got {value!r}")
    return float(value)


def check_tta(value: Any) -> bool:
    """Return ``value`` as a bool if it is a valid ``tta`` switch, else raise :class:`TypeError`.

    Examples
    --------
    >>> check_tta(True)
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"tta must be True or False, got {value!r}")
    return bool(value)


def tuned_instance_params(model: Any) -> dict[str, Any]:
    """The instance settings tuned for ``model``'s checkpoint; empty for any other model."""
    return dict(getattr(getattr(model, "checkpoint_info", None), "instances", None) or {})


def model_min_size(min_size: int, scale: float) -> int:
    """A ``min_size`` in the model's pixels, in the pixels of an image resized by ``scale`` for it.

    >>> model_min_size(100, 2.0), model_min_size(100, 1.0), model_min_size(16, 0.5)
    (25, 100, 64)
    """
    return int(round(min_size / (scale * scale)))


def _probability(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class InferenceConfig:
    """Tiling, device, precision and instance options for segmenting an image.

    Parameters
    ----------
    tile : int
        The largest tile side in pixels, a multiple of the model's size
        multiple (32); its square bounds the memory of one tile. The tiles
        are fitted to each image (:func:`~napari_ihcseg.inference.planning.plan_tiles`):
        a field up to ``tile`` on a side is one tile.
    overlap : int
        Least overlap of neighbouring tiles, blended with the window ``blend``.
    batch_size : int or None
        Tiles per forward pass; ``None`` chooses from free memory on CUDA.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    amp : bool or str
        ``True`` (the best precision for the device), ``False``, ``"bf16"``,
        ``"fp16"`` or ``"fp32"``.
    channels_last : bool
        NHWC memory layout for convolutions.
    blend : str
        ``"cosine"``, ``"gaussian"`` or ``"constant"``.
    preprocess : str or None
        ``None`` (default), ``"median3"`` or ``"gauss5-sharpen3-median3"``.
    mask_threshold, contour_threshold : float or None
        Probability thresholds of the instance step. ``None`` (default): the
        value tuned for the model's checkpoint, else 0.5 (see
        :meth:`instance_options`).
    min_size : int or None
        Smallest nucleus kept, in the image's pixels; ``None`` (default): as
        above, else 16, in the pixels the model sees (divided by
        ``scale ** 2`` in the image's pixels).
    erode : int
        Seed erosion radius of the instance step (0: none).
    fill_holes : bool
        Fill holes inside nuclei.
    instance_backend : str
        ``"auto"``, ``"numpy"`` or ``"torch"``.
    scale : float
        Factor applied to the image before the network: 2.0 for images at
        half the magnification the model was trained at (e.g. 20x images
        with a 40x model), 0.5 for images at twice it. The probabilities
        are resized back, so labels keep the image's shape and ``min_size``
        stays in the image's pixels. Between 0.25 and 8; 1.0 (default)
        leaves the image as it is.
    tta : bool
        Test-time augmentation: average the predictions of each tile and its
        three flips (four times the compute); off by default.

    Examples
    --------
    >>> cfg = InferenceConfig(tile=256)
    >>> cfg.replace(min_size=30).min_size
    30
    >>> InferenceConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.replace(min_size=30).instance_options()["min_size"], cfg.instance_options()["min_size"]
    (30, 16)
    """

    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    batch_size: int | None = None
    device: str = "auto"
    amp: bool | str = True
    channels_last: bool = True
    blend: str = "cosine"
    preprocess: str | None = None
    mask_threshold: float | None = None
    contour_threshold: float | None = None
    min_size: int | None = None
    erode: int = 0
    fill_holes: bool = True
    instance_backend: str = "auto"
    scale: float = 1.0
    tta: bool = False

    def __post_init__(self) -> None:
        from .preprocess import get_preprocess

        put = partial(object.__setattr__, self)
        put("tile", _positive_int("tile", self.tile))
        put("overlap", _positive_int("overlap", self.overlap, minimum=0))
        if self.overlap >= self.tile:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than tile ({self.tile})")
        if self.batch_size is not None:
            put("batch_size", _positive_int("batch_size", self.batch_size))
        if not isinstance(self.device, str):
            put("device", str(self.device))
        check_device_name(self.device)
        if isinstance(self.amp, str):
            if self.amp.strip().lower() not in PRECISION_NAMES:
                raise ValueError(f"unknown precision {self.amp!r}; choose True, False or one of "
                                 f"{', '.join(PRECISION_NAMES)}")
        else:
            put("amp", _switch("amp", self.amp))
        put("channels_last", _switch("channels_last", self.channels_last))
        put("fill_holes", _switch("fill_holes", self.fill_holes))
        if self.blend not in BLEND_KINDS:
            raise ValueError(f"unknown blend window {self.blend!r}; choose one of {', '.join(BLEND_KINDS)}")
        if self.preprocess is not None and not isinstance(self.preprocess, str):
            raise TypeError(f"InferenceConfig.preprocess must be a recipe name or None, got {self.preprocess!r}")
        get_preprocess(self.preprocess)
        if self.mask_threshold is not None:
            put("mask_threshold", _probability("mask_threshold", self.mask_threshold))
        if self.contour_threshold is not None:
            put("contour_threshold", _probability("contour_threshold", self.contour_threshold))
        if self.min_size is not None:
            put("min_size", _positive_int("min_size", self.min_size, minimum=0))
        put("erode", _positive_int("erode", self.erode, minimum=0, maximum=MAX_ERODE))
        if self.instance_backend not in INSTANCE_BACKENDS:
            raise ValueError(
                f"unknown instance_backend {self.instance_backend!r}; choose one of {', '.join(INSTANCE_BACKENDS)}"
            )
        object.__setattr__(self, "scale", check_scale(self.scale))
        object.__setattr__(self, "tta", check_tta(self.tta))

    def replace(self, **changes: Any) -> InferenceConfig:
        """A copy with some fields changed; unknown names raise :class:`TypeError`."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown inference option(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceConfig:
        """Build from :meth:`to_dict` output; unknown keys raise :class:`TypeError`."""
        return cls().replace(**data)

    def instance_options(self, model: Any = None) -> dict[str, Any]:
        """Keyword arguments of :func:`~napari_ihcseg.instances.probabilities_to_instances` for ``model``.

        The settings tuned for ``model``'s checkpoint fill what is unset here
        (see :meth:`instance_options_for`).
        """
        return self.instance_options_for(tuned_instance_params(model))

    def instance_options_for(self, tuned: Mapping[str, Any]) -> dict[str, Any]:
        """Keyword arguments of :func:`~napari_ihcseg.instances.probabilities_to_instances`.

        Each threshold and ``min_size`` is, in order: the value set here, the
        value in ``tuned`` (a checkpoint's tuned settings), the default of
        :data:`~napari_ihcseg.instances.INSTANCE_DEFAULTS`. A ``min_size``
        taken from ``tuned`` or the defaults counts the pixels the model sees,
        so with ``scale`` 2 it is a quarter of that in the image's pixels
        (:func:`model_min_size`); one set here is in the image's pixels.
        """
        from ..instances import INSTANCE_DEFAULTS

        chosen = {key: getattr(self, key) if getattr(self, key) is not None else tuned.get(key, default)
                  for key, default in INSTANCE_DEFAULTS.items()}
        if self.min_size is None:
            chosen["min_size"] = model_min_size(chosen["min_size"], self.scale)
        return {**chosen, "erode": self.erode, "fill_holes": self.fill_holes}
