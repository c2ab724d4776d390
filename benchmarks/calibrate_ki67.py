"""Calibrate the Ki-67 positive/negative call.

Default mode: a per-nucleus classifier (with and without ``reject``) and the
single best DAB cut, fitted on the ``ki67-immunoratio`` training cases with a
checkpoint's detections, compared with the preset on the held-out fields;
``--write CHECKPOINT`` stores the winner. The shipped checkpoints carry no
classifier (docs/models.md); the preset's cut is chosen across two sets by
``calibrate_ki67_sets.py``.

``--deepliif``: the report on the DeepLIIF sample and the ki67-points fields
that chose the previous Ki-67 cut (0.20), now an independent check of the
preset (docs/scoring.md).

Ground truth 1 — DeepLIIF Ki-67 sample (``deepliif-ki67-sample``): each image is
six 512-pixel tiles ``[IHC | hematoxylin | DAPI | Lap2 | Ki-67 | segmentation]``;
in the segmentation tile red nuclei are Ki-67-positive, blue negative (channels
thresholded at > 128). The connected components of the red and of the blue mask
are the true nuclei; those smaller than the ``size_thresh`` of the image's JSON
are dropped, as the source did, which reproduces its counts exactly. The mean
DAB optical density of every true nucleus is measured on the IHC tile with
:func:`napari_ihcseg.scoring.measure_nuclei` (the same code as ``score_image``)
and classified positive when it reaches the cut.

Ground truth 2 — pathologist points (``ki67-points``): ``markers.csv`` gives
``type,x,y`` (1 positive, 2 negative) at nucleus centres. The mean DAB OD is
taken in a disk of radius ``--radius`` pixels around each point.

With ``--deepliif`` the script prints, for every cut on a grid, per-image and pooled agreement
(accuracy, sensitivity, specificity, Cohen's kappa) and the positive % against
the truth, then the cut chosen: among round cuts (multiples of ``--round``,
default 0.05) the one with the smallest Ki-67 index error (mean over the
DeepLIIF images of |predicted % positive - true % positive|), ties broken by
the pooled Cohen's kappa. The index is the figure a report carries, hence the
criterion; per-nucleus kappa is dominated by the larger image. Run::

    python benchmarks/calibrate_ki67.py --deepliif [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from napari_ihcseg.scoring import get_preset, measure_nuclei
from napari_ihcseg.stain import deconvolve

TILE = 512
IHC_TILE, SEG_TILE = 0, 5
GRID = np.round(np.arange(0.05, 0.4001, 0.025), 3)


def default_data() -> Path:
    env = os.environ.get("IHCSEG_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def read_rgb(path: Path) -> np.ndarray:
    from skimage import io

    return np.asarray(io.imread(path))[..., :3]


def deepliif_nuclei(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """``name -> (dab_od_mean, truth_positive, source_counts)`` per image."""
    from scipy import ndimage

    out = {}
    for png in sorted(folder.glob("*.png")):
        meta_path = png.with_suffix(".json")
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        rgb = read_rgb(png)
        ihc = np.ascontiguousarray(rgb[:, IHC_TILE * TILE:(IHC_TILE + 1) * TILE])
        seg = rgb[:, SEG_TILE * TILE:(SEG_TILE + 1) * TILE] > 128
        red = seg[..., 0] & ~seg[..., 1] & ~seg[..., 2]
        blue = seg[..., 2] & ~seg[..., 0] & ~seg[..., 1]
        pos_lab, n_pos = ndimage.label(red)
        neg_lab, _ = ndimage.label(blue)
        labels = np.where(pos_lab > 0, pos_lab, np.where(neg_lab > 0, neg_lab + n_pos, 0)).astype(np.int32)
        cells = measure_nuclei(ihc, labels)
        cells = cells[cells["area_px"] >= (meta.get("size_thresh") or 0)]
        truth = cells["label"].to_numpy() <= n_pos
        out[png.stem] = (cells["dab_od_mean"].to_numpy(), truth, meta)
    return out


def point_nuclei(folder: Path, radius: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``case -> (dab_od_mean in a disk, truth_positive)`` per point-annotated field."""
    import pandas as pd

    out = {}
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = dy ** 2 + dx ** 2 <= radius ** 2
    for case in sorted(p for p in folder.iterdir() if (p / "markers.csv").exists()):
        rgb = read_rgb(case / "base.png")
        dab = deconvolve(rgb)[..., 1]
        marks = pd.read_csv(case / "markers.csv")
        values, truth = [], []
        for t, x, y in marks[["type", "x", "y"]].itertuples(index=False):
            x, y = int(round(x)), int(round(y))
            if r <= y < dab.shape[0] - r and r <= x < dab.shape[1] - r:
                values.append(float(dab[y - r:y + r + 1, x - r:x + r + 1][disk].mean()))
                truth.append(t == 1)
        out[case.name] = (np.asarray(values), np.asarray(truth))
    return out


