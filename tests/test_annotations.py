"""Polygon and point annotations: hand-made files in every format, then the real sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_ihcseg.io.annotations import (
    polygon_labels_in_image,
    polygons_outside,
    polygons_to_labels,
    read_annotation_labels,
    read_polygons,
)
from napari_ihcseg.io.points import read_points_csv

APERIO = """<?xml version="1.0"?>
<Annotations MicronsPerPixel="0.25">
  <Annotation Id="1">
    <Regions>
      <RegionAttributeHeaders><AttributeHeader Id="9999" Name="Region"/></RegionAttributeHeaders>
      <Region Id="1" Type="0" NegativeROA="0">
        <Vertices>
          <Vertex X="1" Y="2"/><Vertex X="4" Y="2"/><Vertex X="4" Y="5"/><Vertex X="1" Y="5"/>
        </Vertices>
      </Region>
      <Region Id="2" Type="0" NegativeROA="1">
        <Vertices><Vertex X="0" Y="0"/><Vertex X="9" Y="0"/><Vertex X="9" Y="9"/></Vertices>
      </Region>
      <Region Id="3" Type="2">
        <Vertices><Vertex X="10" Y="10"/><Vertex X="16" Y="14"/></Vertices>
      </Region>
      <Region Id="4" Type="0">
        <Vertices><Vertex X="7" Y="7" Z="0"/><Vertex X="8" Y="8" Z="0"/></Vertices>
      </Region>
    </Regions>
  </Annotation>
</Annotations>
"""

EDITOR = """\ufeff<!--Document-->
<Document FileVersion="1.0">
  <Layers><Layer Name="Layer1"><Shapes>
    <Shape Type="SmoothPolygon"><Data Rotation="0"><Points>
      <Point X="2" Y="1"/><Point X="6" Y="1"/><Point X="6" Y="3"/><Point X="2" Y="3"/>
    </Points></Data></Shape>
    <Shape Type="Polygon"><Data Rotation="0"><Points>
      <Point X="10" Y="10"/><Point X="14" Y="10"/><Point X="10" Y="14"/>
    </Points></Data></Shape>
    <Shape Type="Oval"><Data Rotation="90"><Extent X="20" Y="4" Width="10" Height="2"/></Data></Shape>
    <Shape Type="Line"><Data Rotation="0"><Points><Point X="0" Y="0"/><Point X="5" Y="5"/></Points></Data></Shape>
  </Shapes></Layer></Layers>
</Document>
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_aperio_regions_become_row_col_polygons(tmp_path):
    path = write(tmp_path, "a.xml", APERIO)
    polygons = read_polygons(path)
    # the exclusion (NegativeROA) and the two-vertex region are skipped; the ellipse is kept
    assert len(polygons) == 2
    np.testing.assert_array_equal(polygons[0], [[2, 1], [2, 4], [5, 4], [5, 1]])  # (Y, X)
    ellipse = polygons[1]
    assert ellipse.min(axis=0) == pytest.approx([10, 10], abs=0.05)
    assert ellipse.max(axis=0) == pytest.approx([14, 16], abs=0.05)
    labels = read_annotation_labels(path, (20, 20))
    assert labels.dtype == np.int32
    assert np.count_nonzero(labels == 1) == 16  # rows 2..5 x cols 1..4 (pixel centres inside)
    assert labels[2, 1] == labels[5, 4] == 1 and labels[1, 1] == 0 and labels[2, 5] == 0
    assert labels[12, 13] == 2 and labels[10, 10] == 0  # the ellipse's centre, not its corner


