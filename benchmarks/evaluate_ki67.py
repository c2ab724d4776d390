"""Ki-67 counting on the held-out real cases: checkpoints side by side with the previous default.

Every checkpoint is run through the normal path a user gets — the image
resampled by the set's stated scale for the network
(:data:`napari_ihcseg.datasets.ki67_sets.KI67_SETS`), ``segment_image`` with the
checkpoint's instance settings, then ``score_image`` with the Ki-67 classifier
calibrated into the checkpoint when it carries one (as ``ihcseg segment --stain`` and the
widgets score), else the Ki-67 preset's DAB cut — on the
held-out cases of :mod:`napari_ihcseg.datasets.ki67_split`, which nothing is
trained, tuned or calibrated on:

- 6 ``ki67-immunoratio`` fields (about 20x, scale 2), pathologist points;
- both ``ki67-points`` fields (40x-like, scale 1), pathologist points;
- the held-out ``ki67-glioma-polygons`` frame (scale 0.37), polygon
  centroids with their class (not every faint nucleus is outlined there, so
  its precision is a lower bound).

Only the nuclei the score counts (the cells table's ``included``: not left
out by the classifier's ``reject`` model or the area limits), as
``ihcseg evaluate --points`` reads a cells table, are compared with the
pathologists' counts.
Predicted nuclei are matched to the annotated points (one-to-one, Hungarian)
within half a typical nucleus diameter *at the set's own scale* (6.5 px for
ki67-immunoratio, 13 px for ki67-points, 34 px for the glioma frames); on
the point sets only nuclei whose centroid lies inside the annotated region
count, since nothing outside it is annotated. Printed per set and pooled
over all cases: detection F1, precision, recall, the recall of positive and
of negative nuclei, class agreement on the matched nuclei, and the mean
|Δ Ki-67 index| (percentage points, per case).

Usage::

    python benchmarks/evaluate_ki67.py --model runs/ft/best              # beside r2unet-lite-ihc
    python benchmarks/evaluate_ki67.py --model a/best --model b/best --json ki67.json
    python benchmarks/evaluate_ki67.py --model r2unet-lite-ihc --previous none
    python benchmarks/evaluate_ki67.py --model runs/ft/best --sets ki67-points,glioma   # the 40x-like fields only

The full run predicts about 70 megapixels per checkpoint (the ki67-immunoratio
fields at twice their size); ``--sets`` restricts it.

``--cache DIR`` keeps each checkpoint's cells per case (keyed by the
weights' sha256, its instance settings and Ki-67 classifier, the Ki-67
preset's cuts, the case, the scale and the tile size) so that a later run with more
checkpoints does not predict the same ones again; clear it when the
segmentation or scoring code changes. The cells keep each nucleus's mean DAB
OD, from which ``calibrate_ki67_sets.py`` tries other cuts.

``--radii 0.75 1.0`` adds, after the main table, pooled and per-set
detection figures at other matching radii (fractions of the nucleus
diameter). The headline radius stays half a diameter; the other radii show
how much of the remaining gap is the scatter of the pathologists' points
around the nucleus centre rather than missed or invented nuclei.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: The default the figures are compared with.
PREVIOUS_DEFAULT = "r2unet-lite-ihc"
SET_FOLDERS = {"immunoratio": "ki67-immunoratio", "ki67-points": "ki67-points", "glioma": "ki67-glioma-polygons"}


def ki67_cases(data: Path, sets=tuple(SET_FOLDERS), cases: str = "held-out") -> list[dict]:
    """The ``cases`` (held-out or train) of ``sets`` at their own scale: image, truth points and classes, region, set.

    A set without such cases (ki67-points has no training field) gives none.
    """
    from scipy import ndimage as ndi

    from napari_ihcseg.datasets.ki67_sets import (POINT_POSITIVE, load_glioma_polygons, load_immunoratio,
                                              load_ki67_points)

    def read(loader, kind):
        if kind not in sets or (kind == "ki67-points" and cases == "train"):
            return []
        return loader(data / SET_FOLDERS[kind], cases=cases, scale=1.0)

    out = []
    for kind, loader in (("immunoratio", load_immunoratio), ("ki67-points", load_ki67_points)):
        for s in read(loader, kind):
            out.append({"set": kind, "name": s.name, "image": s.image, "points": s.points,
                        "positive": s.point_classes == POINT_POSITIVE, "region": s.region})
    for s in read(load_glioma_polygons, "glioma"):
        ids = np.array(sorted(s.classes))
        centres = np.asarray(ndi.center_of_mass(np.ones_like(s.labels), s.labels, ids)).reshape(-1, 2)
        out.append({"set": "glioma", "name": s.name, "image": s.image, "points": centres,
                    "positive": np.array([s.classes[int(i)] == 1 for i in ids], bool), "region": None,
                    "labels": s.labels})
    return out


def split_cases(data: Path, sets=tuple(SET_FOLDERS)) -> dict[str, list[dict]]:
    """``{"train": ..., "held-out": ...}``: the :func:`ki67_cases` of both selections."""
    return {selection: ki67_cases(data, sets, cases=selection) for selection in ("train", "held-out")}


def add_case_arguments(parser: argparse.ArgumentParser, cache_help: str) -> None:
    """The options of every Ki-67 case benchmark: ``--data-root``, ``--tile`` and ``--cache``."""
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--cache", default=None, help=cache_help)


def data_folder(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """``--data-root`` as a folder, or the parser's error when it is not one."""
    data = Path(args.data_root)
    if not data.is_dir():
        parser.error(f"{data}: shared data folder not found")
    return data


