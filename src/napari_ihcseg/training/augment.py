"""Training augmentation in numpy, driven by one random generator per crop.

Geometry (90° rotations, flips; scale jitter happens when cropping, see
:mod:`napari_ihcseg.training.tiles`), heavy colour augmentation (jitter of
each stain's optical density after colour deconvolution, brightness,
contrast, gamma), targeted HSV shifts of stained nuclei only, blur and noise,
and **H&E → IHC stain transfer** (:mod:`~napari_ihcseg.training.stain_transfer`),
by which nuclei outlined on H&E teach the model brown and blue IHC nuclei.
The recipe is an :class:`~napari_ihcseg.training.augment_config.AugmentConfig`
(:mod:`~napari_ihcseg.training.augment_config`); the names of both modules
are importable from here too.

Every function takes the generator explicitly and returns new arrays, so a
crop's augmentation is reproducible from its seed (which is what makes
training resumable step for step).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from napari_ihcseg.stain import DAB_RJ, EOSIN_RJ, HEMATOXYLIN_RJ, StainVectors, compose, deconvolve

from .augment_config import ADDED_LATER_OFF, NO_AUGMENT, AugmentConfig, with_overrides
from .stain_transfer import (
    DAB_CLASS_OD,
    H_E,
    MIN_STAIN_ANGLE_DEG,
    he_to_ihc,
    is_he,
    pick_nuclei,
    random_ihc_stains,
)
from .tiles import Crop

__all__ = [
    "ADDED_LATER_OFF", "DAB_CLASS_OD", "H_E", "HED", "MIN_STAIN_ANGLE_DEG", "NO_AUGMENT", "AugmentConfig",
    "augment", "blur", "geometric", "he_to_ihc", "intensity_jitter", "is_he", "noise", "nuclei_hsv_shift",
    "random_ihc_stains", "stain_jitter", "with_overrides",
]

#: Hematoxylin, eosin and DAB as one basis: deconvolution of either H&E or
#: H-DAB images into three stain channels (scikit-image's ``rgb2hed`` basis).
HED = StainVectors(hematoxylin=HEMATOXYLIN_RJ, dab=DAB_RJ, residual=EOSIN_RJ, name="H-DAB-E")


def geometric(crop: Crop, rng: np.random.Generator, *, rot90: bool = True, flips: bool = True) -> Crop:
    """Rotate by a random multiple of 90° and flip, the same way for every array."""
    k = int(rng.integers(0, 4)) if rot90 else 0
    flip_y = bool(rng.integers(0, 2)) if flips else False
    flip_x = bool(rng.integers(0, 2)) if flips else False

    def apply(a):
        if a is None:
            return None
        a = np.rot90(a, k, axes=(0, 1))
        if flip_y:
            a = a[::-1]
        if flip_x:
            a = a[:, ::-1]
        return np.ascontiguousarray(a)

    return Crop(image=apply(crop.image), labels=apply(crop.labels), mask=apply(crop.mask), valid=apply(crop.valid))


def stain_jitter(image: np.ndarray, rng: np.random.Generator, *, scale: float = 0.15,
                 shift: float = 0.03) -> np.ndarray:
    """HED jitter: scale and shift each stain's optical density, then recompose."""
    c = deconvolve(image, HED)
    a = rng.uniform(1 - scale, 1 + scale, 3).astype(np.float32)
    b = rng.uniform(-shift, shift, 3).astype(np.float32)
    return compose(c * a + b, HED)


def intensity_jitter(image: np.ndarray, rng: np.random.Generator, *, brightness: float = 0.08,
                     contrast: float = 0.2, gamma: float = 0.25) -> np.ndarray:
    """Random brightness, contrast (about the mean) and gamma on [0, 1] RGB."""
    x = image.astype(np.float32) / 255.0
    g = float(np.exp(rng.uniform(-gamma, gamma)))
    x = np.power(x, g)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean + rng.uniform(-brightness, brightness)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _instances(crop: Crop) -> np.ndarray:
    if crop.labels is not None:
        return crop.labels
    if crop.mask is not None:
        return ndi.label(crop.mask)[0]
    return np.zeros(crop.image.shape[:2], np.int32)


