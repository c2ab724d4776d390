"""Automatic scale on real fields at two magnifications: does it find the factor a user would set?

The model's training nucleus size is measured first: the median equivalent
diameter of the nuclei the checkpoint itself detects on the ki67-immunoratio
*training* cases (a central ``--crop``-pixel window of each, upsampled 2x to
its 40x-like training scale, as ``calibrate_ki67.py`` segments them; the
diameters are doubled to model pixels). IHC rather than the H&E of MoNuSeg,
because the reference must be the size the model outlines nuclei at in the
images it will be used on, whatever its bias. Then
:func:`estimate_scale` runs on

- the held-out ``ki67-immunoratio`` fields as shipped (about 20x: the
  right factor is about 2) and upsampled 2x (about 40x: about 1);
- the ``ki67-points`` fields at full resolution (40x-like: about 1) and
  downsampled 2x (about 2),

and prints each estimate, its source, the nuclei it measured and its time.
``--write CHECKPOINT`` stores the reference (and the 40x pixel size, 0.25 um)
in the checkpoint's ``training`` metadata, which :mod:`napari_ihcseg.inference.autoscale`
reads. Run::

    python benchmarks/autoscale_ki67.py [--data ../shared/data] [--model r2unet-lite-ihc]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from calibrate_ki67 import default_data, load_case, point_cases, read_rgb, segment_case

#: Pixel size of the 40x training data (MoNuSeg, TCGA scans at 0.25 um).
TRAINING_PIXEL_SIZE_UM = 0.25


def reference_diameter(model, name: str, data: Path, crop: int, cache: Path | None) -> tuple[float, int]:
    from napari_ihcseg.inference.autoscale import nucleus_diameters

    diameters = []
    for case in point_cases(data):
        if case["source"] == "immunoratio" and not case["held_out"]:
            case = load_case(case, crop)
            diameters.append(case["scale"] * nucleus_diameters(segment_case(case, model, name, cache)))
    pooled = np.concatenate(diameters)
    return float(np.median(pooled)), int(pooled.size)


def fields(data: Path, n_immunoratio: int):
    from napari_ihcseg.datasets.ki67_split import IMMUNORATIO_HELD_OUT, KI67_POINTS_HELD_OUT
    from napari_ihcseg.inference.tiled import resize_image

    for case in KI67_POINTS_HELD_OUT:
        image = read_rgb(data / "ki67-points" / case / "base.png")
        yield f"ki67-points {case} full resolution", image, 1.0
        yield f"ki67-points {case} downsampled 2x", resize_image(image, (image.shape[0] // 2,
                                                                         image.shape[1] // 2)), 2.0
    for case in IMMUNORATIO_HELD_OUT[:n_immunoratio]:
        image = read_rgb(data / "ki67-immunoratio" / case / "field.jpg")
        yield f"immunoratio {case} as shipped", image, 2.0
        yield f"immunoratio {case} upsampled 2x", resize_image(image, (2 * image.shape[0],
                                                                       2 * image.shape[1])), 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="the shared data folder")
    parser.add_argument("--model", default="r2unet-lite-ihc", help="shipped checkpoint name or folder")
    parser.add_argument("--crop", type=int, default=256, metavar="PX",
                        help="window of each training case measured for the reference (field pixels)")
    parser.add_argument("--cache", type=Path, default=None, help="labels cache shared with calibrate_ki67.py")
    parser.add_argument("--probe", type=int, default=768, help="crop side of the first pass")
    parser.add_argument("--immunoratio", type=int, default=3, metavar="N", help="held-out immunoratio cases")
    parser.add_argument("--write", type=Path, default=None, metavar="CHECKPOINT",
                        help="store the reference in this checkpoint folder's training metadata")
    args = parser.parse_args(argv)

    from napari_ihcseg.inference.autoscale import estimate_scale
    from napari_ihcseg.models import load_model

    model = load_model(args.model, device="cpu")
    started = time.perf_counter()
    diameter, count = reference_diameter(model, Path(str(args.model)).name, args.data, args.crop, args.cache)
    print(f"training nucleus size of {args.model}: median diameter {diameter:.2f} px (model pixels) over "
          f"{count} nuclei of the ki67-immunoratio training cases ({time.perf_counter() - started:.0f} s)")
    training = {**model.checkpoint_info.training, "nucleus_diameter_px": round(diameter, 2),
                "pixel_size_um": TRAINING_PIXEL_SIZE_UM}
    model.checkpoint_info = replace(model.checkpoint_info, training=training)

    print(f"\n{'field':44s} {'right':>5s} {'estimate':>8s} {'source':>7s} {'nuclei':>6s} {'diam px':>7s} {'s':>5s}")
    errors = []
    for name, image, right in fields(args.data, args.immunoratio):
        started = time.perf_counter()
        est = estimate_scale(image, model, probe_size=args.probe)
        seconds = time.perf_counter() - started
        diam = "-" if est.diameter_px is None else f"{est.diameter_px:.1f}"
        print(f"{name:44s} {right:5g} {est.scale:8.2f} {est.source:>7s} {est.n_nuclei:6d} {diam:>7s} {seconds:5.0f}"
              + ("" if est.source == "nuclei" else f"   ({est.reason})"), flush=True)
        errors.append(abs(est.scale / right - 1))
    print(f"\nmean relative error {100 * np.mean(errors):.1f} %, largest {100 * np.max(errors):.1f} %")
    if args.write is not None:
        from napari_ihcseg._atomic import write_json_atomic
        from napari_ihcseg.models import read_checkpoint_config

        document = read_checkpoint_config(args.write)
        document["training"].update(nucleus_diameter_px=round(diameter, 2), pixel_size_um=TRAINING_PIXEL_SIZE_UM)
        write_json_atomic(Path(args.write) / "config.json", document, overwrite=True)
        print(f"written: {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
