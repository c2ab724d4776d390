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
        names = [name.strip() for name in reader.fieldnames or []]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"{path}: the column(s) {', '.join(twice)} appear more than once; which one is meant "
                             "is unclear")
        reader.fieldnames = names
        columns = set(names)
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
    try:
        mask = _read_mask(path)
    except ValueError as exc:
        raise ValueError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    if not mask.any():
        raise ValueError(f"{path}: the annotated region is empty (no pixel above 0)")
    return mask


def _read_mask(path: Path) -> np.ndarray:
    """A region mask, nonzero where annotated: a single-channel image, or a colour one (any colour channel)."""
    from napari_ihcseg.io import read_labels

    try:
        return read_labels(path) > 0
    except ValueError as exc:
        if "single-channel" not in str(exc):
            raise
    from skimage.io import imread

    colour = np.asarray(imread(path))
    if colour.ndim != 3 or colour.shape[-1] not in (3, 4):
        raise ValueError(f"{path}: expected a mask image (one channel, or RGB), got shape {colour.shape}")
    return colour[..., :3].any(axis=-1)


def _image_size(cells_path: Path, key: str) -> tuple[int, int] | None:
    """``(H, W)`` of the image a cells table was measured on: from its summary (``ihcseg segment``'s records
    it), else from the labels beside it (``ihcseg score``'s summary does not); None without either."""
    from napari_ihcseg._json_file import read_json

    summary = cells_path.with_name(key + SUMMARY_SUFFIX)
    if summary.is_file():
        record = read_json(summary, what="summary")
        try:
            return int(record["height"]), int(record["width"])
        except (KeyError, TypeError, ValueError):
            pass
    from napari_ihcseg.pipeline.outputs import OUTPUT_SUFFIXES

    labels = cells_path.with_name(key + OUTPUT_SUFFIXES["labels"])
    if labels.is_file():
        import tifffile

        try:
            with tifffile.TiffFile(labels) as tif:
                return tuple(int(v) for v in tif.pages[0].shape[:2])
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as exc:
            raise ValueError(f"{labels}: cannot read the size of the labels ({exc})") from None
    return None


def image_size(cells_path: Path, key: str, region) -> tuple[int, int] | None:
    """``(H, W)`` of the image a cells table was measured on: from its summary, else a region mask's; or None."""
    size = _image_size(cells_path, key)
    if size is None and isinstance(region, np.ndarray):
        size = region.shape
    return size


def points_in_image(points: np.ndarray, classes: np.ndarray | None, size: tuple[int, int] | None,
                    path: Path) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Leave out the truth points of ``path`` that lie outside an image of ``size``, with a note saying so.

    Raises
    ------
    ValueError
        When every point lies outside: the points of another image.
    """
    from napari_ihcseg.io.points import points_outside

    if size is None or not len(points):
        return points, classes, None
    outside = points_outside(points, size)
    if not outside.any():
        return points, classes, None
    h, w = size
    if outside.all():
        raise ValueError(f"{path}: all {len(points)} point(s) lie outside the {w}x{h} image; are they the "
                         "points of another image?")
    keep = ~outside
    note = f"{path}: {int(outside.sum())} of {len(points)} point(s) lie outside the {w}x{h} image and are left out"
    return points[keep], None if classes is None else classes[keep], note


def check_region_overlaps(region, region_path: Path, size: tuple[int, int] | None,
                          points: list[tuple[Path, np.ndarray]]) -> None:
    """Refuse a GeoJSON region that misses the image (the region of another image).

    With the image's size, the region must cover one of its pixels; without
    it, one of ``points`` (``(file, (N, 2) row/col)``) must lie inside.
    """
    if isinstance(region, np.ndarray):
        return
    if size is not None:
        if not region.covers_a_pixel_of(size):
            raise ValueError(f"{region_path}: the region lies wholly outside the {size[1]}x{size[0]} image; "
                             "is it the region of another image?")
        return
    if not any(len(pts) and inside_region(region, pts).any() for _, pts in points):
        raise ValueError(f"{region_path}: no point of {', '.join(str(path) for path, _ in points)} lies inside "
                         "the region; is it the region of another image?")


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
