"""Point annotations of nuclei, read and written: marker CSV and QuPath GeoJSON.

A lab's existing counts (one dot per nucleus, positive or negative) come in
two forms, both read and written here:

- **Marker CSV** (``type,x,y``, as in the Ki-67 point data sets): ``type`` 1
  marks a positive nucleus, 2 a negative one; ``x`` is the column and ``y``
  the row, in pixels. Other columns are ignored on reading.
- **QuPath GeoJSON**: a ``FeatureCollection`` of ``Point`` or ``MultiPoint``
  annotations whose ``properties.classification.name`` says ``Positive`` or
  ``Negative`` (a derived class such as ``Tumor: Positive`` counts too).
  Polygons and other geometries are ignored; :mod:`napari_ihcseg.io.annotations`
  reads those. Coordinates are QuPath's, as in the nuclei and region GeoJSON
  (:data:`GEOJSON_PIXEL_OFFSET`): ``(x, y)``
  with the origin at the image's top-left *corner*, so the centre of pixel
  ``(r, c)`` is ``(c + 0.5, r + 0.5)``.

Points are ``(row, col)`` float arrays of shape ``(N, 2)`` with a boolean
``positive`` array beside them, in napari's frame: ``(r, c)`` is the centre
of pixel ``(r, c)``. The marker CSV holds them as they are; the GeoJSON
readers and writers shift them by half a pixel. Files are written atomically and, unless
``overwrite`` is true, never replace an existing file.

Examples
--------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "counts.csv")
>>> _ = write_points(path, [[10.0, 20.5], [3, 4]], [True, False])
>>> points, positive = read_points(path)
>>> points.tolist(), positive.tolist()
([[10.0, 20.5], [3.0, 4.0]], [True, False])
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np

from napari_ihcseg._atomic import write_text_atomic
from napari_ihcseg._csv import write_csv
from napari_ihcseg._json_file import read_json

#: Offset between GeoJSON/QuPath coordinates (origin at the image's top-left pixel *corner*) and
#: napari's pixel centres: the centre of pixel ``(r, c)`` is ``(c + 0.5, r + 0.5)`` in GeoJSON.
GEOJSON_PIXEL_OFFSET = 0.5

__all__ = ["GEOJSON_PIXEL_OFFSET", "POINT_NEGATIVE", "POINT_POSITIVE", "POINT_SUFFIXES", "points_outside",
           "read_points", "read_points_csv", "read_points_geojson", "write_points", "write_points_csv",
           "write_points_geojson"]

#: Marker types of the point CSV.
POINT_POSITIVE, POINT_NEGATIVE = 1, 2
#: File-name endings read as point annotations.
POINT_SUFFIXES = (".csv", ".geojson", ".json")
#: QuPath's default colours of the Positive and Negative classes.
_QUPATH_COLORS = {"Positive": [200, 50, 50], "Negative": [112, 112, 225]}


def _check(points, positive) -> tuple[np.ndarray, np.ndarray]:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) if np.size(points) else np.zeros((0, 2))
    pos = np.asarray(positive, dtype=bool).reshape(-1)
    if pos.size != len(pts):
        raise ValueError(f"{len(pts)} points but {pos.size} positive flags")
    if not np.isfinite(pts).all():
        raise ValueError("point coordinates must be finite")
    return pts, pos


def _number(value: float) -> str:
    return f"{value:.10g}"


# ----------------------------------------------------------------------- CSV

def read_points_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a marker CSV with columns ``type,x,y``.

    Parameters
    ----------
    path : path-like
        A CSV with a header naming ``type``, ``x`` and ``y`` (other columns
        are ignored); ``type`` 1 marks a positive nucleus, 2 a negative one.

    Returns
    -------
    points : ndarray of float64, shape (N, 2)
        (row, col) = (y, x) in pixels.
    positive : ndarray of bool, shape (N,)

    Raises
    ------
    ValueError
        For a missing column, a non-numeric value or an unknown type; the
        message names the file and line.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return _parse_csv(fh, path)
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV file") from None
    except csv.Error as exc:  # a stray quote: strict parsing refuses it, rather than swallowing the rows after it
        raise ValueError(f"{path}: not a well-formed CSV file ({exc})") from None


def _parse_csv(fh, path: Path) -> tuple[np.ndarray, np.ndarray]:
    reader = csv.DictReader(fh, strict=True)
    names = [(f or "").strip().lower() for f in reader.fieldnames or []]
    twice = sorted({n for n in names if n in ("type", "x", "y") and names.count(n) > 1})
    if twice:
        raise ValueError(f"{path}: column(s) {', '.join(twice)} appear more than once in the header")
    fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
    missing = [c for c in ("type", "x", "y") if c not in fields]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; expected a header 'type,x,y'")
    points, positive = [], []
    rows = iter(reader)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            raise csv.Error(f"the first row after line {reader.line_num}: {exc}") from None
        line = reader.line_num
        values = [(row.get(fields[c]) or "").strip() for c in ("type", "x", "y")]
        if not any(values):
            continue
        try:
            kind, x, y = float(values[0]), float(values[1]), float(values[2])
        except ValueError:
            raise ValueError(f"{path}, line {line}: expected numbers, got {','.join(values)!r}") from None
        if kind not in (POINT_POSITIVE, POINT_NEGATIVE):  # 1.0 is 1; 1.7 is neither class
            raise ValueError(f"{path}, line {line}: type must be 1 (positive) or 2 (negative), got {values[0]}")
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"{path}, line {line}: non-finite coordinates")
        points.append((y, x))
        positive.append(kind == POINT_POSITIVE)
    return np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(positive, dtype=bool)


def write_points_csv(path: str | os.PathLike, points, positive, *, overwrite: bool = False) -> Path:
    """Write points as a marker CSV (``type,x,y``; 1 positive, 2 negative).

    Parameters
    ----------
    path : path-like
    points : array_like, shape (N, 2)
        (row, col) in pixels.
    positive : array_like of bool, shape (N,)
    overwrite : bool
        Replace an existing file (ask the user first).
    """
    pts, pos = _check(points, positive)
    rows = ((POINT_POSITIVE if p else POINT_NEGATIVE, _number(c), _number(r))
            for (r, c), p in zip(pts.tolist(), pos.tolist()))
    return write_csv(path, ("type", "x", "y"), rows, overwrite=overwrite)


# ------------------------------------------------------------------- GeoJSON

def _class_of(feature: dict, path: Path, k: int) -> bool:
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise ValueError(f"{path}: point feature {k} has properties that are not an object")
    cls = props.get("classification") or {}
    name = cls.get("name") if isinstance(cls, dict) else cls
    if not isinstance(name, str) and isinstance(cls, dict) and isinstance(cls.get("names"), list):
        name = ": ".join(str(n) for n in cls["names"])  # QuPath 0.4+ derived classes: ["Tumor", "Positive"]
    if not isinstance(name, str):
        name = props.get("name") if isinstance(props.get("name"), str) else ""
    lowered = name.lower()
    if "negative" in lowered:
        return False
    if "positive" in lowered:
        return True
    raise ValueError(f"{path}: point feature {k} is classified {name!r}; expected Positive or Negative")


def read_points_geojson(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read QuPath point annotations with a Positive / Negative classification.

    Returns
    -------
    points : ndarray of float64, shape (N, 2)
        (row, col) in pixels, pixel centres at whole numbers: QuPath's
        ``(x, y)`` less half a pixel.
    positive : ndarray of bool, shape (N,)

    Raises
    ------
    ValueError
        If the file is not GeoJSON, holds no point, or a point has no
        Positive / Negative class; the message names the file.
    """
    path = Path(path)
    obj = read_json(path, expect=None)
    if isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features") or []
    elif isinstance(obj, dict) and obj.get("type") == "Feature":
        features = [obj]
    elif isinstance(obj, list):
        features = obj
    else:
        raise ValueError(f"{path}: expected a GeoJSON FeatureCollection, a Feature or a list of features")
    if not isinstance(features, list):
        raise ValueError(f"{path}: 'features' must be a list of GeoJSON features")
    points, positive = [], []
    for k, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if feature is not None and not isinstance(feature, dict):
            raise ValueError(f"{path}: feature {k} is not a GeoJSON feature (an object)")
        if geometry is not None and not isinstance(geometry, dict):
            raise ValueError(f"{path}: feature {k} has a geometry that is not a GeoJSON object")
        kind = (geometry or {}).get("type")
        if kind == "Point":
            coords = [geometry.get("coordinates")]
        elif kind == "MultiPoint":
            coords = geometry.get("coordinates") or []
            if not isinstance(coords, list):
                raise ValueError(f"{path}: point feature {k} has malformed coordinates {coords!r}")
        else:
            continue
        is_pos = _class_of(feature, path, k)
        for xy in coords:
            try:
                x, y = float(xy[0]), float(xy[1])
            except (TypeError, ValueError, IndexError):
                raise ValueError(f"{path}: point feature {k} has malformed coordinates {xy!r}") from None
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"{path}: point feature {k} has non-finite coordinates")
            points.append((y - GEOJSON_PIXEL_OFFSET, x - GEOJSON_PIXEL_OFFSET))
            positive.append(is_pos)
    if not points and any(((f or {}).get("geometry") or {}).get("type") not in ("Point", "MultiPoint")
                          for f in features):
        raise ValueError(f"{path}: holds no Point or MultiPoint annotation (polygons are read as nuclei outlines)")
    return np.asarray(points, dtype=np.float64).reshape(-1, 2), np.asarray(positive, dtype=bool)


