"""Stain presets and the scoring configuration.

A preset holds the three DAB optical-density thresholds that cut nuclei into
the intensity classes 0, 1+, 2+ and 3+ for one stain, and says how the image
score is read (ASCO/CAP for ER and PR, the Ki-67 index for Ki-67). The
thresholds apply to the mean DAB optical density of a nucleus (QuPath's
"Nucleus: DAB OD mean"); their derivation is documented in ``docs/scoring.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from napari_ihcseg.pixel_size import check_pixel_size_um
from napari_ihcseg.scoring.classifier import NucleusClassifier
from napari_ihcseg.stain import H_DAB, StainVectors

#: Value of :attr:`ScoringConfig.stain_vectors` that asks for per-image estimation.
ESTIMATE = "estimate"


@dataclass(frozen=True)
class StainPreset:
    """Defaults for one nuclear IHC stain.

    Parameters
    ----------
    name : str
        Short key (``"er"``, ``"pr"``, ``"ki67"``).
    title : str
        How reports name the stain.
    thresholds : tuple of float
        DAB OD cuts of the 1+, 2+ and 3+ classes (increasing).
    interpretation : str or None
        ``"asco_cap_2020"`` for ER/PR (negative / low positive / positive);
        ``None`` when the stain's report is the Ki-67 index instead.
    note : str
        Where the thresholds come from.
    """

    name: str
    title: str
    thresholds: tuple[float, float, float]
    interpretation: str | None
    note: str


#: The presets, keyed by :attr:`StainPreset.name`.
PRESETS: dict[str, StainPreset] = {
    "er": StainPreset(
        "er", "ER", (0.2, 0.4, 0.6), "asco_cap_2020",
        "QuPath positive cell detection defaults on Nucleus: DAB OD mean"),
    "pr": StainPreset(
        "pr", "PR", (0.2, 0.4, 0.6), "asco_cap_2020",
        "QuPath positive cell detection defaults on Nucleus: DAB OD mean"),
    "ki67": StainPreset(
        "ki67", "Ki-67", (0.15, 0.4, 0.6), None,
        "1+ cut chosen on the training cases of two Ki-67 sets, 17,354 nuclei matched to "
        "pathologists' points and polygons (smallest mean Ki-67 index error, each set weighing the "
        "same; benchmarks/calibrate_ki67_sets.py). 2+ and 3+ as QuPath (they do not change the index)"),
}

_ALIASES = {"ki-67": "ki67", "ki_67": "ki67", "mib1": "ki67", "mib-1": "ki67"}


def get_preset(stain: str) -> StainPreset:
    """Return the preset of ``stain`` (case-insensitive; ``"Ki-67"`` works).

    Raises
    ------
    ValueError
        If the stain is unknown; the message lists the known ones.
    """
    if not isinstance(stain, str):
        raise TypeError(f"stain must be a string such as 'ki67', got {type(stain).__name__}")
    key = stain.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in PRESETS:
        raise ValueError(f"unknown stain {stain!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[key]


def check_thresholds(thresholds) -> tuple[float, float, float]:
    """Validate three increasing, finite, non-negative DAB OD thresholds."""
    try:
        values = tuple(float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise TypeError(f"thresholds must be three numbers, got {thresholds!r}") from None
    if len(values) != 3:
        raise ValueError(f"thresholds must be three numbers (1+, 2+, 3+), got {len(values)}: {values}")
    if not all(math.isfinite(v) for v in values) or not (0 <= values[0] < values[1] < values[2]):
        raise ValueError(f"thresholds must be finite, non-negative and increasing, got {values}")
    return values  # type: ignore[return-value]


def _check_limit(name: str, value) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number or None, got {value}")
    return value


@dataclass(frozen=True)
class ScoringConfig:
    """Everything that decides a score, besides the image and the labels.

    Parameters
    ----------
    stain : str
        ``"er"``, ``"pr"`` or ``"ki67"``; chooses the default thresholds and
        the interpretation.
    thresholds : tuple of float, optional
        DAB OD cuts of 1+, 2+ and 3+. ``None`` takes the stain's preset.
    stain_vectors : StainVectors or "estimate"
        Colour-deconvolution vectors, or ``"estimate"`` to estimate them per
        image (:func:`napari_ihcseg.stain.estimate_stain_vectors`).
    min_area_px, max_area_px : float, optional
        Nucleus area limits in pixels (inclusive).
    min_area_um2, max_area_um2 : float, optional
        Nucleus area limits in µm² (inclusive); they need ``pixel_size_um``.
    pixel_size_um : float, optional
        Pixel side length in micrometres.
    min_cells : int
        Fewer counted cells draw a warning (default 500, the IKWG's advice).
    ki67_cutoff : float, optional
        A Ki-67 index cut-off in percent (e.g. 20); the summary calls the
        index "high" or "low" against it, and "uncertain" when the cut lies
        inside the 95 % interval.
    hotspot_diameter_um : float
        Diameter of the Ki-67 hot-spot circle when the pixel size is known
        (default 500 µm, a high-power field).
    hotspot_cells : int
        Without a pixel size, the hot spot is the ``hotspot_cells`` nearest
        cells of a point (default 500).
    hotspot_min_cells : int
        Fewest cells a hot-spot circle may hold (default 100).
    classifier : NucleusClassifier, optional
        A per-nucleus classifier calibrated for ``stain`` (usually the
        checkpoint's, see :mod:`napari_ihcseg.scoring.classifier`;
        :meth:`replace` drops it with a new stain). When given it decides which
        nuclei are positive (and which detections are left out); the
        thresholds then only grade positive nuclei 1+/2+/3+.

    Examples
    --------
    >>> cfg = ScoringConfig(stain="er")
    >>> cfg.thresholds
    (0.2, 0.4, 0.6)
    >>> cfg.replace(thresholds=(0.1, 0.3, 0.5)).thresholds
    (0.1, 0.3, 0.5)
    """

    stain: str = "ki67"
    thresholds: tuple[float, float, float] | None = None
    stain_vectors: StainVectors | str = field(default=H_DAB)
    min_area_px: float | None = None
    max_area_px: float | None = None
    min_area_um2: float | None = None
    max_area_um2: float | None = None
    pixel_size_um: float | None = None
    min_cells: int = 500
    ki67_cutoff: float | None = None
    hotspot_diameter_um: float = 500.0
    hotspot_cells: int = 500
    hotspot_min_cells: int = 100
    classifier: NucleusClassifier | None = None

    def __post_init__(self) -> None:
        preset = get_preset(self.stain)
        object.__setattr__(self, "stain", preset.name)
        thresholds = preset.thresholds if self.thresholds is None else self.thresholds
        object.__setattr__(self, "thresholds", check_thresholds(thresholds))
        if isinstance(self.stain_vectors, str):
            if self.stain_vectors.lower() != ESTIMATE:
                raise ValueError(f"stain_vectors must be StainVectors or {ESTIMATE!r}, "
                                 f"got {self.stain_vectors!r}")
            object.__setattr__(self, "stain_vectors", ESTIMATE)
        elif not isinstance(self.stain_vectors, StainVectors):
            raise TypeError(f"stain_vectors must be StainVectors or {ESTIMATE!r}, "
                            f"got {type(self.stain_vectors).__name__}")
        for name in ("min_area_px", "max_area_px", "min_area_um2", "max_area_um2"):
            object.__setattr__(self, name, _check_limit(name, getattr(self, name)))
        if self.pixel_size_um is not None:
            object.__setattr__(self, "pixel_size_um", check_pixel_size_um(self.pixel_size_um, "pixel_size_um"))
        elif self.min_area_um2 is not None or self.max_area_um2 is not None:
            raise ValueError("min_area_um2/max_area_um2 need pixel_size_um; "
                             "give the pixel size or use min_area_px/max_area_px")
        # A hot spot of one cell has no size (its circle's radius is 0): at least two.
        for name, least in (("min_cells", 1), ("hotspot_cells", 2), ("hotspot_min_cells", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.ki67_cutoff is not None:
            cut = float(self.ki67_cutoff)
            if not 0.0 < cut < 100.0:
                raise ValueError(f"ki67_cutoff must be a percentage between 0 and 100, got {self.ki67_cutoff}")
            object.__setattr__(self, "ki67_cutoff", cut)
        diameter = float(self.hotspot_diameter_um)
        if not (math.isfinite(diameter) and diameter > 0):
            raise ValueError(f"hotspot_diameter_um must be a positive number, got {self.hotspot_diameter_um}")
        object.__setattr__(self, "hotspot_diameter_um", diameter)
        if self.classifier is not None and not isinstance(self.classifier, NucleusClassifier):
            raise TypeError(f"classifier must be a NucleusClassifier or None, got {type(self.classifier).__name__}")
        for lo, hi in (("min_area_px", "max_area_px"), ("min_area_um2", "max_area_um2")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} ({a}) is larger than {hi} ({b})")

    @property
    def preset(self) -> StainPreset:
        """The stain's preset."""
        return PRESETS[self.stain]

    def area_limits_px(self) -> tuple[float, float]:
        """The inclusive area range in pixels implied by all four limits."""
        lo, hi = 0.0, math.inf
        if self.min_area_px is not None:
            lo = max(lo, self.min_area_px)
        if self.max_area_px is not None:
            hi = min(hi, self.max_area_px)
        if self.pixel_size_um is not None:
            # Inclusive as the pixel limits are: 10 um^2 at 0.1 um is 1000 px, not 999.9999999999998.
            px_area = self.pixel_size_um ** 2
            if self.min_area_um2 is not None:
                lo = max(lo, self.min_area_um2 / px_area * (1 - 1e-9))
            if self.max_area_um2 is not None:
                hi = min(hi, self.max_area_um2 / px_area * (1 + 1e-9))
        return lo, hi

    def hotspot_size(self) -> dict:
        """The hot-spot search: ``{"radius": pixels}`` with a pixel size, else ``{"n_cells": N}``."""
        if self.pixel_size_um is not None:
            return {"radius": self.hotspot_diameter_um / 2.0 / self.pixel_size_um}
        return {"n_cells": self.hotspot_cells}

    def resolve_stain_vectors(self, image) -> StainVectors:
        """The colour-deconvolution vectors to score ``image`` with.

        Parameters
        ----------
        image : (H, W, 3) array of uint8, or a callable returning one
            The image, or a function that reads it (say a slide's smallest
            pyramid level), called only when the vectors are estimated.

        Returns
        -------
        StainVectors
            ``stain_vectors`` as set, or, when it is ``"estimate"``, the
            vectors estimated from the image
            (:func:`napari_ihcseg.stain.estimate_stain_vectors`).

        Examples
        --------
        >>> import numpy as np
        >>> ScoringConfig().resolve_stain_vectors(np.full((4, 4, 3), 255, np.uint8)) == H_DAB
        True
        """
        if isinstance(self.stain_vectors, StainVectors):
            return self.stain_vectors
        from napari_ihcseg.stain import estimate_stain_vectors

        return estimate_stain_vectors(image() if callable(image) else image)

    def replace(self, **changes) -> ScoringConfig:
        """A copy with ``changes`` applied (validated again).

        Changing the stain without giving thresholds takes the new stain's
        preset thresholds. Changing it to another stain drops the classifier,
        which was calibrated for the old one (a checkpoint keeps one per
        stain), and setting thresholds drops it too (the user's cuts decide),
        unless ``classifier`` is given in the same call.

        Examples
        --------
        >>> from napari_ihcseg.scoring.classifier import LogisticModel, NucleusClassifier
        >>> ki67 = NucleusClassifier(LogisticModel(("dab_od_mean",), (0.1,), (0.01,), (1.0,), 0.0))
        >>> cfg = ScoringConfig(stain="ki67", classifier=ki67)
        >>> cfg.replace(stain="Ki-67").classifier is ki67, cfg.replace(stain="er").classifier
        (True, None)
        >>> cfg.replace(stain="er", classifier=ki67).classifier is ki67
        True
        """
        if "stain" in changes:
            if "thresholds" not in changes:
                changes["thresholds"] = None
            if get_preset(changes["stain"]).name != self.stain and "classifier" not in changes:
                changes["classifier"] = None
        if changes.get("thresholds") is not None and "classifier" not in changes:
            changes["classifier"] = None
        return replace(self, **changes)
