"""``ihcseg train``: train or fine-tune a model on training pairs and real data sets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_ihcseg.training.learning_rates import FINETUNE_LR, SCRATCH_LR, default_lr

from ._common import EXIT_INTERRUPTED, EXIT_OK, CLIError, load_data, output_dir, print_error

#: The options that may change when a saved run is continued with ``--resume --out FOLDER`` alone,
#: and the config field each sets.
_RESUMABLE = {"epochs": "epochs", "device": "device", "threads": "num_threads", "checkpoint_minutes": "checkpoint_minutes"}
#: What else such a call may hold.
_RESUME_OPTIONS = ("out", "resume", "func", "command", *_RESUMABLE)

DESCRIPTION = """\
Train (or fine-tune) a nucleus model and write a checkpoint folder with a
model card, metrics.csv and a resumable state.

DATASET is a folder in one of the layouts labs already have, found from its
files and named when training starts: the napari widget's training pairs
(images/, masks/, dataset.json); images/ + masks/ matched by file stem;
Cellpose style X.png + X_masks.png|tif; QuPath exports X.png + X.geojson of
nucleus polygons; point counts X.png + X.csv. Pairs with a problem are skipped
with a message naming the file. Or a public set named KIND:PATH with KIND one
of monuseg, cpm15, gbm, deepliif, immunoratio, glioma. More sets join with
--extra-data; sets for validation only with --val-data. Validation images are
held out by image. Point-annotated samples are learnt from pseudo-instances
grown from their points (--point-method).

