"""Nucleus annotations drawn as polygons or points, read into label maps.

Polygon formats, recognised by content (not by file name):

- **Aperio ImageScope XML** (MoNuSeg and other sets exported from ImageScope
  or from ImageJ/Fiji tools that write this schema):
  ``<Annotations><Annotation><Regions><Region><Vertices><Vertex X= Y=/>``,
  one ``Region`` per nucleus. Ellipse regions (``Type="2"``, stored as two
  corners of the bounding box) become ellipses; regions marked
  ``NegativeROA="1"`` (exclusions) are skipped.
- **Image-editor XML** (``<Document>…<Shapes><Shape Type=…>``), as in the
  GBM / TCGA glioma contour set: ``Polygon`` and ``SmoothPolygon`` shapes
  give their ``<Points><Point X= Y=/>`` (the smooth curve is approximated by
  the polygon through its points); ``Oval`` and ``Rectangle`` shapes their
  ``<Extent X= Y= Width= Height=/>``, rotated by ``Data/@Rotation`` degrees
  (clockwise on screen) about the centre. Other shapes (lines, text) are
  skipped.
- **GeoJSON** (``.geojson`` / ``.json``; QuPath's export): a
  ``FeatureCollection``, a list of features, a ``Feature`` or a bare
  geometry. Each ``Polygon`` gives its outer ring, and a ``MultiPolygon``
  one nucleus of several parts (a list of rings, as the package's own export
  writes a nucleus in pieces); holes and non-polygon geometries are ignored.
  A QuPath cell export gives each cell's ``nucleusGeometry``, the nucleus,
  rather than its ``geometry``, the whole cell. GeoJSON coordinates have their origin at the top-left *corner*
  of the image, as QuPath's and this package's own exports do (the centre of
  pixel ``(r, c)`` is ``(c + 0.5, r + 0.5)``; see
  :data:`~napari_ihcseg.io.points.GEOJSON_PIXEL_OFFSET`): they are shifted
  by half a pixel into the frame below, so an outline along pixel edges
  gives back exactly the pixels it encloses.

All coordinates are pixels with ``X`` the column and ``Y`` the row, and are
returned as ``(row, col)`` with integer coordinates at pixel centres.
Rasterisation uses :func:`skimage.draw.polygon`: a pixel belongs to a
polygon when its centre lies inside.

Point annotations (the marker CSV ``type,x,y`` and QuPath points) are read
and written by :mod:`napari_ihcseg.io.points`.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.draw import polygon as draw_polygon

from napari_ihcseg._json_file import parse_json
from napari_ihcseg.io.points import GEOJSON_PIXEL_OFFSET

__all__ = ["read_polygons", "polygons_to_labels", "polygons_outside", "polygon_labels_in_image", "read_annotation_labels"]

#: Vertices used to approximate an ellipse.
_ELLIPSE_VERTICES = 64


def _float_attr(elem: ET.Element, name: str, path: Path) -> float:
    text = elem.get(name)
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{path}: <{elem.tag}> has no numeric {name} attribute (got {text!r})") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}: <{elem.tag}> has a non-finite {name} attribute ({text!r})")
    return value


def _vertices_rc(elems: list[ET.Element], path: Path) -> np.ndarray:
    """(row, col) of ``<… X= Y=/>`` elements; errors name the file and the element."""
    try:
        xy = np.array([(e.get("X"), e.get("Y")) for e in elems], dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            raise ValueError
    except (TypeError, ValueError):
        for e in elems:  # name the culprit in the message
            _float_attr(e, "X", path)
            _float_attr(e, "Y", path)
        raise ValueError(f"{path}: malformed vertex coordinates") from None
    return xy[:, ::-1].copy()


def _ellipse(x0: float, y0: float, width: float, height: float, rotation_deg: float = 0.0) -> np.ndarray:
    """Vertices (row, col) of an ellipse inscribed in a box rotated about its centre."""
    t = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
    return _rotated_box_outline(x0, y0, width, height, rotation_deg,
                                0.5 * width * np.cos(t), 0.5 * height * np.sin(t))


def _rotated_box_outline(x0, y0, width, height, rotation_deg, dx, dy) -> np.ndarray:
    cx, cy = x0 + 0.5 * width, y0 + 0.5 * height
    a = math.radians(rotation_deg)
    # With y pointing down, this rotation is clockwise on screen for positive angles.
    x = cx + dx * math.cos(a) - dy * math.sin(a)
    y = cy + dx * math.sin(a) + dy * math.cos(a)
    return np.stack([y, x], axis=1)


def _aperio_polygons(root: ET.Element, path: Path) -> list[np.ndarray]:
    polygons = []
    for region in root.iter("Region"):
        if region.get("NegativeROA", "0").strip() == "1":
            continue
        rc = _vertices_rc(list(region.iter("Vertex")), path)
        if region.get("Type", "0").strip() == "2" and len(rc) == 2:
            (ya, xa), (yb, xb) = rc
            polygons.append(_ellipse(min(xa, xb), min(ya, yb), abs(xb - xa), abs(yb - ya)))
        elif len(rc) >= 3:
            polygons.append(rc)
    return polygons


def _editor_polygons(root: ET.Element, path: Path) -> list[np.ndarray]:
    polygons = []
    for shape in root.iter("Shape"):
        kind = shape.get("Type", "")
        data = shape.find("Data")
        if data is None:
            continue
        if kind in ("Polygon", "SmoothPolygon"):
            rc = _vertices_rc(list(data.iter("Point")), path)
            if len(rc) >= 3:
                polygons.append(rc)
        elif kind in ("Oval", "Rectangle"):
            extent = data.find("Extent")
            if extent is None:
                raise ValueError(f"{path}: <Shape Type={kind!r}> without an <Extent>")
            x0, y0, w, h = (_float_attr(extent, k, path) for k in ("X", "Y", "Width", "Height"))
            rotation = _float_attr(data, "Rotation", path) if data.get("Rotation") is not None else 0.0
            if kind == "Oval":
                polygons.append(_ellipse(x0, y0, w, h, rotation))
            else:
                dx = 0.5 * w * np.array([-1.0, 1.0, 1.0, -1.0])
                dy = 0.5 * h * np.array([-1.0, -1.0, 1.0, 1.0])
                polygons.append(_rotated_box_outline(x0, y0, w, h, rotation, dx, dy))
    return polygons


def _geojson_rings(geometry: dict, path: Path) -> list[np.ndarray]:
    if not isinstance(geometry, dict):
        return []
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    try:
        if kind == "Polygon":
            rings = [coords[0]] if coords else []
        elif kind == "MultiPolygon":
            rings = [poly[0] for poly in coords if poly]
        elif kind == "GeometryCollection":
            return [p for g in geometry.get("geometries", []) for p in _geojson_rings(g, path)]
        else:
            return []
        out = []
        for ring in rings:
            xy = np.asarray(ring, dtype=np.float64)
            if xy.ndim != 2 or xy.shape[1] < 2 or not np.isfinite(xy[:, :2]).all():
                raise ValueError
            if len(xy) >= 3:
                out.append(xy[:, 1::-1] - GEOJSON_PIXEL_OFFSET)
        if kind == "MultiPolygon" and len(out) > 1:
            return [out]  # one nucleus in several parts
        return out
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"{path}: a GeoJSON {kind} has malformed coordinates") from None


def _geojson_polygons(obj, path: Path) -> list[np.ndarray]:
    if isinstance(obj, list):
        features = obj
    elif isinstance(obj, dict) and obj.get("type") == "FeatureCollection":
        features = obj.get("features") or []
    elif isinstance(obj, dict) and obj.get("type") == "Feature":
        features = [obj]
    elif isinstance(obj, dict) and ("coordinates" in obj or "geometries" in obj):
        return _geojson_rings(obj, path)
    else:
        raise ValueError(f"{path}: not a GeoJSON FeatureCollection, Feature or geometry")
    polygons = []
    for feature in features:
        # A QuPath cell export outlines the cell in "geometry" and its nucleus in "nucleusGeometry".
        geometry = (feature.get("nucleusGeometry") or feature.get("geometry")) if isinstance(feature, dict) else None
        polygons.extend(_geojson_rings(geometry, path))
    return polygons


def read_polygons(path: str | os.PathLike) -> list[np.ndarray]:
    """Read the nucleus outlines of an annotation file.

    Parameters
    ----------
    path : path-like
        Aperio XML, image-editor XML or GeoJSON (see the module notes).

    Returns
    -------
    list
        One item per nucleus, in file order: a (K, 2) float64 array of
        vertices (row, col), or, for a nucleus of several parts (a GeoJSON
        ``MultiPolygon``), a list of such arrays. Polygons with fewer than
        three vertices are dropped.

    Raises
    ------
    ValueError
        If the file is not well-formed, or is XML/JSON of another kind. The
        message names the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    head = raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"{", b"["):
        return _geojson_polygons(parse_json(raw, path, expect=None), path)
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not well-formed XML ({exc})") from None
    if root.tag == "Annotations" or root.find(".//Region") is not None:
        return _aperio_polygons(root, path)
    if root.find(".//Shape") is not None or root.tag == "Document":
        return _editor_polygons(root, path)
    raise ValueError(
        f"{path}: unrecognised annotation XML (root <{root.tag}>); expected Aperio "
        "<Annotations>/<Region> or image-editor <Document>/<Shape>"
    )


