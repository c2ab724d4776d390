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

from dataclasses import dataclass

import numpy as np

#: Reference intensity of the light source (8-bit RGB).
I0 = 255.0
#: The largest optical density an 8-bit pixel can have (I = 1).
OD_MAX = float(np.log10(I0))

#: Ruifrok–Johnston stain vectors (RGB optical densities), as in scikit-image
#: and QuPath's "H-DAB" default.
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
        if abs(float(h @ d)) > 0.995:
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
