"""Irregular nucleus outlines and their placement in a synthetic field.

A nucleus is an ellipse of equivalent-circle radius ``r``, aspect ratio
0.5–1 and random orientation, whose outline is perturbed by low-order radial
harmonics (:func:`outline_harmonics`); :func:`normalised_radius` says how far
inside it a pixel lies (``<= 1`` inside). :func:`place_nuclei` scatters them
over a field, most without overlap and a fraction against an earlier one,
refusing a placement that would hide too much of a nucleus beneath or split
it in two, so that every label stays one connected region.

:mod:`napari_ihcseg.data.synthetic` paints the stains over these shapes, and
:mod:`napari_ihcseg.data.synthetic_slide` draws tissue blobs with the same
outlines.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["normalised_radius", "outline_harmonics", "outline_reach", "place_nuclei", "rasterise"]

_ASPECT_RANGE = (0.5, 1.0)  # minor / major axis
_IRREGULARITY = 0.12  # amplitude of the radial harmonics of the outline
_HARMONICS = np.arange(2, 7)
_PLACEMENT_TRIES = 8


def outline_harmonics(rng: np.random.Generator) -> np.ndarray:
    """Complex coefficients ``c_k`` of the radial harmonics k = 2..6 of an outline."""
    amps = rng.uniform(0.0, 1.0, len(_HARMONICS)) * _IRREGULARITY / _HARMONICS
    phases = rng.uniform(0.0, 2 * np.pi, len(_HARMONICS))
    return (amps * np.exp(1j * phases)).astype(np.complex64)


def normalised_radius(dy, dx, a, b, theta, coeffs) -> np.ndarray:
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


def outline_reach(a: float, coeffs: np.ndarray) -> float:
    """Radius of a disc that contains the irregular ellipse."""
    return a * (1.0 + float(np.abs(coeffs).sum())) + 1.0


def rasterise(shape, cy, cx, a, b, theta, coeffs):
    """Box slices, inside mask and normalised radius of one irregular ellipse."""
    reach = outline_reach(a, coeffs)
    y0, y1 = max(int(np.floor(cy - reach)), 0), min(int(np.ceil(cy + reach)) + 1, shape[0])
    x0, x1 = max(int(np.floor(cx - reach)), 0), min(int(np.ceil(cx + reach)) + 1, shape[1])
    if y0 >= y1 or x0 >= x1:
        return None
    dy = (np.arange(y0, y1, dtype=np.float32) - np.float32(cy))[:, None]
    dx = (np.arange(x0, x1, dtype=np.float32) - np.float32(cx))[None, :]
    rho = normalised_radius(dy, dx, a, b, theta, coeffs)
    inside = rho <= 1.0
    if not inside.any():
        return None
    return (slice(y0, y1), slice(x0, x1)), inside, rho


def _is_connected(mask: np.ndarray) -> bool:
    return ndi.label(mask)[1] <= 1


def place_nuclei(rng, shape, n_target, radius_range, touching, max_overlap):
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
        coeffs = outline_harmonics(rng)
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
            drawn = rasterise(shape, cy, cx, a, b, theta, coeffs)
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
