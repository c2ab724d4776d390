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
   or split it in two, so every label is one connected region.
2. **Hematoxylin** of each nucleus has a darker rim (nuclear membrane) and
   chromatin granularity (smoothed noise). Where nuclei overlap their
   hematoxylin adds up, so overlaps look darker, as on a slide.
3. **DAB** is uniform per nucleus up to the same granularity, scaled so
   that its mean over the nucleus's label equals the nucleus's DAB OD, also
   after the optical blur (each nucleus is rescaled once more after it). DAB
   is taken from the top nucleus only, so a nucleus's mean DAB is its own.
   Class OD ranges (:data:`DAB_CLASS_RANGES`) lie between the default scoring
   thresholds 0.2 / 0.4 / 0.6, so measuring the mean DAB OD of each label
   recovers its class.
4. **Stroma**: faint hematoxylin fibres whose density varies slowly, with
   nearly empty patches, and a trace of DAB background.
5. **Optics**: a Gaussian blur of the ODs (``blur_sigma``), Beer–Lambert
   mixing, then Gaussian noise on the 8-bit intensities (``noise_std``).

:func:`make_synthetic_slide` writes large tiled pyramidal BigTIFF slides of
such fields, tile by tile, for tests and benchmarks of whole-slide code.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_ihcseg.stain import H_DAB, StainVectors, compose

from .targets import labels_to_contour

__all__ = [
    "CLASS_NAMES",
    "DAB_CLASS_RANGES",
    "SyntheticIHC",
    "make_synthetic_ihc",
    "make_synthetic_slide",
]

#: Names of the DAB intensity classes 0..3.
CLASS_NAMES = ("negative", "1+", "2+", "3+")
#: DAB optical density range of each class, drawn uniformly. The default
#: scoring thresholds 0.2 / 0.4 / 0.6 separate them with a margin.
DAB_CLASS_RANGES = ((0.0, 0.1), (0.25, 0.35), (0.45, 0.55), (0.7, 0.9))

_ASPECT_RANGE = (0.5, 1.0)  # minor / major axis
_IRREGULARITY = 0.12  # amplitude of the radial harmonics of the outline
_HARMONICS = np.arange(2, 7)
_HEMATOXYLIN_RANGE = (0.45, 0.8)  # OD of a negative nucleus
_PLACEMENT_TRIES = 8
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


def _outline(rng: np.random.Generator) -> np.ndarray:
    """Complex coefficients ``c_k`` of the radial harmonics k = 2..6 of an outline."""
    amps = rng.uniform(0.0, 1.0, len(_HARMONICS)) * _IRREGULARITY / _HARMONICS
    phases = rng.uniform(0.0, 2 * np.pi, len(_HARMONICS))
    return (amps * np.exp(1j * phases)).astype(np.complex64)


def _normalised_radius(dy, dx, a, b, theta, coeffs) -> np.ndarray:
    """Normalised radius of pixels (``<= 1`` inside) of an irregular ellipse.

    ``dy``, ``dx`` are offsets from the centre (broadcastable float32). The
    outline in normalised polar coordinates is
    ``1 + sum_k |c_k| cos(k phi + arg c_k) = 1 + Re(sum_k c_k z^k)`` with
    ``z = exp(i phi)``, evaluated by Horner's rule.
    """
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    q = (dx * c + dy * s) / np.float32(a) + 1j * ((dy * c - dx * s) / np.float32(b))
    radius = np.abs(q)
    z = q / np.maximum(radius, np.float32(1e-6))
    poly = coeffs[-1]
    for coef in coeffs[-2::-1]:
        poly = poly * z + coef
    return radius / (1.0 + (poly * z * z).real)


def _reach(a: float, coeffs: np.ndarray) -> float:
    """Radius of a disc that contains the irregular ellipse."""
    return a * (1.0 + float(np.abs(coeffs).sum())) + 1.0


