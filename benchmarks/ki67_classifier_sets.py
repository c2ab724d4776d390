"""Does a per-nucleus Ki-67 classifier fitted on two sets beat the preset's DAB cut?

The shipped checkpoints carry no Ki-67 classifier: the one fitted on the
breast fields alone called 82 % of a glioma frame positive against 22 %
(docs/models.md). This benchmark asks whether a classifier fitted on the
training cases of *both* Ki-67 sets (``ki67-immunoratio`` and
``ki67-glioma-polygons``) generalises, with the same checkpoint's nuclei:

1. Every case is segmented at its set's scale; its detections inside the
   annotated region are measured (:func:`~napari_ihcseg.scoring.calibrate.labelled_nuclei`,
   the classifier's features) and matched to the annotations within half a
   nucleus diameter.
2. **Leave one set out**: a classifier fitted on one set's training cases
   calls the other set's, beside the preset's DAB cut.
3. **Both sets**: a classifier fitted on all training cases (each set
   weighing the same: the glioma frames are repeated so that they count as
   much as the breast fields) calls the held-out cases (6 immunoratio,
   2 ki67-points, 1 glioma), beside the preset's DAB cut.

Figures per case, then averaged per set: |Δ Ki-67 index| (every detection
inside the region counts) and class agreement on the matched detections.

Usage::

    python benchmarks/ki67_classifier_sets.py --cache /tmp/ki67-fields     # r2unet-lite-ihc

About 17 minutes on two cores for the segmentation; ``--cache`` keeps each
case's measured detections (CSV), keyed like ``evaluate_ki67.py``'s cells.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_ki67 import _weights_key, add_case_arguments, by_set, data_folder, split_cases  # noqa: E402


def labelled_fields(spec: str, cases: list[dict], *, tile: int, cache: Path | None) -> list:
    """One :class:`~napari_ihcseg.scoring.calibrate.LabelledField` per case (detections measured and matched)."""
    import pandas as pd

    from napari_ihcseg.datasets.ki67_sets import KI67_SETS
    from napari_ihcseg.inference import InferenceConfig, segment_image
    from napari_ihcseg.metrics import values_at_points
    from napari_ihcseg.models import load_model
    from napari_ihcseg.scoring.calibrate import LabelledField, labelled_nuclei

    key = _weights_key(spec)
    model = None
    fields = []
    for case in cases:
        info = KI67_SETS[case["set"]]
        radius = 0.5 * info.nucleus_diameter
        name = f"{key}-{case['name'].replace('/', '_')}-x{info.scale:g}-t{tile}-fields.csv"
        path = cache / name if cache else None
        if path is not None and path.is_file():
            points, positive = case["points"], case["positive"]
            if case["region"] is not None:
                inside = values_at_points(case["region"], points)
                points, positive = points[inside], positive[inside]
            fields.append(LabelledField(case["name"], pd.read_csv(path), len(points), int(positive.sum()), radius))
            continue
        if model is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                model = load_model(spec, device="cpu")
        labels = segment_image(case["image"], model, InferenceConfig(device="cpu", tile=tile, scale=info.scale)).labels
        field = labelled_nuclei(case["name"], case["image"], labels, case["points"], case["positive"],
                                region=case["region"], radius=radius)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            field.cells.to_csv(partial, index=False)
            partial.replace(path)
        print(f"  {case['name']}: {len(field.cells)} detections", file=sys.stderr, flush=True)
        fields.append(field)
    return fields


def set_figures(fields: list, call) -> dict:
    """Mean |Δ index| and mean class agreement of ``call(cells) -> positive`` over ``fields``."""
    from napari_ihcseg.scoring.calibrate import classification_figures

    rows = [classification_figures(f, call(f.cells)) for f in fields]
    return {"abs_delta_index": float(np.mean([r["abs_delta_index"] for r in rows])),
            "agreement": float(np.nanmean([r["agreement"] for r in rows]))}


def balanced(by_set: dict[str, list]) -> list:
    """The fields of every set, the smaller sets repeated so that each set weighs about the same in a fit."""
    most = max(len(g) for g in by_set.values())
    return [f for g in by_set.values() for f in g * max(1, round(most / len(g)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="r2unet-lite-ihc", help="checkpoint name or folder")
    add_case_arguments(parser, "folder that keeps each case's measured detections")
    args = parser.parse_args(argv)
    data = data_folder(parser, args)
    from napari_ihcseg.scoring import get_preset
    from napari_ihcseg.scoring.calibrate import calibrate_classifier

    cut = get_preset("ki67").thresholds[0]
    cache = Path(args.cache) if args.cache else None
    started = time.perf_counter()
    cases = split_cases(data)
    train, held = (by_set(labelled_fields(args.model, cases[s], tile=args.tile, cache=cache), cases[s])
                   for s in ("train", "held-out"))
    print(f"{args.model}: training " + ", ".join(
        f"{s} {len(g)} cases ({sum(int((f.cells.truth >= 0).sum()) for f in g)} matched)" for s, g in train.items())
        + f"; {time.perf_counter() - started:.0f} s")

    def by_cut(cells):
        return cells["dab_od_mean"].to_numpy() >= cut

    def row(label, figures):
        print(f"  {label:<44}" + "".join(f"{f['abs_delta_index']:>9.2f} /{f['agreement']:.3f}" for f in figures))

    print("\nleave one set out (mean |Δ index| / class agreement on the other set)")
    for fitted, group in train.items():
        classifier = calibrate_classifier(group)
        for other, fields in train.items():
            if other != fitted:
                row(f"classifier fitted on {fitted}, on {other}", [set_figures(fields, classifier.positive.predict)])
                row(f"preset cut {cut:g}, on {other}", [set_figures(fields, by_cut)])

    classifier = calibrate_classifier(balanced(train))
    held["all held-out"] = [f for g in held.values() for f in g]
    print("\nheld-out cases: mean |Δ index| / class agreement")
    print(f"  {'':<44}" + "".join(f"{s:>15}" for s in held))
    row(f"preset cut {cut:g}", [set_figures(g, by_cut) for g in held.values()])
    row("classifier fitted on both sets", [set_figures(g, classifier.positive.predict) for g in held.values()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