def points_feature_collection(points, positive) -> dict:
    """A QuPath-importable FeatureCollection: one MultiPoint annotation per class.

    Parameters
    ----------
    points : array_like, shape (N, 2)
        (row, col) in pixels, pixel centres at whole numbers (napari's frame).
    positive : array_like of bool, shape (N,)

    Returns
    -------
    dict
        The points as QuPath's ``(x, y)``, origin at the image's top-left
        corner: ``(c + 0.5, r + 0.5)``.

    Examples
    --------
    >>> points_feature_collection([[2, 3]], [True])["features"][0]["geometry"]
    {'type': 'MultiPoint', 'coordinates': [[3.5, 2.5]]}
    """
    pts, pos = _check(points, positive)
    corner = pts + GEOJSON_PIXEL_OFFSET
    features = []
    for name, keep in (("Positive", pos), ("Negative", ~pos)):
        if not keep.any():
            continue
        features.append({
            "type": "Feature",
            "geometry": {"type": "MultiPoint", "coordinates": [[c, r] for r, c in corner[keep].tolist()]},
            "properties": {"objectType": "annotation",
                           "classification": {"name": name, "color": _QUPATH_COLORS[name]}},
        })
    return {"type": "FeatureCollection", "features": features}


def write_points_geojson(path: str | os.PathLike, points, positive, *, overwrite: bool = False) -> Path:
    """Write points as QuPath GeoJSON (MultiPoint annotations classified Positive / Negative)."""
    text = json.dumps(points_feature_collection(points, positive), separators=(",", ":"), allow_nan=False)
    return write_text_atomic(path, text + "\n", overwrite=overwrite)