def by_set(items, cases: list[dict]) -> dict[str, list]:
    """``items`` (one per case) grouped by their case's set, the sets in the order they first come."""
    groups: dict[str, list] = {}
    for item, case in zip(items, cases):
        groups.setdefault(case["set"], []).append(item)
    return groups


def _weights_key(spec: str) -> str:
    """The cache key of a checkpoint: its weights, its instance settings, its Ki-67 classifier and the preset.

    Re-tuned instance settings change which nuclei are found, and a
    recalibrated classifier or a new Ki-67 preset cut which are positive and
    counted, so none may reuse the cells cached with the previous ones.
    """
    from napari_ihcseg._json_file import read_json
    from napari_ihcseg.models.shipped import shipped_checkpoints
    from napari_ihcseg.scoring import get_preset

    folder = Path(shipped_checkpoints().get(spec, Path(spec)))
    weights = folder / "weights.safetensors"
    if not weights.is_file():
        raise SystemExit(f"{spec}: not a shipped checkpoint or a checkpoint folder with weights.safetensors")
    key = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    config = folder / "config.json"
    settings = read_json(config) if config.is_file() else {}
    settings = {k: settings[k] for k in ("instances", "classifiers") if settings.get(k)}
    settings["ki67_preset"] = list(get_preset("ki67").thresholds)
    return key + "-s" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


#: Columns of a case's cells array: centroid row, column, positive (0/1), included (0/1: counted by the
#: score) and the nucleus's mean DAB optical density (what a DAB cut reads; benchmarks/calibrate_ki67_sets.py).
CELL_COLUMNS = ("centroid_y", "centroid_x", "positive", "included", "dab_od_mean")


