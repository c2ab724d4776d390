"""``ihcseg evaluate``: compare predictions with ground truth, per image and on average.

Files are paired by a *key*: the file name without its extension and without
one trailing marker, a separator (``.``, ``_`` or ``-``) followed by one of
:data:`LABEL_MARKERS` (case-insensitive). So ``01.labels.tif`` (written by
``ihcseg segment``), ``01_labels.png``, ``01-mask.tif``, ``01_data.xml`` and
``01.xml`` all have the key ``01``.

Instance mode (default):

- predictions: the ``.tif``/``.tiff``/``.png`` files of ``--pred``; when the
  folder holds any ``<key>.labels.tif`` (``ihcseg segment``'s output), only
  those, so that overlays and other images beside them are left alone;
- truth: label images (``.tif``/``.tiff``/``.png``) or polygon annotations
  (``.xml``, ``.geojson``, ``.json``) in ``--truth``. When several truth files
  share a key, a label image with a marker (``01_labels.png``) wins over an
  annotation (``01.xml``), which wins over a plain image (``01.png``, often the
  picture itself); the others are reported as not used.

Points mode (``--points``): predictions are ``<key>.cells.csv`` (``label,
centroid_y, centroid_x[, positive][, included]``; rows with ``included`` 0 are
left out); truth is ``<key>.csv`` (markers :data:`POINT_MARKERS` stripped as
above) or ``<key>/markers.csv``, with columns ``type,x,y`` (1 positive,
2 negative). With ``--region`` (a mask image or GeoJSON), predictions and
truth points outside the annotated region are left out; see
:mod:`._evaluate_points`.

Truth polygons that lie wholly outside the prediction's image are counted: a
note names them, and a file whose polygons all lie outside (an annotation of
another image) is an error for that pair.

Files without a partner are listed and skipped. Each pair that cannot be read
or compared gets one error line and the exit code becomes 1.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_ihcseg._atomic import write_text_atomic

from ._common import EXIT_OK, EXIT_SOME_FAILED, CLIError, print_error, progress_bar
from ._evaluate_points import (check_region_overlaps, check_region_size, image_size, inside_region, points_in_image,
                               read_cells, read_region)

LABEL_EXTENSIONS = (".tif", ".tiff", ".png")
ANNOTATION_EXTENSIONS = (".xml", ".geojson", ".json")
#: Trailing words stripped (with their separator) from a file name to get its key.
LABEL_MARKERS = ("labels", "label", "instances", "masks", "mask", "gt", "truth", "data")
POINT_MARKERS = ("points", "markers")
SEPARATORS = "._-"
SEGMENT_SUFFIX = ".labels"
CELLS_SUFFIX = ".cells.csv"
DEFAULT_CSV = "evaluation.csv"
DEFAULT_RADIUS = 10.0

_INSTANCE_TABLE = ("n_truth", "n_pred", "dice", "iou", "aji", "pq", "dq", "sq", "f1", "tversky")
_POINT_TABLE = ("n_truth", "n_pred", "precision", "recall", "f1", "accuracy", "kappa",
                "truth_pct_positive", "pred_pct_positive", "abs_delta_pct_positive")
_HEADINGS = {"truth_pct_positive": "truth_%pos", "pred_pct_positive": "pred_%pos",
             "abs_delta_pct_positive": "|d%pos|"}


def file_key(name: str, markers: Iterable[str] = LABEL_MARKERS) -> str:
    """The pairing key of a file name: no extension, no trailing marker.

    >>> file_key("01.labels.tif"), file_key("image01_labels.png"), file_key("01_data.xml")
    ('01', 'image01', '01')
    """
    stem = Path(name).stem
    lower = stem.lower()
    for marker in markers:
        for sep in SEPARATORS:
            tail = sep + marker
            if lower.endswith(tail) and len(stem) > len(tail):
                return stem[: -len(tail)]
    return stem


@dataclass
class Pairing:
    """Which prediction goes with which truth file, and what was left over."""

    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    unpaired_pred: list[Path] = field(default_factory=list)
    unpaired_truth: list[Path] = field(default_factory=list)
    not_used: list[tuple[Path, Path]] = field(default_factory=list)  # (skipped, chosen instead)


def _by_key(candidates: list[tuple[int, str, Path]], pairing: Pairing) -> dict[str, Path]:
    """Map key -> path from ``(priority, key, path)``; the lowest priority wins a clash."""
    chosen: dict[str, Path] = {}
    for _, key, path in sorted(candidates, key=lambda c: (c[0], str(c[2]))):
        if key in chosen:
            pairing.not_used.append((path, chosen[key]))
        else:
            chosen[key] = path
    return chosen


def _instance_candidates(pred_dir: Path, truth_dir: Path):
    images = [p for p in sorted(pred_dir.iterdir()) if p.is_file() and p.suffix.lower() in LABEL_EXTENSIONS]
    segmented = [p for p in images if Path(p.stem).suffix.lower() == SEGMENT_SUFFIX]
    preds = [(_marked_first(p), file_key(p.name), p) for p in (segmented or images)]
    truths = []
    for p in sorted(truth_dir.iterdir()):
        ext = p.suffix.lower()
        if not p.is_file() or ext not in LABEL_EXTENSIONS + ANNOTATION_EXTENSIONS:
            continue
        truths.append((1 if ext in ANNOTATION_EXTENSIONS else _marked_first(p), file_key(p.name), p))
    return preds, truths


def _marked_first(path: Path) -> int:
    """0 for a label image whose name carries a marker (``x_labels.tif``), 2 for a plain one (``x.png``).

    On either side a marked label image beats the plain picture of the same key.
    """
    return 0 if file_key(path.name) != path.stem else 2


def _point_candidates(pred_dir: Path, truth_dir: Path):
    preds = [(0, p.name[: -len(CELLS_SUFFIX)], p) for p in sorted(pred_dir.iterdir())
             if p.is_file() and p.name.lower().endswith(CELLS_SUFFIX)]
    truths = []
    for p in sorted(truth_dir.iterdir()):
        if p.is_dir() and (p / "markers.csv").is_file():
            truths.append((1, p.name, p / "markers.csv"))
        elif (p.is_file() and p.suffix.lower() == ".csv" and p.name != DEFAULT_CSV
              and not p.name.lower().endswith(CELLS_SUFFIX)):
            truths.append((0, file_key(p.name, POINT_MARKERS), p))
    return preds, truths


def pair_files(pred_dir: Path, truth_dir: Path, *, points: bool = False) -> Pairing:
    """Pair prediction and truth files by key (see the module notes)."""
    pairing = Pairing()
    preds, truths = (_point_candidates if points else _instance_candidates)(pred_dir, truth_dir)
    pred_by_key = _by_key(preds, pairing)
    truth_by_key = _by_key(truths, pairing)
    for key in sorted(pred_by_key):
        if key in truth_by_key:
            pairing.pairs.append((key, pred_by_key[key], truth_by_key[key]))
        else:
            pairing.unpaired_pred.append(pred_by_key[key])
    pairing.unpaired_truth = [truth_by_key[k] for k in sorted(truth_by_key) if k not in pred_by_key]
    return pairing


def _read_label_image(path: Path) -> np.ndarray:
    """A 2-D ``int32`` label image from TIFF or PNG."""
    from napari_ihcseg.io import read_labels

    return read_labels(path)


def _truth_labels(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, str | None]:
    """Truth labels of a prediction's ``shape``, and a note on polygons lying outside it (or None)."""
    if path.suffix.lower() in ANNOTATION_EXTENSIONS:
        from napari_ihcseg.io.annotations import polygon_labels_in_image, read_polygons

        polygons = read_polygons(path)
        if not polygons:
            raise ValueError(f"{path}: holds no nucleus outline (polygon) to evaluate against; point "
                             "annotations are evaluated with --points")
        return polygon_labels_in_image(polygons, shape, source=path)
    truth = _read_label_image(path)
    if truth.shape != shape:
        raise ValueError(f"{path}: truth is {truth.shape[0]}x{truth.shape[1]} but the prediction is "
                         f"{shape[0]}x{shape[1]}")
    return truth, None


