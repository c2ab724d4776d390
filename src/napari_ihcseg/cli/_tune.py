"""``ihcseg tune``: choose a checkpoint's instance thresholds and minimum size on annotated images."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from ._common import EXIT_OK, CLIError

DESCRIPTION = """\
Choose the mask threshold, contour threshold and minimum nucleus size that
best reproduce annotated images with a model (the best mean of AJI and PQ
over a grid of 60 settings), and store them in the checkpoint. Segmenting
with that checkpoint then uses them wherever the options are not given.

DATASET is a training-pair folder written by the napari widget (images/,
masks/, dataset.json), or a public set named KIND:PATH (monuseg, cpm15, gbm,
deepliif); every image with instance labels is used. The model's weights are
not changed. A checkpoint folder is updated in place unless --out is given;
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
    p.set_defaults(func=run)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _staged_copy(source: Path, out: Path) -> Path:
    """A copy of the checkpoint in a hidden folder beside ``out``, with the usual permissions."""
    if out.is_symlink() or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise CLIError(f"{out}: already exists and is not an empty folder; choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    except OSError as exc:
        raise CLIError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private
        for name in ("weights.safetensors", "config.json"):
            shutil.copy2(source / name, staging / name)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError):
            raise CLIError(f"{out}: cannot copy the checkpoint there ({exc.strerror or exc})") from None
        raise
    return staging


def run(args: argparse.Namespace) -> int:
    from napari_ihcseg.data.datasets import load_dataset
    from napari_ihcseg.device import resolve_device
    from napari_ihcseg.models import list_models, read_checkpoint_config, shipped_checkpoints
    from napari_ihcseg.models.shipped import WEIGHTS_DIR
    from napari_ihcseg.training.validate import tune_checkpoint

    shipped = shipped_checkpoints()
    if args.model in list_models():
        raise CLIError(f"--model {args.model} is an untrained architecture; tune a trained checkpoint")
    source = Path(shipped.get(args.model, Path(args.model).expanduser()))
    try:
        read_checkpoint_config(source)
    except ValueError as exc:
        raise CLIError(f"--model: {exc}") from None
    out = Path(args.out).expanduser() if args.out is not None else None
    if out is None and _inside(source, Path(WEIGHTS_DIR)):
        raise CLIError(f"--model {args.model} is a shipped checkpoint, which is never changed; "
                       "give --out DIR for a tuned copy")
    if out is not None and _inside(out, Path(WEIGHTS_DIR)):
        raise CLIError(f"--out {out}: inside the package's shipped checkpoints; choose a folder of your own")
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(f"--device: {exc}") from None
    try:
        samples = load_dataset(args.dataset)
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc)) from None
    if not any(s.labels is not None and s.labels.max() > 0 for s in samples):
        raise CLIError(f"{args.dataset}: no image with annotated nuclei to tune on")

    # A copy is tuned before it takes its name, so a failed or interrupted run leaves no half-made model.
    folder = _staged_copy(source, out) if out is not None else source
    try:
        result = tune_checkpoint(folder, samples, device=device)
        if result is None:
            raise ValueError(f"{args.dataset}: no image with instance labels to tune on")
        if out is not None:
            if out.exists():
                out.rmdir()
            os.replace(folder, out)
            folder = out
    except BaseException as exc:
        if out is not None and folder != out:
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, ValueError):
            raise CLIError(str(exc)) from None
        raise
    print(f"{folder}: " + ", ".join(f"{k} {v:g}" for k, v in result.params.items()))
    print(f"mean of AJI and PQ {result.score:.4f} on {result.images} image(s); "
          f"{result.default_score:.4f} with the defaults")
    return EXIT_OK