def predict_cells(spec: str, cases: list[dict], *, tile: int, cache: Path | None) -> list[np.ndarray]:
    """Per case an (N, 5) array of :data:`CELL_COLUMNS`, at the case's own scale."""
    from napari_ihcseg.datasets.ki67_sets import KI67_SETS
    from napari_ihcseg.inference import segment_image
    from napari_ihcseg.models import load_model
    from napari_ihcseg.inference import InferenceConfig
    from napari_ihcseg.pipeline import PipelineOptions
    from napari_ihcseg.scoring import ScoringConfig, score_image

    key = _weights_key(spec)
    model = None
    out = []
    for case in cases:
        scale = KI67_SETS[case["set"]].scale
        path = cache / f"{key}-{case['name'].replace('/', '_')}-x{scale:g}-t{tile}.npy" if cache else None
        if path is not None and path.is_file():
            cached = np.load(path)
            if cached.ndim == 2 and cached.shape[1] == len(CELL_COLUMNS):   # older caches lack columns
                out.append(cached)
                continue
        if model is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                model = load_model(spec, device="cpu")
        options = PipelineOptions(model=spec, inference=InferenceConfig(device="cpu", tile=tile, scale=scale),
                                  auto_scale=False, scoring=ScoringConfig(stain="ki67"))
        labels = segment_image(case["image"], model, options.inference).labels
        cells = score_image(case["image"], labels, config=options.scoring_for(None, model)).cells
        arr = np.column_stack([cells[c].to_numpy(float) for c in CELL_COLUMNS]).reshape(-1, len(CELL_COLUMNS))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, arr)
        out.append(arr)
    return out


def case_counts(cells: np.ndarray, case: dict, radius: float = 0.5) -> dict:
    """Matching counts of one case (counted predictions inside the region only), within ``radius`` diameters."""
    from napari_ihcseg.datasets.ki67_sets import KI67_SETS
    from napari_ihcseg.metrics import match_points, values_at_points

    cells = cells[cells[:, 3] > 0.5]
    centres, positive = cells[:, :2], cells[:, 2] > 0.5
    region = case["region"]
    if region is not None and len(centres):
        keep = values_at_points(region, centres)
        centres, positive = centres[keep], positive[keep]
    truth, truth_pos = case["points"], case["positive"]
    m = match_points(centres, truth, radius=KI67_SETS[case["set"]].nucleus_diameter * radius)
    matched_pos = truth_pos[m.truth_index]
    return {"tp": m.tp, "fp": m.fp, "fn": m.fn, "n_truth": len(truth),
            "truth_pos": int(truth_pos.sum()), "found_pos": int(matched_pos.sum()),
            "found_neg": int((~matched_pos).sum()),
            "agree": int(np.sum(positive[m.pred_index] == matched_pos)),
            "pred_index": 100.0 * float(positive.mean()) if len(positive) else float("nan"),
            "truth_index": 100.0 * float(truth_pos.mean())}


def summarise(rows: list[dict]) -> dict:
    """Pooled detection figures and the mean |Δ index| of a list of case counts."""
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    pos = sum(r["truth_pos"] for r in rows)
    neg = sum(r["n_truth"] - r["truth_pos"] for r in rows)

    def ratio(a, b):
        return a / b if b else float("nan")

    return {"cases": len(rows), "f1": ratio(2 * tp, 2 * tp + fp + fn), "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn), "recall_positive": ratio(sum(r["found_pos"] for r in rows), pos),
            "recall_negative": ratio(sum(r["found_neg"] for r in rows), neg),
            "class_agreement": ratio(sum(r["agree"] for r in rows), tp),
            "abs_delta_index": float(np.nanmean([abs(r["pred_index"] - r["truth_index"]) for r in rows]))}


def evaluate(spec: str, cases: list[dict], *, tile: int, cache: Path | None, radii=()) -> dict:
    started = time.perf_counter()
    predicted = predict_cells(spec, cases, tile=tile, cache=cache)
    per_case = [case_counts(cells, case) | {"name": case["name"], "set": case["set"]}
                for cells, case in zip(predicted, cases)]
    sets = {s: summarise(rows) for s, rows in by_set(per_case, cases).items()}
    by_radius = {}
    for radius in radii:
        rows = [case_counts(cells, case, radius) | {"set": case["set"]} for cells, case in zip(predicted, cases)]
        by_radius[f"{radius:g}"] = {"pooled": summarise(rows),
                                    **{s: summarise(group) for s, group in by_set(rows, cases).items()}}
    return {"model": spec, "sets": sets, "pooled": summarise(per_case), "cases": per_case,
            "radii": by_radius, "seconds": round(time.perf_counter() - started, 1)}


