"""Synthetic IHC fields with exact nucleus truth.

:func:`make_synthetic_ihc` paints hematoxylin and DAB optical densities
(OD) for a field of nuclei on a stroma background and mixes them into RGB by
Beer–Lambert's law (:func:`napari_ihcseg.stain.compose`), so colour
deconvolution recovers the painted DAB. It returns the exact instance labels,
the contour training target and each nucleus's DAB intensity class.

The model, in order:

1. **Nuclei** are ellipses of equivalent-circle radius drawn from
   ``radius_range``, aspect ratio 0.5–1 and random orientation, with an
   irregular outline (low-order radial harmonics). Most are scattered without
   overlap; a fraction ``touching`` is placed against an earlier nucleus so
   that they touch or overlap. Later nuclei lie on top; a placement is
   refused when it would hide more than ``max_overlap`` of a nucleus beneath
   or split it in two, so every label is one connected region
   (:mod:`napari_ihcseg.data.nuclei`).
2. **Hematoxylin** of each nucleus has a darker rim (nuclear membrane) and
   chromatin granularity (smoothed noise). Where nuclei overlap their
   hematoxylin adds up, so overlaps look darker, as on a slide.
3. **DAB** is uniform per nucleus up to the same granularity, scaled so
   that its mean over the nucleus's label equals the nucleus's DAB OD, also
   after the optical blur (each nucleus is rescaled once more after it). DAB
   is taken from the top nucleus only, so a nucleus's mean DAB is its own.
   Class OD ranges (:data:`DAB_CLASS_RANGES`) lie between the ER and PR
   presets' thresholds 0.2 / 0.4 / 0.6 (the Ki-67 preset's 1+ cut, 0.15,
   also falls between negative and 1+), so measuring the mean DAB OD of each
   label recovers its class.
4. **Stroma**: faint hematoxylin fibres whose density varies slowly, with
   nearly empty patches, and a trace of DAB background.
5. **Optics**: a Gaussian blur of the ODs (``blur_sigma``), Beer–Lambert
   mixing, then Gaussian noise on the 8-bit intensities (``noise_std``).

Large tiled pyramidal BigTIFF slides of such fields are written by
:func:`napari_ihcseg.data.synthetic_slide.make_synthetic_slide`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_ihcseg.stain import H_DAB, StainVectors, compose

from .nuclei import place_nuclei
from .targets import labels_to_contour

__all__ = [
    "CLASS_NAMES",
    "DAB_CLASS_RANGES",
    "SyntheticIHC",
    "make_synthetic_ihc",
]

#: Names of the DAB intensity classes 0..3.
CLASS_NAMES = ("negative", "1+", "2+", "3+")
#: DAB optical density range of each class, drawn uniformly. The ER and PR
#: presets' thresholds 0.2 / 0.4 / 0.6 separate them with a margin (and the
#: Ki-67 preset's 0.15 / 0.4 / 0.6).
DAB_CLASS_RANGES = ((0.0, 0.1), (0.25, 0.35), (0.45, 0.55), (0.7, 0.9))

_HEMATOXYLIN_RANGE = (0.45, 0.8)  # OD of a negative nucleus
_STROMA_SCALE = 8  # low-frequency fields are drawn at 1/8 resolution


@dataclass(frozen=True, eq=False)
class SyntheticIHC:
    """A synthetic IHC field and its truth.

    Attributes
    ----------
    image : (H, W, 3) ndarray of uint8
        The RGB field.
    labels : (H, W) ndarray of int32
        Instance truth: 0 background, 1..N nuclei. Where nuclei overlap, a
        pixel belongs to the nucleus on top.
    contour : (H, W) ndarray of bool
        ``labels_to_contour(labels)``, the contour training target.
    intensity_class : (N + 1,) ndarray of int32
        DAB class of each label: 0 negative, 1 = 1+, 2 = 2+, 3 = 3+;
        ``intensity_class[0]`` is -1 (background). Index it with labels.
    dab_od : (N + 1,) ndarray of float32
        DAB optical density of each nucleus: its mean over the label in the
        image, up to noise and 8-bit rounding; ``dab_od[0]`` is 0.
    seed : int
        The seed that reproduces the field.
    """

    image: np.ndarray
    labels: np.ndarray
    contour: np.ndarray
    intensity_class: np.ndarray
    dab_od: np.ndarray
    seed: int

    @property
    def n_nuclei(self) -> int:
        """Number of nuclei N."""
        return len(self.dab_od) - 1


def _check_shape(shape) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (height, width), got {shape!r}") from None
    if h < 16 or w < 16:
        raise ValueError(f"shape must be at least 16 x 16 pixels, got {shape!r}")
    return h, w


def _class_probabilities(positive_fraction: float, class_probabilities) -> np.ndarray:
    if class_probabilities is None:
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}")
        p = positive_fraction / 3.0
        return np.array([1.0 - positive_fraction, p, p, p])
    probs = np.asarray(class_probabilities, dtype=np.float64)
    if probs.shape != (4,) or np.any(probs < 0) or not np.isfinite(probs).all() or probs.sum() <= 0:
        raise ValueError(
            "class_probabilities must be 4 non-negative numbers (negative, 1+, 2+, 3+), "
            f"got {class_probabilities!r}"
        )
    return probs / probs.sum()


def _classes_from_map(rng, labels: np.ndarray, n: int, positive_map, probs: np.ndarray) -> np.ndarray:
    """Classes drawn from a map of the probability of being positive, at each nucleus's centroid."""
    positive_map = np.asarray(positive_map, np.float64)
    if positive_map.shape != labels.shape:
        raise ValueError(f"positive_map must have the field's shape {labels.shape}, got {positive_map.shape}")
    if not (np.isfinite(positive_map).all() and positive_map.min() >= 0 and positive_map.max() <= 1):
        raise ValueError("positive_map must hold probabilities in [0, 1]")
    flat = labels.ravel()
    counts = np.maximum(np.bincount(flat, minlength=n + 1), 1)
    rows, cols = np.divmod(np.arange(flat.size), labels.shape[1])
    cy = np.rint(np.bincount(flat, weights=rows, minlength=n + 1) / counts).astype(np.int64)[1:]
    cx = np.rint(np.bincount(flat, weights=cols, minlength=n + 1) / counts).astype(np.int64)[1:]
    positive = rng.random(n) < positive_map[cy, cx]
    grades = probs[1:] / probs[1:].sum() if probs[1:].sum() > 0 else np.full(3, 1 / 3)
    return np.where(positive, 1 + rng.choice(3, size=n, p=grades), 0).astype(np.int32)


