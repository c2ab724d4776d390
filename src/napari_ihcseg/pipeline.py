"""One image file in, labels, tables and the QC overlay out.

:func:`process_image` is the whole headless pipeline for one file: open it,
segment its nuclei (in memory for fields, block by block for whole slides),
optionally score them, and write

- ``<stem>.labels.tif``: uint32 instances, same height and width as the image;
- ``<stem>.cells.csv``: one row per nucleus (``label``, ``centroid_y``,
  ``centroid_x``, ``area_px``, plus the scoring columns with a stain);
- ``<stem>.nuclei.geojson``: QuPath detections (with a stain);
- ``<stem>.overlay.png``: outlines coloured by class with a legend (optional);
- ``<stem>.mask_prob.tif`` / ``<stem>.contour_prob.tif`` (optional);
- ``<stem>.summary.json``: written last, listing every output, so that its
  presence marks a finished image (the batch runner's resume relies on it).

The files are written into a staging folder and replace the image's old
outputs as one unit (:class:`~napari_ihcseg.output_set.OutputSet`): a failed
run leaves the old set, never a mix. The same function runs in the CLI, in the
Dask batch runner and in ``python -m napari_ihcseg --headless``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from napari_ihcseg import __version__
from napari_ihcseg._atomic import atomic_path, write_json_atomic
from napari_ihcseg.inference.planning import DEFAULT_OVERLAP, DEFAULT_TILE
from napari_ihcseg.io.names import image_stem

log = logging.getLogger(__name__)

#: Images with more pixels than this are segmented block by block from disk.
LARGE_IMAGE_PIXELS = 64 * 2**20
#: Architecture used when no checkpoint is shipped (random weights; warned).
FALLBACK_ARCH = "harunet-lite"
#: File-name endings of the outputs, by key.
OUTPUT_SUFFIXES = {
    "labels": ".labels.tif",
    "cells": ".cells.csv",
    "geojson": ".nuclei.geojson",
    "overlay": ".overlay.png",
    "mask_prob": ".mask_prob.tif",
    "contour_prob": ".contour_prob.tif",
    "summary": ".summary.json",
}

ProgressCallback = Callable[[int, int], None]
#: The confidence and hot-spot options at their defaults (older summaries lack them).
_CONFIDENCE_DEFAULTS = {"min_cells": 500, "ki67_cutoff": None, "hotspot_diameter_um": 500.0, "hotspot_cells": 500}


def output_paths(out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Every output path of one image, by key (see :data:`OUTPUT_SUFFIXES`)."""
    out_dir = Path(out_dir)
    return {key: out_dir / f"{stem}{suffix}" for key, suffix in OUTPUT_SUFFIXES.items()}


