"""What a training run writes for people: the metrics CSV, the training
metadata and the model card stored in the checkpoint's ``config.json``."""

from __future__ import annotations

import platform
from datetime import datetime, timezone
from pathlib import Path

from napari_ihcseg._csv import write_csv

#: Public data sets, for the card: what they are and where they come from.
DATA_DESCRIPTIONS = {
    "monuseg": "MoNuSeg 2018 training set (H&E, 40x, TCGA, 7 organs)",
    "cpm15": "MICCAI 2015 nucleus segmentation challenge training set (CPM-15, H&E, 20x/40x)",
    "gbm": "Glioma H&E patches with one polygon per nucleus (GBM40, TCGA lower-grade glioma)",
    "deepliif": "DeepLIIF Ki-67 IHC sample tiles (bladder, lung)",
    "pairs": "training pairs corrected in napari",
    "synthetic": "synthetic hematoxylin-DAB fields (napari_ihcseg.data.synthetic)",
    "immunoratio": "ki67-immunoratio: Ki-67 IHC breast-cancer fields with pathologist points and tumour regions "
                   "(github.com/AdamDlubak/Ki67, commit d5370c0), learnt from the points",
    "glioma": "ki67-glioma-polygons: Ki-67 IHC glioma frames with one classed polygon per nucleus "
              "(github.com/AntoineRouland/ki67, commit 2aac6c4)",
    "ki67-points": "ki67-points: two Ki-67 IHC fields with pathologist points (github.com/AdamDlubak/Ki67, "
                   "commit d5370c0)",
}


def write_metrics_csv(path: str | Path, history: list[dict]) -> Path:
    """Write one row per epoch; the header is the union of every row's keys."""
    columns: list[str] = []
    for row in history:
        for key in row:
            if key not in columns:
                columns.append(key)
    def cell(value):
        return f"{value:.6g}" if isinstance(value, float) else ("" if value is None else value)

    return write_csv(path, columns, ([cell(row.get(k)) for k in columns] for row in history))


def _sources(split: dict) -> tuple[list[str], list[str]]:
    def kinds(names):
        return sorted({n.split("/", 1)[0] if "/" in n else "pairs" for n in names})

    return kinds(split["train"]), kinds(split["val"])


def training_metadata(config, row: dict, split: dict, hardware: str, base_checkpoint: str | None) -> dict:
    """The ``training`` block of the checkpoint: how it was made and on what."""
    return {
        "config": config.to_dict(),
        "base_checkpoint": base_checkpoint,
        "epoch": row.get("epoch"),
        "global_step": row.get("global_step"),
        "train_seconds": row.get("train_seconds"),
        "hardware": f"{hardware}; {platform.processor() or platform.machine()}",
        "split": split,
        "metrics": {k: v for k, v in row.items() if k.startswith("val_")},
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def model_card(config, row: dict, split: dict, hardware: str, metrics: dict | None) -> dict:
    """The model card: data and licences, preprocessing, schedule, hardware, validation figures."""
    from napari_ihcseg.datasets.registry import LICENCES

    train_kinds, val_kinds = _sources(split)
    if config.synthetic_fraction > 0:
        train_kinds = sorted(set(train_kinds) | {"synthetic"})
    data = [{"name": k, "description": DATA_DESCRIPTIONS.get(k, k), "licence": LICENCES.get(k, "see the data set"),
             "use": "train"} for k in train_kinds]
    data += [{"name": k, "description": DATA_DESCRIPTIONS.get(k, k), "licence": LICENCES.get(k, "see the data set"),
              "use": "validation"} for k in val_kinds if k not in train_kinds]
    non_commercial = any(k in ("monuseg", "deepliif") for k in train_kinds + val_kinds)
    a = config.augment
    licences = sorted({LICENCES.get(k, "see the data set") for k in train_kinds})
    figures = {k: row[f"val_{k}"] for k in ("dice", "aji", "pq") if f"val_{k}" in row}
    return {
        "data": data,
        "licence": "; ".join(licences),
        "metrics": figures,
        "licence_note": ("weights trained on non-commercial data (MoNuSeg CC BY-NC-SA 4.0 / DeepLIIF "
                         "non-commercial): non-commercial research use only") if non_commercial else "",
        "preprocessing": (f"RGB in [0, 1], normalised inside the model; tiles of {config.tile} px every "
                          f"{config.stride or config.tile} px, tiles without nuclei dropped; targets: mask = "
                          "labels > 0, contour = 2 px inner boundary band"),
        "augmentation": (f"rot90 / flips, scale {a.scale_range[0]}-{a.scale_range[1]}, HED jitter, brightness / "
                         f"contrast / gamma, nucleus-targeted HSV shift (p={a.p_nuclei_hsv}), H&E to IHC stain "
                         f"transfer (p={a.p_stain_transfer}; granular DAB p={a.p_granular_dab}), blur (p={a.p_blur}, sigma "
                         f"{a.blur_sigma[0]}-{a.blur_sigma[1]}), noise (p={a.p_noise}); "
                         f"synthetic IHC fraction {config.synthetic_fraction}"),
        "schedule": (f"AdamW lr {config.lr:g}, weight decay {config.weight_decay:g}, {config.warmup_steps} warm-up "
                     f"steps then cosine; batch {config.batch_size}; epoch {row.get('epoch')} of {config.epochs} "
                     f"({row.get('global_step')} steps); bf16 autocast={config.amp}"),
        "hardware": hardware,
        "validation": {
            "images": len(split["val"]),
            "metrics": {k: v for k, v in row.items() if k.startswith("val_")},
            "note": ("mean over sources of per-image Dice, AJI and PQ on images held out by name; "
                     "instances from probabilities_to_instances with default thresholds"),
        },
    }
