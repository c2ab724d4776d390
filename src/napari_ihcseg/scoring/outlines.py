"""Nucleus outlines as polygons along pixel edges, for GeoJSON export.

All objects are traced at once, without a Python loop over pixels or edges:

1. every pixel side where the label changes is a directed edge between two
   pixel corners, oriented so that its own pixel lies on a fixed side; the
   edges of one object then form closed rings (exteriors counter-clockwise in
   ``(x, y)``, holes clockwise, as RFC 7946 asks);
2. each edge's successor is the edge that starts where it ends with the same
   label; where two diagonal pixels of one object meet at a corner the ring
   stays on its own pixel, so diagonal-only contacts make separate parts;
3. rings are found and ordered by pointer doubling (cycle minimum, then list
   ranking), and vertices where the direction does not change are dropped;
4. a ring that passes twice through one corner (an object that pinches
   there, around background or between two lobes) is cut there into simple
   rings, each an exterior or a hole by its orientation, so that every
   polygon is valid as OGC, shapely/JTS and QuPath define it: rings never
   touch themselves; parts and holes meet at single points only.

The polygon of an object covers exactly its pixels: its area is the pixel
count. Coordinates are GeoJSON/QuPath pixel coordinates, origin at the top-left
corner of the image, so the centre of pixel ``(r, c)`` is ``(c + 0.5, r + 0.5)``.
"""

from __future__ import annotations

import numpy as np
from skimage.measure import points_in_poly

# Pixel sides in ring order: top, right, bottom, left. Start and end corner of
# each side as (dx, dy) from the pixel's top-left corner.
_NEIGHBOUR = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (dr, dc)
_START = np.array([(0, 0), (1, 0), (1, 1), (0, 1)], np.int64)
_END = np.array([(1, 0), (1, 1), (0, 1), (0, 0)], np.int64)


def _boundary_edges(labels: np.ndarray):
    h, w = labels.shape
    padded = np.pad(labels, 1)
    foreground = labels > 0
    rows, cols, sides, is_edge = [], [], [], np.zeros((4, h, w), bool)
    for side, (dr, dc) in enumerate(_NEIGHBOUR):
        neighbour = padded[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
        np.not_equal(labels, neighbour, out=is_edge[side])
        is_edge[side] &= foreground
        r, c = np.nonzero(is_edge[side])
        rows.append(r)
        cols.append(c)
        sides.append(np.full(r.size, side, np.int8))
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sides), is_edge


def _successors(lab, shape, rows, cols, sides, is_edge) -> np.ndarray:
    h, w = shape
    n_corners = (h + 1) * (w + 1)
    if int(lab.max()) > (2**62) // n_corners:   # keys would overflow: rank the labels
        lab = np.unique(lab, return_inverse=True)[1].astype(np.int64)
    x0, y0 = cols + _START[sides, 0], rows + _START[sides, 1]
    x1, y1 = cols + _END[sides, 0], rows + _END[sides, 1]
    start_key = lab * n_corners + y0 * (w + 1) + x0
    end_key = lab * n_corners + y1 * (w + 1) + x1

    # Edges by (pixel, side), to find the next side of the same pixel.
    pix_key = (rows.astype(np.int64) * w + cols) * 4 + sides
    pix_order = np.argsort(pix_key, kind="stable")
    nxt_side = (sides + 1) % 4
    same_pixel = is_edge[nxt_side, rows, cols]
    succ = np.empty(rows.size, np.int64)
    want = (rows.astype(np.int64) * w + cols) * 4 + nxt_side
    pos = np.searchsorted(pix_key[pix_order], want[same_pixel])
    succ[same_pixel] = pix_order[pos]

    # Otherwise the (unique) edge of the same label starting at the end corner.
    other = ~same_pixel
    start_order = np.argsort(start_key, kind="stable")
    pos = np.searchsorted(start_key[start_order], end_key[other])
    succ[other] = start_order[pos]
    return succ


