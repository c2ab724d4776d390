"""Ki-67 hot spots from the per-cell table: the place with the highest local index.

A hot spot is a circle, either of a given radius (the IKWG's high-power
field, about 0.5 mm across, needs the pixel size) or around the nearest
``N`` cells (without a pixel size); its index is the percentage of positive
cells in it [Nielsen 2021]. Only places with enough cells count.

The search works on cell centroids alone, so whole slides cost what their
cell table costs (``benchmarks/bench_hotspot.py``: about a second for a million cells):

1. the cells are binned on a square grid of spacing ``radius / GRID_STEPS``;
2. all and positive counts are summed over a disk of bins around every
   node (a small convolution): the local index at every node, the heat map
   (:class:`LocalIndexMap`); nodes with fewer than ``min_cells`` cells are NaN;
3. the :data:`CANDIDATES` best nodes are counted again exactly from the
   centroids (cells within the radius, or the ``N`` nearest, among the rows
   near the node), and the best exact one is the hot spot.

In nearest-``N`` mode the grid's disk has the radius that holds ``N`` cells
where the tissue is typical (:func:`nearest_radius`), and nodes whose disk
holds at least ``N / 2`` cells are candidates.

The grid is coarse by design (a node every quarter radius); the exact count
of step 3 is what is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

#: Grid nodes per hot-spot radius.
GRID_STEPS = 4
#: Largest heat map, in nodes (the spacing grows beyond it).
MAX_GRID_NODES = 4_000_000
#: Grid nodes counted exactly in the last step.
CANDIDATES = 32
#: Cells sampled to estimate the radius holding ``N`` cells (nearest-``N`` mode).
RADIUS_SAMPLE = 2000
#: Cells among which their neighbours are looked up for that estimate.
TREE_SAMPLE = 100_000


@dataclass(frozen=True, eq=False)
class LocalIndexMap:
    """The local Ki-67 index on a grid (the heat map).

    Attributes
    ----------
    index : (ny, nx) ndarray of float32
        Percent positive among the cells within ``radius`` of each node;
        NaN where fewer than ``min_cells`` cells are.
    n_cells : (ny, nx) ndarray of float32
        Cells within ``radius`` of each node.
    origin : (float, float)
        ``(row, col)`` of node ``[0, 0]`` in image pixels.
    spacing : float
        Distance between nodes, in image pixels.
    radius : float
        The radius used, in pixels.
    """

    index: np.ndarray
    n_cells: np.ndarray
    origin: tuple[float, float]
    spacing: float
    radius: float


@dataclass(frozen=True)
class HotSpot:
    """The hot spot of an image.

    Attributes
    ----------
    center : (float, float)
        ``(row, col)`` in image pixels.
    radius : float
        Radius of the circle, in pixels (in nearest-``N`` mode: the distance
        to the ``N``-th nearest cell).
    n_cells, n_positive : int
        Cells counted in it, and the positive ones.
    index : float
        ``100 · n_positive / n_cells``.
    mode : {"circle", "nearest"}
    """

    center: tuple[float, float]
    radius: float
    n_cells: int
    n_positive: int
    index: float
    mode: str


@dataclass(frozen=True)
class HotSpotSearch:
    """What :func:`search_hotspot` found: the hot spot and the map it was chosen on.

    Attributes
    ----------
    hotspot : HotSpot or None
        ``None`` when no place holds enough cells.
    local_map : LocalIndexMap or None
        The local index around every grid node (``None`` when there are too
        few cells to search).
    """

    hotspot: HotSpot | None
    local_map: LocalIndexMap | None


def _check_points(y, x, positive) -> tuple[np.ndarray, np.ndarray]:
    pts = np.column_stack([np.asarray(y, np.float64), np.asarray(x, np.float64)])
    pos = np.asarray(positive).astype(bool)
    if pts.shape[0] != pos.shape[0]:
        raise ValueError(f"{pts.shape[0]} centroids but {pos.shape[0]} positive flags")
    if not np.isfinite(pts).all():
        raise ValueError("centroids must be finite")
    return pts, pos


def nearest_radius(y, x, n_cells: int, *, seed: int = 0) -> float:
    """Median distance from a cell to its ``n_cells``-th nearest cell (itself included).

    The radius of a circle that holds about ``n_cells`` cells where the
    tissue is typical. Estimated on at most :data:`RADIUS_SAMPLE` cells; on
    large tables the neighbours are looked up among a random
    :data:`TREE_SAMPLE` of the cells (the ``k``-th neighbour among a fraction
    ``f`` of the cells lies as far as the ``k / f``-th among all).
    """
    pts = np.column_stack([np.asarray(y, np.float64), np.asarray(x, np.float64)])
    n = len(pts)
    if n < n_cells:
        raise ValueError(f"{n} cells, fewer than the {n_cells} asked for")
    rng = np.random.default_rng(seed)
    pool = pts if n <= TREE_SAMPLE else pts[rng.choice(n, TREE_SAMPLE, replace=False)]
    k = max(1, int(round(n_cells * len(pool) / n)))
    sample = pool if len(pool) <= RADIUS_SAMPLE else pool[rng.choice(len(pool), RADIUS_SAMPLE, replace=False)]
    dist, _ = cKDTree(pool).query(sample, k=[k])
    return float(np.median(dist))


def local_index_map(y, x, positive, *, radius: float, min_cells: int = 1) -> LocalIndexMap:
    """The local index of :func:`find_hotspot`'s step 2 (the heat map).

    Parameters
    ----------
    y, x : array of float
        Cell centroids (pixels).
    positive : array of bool
    radius : float
        Radius of the counting disk, in pixels.
    min_cells : int
        Nodes with fewer cells are NaN.

    Examples
    --------
    >>> yy, xx = np.mgrid[0:40, 0:40].reshape(2, -1).astype(float)
    >>> m = local_index_map(yy, xx, xx >= 20, radius=8)
    >>> m.spacing, bool(np.nanmax(m.index) == 100.0), bool(np.nanmin(m.index) == 0.0)
    (2.0, True, True)
    """
    pts, pos = _check_points(y, x, positive)
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius}")
    lo = pts.min(axis=0) if len(pts) else np.zeros(2)
    extent = (pts.max(axis=0) - lo) if len(pts) else np.zeros(2)
    spacing = radius / GRID_STEPS
    nodes = np.prod(np.floor(extent / spacing) + 1)
    if nodes > MAX_GRID_NODES:
        spacing *= float(np.sqrt(nodes / MAX_GRID_NODES)) * 1.01
    shape = tuple(int(v) for v in np.floor(extent / spacing) + 1)
    ij = np.rint((pts - lo) / spacing).astype(np.int64)
    ij = np.minimum(ij, np.array(shape) - 1)
    flat = ij[:, 0] * shape[1] + ij[:, 1]
    size = shape[0] * shape[1]
    every = np.bincount(flat, minlength=size).reshape(shape).astype(np.float32)
    plus = np.bincount(flat[pos], minlength=size).reshape(shape).astype(np.float32)
    k = int(np.floor(radius / spacing))
    dy, dx = np.mgrid[-k:k + 1, -k:k + 1]
    disk = ((dy ** 2 + dx ** 2) * spacing ** 2 <= radius ** 2).astype(np.float32)
    n_local = ndi.correlate(every, disk, mode="constant", cval=0.0)
    p_local = ndi.correlate(plus, disk, mode="constant", cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(n_local >= max(min_cells, 1), 100.0 * p_local / n_local, np.nan).astype(np.float32)
    return LocalIndexMap(index, np.rint(n_local).astype(np.float32), (float(lo[0]), float(lo[1])),
                         float(spacing), float(radius))


def find_hotspot(y, x, positive, *, radius: float | None = None, n_cells: int | None = None,
                 min_cells: int = 100) -> HotSpot | None:
    """The circle with the highest share of positive cells.

    :func:`search_hotspot` returns the local-index map it was chosen on too.

    Give ``radius`` (pixels; a circle of that radius holding at least
    ``min_cells`` cells) or ``n_cells`` (the ``n_cells`` nearest cells of a
    point; ``min_cells`` is then ``n_cells``).

    Parameters
    ----------
    y, x : array of float
        Centroids of the cells that count (e.g. included tumour cells).
    positive : array of bool
    radius : float, optional
    n_cells : int, optional
    min_cells : int
        Fewest cells a circle may hold (radius mode).

    Returns
    -------
    HotSpot or None
        ``None`` when no place holds enough cells.

    Examples
    --------
    A 60 × 60 lattice of cells, positive only in the 10 × 10 patch at rows
    and columns 40–49:

    >>> yy, xx = np.mgrid[0:60, 0:60].reshape(2, -1).astype(float)
    >>> patch = (yy >= 40) & (yy < 50) & (xx >= 40) & (xx < 50)
    >>> h = find_hotspot(yy, xx, patch, radius=4.0, min_cells=20)
    >>> all(40 <= c <= 49 for c in h.center), h.index, h.n_cells >= 20
    (True, 100.0, True)
    """
    return search_hotspot(y, x, positive, radius=radius, n_cells=n_cells, min_cells=min_cells).hotspot


def search_hotspot(y, x, positive, *, radius: float | None = None, n_cells: int | None = None,
                   min_cells: int = 100) -> HotSpotSearch:
    """:func:`find_hotspot`, with the :class:`LocalIndexMap` it searched (the Score widget's heat map).

    Parameters are those of :func:`find_hotspot`.

    Returns
    -------
    HotSpotSearch
    """
    if (radius is None) == (n_cells is None):
        raise ValueError("give either radius (pixels) or n_cells")
    pts, pos = _check_points(y, x, positive)
    if n_cells is not None:
        n_cells = int(n_cells)
        if n_cells < 1:
            raise ValueError(f"n_cells must be at least 1, got {n_cells}")
        min_cells = n_cells
    if len(pts) < max(min_cells, 1):
        return HotSpotSearch(None, None)
    search_radius = nearest_radius(pts[:, 0], pts[:, 1], n_cells) if n_cells else float(radius)
    # Nearest-N circles hold N cells exactly; on the grid, any node with half of them is a candidate.
    heat = local_index_map(pts[:, 0], pts[:, 1], pos, radius=search_radius,
                           min_cells=(n_cells + 1) // 2 if n_cells else min_cells)
    valid = np.isfinite(heat.index)
    hotspot = None
    if valid.any():
        scores = np.where(valid, heat.index + 1e-6 * heat.n_cells, -np.inf).ravel()
        top = np.argsort(scores)[::-1][:CANDIDATES]
        top = top[np.isfinite(scores[top])]
        centres = np.column_stack(np.unravel_index(top, heat.index.shape)) * heat.spacing + np.array(heat.origin)
        n_all, n_pos, radii = _exact_counts(pts, pos, centres, radius=None if n_cells else search_radius,
                                            n_cells=n_cells, band=search_radius * (2.0 if n_cells else 1.0))
        ok = n_all >= min_cells
        if ok.any():
            exact = np.where(ok, n_pos / np.maximum(n_all, 1), -1.0)
            best = int(np.lexsort((-n_all, -exact))[0])
            hotspot = HotSpot((float(centres[best, 0]), float(centres[best, 1])), float(radii[best]),
                              int(n_all[best]), int(n_pos[best]), 100.0 * float(n_pos[best]) / float(n_all[best]),
                              "nearest" if n_cells else "circle")
    return HotSpotSearch(hotspot, heat)


def _exact_counts(pts, pos, centres, *, radius: float | None, n_cells: int | None, band: float):
    """All and positive cells within ``radius`` of each centre, or among its ``n_cells`` nearest.

    Cells are sorted by row once; each centre looks only at the band of rows
    within ``band`` of it (for nearest-``N``, the whole table again when its
    ``N``-th cell lies beyond the band). Returns ``(n_all, n_positive, radius)``.
    """
    order = np.argsort(pts[:, 0], kind="stable")
    ys, xs, ps = pts[order, 0], pts[order, 1], pos[order]
    n_all = np.zeros(len(centres), np.int64)
    n_pos = np.zeros(len(centres), np.int64)
    radii = np.zeros(len(centres))
    for i, (cy, cx) in enumerate(centres):
        lo, hi = np.searchsorted(ys, cy - band, side="left"), np.searchsorted(ys, cy + band, side="right")
        for part in (slice(lo, hi), slice(None)):
            d2 = (ys[part] - cy) ** 2 + (xs[part] - cx) ** 2
            if not n_cells:
                inside = d2 <= radius * radius
                n_all[i], n_pos[i], radii[i] = int(inside.sum()), int((inside & ps[part]).sum()), radius
                break
            if len(d2) >= n_cells:
                nearest = np.argpartition(d2, n_cells - 1)[:n_cells]
                reach = float(np.sqrt(d2[nearest].max()))
                if reach <= band or part == slice(None):
                    n_all[i], n_pos[i], radii[i] = n_cells, int(ps[part][nearest].sum()), reach
                    break
    return n_all, n_pos, radii
