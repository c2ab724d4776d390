"""Why points go unmatched: a breakdown of a checkpoint's misses on the Ki-67 point fields.

Detection F1 on the point sets (``evaluate_ki67.py``) counts a point as
missed when no counted nucleus centroid lies within half a nucleus diameter
of it. This benchmark segments the ``ki67-immunoratio`` *training* cases
(default; nothing here may steer a choice judged on the held-out cases) as
``evaluate_ki67.py`` does, and sorts every missed point by what lies under
it in the segmentation:

- **no nucleus**: no counted nucleus under the point (background: a nucleus
  not found, or a click beside the outline; or a nucleus the score leaves
  out, or whose centroid lies outside the annotated region);
- **merged**: a nucleus that holds two or more points (touching nuclei not
  split);
- **off-centre**: a nucleus of its own, but its centroid is more than half
  a diameter from the point (an elongated nucleus, or a click near its edge).

Missed positive and negative points are counted apart, and the same
detections are matched at one diameter too, to show how many misses are a
matter of distance alone. Run::

    python benchmarks/ki67_misses.py --model r2unet-lite-ihc [--cases train|held-out] [--limit N]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("no nucleus", "merged", "off-centre")


def miss_kinds(labels: np.ndarray, centres: np.ndarray, ids: np.ndarray, points: np.ndarray,
               radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The kind of every point (index into :data:`KINDS`, -1 when matched), and which points matched.

    ``centres`` are the counted nuclei's centroids and ``ids`` their labels.
    """
    from napari_ihcseg.metrics import match_points, values_at_points

    under = values_at_points(labels, points)
    held = np.bincount(under, minlength=int(labels.max()) + 1)
    matched = np.zeros(len(points), bool)
    matched[match_points(centres, points, radius=radius).truth_index] = True
    kinds = np.where(under == 0, 0, np.where(held[under] > 1, 1, 2))
    counted = np.isin(under, ids)
    kinds = np.where((under > 0) & ~counted, 0, kinds)      # a nucleus the score leaves out is none
    return np.where(matched, -1, kinds), matched


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="r2unet-lite-ihc", help="checkpoint name or folder")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cases", default="train", choices=("train", "held-out"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases")
    parser.add_argument("--tile", type=int, default=512)
    args = parser.parse_args(argv)

    from napari_ihcseg.datasets.ki67_sets import KI67_SETS, POINT_POSITIVE, load_immunoratio
    from napari_ihcseg.inference import InferenceConfig, segment_image
    from napari_ihcseg.metrics import match_points, values_at_points
    from napari_ihcseg.models import load_model
    from napari_ihcseg.pipeline import PipelineOptions
    from napari_ihcseg.scoring import ScoringConfig, score_image

    data = Path(args.data_root) / "ki67-immunoratio"
    if not data.is_dir():
        parser.error(f"{data}: not found (use --data-root)")
    info = KI67_SETS["immunoratio"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = load_model(args.model, device="cpu")
    samples = load_immunoratio(data, cases=args.cases, scale=1.0)[:args.limit]
    # Scored as the pipeline scores: the checkpoint's Ki-67 classifier when it carries one, else the preset.
    scoring = PipelineOptions(model=args.model, scoring=ScoringConfig(stain="ki67")).scoring_for(None, model)
    radius = 0.5 * info.nucleus_diameter
    counts = {(k, pos): 0 for k in KINDS for pos in (True, False)}
    n_points = {True: 0, False: 0}
    tp = fp = tp_wide = fp_wide = 0
    started = time.perf_counter()
    for s in samples:
        labels = segment_image(s.image, model, InferenceConfig(device="cpu", tile=args.tile, scale=info.scale)).labels
        cells = score_image(s.image, labels, config=scoring).cells
        cells = cells[cells["included"].to_numpy(bool)]
        centres = cells[["centroid_y", "centroid_x"]].to_numpy(float)
        keep = values_at_points(s.region, centres)
        centres, ids = centres[keep], cells["label"].to_numpy()[keep]
        kinds, matched = miss_kinds(labels, centres, ids, s.points, radius)
        positive = s.point_classes == POINT_POSITIVE
        for pos in (True, False):
            n_points[pos] += int(np.sum(positive == pos))
            for k, name in enumerate(KINDS):
                counts[(name, pos)] += int(np.sum((kinds == k) & (positive == pos)))
        tp += int(matched.sum())
        fp += len(centres) - int(matched.sum())
        wide = match_points(centres, s.points, radius=2 * radius)
        tp_wide += wide.tp
        fp_wide += wide.fp
        print(f"  {s.name}: {len(s.points)} points, {int((~matched).sum())} missed", flush=True)
    total = sum(n_points.values())
    missed = total - tp
    print(f"\n{args.model} on {len(samples)} ki67-immunoratio {args.cases} cases "
          f"({time.perf_counter() - started:.0f} s): {total} points, radius {radius:g} px")
    print(f"F1 {2 * tp / (2 * tp + fp + missed):.3f} (precision {tp / max(tp + fp, 1):.3f}, "
          f"recall {tp / max(total, 1):.3f}); at one diameter F1 "
          f"{2 * tp_wide / (2 * tp_wide + fp_wide + total - tp_wide):.3f}")
    print(f"{'missed points':<14}{'positive':>24}{'negative':>24}{'all':>24}")
    for name in KINDS:
        cells_ = [counts[(name, True)], counts[(name, False)]]
        row = [f"{c} ({c / max(n_points[p], 1):.1%})" for c, p in zip(cells_, (True, False))]
        row.append(f"{sum(cells_)} ({sum(cells_) / max(missed, 1):.0%} of misses)")
        print(f"{name:<14}" + "".join(f"{x:>24}" for x in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