A run stopped (Ctrl-C, the Train panel's Cancel) continues with
  ihcseg train --resume --out FOLDER
which takes everything else from FOLDER/run.json (--epochs, --device,
--threads and --checkpoint-minutes may be given to change them, and
--model the new place of a fine-tune's base checkpoint folder, if it moved:
its weights must be those the run started from).

--model takes a registered architecture (harunet-lite, r2unet-lite, ...) to
train from scratch, or a checkpoint folder to fine-tune. unet-resnet50 can
start from ImageNet weights for its encoder, read from a file you give with
--encoder-weights (nothing is downloaded).
"""


def register(subparsers) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser("train", help="train or fine-tune a model", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="DATASET", nargs="?", default=None,
                   help="training folder (any known layout), or KIND:PATH (not with --resume alone)")
    p.add_argument("--model", default=None,
                   help="architecture name (trains from scratch), or a shipped checkpoint name or a checkpoint "
                        "folder to fine-tune (required unless resuming a saved run)")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (required unless resuming)")
    p.add_argument("--encoder-weights", default=None, metavar="FILE",
                   help="ImageNet weights for the encoder of an architecture that has one (unet-resnet50): a "
                        "torchvision-style ResNet-50 state dict, .safetensors or .pth (read without unpickling "
                        "code)")
    p.add_argument("--out", required=True, help="output folder (checkpoint, metrics.csv, state)")
    p.add_argument("--extra-data", action="append", default=[], metavar="KIND:PATH",
                   help="more training data (repeatable)")
    p.add_argument("--val-data", action="append", default=[], metavar="KIND:PATH",
                   help="data used only for validation (repeatable)")
    p.add_argument("--val-split", type=float, default=0.2, help="fraction of images held out (default 0.2)")
    p.add_argument("--val-names", default=None,
                   help="comma-separated image names to hold out instead of --val-split")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps (default auto)")
    p.add_argument("--tile", type=int, default=256, help="training tile size, multiple of 32 (default 256)")
    p.add_argument("--stride", type=int, default=None, help="tile grid step (default: the tile size)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--lr", type=float, default=None,
                   help=f"peak learning rate (default {SCRATCH_LR:g} from scratch, {FINETUNE_LR:g} when fine-tuning)")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--synthetic-fraction", type=float, default=0.1,
                   help="fraction of crops that are synthetic IHC fields (default 0.1)")
    p.add_argument("--no-stain-transfer", action="store_true", help="disable H&E to IHC stain transfer")
    p.add_argument("--augment", action="append", default=[], metavar="FIELD=VALUE",
                   help="set one augmentation field, e.g. p_granular_dab=0 or blur_sigma=0.4,2.2 (repeatable; "
                        "fields in docs/training.md)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap on steps per epoch")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0,
                   help="save resumable state at least this often (default 10)")
    p.add_argument("--point-method", choices=("watershed", "disk"), default="watershed",
                   help="how point annotations become training targets (default watershed; docs/training.md)")
    p.add_argument("--self-training", action="store_true",
                   help="refine the point targets with the starting model's own nuclei: one that holds exactly "
                        "one point replaces that point's grown nucleus (a self-training round; docs/training.md)")
    p.add_argument("--nucleus-diameter", type=float, default=24.0,
                   help="typical nucleus diameter in pixels at the training scale, for point targets (default 24)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-amp", action="store_true", help="train in float32 (no bf16 autocast)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from the state in --out")
    p.set_defaults(func=run, option_defaults={a.dest: a.default for a in p._actions if a.dest != "help"})


class _Bar:
    """A tqdm bar over all steps on a terminal, one log line per epoch otherwise."""

    def __init__(self) -> None:
        self.bar = None
        self.tty = sys.stderr.isatty()

    def __call__(self, event) -> None:
        if event.phase == "train" and self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=event.total_steps, initial=event.global_step - 1, unit="step",
                                desc="train", file=sys.stderr, dynamic_ncols=True)
            self.bar.n = event.global_step
            self.bar.set_postfix(epoch=f"{event.epoch + 1}/{event.epochs}", loss=f"{event.loss:.4f}",
                                 eta=_hms(event.eta_seconds), refresh=False)
            self.bar.refresh()
        elif event.phase == "validate":
            m = event.metrics or {}
            text = (f"epoch {event.epoch}/{event.epochs}: loss {m.get('train_loss', float('nan')):.4f}"
                    + "".join(f", val {k} {m[f'val_{k}']:.4f}" for k in ("dice", "aji", "pq") if f"val_{k}" in m))
            self._say(text)
        elif event.phase == "tune":
            self._say("tuning the instance thresholds and minimum size on the validation images")
        elif event.phase == "done" and self.bar is not None:
            self.bar.close()

    def _say(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _spec(text: str) -> str:
    from napari_ihcseg.datasets.registry import split_spec

    try:
        kind, path = split_spec(text)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    target = Path(path).expanduser()
    if not target.exists():
        raise CLIError(f"{target}: no such data folder")
    # Recorded absolute in run.json, so that resuming from another working folder reads the same data.
    resolved = str(target.resolve())
    return resolved if path == text else f"{kind}:{resolved}"


def _encoder_options(model: str, encoder_weights: str | None, finetune: bool) -> dict:
    """The ``model_options`` that make ``model`` start from the encoder weights in a file."""
    if encoder_weights is None:
        return {}
    import dataclasses

    from napari_ihcseg.models.registry import get_spec

    if finetune:
        raise CLIError("--encoder-weights: a checkpoint is fine-tuned from its own weights; give an "
                       "architecture to train from scratch (unet-resnet50)")
    if "encoder_weights" not in {f.name for f in dataclasses.fields(get_spec(model).config_class)}:
        raise CLIError(f"--encoder-weights: {model} has no pretrained encoder; it applies to unet-resnet50")
    # A missing or wrong file is refused by the model itself, before training starts.
    return {"encoder_weights": str(Path(encoder_weights).expanduser().resolve())}


#: Config fields whose option is not ``--`` + the field's name with dashes.
_OPTIONS = {"num_threads": "--threads", "val_fraction": "--val-split"}


def _option_message(text: str) -> str:
    """A config's message with its field (``TrainConfig.lr``) named as the option that set it (``--lr``)."""
    import re

    return re.sub(r"\b(?:TrainConfig|PointTargetConfig)\.(\w+)", lambda m: _OPTIONS.get(m[1], "--" + m[1].replace("_", "-")), text)


def run(args: argparse.Namespace) -> int:
    from napari_ihcseg.training.augment import AugmentConfig, with_overrides
    from napari_ihcseg.training.points import PointTargetConfig
    from napari_ihcseg.inference.planning import SIZE_MULTIPLE
    from napari_ihcseg.training.prepare import check_output_folder
    from napari_ihcseg.training.trainer import TrainConfig, base_checkpoint

    try:
        check_output_folder(Path(args.out).expanduser(), resume=args.resume, new_folder="choose another --out folder",
                            resume_it="add --resume to continue it")
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.dataset is None and args.resume:
        return _train(_saved_config(args), resume=True)
    missing = [name for name, value in (("DATASET", args.dataset), ("--model", args.model),
                                        ("--epochs", args.epochs)) if value is None]
    if missing:
        raise CLIError(f"{', '.join(missing)} required (or --resume --out FOLDER alone, to continue the run "
                       f"saved there)")
    out = output_dir(args.out)
    if args.tile % SIZE_MULTIPLE or args.tile < 2 * SIZE_MULTIPLE:
        raise CLIError(f"--tile must be a multiple of {SIZE_MULTIPLE} and at least {2 * SIZE_MULTIPLE}, "
                       f"got {args.tile}")
    if args.patience < 0:
        raise CLIError(f"--patience must be 0 (no early stopping) or more, got {args.patience}")
    model = _model_spec(args.model)
    finetune = base_checkpoint(model) is not None
    model_options = _encoder_options(model, args.encoder_weights, finetune)
    lr = args.lr if args.lr is not None else default_lr(finetune)
    augment = AugmentConfig(p_stain_transfer=0.0) if args.no_stain_transfer else AugmentConfig()
    try:
        augment = with_overrides(augment, args.augment)
    except ValueError as exc:
        raise CLIError(f"--{exc}") from None
    val_names = tuple(n.strip() for n in args.val_names.split(",") if n.strip()) if args.val_names else None
    try:
        config = TrainConfig(
            out=str(out), model=model, model_options=model_options, train_data=(_spec(args.dataset), *map(_spec, args.extra_data)),
            val_data=tuple(map(_spec, args.val_data)), val_fraction=args.val_split, val_names=val_names,
            epochs=args.epochs, batch_size=args.batch_size, tile=args.tile, stride=args.stride, lr=lr,
            warmup_steps=args.warmup_steps, device=args.device, amp=not args.no_amp, num_threads=args.threads,
            seed=args.seed, synthetic_fraction=args.synthetic_fraction, checkpoint_minutes=args.checkpoint_minutes,
            patience=args.patience or None, max_steps_per_epoch=args.max_steps_per_epoch, augment=augment,
            points=PointTargetConfig(method=args.point_method, nucleus_diameter=args.nucleus_diameter,
                                     self_training=args.self_training))
    except ValueError as exc:  # an option out of range: said before any data is read or model built
        raise CLIError(_option_message(str(exc))) from None
    return _train(config, resume=args.resume)


def _model_spec(model: str) -> str:
    """``--model`` as the run records it: a checkpoint folder of one's own absolute, as the data are."""
    from napari_ihcseg.models.shipped import is_shipped_path
    from napari_ihcseg.training.trainer import base_checkpoint

    try:
        base = base_checkpoint(model)
    except ValueError as exc:
        raise CLIError(f"--model: {exc}") from None
    return str(base.resolve()) if base is not None and not is_shipped_path(base) else model


def _saved_config(args: argparse.Namespace):
    """The configuration of the run saved in ``--out``, with the few options that may change applied."""
    import dataclasses

    from napari_ihcseg._json_file import read_json
    from napari_ihcseg.training.prepare import RUN_JSON
    from napari_ihcseg.training.trainer import TrainConfig

    given = sorted("--" + k.replace("_", "-") for k, v in vars(args).items()
                   if k not in (*_RESUME_OPTIONS, "model") and k in args.option_defaults
                   and v != args.option_defaults[k])
    if given:
        raise CLIError(f"{', '.join(given)}: --resume without DATASET continues the run saved in --out with its "
                       f"own options (from {RUN_JSON}); give the whole command to change them")
    path = Path(args.out).expanduser() / RUN_JSON
    try:
        config = TrainConfig.from_dict(read_json(path)["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CLIError(f"{path}: cannot read the saved run ({exc})") from None
    changes = {field: getattr(args, option) for option, field in _RESUMABLE.items()
               if getattr(args, option) != args.option_defaults[option]}
    changes["out"] = str(output_dir(args.out))  # the folder may have been moved since
    if args.model is not None:  # a fine-tune's base checkpoint moved (the trainer checks its weights)
        changes["model"] = _model_spec(args.model)
    try:
        return dataclasses.replace(config, **changes) if changes else config
    except ValueError as exc:
        raise CLIError(_option_message(str(exc))) from None


def _train(config, *, resume: bool) -> int:
    """Run ``config`` (reading its data), report the checkpoint; exit code."""
    from napari_ihcseg.training.trainer import TrainingInterrupted, train

    out = Path(config.out)
    try:
        result = train(config, train_samples=load_data(config.train_data), resume=resume, progress=_Bar())
    except (ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    except TrainingInterrupted as stop:
        print_error(f"interrupted at step {stop.global_step}; the training state is saved in "
                    f"{stop.out / 'state'}; to continue: ihcseg train --resume --out {stop.out}")
        return EXIT_INTERRUPTED
    if result.best_checkpoint is None:
        raise CLIError("training stopped before the first epoch ended; no checkpoint was written "
                       f"(resume with --resume --out {out})", exit_code=1)
    best = result.best_metrics or {}
    figures = ", ".join(f"{k} {best[f'val_{k}']:.4f}" for k in ("dice", "aji", "pq") if f"val_{k}" in best)
    print(f"checkpoint: {result.best_checkpoint}" + (f" (epoch {best.get('epoch')}: {figures})" if figures else ""))
    if result.instance_params:
        print("instance settings: " + ", ".join(f"{k} {v:g}" for k, v in result.instance_params.items())
              + " (tuned on the validation images; stored in the checkpoint)")
    print(f"metrics: {out / 'metrics.csv'}")
    return EXIT_OK
