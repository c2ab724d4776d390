"""The miss breakdown of benchmarks/ki67_misses.py."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def test_missed_points_are_sorted_by_what_lies_under_them(benchmark):
    bench = benchmark("ki67_misses")
    labels = np.zeros((60, 80), np.int32)
    labels[5:15, 5:15] = 1          # one point near its centre: matched
    labels[30:40, 5:25] = 2         # two points: merged
    labels[50:54, 30:78] = 3        # elongated: the point at its end is far from the centroid
    labels[5:15, 60:70] = 4         # not counted by the score
    ids = np.array([1, 2, 3])
    centres = np.asarray(ndi.center_of_mass(np.ones_like(labels), labels, ids))
    points = np.array([[10.0, 10.0],    # matched
                       [35.0, 8.0], [35.0, 22.0],   # merged
                       [52.0, 76.0],    # off-centre
                       [25.0, 50.0],    # on background
                       [10.0, 65.0]])   # on a nucleus the score leaves out
    kinds, matched = bench.miss_kinds(labels, centres, ids, points, radius=6.5)
    assert matched.tolist() == [True, False, False, False, False, False]
    names = [None if k < 0 else bench.KINDS[k] for k in kinds]
    assert names == [None, "merged", "merged", "off-centre", "no nucleus", "no nucleus"]