def _smooth_noise(rng: np.random.Generator, shape, sigma) -> np.ndarray:
    """Gaussian-filtered white noise scaled to zero mean and unit variance."""
    field = ndi.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return field


def _low_frequency(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A smooth unit-variance field drawn coarse and upsampled (cheap for large sigma)."""
    small = tuple(max(4, -(-s // _STROMA_SCALE)) for s in shape)
    field = _smooth_noise(rng, small, max(sigma / _STROMA_SCALE, 0.5))
    zoom = [s / c for s, c in zip(shape, small)]
    return ndi.zoom(field, zoom, order=1, mode="nearest", grid_mode=True)[: shape[0], : shape[1]]


def _stroma(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Hematoxylin and DAB OD of the stroma background."""
    density = 1.0 / (1.0 + np.exp(-2.0 * _low_frequency(rng, shape, 60.0)))  # 0..1, mostly mid
    horizontal = _smooth_noise(rng, shape, (0.8, 6.0))
    vertical = _smooth_noise(rng, shape, (6.0, 0.8))
    mix = 1.0 / (1.0 + np.exp(-3.0 * _low_frequency(rng, shape, 40.0)))
    fibres = np.clip(mix * horizontal + (1.0 - mix) * vertical, 0.0, None)
    h = 0.06 + density * (0.03 + 0.05 * fibres)  # clearly darker than glass
    dab = 0.012 + 0.006 * _low_frequency(rng, shape, 30.0)
    return h.astype(np.float32), dab.astype(np.float32)


def make_synthetic_ihc(
    shape: tuple[int, int] = (512, 512),
    *,
    n_nuclei: int | None = None,
    density: float = 0.3,
    radius_range: tuple[float, float] = (5.0, 12.0),
    positive_fraction: float = 0.3,
    class_probabilities: tuple[float, float, float, float] | None = None,
    touching: float = 0.35,
    max_overlap: float = 0.25,
    seed: int = 0,
    blur_sigma: float = 0.8,
    noise_std: float = 2.0,
    stains: StainVectors = H_DAB,
    hematoxylin_range: tuple[float, float] = _HEMATOXYLIN_RANGE,
    positive_map: np.ndarray | None = None,
) -> SyntheticIHC:
    """Generate a synthetic IHC field (hematoxylin + DAB) with exact truth.

    See the module documentation for the image model.

    Parameters
    ----------
    shape : (int, int)
        Height and width in pixels (at least 16 each).
    n_nuclei : int, optional
        How many nuclei to try to place. By default
        ``density * H * W / (mean nucleus area)``. Crowded fields may hold
        fewer: a nucleus that finds no place in a few tries is dropped.
    density : float
        Fraction of the field covered by nuclei when ``n_nuclei`` is None.
    radius_range : (float, float)
        Range of the equivalent-circle radius of nuclei, in pixels.
    positive_fraction : float
        Fraction of DAB-positive nuclei, split equally over 1+, 2+ and 3+.
    class_probabilities : 4 floats, optional
        Probabilities of negative, 1+, 2+ and 3+; overrides
        ``positive_fraction`` when given.
    touching : float
        Fraction of nuclei placed against an earlier one (touching or
        overlapping); the rest are scattered without overlap.
    max_overlap : float
        Largest fraction of a nucleus that nuclei on top may hide.
    seed : int
        Seed of the random generator; the same seed gives identical arrays.
    blur_sigma : float
        Standard deviation of the optical blur in pixels (0 for none).
    noise_std : float
        Standard deviation of the noise on 8-bit intensities (0 for none).
    stains : StainVectors
        Stain vectors used for mixing.
    hematoxylin_range : (float, float)
        Hematoxylin OD range of a negative nucleus (paler for a Ki-67
        counterstain, e.g. ``(0.3, 0.55)``).
    positive_map : (H, W) array of float, optional
        Probability of being positive at each pixel: a nucleus is positive
        with the value at its centroid, and then 1+, 2+ or 3+ in the
        proportions of ``class_probabilities`` (or equally). Overrides
        ``positive_fraction``; lets a field have hot spots.

    Returns
    -------
    SyntheticIHC
        The image, labels, contour target, per-nucleus DAB class and OD.

    Examples
    --------
    >>> field = make_synthetic_ihc((128, 128), seed=1)
    >>> field.image.shape, field.image.dtype
    ((128, 128, 3), dtype('uint8'))
    >>> int(field.labels.max()) == field.n_nuclei
    True
    """
    h, w = _check_shape(shape)
    r_lo, r_hi = (float(r) for r in radius_range)
    if not 1.0 <= r_lo <= r_hi:
        raise ValueError(f"radius_range must be (low, high) with 1 <= low <= high, got {radius_range!r}")
    for name, value in (("touching", touching), ("max_overlap", max_overlap)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    if blur_sigma < 0 or noise_std < 0:
        raise ValueError(f"blur_sigma and noise_std must be >= 0, got {blur_sigma!r}, {noise_std!r}")
    probs = _class_probabilities(positive_fraction, class_probabilities)
    if n_nuclei is None:
        if density < 0:
            raise ValueError(f"density must be >= 0, got {density!r}")
        mean_r2 = (r_hi**3 - r_lo**3) / (3 * (r_hi - r_lo)) if r_hi > r_lo else r_lo**2
        n_nuclei = int(round(density * h * w / (np.pi * mean_r2)))
    elif n_nuclei < 0:
        raise ValueError(f"n_nuclei must be >= 0, got {n_nuclei!r}")

    rng = np.random.default_rng(seed)
    labels, weights = place_nuclei(rng, (h, w), int(n_nuclei), (r_lo, r_hi), touching, max_overlap)
    n = len(weights)

    klass = rng.choice(4, size=n, p=probs).astype(np.int32)
    if positive_map is not None:
        klass = _classes_from_map(rng, labels, n, positive_map, probs)
    lows = np.array([DAB_CLASS_RANGES[k][0] for k in klass])
    highs = np.array([DAB_CLASS_RANGES[k][1] for k in klass])
    dab_od = np.concatenate([[0.0], rng.uniform(lows, highs)]).astype(np.float32)
    # DAB masks the counterstain: strongly positive nuclei take up less hematoxylin.
    h_od = rng.uniform(*hematoxylin_range, size=n) * (1.0 - 0.45 * dab_od[1:] / 0.9)

    hema = np.zeros((h, w), np.float32)
    for (box, inside, rim), h_i in zip(weights, h_od):
        hema[box] += np.where(inside, rim * np.float32(h_i), np.float32(0.0))

    chromatin = 0.6 * _smooth_noise(rng, (h, w), 0.8) + 0.8 * _smooth_noise(rng, (h, w), 2.0)
    grain = np.clip(1.0 + 0.22 * chromatin, 0.4, None)
    hema *= grain
    dab_grain = np.clip(1.0 + 0.15 * chromatin, 0.5, None)
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n + 1).astype(np.float64)
    sums = np.bincount(flat, weights=dab_grain.ravel(), minlength=n + 1)
    mean_grain = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0).astype(np.float32)
    dab = dab_od[labels] * dab_grain / mean_grain[labels]

    stroma_h, stroma_dab = _stroma(rng, (h, w))
    hema += stroma_h
    dab = np.where(labels > 0, dab, stroma_dab)
    if blur_sigma > 0:
        hema = ndi.gaussian_filter(hema, blur_sigma)
        dab = ndi.gaussian_filter(dab, blur_sigma)
        # Blur spreads DAB across nucleus edges; rescale each nucleus so that
        # its mean DAB over its label is still its class OD.
        sums = np.bincount(flat, weights=dab.ravel(), minlength=n + 1)
        means = sums / np.maximum(counts, 1)
        factor = np.ones(n + 1, np.float32)
        valid = (counts > 0) & (means > 1e-4)
        factor[valid] = np.clip(dab_od[valid] / means[valid], 0.5, 2.0)
        factor[0] = 1.0
        dab = dab * factor[labels]
    conc = np.stack([hema, dab, np.zeros_like(hema)], axis=-1)
    image = compose(conc, stains)
    if noise_std > 0:
        noisy = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise_std)
        image = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    intensity_class = np.concatenate([[-1], klass]).astype(np.int32)
    return SyntheticIHC(
        image=image,
        labels=labels,
        contour=labels_to_contour(labels),
        intensity_class=intensity_class,
        dab_od=dab_od,
        seed=int(seed),
    )
