"""Training augmentation in numpy, driven by one random generator per crop.

Geometry (90° rotations, flips; scale jitter happens when cropping, see
:mod:`napari_ihcseg.training.tiles`), heavy colour augmentation (jitter of
each stain's optical density after colour deconvolution, brightness,
contrast, gamma), targeted HSV shifts of stained nuclei only, blur and noise,
and **H&E → IHC stain transfer**: an H&E crop is deconvolved, its hematoxylin
optical density kept and its eosin dropped, DAB optical density is added
inside randomly chosen nuclei at intensities like the weak / moderate /
strong classes of IHC scoring, and the stains are mixed again by
Beer–Lambert's law. Nuclei outlined on H&E thereby teach the model brown and
blue IHC nuclei.

Every function takes the generator explicitly and returns new arrays, so a
crop's augmentation is reproducible from its seed (which is what makes
training resumable step for step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_ihcseg.stain import (DAB_RJ, EOSIN_RJ, H_DAB, HEMATOXYLIN_RJ, StainVectors, angle_deg, compose,
                               deconvolve)

from .tiles import Crop

#: Hematoxylin, eosin and DAB as one basis: deconvolution of either H&E or
#: H-DAB images into three stain channels (scikit-image's ``rgb2hed`` basis).
HED = StainVectors(hematoxylin=HEMATOXYLIN_RJ, dab=DAB_RJ, residual=EOSIN_RJ, name="H-DAB-E")
#: Hematoxylin and eosin, for taking an H&E crop apart (eosin in the second slot).
H_E = StainVectors(hematoxylin=HEMATOXYLIN_RJ, dab=EOSIN_RJ, name="H&E (Ruifrok-Johnston)")

#: DAB optical-density ranges of weak (1+), moderate (2+) and strong (3+)
#: nuclei, around the usual IHC scoring thresholds (0.2 / 0.4 / 0.6 OD).
DAB_CLASS_OD = ((0.18, 0.38), (0.38, 0.62), (0.62, 1.1))


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and strengths of each augmentation.

    Parameters
    ----------
    rot90, flips : bool
        Random multiples of 90° and horizontal / vertical flips.
    scale_range : (float, float)
        Scale jitter applied when cropping (1 = native pixel size).
    p_stain_jitter, stain_scale, stain_shift : float
        Probability of HED jitter and its strength: each stain's optical
        density becomes ``c * U(1 ± scale) + U(± shift)``.
    p_intensity, brightness, contrast, gamma : float
        Probability of brightness / contrast / gamma changes and their ranges.
    p_nuclei_hsv, nuclei_hue, nuclei_saturation, nuclei_value : float
        Targeted HSV shift applied only inside a random subset of nuclei.
    p_stain_transfer : float
        Probability that an H&E crop is turned into an H-DAB (IHC) crop.
    stain_vector_spread : (float, float)
        Standard deviation of the Gaussian perturbation of each component of
        the hematoxylin and the DAB colour vector in a transfer (counterstain,
        chromogen and scanner variation). At the default 0.06 the hematoxylin
        hue strays about 4° from Ruifrok and Johnston's (median); at 0.15
        about 10°, reaching the cyan of Mayer's-type counterstains (off by
        default: it did not help on our Ki-67 fields, ``docs/models.md``).
    positive_fraction : (float, float)
        Range of the fraction of nuclei made DAB-positive in a transfer.
    hematoxylin_scale : (float, float)
        Range (sampled log-uniformly) of the factor on the hematoxylin optical
        density in a transfer. IHC counterstain is often far paler than H&E
        hematoxylin: down to about a fifth on the Ki-67 fields we validate on.
    p_background_dab, background_dab : float
        Probability and largest optical density of a smooth brown haze over
        the whole crop in a transfer (non-specific DAB in stroma).
    p_cytoplasm_dab, cytoplasm_dab : float, (float, float)
        Probability of a brown rim (cytoplasm) around positive nuclei in a
        transfer, and its optical density relative to the nucleus.
    p_cytoplasmic_stain, cytoplasmic_stain : float, (float, float)
        Probability of a cytoplasmic or membranous marker in a transfer: the
        cytoplasm around *every* nucleus, positive or not, turns brown with an
        optical density in this range, so blue nuclei sit in brown cells.
    p_granular_dab, granular_dab : float, (float, float)
        Probability that the DAB of positive nuclei is granular in a transfer
        (clumps and pale holes, as Ki-67 often looks), and the range of the
        granularity: the standard deviation of the log of the DAB texture.
        The clumps are 0.7-2 px across (Gaussian sigma, drawn per crop).
        A positive nucleus then stays one nucleus however mottled it is.
    p_faint_nuclei, nuclear_contrast : float, (float, float)
        Probability that nuclei barely stand out from their surroundings in a
        transfer, and the range of the factor on each nucleus's hematoxylin
        above the local cytoplasm level. Under a pale IHC counterstain nuclei
        can be only about 1.5 times as dark as the cytoplasm in hematoxylin,
        against 2-5 times in H&E. Off by default: it did not help on our Ki-67
        fields (``docs/models.md``).
    p_blur, blur_sigma : float, (float, float)
        Gaussian blur probability and sigma range in pixels.
    p_noise, noise_std : float, (float, float)
        Gaussian noise probability and standard-deviation range (8-bit units).
    """

    rot90: bool = True
    flips: bool = True
    scale_range: tuple[float, float] = (0.8, 1.25)
    p_stain_jitter: float = 0.8
    stain_scale: float = 0.15
    stain_shift: float = 0.03
    p_intensity: float = 0.7
    brightness: float = 0.08
    contrast: float = 0.2
    gamma: float = 0.25
    p_nuclei_hsv: float = 0.3
    nuclei_hue: float = 0.06
    nuclei_saturation: float = 0.3
    nuclei_value: float = 0.15
    p_stain_transfer: float = 0.5
    stain_vector_spread: tuple[float, float] = (0.06, 0.06)
    positive_fraction: tuple[float, float] = (0.0, 0.8)
    hematoxylin_scale: tuple[float, float] = (0.15, 1.1)
    p_background_dab: float = 0.4
    background_dab: float = 0.2
    p_cytoplasm_dab: float = 0.3
    cytoplasm_dab: tuple[float, float] = (0.15, 0.5)
    p_cytoplasmic_stain: float = 0.15
    cytoplasmic_stain: tuple[float, float] = (0.25, 0.9)
    p_granular_dab: float = 0.5
    granular_dab: tuple[float, float] = (0.3, 0.9)
    p_faint_nuclei: float = 0.0
    nuclear_contrast: tuple[float, float] = (0.2, 0.7)
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.4, 1.4)
    p_noise: float = 0.3
    noise_std: tuple[float, float] = (2.0, 8.0)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        """Rebuild from :meth:`to_dict` output (e.g. a ``run.json``).

        A field missing from ``data`` was recorded before that augmentation
        existed, so it takes the value that turns it off
        (:data:`ADDED_LATER_OFF`) rather than today's default: the config then
        describes what the old run did, and resuming it keeps its recipe.

        Examples
        --------
        >>> AugmentConfig.from_dict({"p_blur": 0.5}).p_granular_dab
        0.0
        >>> AugmentConfig.from_dict(AugmentConfig().to_dict()) == AugmentConfig()
        True
        """
        values = {**ADDED_LATER_OFF, **data}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def with_overrides(config: AugmentConfig, overrides: Sequence[str]) -> AugmentConfig:
    """``config`` with ``FIELD=VALUE`` overrides, as typed on a command line.

    Booleans take ``true``/``false`` (or ``1``/``0``, ``yes``/``no``), ranges
    two comma-separated numbers.

    Raises
    ------
    ValueError
        For an unknown field or a value that does not parse, naming both.

    Examples
    --------
    >>> cfg = with_overrides(AugmentConfig(), ["p_granular_dab=0", "blur_sigma=0.4,2.2", "flips=false"])
    >>> cfg.p_granular_dab, cfg.blur_sigma, cfg.flips
    (0.0, (0.4, 2.2), False)
    """
    from dataclasses import fields, replace

    known = {f.name for f in fields(AugmentConfig)}
    for item in overrides:
        name, _, value = str(item).partition("=")
        name, value = name.strip(), value.strip()
        if name not in known or not value:
            raise ValueError(f"augment {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(sorted(known))}")
        current = getattr(config, name)
        try:
            if isinstance(current, bool):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                parsed = value.lower() in ("1", "true", "yes")
            elif isinstance(current, tuple):
                parsed = tuple(float(v) for v in value.split(","))
                if len(parsed) != len(current):
                    raise ValueError(value)
            else:
                parsed = type(current)(value)
        except ValueError:
            kind = ("true or false" if isinstance(current, bool) else
                    f"{len(current)} comma-separated numbers" if isinstance(current, tuple) else "a number")
            raise ValueError(f"augment {item!r}: {name} takes {kind}") from None
        config = replace(config, **{name: parsed})
    return config