@dataclass(frozen=True)
class PipelineOptions:
    """What to run on each image and what to write.

    Parameters
    ----------
    model : str or None
        A shipped checkpoint name, a checkpoint folder or an architecture;
        ``None`` takes the best shipped checkpoint for the device.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.
    tile, overlap : int
        The largest tile side and the least overlap; the tiles are fitted
        to each image (:func:`~napari_ihcseg.inference.planning.plan_tiles`).
    mask_threshold, contour_threshold : float or None
        Thresholds of the instance step; ``None``: tuned for the model, else
        0.5 (the summary records the values used under ``instances``).
    min_size : int or None
        Smallest nucleus kept, in the image's pixels; ``None``: tuned for the
        model, else 16, in the pixels the model sees (divided by
        ``scale ** 2``; see :meth:`InferenceConfig.instance_options
        <napari_ihcseg.inference.InferenceConfig.instance_options>`).
    stain : {"er", "pr", "ki67"} or None
        Score the nuclei for this stain; ``None`` only segments.
    thresholds : (float, float, float) or None
        DAB OD cuts of 1+, 2+, 3+; ``None`` takes the stain's preset.
    roi : str or None
        A GeoJSON file of regions; only nuclei inside count.
    pixel_size_um : float or None
        Overrides the pixel size recorded in the file.
    estimate_stains : bool
        Estimate the stain vectors per image instead of the standard ones.
    save_probabilities : bool
        Also write the mask and contour probabilities.
    overlay : bool
        Also write the QC overlay picture.
    block : int
        Block size for whole slides.
    scale : float or "auto"
        Factor applied to the image before the network, 0.25 to 8: 2.0 for
        images at half the magnification the model was trained at. Images
        segmented in memory only; a whole slide with ``scale != 1`` is an
        error. ``"auto"`` (the default) takes it from the file's pixel size
        or from a first pass that measures the nuclei
        (:func:`~napari_ihcseg.inference.autoscale.estimate_scale`); whole
        slides then stay at 1.
    tta : bool
        Test-time augmentation: average each tile's prediction with those of
        its three flips (four times the compute).
    min_cells, ki67_cutoff, hotspot_diameter_um, hotspot_cells : optional
        The confidence and hot-spot settings of
        :class:`~napari_ihcseg.scoring.ScoringConfig` (same defaults).
    """

    model: str | None = None
    device: str = "auto"
    tile: int = DEFAULT_TILE
    overlap: int = DEFAULT_OVERLAP
    mask_threshold: float | None = None
    contour_threshold: float | None = None
    min_size: int | None = None
    stain: str | None = None
    thresholds: tuple[float, float, float] | None = None
    roi: str | None = None
    pixel_size_um: float | None = None
    estimate_stains: bool = False
    save_probabilities: bool = False
    overlay: bool = False
    block: int = 4096
    scale: float | str = "auto"
    tta: bool = False
    min_cells: int = 500
    ki67_cutoff: float | None = None
    hotspot_diameter_um: float = 500.0
    hotspot_cells: int = 500

    def __post_init__(self) -> None:
        from napari_ihcseg.inference.autoscale import AUTO, is_auto
        from napari_ihcseg.inference.config import check_scale, check_tta

        object.__setattr__(self, "scale", AUTO if is_auto(self.scale) else check_scale(self.scale))
        object.__setattr__(self, "tta", check_tta(self.tta))
        if self.pixel_size_um is not None and not (
                isinstance(self.pixel_size_um, (int, float)) and np.isfinite(self.pixel_size_um)
                and self.pixel_size_um > 0):
            raise ValueError(f"pixel size must be a positive number of micrometres, got {self.pixel_size_um!r}")
        self.inference_config()  # tile, overlap, thresholds and sizes are checked now, not per image

    def expected_outputs(self, *, large: bool = False) -> list[str]:
        """Keys of :data:`OUTPUT_SUFFIXES` this configuration writes."""
        keys = ["labels", "cells"]
        if self.stain:
            keys.append("geojson")
        if self.overlay:
            keys.append("overlay")
        if self.save_probabilities and not large:
            keys += ["mask_prob", "contour_prob"]
        return keys + ["summary"]

    def inference_config(self, scale: float | None = None):
        """The :class:`~napari_ihcseg.inference.InferenceConfig` of these options.

        ``scale`` replaces an ``"auto"`` scale once it is resolved (1 if not given).
        """
        from napari_ihcseg.inference import InferenceConfig
        from napari_ihcseg.inference.autoscale import is_auto

        if scale is None:
            scale = 1.0 if is_auto(self.scale) else self.scale
        return InferenceConfig(tile=self.tile, overlap=self.overlap, device=self.device,
                               mask_threshold=self.mask_threshold, contour_threshold=self.contour_threshold,
                               min_size=self.min_size, scale=scale, tta=self.tta)

    def scoring_config(self, pixel_size_um: float | None, model=None):
        """The :class:`~napari_ihcseg.scoring.ScoringConfig`, or ``None`` without a stain.

        Unless thresholds are set, the nuclei are classified by the classifier
        ``model``'s checkpoint calibrated for the stain, when it has one.
        """
        if not self.stain:
            return None
        from napari_ihcseg.scoring import ESTIMATE, ScoringConfig

        kwargs = {"stain": self.stain, "thresholds": self.thresholds, "pixel_size_um": pixel_size_um,
                  "min_cells": self.min_cells, "ki67_cutoff": self.ki67_cutoff,
                  "hotspot_diameter_um": self.hotspot_diameter_um, "hotspot_cells": self.hotspot_cells}
        info = getattr(model, "checkpoint_info", None)
        if self.thresholds is None and info is not None:
            kwargs["classifier"] = info.classifier(self.stain)
        if self.estimate_stains:
            kwargs["stain_vectors"] = ESTIMATE
        return ScoringConfig(**kwargs)


