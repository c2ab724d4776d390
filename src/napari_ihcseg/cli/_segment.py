"""``ihcseg segment``: one-click segmentation (and scoring) of image files."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from napari_ihcseg.inference.planning import DEFAULT_OVERLAP, DEFAULT_TILE, SIZE_MULTIPLE

from ._common import (EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, CLIError, output_dir, parse_scale, parse_thresholds,
                      progress_bar)

STAINS = ("er", "pr", "ki67")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, tiling and scoring options shared by ``segment`` and ``batch``."""
    parser.add_argument("--model", default=None,
                        help="shipped checkpoint name, checkpoint folder, or architecture "
                             "(default: the best shipped checkpoint for the device)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="where the model runs (default: auto = CUDA, then MPS, then CPU)")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help="largest tile side in pixels: tiles hold at most tile² pixels and are fitted to "
                             f"each image (default {DEFAULT_TILE})")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                        help=f"least overlap of neighbouring tiles in pixels (default {DEFAULT_OVERLAP})")
    parser.add_argument("--mask-threshold", type=float, default=None,
                        help="nucleus probability threshold (default: tuned for the model, else 0.5)")
    parser.add_argument("--contour-threshold", type=float, default=None,
                        help="contour probability threshold (default: tuned for the model, else 0.5)")
    parser.add_argument("--min-size", type=int, default=None,
                        help="smallest nucleus kept, in pixels (default: tuned for the model, else 16)")
    parser.add_argument("--scale", default="auto", metavar="FACTOR",
                        help="resize the image by FACTOR before the model, 0.25 to 8: 2 for images at half the "
                             "magnification the model was trained at, e.g. 20x images with a 40x model "
                             "(default auto: from the file's pixel size, else from the size of the nuclei "
                             "a first pass finds; 1 for whole slides)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average each tile's prediction with its three flips "
                             "(four times slower; smoother outlines, fewer split nuclei)")
    parser.add_argument("--stain", choices=STAINS, default=None,
                        help="score the nuclei for this stain (writes scores, GeoJSON)")
    parser.add_argument("--thresholds", default=None, metavar="A,B,C",
                        help="DAB OD cuts of 1+, 2+, 3+ (default: the model's calibrated classifier for "
                             "the stain, else the stain's preset)")
    parser.add_argument("--roi", default=None, metavar="ROI.geojson",
                        help="count only nuclei inside these polygons")
    parser.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                        help="pixel size in micrometres (default: from the file)")
    parser.add_argument("--estimate-stains", action="store_true",
                        help="estimate the stain vectors per image instead of the standard H-DAB ones")
    parser.add_argument("--overlay", action="store_true",
                        help="also write <stem>.overlay.png, outlines coloured by class with a legend")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write the mask and contour probabilities as TIFF")


def options_from_args(args: argparse.Namespace):
    """Build :class:`~napari_ihcseg.pipeline.PipelineOptions` from parsed arguments."""
    from napari_ihcseg.inference.autoscale import is_auto
    from napari_ihcseg.inference.config import InferenceConfig
    from napari_ihcseg.pipeline import PipelineOptions
    from napari_ihcseg.pixel_size import check_pixel_size_um
    from napari_ihcseg.scoring import ESTIMATE, ScoringConfig

    if args.tile < SIZE_MULTIPLE or args.tile % SIZE_MULTIPLE:
        raise CLIError(f"--tile: must be a multiple of {SIZE_MULTIPLE}, got {args.tile}")
    if not 0 <= args.overlap < args.tile:
        raise CLIError(f"--overlap: must be between 0 and the tile size, got {args.overlap}")
    thresholds = parse_thresholds(args.thresholds)
    if thresholds is not None and args.stain is None:
        raise CLIError("--thresholds needs --stain")
    if args.roi is not None:
        from napari_ihcseg.scoring.regions import region_from_geojson

        if not Path(args.roi).is_file():
            raise CLIError(f"{args.roi}: no such ROI file")
        try:
            region_from_geojson(args.roi)  # read now: a bad file must not wait for the first image's model run
        except (OSError, ValueError) as exc:
            raise CLIError(f"--roi: {exc}") from None
    if args.pixel_size is not None:
        try:
            check_pixel_size_um(args.pixel_size, "--pixel-size")
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    scale = parse_scale(args.scale)
    try:
        inference = InferenceConfig(
            device=args.device, tile=args.tile, overlap=args.overlap, mask_threshold=args.mask_threshold,
            contour_threshold=args.contour_threshold, min_size=args.min_size,
            scale=1.0 if is_auto(scale) else scale, tta=args.tta)
        scoring = None
        if args.stain is not None:
            scoring = ScoringConfig(stain=args.stain, thresholds=thresholds,
                                    **({"stain_vectors": ESTIMATE} if args.estimate_stains else {}))
        # Thresholds given on the command line classify the nuclei, not the checkpoint's classifier.
        return PipelineOptions(
            model=args.model, inference=inference, auto_scale=is_auto(scale), scoring=scoring,
            model_classifier=thresholds is None, roi=args.roi, pixel_size_um=args.pixel_size,
            save_probabilities=args.save_probabilities, overlay=args.overlay,
        )
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def load_model_or_fail(options):
    """Load the model once for all inputs; a bad spec or device is a usage error."""
    import warnings

    from napari_ihcseg.pipeline import resolve_model

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, name = resolve_model(options.model, options.inference.device)
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    for w in caught:
        print(f"ihcseg: warning: {w.message}", file=sys.stderr)
    return model, name


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment", help="segment nuclei in images (and score them with --stain)",
        description="Segment the nuclei of each IMAGE and write DIR/<stem>.labels.tif, "
                    "<stem>.cells.csv and <stem>.summary.json (plus scores, GeoJSON and an "
                    "overlay on request). A file that fails is reported and skipped.",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, TIFF, OME-TIFF or SVS files")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_pipeline_arguments(parser)
    parser.set_defaults(func=run)


