"""``ihcseg score``: score the nuclei of one image from its label image.

Writes ``<stem>.labels.tif`` (the labels scored), ``<stem>.cells.csv``,
``<stem>.summary.json`` and ``<stem>.nuclei.geojson`` (QuPath detections)
into ``--out``, replacing the stem's earlier outputs as one set, and prints a
short summary. ``<stem>`` is the image file name without its extension.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from ._common import EXIT_OK, CLIError, output_dir, parse_thresholds

def _read_inputs(image_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray, list[str], float | None]:
    """The image, its labels, what the image reader warned about (a transparent image, say), and the file's
    pixel size (µm, or ``None``)."""
    from napari_ihcseg.io import ImageReadError, ImageWarning, read_image_and_pixel_size, read_labels

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ImageWarning)
            image, pixel_size_um = read_image_and_pixel_size(image_path)
    except (ImageReadError, ValueError, OSError) as exc:
        raise CLIError(str(exc) if str(image_path) in str(exc) else f"{image_path}: {exc}") from None
    notes = []
    for w in caught:
        if issubclass(w.category, ImageWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    try:
        labels = read_labels(labels_path)
    except (ImageReadError, ValueError, OSError) as exc:
        raise CLIError(str(exc) if str(labels_path) in str(exc) else f"{labels_path}: {exc}") from None
    if labels.shape != image.shape[:2]:
        raise CLIError(f"{labels_path}: labels of shape {labels.shape} do not match "
                       f"{image_path} of shape {image.shape[:2]}")
    return image, labels, notes, pixel_size_um


def _binary_mask_check(labels: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """Warn about a binary 0/1 mask (it would score as one nucleus), or split it with --split-components."""
    from napari_ihcseg.io import binary_mask_regions, split_components

    regions = binary_mask_regions(labels)
    if args.split_components:
        labels = split_components(labels)
        print(f"ihcseg: note: {args.labels}: each of its {int(labels.max())} connected regions is scored as a "
              "nucleus (touching nuclei stay one)", file=sys.stderr)
    elif regions:
        print(f"ihcseg: warning: {args.labels}: holds a single label in {regions} separate regions, as a binary "
              "0/1 mask does; it is scored as ONE nucleus. Add --split-components to score each region as a "
              "nucleus", file=sys.stderr)
    return labels


def format_summary(summary: dict, cells, paths: dict[str, Path], *, classifier: bool = False) -> str:
    """The one-screen report printed by ``ihcseg score`` (``classifier``: a classifier called the nuclei)."""
    from napari_ihcseg.scoring import get_preset

    def pct(v):
        return "n/a" if v is None else f"{v:.1f} %"

    def ci(interval):
        return "" if not interval else f"   (95 % CI {interval[0]:.1f}–{interval[1]:.1f} %)"

    preset = get_preset(summary["stain"])
    n_all = len(cells)
    excluded = n_all - summary["n_nuclei"]
    counts = np.bincount(cells["intensity_class"].to_numpy()[cells["included"].to_numpy(bool)],
                         minlength=4)
    t1, t2, t3 = summary["thresholds"]
    lines = [
        f"stain               {preset.title}   ({'calibrated classifier; ' if classifier else ''}"
        f"DAB OD thresholds {t1:g} / {t2:g} / {t3:g}; "
        f"{summary['stain_vectors']['name'] if summary['stain_vectors'] else 'stain vectors n/a'})",
        f"nuclei scored       {summary['n_nuclei']}" + (f"   ({excluded} excluded by region/size)"
                                                       if excluded else ""),
        f"classes 0/1+/2+/3+  {counts[0]} / {counts[1]} / {counts[2]} / {counts[3]}",
        f"positive            {summary['n_positive']}   ({pct(summary['positive_percent'])})"
        + ci(summary.get("positive_percent_ci")),
    ]
    if summary["ki67_index"] is not None or preset.name == "ki67":
        lines.append(f"Ki-67 index         {pct(summary['ki67_index'])}" + ci(summary.get("ki67_index_ci")))
        lines.append(_hotspot_line(summary))
        if summary.get("ki67_call"):
            lines.append(f"Ki-67 call          {summary['ki67_call']} (cut-off {summary['ki67_cutoff']:g} %)"
                         + ("   UNCERTAIN" if "ki67_call" in summary.get("uncertain_calls", []) else ""))
    hs = summary["h_score"]
    lines.append(f"H-score             {'n/a' if hs is None else f'{hs:.1f}'}")
    if summary["allred_total_score"] is None:
        lines.append("Allred              n/a (no nuclei)")
    else:
        span = summary.get("allred_proportion_range")
        lines.append(f"Allred              {summary['allred_total_score']} "
                     f"(proportion {summary['allred_proportion_score']} + "
                     f"intensity {summary['allred_intensity_score']})"
                     + (f"   UNCERTAIN: proportion {span[0]}–{span[1]} across the 95 % CI"
                        if "allred_proportion_score" in summary.get("uncertain_calls", []) else ""))
    if preset.interpretation:
        lines.append(f"ASCO/CAP 2020       {summary['interpretation'] or 'n/a (no nuclei)'}"
                     f"   (Allred {summary['allred_total_score']})"
                     + ("   UNCERTAIN" if "interpretation" in summary.get("uncertain_calls", []) else ""))
    if summary.get("stain_pattern"):
        share = summary.get("dab_nuclear_share")
        lines.append(f"DAB pattern         {summary['stain_pattern']}"
                     + ("" if share is None else f"   (nuclear DAB share {share:.2f})"))
    lines += [f"WARNING             {w}" for w in summary.get("warnings", [])]
    lines.append("written             " + "\n                    ".join(str(p) for p in paths.values()))
    return "\n".join(lines)


def _hotspot_line(summary: dict) -> str:
    if summary.get("hotspot_ki67_index") is None:
        return "hot spot            n/a (no place with enough cells)"
    size = (f"nearest {summary['hotspot_n_cells']} cells" if summary.get("hotspot_mode") == "nearest"
            else f"{summary['hotspot_n_cells']} cells within {summary['hotspot_radius_px']:.0f} px")
    y, x = summary["hotspot_center_yx"]
    low, high = summary["hotspot_ki67_index_ci"]
    return (f"hot spot            {summary['hotspot_ki67_index']:.1f} %   (95 % CI {low:.1f}–{high:.1f} %; "
            f"{size} of row {y:.0f}, column {x:.0f})")


def run(args: argparse.Namespace) -> int:
    """Run ``ihcseg score``; returns the exit code, raises :class:`CLIError` on bad input."""
    from napari_ihcseg.pixel_size import check_pixel_size_um
    from napari_ihcseg.scoring import ESTIMATE, ScoringConfig, region_from_geojson, score_image
    from napari_ihcseg.stain import StainEstimationWarning

    thresholds = parse_thresholds(args.thresholds)
    if args.pixel_size is not None:
        try:
            check_pixel_size_um(args.pixel_size, "--pixel-size")
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    classifier = None
    if thresholds is None:
        from napari_ihcseg.models import recommended_classifier

        try:
            classifier = recommended_classifier(args.model, args.stain)
        except ValueError as exc:
            raise CLIError(f"--model: {exc}") from None
    try:
        config = ScoringConfig(
            classifier=classifier,
            stain=args.stain, thresholds=thresholds,
            stain_vectors=ESTIMATE if args.estimate_stains else ScoringConfig().stain_vectors,
            pixel_size_um=args.pixel_size,
            min_area_px=args.min_area if args.pixel_size is None else None,
            max_area_px=args.max_area if args.pixel_size is None else None,
            min_area_um2=args.min_area if args.pixel_size is not None else None,
            max_area_um2=args.max_area if args.pixel_size is not None else None,
            min_cells=args.min_cells, ki67_cutoff=args.ki67_cutoff,
            hotspot_cells=args.hotspot_cells,
            **({} if args.hotspot_diameter is None else {"hotspot_diameter_um": args.hotspot_diameter}),
        )
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    region = None
    if args.roi is not None:
        try:
            region = region_from_geojson(args.roi)
        except (OSError, ValueError) as exc:
            raise CLIError(str(exc)) from None
    image, labels, notes, recorded = _read_inputs(args.image, args.labels)
    if args.pixel_size is None and recorded is not None:
        # As segment does: the file's pixel size gives areas in um^2 and the hot-spot circle (limits stay in px).
        config = config.replace(pixel_size_um=recorded)
        print(f"pixel size {recorded:g} um from {args.image}", file=sys.stderr)
    if config.pixel_size_um is None and args.hotspot_diameter is not None and config.stain == "ki67":
        print(f"ihcseg: warning: --hotspot-diameter needs a pixel size (--pixel-size, or one recorded in the "
              f"file); the hot spot is the {config.hotspot_cells} nearest cells of a point", file=sys.stderr)
    out = output_dir(args.out)
    read = labels
    labels = _binary_mask_check(labels, args)
    placement = _keep_input_labels(out, args, read, labels)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StainEstimationWarning)
        try:
            result = score_image(image, labels, config=config, roi=region)
        except (TypeError, ValueError) as exc:
            raise CLIError(f"{args.image}: {exc}") from None
    for note in notes + [str(w.message) for w in caught]:
        print(f"ihcseg: warning: {note}", file=sys.stderr)
    result.summary["warnings"] = notes + list(result.summary.get("warnings") or [])  # kept with the scores

    from napari_ihcseg.io.names import image_stem

    stem = image_stem(args.image)
    paths = _write_set(out, stem, result, labels, placement)
    if result.summary["n_nuclei"] == 0:
        print(f"ihcseg: warning: {args.labels}: no nucleus to score"
              + (" inside the region / size limits" if len(result.cells) else "")
              + (" or kept by the calibrated classifier (--thresholds scores without it)"
                 if classifier is not None and len(result.cells) else ""),
              file=sys.stderr)
    print(format_summary(result.summary, result.cells, paths, classifier=classifier is not None))
    return EXIT_OK


def _keep_input_labels(out: Path, args: argparse.Namespace, read: np.ndarray, labels: np.ndarray) -> dict | None:
    """The napari placement of the ``--labels`` file, kept when the scored labels are written over it
    (``--out`` is the folder ``ihcseg segment`` wrote them to); refused when they would replace it with
    other labels (``--split-components``)."""
    from napari_ihcseg.io.labels import labels_placement
    from napari_ihcseg.io.names import image_stem
    from napari_ihcseg.pipeline.outputs import OUTPUT_SUFFIXES

    target = out / (image_stem(args.image) + OUTPUT_SUFFIXES["labels"])
    source = Path(args.labels).expanduser()
    if not (target.exists() and target.resolve() == source.resolve()):
        return None
    if labels is not read and not np.array_equal(labels, read):
        raise CLIError(f"{source}: --out {out} would replace these labels with their split components; "
                       "choose another --out folder to keep them")
    return labels_placement(source)


def _write_set(out: Path, stem: str, result, labels: np.ndarray, placement: dict | None = None) -> dict[str, Path]:
    """Write the scored labels and their exports as one set, replacing the stem's old outputs as a unit.

    The labels scored are written too (``<stem>.labels.tif``), so the folder
    never holds a summary beside the labels of another run; an earlier
    overlay of the stem (coloured by the old scores) leaves with the old set.
    Probability maps, the model's output whatever the scoring, stay.
    """
    from napari_ihcseg.io.labels import write_labels
    from napari_ihcseg.output_set import OutputSet
    from napari_ihcseg.pipeline.outputs import OUTPUT_SUFFIXES
    from napari_ihcseg.scoring import write_exports

    try:
        suffixes = {k: v for k, v in OUTPUT_SUFFIXES.items() if k not in ("mask_prob", "contour_prob")}
        with OutputSet(out, stem, suffixes) as staged:
            write_labels(staged["labels"], labels, placement=placement)
            write_exports(staged["summary"].parent, stem, result.cells, result.summary, labels)
    except OSError as exc:
        name = Path(exc.filename).name if getattr(exc, "filename", None) else ""
        where = out / name if name.startswith(stem) else out
        raise CLIError(f"{where}: cannot write the results ({exc.strerror or exc}); "
                       f"the outputs of {stem} already there are left as they were") from None
    final = {key: out / path.name for key, path in staged.items()}
    return {key: final[key] for key in ("labels", "cells", "summary", "geojson")}


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``score`` sub-command."""
    parser = subparsers.add_parser(
        "score",
        help="score nuclei (positive %%, H-score, Allred, Ki-67 index) from an image and its labels",
        description="Measure the DAB intensity of every labelled nucleus, classify it 0/1+/2+/3+ "
                    "and write <stem>.cells.csv, <stem>.summary.json and a QuPath GeoJSON of the "
                    "nuclei into --out. Definitions: docs/scoring.md.",
    )
    parser.add_argument("image", metavar="IMAGE", help="RGB bright-field image (hematoxylin + DAB)")
    parser.add_argument("--labels", required=True, metavar="LABELS",
                        help="nucleus label image (0 background, 1..N nuclei), e.g. from ihcseg segment")
    parser.add_argument("--stain", required=True, type=str.lower,
                        choices=("er", "pr", "ki67"), help="stain preset: thresholds and interpretation")
    parser.add_argument("--thresholds", metavar="T1,T2,T3", default=None,
                        help="DAB OD cuts of 1+, 2+, 3+ (default: the classifier calibrated for the "
                             "stain in the --model checkpoint, else the stain's preset)")
    parser.add_argument("--model", default=None, metavar="MODEL",
                        help="the checkpoint (shipped name or folder) whose calibrated classifier calls "
                             "nuclei positive; use the one that made the labels (default: the default "
                             "shipped checkpoint)")
    parser.add_argument("--roi", metavar="ROI.geojson", default=None,
                        help="score only nuclei whose centroid lies in these polygons "
                             "(e.g. QuPath annotations)")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                        help="pixel size in micrometres (adds area in um^2; area limits become um^2)")
    parser.add_argument("--min-area", type=float, default=None, metavar="A",
                        help="smallest nucleus area scored (pixels, or um^2 with --pixel-size)")
    parser.add_argument("--max-area", type=float, default=None, metavar="A",
                        help="largest nucleus area scored (pixels, or um^2 with --pixel-size)")
    parser.add_argument("--estimate-stains", action="store_true",
                        help="estimate the stain vectors from the image (Macenko) instead of the "
                             "Ruifrok-Johnston defaults")
    parser.add_argument("--split-components", action="store_true",
                        help="score each connected region of LABELS as a nucleus: for a binary 0/1 mask, "
                             "which would otherwise count as one nucleus (touching nuclei stay one)")
    parser.add_argument("--min-cells", type=int, default=500, metavar="N",
                        help="warn when fewer cells are counted (default 500, the IKWG's advice)")
    parser.add_argument("--ki67-cutoff", type=float, default=None, metavar="PCT",
                        help="Ki-67 index cut-off in percent: call high/low, uncertain inside the 95%% CI")
    parser.add_argument("--hotspot-diameter", type=float, default=None, metavar="UM",
                        help="Ki-67 hot-spot circle diameter in micrometres, with --pixel-size (default 500)")
    parser.add_argument("--hotspot-cells", type=int, default=500, metavar="N",
                        help="without --pixel-size, the hot spot is the N nearest cells of a point (default 500)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.set_defaults(func=run)
    return parser
