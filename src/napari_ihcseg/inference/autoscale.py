"""Automatic image scale: resample an image to the magnification a model was trained at.

A model trained at 40x sees the nuclei of a 20x image at half their size and
misses or merges many of them; ``scale=2`` fixes that, but users should not
have to know it. :func:`estimate_scale` chooses the factor:

1. **From the file's pixel size**, when the file records one and the
   checkpoint records the pixel size of its training data
   (``training["pixel_size_um"]`` in ``config.json``): ``scale = pixel size /
   training pixel size``.
2. **From the nuclei**, otherwise: a first pass at scale 1 on a crop of the
   image (:data:`PROBE_SIZE` pixels square, from the centre) measures the
   median equivalent diameter of the detected nuclei; the factor is the
   checkpoint's ``training["nucleus_diameter_px"]`` (the median diameter of
   its own detections at its training scale) over that diameter. When the
   first pass finds too few nuclei it is repeated at scale 2, then 0.5
   (:data:`FIRST_PASS_SCALES`); when the guess is far from the scale of the
   pass, a second pass at the guessed scale measures the nuclei again, since
   a model sees nuclei far from its scale poorly. The factor is then taken to
   the nearest power of two: magnifications come in steps of 2 (10x, 20x,
   40x, 80x), and a model's outlines do not grow in proportion to the nuclei
   (measured: 40x fields gave 1.27–1.29, a 20x field 1.55, where 1 and 2 are
   right), so the raw ratio is a poor factor but a good guide to the step.

It refuses to guess, and keeps scale 1, when the checkpoint records neither
size, when no pass finds :data:`MIN_NUCLEI` nuclei (blank or non-tissue
images, or a probe of background), or when the estimate falls outside
:data:`~napari_ihcseg.inference.config.SCALE_RANGE`. Factors from pixel
sizes within :data:`SNAP` of 1 are taken as 1 (resampling by a few percent
only costs time; training's scale jitter covers that much). See
``docs/inference.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import SCALE_RANGE

#: Value of a ``scale`` option that asks for :func:`estimate_scale`.
AUTO = "auto"
#: Fewest nuclei the first pass must find to estimate their size.
MIN_NUCLEI = 30
#: Side of the central crop the first pass segments (pixels of the image).
PROBE_SIZE = 768
#: Estimates within this relative distance of 1 become 1.
SNAP = 0.15
#: A scale this many times (or more) away from the one the image calls for is warned about.
MISMATCH = 1.5
#: Scales of the first pass, tried in turn until one finds :data:`MIN_NUCLEI` nuclei
#: (a model misses most nuclei far smaller than it was trained on).
FIRST_PASS_SCALES = (1.0, 2.0, 0.5)


@dataclass(frozen=True)
class ScaleEstimate:
    """The outcome of :func:`estimate_scale`.

    Attributes
    ----------
    scale : float
        The factor to use (1.0 when it refused to guess).
    source : {"metadata", "nuclei", "none"}
        Where it came from; ``"none"`` when it refused.
    reason : str
        One line for reports and logs.
    n_nuclei : int
        Nuclei measured by the last pass (0 with metadata).
    diameter_px : float or None
        Their median equivalent diameter in the image's pixels.
    warning : str or None
        Set when the scale used is :data:`MISMATCH` times or more away from
        the one the image calls for (a scale set by hand against the file's
        pixel size, or a whole slide kept at scale 1): nuclei may be missed
        or merged, so the scores should say so.
    """

    scale: float
    source: str
    reason: str
    n_nuclei: int = 0
    diameter_px: float | None = None
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "source": self.source, "reason": self.reason,
                "n_nuclei": self.n_nuclei, "diameter_px": self.diameter_px, "warning": self.warning}


def is_auto(value: Any) -> bool:
    """True for the ``"auto"`` scale option (any case)."""
    return isinstance(value, str) and value.strip().lower() == AUTO


def training_scale(model: Any) -> dict[str, float]:
    """The training ``pixel_size_um`` and ``nucleus_diameter_px`` a model's checkpoint records."""
    training = getattr(getattr(model, "checkpoint_info", None), "training", None) or {}
    out = {}
    for key in ("pixel_size_um", "nucleus_diameter_px"):
        value = training.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            out[key] = float(value)
    return out