def outputs_complete(out_dir: str | Path, stem: str, options: PipelineOptions | None = None) -> bool:
    """True when a finished summary and every output it lists exist.

    The summary is written last, so a killed run never looks finished; a set
    whose replacement was killed half-way is first restored to the old one
    (:func:`~napari_ihcseg.output_set.recover`). With ``options``, the
    summary must also have been made with the same outputs requested (e.g. a
    run without ``--overlay`` does not satisfy one with it) and by the same
    model: the same weights (sha256), so a checkpoint retrained in place
    makes the old outputs stale.
    """
    from napari_ihcseg.output_set import recover

    recover(out_dir, stem, OUTPUT_SUFFIXES.values())
    paths = output_paths(out_dir, stem)
    try:
        summary = json.loads(paths["summary"].read_text())
    except (OSError, ValueError):
        return False
    listed = summary.get("outputs")
    if not isinstance(listed, dict) or summary.get("status") != "ok":
        return False
    if options is not None:
        wanted = set(options.expected_outputs(large=bool(summary.get("large")))) - {"summary"}
        if not wanted <= set(listed):
            return False
        if (options.stain or None) != (summary.get("stain") or None):
            return False
        # Any option that changes the result (tiling, thresholds, scale,
        # region, ...) or another model makes the old outputs stale.
        recorded = summary.get("options")
        if isinstance(recorded, dict):
            # Summaries written before the scale, tta and confidence options
            # were made with their defaults.
            recorded = {"scale": 1.0, "tta": False, **_CONFIDENCE_DEFAULTS, **recorded}
        if recorded != _jsonable(_option_record(options)):
            return False
        model = summary.get("model") if isinstance(summary.get("model"), dict) else {}
        if options.model is not None and str(options.model) != model.get("name"):
            return False
        if _current_sha256(options.model if options.model is not None else model.get("name")) \
                != model.get("sha256"):
            return False
        # The same options give other nuclei once the checkpoint's tuned settings change.
        used = summary.get("scale")
        expected = _expected_instances(options, summary.get("model", {}).get("name"),
                                       used.get("scale") if isinstance(used, dict) else None)
        if expected is not None and summary.get("instances") != _jsonable(expected):
            return False
    return all((Path(out_dir) / name).is_file() for name in listed.values())


def _expected_instances(options: PipelineOptions, model_name: str | None,
                        used_scale: float | None = None) -> dict | None:
    """The instance settings a run with ``options`` would use now (``None``: unknown).

    With an ``"auto"`` scale, ``min_size`` depends on the scale the image
    resolved to, ``used_scale`` (recorded in its summary).
    """
    from napari_ihcseg.inference.autoscale import is_auto
    from napari_ihcseg.models import recommended_instance_params

    scale = None
    if is_auto(options.scale):
        if not isinstance(used_scale, (int, float)) or isinstance(used_scale, bool):
            return None
        scale = float(used_scale)

    try:
        tuned = recommended_instance_params(options.model if options.model is not None else model_name)
    except (TypeError, ValueError):
        return None
    return options.inference_config(scale).instance_options_for(tuned)


def _current_sha256(spec) -> str | None:
    """The sha256 a checkpoint's ``config.json`` records now (``None``: an architecture or unknown)."""
    from napari_ihcseg.models import checkpoint_sha256

    try:
        return checkpoint_sha256(spec)
    except (TypeError, ValueError):
        return None


def resolve_model(spec: str | None, device: str = "auto"):
    """Load the model for ``spec`` (``None``: the best shipped checkpoint).

    Returns
    -------
    model : torch.nn.Module
        In eval mode on the device.
    name : str
        What was loaded: the checkpoint name or folder, or the architecture.
    """
    from napari_ihcseg.models import default_checkpoint_name, load_model

    if spec is None:
        spec = default_checkpoint_name(device)
        if spec is None:
            warnings.warn(
                f"no trained checkpoint is shipped; using an untrained {FALLBACK_ARCH} "
                "(its nuclei are meaningless until it is trained)", UserWarning, stacklevel=2)
            spec = FALLBACK_ARCH
    with warnings.catch_warnings():
        # load_model warns for an architecture name; the fallback already did.
        if spec == FALLBACK_ARCH:
            warnings.simplefilter("ignore", UserWarning)
        model = load_model(spec, device=device)
    return model, str(spec)


