"""Train the shipped default weights: the reproducible recipe.

Data (read-only, from ``../shared/data`` beside the repository or
``--data-root``): MoNuSeg 2018 training images (13 with Aperio XML instances,
17 with binary masks only, trained without contour loss), CPM-15, the glioma
patches with polygons (GBM40, TCGA lower-grade glioma), plus synthetic IHC
fields. Held out by image (and by source region for the TCGA glioma patches,
which are quarters of the same fields): the names in ``VAL_NAMES`` below, and
both DeepLIIF Ki-67 IHC tiles, kept for validation only so that the IHC
figure measures transfer from H&E (stain transfer + synthetic data) honestly.

The run is resumable: start the same command again after an interruption
and it continues from ``OUT/state``. Example (background, logging to a file)::

    nohup python scripts/train_default.py /work/runs/harunet-lite --model harunet-lite \\
        --threads 2 > /work/runs/harunet-lite.log 2>&1 &
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# OpenMP threads that spin while waiting waste most of the CPU (and slow
# every other process) on a shared machine: wait passively. This must be set
# before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Validation images, fixed so every run and every model is judged on the same split.
VAL_NAMES = (
    # MoNuSeg: one lung, breast, kidney and prostate image with XML instances.
    "monuseg/TCGA-21-5786-01Z-00-DX1",
    "monuseg/TCGA-AR-A1AS-01Z-00-DX1",
    "monuseg/TCGA-B0-5710-01Z-00-DX1",
    "monuseg/TCGA-G9-6362-01Z-00-DX1",
    # CPM-15: one 20x and two 40x tiles.
    "cpm15/image06",
    "cpm15/image11",
    "cpm15/image14",
    # Glioma: four GBM40 patches and all four quarters of one TCGA field.
    "gbm/GBM40/37",
    "gbm/GBM40/38",
    "gbm/GBM40/39",
    "gbm/GBM40/40",
    "gbm/TCGA_result/TCGA-FG-A4MU-R02.tif_normal.png_normal_small",
    "gbm/TCGA_result/TCGA-FG-A4MU-R02.tif_normal.png_normal_small_2",
    "gbm/TCGA_result/TCGA-FG-A4MU-R02.tif_normal.png_normal_small_3",
    "gbm/TCGA_result/TCGA-FG-A4MU-R02.tif_normal.png_normal_small_4",
)


#: The glioma Ki-67 training frame validated on when the glioma frames are trained on (not a held-out frame).
GLIOMA_VAL = "glioma/1329941_-B3-26"


def default_data_root() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def augment_config(overrides: list[str], *, no_stain_transfer: bool = False):
    """The default :class:`AugmentConfig` with ``FIELD=VALUE`` overrides (numbers or comma-separated ranges)."""
    from napari_ihcseg.training.augment import AugmentConfig, with_overrides

    config = AugmentConfig(p_stain_transfer=0.0) if no_stain_transfer else AugmentConfig()
    try:
        return with_overrides(config, overrides)
    except ValueError as exc:
        raise SystemExit(f"--{exc}") from None


def parse_args(argv: list[str] | None = None):
    """The recipe's command line, parsed and checked; returns ``(args, TrainConfig)``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output folder (state, metrics.csv, best/)")
    parser.add_argument("--model", default="harunet-lite", help="architecture or checkpoint (default harunet-lite)")
    parser.add_argument("--data-root", default=str(default_data_root()), help="the shared data folder")
    parser.add_argument("--epochs", type=int, default=11)
    parser.add_argument("--steps-per-epoch", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="linear warm-up steps (default: two epochs, at most 100)")
    parser.add_argument("--patience", type=int, default=12)
    parser.add_argument("--synthetic-fraction", type=float, default=0.1)
    parser.add_argument("--no-stain-transfer", action="store_true")
    parser.add_argument("--augment", action="append", default=[], metavar="FIELD=VALUE",
                        help="override one AugmentConfig field, e.g. p_cytoplasmic_stain=0 (repeatable)")
    parser.add_argument("--he-repeat", type=int, default=1, metavar="N",
                        help="take the H&E sources (MoNuSeg, CPM-15, glioma H&E) N times per pass over the data "
                             "(default 1), to keep them in each batch beside large Ki-67 point sets")
    parser.add_argument("--ihc-train-repeat", type=int, default=0, metavar="N",
                        help="train on the two DeepLIIF Ki-67 tiles too, each N times per pass over the data "
                             "(default 0: they are for validation only)")
    parser.add_argument("--immunoratio-repeat", type=int, default=0, metavar="N",
                        help="train on the ki67-immunoratio training cases too (from their points), each N times "
                             "per pass over the data (default 0)")
    parser.add_argument("--glioma-repeat", type=int, default=0, metavar="N",
                        help="train on the ki67-glioma-polygons training frames too, each N times per pass; "
                             f"{GLIOMA_VAL} is then validated on instead")
    parser.add_argument("--point-method", default="watershed", choices=("watershed", "disk"),
                        help="how points become training targets (PointTargetConfig.method)")
    parser.add_argument("--self-training", action="store_true",
                        help="refine the point targets with the starting model's own nuclei "
                             "(PointTargetConfig.self_training)")
    parser.add_argument("--no-tune", action="store_true",
                        help="keep the base checkpoint's instance settings instead of tuning them at the end")
    parser.add_argument("--encoder-weights", default=None, metavar="FILE",
                        help="ImageNet weights file for the encoder of unet-resnet50 (a torchvision ResNet-50 "
                             "state dict)")
    parser.add_argument("--no-amp", action="store_true",
                        help="train in float32: on CPUs without bf16 instructions (no AMX or AVX-512 BF16) bf16 "
                             "autocast is many times slower")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--log-every", type=int, default=5, help="log a line every N steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from napari_ihcseg.training.points import PointTargetConfig
    from napari_ihcseg.training.trainer import TrainConfig

    root = Path(args.data_root)
    if not root.is_dir():
        parser.error(f"{root}: the shared data folder was not found (use --data-root)")
    if args.he_repeat < 1:
        parser.error("--he-repeat must be 1 or more")
    for name in ("ihc_train_repeat", "immunoratio_repeat", "glioma_repeat"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be 0 or more")
    deepliif = f"deepliif:{root / 'deepliif-ki67-sample'}"
    config = TrainConfig(
        out=str(Path(args.out).expanduser().resolve()),
        model=args.model,
        model_options={"encoder_weights": str(Path(args.encoder_weights).expanduser().resolve())}
        if args.encoder_weights else {},
        train_data=(*[f"monuseg:{root / 'monuseg-train'}", f"cpm15:{root / 'cpm15'}",
                      f"gbm:{root / 'gbm-tcga-contours'}"] * args.he_repeat, *[deepliif] * args.ihc_train_repeat,
                    *[f"immunoratio:{root / 'ki67-immunoratio'}"] * args.immunoratio_repeat,
                    *[f"glioma:{root / 'ki67-glioma-polygons'}"] * args.glioma_repeat),
        val_data=() if args.ihc_train_repeat else (deepliif,),
        val_names=VAL_NAMES + ((GLIOMA_VAL,) if args.glioma_repeat else ()),
        points=PointTargetConfig(method=args.point_method, self_training=args.self_training),
        tune_instances=not args.no_tune, amp=not args.no_amp,
        epochs=args.epochs, batch_size=args.batch_size, tile=args.tile, lr=args.lr,
        warmup_steps=min(100, args.steps_per_epoch * 2) if args.warmup_steps is None else args.warmup_steps,
        device=args.device, num_threads=args.threads,
        seed=args.seed, synthetic_fraction=args.synthetic_fraction, checkpoint_minutes=args.checkpoint_minutes,
        patience=args.patience, max_steps_per_epoch=args.steps_per_epoch,
        augment=augment_config(args.augment, no_stain_transfer=args.no_stain_transfer),
    )
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    from napari_ihcseg.training.state import has_state
    from napari_ihcseg.training.trainer import TrainingInterrupted, train

    start = time.time()

    def log(event) -> None:
        stamp = time.strftime("%H:%M:%S")
        if event.phase == "train" and (event.step % args.log_every == 0 or event.step == 1):
            print(f"{stamp} epoch {event.epoch + 1}/{event.epochs} step {event.step}/{event.steps_per_epoch} "
                  f"(global {event.global_step}/{event.total_steps}) loss {event.loss:.4f} lr {event.lr:.2e} "
                  f"eta {event.eta_seconds / 3600:.1f} h", flush=True)
        elif event.phase in ("validate", "done") and event.metrics:
            m = event.metrics
            figures = " ".join(f"{k}={v:.4f}" for k, v in m.items() if k.startswith("val_") and isinstance(v, float))
            print(f"{stamp} [{event.phase}] epoch {m.get('epoch')} train_loss {m.get('train_loss', float('nan')):.4f} "
                  f"{figures}", flush=True)

    try:
        # The same command continues a run from its saved state, or starts one in a new folder.
        result = train(config, resume=has_state(config.out), progress=log)
    except ValueError as exc:  # a folder holding another run's outputs, a damaged state, a changed recipe
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except TrainingInterrupted as stop:  # Ctrl-C: the state is saved; the same command resumes
        print(f"{stop}; run the same command again to resume", file=sys.stderr, flush=True)
        return 130
    print(f"finished in {(time.time() - start) / 3600:.2f} h: epochs {result.epochs_completed}, "
          f"cancelled={result.cancelled}, stopped_early={result.stopped_early}, best={result.best_checkpoint}",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
