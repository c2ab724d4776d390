"""How close do pseudo-instances grown from points come to real outlines?

The glioma Ki-67 frames (``ki67-glioma-polygons``) have one polygon per
nucleus. Their centroids stand in for a pathologist's clicks; each method of
:class:`napari_ihcseg.training.points.PointTargetConfig` grows
pseudo-instances from them, which are compared with the polygons (Dice, AJI,
PQ over the whole frame), together with the share of pixels the loss would
trust and the pixel agreement (nucleus or not) on those trusted pixels.
Only the training frames are used (``cases="train"``; the held-out frame
stays unseen), at the readers' training scale (0.37x). With ``--model``,
each method is also measured as a self-training round
(``self_training=True``) whose detections are that checkpoint's nuclei on
the frame. Run::

    python benchmarks/point_targets_quality.py [--data-root ../shared/data] [--model r2unet-lite-ihc]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from napari_ihcseg.datasets.ki67_sets import load_glioma_polygons
    from napari_ihcseg.metrics import evaluate_instances
    from napari_ihcseg.training.points import POINT_TARGET_METHODS, PointTargetConfig, point_targets
    from napari_ihcseg.training.prepare import model_detections

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--diameter", type=float, default=PointTargetConfig().nucleus_diameter,
                        help="PointTargetConfig.nucleus_diameter (pixels at the training scale)")
    parser.add_argument("--model", default=None,
                        help="also measure self-training rounds with this checkpoint's detections")
    args = parser.parse_args(argv)
    frames = load_glioma_polygons(Path(args.data_root) / "ki67-glioma-polygons", cases="train")
    detections = [None] * len(frames)
    if args.model:
        from napari_ihcseg.models import load_model

        model = load_model(args.model, device="cpu")
        detections = [model_detections(model, s.image) for s in frames]
        print(f"{args.model}'s own nuclei alone: Dice / AJI / PQ "
              + " / ".join(f"{v:.3f}" for v in np.mean([[evaluate_instances(d, s.labels)[k] for k in
                                                          ("dice", "aji", "pq")] for d, s in zip(detections, frames)],
                                                        axis=0)))
    print(f"{len(frames)} training frames, points = polygon centroids, nucleus_diameter {args.diameter:g} px")
    print(f"{'method':<24}{'Dice':>8}{'AJI':>8}{'PQ':>8}{'trusted':>9}{'agree':>8}{'s/frame':>9}")
    variants = [(m, False) for m in POINT_TARGET_METHODS] + ([(m, True) for m in POINT_TARGET_METHODS]
                                                             if args.model else [])
    for method, self_training in variants:
        config = PointTargetConfig(method=method, nucleus_diameter=args.diameter, self_training=self_training)
        rows = []
        for s, detected in zip(frames, detections):
            ids = np.unique(s.labels[s.labels > 0])
            points = np.asarray(ndi.center_of_mass(np.ones_like(s.labels), s.labels, ids))
            t0 = time.perf_counter()
            labels, trusted = point_targets(s.image, points, None, config, detections=detected)
            seconds = time.perf_counter() - t0
            m = evaluate_instances(labels, s.labels)
            agree = float(((labels > 0) == (s.labels > 0))[trusted].mean())
            rows.append((m["dice"], m["aji"], m["pq"], float(trusted.mean()), agree, seconds))
        d, a, p, t, g, sec = np.mean(rows, axis=0)
        name = f"{method} + self-training" if self_training else method
        print(f"{name:<24}{d:>8.3f}{a:>8.3f}{p:>8.3f}{t:>9.3f}{g:>8.3f}{sec:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
