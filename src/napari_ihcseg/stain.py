"""Optical density and Ruifrok–Johnston colour deconvolution.

Optical density follows QuPath's convention, ``OD = -log10(I / I0)`` with
``I0 = 255``, so that DAB thresholds set in QuPath mean the same here. Pixel
values of 0 are clipped to 1 before the logarithm (OD at most ``log10(255)``).

References
----------
.. [1] A. C. Ruifrok and D. A. Johnston, "Quantification of histochemical
       staining by color deconvolution", Anal. Quant. Cytol. Histol. 23 (2001).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: Reference intensity of the light source (8-bit RGB).
I0 = 255.0
#: The largest optical density an 8-bit pixel can have (I = 1).
OD_MAX = float(np.log10(I0))
#: Optical density of each 8-bit value, ``-log10(max(I, 1) / I0)``, in double
#: precision: ``OD_LUT[pixels]`` is :func:`rgb_to_od` of uint8 pixels, by lookup.
OD_LUT = -np.log10(np.maximum(np.arange(256, dtype=np.float64), 1.0) / I0)

#: Ruifrok–Johnston stain vectors (RGB optical densities), as in scikit-image;
#: QuPath's "H-DAB default" (0.651, 0.701, 0.290 / 0.269, 0.568, 0.778) lies
#: within 0.4 degrees of them.
HEMATOXYLIN_RJ = (0.650, 0.704, 0.286)
DAB_RJ = (0.268, 0.570, 0.776)
EOSIN_RJ = (0.072, 0.990, 0.105)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (3,):
        raise ValueError(f"a stain vector needs 3 components (R, G, B), got shape {v.shape}")
    norm = np.linalg.norm(v)
    if not np.isfinite(norm) or norm == 0:
        raise ValueError(f"a stain vector must be finite and non-zero, got {tuple(v)}")
    return v / norm


#: |cos| of the angle between hematoxylin and DAB above which the two cannot
#: be separated (about 5.7 degrees): :class:`StainVectors` refuses such a
#: pair, and :func:`estimate_stain_vectors` falls back to the reference.
PARALLEL_COS = 0.995


def _almost_parallel(a, b) -> bool:
    return abs(float(_unit(a) @ _unit(b))) > PARALLEL_COS


@dataclass(frozen=True)
class StainVectors:
    """Two stains and a residual, as unit RGB optical-density vectors.

    Parameters
    ----------
    hematoxylin, dab : tuple of float
        RGB optical-density vectors; they are normalised to unit length.
    residual : tuple of float, optional
        The third vector. By default the normalised cross product of the
        first two, as in QuPath.
    name : str
        A label stored with results.
    """

    hematoxylin: tuple[float, float, float] = HEMATOXYLIN_RJ
    dab: tuple[float, float, float] = DAB_RJ
    residual: tuple[float, float, float] | None = None
    name: str = "H-DAB (Ruifrok-Johnston)"

    def __post_init__(self) -> None:
        h = _unit(self.hematoxylin)
        d = _unit(self.dab)
        if _almost_parallel(h, d):
            raise ValueError("hematoxylin and DAB vectors are (almost) parallel; they cannot be separated")
        r = np.cross(h, d) if self.residual is None else np.asarray(self.residual, float)
        r = _unit(r)
        object.__setattr__(self, "hematoxylin", tuple(float(x) for x in h))
        object.__setattr__(self, "dab", tuple(float(x) for x in d))
        object.__setattr__(self, "residual", tuple(float(x) for x in r))

    @property
    def matrix(self) -> np.ndarray:
        """Rows are the hematoxylin, DAB and residual vectors (3×3)."""
        return np.array([self.hematoxylin, self.dab, self.residual], dtype=np.float64)

    def to_dict(self) -> dict:
        return {"name": self.name, "hematoxylin": list(self.hematoxylin),
                "dab": list(self.dab), "residual": list(self.residual)}


#: The default hematoxylin–DAB vectors.
H_DAB = StainVectors()


def rgb_to_od(rgb: np.ndarray) -> np.ndarray:
    """Convert 8-bit RGB to optical density, ``-log10(max(I, 1) / 255)``.

    Parameters
    ----------
    rgb : (..., 3) array of uint8
        RGB intensities.

    Returns
    -------
    od : (..., 3) array of float32
        Optical densities, in ``[0, log10(255)]``.
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB with 3 channels in the last axis, got shape {rgb.shape}")
    i = np.maximum(rgb.astype(np.float32), 1.0)
    return (-np.log10(i / np.float32(I0))).astype(np.float32)


