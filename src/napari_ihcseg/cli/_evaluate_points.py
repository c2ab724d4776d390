"""``ihcseg evaluate --points``: the cells tables read, and the annotated region that limits the count.

Point annotations are usually complete only inside an annotated region (the
tumour area of a Ki-67 field); outside it, nuclei exist that nobody marked.
With ``--region`` the detections and the truth points outside the region are
left out of the point metrics (as ``benchmarks/evaluate_ki67.py`` counts the
real Ki-67 sets). A region belongs to one image, so only one pair may be
evaluated with it. The region is either

- a mask image (``.png``, ``.tif``, ``.tiff``, ``.jpg``) of the image's size,
  nonzero where annotated; its size is checked against the ``height`` and
  ``width`` of ``<key>.summary.json`` beside the cells table (written with it
  by ``ihcseg segment`` / ``ihcseg score``), or, without one, against the
  points; or
- GeoJSON polygons (``.geojson``, ``.json``; QuPath's annotation export),
  read by :func:`napari_ihcseg.scoring.regions.region_from_geojson`.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

GEOJSON_EXTENSIONS = (".geojson", ".json")
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
SUMMARY_SUFFIX = ".summary.json"

_TRUE, _FALSE = {"1", "true", "yes", "positive"}, {"0", "false", "no", "negative"}


def read_cells(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Centroids (row, col) and the positive calls (None without that column) of a cells table.

    Rows whose ``included`` column is 0 are left out.
    """
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or [])
        missing = {"centroid_y", "centroid_x"} - columns
        if missing:
            raise ValueError(f"{path}: not a cells table; missing column(s) {', '.join(sorted(missing))}")
        points, positive = [], []
        for row in reader:
            if "included" in columns and (row["included"] or "").strip().lower() in _FALSE:
                continue
            try:
                y, x = float(row["centroid_y"]), float(row["centroid_x"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}, line {reader.line_num}: centroid is not a number") from None
            if not (math.isfinite(y) and math.isfinite(x)):
                raise ValueError(f"{path}, line {reader.line_num}: non-finite centroid "
                                 f"({row['centroid_y']}, {row['centroid_x']})")
            points.append((y, x))
            if "positive" in columns:
                value = (row["positive"] or "").strip().lower()
                if value not in _TRUE | _FALSE:
                    raise ValueError(f"{path}, line {reader.line_num}: positive must be 0/1, got {value!r}")
                positive.append(value in _TRUE)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts, (np.asarray(positive, dtype=bool) if "positive" in columns else None)


def read_region(path: Path):
    """The annotated region of ``--region``: an ``(H, W)`` bool mask, or a :class:`~napari_ihcseg.scoring.Region`.

    Raises
    ------
    ValueError
        One line naming the file: missing, of another kind, unreadable, or empty.
    """
    ext = path.suffix.lower()
    if not path.is_file():
        raise ValueError(f"{path}: no such file (the annotated region)")
    if ext in GEOJSON_EXTENSIONS:
        from napari_ihcseg.scoring.regions import region_from_geojson

        return region_from_geojson(path)
    if ext not in MASK_EXTENSIONS:
        raise ValueError(f"{path}: not a region; expected a mask image ({', '.join(MASK_EXTENSIONS)}) "
                         f"or GeoJSON polygons ({', '.join(GEOJSON_EXTENSIONS)})")
    from napari_ihcseg.io import read_labels

    try:
        mask = read_labels(path) > 0
    except ValueError as exc:
        raise ValueError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    if not mask.any():
        raise ValueError(f"{path}: the annotated region is empty (no pixel above 0)")
    return mask


def _image_size(cells_path: Path, key: str) -> tuple[int, int] | None:
    """``(H, W)`` of the image a cells table was measured on, from its summary; None without one."""
    from napari_ihcseg._json_file import read_json

    summary = cells_path.with_name(key + SUMMARY_SUFFIX)
    if not summary.is_file():
        return None
    record = read_json(summary, what="summary")
    try:
        return int(record["height"]), int(record["width"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{summary}: no image height and width in the summary") from None


def check_region_size(mask: np.ndarray, region_path: Path, cells_path: Path, key: str,
                      points: list[tuple[Path, np.ndarray]]) -> None:
    """Refuse a region mask made for another image.

    The image size comes from ``<key>.summary.json`` beside ``cells_path``;
    without one, every point of ``points`` (``(file, (N, 2) row/col)``) must
    fall on the mask.
    """
    h, w = mask.shape
    size = _image_size(cells_path, key)
    if size is not None:
        if size != (h, w):
            raise ValueError(f"{region_path}: the region is {w}x{h} but the image of {cells_path.name} is "
                             f"{size[1]}x{size[0]}; is it the region of another image?")
        return
    for path, pts in points:
        # A point on the last pixel may sit on its far edge (x = W - 0.5).
        if len(pts) and ((pts.max(axis=0) > np.array([h, w]) - 0.5).any() or (pts.min() < -0.5)):
            y, x = pts.max(axis=0)
            raise ValueError(f"{region_path}: the region is {w}x{h} but {path} has points up to "
                             f"x {x:.0f}, y {y:.0f}; is it the region of another image?")


def inside_region(region, points: np.ndarray) -> np.ndarray:
    """Whether each ``(row, col)`` point lies in a region mask or :class:`~napari_ihcseg.scoring.Region`."""
    if isinstance(region, np.ndarray):
        from napari_ihcseg.metrics import values_at_points

        return values_at_points(region, points).astype(bool)
    return region.contains(points[:, 0], points[:, 1])
