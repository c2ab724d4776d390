"""Benchmark the Ki-67 hot-spot search on a whole slide's cell table.

Run ``python benchmarks/bench_hotspot.py [--cells 1000000]``. The slide is a
cell table only (centroids and positive flags), as the pipeline has after
scoring a whole slide: ``--cells`` cells on a jittered lattice 40 px apart
(10 µm at 0.25 µm per pixel, 40,000 px a side for a million cells), 15 %
positive, with one disk of 1,500 px radius at 45 % positive (the hot spot).

Columns, measured side by side in one run:

* ``hotspot (circle)``: :func:`napari_ihcseg.scoring.hotspot.find_hotspot`
  with a circle 0.5 mm across (radius 1,000 px);
* ``hotspot (nearest 500)``: the same without a pixel size, nearest 500 cells;
* ``exact at every node``: the reference: a k-d tree count of the cells within
  the radius around every node of the same grid (what the grid's convolution
  approximates), its best node taken as the hot spot.

Printed: seconds (best of ``--repeats``), the ratio to the reference, the hot
spot found and its distance from the planted patch centre, and whether the
grid search found an index at least as high as the reference's best node.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy.spatial import cKDTree

from napari_ihcseg.scoring.hotspot import find_hotspot, local_index_map

SPACING = 40.0
PATCH_RADIUS = 1500.0
RADIUS = 1000.0


def slide_cells(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    yy, xx = np.divmod(np.arange(n), side)
    y = (yy + rng.uniform(-0.4, 0.4, n)) * SPACING
    x = (xx + rng.uniform(-0.4, 0.4, n)) * SPACING
    centre = np.array([0.3, 0.7]) * side * SPACING
    in_patch = (y - centre[0]) ** 2 + (x - centre[1]) ** 2 <= PATCH_RADIUS ** 2
    positive = rng.random(n) < np.where(in_patch, 0.45, 0.15)
    return y, x, positive, centre


def best(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def exact_every_node(y, x, positive, radius, min_cells):
    grid = local_index_map(y, x, positive, radius=radius, min_cells=min_cells)
    nodes = np.column_stack(np.nonzero(np.ones(grid.index.shape, bool))) * grid.spacing + np.array(grid.origin)
    pts = np.column_stack([y, x])
    n_all = cKDTree(pts).query_ball_point(nodes, radius, return_length=True)
    n_pos = cKDTree(pts[positive]).query_ball_point(nodes, radius, return_length=True)
    index = np.where(n_all >= min_cells, n_pos / np.maximum(n_all, 1), -1.0)
    k = int(np.argmax(index))
    return tuple(nodes[k]), 100.0 * index[k], int(n_all[k])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    y, x, positive, centre = slide_cells(args.cells)
    print(f"{args.cells:,} cells, {100 * positive.mean():.1f} % positive, slide "
          f"{y.max():.0f} x {x.max():.0f} px; planted patch at ({centre[0]:.0f}, {centre[1]:.0f})")

    t_circle, spot = best(lambda: find_hotspot(y, x, positive, radius=RADIUS, min_cells=100), args.repeats)
    t_near, near = best(lambda: find_hotspot(y, x, positive, n_cells=500), args.repeats)
    t_ref, (ref_c, ref_index, ref_n) = best(lambda: exact_every_node(y, x, positive, RADIUS, 100), 1)

    def where(c):
        return f"({c[0]:.0f}, {c[1]:.0f}), {np.hypot(c[0] - centre[0], c[1] - centre[1]):.0f} px from the patch centre"

    print(f"{'method':24s} {'seconds':>8s} {'vs exact':>9s}  hot spot")
    print(f"{'hotspot (circle)':24s} {t_circle:8.3f} {t_ref / t_circle:8.1f}x  {spot.index:.1f} % of "
          f"{spot.n_cells} cells at {where(spot.center)}")
    print(f"{'hotspot (nearest 500)':24s} {t_near:8.3f} {t_ref / t_near:8.1f}x  {near.index:.1f} % of "
          f"{near.n_cells} cells within {near.radius:.0f} px at {where(near.center)}")
    print(f"{'exact at every node':24s} {t_ref:8.3f} {1.0:8.1f}x  {ref_index:.1f} % of {ref_n} cells at "
          f"{where(ref_c)}")
    print(f"grid search index >= best exact node: {spot.index >= ref_index - 1e-9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