# ------------------------------------------------------------------- either

def _is_geojson(path: Path) -> bool:
    return path.suffix.lower() in (".geojson", ".json")


def points_outside(points, shape) -> np.ndarray:
    """Which points lie outside an image of ``shape``: not on any of its pixels.

    In napari's frame pixel ``(r, c)`` spans ``r - 0.5 .. r + 0.5``, so a
    point is inside when ``-0.5 <= row < H - 0.5`` (and so for columns): a
    point QuPath placed near the image's top-left corner (x = 0.2 there is
    column -0.3 here) is on pixel 0.

    Examples
    --------
    >>> points_outside([[-0.3, 0.0], [9.4, 2.0], [9.5, 2.0], [-0.6, 1.0]], (10, 4)).tolist()
    [False, False, True, True]
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    h, w = (float(n) for n in shape[:2])
    return ((points[:, 0] < -0.5) | (points[:, 0] >= h - 0.5)
            | (points[:, 1] < -0.5) | (points[:, 1] >= w - 0.5))


def read_points(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a marker CSV or a QuPath GeoJSON of points, by file ending."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such point annotation file")
    return read_points_geojson(path) if _is_geojson(path) else read_points_csv(path)


def write_points(path: str | os.PathLike, points, positive, *, overwrite: bool = False) -> Path:
    """Write points as GeoJSON (``.geojson`` / ``.json``) or as a marker CSV (any other ending)."""
    path = Path(path)
    writer = write_points_geojson if _is_geojson(path) else write_points_csv
    return writer(path, points, positive, overwrite=overwrite)