def _named(path: Path, fn: Callable, *args):
    """Call ``fn``; re-raise any failure as a ValueError that names ``path``."""
    try:
        return fn(*args)
    except ImportError:  # an installation problem, not a bad file
        raise
    except Exception as exc:  # a bad file must end in one line, whatever the library raised
        text = str(exc) or type(exc).__name__
        raise ValueError(text if str(path) in text else f"{path}: {text}") from None


def _evaluate_pair(key: str, pred_path: Path, truth_path: Path, args) -> dict:
    from napari_ihcseg.io.points import read_points_csv
    from napari_ihcseg.metrics import evaluate_instances, evaluate_points

    if args.points:
        pred_pts, pred_pos = _named(pred_path, read_cells, pred_path)
        truth_pts, truth_pos = _named(truth_path, read_points_csv, truth_path)
        if args.region is not None and isinstance(args.region, np.ndarray):
            check_region_size(args.region, args.region_path, pred_path, key,
                              [(pred_path, pred_pts), (truth_path, truth_pts)])
        size = image_size(pred_path, key, args.region)
        truth_pts, truth_pos, note = points_in_image(truth_pts, truth_pos, size, truth_path)
        if note:
            print(f"note: {note}", file=sys.stderr)
        if args.region is not None:
            check_region_overlaps(args.region, args.region_path, size,
                                  [(pred_path, pred_pts), (truth_path, truth_pts)])
            keep_pred, keep_truth = inside_region(args.region, pred_pts), inside_region(args.region, truth_pts)
            pred_pts, truth_pts, truth_pos = pred_pts[keep_pred], truth_pts[keep_truth], truth_pos[keep_truth]
            pred_pos = None if pred_pos is None else pred_pos[keep_pred]
        return evaluate_points(pred_pts, pred_pos, truth_pts, truth_pos, radius=args.radius)
    pred = _named(pred_path, _read_label_image, pred_path)
    truth, note = _named(truth_path, _truth_labels, truth_path, pred.shape)
    if note:
        print(f"note: {note}", file=sys.stderr)
    metrics = evaluate_instances(pred, truth, iou_threshold=args.iou_threshold,
                                 alpha=args.tversky_alpha, beta=args.tversky_beta)
    is_image = truth_path.suffix.lower() in LABEL_EXTENSIONS
    if is_image and metrics["n_truth"] == 1 and metrics["n_pred"] > 1:
        print(f"note: {truth_path} holds a single label; if it is a binary mask, AJI and PQ "
              "are meaningless", file=sys.stderr)
    return metrics


