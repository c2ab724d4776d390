"""Choose the Ki-67 DAB cut on thousands of nuclei from two sets, and check it on sets it never saw.

The Ki-67 preset calls a nucleus positive when its mean DAB optical density
reaches a cut (``t1``). This benchmark chooses that cut on the *training*
cases of the two Ki-67 sets that have any (the 20 ``ki67-immunoratio``
breast fields, about 23,000 pathologist points, and the 4 ``ki67-glioma-polygons``
training frames, about 2,000 outlined nuclei), with the nuclei a checkpoint
finds, scored as the pipeline scores them:

1. Every case is segmented at its set's scale and scored with the Ki-67
   preset (``benchmarks/evaluate_ki67.py``'s cells, shared cache); the
   counted nuclei (``included``, centroid inside the annotated region) keep
   their mean DAB OD.
2. For each cut on a grid of 0.025 steps, a case's Ki-67 index is the % of
   its counted nuclei at or above the cut; its error is |index − the
   pathologists' index|. Class agreement is over the nuclei matched to a
   point within half a nucleus diameter.
3. **Chosen cut:** the smallest mean |Δ index|, each *set* weighing the same
   (the mean over a set's cases, then over the sets), so that the 20 breast
   fields do not drown the glioma frames. Ties go to the lower cut.
4. **Leave one set out:** the cut chosen on one set alone is scored on the
   other, beside the preset; a cut that only suits one stain shows here.
5. The held-out cases (6 immunoratio, 2 ki67-points, 1 glioma; never used to
   choose) are scored with the preset and with the chosen cut.
6. The five glioma frames' *outlined* nuclei (the polygons themselves, no
   model) are scored at both cuts: the cut alone, without detection errors.

Usage::

    python benchmarks/calibrate_ki67_sets.py --cache /tmp/ki67-cells      # r2unet-lite-ihc
    python benchmarks/calibrate_ki67_sets.py --model runs/ft/best --json cut.json

Segmenting every case takes about 20 minutes per checkpoint on two cores;
``--cache`` keeps the cells (the same cache as ``evaluate_ki67.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_ki67 import (CELL_COLUMNS, add_case_arguments, by_set, data_folder, predict_cells,  # noqa: E402
                           split_cases)

#: Cuts tried (DAB OD).
GRID = np.round(np.arange(0.05, 0.4001, 0.025), 3)
INCLUDED, DAB = CELL_COLUMNS.index("included"), CELL_COLUMNS.index("dab_od_mean")


def case_calls(cells: np.ndarray, case: dict) -> dict:
    """What a DAB cut needs of one case: the counted nuclei's DAB, the matched ones' truth, the true index.

    Parameters
    ----------
    cells : (N, len(CELL_COLUMNS)) array
        The case's cells (:func:`evaluate_ki67.predict_cells`).
    case : dict
        The case (:func:`evaluate_ki67.ki67_cases`): ``set``, ``points``,
        ``positive`` and ``region`` (None: the whole image).
    """
    from napari_ihcseg.datasets.ki67_sets import KI67_SETS
    from napari_ihcseg.metrics import match_points, values_at_points

    cells = cells[cells[:, INCLUDED] > 0.5]
    if case["region"] is not None and len(cells):
        cells = cells[values_at_points(case["region"], cells[:, :2])]
    match = match_points(cells[:, :2], case["points"], radius=0.5 * KI67_SETS[case["set"]].nucleus_diameter)
    return {"set": case["set"], "name": case["name"], "dab": cells[:, DAB],
            "matched_dab": cells[match.pred_index, DAB], "matched_truth": case["positive"][match.truth_index],
            "truth_index": 100.0 * float(np.mean(case["positive"]))}


def index_error(calls: dict, cut: float) -> float:
    """|Δ Ki-67 index| (points) of one case called at ``cut``."""
    dab = calls["dab"]
    index = 100.0 * float(np.mean(dab >= cut)) if len(dab) else float("nan")
    return abs(index - calls["truth_index"])


def mean_error(calls: list[dict], cut: float) -> float:
    """Mean |Δ index| of ``calls`` at ``cut`` (cases without nuclei skipped)."""
    return float(np.nanmean([index_error(c, cut) for c in calls]))


def agreement(calls: list[dict], cut: float) -> float:
    """Class agreement over the matched nuclei of ``calls`` (pooled)."""
    agree = sum(int(np.sum((c["matched_dab"] >= cut) == c["matched_truth"])) for c in calls)
    total = sum(len(c["matched_dab"]) for c in calls)
    return agree / total if total else float("nan")


def set_error(calls: list[dict], cut: float) -> float:
    """Mean |Δ index| over the sets of ``calls``, each set the mean over its cases (cases without nuclei skipped)."""
    return float(np.nanmean([mean_error(group, cut) for group in by_set(calls, calls).values()]))


def choose_cut(calls: list[dict], grid=GRID) -> float:
    """The cut of ``grid`` with the smallest :func:`set_error` (ties: the lower cut)."""
    if not any(len(c["dab"]) for c in calls):
        raise ValueError("no counted nucleus in any case: nothing to choose a cut on")
    errors = [set_error(calls, cut) for cut in grid]
    return float(grid[int(np.nanargmin(errors))])


def outlined_glioma(cases: list[dict], cuts) -> list[tuple[str, float, list[float]]]:
    """Per glioma frame of ``cases``: the true index and the index of its *outlined* nuclei at each cut.

    No model is involved: the pathologists' own polygons (the cases'
    ``labels``) are scored, so this shows the cut alone.
    """
    from napari_ihcseg.scoring import ScoringConfig, score_image

    rows = []
    for case in (c for c in cases if c["set"] == "glioma"):
        cells = score_image(case["image"], case["labels"], config=ScoringConfig(stain="ki67")).cells
        dab = cells.loc[cells["included"].to_numpy(bool), "dab_od_mean"].to_numpy()
        rows.append((case["name"], 100.0 * float(np.mean(case["positive"])),
                     [100.0 * float(np.mean(dab >= cut)) for cut in cuts]))
    return rows


def _finite(value):
    """``value`` with NaN (a group without matched nuclei) as None, so that the JSON is strict."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return None if isinstance(value, float) and np.isnan(value) else value


