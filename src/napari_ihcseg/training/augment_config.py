"""The augmentation recipe: :class:`AugmentConfig`, its command-line overrides and its record in a run.

A run records its recipe (``run.json``) with :meth:`AugmentConfig.to_dict`;
:meth:`AugmentConfig.from_dict` reads it back, giving augmentations added
since (:data:`ADDED_LATER_OFF`) the values that turn them off, so a resumed run
keeps its recipe. :func:`with_overrides` applies ``FIELD=VALUE`` settings as
typed after ``ihcseg train --augment``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ADDED_LATER_OFF", "NO_AUGMENT", "AugmentConfig", "with_overrides"]


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

    Raises
    ------
    ValueError
        If a probability (a ``p_*`` field) is outside [0, 1], naming it.
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

    def __post_init__(self) -> None:
        from dataclasses import fields

        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_") and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                and 0 <= value <= 1):
                raise ValueError(f"AugmentConfig.{f.name} is a probability and must be in [0, 1], got {value!r}")

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
        For an unknown field, a value that does not parse or one out of range
        (a probability outside [0, 1]), naming both.

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
        try:
            config = replace(config, **{name: parsed})
        except ValueError as exc:
            raise ValueError(f"augment {item!r}: {str(exc).removeprefix('AugmentConfig.')}") from None
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