def _model_record(model, name: str) -> dict:
    info = getattr(model, "checkpoint_info", None)
    record = {"name": name, "arch": getattr(model, "arch", type(model).__name__)}
    if info is not None:
        record["sha256"] = getattr(info, "sha256", None)
    return record


def _write_float_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(array, np.float32), compression="zlib", photometric="minisblack")


def _write_unscored_cells(path: Path, cells) -> None:
    """The four geometric columns of every nucleus, when no stain is scored."""
    from napari_ihcseg._csv import write_table_csv

    write_table_csv(path, cells[["label", "centroid_y", "centroid_x", "area_px"]], float_format="%.3f")


def _cells_without_stain(labels: np.ndarray):
    from napari_ihcseg.scoring import measure_nuclei

    # Intensity columns need an image; these four do not.
    cells = measure_nuclei(np.zeros(labels.shape + (3,), np.uint8), labels)
    return cells[["label", "centroid_y", "centroid_x", "area_px"]]


def process_image(
    path: str | Path,
    out_dir: str | Path,
    options: PipelineOptions | None = None,
    *,
    model=None,
    model_name: str | None = None,
    progress: ProgressCallback | None = None,
    cancel=None,
) -> dict:
    """Segment (and optionally score) one image file and write its outputs.

    Parameters
    ----------
    path : path-like
        The image: PNG, JPEG, TIFF, OME-TIFF, SVS or any pyramidal TIFF.
    out_dir : path-like
        The output folder (created if needed).
    options : PipelineOptions, optional
        What to run and write.
    model : torch.nn.Module, optional
        An already loaded model (batch workers and the CLI load it once);
        default: :func:`resolve_model` of ``options.model``.
    model_name : str, optional
        The name recorded for ``model``.
    progress : callable, optional
        ``progress(done, total)``.
    cancel : threading.Event or callable, optional
        Stops the run between batches (raises ``Cancelled``).

    Returns
    -------
    dict
        The summary that was written to ``<stem>.summary.json``.

    Raises
    ------
    napari_ihcseg.io.ImageReadError
        When the file cannot be read.
    ValueError
        For a whole slide with ``options.scale != 1``.
    """
    from napari_ihcseg.output_set import OutputSet

    options = options or PipelineOptions()
    # Written into a staging folder, the new outputs replace the old ones only once all are there.
    with OutputSet(out_dir, image_stem(path), OUTPUT_SUFFIXES) as paths:
        return _process_into(paths, Path(path), options, model, model_name, progress, cancel)


def _process_into(paths: dict[str, Path], path: Path, options: PipelineOptions, model, model_name,
                  progress, cancel) -> dict:
    """:func:`process_image` writing its outputs to ``paths``."""
    from napari_ihcseg.io import ImageWarning, open_image

    started = time.perf_counter()
    # What the reader warns about (a blank image, another series) goes into the summary too.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImageWarning)
        lazy = open_image(path)
    for w in caught:
        warnings.warn(w.message, stacklevel=3)
    notes = [str(w.message) for w in caught if issubclass(w.category, ImageWarning)]

    with lazy:
        h, w, _ = lazy.shape
        pixel_size = options.pixel_size_um or lazy.pixel_size_um
        large = h * w > LARGE_IMAGE_PIXELS
        if model is None:
            model, model_name = resolve_model(options.model, options.device)
        options, scale = _resolve_scale(lazy, model, options, pixel_size, large)
        if large and options.scale != 1.0:
            raise ValueError(f"scale {options.scale:g} is supported for images segmented in memory only, "
                             f"not for whole slides ({h}×{w} pixels); use scale 1")
        scoring = options.scoring_config(pixel_size, model)
        if large:
            result = _process_large(lazy, model, paths, options, scoring, progress, cancel)
        else:
            result = _process_field(lazy, model, paths, options, scoring, progress, cancel)

    from napari_ihcseg.device import resolve_device

    summary = {
        "image": str(path),
        "height": int(h),
        "width": int(w),
        "pixel_size_um": pixel_size,
        "n_nuclei": int(result["n_nuclei"]),
        "n_nuclei_segmented": int(result["n_nuclei"]),
    }
    # With a stain, n_nuclei is the scoring's count (inside the region and
    # the size limits); n_nuclei_segmented stays the number of labels.
    summary.update(result.get("scores", {}))
    summary.update({
        "model": _model_record(model, model_name or getattr(model, "arch", "model")),
        "device": str(result.get("device") or resolve_device(options.device)),
        "seconds": round(time.perf_counter() - started, 3),
        "large": large,
        "options": _option_record(scale["options"]),
        "scale": {k: v for k, v in scale.items() if k != "options"},
        "instances": options.inference_config().instance_options(model),
        "version": __version__,
        "status": "ok",
        "outputs": {k: paths[k].name for k in options.expected_outputs(large=large) if k != "summary"},
        "warnings": notes,
    })
    write_json_atomic(paths["summary"], _jsonable(summary))
    return summary