def nucleus_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameters (pixels) of the nuclei that do not touch the image border."""
    labels = np.asarray(labels)
    areas = np.bincount(labels.ravel())
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    areas[border] = 0
    areas[0] = 0
    areas = areas[areas > 0].astype(np.float64)
    return 2.0 * np.sqrt(areas / np.pi)


def _snap(scale: float) -> float:
    """A factor from pixel sizes: 1 within :data:`SNAP`, else rounded to 0.01."""
    if abs(scale - 1.0) <= SNAP:
        return 1.0
    return float(round(scale, 2))


def _nearest_magnification(scale: float) -> float:
    """A factor from nuclei: the nearest power of two (objectives and scans come at 10x, 20x, 40x, 80x)."""
    lo, hi = SCALE_RANGE
    return float(min(max(2.0 ** round(math.log2(scale)), lo), hi))


def central_crop(image, size: int):
    """The central ``size`` x ``size`` crop of ``image`` (all of it along a shorter side).

    A slice of ``image`` (a NumPy or Dask array), nothing read or copied.
    """
    h, w = image.shape[:2]
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return image[top:top + size, left:left + size]


def estimate_scale(
    image: np.ndarray,
    model: Any,
    *,
    pixel_size_um: float | None = None,
    pixel_size_origin: str = "from the file",
    config: Any = None,
    probe_size: int = PROBE_SIZE,
    min_nuclei: int = MIN_NUCLEI,
) -> ScaleEstimate:
    """Choose the factor that brings ``image`` to ``model``'s training scale.

    Parameters
    ----------
    image : (H, W, 3) array of uint8
        The image (only a central crop is segmented).
    model : torch.nn.Module
        A loaded model; its checkpoint's ``training`` metadata gives the
        training pixel size and nucleus diameter.
    pixel_size_um : float, optional
        The image's pixel size, e.g. from the file's metadata.
    pixel_size_origin : str
        Where it came from, in the reason (``"from the file"``, ``"as
        given"``).
    config : InferenceConfig, optional
        Tiling, device and instance options of the first pass (its ``scale``
        is ignored).
    probe_size : int
        Side of the crop segmented by the first pass.
    min_nuclei : int
        Fewest nuclei needed to estimate from the nuclei.

    Returns
    -------
    ScaleEstimate
    """
    from .config import InferenceConfig
    from .tiled import segment_image

    reference = training_scale(model)
    lo, hi = SCALE_RANGE
    if pixel_size_um is not None and "pixel_size_um" in reference:
        raw = float(pixel_size_um) / reference["pixel_size_um"]
        if lo <= raw <= hi:
            return ScaleEstimate(_snap(raw), "metadata",
                                 f"pixel size {pixel_size_um:g} um {pixel_size_origin}, model trained at "
                                 f"{reference['pixel_size_um']:g} um")
    if "nucleus_diameter_px" not in reference:
        return ScaleEstimate(1.0, "none", "scale 1: the checkpoint records no training nucleus size "
                                          "or pixel size; set the scale by hand if nuclei are missed")
    target = reference["nucleus_diameter_px"]
    crop = np.ascontiguousarray(central_crop(np.asarray(image), probe_size))
    config = config if config is not None else InferenceConfig()

    def measure(scale: float) -> np.ndarray:
        # The model sees about probe_size pixels whatever the scale: a smaller crop when scaling up.
        side = int(probe_size / max(scale, 1.0))
        probe = np.ascontiguousarray(central_crop(crop, side))
        return nucleus_diameters(segment_image(probe, model, config.replace(scale=scale)).labels)

    diameters, scale = np.zeros(0), 1.0
    for scale in FIRST_PASS_SCALES:
        diameters = measure(scale)
        if diameters.size >= min_nuclei:
            break
    else:
        return ScaleEstimate(1.0, "none", f"scale 1: too few nuclei to measure (at most {diameters.size} found "
                                          f"by the first passes at scales "
                                          f"{', '.join(f'{s:g}' for s in FIRST_PASS_SCALES)}; "
                                          f"{min_nuclei} needed)", int(diameters.size), None)
    guess = target / float(np.median(diameters))
    if lo <= guess <= hi and abs(math.log(guess / scale)) > math.log(1.0 + SNAP):
        # Far from the scale of the first pass: measure again where the model sees the nuclei at its size.
        again = measure(guess)
        if again.size >= min_nuclei:
            diameters = again
    diameter = float(np.median(diameters))
    estimate = target / diameter
    if not lo <= estimate <= hi:
        return ScaleEstimate(1.0, "none", f"scale 1: the nuclei ({diameter:.1f} px) give a factor "
                                          f"{estimate:.2f} outside {lo:g}-{hi:g}", int(diameters.size), diameter)
    final = _nearest_magnification(estimate)
    return ScaleEstimate(final, "nuclei", f"scale {final:g}: nuclei {diameter:.1f} px across, the model's "
                                          f"{target:.1f} px (factor {estimate:.2f}, taken to the nearest "
                                          f"power of two)", int(diameters.size), diameter)


def resolve_scale(scale: Any, read_probe, model: Any, *, pixel_size_um: float | None = None,
                  pixel_size_origin: str = "from the file", config: Any = None,
                  whole_slide: bool = False) -> ScaleEstimate:
    """The scale to run with: a number as given, or :func:`estimate_scale` for ``"auto"``.

    ``read_probe(size)`` returns the central ``size`` x ``size`` crop of the
    image (so that a whole slide is not read for it). Whole slides are
    segmented at scale 1 (resampling them is not supported); the estimate is
    still reported.
    """
    if not is_auto(scale):
        scale = float(scale)
        reference = training_scale(model).get("pixel_size_um")
        warning = None
        if pixel_size_um is not None and reference is not None and _far(scale, pixel_size_um / reference):
            warning = (f"scale {scale:g} as set, but the pixel size ({pixel_size_um:g} um {pixel_size_origin}) and "
                       f"the model's training pixel size ({reference:g} um) call for scale "
                       f"{pixel_size_um / reference:.2f}: nuclei may be missed or merged; use scale auto")
        return ScaleEstimate(scale, "user", f"scale {scale:g} as set", warning=warning)
    estimate = estimate_scale(read_probe(PROBE_SIZE), model, pixel_size_um=pixel_size_um,
                              pixel_size_origin=pixel_size_origin, config=config)
    if whole_slide and estimate.scale != 1.0:
        warning = None
        if _far(1.0, estimate.scale):
            warning = (f"this whole slide is segmented at scale 1 (whole slides are not resampled), but it "
                       f"calls for scale {estimate.scale:g} ({estimate.reason}): nuclei may be missed or merged")
        return ScaleEstimate(1.0, "none", f"scale 1 for a whole slide; {estimate.reason}",
                             estimate.n_nuclei, estimate.diameter_px, warning)
    return estimate


def _far(scale: float, wanted: float) -> bool:
    """Whether ``scale`` is :data:`MISMATCH` times or more away from ``wanted``."""
    return max(scale / wanted, wanted / scale) >= MISMATCH - 1e-9
