"""Write and read the scoring exports.

- ``<stem>.cells.csv``: one row per nucleus (:data:`CELL_COLUMNS`);
- ``<stem>.summary.json``: the image summary (:data:`SUMMARY_KEYS`), also
  as a one-row ``<stem>.summary.csv`` (:func:`write_summary_csv`);
- ``<stem>.nuclei.geojson``: a QuPath-importable FeatureCollection with one
  Polygon *detection* per scored nucleus, classified ``Positive`` or
  ``Negative``, its measurements under ``properties.measurements`` (QuPath
  ≥ 0.4 layout; coordinates in pixels, origin at the image's top-left corner)
  and ``properties.class_source``.

Both per-nucleus exports say whose class each nucleus has: ``class_source`` is
``"human"`` where a person set it in count mode, ``"model"`` otherwise. Columns
beyond the standard ones (e.g. the Score widget's ``edit_status``: which nuclei
a person drew or changed) are asked for by name: ``extra_columns`` of
:func:`write_cells_csv`, ``extra_measurements`` of the GeoJSON writers.

Every file is written atomically (:mod:`napari_ihcseg._atomic`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_ihcseg._atomic import write_text_atomic
from napari_ihcseg._csv import write_csv, write_table_csv
from napari_ihcseg._json_file import read_json
from napari_ihcseg.scoring.outlines import label_outlines
from napari_ihcseg.scoring.overrides import MODEL
from napari_ihcseg.scoring.summary import SUMMARY_KEYS

#: Scoring keys that summaries written by earlier versions lack; they read as ``None``.
SUMMARY_KEYS_ADDED_LATER = ("pixel_size_um",)

#: Columns of ``<stem>.cells.csv``, in order.
CELL_COLUMNS = ("label", "centroid_y", "centroid_x", "area_px", "area_um2",
                "hematoxylin_od_mean", "dab_od_mean", "intensity_class", "positive",
                "in_roi", "included", "class_source")
_INT_COLUMNS = ("label", "area_px", "intensity_class", "positive", "in_roi", "included")

#: File-name suffixes of the three exports.
CELLS_SUFFIX, SUMMARY_SUFFIX, GEOJSON_SUFFIX = ".cells.csv", ".summary.json", ".nuclei.geojson"

#: QuPath's default colours of the Positive and Negative classes.
CLASS_COLORS = {"Positive": [200, 50, 50], "Negative": [112, 112, 225]}

#: Measurements written to each GeoJSON detection.
GEOJSON_MEASUREMENTS = ("label", "centroid_y", "centroid_x", "area_px", "area_um2",
                        "hematoxylin_od_mean", "dab_od_mean", "intensity_class")


def export_paths(out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """The three export paths for ``stem`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return {"cells": out_dir / f"{stem}{CELLS_SUFFIX}",
            "summary": out_dir / f"{stem}{SUMMARY_SUFFIX}",
            "geojson": out_dir / f"{stem}{GEOJSON_SUFFIX}"}


# ---------------------------------------------------------------- cells.csv

def write_cells_csv(path: str | os.PathLike, cells: pd.DataFrame, *, extra_columns: Sequence[str] = (),
                    overwrite: bool = True) -> Path:
    """Write the per-nucleus table (:data:`CELL_COLUMNS`, booleans as 0/1).

    Parameters
    ----------
    path : path-like
        The ``.cells.csv`` file, written atomically.
    cells : pandas.DataFrame
        A scored table; without ``class_source`` every class is the model's.
    extra_columns : sequence of str
        Columns of ``cells`` written after :data:`CELL_COLUMNS`, in this
        order, e.g. ``("edit_status",)``.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        When ``cells`` lacks a standard or an extra column, or an extra
        column repeats a standard one.

    Examples
    --------
    >>> import pandas as pd, tempfile, pathlib
    >>> cells = pd.DataFrame({"label": [1, 2], "centroid_y": [3.0, 9.0], "centroid_x": [4.0, 2.0],
    ...                       "area_px": [30, 41], "area_um2": [float("nan")] * 2,
    ...                       "hematoxylin_od_mean": [0.3, 0.4], "dab_od_mean": [0.5, 0.05],
    ...                       "intensity_class": [2, 0], "positive": [1, 0], "in_roi": [True, True],
    ...                       "included": [True, True], "edit_status": ["created", ""]})
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "case.cells.csv"
    >>> table = pd.read_csv(write_cells_csv(path, cells, extra_columns=["edit_status"]), keep_default_na=False)
    >>> list(table.columns[-2:]), table["edit_status"].tolist()
    (['class_source', 'edit_status'], ['created', ''])
    """
    missing = [c for c in CELL_COLUMNS if c not in cells and c != "class_source"]
    if missing:
        raise ValueError(f"cells table lacks the columns {missing}; score it first")
    extra = list(extra_columns)
    repeated = [c for c in extra if c in CELL_COLUMNS]
    if repeated:
        raise ValueError(f"extra columns {repeated} are standard columns of the cells table already")
    absent = [c for c in extra if c not in cells]
    if absent:
        raise ValueError(f"cells table lacks the extra columns {absent}")
    if "class_source" not in cells:  # a table no person classified: every class is the model's
        cells = cells.assign(class_source=MODEL)
    table = cells.loc[:, list(CELL_COLUMNS) + extra].copy()
    for col in _INT_COLUMNS:
        table[col] = table[col].astype(np.int64)
    return write_table_csv(path, table, overwrite=overwrite)


def read_cells_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``<stem>.cells.csv`` back (0/1 columns become booleans except ``positive``)."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such cells table") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV table ({exc})") from None
    missing = [c for c in CELL_COLUMNS if c not in table and c != "class_source"]
    if missing:
        raise ValueError(f"{path}: not a cells table; missing columns {missing}")
    if "class_source" not in table:  # written before hand classes existed
        table["class_source"] = MODEL
    for col in ("label", "area_px"):
        table[col] = table[col].astype(np.int64)
    for col in ("intensity_class", "positive"):
        table[col] = table[col].astype(np.int8)
    for col in ("in_roi", "included"):
        table[col] = table[col].astype(bool)
    return table


# ------------------------------------------------------------ summary.json

def write_summary_json(path: str | os.PathLike, summary: dict, *, overwrite: bool = True) -> Path:
    """Write the image summary; its keys must be exactly :data:`SUMMARY_KEYS`."""
    if set(summary) != set(SUMMARY_KEYS):
        raise ValueError(f"summary keys {sorted(summary)} differ from {list(SUMMARY_KEYS)}")
    ordered = {key: summary[key] for key in SUMMARY_KEYS}
    text = json.dumps(ordered, indent=2, allow_nan=False)
    return write_text_atomic(path, text + "\n", overwrite=overwrite)


def write_summary_csv(path: str | os.PathLike, summary: dict, *, overwrite: bool = True) -> Path:
    """Write a summary as one header row and one value row.

    Lists are joined with ``;``, a dict (the stain vectors) is written as
    its ``name``, ``None`` as an empty cell.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "case.summary.csv"
    >>> print(write_summary_csv(path, {"n_nuclei": 3, "warnings": ["a", "b"], "ki67_index": None}).read_text())
    n_nuclei,warnings,ki67_index
    3,a;b,
    <BLANKLINE>
    """
    values = []
    for value in summary.values():
        if isinstance(value, (list, tuple)):
            value = ";".join(str(x) for x in value)
        elif isinstance(value, dict):
            value = value.get("name", "")
        values.append("" if value is None else value)
    return write_csv(path, list(summary), [values], overwrite=overwrite)


def read_summary_json(path: str | os.PathLike) -> dict:
    """Read a ``<stem>.summary.json`` back and check that it holds a score.

    Parameters
    ----------
    path : path-like
        A summary written by :func:`write_summary_json` (``ihcseg score``,
        the Score widget) or by ``ihcseg segment`` / ``ihcseg batch`` with a
        stain, which add the image, model, options and outputs beside the
        scoring keys.

    Returns
    -------
    dict
        Every key of the file, in its order: the scoring keys
        (:data:`SUMMARY_KEYS`) and any others (e.g. ``"model"``, ``"outputs"``).
        A scoring key that summaries of earlier versions lack
        (:data:`SUMMARY_KEYS_ADDED_LATER`) is added at the end as ``None``.

    Raises
    ------
    ValueError
        When the file is not a JSON object or lacks a scoring key (a summary
        of an image segmented without a stain has no score).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "case.summary.json"
    >>> _ = path.write_text(json.dumps({"image": "case.png", **dict.fromkeys(SUMMARY_KEYS)}))
    >>> list(read_summary_json(path))[:3]
    ['image', 'n_nuclei', 'n_positive']
    >>> _ = path.write_text(json.dumps({"image": "case.png", "n_nuclei": 3}))
    >>> read_summary_json(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ...case.summary.json: not a scoring summary; it lacks the keys ['n_positive', ...]
    """
    summary = read_json(path, expect=None)
    if not isinstance(summary, dict):
        raise ValueError(f"{path}: not a scoring summary; expected a JSON object with the keys "
                         f"{list(SUMMARY_KEYS)}")
    missing = [key for key in SUMMARY_KEYS if key not in summary and key not in SUMMARY_KEYS_ADDED_LATER]
    if missing:
        raise ValueError(f"{path}: not a scoring summary; it lacks the keys {missing}")
    return {**summary, **{key: None for key in SUMMARY_KEYS_ADDED_LATER if key not in summary}}


# ---------------------------------------------------------- nuclei.geojson

def _ring_list(ring: np.ndarray, shift: np.ndarray | None) -> list:
    coords = (ring if shift is None else ring + shift).tolist()
    coords.append(coords[0])
    return coords


def _geometry(polygons: list[list[np.ndarray]], shift: np.ndarray | None = None) -> dict:
    closed = [[_ring_list(r, shift) for r in poly] for poly in polygons]
    if len(closed) == 1:
        return {"type": "Polygon", "coordinates": closed[0]}
    return {"type": "MultiPolygon", "coordinates": closed}


def _column_values(column: pd.Series) -> list:
    """Python numbers, with None for NaN (JSON has no NaN)."""
    values = column.to_numpy()
    if values.dtype == bool or np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64).tolist()
    values = values.astype(np.float64)
    out = values.tolist()
    for i in np.flatnonzero(~np.isfinite(values)).tolist():
        out[i] = None
    return out


def nuclei_feature_collection(cells: pd.DataFrame, labels: np.ndarray, *,
                              only_included: bool = True, offset: tuple[float, float] = (0, 0),
                              extra_measurements: Sequence[str] = ()) -> dict:
    """A GeoJSON FeatureCollection of the nuclei as QuPath detections.

    Parameters
    ----------
    cells : pandas.DataFrame
        A scored table (with ``positive`` and ``included``).
    labels : (H, W) array of int
        The label image the table was measured on.
    only_included : bool
        Leave out nuclei outside the region or the area limits, so that
        QuPath counts the same nuclei as the summary.
    offset : (float, float)
        ``(row, column)`` of ``labels``' top-left pixel in the image the
        GeoJSON describes (a block of a slide, a layer placed in an image):
        the outlines are moved by it. The table's centroids are written as
        they are, so they must already be in the image's coordinates.
    extra_measurements : sequence of str
        Numeric columns of ``cells`` written as measurements after
        :data:`GEOJSON_MEASUREMENTS`, e.g. ``("edited_by_hand",)``.

    Returns
    -------
    dict
        ``{"type": "FeatureCollection", "features": [...]}``; each feature has
        a Polygon (or MultiPolygon) geometry along the nucleus' pixel edges
        and ``properties`` with ``objectType: "detection"``, a
        ``classification`` (``Positive``/``Negative`` with QuPath's colours)
        and ``measurements`` (:data:`GEOJSON_MEASUREMENTS`, NaN left out).
    """
    table = cells[cells["included"].to_numpy(bool)] if only_included else cells
    labels_list = table["label"].to_numpy().tolist()
    outlines = label_outlines(labels, labels_list)
    absent = [c for c in extra_measurements if c not in table]
    if absent:
        raise ValueError(f"cells table lacks the extra measurements {absent}")
    columns = [c for c in GEOJSON_MEASUREMENTS if c in table] + [
        c for c in extra_measurements if c not in GEOJSON_MEASUREMENTS]
    values = [_column_values(table[c]) for c in columns]
    positive = table["positive"].to_numpy().astype(bool).tolist()
    source = table["class_source"].tolist() if "class_source" in table else [MODEL] * len(table)
    shift = None if not any(offset) else np.array([offset[1], offset[0]], dtype=float)
    features = []
    for i, lab in enumerate(labels_list):
        polygons = outlines.get(lab)
        if not polygons:
            continue
        name = "Positive" if positive[i] else "Negative"
        measurements = {c: v[i] for c, v in zip(columns, values) if v[i] is not None}
        features.append({
            "type": "Feature",
            "geometry": _geometry(polygons, shift),
            "properties": {
                "objectType": "detection",
                "classification": {"name": name, "color": CLASS_COLORS[name]},
                "class_source": source[i],
                "measurements": measurements,
            },
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | os.PathLike, cells: pd.DataFrame, labels: np.ndarray, *,
                  only_included: bool = True, offset: tuple[float, float] = (0, 0),
                  extra_measurements: Sequence[str] = (), overwrite: bool = True) -> Path:
    """Write the nuclei as a QuPath-importable GeoJSON FeatureCollection.

    The arguments are those of :func:`nuclei_feature_collection`; the file
    is written atomically, in compact JSON.
    """
    collection = nuclei_feature_collection(cells, labels, only_included=only_included, offset=offset,
                                           extra_measurements=extra_measurements)
    text = json.dumps(collection, separators=(",", ":"), allow_nan=False)
    return write_text_atomic(path, text + "\n", overwrite=overwrite)


@dataclass
class Detection:
    """One nucleus read back from ``<stem>.nuclei.geojson``.

    ``polygons`` holds, per part, the closed rings as ``(N, 2)`` arrays of
    ``(x, y)`` in GeoJSON/QuPath pixel coordinates.
    """

    label: int
    classification: str
    polygons: list[list[np.ndarray]]
    measurements: dict = field(default_factory=dict)
    object_type: str = "detection"


def read_geojson(path: str | os.PathLike) -> list[Detection]:
    """Read ``<stem>.nuclei.geojson`` back."""
    obj = read_json(path, what="GeoJSON", expect=None)
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection":
        raise ValueError(f"{path}: expected a GeoJSON FeatureCollection")
    detections = []
    for k, feat in enumerate(obj.get("features") or []):
        try:
            geom, props = feat["geometry"], feat.get("properties") or {}
            coords = geom["coordinates"]
            parts = [coords] if geom["type"] == "Polygon" else coords
            polygons = [[np.asarray(ring, np.float64) for ring in part] for part in parts]
            measurements = dict(props.get("measurements") or {})
            detections.append(Detection(
                label=int(measurements.get("label", k + 1)),
                classification=(props.get("classification") or {}).get("name", ""),
                polygons=polygons,
                measurements=measurements,
                object_type=props.get("objectType", ""),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: feature {k} is not a polygon detection ({exc})") from None
    return detections


# ------------------------------------------------------------------- all

def write_exports(out_dir: str | os.PathLike, stem: str, cells: pd.DataFrame, summary: dict,
                  labels: np.ndarray, *, overwrite: bool = True) -> dict[str, Path]:
    """Write the cells table, the summary and the GeoJSON; return their paths.

    With ``overwrite=False`` nothing is written when any of the files exists.
    """
    paths = export_paths(out_dir, stem)
    if not overwrite:
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing:
            raise FileExistsError(f"{', '.join(existing)}: already exist; refusing to overwrite")
    write_cells_csv(paths["cells"], cells, overwrite=overwrite)
    write_summary_json(paths["summary"], summary, overwrite=overwrite)
    write_geojson(paths["geojson"], cells, labels, overwrite=overwrite)
    return paths