def agreement(values: np.ndarray, truth: np.ndarray, cut: float) -> dict:
    pred = values >= cut
    tp, tn = int(np.sum(pred & truth)), int(np.sum(~pred & ~truth))
    fp, fn = int(np.sum(pred & ~truth)), int(np.sum(~pred & truth))
    n = tp + tn + fp + fn
    acc = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / n ** 2
    kappa = (acc - expected) / (1 - expected) if expected < 1 else 1.0
    return {"n": n, "acc": acc, "sens": tp / max(tp + fn, 1), "spec": tn / max(tn + fp, 1),
            "kappa": kappa, "pct_pred": 100 * pred.mean(), "pct_true": 100 * truth.mean()}


def fmt(a: dict) -> str:
    return (f"acc {a['acc']:.3f} sens {a['sens']:.2f} spec {a['spec']:.3f} kappa {a['kappa']:.3f} "
            f"%pos {a['pct_pred']:5.1f} (truth {a['pct_true']:4.1f})")


def deepliif_main(args: argparse.Namespace) -> int:
    """The DeepLIIF cut report (``--deepliif``): how the previous 1+ cut (0.20) was chosen."""

    deep_dir, points_dir = args.data / "deepliif-ki67-sample", args.data / "ki67-points"
    if not deep_dir.is_dir():
        print(f"{deep_dir}: not found (set --data or IHCSEG_SHARED_DATA)", file=sys.stderr)
        return 2
    deep = deepliif_nuclei(deep_dir)
    points = point_nuclei(points_dir, args.radius) if points_dir.is_dir() else {}

    print("DeepLIIF true nuclei (after the source's size filter):")
    for name, (v, t, meta) in deep.items():
        print(f"  {name}: {int(t.sum())} positive / {int((~t).sum())} negative "
              f"(source JSON: {meta['num_pos']} / {meta['num_neg']}, {meta['percent_pos']} %)")
    pooled_v = np.concatenate([v for v, _, _ in deep.values()])
    pooled_t = np.concatenate([t for _, t, _ in deep.values()])

    print("\ncut    | DeepLIIF pooled                                              | mean |d%pos|")
    rows = []
    for cut in GRID:
        pooled = agreement(pooled_v, pooled_t, cut)
        per = {name: agreement(v, t, cut) for name, (v, t, _) in deep.items()}
        mean_err = np.mean([abs(a["pct_pred"] - a["pct_true"]) for a in per.values()])
        rows.append((cut, pooled, per, mean_err))
        print(f"{cut:.3f}  | {fmt(pooled)} | {mean_err:5.2f}")
    step = args.round
    candidates = [r for r in rows if abs(r[0] / step - round(r[0] / step)) < 1e-6]
    best = min(candidates, key=lambda r: (round(r[3], 6), -r[1]["kappa"]))
    chosen = float(round(best[0], 6))
    near = [r[0] for r in rows if r[3] <= best[3] + 1.0]
    print(f"\nsmallest mean Ki-67 index error among multiples of {step:g}: {best[3]:.2f} points "
          f"at {chosen:g} (pooled kappa {best[1]['kappa']:.3f}); cuts within 1 point of it: "
          f"{min(near):.3f}-{max(near):.3f}; highest pooled kappa "
          f"{max(r[1]['kappa'] for r in rows):.3f} at "
          f"{max(rows, key=lambda r: r[1]['kappa'])[0]:.3f}")
    preset = get_preset("ki67").thresholds[0]
    print(f"Ki-67 preset 1+ cut: {preset:g}" + ("" if abs(preset - chosen) < 1e-9
                                                 else f"  (differs from the chosen {chosen:g})"))

    for label, cut in (("preset", preset),) + ((("chosen", chosen),) if abs(preset - chosen) > 1e-9 else ()):
        print(f"\nat the {label} cut {cut:g}:")
        for name, (v, t, _) in deep.items():
            print(f"  DeepLIIF {name:10s} {fmt(agreement(v, t, cut))}")
        print(f"  DeepLIIF {'pooled':10s} {fmt(agreement(pooled_v, pooled_t, cut))}")
        for name, (v, t) in points.items():
            print(f"  points   {name:10s} {fmt(agreement(v, t, cut))}")

    if points:
        print(f"\npathologist points, disk radius {args.radius:g} px, over the grid:")
        for cut in GRID:
            parts = [f"{name} acc {a['acc']:.3f} %pos {a['pct_pred']:4.1f}/{a['pct_true']:4.1f}"
                     for name, a in ((n, agreement(v, t, cut)) for n, (v, t) in points.items())]
            print(f"  {cut:.3f}  " + "   ".join(parts))
    return 0


# ------------------------------------------- the classifier on point-annotated cases

