"""What the pipeline runs on each image: an inference config, a scoring config and the outputs.

:class:`PipelineOptions` holds an
:class:`~napari_ihcseg.inference.InferenceConfig` and a
:class:`~napari_ihcseg.scoring.ScoringConfig` (or ``None`` to segment only)
and adds what only the pipeline knows: the model, the choice of scale per
image, the region, the pixel size and the outputs to write. Each option is
checked once, by the config that owns it.

The options are recorded in each image's summary (:func:`option_record`), so
that a later run can tell whether the outputs were made with the same ones;
summaries written before the configs were composed recorded a flat list of
fields, which :func:`upgrade_record` reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari_ihcseg.inference.config import InferenceConfig
from napari_ihcseg.pixel_size import check_pixel_size_um

if TYPE_CHECKING:
    from napari_ihcseg.scoring import ScoringConfig


def _check_scoring(scoring: Any) -> None:
    from napari_ihcseg.scoring import ScoringConfig

    if not isinstance(scoring, ScoringConfig):
        raise TypeError(f"scoring must be a ScoringConfig or None, got {type(scoring).__name__}")
    if scoring.pixel_size_um is not None:
        raise ValueError("set the pixel size as PipelineOptions.pixel_size_um, not in the scoring config "
                         "(each image's own is used otherwise)")
    if scoring.classifier is not None:
        raise ValueError("the classifier comes from the model's checkpoint (PipelineOptions.model_classifier), "
                         "not from the scoring config")


@dataclass(frozen=True)
class PipelineOptions:
    """What to run on each image and what to write.

    Parameters
    ----------
    model : str or None
        A shipped checkpoint name, a checkpoint folder or an architecture;
        ``None`` takes the best shipped checkpoint for the device.
    inference : InferenceConfig
        Tiling, device, thresholds, sizes, ``scale`` and ``tta``
        (:class:`~napari_ihcseg.inference.InferenceConfig`; its defaults
        otherwise). ``tile`` and ``overlap`` bound the tiles, which are
        fitted to each image; thresholds and ``min_size`` left at ``None``
        are the model's tuned ones. ``scale`` is used only with
        ``auto_scale=False``.
    auto_scale : bool
        Choose the scale per image (the default): from the file's pixel size
        or from a first pass that measures the nuclei
        (:func:`~napari_ihcseg.inference.autoscale.estimate_scale`); whole
        slides stay at 1. ``False`` runs every image at ``inference.scale``;
        a ``scale`` other than 1 with ``auto_scale`` on is an error.
    scoring : ScoringConfig or None
        Score the nuclei for a stain (:class:`~napari_ihcseg.scoring.ScoringConfig`:
        stain, thresholds, stain vectors, area limits, confidence and hot
        spot); ``None`` only segments. Its pixel size is each image's (see
        ``pixel_size_um``) and its classifier the model's (see
        ``model_classifier``), so neither may be set in it.
    model_classifier : bool
        Classify the nuclei with the classifier the model's checkpoint
        calibrated for the stain, when it has one (the thresholds then only
        grade the positive nuclei); ``False`` classifies by the thresholds.
    roi : str or None
        A GeoJSON file of regions; only nuclei inside count.
    pixel_size_um : float or None
        Overrides the pixel size recorded in the file.
    save_probabilities : bool
        Also write the mask and contour probabilities.
    overlay : bool
        Also write the QC overlay picture.
    block : int, optional
        Block core size for whole slides (default: fitted to the tile plan,
        :func:`~napari_ihcseg.inference.planning.fit_block`); a whole slide
        with a scale other than 1 is an error.

    Examples
    --------
    >>> from napari_ihcseg.inference import InferenceConfig
    >>> from napari_ihcseg.scoring import ScoringConfig
    >>> opts = PipelineOptions(inference=InferenceConfig(tile=256, tta=True), scoring=ScoringConfig(stain="ki67"))
    >>> opts.stain, opts.inference.tile, opts.expected_outputs()
    ('ki67', 256, ['labels', 'cells', 'geojson', 'summary'])
    >>> PipelineOptions(inference=InferenceConfig(scale=2.0), auto_scale=False).inference.scale
    2.0
    """

    model: str | None = None
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    auto_scale: bool = True
    scoring: ScoringConfig | None = None
    model_classifier: bool = True
    roi: str | None = None
    pixel_size_um: float | None = None
    save_probabilities: bool = False
    overlay: bool = False
    block: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.inference, InferenceConfig):
            raise TypeError(f"inference must be an InferenceConfig, got {type(self.inference).__name__}")
        for name in ("auto_scale", "model_classifier", "save_probabilities", "overlay"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.auto_scale and self.inference.scale != 1.0:
            raise ValueError(f"scale {self.inference.scale:g} is set but auto_scale chooses the scale per image; "
                             "pass auto_scale=False to run at the scale set")
        if self.scoring is not None:
            _check_scoring(self.scoring)
        if self.pixel_size_um is not None:
            check_pixel_size_um(self.pixel_size_um, "pixel size")
        if self.block is not None and (isinstance(self.block, bool) or not isinstance(self.block, int)
                                       or self.block < 1):
            raise ValueError(f"block must be a positive int, got {self.block!r}")

    @property
    def stain(self) -> str | None:
        """The stain scored (``scoring.stain``), or ``None`` when only segmenting."""
        return None if self.scoring is None else self.scoring.stain

    def replace(self, **changes: Any) -> PipelineOptions:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)

    def at_scale(self, scale: float) -> PipelineOptions:
        """These options with the scale an image resolved to, no longer chosen per image."""
        return self.replace(inference=self.inference.replace(scale=scale), auto_scale=False)

    def expected_outputs(self, *, large: bool = False) -> list[str]:
        """Keys of :data:`~napari_ihcseg.pipeline.OUTPUT_SUFFIXES` this configuration writes."""
        keys = ["labels", "cells"]
        if self.scoring is not None:
            keys.append("geojson")
        if self.overlay:
            keys.append("overlay")
        if self.save_probabilities and not large:
            keys += ["mask_prob", "contour_prob"]
        return keys + ["summary"]

    def scoring_for(self, pixel_size_um: float | None, model=None) -> ScoringConfig | None:
        """The scoring config of one image, or ``None`` without a stain.

        It takes the image's pixel size and, with ``model_classifier``, the
        classifier ``model``'s checkpoint calibrated for the stain, when it
        has one.
        """
        if self.scoring is None:
            return None
        changes: dict[str, Any] = {"pixel_size_um": pixel_size_um}
        info = getattr(model, "checkpoint_info", None)
        if self.model_classifier and info is not None:
            changes["classifier"] = info.classifier(self.scoring.stain)
        return self.scoring.replace(**changes)


def _scoring_record(scoring: ScoringConfig | None) -> dict | None:
    from napari_ihcseg.scoring import ESTIMATE

    if scoring is None:
        return None
    record = {f.name: getattr(scoring, f.name) for f in dataclasses.fields(scoring)
              if f.name not in ("classifier", "pixel_size_um")}
    record["thresholds"] = list(scoring.thresholds)
    vectors = scoring.stain_vectors
    record["stain_vectors"] = ESTIMATE if vectors == ESTIMATE else vectors.to_dict()
    return record


def option_record(options: PipelineOptions) -> dict:
    """The options as recorded in a summary (the model is recorded on its own).

    Examples
    --------
    >>> record = option_record(PipelineOptions(overlay=True))
    >>> record["inference"]["tile"] == PipelineOptions().inference.tile, record["scoring"], record["overlay"]
    (True, None, True)
    """
    return {
        "inference": options.inference.to_dict(),
        "auto_scale": options.auto_scale,
        "scoring": _scoring_record(options.scoring),
        "model_classifier": options.model_classifier,
        "roi": options.roi,
        "pixel_size_um": options.pixel_size_um,
        "save_probabilities": options.save_probabilities,
        "overlay": options.overlay,
        "block": options.block,
    }


#: Fields of the flat option record (summaries written before the configs were composed).
_FLAT_INFERENCE = ("device", "tile", "overlap", "mask_threshold", "contour_threshold", "min_size", "tta")
_FLAT_SCORING = ("min_cells", "ki67_cutoff", "hotspot_diameter_um", "hotspot_cells")
_FLAT_OTHER = ("roi", "pixel_size_um", "save_probabilities", "overlay", "block")
#: The block size the flat records' runs used by default; it reads as today's default (fitted) block.
_FLAT_DEFAULT_BLOCK = 4096


def upgrade_record(recorded: dict) -> dict | None:
    """A summary's option record in the form of :func:`option_record`; ``None`` if it cannot be read.

    Records from before the configs were composed list the fields flat
    (``tile``, ``stain``, ``thresholds``, ``estimate_stains``, ...); fields
    they lack were at their defaults then (e.g. ``scale`` 1, no ``tta``),
    and thresholds left unset meant the stain's preset and the model's
    classifier.
    """
    if not isinstance(recorded, dict):
        return None
    if "inference" in recorded:
        return recorded
    from napari_ihcseg.inference.autoscale import is_auto
    from napari_ihcseg.scoring import ESTIMATE, ScoringConfig

    try:
        scale = recorded.get("scale", 1.0)
        inference = InferenceConfig().replace(
            **{k: recorded[k] for k in _FLAT_INFERENCE if k in recorded},
            scale=1.0 if is_auto(scale) else scale)
        scoring = None
        thresholds = recorded.get("thresholds")
        if recorded.get("stain"):
            scoring = ScoringConfig(
                stain=recorded["stain"], thresholds=None if thresholds is None else tuple(thresholds),
                stain_vectors=ESTIMATE if recorded.get("estimate_stains") else ScoringConfig().stain_vectors,
                **{k: recorded[k] for k in _FLAT_SCORING if k in recorded})
        options = PipelineOptions(inference=inference, auto_scale=is_auto(scale), scoring=scoring,
                                  model_classifier=thresholds is None,
                                  **{k: recorded[k] for k in _FLAT_OTHER
                                     if k in recorded and not (k == "block" and recorded[k] == _FLAT_DEFAULT_BLOCK)})
    except (TypeError, ValueError, KeyError):
        return None
    return option_record(options)


__all__ = ["PipelineOptions", "option_record", "upgrade_record"]