def polygons_to_labels(polygons, shape: tuple[int, ...]) -> np.ndarray:
    """Rasterise polygons into an instance label map.

    Parameters
    ----------
    polygons : sequence
        One item per nucleus: a (K, 2) array_like of vertices (row, col) in
        pixels, or a list of them for a nucleus of several parts (one label).
    shape : tuple of int
        ``(H, W)`` of the label map (an image shape ``(H, W, C)`` is accepted;
        the channels are ignored). Parts outside it are clipped (see
        :func:`polygon_labels_in_image` to count the polygons left wholly outside).

    Returns
    -------
    ndarray of int32, shape (H, W)
        0 background, 1..N nuclei. Polygons are drawn in order and a later
        polygon overwrites an earlier one where they overlap. Labels are then
        renumbered 1..N in drawing order, leaving out polygons that cover no
        pixel centre (too small, outside, or fully overwritten), so label
        ``k`` is not always polygon ``k - 1``.

    Examples
    --------
    >>> square = [[0, 0], [0, 2], [2, 2], [2, 0]]
    >>> polygons_to_labels([square], (4, 4))
    array([[1, 1, 1, 0],
           [1, 1, 1, 0],
           [1, 1, 1, 0],
           [0, 0, 0, 0]], dtype=int32)
    """
    if len(shape) < 2 or any(int(s) < 0 for s in shape[:2]):
        raise ValueError(f"shape must be (H, W) with non-negative sizes, got {shape}")
    h, w = int(shape[0]), int(shape[1])
    labels = np.zeros((h, w), dtype=np.int32)
    for i, item in enumerate(polygons, start=1):
        for rc in _parts(item, i - 1):
            rr, cc = draw_polygon(rc[:, 0], rc[:, 1], shape=(h, w))
            labels[rr, cc] = i
    present = np.unique(labels)
    present = present[present > 0]
    if present.size and present[-1] != present.size:
        lut = np.zeros(int(present[-1]) + 1, dtype=np.int32)
        lut[present] = np.arange(1, present.size + 1, dtype=np.int32)
        labels = lut[labels]
    return labels