def point_cases(data: Path) -> list[dict]:
    """Every ki67-immunoratio case (field scale 2 for a 40x model) and ki67-points field (scale 1)."""
    from napari_ihcseg.datasets.ki67_split import is_held_out

    cases = []
    for folder in sorted((data / "ki67-immunoratio").glob("*/field.jpg")):
        case = folder.parent
        cases.append({"name": case.name, "source": "immunoratio", "image": folder, "scale": 2.0,
                      "markers": case / "markers.csv", "region": case / "region.png",
                      "held_out": is_held_out("immunoratio", case.name)})
    for folder in sorted((data / "ki67-points").glob("*/base.png")):
        case = folder.parent
        cases.append({"name": case.name, "source": "ki67-points", "image": folder, "scale": 1.0,
                      "markers": case / "markers.csv", "region": case / "mask-gt.png",
                      "held_out": is_held_out("ki67-points", case.name)})
    return cases


def load_case(case: dict, crop: int | None) -> dict:
    """Image, region and points of a case, cut to a ``crop``-pixel window centred on its region."""
    from skimage import io

    image = read_rgb(case["image"])
    region = np.asarray(io.imread(case["region"]))
    region = (region if region.ndim == 2 else region[..., 0]) > 0
    marks = np.genfromtxt(case["markers"], delimiter=",", names=True)
    points = np.column_stack([marks["y"], marks["x"]])
    top = left = 0
    if crop is not None:
        rows, cols = np.nonzero(region)
        h, w = region.shape
        top = int(np.clip(rows.mean() - crop / 2, 0, max(h - crop, 0)))
        left = int(np.clip(cols.mean() - crop / 2, 0, max(w - crop, 0)))
        image = image[top:top + crop, left:left + crop]
        region = region[top:top + crop, left:left + crop]
        points = points - [top, left]
    return {**case, "rgb": np.ascontiguousarray(image), "region_mask": region, "points": points,
            "positive": marks["type"] == 1, "window": (top, left, crop)}


def segment_case(case: dict, model, model_name: str, cache: Path | None) -> np.ndarray:
    """The model's labels of a (cut) case at the field's own scale (cached as .npy when asked)."""
    from napari_ihcseg.inference import InferenceConfig, segment_image

    top, left, crop = case["window"]
    window = f"_{top}_{left}_{crop}" if crop else ""
    path = (cache / f"{model_name}_{case['source']}_{case['name']}_s{case['scale']:g}{window}.npy"
            if cache else None)
    if path is not None and path.exists():
        return np.load(path)
    labels = segment_image(case["rgb"], model, InferenceConfig(scale=case["scale"])).labels
    if path is not None:
        cache.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".partial.npy")
        np.save(partial, labels.astype(np.int32))
        os.replace(partial, path)  # another run reading the cache never sees half a file
    print(f"  segmented {case['name']} {case['rgb'].shape[:2]} at scale {case['scale']:g}: "
          f"{int(labels.max())} nuclei", file=sys.stderr, flush=True)
    return labels


def labelled_case(case: dict, labels: np.ndarray):
    from napari_ihcseg.scoring.calibrate import labelled_nuclei

    return labelled_nuclei(case["name"], case["rgb"], labels, case["points"], case["positive"],
                           region=case["region_mask"])


def evaluate(fields, name: str, call) -> list[dict]:
    """Per-field figures of one way of calling nuclei; ``call(cells) -> (positive, counted)``."""
    from napari_ihcseg.scoring.calibrate import classification_figures

    return [{"field": f.name, "method": name, **classification_figures(f, *call(f.cells))} for f in fields]