def test_image_editor_shapes(tmp_path):
    path = write(tmp_path, "01_data.xml", EDITOR)  # with a BOM and a leading comment
    polygons = read_polygons(path)
    assert len(polygons) == 3  # the Line is not a nucleus
    np.testing.assert_array_equal(polygons[0][0], [1, 2])
    labels = read_annotation_labels(path, (32, 32))
    assert labels.max() == 3
    assert np.count_nonzero(labels == 1) == 15  # rows 1..3 x cols 2..6
    # a 10 x 2 oval rotated by 90 degrees about its centre (25, 5) stands upright
    rows, cols = np.nonzero(labels == 3)
    assert rows.max() - rows.min() > 3 * (cols.max() - cols.min())
    assert rows.mean() == pytest.approx(5, abs=0.5) and cols.mean() == pytest.approx(25, abs=0.5)


def test_geojson_variants(tmp_path):
    square = [[0, 0], [4, 0], [4, 3], [0, 3], [0, 0]]  # x, y
    far = [[10, 10], [12, 10], [12, 12], [10, 12], [10, 10]]
    collection = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[far], [square]]}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}},
        {"type": "Feature", "geometry": None},
    ]}
    polygons = read_polygons(write(tmp_path, "a.geojson", json.dumps(collection)))
    assert len(polygons) == 2, "a MultiPolygon is one nucleus in two parts"
    assert len(polygons[1]) == 2 and polygons[1][0].shape == (5, 2)
    labels = polygons_to_labels(polygons, (16, 16))
    # Both parts carry one label; they cover the first square wholly, so it is left out and they are nucleus 1.
    assert labels.max() == 1 and labels[1, 1] == 1 and labels[10, 10] == 1
    # (row, col) = (y, x), moved from GeoJSON's corner frame to pixel centres
    np.testing.assert_array_equal(polygons[0][:3], np.subtract([[0, 0], [0, 4], [3, 4]], 0.5))
    bare = read_polygons(write(tmp_path, "b.json", json.dumps({"type": "Polygon", "coordinates": [square]})))
    listed = read_polygons(write(tmp_path, "c.json", json.dumps(collection["features"][:1])))
    assert len(bare) == len(listed) == 1
    np.testing.assert_array_equal(bare[0], polygons[0])


def test_geojson_outlines_give_back_the_pixels_they_enclose(tmp_path):
    """An outline along pixel edges (QuPath's frame, and the package's own nuclei export) reads back exactly."""
    from napari_ihcseg.data.synthetic import make_synthetic_ihc
    from napari_ihcseg.metrics import evaluate_instances
    from napari_ihcseg.scoring import nuclei_feature_collection, score_image

    square = [[4, 4], [14, 4], [14, 14], [4, 14], [4, 4]]  # pixels 4..13 in x and y
    labels = polygons_to_labels(read_polygons(write(tmp_path, "sq.geojson", json.dumps(
        {"type": "Polygon", "coordinates": [square]}))), (32, 32))
    assert labels.sum() == 100 and labels[4:14, 4:14].all()

    field = make_synthetic_ihc((128, 128), seed=3)
    labels = field.labels.copy()
    labels[0:4, 0:4] = labels[-4:, -4:] = labels.max() + 1  # one nucleus in two pieces: a MultiPolygon
    cells = score_image(field.image, labels, stain="ki67").cells
    exported = nuclei_feature_collection(cells, labels, only_included=False)
    assert any(f["geometry"]["type"] == "MultiPolygon" for f in exported["features"])
    back = polygons_to_labels(read_polygons(write(tmp_path, "n.geojson", json.dumps(exported))), (128, 128))
    assert (back > 0).sum() == (labels > 0).sum()
    result = evaluate_instances(back, labels)
    assert result["n_pred"] == result["n_truth"] == len(np.unique(labels)) - 1 and result["dice"] > 0.99


