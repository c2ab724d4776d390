"""An OGC validity check for the GeoJSON polygons the package writes (what shapely's ``is_valid`` checks).

The exported outlines run along pixel edges, so every ring is rectilinear
with integer vertices (after removing a constant shift). For such rings the
OGC Simple Features rules that shapely/JTS (and so QuPath) enforce reduce to
lattice checks:

* a ring is closed, has at least four positions and is *simple*: walked in
  unit steps it visits no lattice point twice (two grid edges can only meet
  at lattice points);
* the rings of one polygon meet at single points only, never along an edge,
  and the holes do not cut the interior apart: joining rings that touch
  must never close a cycle;
* each hole lies inside its exterior; the polygons of a MultiPolygon do not
  overlap and share no edge.

``invalid_reason(geometry)`` returns ``None`` for a valid geometry, else why not.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import points_in_poly


def _unit_points(ring: np.ndarray):
    """The lattice points a closed rectilinear ring visits, in order (the closing point once)."""
    points = []
    for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:]):
        if x0 != x1 and y0 != y1:
            return None
        steps = int(abs(x1 - x0) + abs(y1 - y0))
        if steps == 0:
            return None
        dx, dy = np.sign(x1 - x0), np.sign(y1 - y0)
        points.extend((x0 + k * dx, y0 + k * dy) for k in range(steps))
    return points


def _edges(points) -> set:
    closed = points + points[:1]
    return {frozenset((a, b)) for a, b in zip(closed[:-1], closed[1:])}


def _signed_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def _polygon_reason(rings: list) -> str | None:
    arrays = []
    for ring in rings:
        a = np.asarray(ring, np.float64)
        if a.ndim != 2 or a.shape[0] < 4 or a.shape[1] != 2:
            return "a ring has fewer than four positions"
        if not np.array_equal(a[0], a[-1]):
            return "a ring is not closed"
        offset = np.floor(a.min(axis=0))
        if not np.allclose(a - offset, np.rint(a - offset)):
            return "a ring does not run along pixel edges"
        arrays.append(a)
    origin = np.floor(np.vstack(arrays).min(axis=0))
    point_sets, edge_sets = [], []
    for a in arrays:
        points = _unit_points(np.rint(a - origin).astype(np.int64))
        if points is None:
            return "a ring has a diagonal or zero-length segment"
        if len(set(points)) != len(points):
            return "Ring Self-intersection (a ring visits a point twice)"
        point_sets.append(set(points))
        edge_sets.append(_edges(points))
    if abs(_signed_area(arrays[0])) == 0:
        return "the exterior ring has no area"
    parent = list(range(len(arrays)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            shared = point_sets[i] & point_sets[j]
            if edge_sets[i] & edge_sets[j]:
                return "Self-intersection (two rings share an edge)"
            if len(shared) > 1:
                return "Interior is disconnected (two rings touch at more than one point)"
            if shared:
                a, b = find(i), find(j)
                if a == b:
                    return "Interior is disconnected (rings touching in a cycle)"
                parent[a] = b
    shell = arrays[0]
    for hole in arrays[1:]:
        probe = _inner_point(hole)
        if not points_in_poly(probe[None], shell[:-1])[0]:
            return "Hole lies outside shell"
    return None


def _inner_point(ring: np.ndarray) -> np.ndarray:
    """A point just beside the middle of the ring's first edge, on the side of the ring's interior."""
    d = np.sign(ring[1] - ring[0])
    mid = (ring[0] + ring[1]) / 2.0
    left = mid + 0.25 * np.array([-d[1], d[0]])
    right = mid - 0.25 * np.array([-d[1], d[0]])
    return left if points_in_poly(left[None], ring[:-1])[0] else right


def invalid_reason(geometry: dict) -> str | None:
    """Why a GeoJSON Polygon/MultiPolygon (of pixel-edge rings) is not OGC-valid; ``None`` if it is."""
    if geometry["type"] == "Polygon":
        return _polygon_reason(geometry["coordinates"])
    if geometry["type"] != "MultiPolygon":
        return f"unexpected geometry type {geometry['type']}"
    parts = geometry["coordinates"]
    for part in parts:
        reason = _polygon_reason(part)
        if reason:
            return reason
    shells = [np.asarray(p[0], np.float64) for p in parts]
    origin = np.floor(np.vstack(shells).min(axis=0))
    edges = [_edges(_unit_points(np.rint(s - origin).astype(np.int64))) for s in shells]
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            if edges[i] & edges[j]:
                return "Self-intersection (two polygons share an edge)"
            # Overlap: a point inside one shell's first edge lies inside the other's area (not its holes).
            for a, b in ((i, j), (j, i)):
                probe = _inner_point(shells[a])
                inside = points_in_poly(probe[None], shells[b][:-1])[0]
                in_hole = any(points_in_poly(probe[None], np.asarray(h, np.float64)[:-1])[0]
                              for h in parts[b][1:])
                if inside and not in_hole:
                    return "Self-intersection (two polygons overlap)"
    return None
