"""Tune a checkpoint's instance thresholds and ``min_size`` on the default validation split.

The split is the one ``scripts/train_default.py`` validates on: the
held-out H&E images of ``VAL_NAMES`` and the two DeepLIIF Ki-67 tiles. The
pathologists' point fields (``ki67-points``) are not used, so
``benchmarks/evaluate_models.py`` still judges the tuned settings on images
nothing was chosen on. The chosen settings, and how they were chosen, are
written into the checkpoint's ``config.json``; the weights are untouched.

Usage::

    python scripts/tune_instances.py src/napari_ihcseg/weights/r2unet-lite-ihc
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _train_default():
    spec = importlib.util.spec_from_file_location("train_default", ROOT / "train_default.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    defaults = _train_default()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint folder")
    parser.add_argument("--data", type=Path, default=defaults.default_data_root(), help="the shared data folder")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    from napari_ihcseg.datasets import load_dataset
    from napari_ihcseg.training.validate import tune_checkpoint

    if args.threads:
        torch.set_num_threads(args.threads)
    names = set(defaults.VAL_NAMES)
    folders = {"monuseg": "monuseg-train", "cpm15": "cpm15", "gbm": "gbm-tcga-contours"}
    samples = [s for kind, folder in folders.items() for s in load_dataset(f"{kind}:{args.data / folder}")
               if s.name in names]
    samples += load_dataset(f"deepliif:{args.data / 'deepliif-ki67-sample'}")
    result = tune_checkpoint(args.checkpoint, samples, device="cpu")
    if result is None:
        raise SystemExit("no validation image with instance labels was found")
    print(f"{args.checkpoint}: {result.params} (mean of AJI and PQ {result.score:.4f}, "
          f"{result.default_score:.4f} with the defaults, on {result.images} images)")
    for row in sorted(result.table, key=lambda r: -r["score"])[:5]:
        print("  " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