@pytest.mark.parametrize(("name", "text", "message"), [
    ("broken.xml", "<Annotations><Region>", "not well-formed XML"),
    ("other.xml", "<svg><rect/></svg>", "unrecognised annotation XML"),
    ("vertex.xml", '<Annotations><Region><Vertices><Vertex X="a" Y="1"/></Vertices></Region></Annotations>',
     "numeric X"),
    ("bad.json", "{not json", "not valid JSON"),
    ("coords.geojson", '{"type": "Polygon", "coordinates": [[["a", 1], [2, 2], [3, 3]]]}', "malformed"),
    ("what.json", '{"type": "Topology"}', "not a GeoJSON"),
])
def test_malformed_files_raise_value_errors_naming_the_file(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(ValueError, match=message) as info:
        read_polygons(path)
    assert str(path) in str(info.value)


def test_polygons_to_labels_overwrites_in_order_renumbers_and_clips():
    big = [[0, 0], [0, 5], [5, 5], [5, 0]]
    small = [[1, 1], [1, 2], [2, 2], [2, 1]]
    tiny = [[8.2, 8.2], [8.2, 8.4], [8.4, 8.4]]  # covers no pixel centre
    outside = [[-5, -5], [-5, 1], [1, 1], [1, -5]]
    labels = polygons_to_labels([big, tiny, small, outside], (8, 8, 3))
    assert labels.shape == (8, 8)
    assert labels[2, 2] == labels[1, 2] == 2  # the later, smaller square sits on top of the first
    assert labels[0, 0] == labels[1, 1] == 3  # the clipped one overwrites both at the corner
    assert labels[4, 4] == 1
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]  # the tiny one left no gap
    empty = polygons_to_labels([], (4, 5))
    assert empty.shape == (4, 5) and not empty.any()
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        polygons_to_labels([[1, 2, 3]], (4, 4))


def test_polygons_wholly_outside_the_image_are_counted_and_noted():
    inside = [[1, 1], [1, 3], [3, 3], [3, 1]]
    straddling = [[-5, -5], [-5, 1], [1, 1], [1, -5]]  # clipped, not outside
    below, right = [[9, 0], [9, 2], [12, 2]], [[0, 8], [2, 8], [2, 12]]
    assert polygons_outside([inside, straddling, below, right], (8, 8)).tolist() == [False, False, True, True]
    labels, note = polygon_labels_in_image([inside, straddling, below, right], (8, 8, 3), source="cells.geojson")
    assert labels.max() == 2
    assert note == "cells.geojson: 2 of 4 polygons lie outside the 8x8 image and are left out"
    assert polygon_labels_in_image([inside], (8, 8), source="x")[1] is None
    assert polygon_labels_in_image([], (8, 8), source="x")[1] is None  # an empty annotation is not another image's


def test_an_annotation_of_another_image_is_refused_naming_the_file_the_size_and_the_count(tmp_path):
    path = tmp_path / "big.geojson"
    ring = [[500, 500], [510, 500], [510, 510], [500, 510], [500, 500]]
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}}] * 3
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    with pytest.raises(ValueError, match=rf"^{path}: all 3 polygon\(s\) lie outside the 200x100 image"):
        read_annotation_labels(path, (100, 200))


def test_points_csv(tmp_path):
    path = write(tmp_path, "markers.csv", "\ufefftype,x,y\n1,10,20\n2,30.5,40\n\n2,0,0\n")
    points, positive = read_points_csv(path)
    np.testing.assert_array_equal(points, [[20, 10], [40, 30.5], [0, 0]])
    assert positive.tolist() == [True, False, False]
    points, positive = read_points_csv(write(tmp_path, "none.csv", "type,x,y\n"))
    assert points.shape == (0, 2) and positive.shape == (0,)


