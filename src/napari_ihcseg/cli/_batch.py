"""``ihcseg batch``: score a folder (or list) of slides on a Dask cluster, resumably."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import EXIT_OK, EXIT_SOME_FAILED, CLIError, output_dir, print_error, progress_bar
from ._segment import add_pipeline_arguments, options_from_args

#: Worker processes of the local cluster when --workers is not given.
DEFAULT_WORKERS = 2


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "batch", help="score every slide of a folder or list on a Dask cluster (resumable)",
        description="Segment (and score, with --stain) every slide of INPUT on a Dask cluster: a local "
                    "one with --workers processes, or a running scheduler with --scheduler. Each slide "
                    "gets the outputs of 'ihcseg segment' in DIR and a row in DIR/cohort.csv. Slides "
                    "whose outputs are complete are skipped, so a stopped batch resumes; a slide that "
                    "fails is reported and the others go on.",
    )
    parser.add_argument("input", metavar="INPUT_DIR|LIST.txt",
                        help="a folder of slides (PNG, JPEG, TIFF, OME-TIFF, SVS, BTF) or a text file "
                             "with one slide path per line (relative to the file; # starts a comment)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes of the local cluster, one thread each (default 2)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="use a running Dask scheduler, e.g. tcp://host:8786 (dask scheduler, "
                            "dask-jobqueue, Kubernetes); every worker must see INPUT and DIR")
    parser.add_argument("--memory-limit", default="4GB", metavar="SIZE",
                        help="memory limit of each local worker (default 4GB; 'auto' shares the RAM)")
    parser.add_argument("--force", action="store_true",
                        help="redo every slide, also those whose outputs are complete")
    add_pipeline_arguments(parser)
    parser.set_defaults(func=run)


def _check_model(options, local: bool) -> None:
    """Fail early on a model or device the workers could not load; warn about an untrained model."""
    from napari_ihcseg.device import resolve_device
    from napari_ihcseg.models import default_checkpoint_name, list_models, load_checkpoint, shipped_checkpoints
    from napari_ihcseg.pipeline import FALLBACK_ARCH

    if local:  # a remote worker may have a device this machine lacks
        try:
            resolve_device(options.inference.device)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    spec = options.model
    if spec is None:
        if default_checkpoint_name(options.inference.device if local else "cpu") is None:
            print(f"ihcseg: warning: no trained checkpoint is shipped; using an untrained {FALLBACK_ARCH} "
                  "(its nuclei are meaningless until it is trained)", file=sys.stderr)
        return
    if spec in shipped_checkpoints():
        return
    if Path(spec).expanduser().is_dir():
        try:  # loaded once here (checksum, sizes, tensors), so a damaged file stops the batch, not each slide
            load_checkpoint(Path(spec).expanduser(), device="cpu")
        except (ValueError, OSError) as exc:
            raise CLIError(f"--model: {exc}") from None
        return
    if spec in list_models():
        print(f"ihcseg: warning: {spec!r} is an architecture, not a trained checkpoint: the model has "
              "random weights and its output is meaningless until it is trained", file=sys.stderr)
        return
    shipped = ", ".join(shipped_checkpoints()) or "none shipped"
    raise CLIError(f"--model: {spec!r} is not a shipped checkpoint ({shipped}), a checkpoint folder "
                   f"or an architecture ({', '.join(list_models())})")


def run(args: argparse.Namespace) -> int:
    from napari_ihcseg.batch import find_slides, run_batch

    options = options_from_args(args)
    workers = DEFAULT_WORKERS if args.workers is None else args.workers
    if workers < 1:
        raise CLIError(f"--workers: must be at least 1, got {workers}")
    try:
        slides = find_slides(args.input)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    out = output_dir(args.out)
    _check_model(options, local=args.scheduler is None)
    where = f"scheduler {args.scheduler}" if args.scheduler else f"{workers} local worker(s)"
    print(f"{len(slides)} slide(s) on {where}", file=sys.stderr)

    def on_slide(result) -> None:
        if result.status == "failed":
            print_error(f"{result.slide}: {result.error}")
        elif result.status == "ok":
            for note in (result.summary or {}).get("warnings") or ():
                print(f"ihcseg: warning: {result.slide}: {note}", file=sys.stderr)

    def notify(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        report = run_batch(slides, out, options, workers=workers, scheduler=args.scheduler,
                           memory_limit=args.memory_limit, force=args.force,
                           progress=progress_bar(len(slides), "slides", unit="slide"),
                           on_slide=on_slide, notify=notify)
    except (ValueError, ConnectionError) as exc:
        raise CLIError(str(exc)) from None
    counts = report.counts
    print(f"{counts['ok']} scored, {counts['skipped']} already done, {counts['failed']} failed "
          f"in {report.seconds:.1f} s; cohort report: {report.cohort_path}")
    return EXIT_OK if report.all_done else EXIT_SOME_FAILED
