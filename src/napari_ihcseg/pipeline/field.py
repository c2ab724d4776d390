"""One image that fits in memory: segment, score and write its outputs.

Used by :func:`~napari_ihcseg.pipeline.process_image` for every image up to
:data:`~napari_ihcseg.pipeline.LARGE_IMAGE_PIXELS`; larger ones go block by
block (:mod:`~napari_ihcseg.pipeline.slide`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .options import PipelineOptions
from .outputs import GEOMETRY_COLUMNS, write_float_tiff, write_unscored_cells


def cells_without_stain(labels: np.ndarray):
    """The geometric columns of every nucleus of ``labels`` (no image needed)."""
    from napari_ihcseg.scoring import measure_nuclei

    # Intensity columns need an image; these four do not.
    cells = measure_nuclei(np.zeros(labels.shape + (3,), np.uint8), labels)
    return cells[GEOMETRY_COLUMNS]


def process_field(lazy, model, paths: dict[str, Path], options: PipelineOptions, scoring, progress,
                  cancel) -> dict:
    """Predict, find the nuclei, score them, write the outputs to ``paths``.

    ``options`` has its scale resolved; ``scoring`` is the image's
    (:meth:`PipelineOptions.scoring_for`). Returns ``n_nuclei`` and, with a
    stain, the ``scores`` of the summary.
    """
    from napari_ihcseg.inference import segment_image
    from napari_ihcseg.io import write_labels

    image = np.asarray(lazy.levels[0].compute())
    segmentation = segment_image(image, model, options.inference, progress=progress, cancel=cancel)
    labels = segmentation.labels
    write_labels(paths["labels"], labels)
    if options.save_probabilities:
        write_float_tiff(paths["mask_prob"], segmentation.mask_prob)
        write_float_tiff(paths["contour_prob"], segmentation.contour_prob)

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
        write_unscored_cells(paths["cells"], cells_without_stain(labels))
    if options.overlay:
        from napari_ihcseg.overlay import write_overlay

        legend = {"n_nuclei": out["n_nuclei"], **out.get("scores", {})}
        write_overlay(paths["overlay"], image, labels, intensity_class=classes, summary=legend)
    return out


__all__ = ["cells_without_stain", "process_field"]