def _refuse_scaled_slides(images, scale: float) -> None:
    """A usage error, before any model loads, when ``--scale`` is asked of a whole slide."""
    from napari_ihcseg.io import ImageReadError, open_image
    from napari_ihcseg.pipeline import LARGE_IMAGE_PIXELS

    for path in images:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with open_image(path) as lazy:
                    h, w = lazy.shape[:2]
        except (ImageReadError, OSError, ValueError):
            continue  # reported with the other per-file errors
        if h * w > LARGE_IMAGE_PIXELS:
            raise CLIError(f"{path}: --scale {scale:g} is supported for images segmented in memory only, not "
                           f"for whole slides ({h}×{w} pixels); use --scale 1")


def run(args: argparse.Namespace) -> int:
    from napari_ihcseg.device import describe_device, resolve_device
    from napari_ihcseg.io import ImageReadError, ImageWarning
    from napari_ihcseg.output_set import check_stems
    from napari_ihcseg.pipeline import process_image

    options = options_from_args(args)
    out = output_dir(args.out)
    try:
        check_stems(args.images)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    missing = [p for p in args.images if not Path(p).exists()]
    if missing and len(missing) == len(args.images):
        raise CLIError(f"{missing[0]}: no such file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    try:
        device = resolve_device(options.inference.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if not options.auto_scale and options.inference.scale != 1.0:
        _refuse_scaled_slides(args.images, options.inference.scale)
    model, name = load_model_or_fail(options)
    print(f"model {name} on {describe_device(device)}", file=sys.stderr)

    failed = 0
    unreadable = 0
    for path in args.images:
        started = time.perf_counter()
        bar = progress_bar(1, Path(path).name)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ImageWarning)
                summary = process_image(path, out, options, model=model, model_name=name, progress=bar)
        except ImageReadError as exc:
            print(f"ihcseg: error: {exc}", file=sys.stderr)
            failed += 1
            unreadable += 1
            continue
        except FileNotFoundError:
            print(f"ihcseg: error: {path}: no such file", file=sys.stderr)
            failed += 1
            unreadable += 1
            continue
        except Exception as exc:  # noqa: BLE001 - one line per failed file, then the next file
            print(f"ihcseg: error: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        said = [str(w.message) for w in caught]
        for message in said:
            print(f"ihcseg: warning: {message}", file=sys.stderr)
        line = f"{path}: {summary['n_nuclei']} nuclei"
        if options.stain and summary.get("positive_percent") is not None:
            line += f", {summary['positive_percent']:.1f} % positive, H-score {summary['h_score']:.0f}"
            if summary.get("allred_total_score") is not None:
                line += f", Allred {summary['allred_total_score']}"
        print(f"{line} ({time.perf_counter() - started:.1f} s)")
        for message in summary.get("warnings") or ():  # the scale's and the scores' (when not to trust them)
            if message not in said:
                print(f"ihcseg: warning: {path}: {message}", file=sys.stderr)
    if failed == 0:
        return EXIT_OK
    if unreadable == len(args.images):
        return EXIT_USAGE
    return EXIT_SOME_FAILED
