"""A whole slide, block by block: segment into a zarr store, score each nucleus once, write.

Used by :func:`~napari_ihcseg.pipeline.process_image` for images over
:data:`~napari_ihcseg.pipeline.LARGE_IMAGE_PIXELS`. The slide is segmented by
:func:`~napari_ihcseg.inference.segment_large`; the nuclei are then measured,
classified and outlined block by block on the same grid
(:func:`~napari_ihcseg.inference.blocks.block_grid`), each by the block that
owns it (:func:`~napari_ihcseg.inference.blocks.owns`), which is the block
that wrote it. Memory stays that of one block.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from pathlib import Path

import numpy as np

from napari_ihcseg._atomic import atomic_path

from .options import PipelineOptions
from .outputs import write_unscored_cells

#: The least halo the nuclei are measured with.
MIN_SCORING_HALO = 64


def process_slide(lazy, model, paths: dict[str, Path], options: PipelineOptions, scoring, progress,
                  cancel) -> dict:
    """Segment block by block into a zarr store, score by blocks, write the outputs to ``paths``.

    Returns ``n_nuclei`` and, with a stain, the ``scores`` of the summary.
    """
    import zarr

    from napari_ihcseg.inference import segment_large
    from napari_ihcseg.inference.large import zarr_to_tiff

    out_dir = paths["labels"].parent
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{paths['labels'].name}.") as tmp:
        store = Path(tmp) / "labels.zarr"
        result = segment_large(lazy, model, out=store, config=options.inference, block=options.block,
                               progress=progress, cancel=cancel)
        labels_z = zarr.open_array(str(store), mode="r")
        halo = max(int(result.halo), MIN_SCORING_HALO)
        out = {"n_nuclei": int(result.n_nuclei)}
        scores, classes = score_blocks(lazy, labels_z, paths, options, scoring, result.block, halo)
        if scores is not None:
            out["scores"] = scores
        with atomic_path(paths["labels"]) as tmp_tif:
            zarr_to_tiff(labels_z, tmp_tif)
        if options.overlay:
            _slide_overlay(lazy, labels_z, paths["overlay"], out, classes)
    return out


def score_blocks(lazy, labels_z, paths, options: PipelineOptions, scoring, block: int,
                 halo: int) -> tuple[dict | None, dict | None]:
    """Measure, classify and outline every nucleus once, in the block that owns it.

    Writes the cells table (and, with a stain, the GeoJSON). Returns the
    summary's scores and each label's intensity class (both ``None``
    without a stain).
    """
    import pandas as pd

    from napari_ihcseg.inference.blocks import block_grid, owns
    from napari_ihcseg.scoring import measure_nuclei, nuclei_feature_collection, write_cells_csv
    from napari_ihcseg.scoring.classifier import nucleus_features
    from napari_ihcseg.scoring.regions import as_region
    from napari_ihcseg.scoring.summary import REGION_MISSES_IMAGE, classify, summarize
    from napari_ihcseg.stain import H_DAB

    base = lazy.levels[0]
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
        for core, box in block_grid(labels_z.shape, block, halo):
            lab = np.asarray(labels_z[box.slices])
            if not lab.any():
                continue
            img = (np.asarray(base[box.slices].compute()) if scoring is not None
                   else np.zeros(lab.shape + (3,), np.uint8))
            cells = measure_nuclei(img, lab, stains=vectors,
                                   pixel_size_um=scoring.pixel_size_um if scoring else None,
                                   ring="auto" if scoring is not None else None)
            if scoring is not None and scoring.classifier is not None:
                cells = nucleus_features(img, lab, cells, stains=vectors)
            cy = cells["centroid_y"].to_numpy() + box.y0
            cx = cells["centroid_x"].to_numpy() + box.x0
            own = owns(core, cy, cx)
            cells = cells[own].copy()
            cells["centroid_y"] = cy[own]
            cells["centroid_x"] = cx[own]
            if scoring is not None and len(cells):
                cells["in_roi"] = True if region is None else region.contains(cy[own], cx[own])
                cells = classify(cells, scoring)
                for feature in nuclei_feature_collection(cells, lab, offset=(box.y0, box.x0))["features"]:
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
        write_unscored_cells(paths["cells"], cells)
        return None, None
    if not tables:
        cells["in_roi"] = np.zeros(0, bool)
        if scoring.classifier is not None:
            cells = nucleus_features(np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1), np.int32), cells)
        cells = classify(cells, scoring)
    if region is not None and not region.covers_a_pixel_of(labels_z.shape[:2]):
        cells.attrs[REGION_MISSES_IMAGE] = "{1}x{0}".format(*labels_z.shape[:2])
    write_cells_csv(paths["cells"], cells)
    scores = summarize(cells, scoring, stain_vectors=vectors)
    return scores, dict(zip(cells["label"].to_numpy().tolist(), cells["intensity_class"].to_numpy().tolist()))


def _slide_overlay(lazy, labels_z, path: Path, out: dict, classes: dict | None) -> None:
    """The QC overlay of a slide, at every ``step``-th pixel so that its longest side fits."""
    from napari_ihcseg.overlay import DEFAULT_MAX_SIDE, write_overlay

    shape = labels_z.shape
    step = max(1, int(np.ceil(max(shape) / DEFAULT_MAX_SIDE)))
    labels = np.asarray(labels_z[::step, ::step])
    image = np.asarray(lazy.levels[0][::step, ::step].compute())
    legend = {"n_nuclei": out["n_nuclei"], **out.get("scores", {})}
    write_overlay(path, image, labels, intensity_class=classes, summary=legend, max_side=0)


__all__ = ["MIN_SCORING_HALO", "process_slide", "score_blocks"]