def nuclei_hsv_shift(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, hue: float = 0.06,
                     saturation: float = 0.3, value: float = 0.15) -> np.ndarray:
    """Shift hue, saturation and value inside a random subset of nuclei only.

    The targeted augmentation of stained nuclei (the colour of the nuclei
    changes, the background does not) that makes a model invariant to stain
    and scanner.
    """
    from skimage.color import hsv2rgb, rgb2hsv

    chosen = pick_nuclei(labels, rng.uniform(0.3, 1.0), rng)[labels]
    if not chosen.any():
        return image
    weight = ndi.gaussian_filter(chosen.astype(np.float32), 1.0)[..., None]
    hsv = rgb2hsv(image)
    shifted = hsv.copy()
    shifted[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue)) % 1.0
    shifted[..., 1] = np.clip(hsv[..., 1] * rng.uniform(1 - saturation, 1 + saturation), 0, 1)
    shifted[..., 2] = np.clip(hsv[..., 2] * rng.uniform(1 - value, 1 + value), 0, 1)
    out = hsv2rgb(shifted) * weight + (image.astype(np.float32) / 255.0) * (1 - weight)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each channel."""
    out = ndi.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def noise(image: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    """Additive Gaussian noise in 8-bit units."""
    out = image.astype(np.float32) + rng.normal(0, std, image.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def augment(crop: Crop, rng: np.random.Generator, config: AugmentConfig = AugmentConfig(), *,
            stain: str = "") -> Crop:
    """Apply the whole augmentation chain to one crop.

    Order: geometry, H&E → IHC transfer (H&E crops only), stain jitter,
    targeted nucleus HSV shift, brightness / contrast / gamma, blur, noise.

    Parameters
    ----------
    crop : Crop
        Image, labels or mask, and the valid-pixel map.
    rng : numpy.random.Generator
        The crop's own generator.
    config : AugmentConfig
    stain : str
        The sample's stain; the transfer applies to H&E only.

    Returns
    -------
    Crop
        New arrays; the input is not modified.
    """
    crop = geometric(crop, rng, rot90=config.rot90, flips=config.flips)
    image = crop.image
    needs_instances = config.p_stain_transfer > 0 or config.p_nuclei_hsv > 0
    labels = _instances(crop) if needs_instances else None
    if is_he(stain) and rng.random() < config.p_stain_transfer:
        background = config.background_dab if rng.random() < config.p_background_dab else 0.0
        rim = float(rng.uniform(*config.cytoplasm_dab)) if rng.random() < config.p_cytoplasm_dab else 0.0
        cytoplasmic = (float(rng.uniform(*config.cytoplasmic_stain)) if rng.random() < config.p_cytoplasmic_stain
                       else 0.0)
        extra = {}
        # Drawn only when enabled, so recipes without them keep their random stream.
        if config.p_granular_dab > 0 and rng.random() < config.p_granular_dab:
            extra = {"dab_granularity": float(rng.uniform(*config.granular_dab)),
                     "granule_sigma": float(rng.uniform(0.7, 2.0))}
        if config.p_faint_nuclei > 0 and rng.random() < config.p_faint_nuclei:
            extra["nuclear_contrast"] = float(rng.uniform(*config.nuclear_contrast))
        image = he_to_ihc(image, labels, rng, positive_fraction=config.positive_fraction,
                          hematoxylin_scale=config.hematoxylin_scale, background_dab=background,
                          cytoplasm_dab=rim, cytoplasm_width=int(rng.integers(2, 7)),
                          cytoplasmic_stain=cytoplasmic, stain_vector_spread=config.stain_vector_spread,
                          **extra)
    if rng.random() < config.p_stain_jitter:
        image = stain_jitter(image, rng, scale=config.stain_scale, shift=config.stain_shift)
    if rng.random() < config.p_nuclei_hsv:
        image = nuclei_hsv_shift(image, labels, rng, hue=config.nuclei_hue,
                                 saturation=config.nuclei_saturation, value=config.nuclei_value)
    if rng.random() < config.p_intensity:
        image = intensity_jitter(image, rng, brightness=config.brightness, contrast=config.contrast,
                                 gamma=config.gamma)
    if rng.random() < config.p_blur:
        image = blur(image, float(rng.uniform(*config.blur_sigma)))
    if rng.random() < config.p_noise:
        image = noise(image, rng, float(rng.uniform(*config.noise_std)))
    return Crop(image=image, labels=crop.labels, mask=crop.mask, valid=crop.valid)
