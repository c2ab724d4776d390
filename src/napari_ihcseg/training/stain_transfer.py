"""H&E → IHC stain transfer: nuclei outlined on H&E, turned into brown and blue IHC nuclei.

An H&E crop is deconvolved (:data:`H_E`), its hematoxylin optical density
kept and its eosin dropped; DAB optical density is added inside randomly
chosen nuclei (:func:`pick_nuclei`) at intensities like the weak / moderate /
strong classes of IHC scoring (:data:`DAB_CLASS_OD`), optionally with
cytoplasmic brown, granular DAB and pale counterstain; and the stains are
mixed again by Beer–Lambert's law with H-DAB vectors perturbed around
Ruifrok and Johnston's (:func:`random_ihc_stains`). :func:`he_to_ihc` does it
all; :func:`is_he` tells which samples it applies to.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_ihcseg.stain import EOSIN_RJ, H_DAB, HEMATOXYLIN_RJ, StainVectors, angle_deg, compose, deconvolve

__all__ = ["DAB_CLASS_OD", "H_E", "MIN_STAIN_ANGLE_DEG", "he_to_ihc", "is_he", "pick_nuclei", "random_ihc_stains"]

#: Hematoxylin and eosin, for taking an H&E crop apart (eosin in the second slot).
H_E = StainVectors(hematoxylin=HEMATOXYLIN_RJ, dab=EOSIN_RJ, name="H&E (Ruifrok-Johnston)")

#: DAB optical-density ranges of weak (1+), moderate (2+) and strong (3+)
#: nuclei, around the usual IHC scoring thresholds (0.2 / 0.4 / 0.6 OD).
DAB_CLASS_OD = ((0.18, 0.38), (0.38, 0.62), (0.62, 1.1))


def is_he(stain: str) -> bool:
    """True for stain names meaning hematoxylin and eosin (``"H&E"``, ``"he"``)."""
    return stain.replace("&", "").replace(" ", "").replace("-", "").lower() in {"he", "hematoxylineosin"}


def pick_nuclei(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Choose each nucleus with probability ``fraction``: a boolean table over label ids.

    ``table[labels]`` is then the mask of the chosen nuclei; the background
    (id 0) is never chosen. One random number is drawn per id up to the
    largest, so the stream a crop uses depends only on its labels.

    Examples
    --------
    >>> pick_nuclei(np.array([[0, 1], [2, 3]]), 1.0, np.random.default_rng(0)).tolist()
    [False, True, True, True]
    """
    n = int(labels.max()) if labels.size else 0
    table = rng.random(n + 1) < fraction
    table[0] = False
    return table


#: Smallest angle between the random hematoxylin and DAB vectors of a
#: transfer. Ruifrok–Johnston's are 37° apart; at a hematoxylin spread of 0.15
#: about 0.1 % of the draws come closer than 10° and are drawn again (at the
#: default 0.06, none in two million draws: recipes keep their random stream).
MIN_STAIN_ANGLE_DEG = 10.0


def random_ihc_stains(rng: np.random.Generator, *, spread: float | tuple[float, float] = 0.06) -> StainVectors:
    """H-DAB stain vectors perturbed around the Ruifrok–Johnston ones (scanner variation).

    ``spread`` is the standard deviation of each component's perturbation,
    one for both vectors or a (hematoxylin, DAB) pair. A pair that lands
    less than :data:`MIN_STAIN_ANGLE_DEG` apart (two stains no eye or
    deconvolution could tell apart) is drawn again, up to 10 times, then the
    reference vectors are used.
    """
    h_spread, d_spread = (spread, spread) if np.ndim(spread) == 0 else spread
    for _ in range(10):
        h = np.clip(np.asarray(H_DAB.hematoxylin) + rng.normal(0, h_spread, 3), 0.05, None)
        d = np.clip(np.asarray(H_DAB.dab) + rng.normal(0, d_spread, 3), 0.05, None)
        if angle_deg(h, d) >= MIN_STAIN_ANGLE_DEG:
            break
    else:
        return H_DAB
    return StainVectors(hematoxylin=tuple(h), dab=tuple(d), name="H-DAB (random)")