@pytest.mark.parametrize(("text", "message"), [
    ("kind,x,y\n1,2,3\n", "missing column"),
    ("type,x,y\n3,2,3\n", "line 2: type must be 1"),
    ("type,x,y\n1,2,3\n1,a,3\n", "line 3: expected numbers"),
    ("type,x,y\n1.7,2,3\n", "line 2: type must be 1"),  # neither class: not cut down to 1
    ("type,x,y,x\n1,2,3,9\n", "x appear more than once"),
])
def test_bad_points_csv(tmp_path, text, message):
    path = write(tmp_path, "p.csv", text)
    with pytest.raises(ValueError, match=message) as info:
        read_points_csv(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- real annotation sets


def test_monuseg_xml_matches_its_binary_mask(shared_data):
    from PIL import Image

    from napari_ihcseg.metrics import dice

    root = shared_data / "monuseg-train"
    xml = sorted((root / "Annotations").glob("*.xml"))[0]
    n_regions = xml.read_text(encoding="utf-8").count("<Region ")
    mask = np.asarray(Image.open(root / "Binary_masks" / f"{xml.stem}.png")) > 0
    polygons = read_polygons(xml)
    assert len(polygons) == n_regions
    labels = polygons_to_labels(polygons, mask.shape)
    # a few tiny or overdrawn outlines may vanish when rasterised
    assert 0.97 * n_regions <= labels.max() <= n_regions
    assert dice(labels, mask) > 0.98


def test_gbm_contours_outline_dark_nuclei(shared_data):
    from PIL import Image

    folder = shared_data / "gbm-tcga-contours" / "GBM40"
    xml = folder / "contour_annotation_xml" / "01_data.xml"
    image = np.asarray(Image.open(folder / "raw_image" / "01.png").convert("RGB")).mean(axis=-1)
    n_shapes = xml.read_text(encoding="utf-8-sig").count("<Shape ")
    polygons = read_polygons(xml)
    assert len(polygons) == n_shapes
    labels = polygons_to_labels(polygons, image.shape)
    assert labels.max() >= 0.95 * n_shapes
    assert image[labels > 0].mean() < image[labels == 0].mean() - 40  # nuclei are dark in H&E


def test_ki67_markers(shared_data):
    for case, index in (("17993-04", 3.1), ("503-05", 16.3)):
        points, positive = read_points_csv(shared_data / "ki67-points" / case / "markers.csv")
        assert len(points) == len(positive) > 50
        assert 100 * positive.mean() == pytest.approx(index, abs=0.06)  # the README rounds
        assert points.min() >= 0


@pytest.mark.parametrize("rows", [50, 20_000])
def test_a_stray_quote_in_a_points_csv_is_refused_not_left_to_swallow_the_rows_after_it(tmp_path, rows):
    path = tmp_path / "points.csv"
    path.write_text('type,x,y,note\n1,10,10,"dense\n' + "".join(f"2,{i % 900},{i // 900},\n" for i in range(rows)))
    with pytest.raises(ValueError, match=r"points.csv: not a well-formed CSV file \(the first row after line 1: "):
        read_points_csv(path)


@pytest.mark.parametrize("content", [
    {"type": "FeatureCollection", "features": ["oops"]},
    {"type": "FeatureCollection", "features": {"a": 1}},
    {"type": "FeatureCollection", "features": 5},
    {"type": "Feature", "geometry": "Point", "properties": {}},
    {"type": "Feature", "geometry": [1, 2], "properties": {}},
    {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}, "properties": [1]},
    {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": 5},
     "properties": {"classification": {"name": "Positive"}}},
])
def test_malformed_point_geojson_is_one_error_naming_the_file(tmp_path, content):
    from napari_ihcseg.io.points import read_points_geojson

    path = tmp_path / "b.geojson"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"b.geojson: "):
        read_points_geojson(path)


def test_qupath_derived_classes_count_by_their_positive_or_negative_part(tmp_path):
    from napari_ihcseg.io.points import read_points_geojson

    def point(names, x):
        return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, 5.5]},
                "properties": {"objectType": "annotation", "classification": {"names": names}}}

    path = tmp_path / "derived.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [point(["Tumor", "Positive"], 3.5),
                                                                          point(["Tumor", "Negative"], 8.5)]}))
    points, positive = read_points_geojson(path)
    np.testing.assert_allclose(points, [[5, 3], [5, 8]])
    assert positive.tolist() == [True, False]