def _row(label: str, groups: dict[str, list[dict]], cut: float) -> str:
    cells = "".join(f"{mean_error(g, cut):>9.2f} /{agreement(g, cut):.3f}"
                    for g in groups.values())
    return f"{label:<28}" + cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="r2unet-lite-ihc", help="checkpoint name or folder")
    add_case_arguments(parser, "folder that keeps predicted cells (shared with evaluate_ki67)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    data = data_folder(parser, args)
    from napari_ihcseg.models import recommended_classifier
    from napari_ihcseg.scoring import get_preset

    if recommended_classifier(args.model, "ki67") is not None:
        parser.error(f"{args.model}: carries a Ki-67 classifier, which decides instead of any cut; "
                     "choose the cut with a checkpoint without one")
    preset = get_preset("ki67").thresholds[0]
    cache = Path(args.cache) if args.cache else None
    started = time.perf_counter()
    cases = split_cases(data)
    calls = {s: [case_calls(c, case) for c, case in
                 zip(predict_cells(args.model, group, tile=args.tile, cache=cache), group)]
             for s, group in cases.items()}
    train, held = calls["train"], calls["held-out"]
    train_sets = by_set(train, train)
    counts = {s: (len(g), sum(len(c["matched_dab"]) for c in g)) for s, g in train_sets.items()}
    print(f"{args.model}: training cases " + ", ".join(f"{s} {n} ({m} nuclei matched to points)"
                                                       for s, (n, m) in counts.items())
          + f"; {time.perf_counter() - started:.0f} s")

    chosen = choose_cut(train)
    alone = {s: choose_cut(g) for s, g in train_sets.items()}
    print("\ntraining cases: mean |Δ index| / class agreement per set, at each cut")
    print(f"{'cut':<28}" + "".join(f"{s:>16}" for s in train_sets) + f"{'sets mean |Δ|':>16}")
    for cut in GRID:
        marks = ("  chosen" if cut == chosen else "") + ("  preset" if cut == preset else "")
        print(_row(f"{cut:.3f}{marks}", train_sets, cut) + f"{set_error(train, cut):>16.2f}")

    print("\nleave one set out: the cut chosen on one set alone, scored on the other (mean |Δ| / agreement)")
    loso = {}
    for fitted, cut in alone.items():
        for other, group in train_sets.items():
            if other == fitted:
                continue
            figures = {"cut": cut, "abs_delta_index": mean_error(group, cut),
                       "preset_abs_delta_index": mean_error(group, preset)}
            loso[f"{fitted}->{other}"] = figures
            print(f"  chosen on {fitted} alone: {cut:.3f}; on {other}: {figures['abs_delta_index']:.2f} "
                  f"(preset {preset:g}: {figures['preset_abs_delta_index']:.2f})")

    held_sets = by_set(held, held) | {"all held-out": held}
    print("\nheld-out cases (never used to choose): mean |Δ index| / class agreement")
    print(f"{'cut':<28}" + "".join(f"{s:>16}" for s in held_sets))
    for label, cut in ((f"preset {preset:g}", preset), (f"chosen {chosen:g}", chosen)):
        print(_row(label, held_sets, cut))
    print("\nper held-out case: truth %, preset %, chosen %")
    for c in held:
        called = [100.0 * float(np.mean(c["dab"] >= cut)) for cut in (preset, chosen)]
        print(f"  {c['name']:<30} {c['truth_index']:5.1f} {called[0]:7.1f} {called[1]:7.1f}")
    cuts = sorted({0.1, 0.15, 0.2, 0.25, preset, chosen})
    print("\nglioma frames, the pathologists' outlined nuclei (no model): truth % and % positive at each cut")
    print(f"  {'frame':<30} {'truth':>5}" + "".join(f"{cut:>7g}" for cut in cuts))
    outlined = outlined_glioma(cases["train"] + cases["held-out"], cuts)
    for name, truth, called in outlined:
        print(f"  {name:<30} {truth:5.1f}" + "".join(f"{c:7.1f}" for c in called))
    print(f"  {'mean |Δ index|':<36}" + "".join(f"{np.mean([abs(c[i] - t) for _, t, c in outlined]):7.2f}"
                                             for i in range(len(cuts))))
    print(f"\nchosen on the training cases of both sets: {chosen:g} (preset {preset:g}); "
          + ", ".join(f"{s} alone {cut:g}" for s, cut in alone.items()))
    if args.json:
        def figures(group, cut):
            return {"abs_delta_index": mean_error(group, cut), "agreement": agreement(group, cut)}

        out = {"model": args.model, "preset": preset, "chosen": chosen, "chosen_alone": alone,
               "training": {s: {"cases": n, "matched_nuclei": m} for s, (n, m) in counts.items()},
               "leave_one_set_out": loso,
               "glioma_outlined": [{"frame": n, "truth_index": t, "index_at": dict(zip(map(str, cuts), c))}
                                   for n, t, c in outlined],
               "held_out": {s: {"preset": figures(g, preset), "chosen": figures(g, chosen)}
                            for s, g in held_sets.items()}}
        Path(args.json).write_text(json.dumps(_finite(out), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
