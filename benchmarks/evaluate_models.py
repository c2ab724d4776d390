"""Validate models on the held-out real images, beside a classical baseline.

The figures in ``docs/models.md`` and the shipped model cards come from this
script. Every model is judged on the same images, none of which it trained
on (the split is ``VAL_NAMES`` of ``scripts/train_default.py``):

- **H&E instance figures** (Dice, AJI, PQ) on the held-out MoNuSeg, CPM-15 and
  glioma images;
- **Ki-67 IHC** on the two DeepLIIF tiles (never trained on): nucleus
  detection F1 (centroids matched within 10 px) and |Δ Ki-67 index| against the
  source's positive/negative nuclei, scored with the Ki-67 preset;
- **Ki-67 points** on the two pathologist-annotated fields of ``ki67-points``:
  detection F1 within 10 px and |Δ % positive|, counting the predicted nuclei
  inside the annotated tumour region (``mask-gt.png``), where the pathologist
  placed every point.

In both, only the nuclei the score counts (the cells table's ``included``)
are compared, as ``ihcseg evaluate --points`` does with a cells table.

The baseline is the classical pipeline models are compared with: colour
deconvolution, Otsu on hematoxylin + DAB optical density, distance-transform
watershed.

Usage::

    python benchmarks/evaluate_models.py --model src/napari_ihcseg/weights/harunet-lite-ihc --baseline
    python benchmarks/evaluate_models.py --model harunet-lite-ihc --json results.json
    python benchmarks/evaluate_models.py --model r2unet-lite-ihc --tta   # with and without flip TTA
    python benchmarks/evaluate_models.py --model r2unet-lite-ihc --default-instances

A checkpoint's instance settings (thresholds, ``min_size``) are those tuned
for it on the validation split (``scripts/tune_instances.py``), which holds
the held-out H&E images and the DeepLIIF tiles but not the point fields;
``--default-instances`` adds rows with the untuned defaults, side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
#: Detection radii (pixels) for matching centroids: a third to a half of a
#: nucleus diameter (DeepLIIF nuclei are ~28 px across, median truth area;
#: those of the Ki-67 point fields ~21-25 px, median area of matched nuclei).
DEEPLIIF_RADIUS = 10.0
POINTS_RADIUS = 10.0


def _val_names() -> tuple[str, ...]:
    spec = importlib.util.spec_from_file_location("train_default", ROOT / "scripts" / "train_default.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.VAL_NAMES)


def classical_baseline(image: np.ndarray, *, min_size: int = 16, min_distance: int = 4) -> np.ndarray:
    """Colour deconvolution + Otsu + distance-transform watershed instances."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    from napari_ihcseg.stain import deconvolve

    conc = deconvolve(image)
    od = gaussian(np.clip(conc[..., 0], 0, None) + np.clip(conc[..., 1], 0, None), sigma=1.0)
    mask = od > threshold_otsu(od)
    mask = ndi.binary_fill_holes(ndi.binary_opening(mask, iterations=1))
    mask = remove_small_objects(mask, max_size=min_size - 1)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(gaussian(distance, 1.0), min_distance=min_distance, labels=ndi.label(mask)[0],
                           exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    return labels.astype(np.int32)


def _segmenter(spec: str, tile: int, tta: bool = False, default_instances: bool = False):
    if spec == "baseline":
        return "classical watershed", classical_baseline
    from napari_ihcseg.inference import segment_image
    from napari_ihcseg.instances import INSTANCE_DEFAULTS
    from napari_ihcseg.models import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = load_model(spec, device="cpu")
    name = spec + (" (flip TTA)" if tta else "") + (" (default instance settings)" if default_instances else "")
    settings = INSTANCE_DEFAULTS if default_instances else {}
    return name, lambda image: segment_image(image, model, tile=tile, overlap=64, device="cpu", tta=tta,
                                             **settings).labels


def _held_out_he(data: Path, names: tuple[str, ...]):
    from napari_ihcseg.datasets import load_cpm15, load_gbm, load_monuseg

    samples = (load_monuseg(data / "monuseg-train", include_mask_only=False) + load_cpm15(data / "cpm15")
               + load_gbm(data / "gbm-tcga-contours"))
    return [s for s in samples if s.name in set(names)]


def counted(cells):
    """The rows of a cells table that the score counts (``included``), as ``ihcseg evaluate --points`` reads it."""
    return cells[cells["included"].to_numpy(bool)] if "included" in cells else cells


def _centroids(labels: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    ids = np.unique(labels[labels > 0])
    if not len(ids):
        return np.zeros((0, 2))
    return np.asarray(ndi.center_of_mass(np.ones_like(labels), labels, ids))


def _detection(m: dict) -> dict:
    """The detection counts and ratios of an :func:`evaluate_points` result."""
    return {"f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            **{k: int(m[k]) for k in ("tp", "fp", "fn")}}


def evaluate(spec: str, data: Path, names: tuple[str, ...], tile: int, tta: bool = False,
             default_instances: bool = False) -> dict:
    from napari_ihcseg.io.points import read_points_csv
    from napari_ihcseg.datasets import load_deepliif
    from napari_ihcseg.io import read_image
    from napari_ihcseg.metrics import evaluate_instances, evaluate_points, values_at_points
    from napari_ihcseg.scoring import score_image

    name, segment = _segmenter(spec, tile, tta, default_instances)
    out: dict = {"model": name, "tta": tta, "default_instances": default_instances, "he": {}, "ki67": {}}
    started = time.perf_counter()
    per_source: dict[str, list[dict]] = {}
    for sample in _held_out_he(data, names):
        m = evaluate_instances(segment(sample.image), sample.labels)
        per_source.setdefault(sample.source, []).append(m)
    images = [m for ms in per_source.values() for m in ms]
    for source, ms in [*per_source.items(), ("all", images)]:
        out["he"][source] = {k: float(np.nanmean([m[k] for m in ms])) for k in ("dice", "aji", "pq")}
        out["he"][source]["images"] = len(ms)

    rows = []
    for sample in load_deepliif(data / "deepliif-ki67-sample"):
        labels = segment(sample.image)
        cells = counted(score_image(sample.image, labels, stain="ki67").cells)
        truth_ids = np.unique(sample.labels[sample.labels > 0])
        truth_pos = np.array([sample.classes.get(int(i), 0) == 1 for i in truth_ids])
        m = evaluate_points(cells[["centroid_y", "centroid_x"]].to_numpy(), cells["positive"].to_numpy(bool),
                            _centroids(sample.labels), truth_pos, radius=DEEPLIIF_RADIUS)
        inst = evaluate_instances(labels, sample.labels)
        rows.append({"image": sample.name, **_detection(m), "abs_delta_percent_positive": m["abs_delta_pct_positive"],
                     "pred_percent_positive": m["pred_pct_positive"],
                     "truth_percent_positive": m["truth_pct_positive"], "dice": inst["dice"], "aji": inst["aji"]})
    for case in sorted(p for p in (data / "ki67-points").iterdir() if p.is_dir()):
        image = read_image(case / "base.png")
        labels = segment(image)
        cells = counted(score_image(image, labels, stain="ki67").cells)
        points, positive = read_points_csv(case / "markers.csv")
        region = np.asarray(Image.open(case / "mask-gt.png").convert("L")) > 0
        centres = cells[["centroid_y", "centroid_x"]].to_numpy()
        inside = values_at_points(region, centres)
        m = evaluate_points(centres[inside], cells["positive"].to_numpy(bool)[inside],
                            points, positive, radius=POINTS_RADIUS)
        rows.append({"image": f"ki67-points/{case.name}", **_detection(m),
                     "abs_delta_percent_positive": m["abs_delta_pct_positive"],
                     "pred_percent_positive": m["pred_pct_positive"],
                     "truth_percent_positive": m["truth_pct_positive"]})
    out["ki67"]["images"] = rows
    out["ki67"]["mean_f1"] = float(np.nanmean([r["f1"] for r in rows]))
    out["ki67"]["mean_abs_delta_percent_positive"] = float(np.nanmean([r["abs_delta_percent_positive"] for r in rows]))
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def _print(results: list[dict]) -> None:
    print("\nH&E held-out images (mean per image): Dice / AJI / PQ")
    sources = sorted({s for r in results for s in r["he"]} - {"all"}) + ["all"]
    # Long folder paths keep their tail, where the run's name is.
    width = min(64, max(40, *(len(r["model"]) for r in results)))
    print(f"{'model':<{width}}" + "".join(f"{s:>22}" for s in sources))
    for r in results:
        cells = [f"{r['he'][s]['dice']:.3f}/{r['he'][s]['aji']:.3f}/{r['he'][s]['pq']:.3f}" if s in r["he"] else "-"
                 for s in sources]
        print(f"{r['model'][-width:]:<{width}}" + "".join(f"{c:>22}" for c in cells))
    print("\nKi-67 IHC: detection F1 (precision, recall) / |Δ % positive| (pred % vs truth %)")
    for r in results:
        print(f"{r['model'][-width:]:<{width}} mean F1 {r['ki67']['mean_f1']:.3f}, "
              f"mean |Δ| {r['ki67']['mean_abs_delta_percent_positive']:.1f} points")
        for row in r["ki67"]["images"]:
            print(f"    {row['image']:<28} F1 {row['f1']:.3f} (P {row['precision']:.3f}, R {row['recall']:.3f})  "
                  f"|Δ| {row['abs_delta_percent_positive']:5.1f}  "
                  f"({row['pred_percent_positive']:.1f} % vs {row['truth_percent_positive']:.1f} %)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="checkpoint name or folder (repeatable)")
    parser.add_argument("--baseline", action="store_true", help="also evaluate the classical watershed baseline")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--tta", action="store_true",
                        help="also evaluate each model with flip test-time augmentation")
    parser.add_argument("--default-instances", action="store_true",
                        help="also evaluate each model with the default instance settings, not those tuned for it")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    data = Path(args.data_root)
    if not data.is_dir():
        parser.error(f"{data}: shared data folder not found")
    specs = list(args.model) + (["baseline"] if args.baseline else [])
    if not specs:
        parser.error("give --model and/or --baseline")
    if (args.tta or args.default_instances) and not args.model:
        parser.error("--tta and --default-instances need --model (the baseline has no network)")
    names = _val_names()
    runs = ([(spec, False, False) for spec in specs] + [(spec, True, False) for spec in args.model if args.tta]
            + [(spec, False, True) for spec in args.model if args.default_instances])
    results = [evaluate(spec, data, names, args.tile, tta, default) for spec, tta, default in runs]
    _print(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
