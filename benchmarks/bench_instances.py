"""Benchmark the instance step (contour subtraction + constrained dilation).

Run ``python benchmarks/bench_instances.py``. Every figure is measured side by
side in one run, on synthetic fields of touching nuclei (random ellipses,
clustered so that many touch; mask = their union, contour = a band of
``--band`` pixels inside each nucleus's boundary, so small nuclei are covered
whole and become seedless regions, as with real predictions).

Columns:

* ``reference``: the straightforward vectorised form, one 3x3 minimum filter
  (``scipy.ndimage.minimum_filter``) over the whole image per sweep, 0 read as
  +inf;
* ``shifts``: the same sweeps with nine shifted ``np.minimum`` instead of the
  filter (a faster whole-image variant, shown for fairness);
* ``numpy``: :func:`napari_ihcseg.instances.contour_subtract_dilate`;
* ``torch-cpu`` / ``torch-cuda``: :func:`contour_subtract_dilate_torch`
  (numpy in, numpy out; CUDA only where available).

Times are the best of ``--repeats`` runs at 1024x1024 and of 2 runs above (the
least disturbed by other work on the machine), the methods taking turns. The
per-pixel summary also gives CPU time, which other work disturbs less. Every
output is checked against the reference.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy import ndimage as ndi

from napari_ihcseg.instances import contour_subtract_dilate
from napari_ihcseg.instances._common import STRUCTURE_8, label_seedless

BIG = np.iinfo(np.int32).max


def touching_nuclei(shape: tuple[int, int], count: int, *, band: int = 2, seed: int = 0):
    """Instance truth, mask and contour for ``count`` clustered, touching ellipses."""
    rng = np.random.default_rng(seed)
    height, width = shape
    labels = np.zeros(shape, dtype=np.int32)
    best = np.full(shape, np.inf, dtype=np.float32)
    clusters = rng.uniform((0, 0), (height, width), size=(max(count // 6, 1), 2))
    centres = clusters[rng.integers(0, len(clusters), count)] + rng.normal(0, 35, (count, 2))
    for k, (cy, cx) in enumerate(centres, start=1):
        a = rng.uniform(11, 21)
        b = a * rng.uniform(0.6, 1.0)
        angle = rng.uniform(0, np.pi)
        y0, y1 = max(int(cy - a) - 1, 0), min(int(cy + a) + 2, height)
        x0, x1 = max(int(cx - a) - 1, 0), min(int(cx + a) + 2, width)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        d = ((u / a) ** 2 + (v / b) ** 2).astype(np.float32)
        window = best[y0:y1, x0:x1]
        take = (d < 1) & (d < window)
        labels[y0:y1, x0:x1][take] = k
        window[take] = d[take]
    r = np.arange(-band, band + 1)
    footprint = r[:, None] ** 2 + r[None, :] ** 2 <= band * band
    lo = ndi.minimum_filter(labels, footprint=footprint, mode="nearest")
    hi = ndi.maximum_filter(labels, footprint=footprint, mode="nearest")
    mask = labels > 0
    return labels, mask, mask & (lo != hi)


def _finish(labels, todo, n_seeds, min_size):
    left = np.flatnonzero(todo)
    if left.size:
        labels.reshape(-1)[left] = label_seedless(left, labels.shape, first_id=n_seeds + 1, min_size=min_size)
    return labels


def reference(mask, contour, *, min_size=0):
    """One whole-image 3x3 minimum filter per sweep; returns labels and the sweep count."""
    labels, n_seeds = ndi.label(mask & ~contour, STRUCTURE_8)
    labels = labels.astype(np.int32, copy=False)
    todo = mask & (labels == 0)
    sweeps = 0
    while todo.any():
        grown = ndi.minimum_filter(np.where(labels == 0, BIG, labels), size=3, mode="constant", cval=BIG)
        reached = todo & (grown < BIG)
        if not reached.any():
            break
        labels[reached] = grown[reached]
        todo &= ~reached
        sweeps += 1
    return _finish(labels, todo, n_seeds, min_size), sweeps


def reference_shifts(mask, contour, *, min_size=0):
    """As :func:`reference`, with nine shifted ``np.minimum`` per sweep."""
    labels, n_seeds = ndi.label(mask & ~contour, STRUCTURE_8)
    labels = labels.astype(np.int32, copy=False)
    height, width = labels.shape
    todo = mask & (labels == 0)
    padded = np.full((height + 2, width + 2), BIG, dtype=np.int32)
    while todo.any():
        padded[1:-1, 1:-1] = np.where(labels == 0, BIG, labels)
        grown = padded[:-2, :-2].copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(grown, padded[dy : dy + height, dx : dx + width], out=grown)
        reached = todo & (grown < BIG)
        if not reached.any():
            break
        labels[reached] = grown[reached]
        todo &= ~reached
    return _finish(labels, todo, n_seeds, min_size)


def best_times(methods: dict, mask, contour, repeats: int) -> tuple[dict, dict, dict]:
    """Best wall and CPU time per method, the methods taking turns (fair under a varying load)."""
    outputs = {name: fn(mask, contour) for name, fn in methods.items()}  # warm-up
    wall = {name: float("inf") for name in methods}
    cpu = dict(wall)
    for _ in range(repeats):
        for name, fn in methods.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn(mask, contour)
            wall[name] = min(wall[name], time.perf_counter() - w0)
            cpu[name] = min(cpu[name], time.process_time() - c0)
    return wall, cpu, outputs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method at 1024x1024 (default 5)")
    parser.add_argument("--band", type=int, default=2, help="contour band width in pixels (default 2)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch versions")
    args = parser.parse_args(argv)

    methods = {
        "reference": lambda m, c: reference(m, c)[0],
        "shifts": reference_shifts,
        "numpy": contour_subtract_dilate,
    }
    if not args.no_torch:
        import torch

        from napari_ihcseg.instances import contour_subtract_dilate_torch

        print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
        methods["torch-cpu"] = lambda m, c: contour_subtract_dilate_torch(m, c, device="cpu")
        if torch.cuda.is_available():
            print(f"CUDA: {torch.cuda.get_device_name(0)}")
            methods["torch-cuda"] = lambda m, c: contour_subtract_dilate_torch(m, c, device="cuda")
        else:
            print("CUDA: not available on this machine")

    # (height, width, nuclei): 400 nuclei per 1024x1024 for the linear-growth series,
    # then the R2U-Net dataset's image size with about 6000 nuclei.
    cases = [(1024, 1024, 400), (2048, 2048, 1600), (4096, 3286, 5135), (4096, 3286, 6000)]
    print(f"contour band {args.band} px; wall-clock ms, best of N runs (N = {args.repeats} at 1024x1024, 2 above), "
          "methods taking turns; numpy-cpu: CPU time of the numpy version\n")
    print(
        f"{'size':>11} {'nuclei':>6} {'mask%':>5} {'seedless':>8} {'sweeps':>6}"
        + "".join(f" {name:>10}" for name in methods)
        + f" {'numpy-cpu':>10} {'ref/numpy':>9} {'shifts/numpy':>12}"
    )
    per_pixel = {name: [] for name in methods}
    cpu_per_pixel = {name: [] for name in methods}
    for height, width, count in cases:
        _, mask, contour = touching_nuclei((height, width), count, band=args.band, seed=height + count)
        expected, sweeps = reference(mask, contour)
        repeats = max(2, round(args.repeats * 1024 * 1024 / (height * width)))
        times, cpu_times, outputs = best_times(methods, mask, contour, repeats)
        for name, out in outputs.items():
            if not np.array_equal(out, expected):
                print(f"\n{name} differs from the reference at {height}x{width}", file=sys.stderr)
                return 1
        n_seeds = ndi.label(mask & ~contour, STRUCTURE_8)[1]
        row = f"{height:>5}x{width:<5} {count:>6} {100 * mask.mean():>5.1f} {expected.max() - n_seeds:>8} {sweeps:>6}"
        for name, t in times.items():
            per_pixel[name].append(1e9 * t / (height * width))
            cpu_per_pixel[name].append(1e9 * cpu_times[name] / (height * width))
            row += f" {1e3 * t:>10.1f}"
        row += f" {1e3 * cpu_times['numpy']:>10.1f}"
        row += f" {times['reference'] / times['numpy']:>8.1f}x {times['shifts'] / times['numpy']:>11.1f}x"
        print(row, flush=True)
    print("\ntime per pixel in ns, 400 nuclei per 1024x1024: 1024x1024 -> 2048x2048 -> 4096x3286 (flat = linear)")
    print("(CPU time is the process's own, less disturbed by other work; torch-cpu adds up its threads)")
    for name in methods:
        wall_text = " -> ".join(f"{v:.1f}" for v in per_pixel[name][:3])
        cpu_text = " -> ".join(f"{v:.1f}" for v in cpu_per_pixel[name][:3])
        print(f"  {name:>10}: wall {wall_text:<22} cpu {cpu_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