def polygons_outside(polygons, shape: tuple[int, ...]) -> np.ndarray:
    """Which polygons lie wholly outside an image of ``shape``.

    A polygon is outside when all its vertices lie beyond one edge of the
    pixel centres (rows ``0..H-1``, columns ``0..W-1``): it cannot cover a
    pixel, whatever its form.

    Parameters
    ----------
    polygons : sequence
        As for :func:`polygons_to_labels`; a nucleus of several parts is
        outside when all its parts are.
    shape : tuple of int
        ``(H, W)`` (or ``(H, W, C)``) of the image.

    Returns
    -------
    ndarray of bool, shape (len(polygons),)

    Examples
    --------
    >>> polygons_outside([[[0, 0], [0, 2], [2, 2]], [[5, 9], [5, 12], [8, 12]]], (4, 8)).tolist()
    [False, True]
    """
    h, w = int(shape[0]), int(shape[1])
    out = np.zeros(len(polygons), dtype=bool)
    for i, item in enumerate(polygons):
        rc = np.concatenate([np.zeros((0, 2)), *_parts(item, i)])
        lo, hi = rc.min(axis=0, initial=np.inf), rc.max(axis=0, initial=-np.inf)
        out[i] = hi[0] < 0 or hi[1] < 0 or lo[0] > h - 1 or lo[1] > w - 1
    return out