def report(rows: list[dict]) -> None:
    table = pd.DataFrame(rows)
    print(f"{'method':28s} {'fields':>6s} {'agreement':>9s} {'mean |d index|':>14s} {'precision':>9s}")
    for method, group in table.groupby("method", sort=False):
        print(f"{method:28s} {len(group):6d} {group.agreement.mean():9.3f} "
              f"{group.abs_delta_index.mean():14.2f} {group.precision.mean():9.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Calibrate the Ki-67 positive/negative call: a per-nucleus "
                                     "classifier and a DAB cut fitted on the ki67-immunoratio training cases, "
                                     "compared with the preset on the held-out cases.")
    parser.add_argument("--data", type=Path, default=default_data(), help="the shared data folder")
    parser.add_argument("--model", default="r2unet-lite-ihc", help="shipped checkpoint name or folder")
    parser.add_argument("--cache", type=Path, default=None, help="keep the model's labels here (.npy)")
    parser.add_argument("--crop", type=int, default=None, metavar="PX",
                        help="calibrate on a PX-pixel window of each training case, centred on its region "
                             "(default: whole fields)")
    parser.add_argument("--crop-eval", type=int, default=None, metavar="PX",
                        help="evaluate on such a window of each held-out field (default: whole fields)")
    parser.add_argument("--write", type=Path, default=None, metavar="CHECKPOINT",
                        help="store the better classifier in this checkpoint folder's config.json")
    parser.add_argument("--deepliif", action="store_true",
                        help="instead: the DeepLIIF report (chose the previous 1+ cut, 0.20)")
    parser.add_argument("--radius", type=float, default=5.0, help="(--deepliif) disk radius around points")
    parser.add_argument("--round", type=float, default=0.05, help="(--deepliif) round the chosen cut")
    args = parser.parse_args(argv)
    if args.deepliif:
        return deepliif_main(args)

    from napari_ihcseg.models import load_model
    from napari_ihcseg.scoring.calibrate import best_dab_cut, calibrate_classifier

    cases = point_cases(args.data)
    if not cases:
        print(f"{args.data}: no ki67-immunoratio or ki67-points cases (set --data)", file=sys.stderr)
        return 2
    model = load_model(args.model, device="cpu")
    name = Path(str(args.model)).name
    fields = {}
    for case in sorted(cases, key=lambda c: not c["held_out"]):
        case = load_case(case, args.crop_eval if case["held_out"] else args.crop)
        fields[case["name"]] = labelled_case(case, segment_case(case, model, name, args.cache))
    train = [fields[c["name"]] for c in cases if c["source"] == "immunoratio" and not c["held_out"]]
    held = [fields[c["name"]] for c in cases if c["source"] == "immunoratio" and c["held_out"]]
    points = [fields[c["name"]] for c in cases if c["source"] == "ki67-points"]
    n_train = sum(int((f.cells.truth >= 0).sum()) for f in train)
    print(f"calibration: {len(train)} training cases, {n_train} detections matched to points; "
          f"held out: {len(held)} ki67-immunoratio cases and {len(points)} ki67-points fields")

    preset = get_preset("ki67").thresholds[0]

    def fit(cases):
        cut = best_dab_cut(cases)
        plain, with_reject = calibrate_classifier(cases), calibrate_classifier(cases, reject=True)
        return {
            f"preset DAB cut {preset:g}": lambda c: (c.dab_od_mean.to_numpy() >= preset, None),
            "fitted DAB cut": lambda c: (c.dab_od_mean.to_numpy() >= cut, None),
            "classifier": lambda c: (plain.positive.predict(c), None),
            "classifier + reject": lambda c: (with_reject.positive.predict(c), ~with_reject.reject.predict(c)),
        }, (cut, plain, with_reject)

    # Leave one training case out: each case is called by a fit on the others.
    rows = []
    for i, case in enumerate(train):
        methods, _ = fit(train[:i] + train[i + 1:])
        rows += [row for method, call in methods.items() for row in evaluate([case], method, call)]
    print("\ntraining cases, each called by a fit on the other cases (leave one case out):")
    report(rows)
    table = pd.DataFrame(rows).groupby("method", sort=False)[["abs_delta_index", "agreement"]].mean()
    best = table.abs_delta_index.idxmin()
    chosen = {"method": best, "loco_abs_delta_index": round(float(table.abs_delta_index[best]), 3),
              "loco_agreement": round(float(table.agreement[best]), 4)}

    methods, (cut, plain, with_reject) = fit(train)
    print(f"\nfitted on all {len(train)} training cases: DAB cut {cut:g}; classifier features "
          f"{', '.join(plain.positive.features)}")
    for label, group in (("held-out ki67-immunoratio", held), ("ki67-points (held out)", points)):
        rows = [row for method, call in methods.items() for row in evaluate(group, method, call)]
        print(f"\n{label}:")
        report(rows)
        for row in rows:
            print(f"    {row['field']:10s} {row['method']:28s} agreement {row['agreement']:.3f} "
                  f"index {row['index']:5.1f} (truth {row['truth_index']:5.1f})")
    print(f"\nchosen on the training cases (smallest leave-one-case-out mean |d index|): {chosen['method']}")
    if args.write is not None:
        from napari_ihcseg.models import set_classifier

        classifier = with_reject if chosen["method"] == "classifier + reject" else plain
        if not chosen["method"].startswith("classifier"):
            print("a DAB cut won; the checkpoint keeps no classifier (the preset decides)")
            classifier = None
        calibration = {"data": "ki67-immunoratio training cases (napari_ihcseg.datasets.ki67_split)",
                       "cases": len(train), "matched_nuclei": n_train, **chosen,
                       "window_px": args.crop,
                       "command": "python benchmarks/calibrate_ki67.py"
                                  + (f" --crop {args.crop}" if args.crop else "")
                                  + (f" --crop-eval {args.crop_eval}" if args.crop_eval else "")
                                  + " --write CHECKPOINT"}
        set_classifier(args.write, "ki67", classifier, calibration=calibration)
        print(f"written: {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