def _resolve_scale(lazy, model, options: PipelineOptions, pixel_size, large: bool):
    """Options with a numeric scale, and the record of how it was chosen."""
    from dataclasses import replace

    from napari_ihcseg.inference.autoscale import resolve_scale

    def read_probe(size: int) -> np.ndarray:
        level = lazy.levels[0]
        h, w = level.shape[:2]
        top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
        return np.asarray(level[top:top + size, left:left + size].compute())

    estimate = resolve_scale(options.scale, read_probe, model, pixel_size_um=pixel_size,
                             config=options.inference_config(1.0), whole_slide=large)
    log.info("%s", estimate.reason)
    return replace(options, scale=estimate.scale), {"options": options, **estimate.to_dict()}


def _option_record(options: PipelineOptions) -> dict:
    """The options recorded in the summary (the model is recorded on its own)."""
    return {k: v for k, v in asdict(options).items() if k != "model"}


def _jsonable(obj):
    """Replace NaN/inf and numpy scalars so the summary is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _process_field(lazy, model, paths, options, scoring, progress, cancel) -> dict:
    """An image that fits in memory: predict, instances, score, write."""
    from napari_ihcseg.inference import segment_image
    from napari_ihcseg.io import write_labels

    image = np.asarray(lazy.levels[0].compute())
    segmentation = segment_image(image, model, options.inference_config(), progress=progress, cancel=cancel)
    labels, mask_prob, contour_prob = segmentation.labels, segmentation.mask_prob, segmentation.contour_prob
    write_labels(paths["labels"], labels)
    if options.save_probabilities:
        _write_float_tiff(paths["mask_prob"], mask_prob)
        _write_float_tiff(paths["contour_prob"], contour_prob)

    out = {"n_nuclei": int(np.unique(labels[labels > 0]).size)}
    classes = None
    if scoring is not None:
        from napari_ihcseg.scoring import score_image, write_cells_csv, write_geojson

        scored = score_image(image, labels, config=scoring, roi=options.roi)
        write_cells_csv(paths["cells"], scored.cells)
        write_geojson(paths["geojson"], scored.cells, labels)
        out["scores"] = scored.summary
        classes = dict(zip(scored.cells["label"].to_numpy().tolist(),
                           scored.cells["intensity_class"].to_numpy().tolist()))
    else:
        _write_unscored_cells(paths["cells"], _cells_without_stain(labels))
    if options.overlay:
        from napari_ihcseg.overlay import write_overlay

        legend = {"n_nuclei": out["n_nuclei"], **out.get("scores", {})}
        write_overlay(paths["overlay"], image, labels, intensity_class=classes, summary=legend)
    return out


# --------------------------------------------------------------- whole slides

def _process_large(lazy, model, paths, options, scoring, progress, cancel) -> dict:
    """A whole slide: segment block by block into a zarr store, then score by blocks."""
    import zarr

    from napari_ihcseg.inference import segment_large
    from napari_ihcseg.inference.large import zarr_to_tiff

    out_dir = paths["labels"].parent
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{paths['labels'].name}.") as tmp:
        store = Path(tmp) / "labels.zarr"
        result = segment_large(lazy, model, out=store, config=options.inference_config(),
                               block=options.block, progress=progress, cancel=cancel)
        labels_z = zarr.open_array(str(store), mode="r")
        halo = max(int(result.halo), 64)
        out = {"n_nuclei": int(result.n_nuclei)}
        _score_blocks(lazy, labels_z, paths, options, scoring, halo, out)
        with atomic_path(paths["labels"]) as tmp_tif:
            zarr_to_tiff(labels_z, tmp_tif)
        if options.overlay:
            _large_overlay(lazy, labels_z, paths["overlay"], out)
    return out


def _block_cores(shape, block: int):
    for y0 in range(0, shape[0], block):
        for x0 in range(0, shape[1], block):
            yield y0, x0, min(y0 + block, shape[0]), min(x0 + block, shape[1])


def _score_blocks(lazy, labels_z, paths, options, scoring, halo: int, out: dict) -> None:
    """Measure, classify and outline every nucleus once, in the block holding its centroid."""
    import pandas as pd

    from napari_ihcseg.scoring import measure_nuclei, nuclei_feature_collection, write_cells_csv
    from napari_ihcseg.scoring.regions import as_region
    from napari_ihcseg.scoring.classifier import nucleus_features
    from napari_ihcseg.scoring.summary import classify, summarize
    from napari_ihcseg.stain import H_DAB

    base = lazy.levels[0]
    shape = labels_z.shape
    vectors = (H_DAB if scoring is None
               else scoring.resolve_stain_vectors(lambda: np.asarray(lazy.levels[-1].compute())))
    region = as_region(options.roi) if scoring is not None else None
    tables = []
    with contextlib.ExitStack() as stack:
        geo = None
        if scoring is not None:
            tmp = stack.enter_context(atomic_path(paths["geojson"]))
            geo = stack.enter_context(open(tmp, "w", encoding="utf-8"))
            geo.write('{"type":"FeatureCollection","features":[')
        first = True
        for y0, x0, y1, x1 in _block_cores(shape, options.block):
            ry0, rx0 = max(0, y0 - halo), max(0, x0 - halo)
            ry1, rx1 = min(shape[0], y1 + halo), min(shape[1], x1 + halo)
            lab = np.asarray(labels_z[ry0:ry1, rx0:rx1])
            if not lab.any():
                continue
            img = (np.asarray(base[ry0:ry1, rx0:rx1].compute()) if scoring is not None
                   else np.zeros(lab.shape + (3,), np.uint8))
            cells = measure_nuclei(img, lab, stains=vectors,
                                   pixel_size_um=scoring.pixel_size_um if scoring else None,
                                   ring="auto" if scoring is not None else None)
            if scoring is not None and scoring.classifier is not None:
                cells = nucleus_features(img, lab, cells, stains=vectors)
            cy = cells["centroid_y"].to_numpy() + ry0
            cx = cells["centroid_x"].to_numpy() + rx0
            ry, rx = np.floor(cy + 0.5), np.floor(cx + 0.5)
            own = (ry >= y0) & (ry < y1) & (rx >= x0) & (rx < x1)
            cells = cells[own].copy()
            cells["centroid_y"] = cy[own]
            cells["centroid_x"] = cx[own]
            if scoring is not None and len(cells):
                cells["in_roi"] = True if region is None else region.contains(cy[own], cx[own])
                cells = classify(cells, scoring)
                for feature in nuclei_feature_collection(cells, lab, offset=(ry0, rx0))["features"]:
                    geo.write(("" if first else ",\n") + json.dumps(feature, separators=(",", ":")))
                    first = False
            tables.append(cells)
        if geo is not None:
            geo.write("]}\n")
            geo.close()
    if tables:
        cells = pd.concat(tables, ignore_index=True).sort_values("label", ignore_index=True)
    else:
        cells = measure_nuclei(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.int32))
    if scoring is None:
        _write_unscored_cells(paths["cells"], cells)
        return
    if not tables:
        cells["in_roi"] = np.zeros(0, bool)
        if scoring.classifier is not None:
            cells = nucleus_features(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.int32), cells)
        cells = classify(cells, scoring)
    write_cells_csv(paths["cells"], cells)
    out["scores"] = summarize(cells, scoring, stain_vectors=vectors)
    out["classes"] = dict(zip(cells["label"].to_numpy().tolist(), cells["intensity_class"].to_numpy().tolist()))


def _large_overlay(lazy, labels_z, path: Path, out: dict) -> None:
    from napari_ihcseg.overlay import DEFAULT_MAX_SIDE, write_overlay

    shape = labels_z.shape
    step = max(1, int(np.ceil(max(shape) / DEFAULT_MAX_SIDE)))
    labels = np.asarray(labels_z[::step, ::step])
    image = np.asarray(lazy.levels[0][::step, ::step].compute())
    legend = {"n_nuclei": out["n_nuclei"], **out.get("scores", {})}
    write_overlay(path, image, labels, intensity_class=out.get("classes"), summary=legend, max_side=0)