def _rasterise(shape, cy, cx, a, b, theta, coeffs):
    """Box slices, inside mask and normalised radius of one irregular ellipse."""
    reach = _reach(a, coeffs)
    y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, shape[0])
    x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    rho = _normalised_radius(dy, dx, a, b, theta, coeffs)
    inside = rho <= 1.0
    if not inside.any():
        return None
    return (slice(y0, y1), slice(x0, x1)), inside, rho


def _is_connected(mask: np.ndarray) -> bool:
    return ndi.label(mask)[1] <= 1


def _place_nuclei(rng, shape, n_target, radius_range, touching, max_overlap):
    """Place nuclei one by one.

    Returns the labels and, per placed nucleus, ``(box, inside, rim)``: its
    bounding box, its full (unoccluded) mask in the box and its rim profile.
    """
    labels = np.zeros(shape, np.int32)
    boxes: list[tuple[slice, slice]] = [()]  # index 0 = background
    area_full = [0]
    area_now = [0]
    centres: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
    weights: list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]] = []
    r_lo, r_hi = radius_range
    for _ in range(n_target):
        r = float(rng.uniform(r_lo, r_hi))
        aspect = float(rng.uniform(*_ASPECT_RANGE))
        a, b = r / np.sqrt(aspect), r * np.sqrt(aspect)
        theta = float(rng.uniform(0.0, np.pi))
        coeffs = _outline(rng)
        against = len(centres) > 1 and rng.random() < touching
        for _try in range(_PLACEMENT_TRIES):
            if against:
                j = int(rng.integers(1, len(centres)))
                cyj, cxj, rj = centres[j]
                angle = rng.uniform(0.0, 2 * np.pi)
                dist = (r + rj) * rng.uniform(0.75, 1.0)
                cy, cx = cyj + dist * np.sin(angle), cxj + dist * np.cos(angle)
                if not (0 <= cy < shape[0] and 0 <= cx < shape[1]):
                    continue  # keep at least about a quarter of every nucleus in the field
            else:
                cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
            drawn = _rasterise(shape, cy, cx, a, b, theta, coeffs)
            if drawn is None:
                continue
            box, inside, rho = drawn
            under = labels[box][inside]
            hit = np.unique(under[under > 0])
            if hit.size and not against:
                continue
            if hit.size:
                counts = np.bincount(under, minlength=hit.max() + 1)[hit]
                lost = np.array([area_full[h] - area_now[h] for h in hit]) + counts
                if np.any(lost > max_overlap * np.array([area_full[h] for h in hit])):
                    continue
                new_id = len(centres)
                saved = labels[box].copy()
                labels[box][inside] = new_id
                if not all(_is_connected(labels[boxes[h]] == h) for h in hit):
                    labels[box] = saved
                    continue
                for h, c in zip(hit, counts):
                    area_now[h] -= int(c)
            else:
                new_id = len(centres)
                labels[box][inside] = new_id
            n_in = int(inside.sum())
            area_full.append(n_in)
            area_now.append(n_in)
            boxes.append(box)
            centres.append((cy, cx, r))
            t = np.clip((rho - 0.6) / 0.4, 0.0, 1.0)
            rim = 0.8 + 0.45 * t * t * (3.0 - 2.0 * t)  # smoothstep: darker near the membrane
            weights.append((box, inside, rim))
            break
    return labels, weights


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
    labels, weights = _place_nuclei(rng, (h, w), int(n_nuclei), (r_lo, r_hi), touching, max_overlap)
    n = len(weights)

    klass = rng.choice(4, size=n, p=probs).astype(np.int32)
    lows = np.array([DAB_CLASS_RANGES[k][0] for k in klass])
    highs = np.array([DAB_CLASS_RANGES[k][1] for k in klass])
    dab_od = np.concatenate([[0.0], rng.uniform(lows, highs)]).astype(np.float32)
    # DAB masks the counterstain: strongly positive nuclei take up less hematoxylin.
    h_od = rng.uniform(*_HEMATOXYLIN_RANGE, size=n) * (1.0 - 0.45 * dab_od[1:] / 0.9)

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