def _mean(values: list) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) / len(finite) if finite else float("nan")


_COUNTS = {"n_pred", "n_truth", "tp", "fp", "fn"}


def _fmt(value, column: str = "") -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "nan"
    return f"{value:.1f}" if column in _COUNTS or column.endswith("_pct_positive") else f"{value:.4f}"


def _format_table(rows: list[dict], columns: tuple[str, ...]) -> str:
    header = ["image", *(_HEADINGS.get(c, c) for c in columns)]
    body = [[str(r["image"]), *(_fmt(r[c], c) for c in columns)] for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = []
    for n, line in enumerate([header, *body]):
        cells = [line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(line[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
        if n == 0 or (n == len(body) - 1 and len(body) > 1):  # rules under the header and above the mean
            lines.append("-" * len(lines[-1]))
    return "\n".join(lines)


def _csv_text(rows: list[dict], columns: tuple[str, ...]) -> str:
    from napari_ihcseg._csv import csv_text

    body = ([r["image"], r.get("pred_file", ""), r.get("truth_file", ""),
             *(r[c] if isinstance(r[c], (int, np.integer)) else f"{float(r[c]):.6f}" for c in columns)]
            for r in rows)
    return csv_text(["image", "pred_file", "truth_file", *columns], body)


def run(args: argparse.Namespace) -> int:
    """Run ``ihcseg evaluate`` and return the exit code."""
    from napari_ihcseg.metrics import INSTANCE_METRICS, POINT_METRICS

    if args.radius is not None and not args.points:
        raise CLIError("--radius applies only with --points")
    radius = DEFAULT_RADIUS if args.radius is None else args.radius
    if not (math.isfinite(radius) and radius > 0):
        raise CLIError(f"--radius must be a positive number of pixels, got {args.radius}")
    args.radius = radius
    args.region_path = None if args.region is None else Path(args.region).expanduser()
    if args.region_path is not None:
        if not args.points:
            raise CLIError("--region applies only with --points")
        try:
            args.region = read_region(args.region_path)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    if not 0 <= args.iou_threshold < 1:
        raise CLIError(f"--iou-threshold must be in [0, 1), got {args.iou_threshold}")
    weights = (args.tversky_alpha, args.tversky_beta)
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise CLIError(f"--tversky-alpha and --tversky-beta must be numbers >= 0, got {weights}")
    pred_dir, truth_dir = Path(args.pred).expanduser(), Path(args.truth).expanduser()
    for flag, folder in (("--pred", pred_dir), ("--truth", truth_dir)):
        if not folder.is_dir():
            raise CLIError(f"{flag} {folder}: no such folder")

    pairing = pair_files(pred_dir, truth_dir, points=args.points)
    for skipped, chosen in pairing.not_used:
        print(f"note: {skipped} not used; {chosen.name} has the same key", file=sys.stderr)
    for label, files in (("prediction", pairing.unpaired_pred), ("truth file", pairing.unpaired_truth)):
        if files:
            names = ", ".join(p.name if p.parent in (pred_dir, truth_dir) else str(p) for p in files)
            print(f"note: {len(files)} {label}(s) without a partner, skipped: {names}", file=sys.stderr)
    if not pairing.pairs:
        kind = "cells tables (*.cells.csv) and point CSVs" if args.points else "label images and truth files"
        raise CLIError(f"no {kind} with matching names in {pred_dir} and {truth_dir}")
    if args.region_path is not None and len(pairing.pairs) > 1:
        keys = ", ".join(key for key, _, _ in pairing.pairs[:5]) + (", ..." if len(pairing.pairs) > 5 else "")
        raise CLIError(f"--region {args.region_path} is the region of one image, but {len(pairing.pairs)} "
                       f"images were paired ({keys}); evaluate one at a time")

    columns = POINT_METRICS if args.points else INSTANCE_METRICS
    rows, failed = [], 0
    progress = progress_bar(len(pairing.pairs), "evaluate", unit="image")
    for done, (key, pred_path, truth_path) in enumerate(pairing.pairs, start=1):
        try:
            metrics = _evaluate_pair(key, pred_path, truth_path, args)
        except ValueError as exc:
            print_error(str(exc))
            failed += 1
        else:
            rows.append({"image": key, "pred_file": pred_path.name, "truth_file": str(truth_path), **metrics})
        if progress is not None:
            progress(done, len(pairing.pairs))
    if rows:
        mean = {"image": "mean", **{c: _mean([r[c] for r in rows]) for c in columns}}
        table_rows = rows + [mean]
        csv_path = Path(args.csv).expanduser() if args.csv else pred_dir / DEFAULT_CSV
        try:
            write_text_atomic(csv_path, _csv_text(table_rows, columns))
        except OSError as exc:
            raise CLIError(f"{csv_path}: cannot write the CSV ({exc.strerror or exc})") from None
        print(_format_table(table_rows, _POINT_TABLE if args.points else _INSTANCE_TABLE))
        print(f"{len(rows)} image(s) evaluated; all figures in {csv_path}", file=sys.stderr)
    return EXIT_SOME_FAILED if failed else EXIT_OK


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare predicted labels (or cell tables) with ground truth",
        description=(
            "Per-image and mean metrics of predictions against ground truth. Instance mode: "
            "pixel Dice, IoU and Tversky (and their losses), AJI, PQ (DQ, SQ) and F1 at IoU 0.5. "
            "--points mode: detection precision, recall and F1 within a radius, positive/negative "
            "agreement and |delta % positive|. Files are paired by name: extension and one trailing "
            "marker such as .labels, _labels, _mask or _data are ignored."
        ),
    )
    parser.add_argument("--pred", required=True, metavar="DIR",
                        help="predictions: <name>.labels.tif (or .tif/.png label images); "
                             "with --points, <name>.cells.csv")
    parser.add_argument("--truth", required=True, metavar="DIR",
                        help="truth: label images (.tif/.png) or polygons (.xml Aperio/image-editor, "
                             ".geojson); with --points, <name>.csv or <name>/markers.csv (type,x,y)")
    parser.add_argument("--points", action="store_true",
                        help="point-annotated truth (1 = positive, 2 = negative nucleus)")
    parser.add_argument("--radius", type=float, default=None, metavar="PX",
                        help=f"--points matching radius in pixels (default {DEFAULT_RADIUS:g})")
    parser.add_argument("--region", metavar="FILE", default=None,
                        help="--points: the annotated region, a mask image of the image's size (nonzero = "
                             "annotated) or GeoJSON polygons; detections and truth points outside it are "
                             "left out")
    parser.add_argument("--iou-threshold", type=float, default=0.5, metavar="T",
                        help="IoU above which objects match for PQ and F1 (default 0.5)")
    parser.add_argument("--tversky-alpha", type=float, default=0.5, metavar="A",
                        help="Tversky weight of false-positive pixels (default 0.5)")
    parser.add_argument("--tversky-beta", type=float, default=0.5, metavar="B",
                        help="Tversky weight of false-negative pixels (default 0.5)")
    parser.add_argument("--csv", metavar="FILE", default=None,
                        help=f"where to write all figures (default <pred>/{DEFAULT_CSV})")
    parser.set_defaults(func=run)
    return parser