def _rings(succ: np.ndarray, max_len: int):
    """Cycle id (its smallest edge) and position of every edge along its cycle."""
    n = succ.size
    steps = max(1, int(np.ceil(np.log2(max(max_len, 2)))) + 1)
    cycle = np.arange(n)
    jump = succ.copy()
    for _ in range(steps):
        cycle = np.minimum(cycle, cycle[jump])
        jump = jump[jump]
    # List ranking: cut each cycle before its first edge, count steps to the end.
    nxt = succ.copy()
    last = cycle[succ] == succ  # edges whose successor starts the cycle
    nxt[last] = np.flatnonzero(last)
    to_end = (~last).astype(np.int64)
    for _ in range(steps):
        to_end = to_end + to_end[nxt]
        nxt = nxt[nxt]
    return cycle, to_end


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0].astype(np.float64), ring[:, 1].astype(np.float64)
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _simple_rings(ring: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """Cut a ring that passes through a corner more than once into simple rings, with their signed areas.

    Each loop between two visits of a corner is cut off as a ring of its own;
    its orientation says whether it bounds the object (positive area) or a hole.
    """
    stack: list[int] = []
    seen: dict[tuple[int, int], int] = {}
    loops = []
    for i, vertex in enumerate(map(tuple, ring.tolist())):
        if vertex in seen:
            at = seen[vertex]
            loops.append(stack[at:])
            for j in stack[at + 1:]:
                del seen[tuple(ring[j].tolist())]
            stack = stack[:at + 1]
        else:
            seen[vertex] = len(stack)
            stack.append(i)
    loops.append(stack)
    out = []
    for loop in loops:
        part = ring[loop]
        if len(part) >= 3:
            out.append((_ring_area(part), part))
    return out


def label_outlines(labels: np.ndarray, label_ids=None) -> dict[int, list[list[np.ndarray]]]:
    """Outline every object of a label image as polygons along pixel edges.

    Parameters
    ----------
    labels : (H, W) array of int
        Instance labels, 0 background.
    label_ids : sequence of int, optional
        Return only these labels (default: all present).

    Returns
    -------
    dict
        ``label -> polygons``; each polygon is a list of rings, the exterior
        first (counter-clockwise in ``(x, y)``) then its holes (clockwise).
        Rings are ``(N, 2)`` arrays of ``(x, y)`` pixel-corner coordinates,
        open (the first vertex is not repeated). Parts that touch only
        diagonally are separate polygons.

    Examples
    --------
    >>> import numpy as np
    >>> lab = np.zeros((5, 5), int); lab[1:3, 1:4] = 1
    >>> label_outlines(lab)[1][0][0].tolist()
    [[1, 1], [4, 1], [4, 3], [1, 3]]
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size == 0 or not labels.any():
        return {}
    rows, cols, sides, is_edge = _boundary_edges(labels)
    lab = labels[rows, cols].astype(np.int64)
    succ = _successors(lab, labels.shape, rows, cols, sides, is_edge)
    _, per_label = np.unique(lab, return_counts=True)
    cycle, to_end = _rings(succ, int(per_label.max()))

    pred = np.empty_like(succ)
    pred[succ] = np.arange(succ.size)
    corner = sides != sides[pred]          # the direction changes here
    order = np.lexsort((-to_end, cycle))
    order = order[corner[order]]
    verts = np.column_stack([cols[order] + _START[sides[order], 0],
                             rows[order] + _START[sides[order], 1]])
    ring_id = cycle[order]
    bounds = np.flatnonzero(np.r_[True, ring_id[1:] != ring_id[:-1], True])

    starts, ends = bounds[:-1], bounds[1:]
    nxt = np.arange(1, len(verts) + 1)
    nxt[ends - 1] = starts
    x, y = verts[:, 0].astype(np.float64), verts[:, 1].astype(np.float64)
    areas = 0.5 * np.add.reduceat(x * y[nxt] - x[nxt] * y, starts)
    ring_label = lab[ring_id[starts]]

    wanted = None if label_ids is None else {int(v) for v in label_ids}
    exteriors: dict[int, list[tuple[float, np.ndarray]]] = {}
    holes: dict[int, list[np.ndarray]] = {}
    for a, b, label, area in zip(starts.tolist(), ends.tolist(), ring_label.tolist(), areas.tolist()):
        if wanted is not None and label not in wanted:
            continue
        ring = verts[a:b]
        parts = _simple_rings(ring) if len(np.unique(ring, axis=0)) < len(ring) else [(area, ring)]
        for part_area, part in parts:
            if part_area > 0:
                exteriors.setdefault(label, []).append((part_area, part))
            else:
                holes.setdefault(label, []).append(part)

    out = {}
    for label, rings in exteriors.items():
        if len(rings) == 1:
            polygons = [[rings[0][1]]]
        else:
            rings.sort(key=lambda item: -item[0])
            polygons = [[ring] for _, ring in rings]
        for hole in holes.get(label, ()):
            if len(polygons) == 1:
                polygons[0].append(hole)
                continue
            # A point just inside the hole: the object lies left of every
            # edge, so the hole lies to the right of its first edge. The
            # smallest exterior around it is the hole's own part.
            d = np.sign(hole[1] - hole[0])
            probe = (hole[0] + hole[1]) / 2.0 + 0.25 * np.array([d[1], -d[0]])
            inside = [i for i, poly in enumerate(polygons) if points_in_poly(probe[None], poly[0])[0]]
            polygons[max(inside) if inside else 0].append(hole)
        out[label] = polygons
    return out
