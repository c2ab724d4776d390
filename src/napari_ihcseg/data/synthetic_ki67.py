"""A synthetic Ki-67 field with its truth: the demo's nuclear stain.

:func:`make_ki67_field` calls :func:`~napari_ihcseg.data.synthetic.make_synthetic_ihc`
with the look of a Ki-67 (MIB-1) stain: brown DAB only in the nuclei of a
fraction of cells, pale blue hematoxylin in the negative ones, stroma between
them, and a proliferation hot spot where the positive fraction rises. The
truth (labels, per-nucleus class, the true global index and the hot spot's
place) comes with it, so a score can be compared with the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .synthetic import SyntheticIHC, make_synthetic_ihc

#: Hematoxylin OD of Ki-67 negatives: a paler counterstain than the generator's default.
KI67_HEMATOXYLIN = (0.3, 0.55)
#: Share of 1+, 2+ and 3+ among positive nuclei (Ki-67 is mostly moderate to strong).
KI67_GRADES = (0.0, 0.3, 0.35, 0.35)
#: Nucleus radii (px): about 14–24 px across, the size the shipped models see at 40x.
KI67_RADII = (7.0, 12.0)


@dataclass(frozen=True, eq=False)
class Ki67Field:
    """A synthetic Ki-67 field and its truth.

    Attributes
    ----------
    field : SyntheticIHC
        Image, labels and per-nucleus class.
    index : float
        True Ki-67 index: percent of nuclei with class >= 1.
    hotspot_center : (float, float)
        ``(row, col)`` where the positive fraction peaks.
    hotspot_radius : float
        Radius (px) of the raised region (the Gaussian's 1-sigma radius times 1.5).
    """

    field: SyntheticIHC
    index: float
    hotspot_center: tuple[float, float]
    hotspot_radius: float


def make_ki67_field(shape: tuple[int, int] = (768, 768), *, seed: int = 0, background: float = 0.15,
                    hotspot: float = 0.6, hotspot_radius: float | None = None,
                    density: float = 0.3) -> Ki67Field:
    """A Ki-67-like field: positive nuclei at ``background`` rate, rising to ``hotspot`` in one place.

    Parameters
    ----------
    shape : (int, int)
    seed : int
    background, hotspot : float
        Probability that a nucleus is positive far from and at the hot spot's centre.
    hotspot_radius : float, optional
        Radius of the raised region in pixels (default a sixth of the shorter side).
    density : float
        Fraction of the field covered by nuclei.

    Examples
    --------
    >>> k = make_ki67_field((256, 256), seed=1)
    >>> k.field.image.shape, 0 < k.index < 100
    ((256, 256, 3), True)
    """
    for name, value in (("background", background), ("hotspot", hotspot)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    h, w = (int(s) for s in shape)
    rng = np.random.default_rng([seed, 67])
    radius = float(hotspot_radius) if hotspot_radius is not None else min(h, w) / 6.0
    margin = np.array([min(radius, h / 3), min(radius, w / 3)])
    centre = rng.uniform(margin, np.array([h, w]) - margin)
    yy, xx = np.ogrid[:h, :w]
    sigma = radius / 1.5
    bump = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma ** 2))
    positive_map = background + (hotspot - background) * bump
    field = make_synthetic_ihc((h, w), density=density, radius_range=KI67_RADII, class_probabilities=KI67_GRADES,
                               hematoxylin_range=KI67_HEMATOXYLIN, positive_map=positive_map, seed=seed)
    classes = field.intensity_class[1:]
    index = 100.0 * float(np.mean(classes >= 1)) if classes.size else 0.0
    return Ki67Field(field, index, (float(centre[0]), float(centre[1])), radius)