# --------------------------------------------------------------------------
# Large tiled pyramidal slides

#: RGB of empty glass in synthetic slides.
GLASS_RGB = (246, 246, 244)
_MIN_LEVEL_SIDE = 1  # never make a level smaller than this


@dataclass(frozen=True)
class _Blob:
    """One piece of tissue: an irregular ellipse in level-0 pixels."""

    cy: float
    cx: float
    a: float
    b: float
    theta: float
    coeffs: np.ndarray

    def mask(self, y0: int, x0: int, height: int, width: int) -> np.ndarray | None:
        """Tissue mask of this blob over a window, or None when it misses it."""
        reach = _reach(self.a, self.coeffs)
        if (self.cy + reach < y0 or self.cy - reach > y0 + height
                or self.cx + reach < x0 or self.cx - reach > x0 + width):
            return None
        # A coarse look first: most windows are far outside or deep inside.
        step = 16
        dy = (np.arange(y0, y0 + height + step, step, dtype=np.float32) - np.float32(self.cy))[:, None]
        dx = (np.arange(x0, x0 + width + step, step, dtype=np.float32) - np.float32(self.cx))[None, :]
        rho = _normalised_radius(dy, dx, self.a, self.b, self.theta, self.coeffs)
        margin = 2.0 * step / self.b  # rho changes by less than this between grid points
        if rho.min() > 1.0 + margin:
            return None
        if rho.max() < 1.0 - margin:
            return np.ones((height, width), bool)
        dy = (np.arange(y0, y0 + height, dtype=np.float32) - np.float32(self.cy))[:, None]
        dx = (np.arange(x0, x0 + width, dtype=np.float32) - np.float32(self.cx))[None, :]
        return _normalised_radius(dy, dx, self.a, self.b, self.theta, self.coeffs) <= 1.0


def _tissue_layout(rng: np.random.Generator, shape: tuple[int, int], fraction: float) -> list[_Blob]:
    """A few tissue pieces covering about ``fraction`` of the slide."""
    if fraction <= 0:
        return []
    h, w = shape
    n = int(rng.integers(2, 6))
    shares = rng.dirichlet(np.full(n, 2.0)) * fraction * h * w
    blobs = []
    for area in shares:
        aspect = float(rng.uniform(0.5, 1.0))
        r = float(np.sqrt(area / np.pi))
        a, b = r / np.sqrt(aspect), r * np.sqrt(aspect)
        cy = float(rng.uniform(min(b, h / 2), max(h - b, h / 2)))
        cx = float(rng.uniform(min(a, w / 2), max(w - a, w / 2)))
        coeffs = (_outline(rng) * 1.5).astype(np.complex64)
        blobs.append(_Blob(cy, cx, a, b, float(rng.uniform(0, np.pi)), coeffs))
    return blobs