def he_to_ihc(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *,
              positive_fraction: tuple[float, float] = (0.0, 0.8),
              hematoxylin_scale: tuple[float, float] = (0.55, 1.1), background_dab: float = 0.0,
              cytoplasm_dab: float = 0.0, cytoplasm_width: int = 4,
              cytoplasmic_stain: float = 0.0, dab_granularity: float = 0.0,
              granule_sigma: float = 1.2, nuclear_contrast: float = 1.0,
              stain_vector_spread: float | tuple[float, float] = 0.06) -> np.ndarray:
    """Turn an H&E image into a hematoxylin-DAB one with DAB-positive nuclei.

    Parameters
    ----------
    image : (H, W, 3) uint8
        H&E RGB.
    labels : (H, W) int
        Nucleus instances (connected components of a mask will do).
    rng : numpy.random.Generator
    positive_fraction : (float, float)
        Range of the fraction of nuclei that become DAB-positive.
    hematoxylin_scale : (float, float)
        Range of the factor on the hematoxylin optical density, sampled
        log-uniformly (pale counterstain below 1).
    background_dab : float
        Largest optical density of a smooth, spatially varying brown haze
        added everywhere (0: none beyond a faint uniform tint).
    cytoplasm_dab : float
        DAB of a rim ``cytoplasm_width`` pixels wide around each positive
        nucleus, as a fraction of that nucleus's level (0: none). The rim is
        outside every nucleus, so the instance truth does not change.
    cytoplasm_width : int
        Width of that rim in pixels.
    cytoplasmic_stain : float
        DAB optical density of the cytoplasm next to every nucleus, positive
        or negative, fading over about ``3 * cytoplasm_width`` pixels and
        patchy (0: none): a cytoplasmic or membranous marker, where brown does
        not mean nucleus.
    dab_granularity : float
        Granular DAB inside positive nuclei: the standard deviation of the
        log of a texture of clumps about ``granule_sigma`` pixels across,
        log-normal with mean 1 before clipping to 0.1-4 (0: the default mild
        texture). At 0.8 the DAB of a
        nucleus varies about fourfold between its dark clumps and pale holes.
    granule_sigma : float
        Size of the clumps (Gaussian sigma in pixels).
    nuclear_contrast : float
        Factor on the hematoxylin of nuclei above the local level of the
        cytoplasm around them (1: unchanged; 0.3: a nucleus three times as
        dark as its cytoplasm becomes 1.6 times as dark). Texture inside the
        nucleus shrinks with it, as in pale, washed-out counterstain.
    stain_vector_spread : float or (float, float)
        Perturbation of the H-DAB colour vectors the result is mixed with
        (see :func:`random_ihc_stains`).

    Returns
    -------
    (H, W, 3) uint8
        The same nuclei with hematoxylin kept, eosin removed, and DAB of a
        weak, moderate or strong class inside the chosen nuclei.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((32, 32, 3), 200, np.uint8)
    >>> lab = np.zeros((32, 32), np.int32); lab[8:20, 8:20] = 1
    >>> he_to_ihc(img, lab, np.random.default_rng(0)).shape
    (32, 32, 3)
    """
    c = deconvolve(image, H_E)
    lo_h, hi_h = np.log(hematoxylin_scale[0]), np.log(hematoxylin_scale[1])
    hema = np.clip(c[..., 0], 0.0, None) * float(np.exp(rng.uniform(lo_h, hi_h)))
    if nuclear_contrast != 1.0 and labels.any():
        hema = _compress_nuclear_contrast(hema, labels > 0, nuclear_contrast)
    n = int(labels.max()) if labels.size else 0
    positive = pick_nuclei(labels, rng.uniform(*positive_fraction), rng)
    classes = rng.integers(0, len(DAB_CLASS_OD), n + 1)
    lo = np.array([DAB_CLASS_OD[k][0] for k in classes], np.float32)
    hi = np.array([DAB_CLASS_OD[k][1] for k in classes], np.float32)
    level = np.where(positive, rng.uniform(lo, hi).astype(np.float32), 0.0).astype(np.float32)
    level[0] = 0.0
    nuclear = level[labels]
    inside = ndi.gaussian_filter(nuclear, 0.8)
    texture = 1.0 + 0.15 * ndi.gaussian_filter(rng.normal(0, 1, labels.shape).astype(np.float32), 1.0) * 3
    if dab_granularity > 0:
        grains = ndi.gaussian_filter(rng.normal(0, 1, labels.shape).astype(np.float32), granule_sigma)
        grains /= max(float(grains.std()), 1e-6)
        pattern = np.clip(np.exp(dab_granularity * grains - 0.5 * dab_granularity ** 2), 0.1, 4.0)
    else:
        pattern = np.clip(texture, 0.5, 1.5)
    dab = inside * pattern + rng.uniform(0.0, 0.04)
    if cytoplasm_dab > 0 and nuclear.any():
        rim = ndi.grey_dilation(nuclear, size=2 * cytoplasm_width + 1) * (labels == 0)
        dab = dab + cytoplasm_dab * ndi.gaussian_filter(rim, 1.5) * np.clip(texture, 0.5, 1.5)
    if cytoplasmic_stain > 0 and n:
        # Brown fading with the distance from the nearest nucleus, patchy like real cell bodies.
        distance = ndi.distance_transform_edt(labels == 0).astype(np.float32)
        patches = ndi.gaussian_filter(rng.normal(0, 1, labels.shape).astype(np.float32), 6.0)
        patches = np.clip(0.75 + patches / max(float(patches.std()), 1e-6) * 0.25, 0.3, 1.0)
        cytoplasm = np.exp(-distance / (3.0 * cytoplasm_width)) * (labels == 0)
        dab = dab + cytoplasmic_stain * ndi.gaussian_filter(cytoplasm, 0.7) * patches * np.clip(texture, 0.5, 1.5)
    if background_dab > 0:
        haze = ndi.gaussian_filter(rng.normal(0, 1, labels.shape).astype(np.float32), 12.0)
        haze = (haze - haze.min()) / max(float(np.ptp(haze)), 1e-6)
        dab = dab + background_dab * rng.uniform(0.3, 1.0) * haze
    # Hematoxylin is partly masked by the brown chromogen in positive nuclei.
    covered = np.clip(inside / 0.6, 0, 1)
    hema = hema * (1.0 - rng.uniform(0.2, 0.6) * covered)
    conc = np.stack([hema, dab, np.zeros_like(hema)], axis=-1).astype(np.float32)
    return compose(conc, random_ihc_stains(rng, spread=stain_vector_spread))


def _compress_nuclear_contrast(hema: np.ndarray, nuclei: np.ndarray, factor: float) -> np.ndarray:
    """Scale the hematoxylin of ``nuclei`` above the local non-nuclear level by ``factor``."""
    outside = (~nuclei).astype(np.float32)
    # Local cytoplasm level: a normalised (masked) Gaussian average of the non-nuclear pixels.
    weight = ndi.gaussian_filter(outside, 8.0)
    local = ndi.gaussian_filter(hema * outside, 8.0) / np.maximum(weight, 1e-3)
    local = np.where(weight > 1e-3, local, float(np.median(hema[~nuclei])) if outside.any() else 0.0)
    inside = ndi.gaussian_filter(nuclei.astype(np.float32), 0.8)
    excess = np.clip(hema - local, 0.0, None)
    return (hema - inside * (1.0 - factor) * excess).astype(np.float32)