def print_radii(results: list[dict]) -> None:
    """Detection F1 / precision / recall per set at the other matching radii."""
    if not results[0]["radii"]:
        return
    width = min(48, max(24, *(len(r["model"]) for r in results)))
    groups = [*results[0]["sets"], "pooled"]
    print("\ndetection at other matching radii (nucleus diameters): F1 / precision / recall")
    print(f"{'model':<{width}}{'radius':>7}" + "".join(f"{g:>22}" for g in groups))
    for r in results:
        for radius, figures in r["radii"].items():
            cells = "".join(f"{figures[g]['f1']:>10.3f} /{figures[g]['precision']:.2f} /{figures[g]['recall']:.2f}"
                            for g in groups)
            print(f"{r['model'][-width:]:<{width}}{radius:>7}{cells}")


COLUMNS = (("f1", "F1"), ("precision", "prec"), ("recall", "recall"), ("recall_positive", "rec+"),
           ("recall_negative", "rec-"), ("class_agreement", "class"), ("abs_delta_index", "|Δidx|"))


def print_table(results: list[dict]) -> None:
    width = min(48, max(24, *(len(r["model"]) for r in results)))
    print("Ki-67 held-out cases: detection (radius half a nucleus diameter at each set's scale), "
          "class agreement on matched nuclei, mean |Δ Ki-67 index| in points")
    for group in [*results[0]["sets"], "pooled"]:
        n = results[0]["pooled" if group == "pooled" else "sets"]
        n = n["cases"] if group == "pooled" else n[group]["cases"]
        print(f"\n{group} ({n} cases)")
        print(f"{'model':<{width}}" + "".join(f"{h:>8}" for _, h in COLUMNS))
        for r in results:
            figures = r["pooled"] if group == "pooled" else r["sets"][group]
            cells = "".join(f"{figures[k]:>8.1f}" if k == "abs_delta_index" else f"{figures[k]:>8.3f}"
                            for k, _ in COLUMNS)
            print(f"{r['model'][-width:]:<{width}}{cells}")
    print("\nper case: F1 / |Δ index| (predicted % vs truth %)")
    for i, case in enumerate(results[0]["cases"]):
        parts = []
        for r in results:
            c = r["cases"][i]
            f1 = 2 * c["tp"] / max(1, 2 * c["tp"] + c["fp"] + c["fn"])
            parts.append(f"{f1:.3f} / {abs(c['pred_index'] - c['truth_index']):4.1f} ({c['pred_index']:4.1f})")
        print(f"  {case['name']:<28} truth {case['truth_index']:4.1f} %   " + "   ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="checkpoint name or folder (repeatable)")
    parser.add_argument("--previous", default=PREVIOUS_DEFAULT,
                        help=f"the default compared with (default {PREVIOUS_DEFAULT}; 'none' to leave it out)")
    add_case_arguments(parser, "folder that keeps predicted cells per checkpoint and case")
    parser.add_argument("--sets", default=",".join(SET_FOLDERS),
                        help="comma-separated sets to evaluate (default all: " + ", ".join(SET_FOLDERS) + ")")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--radii", type=float, nargs="*", default=(), metavar="D",
                        help="also match within these fractions of the nucleus diameter (e.g. 0.75 1.0)")
    args = parser.parse_args(argv)
    data = data_folder(parser, args)
    specs = ([] if args.previous == "none" else [args.previous]) + [m for m in args.model if m != args.previous]
    if not specs:
        parser.error("give --model (and/or keep --previous)")
    sets = tuple(x.strip() for x in args.sets.split(",") if x.strip())
    unknown = set(sets) - set(SET_FOLDERS)
    if unknown or not sets:
        parser.error(f"--sets: choose among {', '.join(SET_FOLDERS)}")
    cases = ki67_cases(data, sets)
    cache = Path(args.cache) if args.cache else None
    if any(not r > 0 for r in args.radii):
        parser.error("--radii: fractions of the nucleus diameter must be positive")
    results = [evaluate(spec, cases, tile=args.tile, cache=cache, radii=args.radii) for spec in specs]
    print_table(results)
    print_radii(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