def _level_shapes(shape: tuple[int, int], tile: int, levels: int | None) -> list[tuple[int, int]]:
    shapes = [shape]
    while True:
        h, w = shapes[-1]
        if levels is not None and len(shapes) >= levels:
            break
        if levels is None and max(h, w) <= tile:
            break
        if min(h, w) // 2 < _MIN_LEVEL_SIDE:
            break
        shapes.append((h // 2, w // 2))
    return shapes


def _halve(tile_rgb: np.ndarray) -> np.ndarray:
    """2 x 2 mean of an RGB tile with even sides."""
    t = tile_rgb.astype(np.uint16)
    s = t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


class _ChunkCache:
    """Half-resolution quarters of the tiles of one level, kept JPEG-encoded.

    ``None`` stands for an empty-glass quarter, so background costs nothing.
    """

    def __init__(self) -> None:
        import imagecodecs

        self._encode = lambda a: imagecodecs.jpeg_encode(a, level=95)
        self._decode = imagecodecs.jpeg_decode
        self._chunks: dict[tuple[int, int], bytes] = {}

    def put(self, i: int, j: int, quarter: np.ndarray | None) -> None:
        if quarter is not None:
            self._chunks[i, j] = self._encode(quarter)

    def get(self, i: int, j: int) -> np.ndarray | None:
        data = self._chunks.get((i, j))
        return None if data is None else self._decode(data)


def make_synthetic_slide(
    path: str | os.PathLike,
    shape: tuple[int, int] = (20000, 20000),
    *,
    tile: int = 512,
    pyramid_levels: int | None = None,
    seed: int = 0,
    compression: str | None = "jpeg",
    tissue_fraction: float = 0.3,
    pixel_size_um: float = 0.5,
    n_fields: int = 4,
    overwrite: bool = True,
    progress: Callable[[int, int], None] | None = None,
    **field_options,
) -> Path:
    """Write a large tiled pyramidal BigTIFF slide of synthetic IHC tissue.

    The slide is generated and written tile by tile, so memory stays at a few
    tiles whatever its size. A few irregular tissue pieces cover about
    ``tissue_fraction`` of the slide; the rest is empty glass
    (:data:`GLASS_RGB`), which tissue detection should skip. Tissue tiles are
    drawn from ``n_fields`` :func:`make_synthetic_ihc` fields of one tile
    each, turned by a multiple of 90 degrees and mirrored at random (seeded
    from ``seed`` and the tile position), so a slide of any size costs only a
    few fields to generate. Nuclei are cut at tile seams: the slide serves
    tests and benchmarks of input/output, tiling and memory, not accuracy.

    Level 0 is written as the main image, the lower resolutions (each half
    the previous, 2 x 2 mean) as SubIFDs, which tifffile, QuPath and
    OME-aware readers open as a pyramid. Files named ``*.ome.tif(f)`` get
    OME-XML metadata. The pixel size goes into the resolution tags.

    Parameters
    ----------
    path : path-like
        Output file (``.tif``, ``.tiff``, ``.btf`` or ``.ome.tif``). Written
        atomically (temporary file, then rename).
    shape : (int, int)
        Height and width of level 0 in pixels.
    tile : int
        Tile side in pixels, a multiple of 16.
    pyramid_levels : int, optional
        Number of levels including level 0. By default, halve until the
        level fits in one tile.
    seed : int
        Seed of the layout and of every tile.
    compression : str or None
        Tile compression understood by tifffile: ``"jpeg"``, ``"zlib"``,
        ``"lzw"``, ``"zstd"``, ... or None.
    tissue_fraction : float
        About how much of the slide is tissue, in [0, 1].
    pixel_size_um : float
        Pixel size of level 0 in micrometres.
    n_fields : int
        Number of distinct synthetic fields the tissue tiles are drawn from.
    overwrite : bool
        Replace an existing file.
    progress : callable, optional
        ``progress(done, total)`` called after each tile (all levels).
    **field_options
        Passed to :func:`make_synthetic_ihc` (e.g. ``density``).

    Returns
    -------
    path : Path
        The written file.

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "slide.tif"
    >>> _ = make_synthetic_slide(out, (2048, 3072), tile=512, tissue_fraction=0.2)
    >>> with tifffile.TiffFile(out) as tif:
    ...     [lvl.shape for lvl in tif.series[0].levels]
    [(2048, 3072, 3), (1024, 1536, 3), (512, 768, 3), (256, 384, 3)]
    """
    import tifffile

    from napari_ihcseg._atomic import atomic_path

    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (height, width), got {shape!r}")
    if tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile!r}")
    if not 0.0 <= tissue_fraction <= 1.0:
        raise ValueError(f"tissue_fraction must be in [0, 1], got {tissue_fraction!r}")
    if pyramid_levels is not None and pyramid_levels < 1:
        raise ValueError(f"pyramid_levels must be >= 1, got {pyramid_levels!r}")
    if not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um!r}")
    if n_fields < 1:
        raise ValueError(f"n_fields must be >= 1, got {n_fields!r}")
    path = Path(path)
    shapes = _level_shapes((h, w), tile, pyramid_levels)
    grids = [(-(-lh // tile), -(-lw // tile)) for lh, lw in shapes]
    total = sum(gy * gx for gy, gx in grids)
    blobs = _tissue_layout(np.random.default_rng(seed), (h, w), tissue_fraction)
    glass = np.empty((tile, tile, 3), np.uint8)
    glass[:] = GLASS_RGB
    half = tile // 2
    done = 0
    fields: dict[int, np.ndarray] = {}

    def tissue_tile(i: int, j: int) -> np.ndarray:
        rng = np.random.default_rng((seed, i, j))
        k, turns, mirror = int(rng.integers(n_fields)), int(rng.integers(4)), bool(rng.integers(2))
        if k not in fields:
            field_seed = int(np.random.SeedSequence((seed, k)).generate_state(1)[0])
            fields[k] = make_synthetic_ihc((tile, tile), seed=field_seed, **field_options).image
        out = np.rot90(fields[k], turns)
        return out[:, ::-1] if mirror else out

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def level0(cache: _ChunkCache):
        gy, gx = grids[0]
        for i in range(gy):
            for j in range(gx):
                y0, x0 = i * tile, j * tile
                mask = None
                for blob in blobs:
                    m = blob.mask(y0, x0, tile, tile)
                    if m is not None:
                        mask = m if mask is None else mask | m
                if mask is not None:
                    mask[min(h - y0, tile):] = False
                    mask[:, min(w - x0, tile):] = False
                if mask is None or not mask.any():
                    out = glass
                    cache.put(i, j, None)
                else:
                    out = np.where(mask[..., None], tissue_tile(i, j), glass)
                    cache.put(i, j, _halve(out))
                tick()
                yield out

    def reduced(level: int, source: _ChunkCache, cache: _ChunkCache):
        gy, gx = grids[level]
        for i in range(gy):
            for j in range(gx):
                quarters = [[source.get(2 * i + di, 2 * j + dj) for dj in (0, 1)] for di in (0, 1)]
                if all(q is None for row in quarters for q in row):
                    out = glass
                    cache.put(i, j, None)
                else:
                    out = glass.copy()
                    for di in (0, 1):
                        for dj in (0, 1):
                            q = quarters[di][dj]
                            if q is not None:
                                out[di * half:(di + 1) * half, dj * half:(dj + 1) * half] = q
                    cache.put(i, j, _halve(out))
                tick()
                yield out

    name = path.name.lower()
    ome = name.endswith((".ome.tif", ".ome.tiff"))
    resolution = (1e4 / pixel_size_um, 1e4 / pixel_size_um)
    options = dict(
        dtype=np.uint8, tile=(tile, tile), photometric="rgb", compression=compression,
        resolution=resolution, resolutionunit="CENTIMETER",
    )
    metadata = {"axes": "YXS", "PhysicalSizeX": pixel_size_um, "PhysicalSizeY": pixel_size_um,
                "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"} if ome else None
    with atomic_path(path, overwrite=overwrite) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=ome) as tif:
            cache = _ChunkCache()
            tif.write(level0(cache), shape=(h, w, 3), subifds=len(shapes) - 1,
                      metadata=metadata, **options)
            for level in range(1, len(shapes)):
                source, cache = cache, _ChunkCache()
                lh, lw = shapes[level]
                scale = 2**level
                options["resolution"] = (resolution[0] / scale, resolution[1] / scale)
                tif.write(reduced(level, source, cache), shape=(lh, lw, 3), subfiletype=1,
                          metadata=None, **options)
    return path