#: Augmentations added after runs were first recorded, with the values that
#: turn them off (or, for a setting, the value runs used before it existed);
#: :meth:`AugmentConfig.from_dict` reads a run recorded without them this way.
ADDED_LATER_OFF: dict[str, float | tuple[float, float]] = {
    "p_cytoplasmic_stain": 0.0, "p_granular_dab": 0.0, "p_faint_nuclei": 0.0, "stain_vector_spread": (0.06, 0.06)}


#: No augmentation at all (validation, or tests of the other parts).
NO_AUGMENT = AugmentConfig(rot90=False, flips=False, scale_range=(1.0, 1.0), p_stain_jitter=0.0,
                           p_intensity=0.0, p_nuclei_hsv=0.0, p_stain_transfer=0.0, p_blur=0.0,
                           p_noise=0.0)


def is_he(stain: str) -> bool:
    """True for stain names meaning hematoxylin and eosin (``"H&E"``, ``"he"``)."""
    return stain.replace("&", "").replace(" ", "").replace("-", "").lower() in {"he", "hematoxylineosin"}


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


def _pick(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean table over label ids: which nuclei are chosen."""
    n = int(labels.max()) if labels.size else 0
    table = rng.random(n + 1) < fraction
    table[0] = False
    return table


def nuclei_hsv_shift(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, hue: float = 0.06,
                     saturation: float = 0.3, value: float = 0.15) -> np.ndarray:
    """Shift hue, saturation and value inside a random subset of nuclei only.

    The targeted augmentation of stained nuclei (the colour of the nuclei
    changes, the background does not) that makes a model invariant to stain
    and scanner.
    """
    from skimage.color import hsv2rgb, rgb2hsv

    chosen = _pick(labels, rng.uniform(0.3, 1.0), rng)[labels]
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
    positive = _pick(labels, rng.uniform(*positive_fraction), rng)
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