def _parts(item, index: int) -> list[np.ndarray]:
    """The (K, 2) vertex arrays of one nucleus: one polygon, or the parts of a nucleus in pieces."""
    parts = item if isinstance(item, (list, tuple)) and len(item) and np.ndim(item[0]) == 2 else [item]
    out = []
    for part in parts:
        rc = np.asarray(part, dtype=np.float64)
        if rc.ndim != 2 or rc.shape[1] != 2:
            raise ValueError(f"polygon {index}: expected a (K, 2) array of (row, col), got shape {rc.shape}")
        out.append(rc)
    return out


def polygon_labels_in_image(polygons, shape: tuple[int, ...], *, source) -> tuple[np.ndarray, str | None]:
    """The label map of an annotation of one image, refusing one made for another image.

    :func:`polygons_to_labels`, after counting the polygons that lie wholly
    outside the image (:func:`polygons_outside`): they cannot be drawn and
    would otherwise vanish without a word.

    Parameters
    ----------
    polygons, shape
        As in :func:`polygons_outside`.
    source : str or path-like
        The annotation file, named in the messages.

    Returns
    -------
    labels : ndarray of int32, shape (H, W)
    note : str or None
        ``"<source>: N of M polygons lie outside the WxH image ..."`` when
        some do, else ``None``.

    Raises
    ------
    ValueError
        When every polygon (at least one) lies outside the image: the
        annotation was most likely made for another image.
    """
    h, w = int(shape[0]), int(shape[1])
    outside = polygons_outside(polygons, shape)
    n_out, n = int(outside.sum()), len(polygons)
    if n and n_out == n:
        rc = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons])
        (r0, c0), (r1, c1) = rc.min(axis=0), rc.max(axis=0)
        raise ValueError(f"{source}: all {n} polygon(s) lie outside the {w}x{h} image (they span x {c0:.0f} to "
                         f"{c1:.0f}, y {r0:.0f} to {r1:.0f}); is the annotation for another image?")
    note = (f"{source}: {n_out} of {n} polygons lie outside the {w}x{h} image and are left out"
            if n_out else None)
    return polygons_to_labels(polygons, shape), note


def read_annotation_labels(path: str | os.PathLike, shape: tuple[int, ...]) -> np.ndarray:
    """Read an annotation file straight into an ``int32`` label map of ``shape``.

    ``polygon_labels_in_image(read_polygons(path), shape, source=path)[0]``: an
    annotation whose polygons all lie outside the image is refused (a
    ``ValueError`` naming the file); see :func:`polygon_labels_in_image` for the note
    on some lying outside.
    """
    return polygon_labels_in_image(read_polygons(path), shape, source=path)[0]
