"""``ihcseg tune``: choose a checkpoint's instance thresholds and minimum size on annotated images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import EXIT_OK, CLIError, load_data, parse_scale

DESCRIPTION = """\
Choose the mask threshold, contour threshold and minimum nucleus size that
best reproduce annotated images with a model (the best mean of AJI and PQ
over a grid of 60 settings), and store them in the checkpoint. Segmenting
with that checkpoint then uses them wherever the options are not given.

DATASET is a training folder in any layout `ihcseg train` reads (the napari
widget's training pairs, images/ + masks/, Cellpose, QuPath exports), or a
public set named KIND:PATH (monuseg, cpm15, gbm, deepliif); every image with
instance labels is used. Each image is predicted at the scale `ihcseg
segment` would use (--scale, default auto: from the pixel size its file or
the pairs' manifest records, else from the size of the nuclei a first pass
finds), so the settings suit the probabilities they will be applied to; the smallest nucleus is stored in the model's pixels. The
model's weights are not changed. A checkpoint folder is updated in place unless --out is given;
a shipped checkpoint is copied to --out first (the package's own copy is
never changed).
"""


def register(subparsers) -> None:
    """Add the ``tune`` sub-command."""
    p = subparsers.add_parser("tune", help="tune a checkpoint's instance settings on annotated images",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="DATASET", help="training-pair folder, or KIND:PATH")
    p.add_argument("--model", required=True, help="a shipped checkpoint name or a checkpoint folder")
    p.add_argument("--out", default=None,
                   help="write a tuned copy of the checkpoint here (required for a shipped checkpoint)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
    p.add_argument("--scale", default="auto", metavar="FACTOR",
                   help="resize each image by FACTOR before the model, as `ihcseg segment --scale` does "
                        "(default auto: chosen per image from its pixel size, else the size of its nuclei)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_ihcseg.device import resolve_device
    from napari_ihcseg.models import read_checkpoint_config
    from napari_ihcseg.models.shipped import checkpoint_folder, is_shipped_path
    from napari_ihcseg.training.validate import tune_checkpoint, tune_checkpoint_copy

    try:
        source = checkpoint_folder(args.model)
        if source is None:
            raise CLIError(f"--model {args.model} is an untrained architecture; tune a trained checkpoint")
        read_checkpoint_config(source)
    except ValueError as exc:
        raise CLIError(f"--model: {exc}") from None
    scale = parse_scale(args.scale)
    out = Path(args.out).expanduser() if args.out is not None else None
    if out is None and is_shipped_path(source):
        raise CLIError(f"--model {args.model} is a shipped checkpoint, which is never changed; "
                       "give --out DIR for a tuned copy")
    if out is not None and is_shipped_path(out):
        raise CLIError(f"--out {out}: inside the package's shipped checkpoints; choose a folder of your own")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}") from None
    try:
        samples = load_data([args.dataset])
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc)) from None
    if not any(s.labels is not None and s.labels.max() > 0 for s in samples):
        raise CLIError(f"{args.dataset}: no image with annotated nuclei to tune on")
    try:
        if out is None:
            result, folder = tune_checkpoint(source, samples, device=device, scale=scale), source
        else:
            result, folder = tune_checkpoint_copy(source, out, samples, device=device, scale=scale), out
    except FileExistsError as exc:
        raise CLIError(f"{exc}; choose another --out") from None
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"{out or source}: cannot write the checkpoint ({exc.strerror or exc})") from None
    print(f"{folder}: " + ", ".join(f"{k} {v:g}" for k, v in result.params.items()))
    print(f"mean of AJI and PQ {result.score:.4f} on {result.images} image(s); "
          f"{result.default_score:.4f} with the defaults")
    counts = {s: result.scales.count(s) for s in sorted(set(result.scales))}
    print("predicted at scale " + ", ".join(f"{s:g} ({n} image{'s' if n > 1 else ''})" for s, n in counts.items()))
    return EXIT_OK