def od_to_rgb(od: np.ndarray) -> np.ndarray:
    """Convert optical density back to 8-bit RGB (Beer–Lambert)."""
    od = np.asarray(od, dtype=np.float32)
    i = I0 * np.power(np.float32(10.0), -np.clip(od, 0.0, None))
    return np.clip(np.rint(i), 0, 255).astype(np.uint8)


def deconvolve(rgb: np.ndarray, stains: StainVectors = H_DAB) -> np.ndarray:
    """Separate RGB into stain concentrations (colour deconvolution).

    Parameters
    ----------
    rgb : (..., 3) array of uint8
        RGB image.
    stains : StainVectors
        The stain vectors; Ruifrok–Johnston H-DAB by default.

    Returns
    -------
    concentrations : (..., 3) array of float32
        Hematoxylin, DAB and residual optical densities per pixel, i.e. the
        amount of each stain, expressed as the optical density along its
        vector. Values may be slightly negative through noise.

    Examples
    --------
    >>> import numpy as np
    >>> c = np.zeros((1, 1, 3), np.float32); c[..., 1] = 0.5  # DAB OD 0.5
    >>> rgb = compose(c)
    >>> round(float(deconvolve(rgb)[0, 0, 1]), 1)
    0.5
    """
    od = rgb_to_od(rgb)
    inv = np.linalg.inv(stains.matrix).astype(np.float32)
    return od @ inv


def compose(concentrations: np.ndarray, stains: StainVectors = H_DAB) -> np.ndarray:
    """Mix stain concentrations into 8-bit RGB by Beer–Lambert's law.

    The inverse of :func:`deconvolve` up to 8-bit rounding.

    Parameters
    ----------
    concentrations : (..., 3) array of float
        Hematoxylin, DAB and residual optical densities.
    stains : StainVectors
        The stain vectors.

    Returns
    -------
    rgb : (..., 3) array of uint8
    """
    c = np.asarray(concentrations, dtype=np.float32)
    if c.shape[-1] != 3:
        raise ValueError(f"expected 3 stain channels in the last axis, got shape {c.shape}")
    od = c @ stains.matrix.astype(np.float32)
    return od_to_rgb(od)


# --------------------------------------------------------------------------
# Stain-vector estimation
# --------------------------------------------------------------------------

class StainEstimationWarning(UserWarning):
    """Stain vectors could not be estimated reliably; reference vectors were used."""


#: Pixels whose optical density is below this in any channel are treated as
#: background (Macenko's β).
MACENKO_BETA = 0.15
#: Percentile of the angle distribution taken as each stain's extreme (α, %).
MACENKO_ALPHA = 1.0


def angle_deg(a, b) -> float:
    """The angle between two vectors (stain vectors, say), in degrees.

    Parameters
    ----------
    a, b : array_like
        Non-zero vectors of the same length; only their directions count.

    Returns
    -------
    float
        In [0, 180].

    Examples
    --------
    >>> round(angle_deg(HEMATOXYLIN_RJ, DAB_RJ), 1)
    37.1
    >>> angle_deg([1, 0, 0], [2, 0, 0])
    0.0
    """
    cos = float(np.clip(_unit(a) @ _unit(b), -1.0, 1.0))
    return float(np.degrees(np.arccos(cos)))


