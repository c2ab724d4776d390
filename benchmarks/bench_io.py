"""Lazy opening of a large pyramidal TIFF versus reading it whole.

Run: ``python benchmarks/bench_io.py [--side 8192] [--tissue 0.3]``

Writes a synthetic pyramidal slide to a temporary folder, then measures in one
process, side by side:

* opening it with ``open_image`` and reading one 512 x 512 tile at level 0
  and the whole smallest level (what napari does to show a slide);
* reading level 0 whole with ``read_image``;
* generating synthetic fields of 512 x 512 and 2048 x 2048.

Resident memory is measured with psutil; the lazy path runs first so the
whole read cannot hide its growth.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil

from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.data.synthetic_slide import make_synthetic_slide
from napari_ihcseg.io import open_image, read_image

MB = 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=8192, help="slide side in pixels (default 8192)")
    parser.add_argument("--tissue", type=float, default=0.3, help="tissue fraction (default 0.3)")
    args = parser.parse_args()
    process = psutil.Process()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "slide.tif"
        start = time.perf_counter()
        make_synthetic_slide(path, (args.side, args.side), tissue_fraction=args.tissue)
        write_s = time.perf_counter() - start
        print(f"slide {args.side} x {args.side}: written in {write_s:.1f} s, "
              f"{path.stat().st_size / MB:.1f} MB on disk, {args.side**2 * 3 / MB:.0f} MB of pixels")

        import dask.array  # noqa: F401 - import costs are not part of the comparison
        import zarr  # noqa: F401

        rss0 = process.memory_info().rss
        start = time.perf_counter()
        lazy = open_image(path)
        open_s = time.perf_counter() - start
        mid = args.side // 2
        start = time.perf_counter()
        lazy.levels[0][:512, :512].compute()
        first_s = time.perf_counter() - start  # includes starting zarr's and dask's threads
        start = time.perf_counter()
        lazy.levels[0][mid:mid + 512, mid:mid + 512].compute()
        tile_s = time.perf_counter() - start
        start = time.perf_counter()
        lazy.levels[-1].compute()
        overview_s = time.perf_counter() - start
        lazy_mb = (process.memory_info().rss - rss0) / MB
        lazy.close()

        rss1 = process.memory_info().rss
        start = time.perf_counter()
        image = read_image(path)
        full_s = time.perf_counter() - start
        full_mb = (process.memory_info().rss - rss1) / MB
        del image

    print(f"lazy : open {open_s * 1e3:.0f} ms, first tile {first_s * 1e3:.0f} ms, next tile {tile_s * 1e3:.0f} ms, "
          f"overview {overview_s * 1e3:.0f} ms, memory +{lazy_mb:.0f} MB")
    print(f"whole: read {full_s:.2f} s, memory +{full_mb:.0f} MB")
    print(f"ratio: whole / (open + first tile) time = {full_s / (open_s + first_s):.1f}x, "
          f"memory = {full_mb / max(lazy_mb, 1):.0f}x")

    for side in (512, 2048):
        make_synthetic_ihc((64, 64))
        start = time.perf_counter()
        field = make_synthetic_ihc((side, side), seed=1)
        print(f"synthetic field {side} x {side}: {time.perf_counter() - start:.2f} s, {field.n_nuclei} nuclei")


if __name__ == "__main__":
    main()
