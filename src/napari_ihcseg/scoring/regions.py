"""Regions of interest: the areas (tumour) in which nuclei are scored.

A :class:`Region` is a set of polygons, each with optional holes, in
pixel-index coordinates ``(row, col)`` — the centre of pixel ``(r, c)`` is
``(r, c)``, as in napari and scikit-image. A nucleus belongs to the region when
its centroid lies inside a polygon and outside that polygon's holes.

GeoJSON (QuPath's annotation export) stores ``(x, y)`` with the origin at the
top-left *corner* of the image, so the centre of pixel ``(r, c)`` is
``(c + 0.5, r + 0.5)``; :func:`region_from_geojson` converts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.measure import points_in_poly

from napari_ihcseg._json_file import read_json
from napari_ihcseg.io.points import GEOJSON_PIXEL_OFFSET  # the QuPath frame, defined with the points
#: Vertices used to approximate a napari ellipse.
ELLIPSE_VERTICES = 64


def _ring(points, *, where: str, first_two: bool = False) -> np.ndarray:
    """The ``(N, 2)`` vertices of a ring: the last two columns (napari's ``(..., row, col)``),
    or with ``first_two`` the first two (GeoJSON's ``[x, y, altitude]`` positions)."""
    if first_two and isinstance(points, (list, tuple)):
        points = [p[:2] if isinstance(p, (list, tuple)) else p for p in points]
    try:
        ring = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: polygon vertices must be numbers ({exc})") from None
    if ring.ndim != 2 or ring.shape[1] < 2:
        raise ValueError(f"{where}: a polygon needs an (N, 2) array of vertices, got shape {ring.shape}")
    ring = ring[:, :2] if first_two else ring[:, -2:]
    if not np.all(np.isfinite(ring)):
        raise ValueError(f"{where}: polygon vertices must be finite numbers")
    if len(ring) > 1 and np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    if len(np.unique(ring, axis=0)) < 3:
        raise ValueError(f"{where}: a polygon needs at least 3 distinct vertices, got {len(ring)}")
    return ring


@dataclass(frozen=True, eq=False)
class Polygon:
    """One polygon: an exterior ring and holes, each an ``(N, 2)`` array of ``(row, col)``."""

    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Whether each ``(row, col)`` point is inside the exterior and outside every hole."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        inside = np.zeros(len(points), bool)
        lo, hi = self.exterior.min(axis=0), self.exterior.max(axis=0)
        cand = np.flatnonzero(np.all((points >= lo) & (points <= hi), axis=1))
        if cand.size:
            hit = points_in_poly(points[cand], self.exterior)
            for hole in self.holes:
                hit &= ~points_in_poly(points[cand], hole)
            inside[cand] = hit
        return inside


@dataclass(frozen=True, eq=False)
class Region:
    """A union of polygons in pixel-index coordinates ``(row, col)``.

    Examples
    --------
    >>> import numpy as np
    >>> square = np.array([[0, 0], [0, 10], [10, 10], [10, 0]])
    >>> region = region_from_shapes([square])
    >>> region.contains([2, 20], [3, 3]).tolist()
    [True, False]
    """

    polygons: tuple[Polygon, ...]

    def __post_init__(self) -> None:
        if not self.polygons:
            raise ValueError("a region needs at least one polygon")

    def contains(self, y, x) -> np.ndarray:
        """Whether each point ``(y[i], x[i])`` lies in the region."""
        points = np.column_stack([np.ravel(y), np.ravel(x)]).astype(np.float64)
        inside = np.zeros(len(points), bool)
        for poly in self.polygons:
            todo = ~inside
            if todo.any():
                inside[todo] = poly.contains(points[todo])
        return inside

    def to_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Rasterise: ``True`` where the pixel centre lies in the region."""
        rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
        return self.contains(rows.ravel(), cols.ravel()).reshape(shape)

    def covers_a_pixel_of(self, shape: tuple[int, int], *, max_pixels: int = 1 << 22) -> bool:
        """Whether the region holds the centre of any pixel of an image of ``shape`` (rows, cols).

        Only the part of the image inside the region's bounding box is
        looked at, so a whole slide costs no more than its region. When that
        part holds more than ``max_pixels`` pixels, a grid of about
        ``max_pixels`` of them is (every k-th row and column): a region that
        covers only a sliver of the image thinner than k pixels counts as
        missing it.

        >>> square = np.array([[0, 0], [0, 10], [10, 10], [10, 0]])
        >>> region = region_from_shapes([square])
        >>> region.covers_a_pixel_of((5, 5)), region.covers_a_pixel_of((100_000, 100_000))
        (True, True)
        >>> region_from_shapes([square + 50]).covers_a_pixel_of((40, 40))
        False
        >>> corner = region_from_shapes([np.array([[1000, 19000], [19000, 19000], [19000, 1000]])])
        >>> corner.covers_a_pixel_of((10_000, 10_000)), corner.covers_a_pixel_of((10_002, 10_002))
        (False, True)
        """
        points = np.concatenate([p.exterior for p in self.polygons])
        lo = np.maximum(np.ceil(points.min(axis=0)), 0).astype(np.int64)
        hi = np.minimum(np.floor(points.max(axis=0)), np.asarray(shape[:2]) - 1).astype(np.int64)
        if np.any(hi < lo):
            return False
        step = max(1, int(np.ceil(np.sqrt(np.prod(hi - lo + 1, dtype=np.float64) / max_pixels))))
        rows, cols = np.mgrid[lo[0]:hi[0] + 1:step, lo[1]:hi[1] + 1:step]
        return bool(self.contains(rows.ravel(), cols.ravel()).any())


def _ellipse_from_corners(corners: np.ndarray) -> np.ndarray:
    """napari stores an ellipse as the four corners of its bounding box."""
    centre = corners.mean(axis=0)
    a = (corners[1] - corners[0]) / 2.0
    b = (corners[3] - corners[0]) / 2.0
    t = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)[:, None]
    return centre + np.cos(t) * a + np.sin(t) * b


def region_from_shapes(data, shape_types=None) -> Region:
    """A region from napari Shapes layer data.

    Parameters
    ----------
    data : list of (N, D) arrays
        ``Shapes.data``: vertices in data coordinates, the last two axes
        ``(row, col)``.
    shape_types : list of str, optional
        ``Shapes.shape_type``. Ellipses are rebuilt from their bounding-box
        corners; lines and paths enclose no area and are refused.

    Returns
    -------
    Region
    """
    if isinstance(data, np.ndarray) and data.ndim == 2:
        data = [data]
    data = list(data)
    if shape_types is None:
        shape_types = ["polygon"] * len(data)
    elif isinstance(shape_types, str):
        shape_types = [shape_types] * len(data)
    if len(shape_types) != len(data):
        raise ValueError(f"{len(data)} shapes but {len(shape_types)} shape types")
    polygons = []
    for i, (verts, kind) in enumerate(zip(data, shape_types)):
        where = f"shape {i} ({kind})"
        if kind in ("line", "path"):
            raise ValueError(f"{where}: a {kind} encloses no area; draw a polygon, rectangle or ellipse")
        ring = _ring(verts, where=where)
        if kind == "ellipse":
            if len(ring) != 4:
                raise ValueError(f"{where}: expected the 4 bounding-box corners, got {len(ring)} vertices")
            ring = _ellipse_from_corners(ring)
        polygons.append(Polygon(ring))
    return Region(tuple(polygons))


def _geojson_polygons(geometry) -> list[list]:
    if not isinstance(geometry, dict):
        return []
    kind = geometry.get("type")
    if kind == "Polygon":
        return [geometry.get("coordinates") or []]
    if kind == "MultiPolygon":
        return list(geometry.get("coordinates") or [])
    if kind == "GeometryCollection":
        out = []
        for g in geometry.get("geometries") or []:
            out += _geojson_polygons(g)
        return out
    return []


def _geometries(obj) -> list:
    if isinstance(obj, list):
        return [g for item in obj for g in _geometries(item)]
    if not isinstance(obj, dict):
        return []
    kind = obj.get("type")
    if kind == "FeatureCollection":
        return _geometries(obj.get("features") or [])
    if kind == "Feature":
        return [obj.get("geometry")]
    return [obj]


def polygons_from_geojson(obj, *, where: str = "GeoJSON") -> list[Polygon]:
    """Polygons of a parsed GeoJSON object, converted to ``(row, col)`` pixel indices.

    Accepts a FeatureCollection, a Feature, a bare geometry or a list of
    Features (QuPath's plain export). Polygon, MultiPolygon and
    GeometryCollection geometries count; points and lines are ignored.
    """
    polygons = []
    for geometry in _geometries(obj):
        for rings in _geojson_polygons(geometry):
            if not rings:
                continue
            xy = [_ring(r, where=f"{where}: polygon {len(polygons) + 1}", first_two=True) for r in rings]
            yx = [r[:, ::-1] - GEOJSON_PIXEL_OFFSET for r in xy]
            polygons.append(Polygon(yx[0], tuple(yx[1:])))
    return polygons


def region_from_geojson(path: str | os.PathLike) -> Region:
    """Read a region from a GeoJSON file (e.g. QuPath annotations).

    Raises
    ------
    ValueError
        If the file is not JSON or holds no polygon; the message names the file.
    """
    path = Path(path)
    obj = read_json(path, what="GeoJSON", expect=None)
    polygons = polygons_from_geojson(obj, where=str(path))
    if not polygons:
        raise ValueError(f"{path}: no Polygon or MultiPolygon geometry to use as a region")
    return Region(tuple(polygons))


def as_region(roi) -> Region | None:
    """Accept a :class:`Region`, a GeoJSON path, a napari Shapes data list, or ``None``."""
    if roi is None or isinstance(roi, Region):
        return roi
    if isinstance(roi, (str, os.PathLike)):
        return region_from_geojson(roi)
    if isinstance(roi, Polygon):
        return Region((roi,))
    return region_from_shapes(roi)
