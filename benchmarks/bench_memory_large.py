"""Peak resident memory of whole-slide segmentation, for slides of several sizes.

Writes a synthetic tiled pyramidal TIFF (``make_synthetic_slide``) of each
size in a child process, then segments it with :func:`segment_large` in a
fresh child process that reports its peak resident set size
(``resource.getrusage``) and the RSS before the slide was opened. If memory
is bounded, the peak does not grow with the slide size. An untrained
architecture (the default, harunet-lite) runs in full but its outputs are
replaced by a fixed hematoxylin detector's, so that the instance step sees
real nuclei (see ``bench_inference.NetworkWithDetector``).

Usage::

    python benchmarks/bench_memory_large.py                      # 40000 x 40000 (long on a CPU)
    python benchmarks/bench_memory_large.py --size 8000 16000    # the same, smaller

The slides are kept in ``--workdir`` (a temporary folder by default) and
reused when they exist.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def write_slide(path: Path, size: int, tissue_fraction: float, seed: int) -> None:
    from napari_ihcseg.data.synthetic_slide import make_synthetic_slide

    make_synthetic_slide(path, (size, size), tile=512, tissue_fraction=tissue_fraction, seed=seed,
                         compression="jpeg")


def segment(path: Path, out: Path, model_name: str, block: int | None, threads: int) -> dict:
    import torch

    from bench_inference import load_for_pipeline
    from napari_ihcseg.inference import segment_large
    from napari_ihcseg.io import open_image

    torch.set_num_threads(threads)
    if model_name == "detector":
        from bench_inference import HematoxylinDetector

        model = HematoxylinDetector()
    else:
        model_name, model = load_for_pipeline(model_name, "cpu")
    before = _rss_mb()
    trace: list[float] = []  # resident memory at each progress report (every batch of tiles)

    def progress(done: int, total: int) -> None:
        trace.append(_rss_mb())

    started = time.perf_counter()
    with open_image(path) as img:
        result = segment_large(img, model, out=out, block=block, overwrite=True, device="cpu",
                               progress=progress)
        shape = img.shape
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"shape": list(shape[:2]), "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
            "seconds": round(time.perf_counter() - started, 1), "blocks": result.blocks,
            "skipped_blocks": result.skipped_blocks, "nuclei": result.n_nuclei, "block": result.block,
            "rss_trace_mb": [round(v) for v in trace]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs="+", default=[40000], help="slide side(s) in pixels")
    parser.add_argument("--model", default="harunet-lite",
                        help="checkpoint, architecture, or 'detector' (the fixed hematoxylin detector alone, "
                             "fast: memory without a network) (default: harunet-lite)")
    parser.add_argument("--trace", action="store_true", help="print the resident memory during each run")
    parser.add_argument("--block", type=int, default=0,
                        help="block core size (default 0: segment_large's own, fitted to the tile plan)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--tissue-fraction", type=float, default=0.3, help="tissue share of the slide (default: 0.3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where slides and labels go (default: a temporary folder)")
    parser.add_argument("--child", choices=["write", "segment"], help=argparse.SUPPRESS)
    parser.add_argument("--slide", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "write":
        write_slide(args.slide, args.size[0], args.tissue_fraction, args.seed)
        return 0
    if args.child == "segment":
        out = args.slide.with_name(args.slide.stem + "-labels.zarr")
        print(json.dumps(segment(args.slide, out, args.model, args.block or None, args.threads)))
        return 0

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ihcseg-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"model {args.model}, block {args.block or 'fitted'}, {args.threads} thread(s), tissue {args.tissue_fraction:.0%}, "
          f"slides in {workdir}")
    print(f"{'size':>12} {'tissue blocks':>14} {'nuclei':>9} {'time s':>8} {'RSS before MB':>14} {'peak RSS MB':>12}")
    common = ["--model", args.model, "--block", str(args.block), "--threads", str(args.threads),
              "--tissue-fraction", str(args.tissue_fraction), "--seed", str(args.seed)]
    for size in args.size:
        slide = workdir / f"synthetic-{size}-t{args.tissue_fraction}-s{args.seed}.tif"
        if not slide.exists():
            subprocess.run([sys.executable, __file__, "--child", "write", "--slide", str(slide), "--size", str(size),
                            *common], check=True)
        done = subprocess.run([sys.executable, __file__, "--child", "segment", "--slide", str(slide),
                               "--size", str(size), *common], check=True, capture_output=True, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        r = json.loads(done.stdout.strip().splitlines()[-1])
        tissue_blocks = r["blocks"] - r["skipped_blocks"]
        print(f"{size:>5}x{size:<6} {tissue_blocks:>6} of {r['blocks']:<5} {r['nuclei']:>9} {r['seconds']:>8.0f} "
              f"{r['rss_before_mb']:>14.0f} {r['peak_rss_mb']:>12.0f}", flush=True)
        if args.trace:
            trace = r["rss_trace_mb"]
            step = max(1, len(trace) // 20)
            print(f"{'':>12} resident MB through the run (every {step} batch(es)): {trace[::step]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
