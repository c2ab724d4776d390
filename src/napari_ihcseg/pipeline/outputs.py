"""The files one image's run writes, and whether a finished set of them is still current.

Every output is ``<stem><suffix>`` in the output folder
(:data:`OUTPUT_SUFFIXES`); the summary is written last and lists the others,
so its presence marks a finished image. :func:`outputs_complete` is what the
batch runner's resume relies on: a summary, every output it lists, and, when
asked, the same options, model and weights as the run about to be made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_ihcseg._atomic import atomic_path

from .options import PipelineOptions, option_record, upgrade_record

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
#: The columns of the cells table when no stain is scored.
GEOMETRY_COLUMNS = ["label", "centroid_y", "centroid_x", "area_px"]


def output_paths(out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Every output path of one image, by key (see :data:`OUTPUT_SUFFIXES`).

    Examples
    --------
    >>> output_paths("out", "case.1")["summary"].as_posix()
    'out/case.1.summary.json'
    """
    out_dir = Path(out_dir)
    return {key: out_dir / f"{stem}{suffix}" for key, suffix in OUTPUT_SUFFIXES.items()}


def file_fingerprint(path: str | Path) -> dict:
    """``{"bytes", "mtime_ns"}`` of a file: what tells a rescanned or replaced slide from the one scored.

    Reading a whole slide to hash it would cost as much as segmenting it;
    size and modification time are what ``make`` and ``rsync`` trust.
    """
    st = Path(path).stat()
    return {"bytes": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def roi_digest(path: str | Path | None) -> str | None:
    """sha256 of a region file's bytes (``None`` without one, or when it cannot be read).

    A tumour region redrawn and saved under the same name is another
    region: the scores made with the old one are stale. Region files are
    small, so their content is hashed rather than trusted by time.
    """
    import hashlib

    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _same_image(summary: dict, image: Path) -> bool:
    """Whether ``summary`` was made from ``image`` as it is now (same file, same size and time)."""
    recorded = summary.get("image")
    if not isinstance(recorded, str):
        return False
    try:
        if Path(recorded).resolve() != image.resolve():
            return False
        return summary.get("image_file") == file_fingerprint(image)
    except OSError:
        return False


def outputs_complete(out_dir: str | Path, stem: str, options: PipelineOptions | None = None,
                     image: str | Path | None = None) -> bool:
    """True when a finished summary and every output it lists exist.

    The summary is written last, so a killed run never looks finished; a set
    whose replacement was killed half-way is first restored to the old one
    (:func:`~napari_ihcseg.output_set.recover`). With ``options``, the
    summary must also have been made with the same outputs requested (e.g. a
    run without ``--overlay`` does not satisfy one with it), the same options
    (summaries from before the configs were composed are read too, see
    :func:`~napari_ihcseg.pipeline.options.upgrade_record`) and by the same
    model: the same weights (sha256), so a checkpoint retrained in place
    makes the old outputs stale, and the same region file content (a region
    redrawn in place makes them stale too). With ``image``, the summary must have been
    made from that file as it is now (:func:`file_fingerprint`): another
    slide of the same name, or a slide rescanned in place, is redone.
    """
    from napari_ihcseg._json_file import read_json
    from napari_ihcseg.output_set import recover

    recover(out_dir, stem, OUTPUT_SUFFIXES.values())
    paths = output_paths(out_dir, stem)
    try:
        summary = read_json(paths["summary"])
    except (OSError, ValueError):
        return False
    listed = summary.get("outputs")
    if not isinstance(listed, dict) or summary.get("status") != "ok":
        return False
    if options is not None and not _made_with(summary, options, listed):
        return False
    if image is not None and not _same_image(summary, Path(image)):
        return False
    return all((Path(out_dir) / name).is_file() for name in listed.values())


def _made_with(summary: dict, options: PipelineOptions, listed: dict) -> bool:
    """Whether ``summary`` records a run with ``options`` (outputs, options, model and weights)."""
    wanted = set(options.expected_outputs(large=bool(summary.get("large")))) - {"summary"}
    if not wanted <= set(listed):
        return False
    if (options.stain or None) != (summary.get("stain") or None):
        return False
    if options.roi is not None and summary.get("roi_sha256") != roi_digest(options.roi):
        return False  # the region was redrawn (or is gone)
    # Any option that changes the result (tiling, thresholds, scale,
    # region, ...) makes the old outputs stale.
    recorded = upgrade_record(summary.get("options"))
    if recorded is None or jsonable(recorded) != jsonable(option_record(options)):
        return False
    model = summary.get("model") if isinstance(summary.get("model"), dict) else {}
    if options.model is not None and str(options.model) != model.get("name"):
        return False
    from napari_ihcseg.models import checkpoint_classifiers_stamp, checkpoint_sha256

    spec = options.model if options.model is not None else model.get("name")
    if _current(checkpoint_sha256, spec) != model.get("sha256"):
        return False
    # Scores depend on the checkpoint's calibrated classifiers too (recalibrated or withdrawn: redo them;
    # outputs from before they were recorded are redone once).
    if options.stain and _current(checkpoint_classifiers_stamp, spec) != model.get("classifiers"):
        return False
    # The same options give other nuclei once the checkpoint's tuned settings change.
    used = summary.get("scale")
    expected = _expected_instances(options, model.get("name"), used.get("scale") if isinstance(used, dict) else None)
    return expected is None or summary.get("instances") == jsonable(expected)


def _expected_instances(options: PipelineOptions, model_name: str | None,
                        used_scale: float | None = None) -> dict | None:
    """The instance settings a run with ``options`` would use now (``None``: unknown).

    With ``auto_scale``, ``min_size`` depends on the scale the image
    resolved to, ``used_scale`` (recorded in its summary).
    """
    from napari_ihcseg.models import recommended_instance_params

    config = options.inference
    if options.auto_scale:
        if not isinstance(used_scale, (int, float)) or isinstance(used_scale, bool):
            return None
        config = config.replace(scale=float(used_scale))
    try:
        tuned = recommended_instance_params(options.model if options.model is not None else model_name)
    except (TypeError, ValueError):
        return None
    return config.instance_options_for(tuned)


def _current(read, spec):
    """What ``read(spec)`` finds in a checkpoint's ``config.json`` now (``None``: an architecture or unknown)."""
    try:
        return read(spec)
    except (TypeError, ValueError):
        return None


def jsonable(obj):
    """Replace NaN/inf, tuples and numpy scalars so that a summary is strict JSON.

    Examples
    --------
    >>> jsonable({"a": (1, float("nan")), "b": np.float32(0.5)})
    {'a': [1, None], 'b': 0.5}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_float_tiff(path: Path, array: np.ndarray) -> None:
    """A probability map as a zlib-compressed float32 TIFF, written atomically."""
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.asarray(array, np.float32), compression="zlib", photometric="minisblack")


def write_unscored_cells(path: Path, cells) -> None:
    """The four geometric columns of every nucleus, when no stain is scored."""
    from napari_ihcseg._csv import write_table_csv

    write_table_csv(path, cells[GEOMETRY_COLUMNS], float_format="%.3f")


__all__ = ["GEOMETRY_COLUMNS", "OUTPUT_SUFFIXES", "jsonable", "output_paths", "outputs_complete",
           "write_float_tiff", "write_unscored_cells"]
