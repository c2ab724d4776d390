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

The package, by concept:

- :mod:`~napari_ihcseg.pipeline.options`: :class:`PipelineOptions`, an
  inference config and a scoring config with the outputs to write;
- :mod:`~napari_ihcseg.pipeline.outputs`: the output files and
  :func:`outputs_complete`;
- :mod:`~napari_ihcseg.pipeline.field`: an image in memory;
- :mod:`~napari_ihcseg.pipeline.slide`: a whole slide, block by block.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_ihcseg import __version__
from napari_ihcseg._atomic import write_json_atomic
from napari_ihcseg.io.names import image_stem

from .options import PipelineOptions, option_record
from .outputs import OUTPUT_SUFFIXES, file_fingerprint, jsonable, output_paths, outputs_complete, roi_digest

log = logging.getLogger(__name__)

#: Images with more pixels than this are segmented block by block from disk.
LARGE_IMAGE_PIXELS = 64 * 2**20
#: Architecture used when no checkpoint is shipped (random weights; warned).
FALLBACK_ARCH = "harunet-lite"

ProgressCallback = Callable[[int, int], None]


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
        from napari_ihcseg.models import classifiers_stamp

        record["sha256"] = getattr(info, "sha256", None)
        record["classifiers"] = classifiers_stamp(getattr(info, "classifiers", None))
    return record


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
        For a whole slide with a scale other than 1.
    """
    from napari_ihcseg.output_set import OutputSet

    options = options or PipelineOptions()
    # Written into a staging folder, the new outputs replace the old ones only once all are there.
    with OutputSet(out_dir, image_stem(path), OUTPUT_SUFFIXES) as paths:
        return _process_into(paths, Path(path), options, model, model_name, progress, cancel)


def _process_into(paths: dict[str, Path], path: Path, options: PipelineOptions, model, model_name,
                  progress, cancel) -> dict:
    """:func:`process_image` writing its outputs to ``paths``."""
    from napari_ihcseg.device import resolve_device
    from napari_ihcseg.io import ImageWarning, open_image

    from .field import process_field
    from .slide import process_slide

    started = time.perf_counter()
    source = file_fingerprint(path)  # before reading: a file replaced meanwhile is not taken for this one
    roi = roi_digest(options.roi)  # likewise the region file
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
            model, model_name = resolve_model(options.model, options.inference.device)
        resolved, scale = _resolve_scale(lazy, model, options, pixel_size, large)
        if large and resolved.inference.scale != 1.0:
            raise ValueError(f"scale {resolved.inference.scale:g} is supported for images segmented in memory "
                             f"only, not for whole slides ({h}×{w} pixels); use scale 1")
        scoring = resolved.scoring_for(pixel_size, model)
        process = process_slide if large else process_field
        result = process(lazy, model, paths, resolved, scoring, progress, cancel)

    summary = {
        "image": str(path),
        "height": int(h),
        "width": int(w),
        "image_file": source,
        "roi_sha256": roi,
        "pixel_size_um": pixel_size,
        "n_nuclei": int(result["n_nuclei"]),
        "n_nuclei_segmented": int(result["n_nuclei"]),
    }
    # With a stain, n_nuclei is the scoring's count (inside the region and
    # the size limits); n_nuclei_segmented stays the number of labels.
    summary.update(result.get("scores", {}))
    summary.update({
        "model": _model_record(model, model_name or getattr(model, "arch", "model")),
        "device": str(resolve_device(options.inference.device)),
        "seconds": round(time.perf_counter() - started, 3),
        "large": large,
        "options": option_record(options),
        "scale": scale,
        "instances": resolved.inference.instance_options(model),
        "version": __version__,
        "status": "ok",
        "outputs": {k: paths[k].name for k in options.expected_outputs(large=large) if k != "summary"},
        # The reader's notes, a scale far from the image's, then the scores' own warnings.
        "warnings": notes + ([scale["warning"]] if scale.get("warning") else [])
        + list(result.get("scores", {}).get("warnings") or []),
    })
    write_json_atomic(paths["summary"], jsonable(summary))
    return summary


def _resolve_scale(lazy, model, options: PipelineOptions, pixel_size, large: bool):
    """Options at the scale this image runs at, and the record of how it was chosen."""
    from napari_ihcseg.inference.autoscale import AUTO, central_crop, resolve_scale

    def read_probe(size: int) -> np.ndarray:
        return np.asarray(central_crop(lazy.levels[0], size).compute())

    origin = "as given" if options.pixel_size_um is not None else "from the file"
    estimate = resolve_scale(AUTO if options.auto_scale else options.inference.scale, read_probe, model,
                             pixel_size_um=pixel_size, pixel_size_origin=origin, config=options.inference,
                             whole_slide=large)
    log.info("%s", estimate.reason)
    return options.at_scale(estimate.scale), estimate.to_dict()


__all__ = [
    "FALLBACK_ARCH",
    "LARGE_IMAGE_PIXELS",
    "OUTPUT_SUFFIXES",
    "PipelineOptions",
    "ProgressCallback",
    "file_fingerprint",
    "output_paths",
    "outputs_complete",
    "process_image",
    "resolve_model",
]
