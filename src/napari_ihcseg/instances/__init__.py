"""Nucleus instances from mask and contour predictions (HARU-Net post-processing).

:func:`contour_subtract_dilate` is the core algorithm (contour subtraction,
then dilation of the seeds constrained to the mask), :func:`probabilities_to_instances`
adds the thresholds and clean-up a user tunes, and :func:`tune_instance_params`
chooses them for a model on labelled images. :func:`contour_subtract_dilate_torch`
runs the sweeps with torch (GPU or CPU) and gives the same result; torch is
imported only when that function is first used. See ``docs/instances.md``.
"""

from __future__ import annotations

from ._numpy import contour_subtract_dilate
from .postprocess import fill_instance_holes, probabilities_to_instances, remove_small_instances
from .tuning import INSTANCE_DEFAULTS, TuningResult, check_instance_params, tune_instance_params

__all__ = [
    "INSTANCE_DEFAULTS",
    "TuningResult",
    "check_instance_params",
    "contour_subtract_dilate",
    "contour_subtract_dilate_torch",
    "fill_instance_holes",
    "probabilities_to_instances",
    "remove_small_instances",
    "tune_instance_params",
]


def __getattr__(name: str):
    if name == "contour_subtract_dilate_torch":
        from ._torch import contour_subtract_dilate_torch

        return contour_subtract_dilate_torch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