def estimate_stain_vectors(
    rgb: np.ndarray,
    *,
    beta: float = MACENKO_BETA,
    alpha: float = MACENKO_ALPHA,
    min_pixels: int = 500,
    max_pixels: int = 250_000,
    max_deviation_deg: float = 30.0,
    reference: StainVectors = H_DAB,
    seed: int = 0,
) -> StainVectors:
    """Estimate hematoxylin and DAB vectors of one image (Macenko's method).

    Optical-density pixels brighter than ``beta`` in every channel are
    projected onto the plane of the two main directions of their distribution;
    the ``alpha`` and ``100 - alpha`` percentiles of their angle in that plane
    give the two stain directions [2]_. Each direction is assigned to
    hematoxylin or DAB by its angle to the ``reference`` vectors.

    The estimate falls back to the reference, with a
    :class:`StainEstimationWarning`, when fewer than ``min_pixels`` pixels are
    stained, and per stain when an estimated vector lies more than
    ``max_deviation_deg`` from its reference (for instance a DAB vector
    estimated on an image with almost no DAB).

    Parameters
    ----------
    rgb : (H, W, 3) array of uint8
        The image.
    beta : float
        Optical-density floor below which a pixel counts as background.
    alpha : float
        Percentile (0–50) of the angle distribution taken as each extreme.
    min_pixels : int
        Fewest stained pixels needed for an estimate.
    max_pixels : int
        At most this many stained pixels are used (a fixed random subset).
    max_deviation_deg : float
        Largest accepted angle between an estimated vector and its reference.
    reference : StainVectors
        The vectors that identify hematoxylin and DAB, and the fallback.
    seed : int
        Seed of the subset drawn when there are more than ``max_pixels``.

    Returns
    -------
    StainVectors
        Named ``"H-DAB (estimated)"`` when at least one vector was estimated.

    References
    ----------
    .. [2] M. Macenko et al., "A method for normalizing histology slides for
           quantitative analysis", Proc. IEEE ISBI (2009) 1107–1110.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> c = np.zeros((64, 64, 3), np.float32)
    >>> c[:32, :, 0] = rng.uniform(0.2, 1.0, (32, 64))   # hematoxylin
    >>> c[32:, :, 1] = rng.uniform(0.2, 1.0, (32, 64))   # DAB
    >>> est = estimate_stain_vectors(compose(c))
    >>> bool(np.dot(est.dab, H_DAB.dab) > 0.99)
    True
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {rgb.shape}")
    if not 0 <= alpha < 50:
        raise ValueError(f"alpha must be a percentile in [0, 50), got {alpha}")
    od = rgb_to_od(rgb.reshape(-1, 3))
    od = od[np.all(od > beta, axis=1)]
    if len(od) < min_pixels:
        warnings.warn(
            f"only {len(od)} stained pixels (optical density > {beta} in every channel), "
            f"fewer than {min_pixels}; using the reference stain vectors ({reference.name})",
            StainEstimationWarning, stacklevel=2)
        return reference
    if len(od) > max_pixels:
        rng = np.random.default_rng(seed)
        od = od[rng.choice(len(od), max_pixels, replace=False)]
    od = od.astype(np.float64)

    # The plane of the two main directions of the second moments. Not centred:
    # stains are directions through the origin, and a stain whose amount
    # hardly varies (e.g. an even counterstain) would vanish from a centred
    # covariance.
    _, eigvecs = np.linalg.eigh(od.T @ od / len(od))
    plane = eigvecs[:, [2, 1]]
    plane *= np.where(plane.sum(axis=0) < 0, -1.0, 1.0)
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100.0 - alpha])
    cand = [plane @ np.array([np.cos(a), np.sin(a)]) for a in (lo, hi)]
    cand = [np.clip(v if v.sum() >= 0 else -v, 0.0, None) for v in cand]
    cand = [v if np.linalg.norm(v) > 0 else np.asarray(reference.hematoxylin) for v in cand]

    ref_h, ref_d = np.asarray(reference.hematoxylin), np.asarray(reference.dab)
    straight = angle_deg(cand[0], ref_h) + angle_deg(cand[1], ref_d)
    swapped = angle_deg(cand[1], ref_h) + angle_deg(cand[0], ref_d)
    h, d = (cand[0], cand[1]) if straight <= swapped else (cand[1], cand[0])

    chosen = []
    for label, est, ref in (("hematoxylin", h, ref_h), ("DAB", d, ref_d)):
        dev = angle_deg(est, ref)
        if dev > max_deviation_deg:
            warnings.warn(
                f"estimated {label} vector is {dev:.0f} degrees from the reference "
                f"(limit {max_deviation_deg:g}); using the reference {label} vector",
                StainEstimationWarning, stacklevel=2)
            chosen.append((ref, False))
        else:
            chosen.append((est, True))
    (h, h_est), (d, d_est) = chosen
    if not (h_est or d_est):
        return reference
    if _almost_parallel(h, d):
        warnings.warn("estimated hematoxylin and DAB vectors are almost parallel; "
                      "using the reference stain vectors", StainEstimationWarning, stacklevel=2)
        return reference
    return StainVectors(hematoxylin=tuple(h), dab=tuple(d), name="H-DAB (estimated)")
