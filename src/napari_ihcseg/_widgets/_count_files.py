"""Count mode's counts as a record: checked, saved, opened again, and compared with the nuclei.

The counts layer (:mod:`._counts`) is written as a marker CSV (``type,x,y``)
or QuPath GeoJSON by :mod:`napari_ihcseg.io.points`, read back as a counts
layer, and compared with the nuclei by
:func:`napari_ihcseg.editing.compare_counts`; :func:`comparison_text` says
what the comparison found.

Point files are in the full slide's pixels, as the nuclei GeoJSON and the
Score panel's cells CSV: a field of view's ``origin`` (row, col in the slide)
is added on saving and taken off on opening.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_ihcseg.io import image_stem
from napari_ihcseg.io.points import points_outside, read_points, write_points

from ._common import Ask
from ._counts import add_counts_layer, counted_points, tie_counts


def classified_points(points, labels) -> tuple[np.ndarray, np.ndarray]:
    """The counted points (row, col in the nuclei layer ``labels``) and whether each is positive.

    A point without a class of its own takes the class of the scored
    nucleus under it (see :func:`._counts.counted_points`); one on no scored
    nucleus is an error naming how many.
    """
    if points is None or not len(points.data):
        raise ValueError("there are no counted points; start counting or open a points file")
    coords, positive, known = counted_points(points, labels)
    if not known.all():
        raise ValueError(f"{int((~known).sum())} counted point(s) have no class and lie on no scored "
                         "nucleus; classify their nuclei (U / J, then a click), score the nuclei first, "
                         "or delete those points from the counts layer")
    return coords, positive


def save_counts(path, coords: np.ndarray, positive: np.ndarray, *, ask: Ask, origin=(0, 0)) -> Path | None:
    """Write the counts to ``path``, a marker CSV or QuPath GeoJSON (by its ending).

    ``coords`` are (row, col) in the nuclei layer's pixels, ``origin`` where
    that layer lies in the slide; the file gets slide pixels. ``path`` must
    be absolute; an existing file is replaced only when ``ask`` says so.
    Returns the path written, or ``None`` when nothing was.
    """
    path = Path(path).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{path}: choose an absolute path")
    overwrite = path.exists() and ask("Replace file", f"{path} exists. Replace it?")
    if path.exists() and not overwrite:
        return None
    coords = np.asarray(coords, float).reshape(-1, 2) + np.asarray(origin, float)
    write_points(path, coords, positive, overwrite=overwrite)
    return path


def open_counts(viewer, path, labels, *, origin=(0, 0)):
    """Add the points of a marker CSV or QuPath GeoJSON as a counts layer, tied to the nuclei ``labels``.

    The file's points are in slide pixels; ``origin`` (row, col), where
    ``labels`` lies in the slide, is taken off. The layer is named after the
    file and placed as ``labels`` (when given); each point keeps its class,
    positive or negative. Returns the layer and how many points lie outside
    ``labels``.
    """
    path = Path(path).expanduser()
    coords, positive = read_points(path)
    coords = coords - np.asarray(origin, float)
    classes = ["positive" if p else "negative" for p in positive]
    layer = add_counts_layer(viewer, image_stem(path), labels, coords=coords, classes=classes)
    n_outside = 0
    if labels is not None:
        tie_counts(labels, layer)
        n_outside = int(points_outside(coords, np.shape(labels.data)[-2:]).sum())
    return layer, n_outside


def comparison_text(result: dict) -> str:
    """What :func:`~napari_ihcseg.editing.compare_counts` found, in a sentence or two."""
    text = (f"Matched {result['matched']}, missed {result['missed']} (counted, not found), "
            f"extra {result['extra']} (found, not counted); F1 {result['f1']:.2f}.")
    if np.isfinite(result["delta_index"]):
        text += (f" Index: nuclei {result['pred_pct_positive']:.1f} %, counts "
                 f"{result['truth_pct_positive']:.1f} %, Δ {result['delta_index']:+.1f} points.")
    else:
        text += " Score the nuclei to compare the positive index."
    return text
