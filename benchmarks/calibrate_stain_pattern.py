"""Calibrate the stain-pattern check: where does nuclear DAB end and cytoplasmic DAB begin?

For every image the nuclear DAB share of :mod:`napari_ihcseg.scoring.stain_pattern`
(median over the stained cells of nuclear DAB / (nuclear + ring DAB)) is computed
with the same code as ``score_image``, on nuclei taken from each set's truth:

- nuclear stains, Ki-67 (``../shared/data``):
  ``deepliif-ki67-sample`` (nuclei from the segmentation tile, :func:`deepliif_labels`),
  ``ki67-immunoratio`` (a disk of the case's median nucleus diameter at every
  pathologist point), ``ki67-points`` (a disk of 26 px, twice the ImmunoRatio
  median, at every point: full resolution), ``ki67-glioma-polygons`` (the
  outlined nuclei);
- a non-nuclear stain: scikit-image's IHC sample (FHL2, cytoplasmic in
  colonic glands), which has no truth: its nuclei are those of the shipped
  default model (``--model``), segmented at scale 2 as the demo does.

Printed: each image's share, the range of the nuclear stains and of the
non-nuclear one, the cut (:data:`NUCLEAR_SHARE_CUT`) and the margins on both
sides. Fields with fewer than :data:`MIN_STAINED_CELLS` stained cells get no
call (Ki-67-negative fields) and are listed apart. Run::

    python benchmarks/calibrate_stain_pattern.py [--data ../shared/data] [--model NAME]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import numpy as np

from napari_ihcseg.scoring import measure_nuclei
from napari_ihcseg.scoring.stain_pattern import MIN_STAINED_CELLS, NUCLEAR_SHARE_CUT, pattern_of_cells

#: Nucleus diameter (px) at the ki67-points full resolution: twice the ImmunoRatio median of 13.
POINTS_DIAMETER = 26.0


def default_data() -> Path:
    env = os.environ.get("IHCSEG_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def read_rgb(path: Path) -> np.ndarray:
    from skimage import io

    return np.ascontiguousarray(np.asarray(io.imread(path))[..., :3])


def disk_labels(shape, points: np.ndarray, diameter: float) -> np.ndarray:
    """One disk of ``diameter`` per ``(row, col)`` point, labelled 1..N (later points on top)."""
    labels = np.zeros(shape, np.int32)
    r = diameter / 2.0
    k = int(np.ceil(r))
    dy, dx = np.mgrid[-k:k + 1, -k:k + 1]
    inside = dy ** 2 + dx ** 2 <= r * r
    dy, dx = dy[inside], dx[inside]
    for i, (y, x) in enumerate(np.rint(points).astype(int)):
        ys, xs = dy + y, dx + x
        ok = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
        labels[ys[ok], xs[ok]] = i + 1
    return labels


def nuclear_images(data: Path):
    """``(set, name, image, labels)`` of the Ki-67 sets present under ``data``."""
    from napari_ihcseg.io.points import read_points_csv
    from napari_ihcseg.datasets import load_deepliif

    if (data / "deepliif-ki67-sample").is_dir():
        for sample in load_deepliif(data / "deepliif-ki67-sample"):
            yield "deepliif-ki67-sample", sample.name.split("/")[-1], sample.image, sample.labels
    folder = data / "ki67-immunoratio"
    if (folder / "cases.csv").is_file():
        with open(folder / "cases.csv", newline="") as fh:
            cases = list(csv.DictReader(fh))
        for case in cases:
            image = read_rgb(folder / case["case"] / "field.jpg")
            points, _ = read_points_csv(folder / case["case"] / "markers.csv")
            yield ("ki67-immunoratio", case["case"], image,
                   disk_labels(image.shape[:2], points, float(case["median_nucleus_diameter_px"])))
    folder = data / "ki67-points"
    for case in sorted(p for p in folder.glob("*") if (p / "markers.csv").is_file()):
        image = read_rgb(case / "base.png")
        points, _ = read_points_csv(case / "markers.csv")
        yield "ki67-points", case.name, image, disk_labels(image.shape[:2], points, POINTS_DIAMETER)
    folder = data / "ki67-glioma-polygons"
    for case in sorted(p for p in folder.glob("*") if (p / "labels.png").is_file()):
        from skimage import io

        yield ("ki67-glioma-polygons", case.name, read_rgb(case / "image.jpg"),
               np.asarray(io.imread(case / "labels.png")).astype(np.int32))


def skimage_sample_labels(model: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The scikit-image IHC sample and the shipped model's nuclei (scale 2, as the demo)."""
    from skimage import data

    from napari_ihcseg.inference import InferenceConfig, segment_image
    from napari_ihcseg.pipeline import resolve_model

    image = data.immunohistochemistry()
    net, name = resolve_model(model, "cpu")
    labels = segment_image(image, net, InferenceConfig(device="cpu", scale=2.0)).labels
    return image, np.asarray(labels), name


def share_of(image: np.ndarray, labels: np.ndarray) -> dict:
    cells = measure_nuclei(image, labels, ring="auto")
    return {**pattern_of_cells(cells), "n_cells": len(cells), "ring": cells.attrs["ring"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="the shared data folder")
    parser.add_argument("--model", default=None, help="model for the scikit-image sample (default: shipped)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"{args.data}: not found (set --data or IHCSEG_SHARED_DATA)", file=sys.stderr)
        return 2

    print(f"{'set':22s} {'image':24s} {'cells':>6s} {'stained':>7s} {'ring':>8s} {'share':>6s}  call")
    nuclear, undecided = [], []
    for kind, name, image, labels in nuclear_images(args.data):
        r = share_of(image, labels)
        share = r["dab_nuclear_share"]
        print(f"{kind:22s} {name:24s} {r['n_cells']:6d} {r['n_stained_cells']:7d} {str(r['ring']):>8s} "
              f"{'  n/a' if share is None else f'{share:6.3f}'}  {r['stain_pattern']}", flush=True)
        (undecided if share is None else nuclear).append((kind, name, share, r["stain_pattern"]))
    image, labels, model = skimage_sample_labels(args.model)
    r = share_of(image, labels)
    other = r["dab_nuclear_share"]
    print(f"{'skimage (FHL2)':22s} {'immunohistochemistry':24s} {r['n_cells']:6d} {r['n_stained_cells']:7d} "
          f"{str(r['ring']):>8s} {other:6.3f}  {r['stain_pattern']}   (nuclei: {model}, scale 2)")

    shares = np.array([s for _, _, s, _ in nuclear])
    lowest = nuclear[int(np.argmin(shares))]
    print()
    print(f"nuclear stains: {len(shares)} images with a call, share {shares.min():.3f}–{shares.max():.3f} "
          f"(median {np.median(shares):.3f}; lowest {lowest[0]}/{lowest[1]}); "
          f"{len(undecided)} with under {MIN_STAINED_CELLS} stained cells: no call")
    print(f"non-nuclear stain: share {other:.3f}")
    print(f"gap between them {shares.min() - other:.3f}; cut {NUCLEAR_SHARE_CUT:.2f} "
          f"(margin {shares.min() - NUCLEAR_SHARE_CUT:.3f} above it to the lowest nuclear image, "
          f"{NUCLEAR_SHARE_CUT - other:.3f} below it to the non-nuclear one)")
    wrong = [f"{k}/{n}" for k, n, _, call in nuclear if call != "nuclear"]
    print(f"nuclear images called non-nuclear: {len(wrong)} {wrong if wrong else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
