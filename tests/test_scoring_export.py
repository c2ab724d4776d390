"""The scoring exports, written and read back: cells.csv, summary.json, GeoJSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from skimage.measure import points_in_poly

from napari_ihcseg.scoring import (
    CELL_COLUMNS,
    SUMMARY_KEYS,
    ScoringConfig,
    export_paths,
    label_outlines,
    nuclei_feature_collection,
    read_cells_csv,
    read_geojson,
    read_summary_json,
    score_image,
    write_exports,
    write_summary_json,
)
from napari_ihcseg.stain import compose


def _field(seed=0):
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    return make_synthetic_ihc((96, 128), seed=seed)


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _rasterise(polygons, shape) -> np.ndarray:
    """Pixels whose centre (c + .5, r + .5) lies in the polygons (holes removed)."""
    rr, cc = np.mgrid[0:shape[0], 0:shape[1]]
    centres = np.column_stack([cc.ravel() + 0.5, rr.ravel() + 0.5])
    mask = np.zeros(len(centres), bool)
    for rings in polygons:
        inside = points_in_poly(centres, rings[0])
        for hole in rings[1:]:
            inside &= ~points_in_poly(centres, hole)
        mask |= inside
    return mask.reshape(shape)


@pytest.fixture(scope="module")
def scored():
    field = _field()
    result = score_image(field.image, field.labels, config=ScoringConfig(stain="er", pixel_size_um=0.25))
    return field, result


def test_all_three_exports_are_written_and_read_back(tmp_path, scored):
    field, result = scored
    paths = write_exports(tmp_path, "slide 1", result.cells, result.summary, field.labels)
    assert paths == export_paths(tmp_path, "slide 1")
    assert [p.name for p in paths.values()] == [
        "slide 1.cells.csv", "slide 1.summary.json", "slide 1.nuclei.geojson"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())

    cells = read_cells_csv(paths["cells"])
    assert list(cells.columns) == list(CELL_COLUMNS)
    expected = result.cells.loc[:, list(CELL_COLUMNS)]
    pd.testing.assert_frame_equal(cells, expected, check_dtype=False)

    summary = read_summary_json(paths["summary"])
    assert list(summary) == list(SUMMARY_KEYS)
    assert summary == json.loads(json.dumps(result.summary))

    detections = read_geojson(paths["geojson"])
    assert len(detections) == int(result.cells["included"].sum())


def test_cells_csv_is_plain_for_other_tools(tmp_path, scored):
    field, result = scored
    paths = write_exports(tmp_path, "a", result.cells, result.summary, field.labels)
    header, first = paths["cells"].read_text().splitlines()[:2]
    assert header == ",".join(CELL_COLUMNS)
    values = dict(zip(CELL_COLUMNS, first.split(",")))
    assert values["positive"] in {"0", "1"} and values["included"] in {"0", "1"}


def test_geojson_is_a_qupath_detection_collection(tmp_path, scored):
    field, result = scored
    paths = write_exports(tmp_path, "a", result.cells, result.summary, field.labels)
    obj = json.loads(paths["geojson"].read_text())
    assert obj["type"] == "FeatureCollection"
    cells = result.cells.set_index("label")
    for feature in obj["features"]:
        props = feature["properties"]
        assert feature["type"] == "Feature"
        assert props["objectType"] == "detection"
        m = props["measurements"]
        row = cells.loc[m["label"]]
        assert props["classification"]["name"] == ("Positive" if row["positive"] else "Negative")
        assert len(props["classification"]["color"]) == 3
        assert m["dab_od_mean"] == pytest.approx(row["dab_od_mean"])
        assert m["area_um2"] == pytest.approx(row["area_px"] * 0.0625)
        assert feature["geometry"]["type"] in {"Polygon", "MultiPolygon"}
        parts = ([feature["geometry"]["coordinates"]] if feature["geometry"]["type"] == "Polygon"
                 else feature["geometry"]["coordinates"])
        for part in parts:
            for ring in part:
                assert ring[0] == ring[-1] and len(ring) >= 5   # closed


def test_geojson_polygons_cover_exactly_the_label_pixels(tmp_path, scored):
    field, result = scored
    paths = write_exports(tmp_path, "a", result.cells, result.summary, field.labels)
    for det in read_geojson(paths["geojson"]):
        mask = field.labels == det.label
        area = sum(_ring_area(p[0][:-1]) + sum(_ring_area(h[:-1]) for h in p[1:]) for p in det.polygons)
        assert area == mask.sum()
        assert np.array_equal(_rasterise([[r[:-1] for r in p] for p in det.polygons], mask.shape), mask)


def test_outlines_of_awkward_shapes():
    labels = np.zeros((12, 12), np.int32)
    labels[1:7, 1:7] = 1
    labels[3:5, 3:5] = 0          # a hole
    labels[3, 3] = 2              # an object inside the hole
    labels[8, 8] = labels[9, 9] = 3   # touching only diagonally: two parts
    labels[8:11, 1] = 4           # a one-pixel-wide line
    out = label_outlines(labels)
    assert len(out[1]) == 1 and len(out[1][0]) == 2                 # exterior + hole
    assert _ring_area(out[1][0][0]) == 36 and _ring_area(out[1][0][1]) == -4
    assert len(out[3]) == 2                                         # MultiPolygon
    assert _ring_area(out[4][0][0]) == 3
    for lab, polygons in out.items():
        assert np.array_equal(_rasterise(polygons, labels.shape), labels == lab)
    assert set(label_outlines(labels, [2, 4])) == {2, 4}
    huge = labels.astype(np.int64) * 2**56   # corner keys would overflow int64
    assert {k // 2**56: v[0][0].tolist() for k, v in label_outlines(huge).items()} == \
        {k: v[0][0].tolist() for k, v in out.items()}


def test_excluded_nuclei_are_left_out_of_the_geojson():
    conc = np.zeros((20, 30, 3), np.float32)
    conc[..., 0] = 0.3
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 2:8], labels[2:8, 20:26] = 1, 2
    conc[2:8, 2:8, 1] = 0.5
    result = score_image(compose(conc), labels, stain="ki67",
                         roi=[np.array([[0, 0], [0, 12], [12, 12], [12, 0]], float)])
    fc = nuclei_feature_collection(result.cells, labels)
    assert [f["properties"]["measurements"]["label"] for f in fc["features"]] == [1]
    assert fc["features"][0]["properties"]["classification"]["name"] == "Positive"
    assert "area_um2" not in fc["features"][0]["properties"]["measurements"]   # NaN is left out
    everything = nuclei_feature_collection(result.cells, labels, only_included=False)
    assert len(everything["features"]) == 2


def test_geojson_outlines_move_by_the_offset_of_their_labels():
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 3:9] = 1
    result = score_image(np.full((20, 30, 3), 200, np.uint8), labels, stain="ki67")
    here = nuclei_feature_collection(result.cells, labels)["features"][0]
    there = nuclei_feature_collection(result.cells, labels, offset=(100, 40))["features"][0]
    ring, moved = np.array(here["geometry"]["coordinates"][0]), np.array(there["geometry"]["coordinates"][0])
    np.testing.assert_array_equal(moved, ring + [40, 100])          # (x, y) moved by (column, row)
    assert ring[:, 0].min() == 3 and ring[:, 1].min() == 2
    assert there["properties"]["measurements"] == here["properties"]["measurements"]


def test_empty_image_exports(tmp_path):
    image = np.full((16, 16, 3), 240, np.uint8)
    labels = np.zeros((16, 16), np.int32)
    result = score_image(image, labels, stain="pr")
    paths = write_exports(tmp_path, "empty", result.cells, result.summary, labels)
    assert len(read_cells_csv(paths["cells"])) == 0
    assert read_summary_json(paths["summary"])["positive_percent"] is None
    assert read_geojson(paths["geojson"]) == []


def test_refusing_to_overwrite_writes_nothing(tmp_path, scored):
    field, result = scored
    paths = export_paths(tmp_path, "a")
    paths["summary"].write_text("keep me")
    with pytest.raises(FileExistsError):
        write_exports(tmp_path, "a", result.cells, result.summary, field.labels, overwrite=False)
    assert paths["summary"].read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.summary.json"]


def test_summary_keys_are_enforced(tmp_path, scored):
    _, result = scored
    with pytest.raises(ValueError, match="keys"):
        write_summary_json(tmp_path / "s.json", {**result.summary, "extra": 1})
    (tmp_path / "other.json").write_text(json.dumps({"n_nuclei": 3}))
    with pytest.raises(ValueError, match="not a scoring summary"):
        read_summary_json(tmp_path / "other.json")
    # A summary written before the pixel size was recorded still reads, the key as None.
    older = {k: v for k, v in result.summary.items() if k != "pixel_size_um"}
    (tmp_path / "older.json").write_text(json.dumps(older))
    assert read_summary_json(tmp_path / "older.json")["pixel_size_um"] is None


def test_summaries_of_segment_and_batch_are_read_back(tmp_path):
    """``ihcseg segment`` / ``batch`` write the score beside the image, model and outputs."""
    from PIL import Image

    from fakes import ODNet
    from napari_ihcseg.inference import InferenceConfig
    from napari_ihcseg.pipeline import PipelineOptions, output_paths, process_image

    Image.fromarray(_field(seed=4).image).save(tmp_path / "field.png")
    tiles = InferenceConfig(tile=128, overlap=32)
    written = process_image(tmp_path / "field.png", tmp_path / "scored",
                            PipelineOptions(inference=tiles, scoring=ScoringConfig(stain="ki67")),
                            model=ODNet(stains=(0, 1)), model_name="odnet")
    summary = read_summary_json(output_paths(tmp_path / "scored", "field")["summary"])
    assert set(SUMMARY_KEYS) < set(summary)
    assert summary == json.loads(json.dumps(written))  # the extra keys are kept
    assert summary["model"]["name"] == "odnet" and summary["stain"] == "ki67"

    process_image(tmp_path / "field.png", tmp_path / "plain", PipelineOptions(inference=tiles),
                  model=ODNet(stains=(0, 1)), model_name="odnet")
    plain = output_paths(tmp_path / "plain", "field")["summary"]
    with pytest.raises(ValueError, match=r"not a scoring summary; it lacks the keys \['n_positive'") as info:
        read_summary_json(plain)
    assert str(plain) in str(info.value)


@pytest.mark.parametrize(("reader", "text", "match"), [
    (read_cells_csv, "a,b\n1,2\n", "missing columns"),
    (read_summary_json, "{oops", "not valid JSON"),
    (read_geojson, json.dumps({"type": "Feature"}), "FeatureCollection"),
    (read_geojson, json.dumps({"type": "FeatureCollection", "features": [{"geometry": None}]}),
     "feature 0"),
])
def test_readers_name_the_file_on_bad_input(tmp_path, reader, text, match):
    path = tmp_path / "bad.file"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        reader(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------- extra columns, summary CSV

def _edited(cells: pd.DataFrame) -> pd.DataFrame:
    """The table with the Score widget's ``edit_status``: the first nucleus drawn, the third changed."""
    status = np.array([""] * len(cells), dtype=object)
    status[0], status[2] = "created", "changed"
    return cells.assign(edit_status=status)


def test_cells_csv_writes_extra_columns_last_and_reads_them_back(tmp_path, scored):
    from napari_ihcseg.scoring import write_cells_csv

    _field_, result = scored
    cells = _edited(result.cells)
    path = write_cells_csv(tmp_path / "a.cells.csv", cells, extra_columns=["edit_status"])
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*CELL_COLUMNS, "edit_status"]
    back = read_cells_csv(path)
    assert back["edit_status"].fillna("").tolist() == cells["edit_status"].tolist()
    pd.testing.assert_frame_equal(back.loc[:, list(CELL_COLUMNS)], cells.loc[:, list(CELL_COLUMNS)],
                                  check_dtype=False)
    plain = write_cells_csv(tmp_path / "b.cells.csv", cells)
    assert "edit_status" not in plain.read_text().splitlines()[0], "only the columns asked for"


@pytest.mark.parametrize("extra, message", [(["edit_status"], "lacks the extra columns"),
                                            (["positive"], "standard columns")])
def test_cells_csv_refuses_bad_extra_columns(tmp_path, scored, extra, message):
    from napari_ihcseg.scoring import write_cells_csv

    with pytest.raises(ValueError, match=message):
        write_cells_csv(tmp_path / "a.cells.csv", scored[1].cells, extra_columns=extra)
    assert not (tmp_path / "a.cells.csv").exists()


def test_extra_cells_text_cannot_run_in_a_spreadsheet(tmp_path, scored):
    from napari_ihcseg.scoring import write_cells_csv

    cells = scored[1].cells.assign(note="=HYPERLINK(\"x\")")
    path = write_cells_csv(tmp_path / "a.cells.csv", cells, extra_columns=["note"])
    assert pd.read_csv(path)["note"].eq("'=HYPERLINK(\"x\")").all()


def test_geojson_extra_measurements(tmp_path, scored):
    from napari_ihcseg.scoring import write_geojson

    field, result = scored
    cells = _edited(result.cells)
    cells["edited_by_hand"] = (cells["edit_status"] != "").astype(np.int64)
    path = write_geojson(tmp_path / "a.geojson", cells, field.labels, extra_measurements=["edited_by_hand"],
                         offset=(10, 20))
    wanted = dict(zip(cells["label"].tolist(), cells["edited_by_hand"].tolist()))
    detections = read_geojson(path)
    assert {d.label: d.measurements["edited_by_hand"] for d in detections} == {
        d.label: wanted[d.label] for d in detections}
    plain = {d.label: d for d in read_geojson(write_geojson(tmp_path / "b.geojson", cells, field.labels))}
    for d in detections:
        assert "edited_by_hand" not in plain[d.label].measurements
        np.testing.assert_array_equal(d.polygons[0][0], plain[d.label].polygons[0][0] + [20, 10])
    with pytest.raises(ValueError, match="extra measurements"):
        nuclei_feature_collection(result.cells, field.labels, extra_measurements=["edited_by_hand"])


def test_summary_csv_is_one_row_of_the_summary(tmp_path, scored):
    import csv

    from napari_ihcseg.scoring import write_summary_csv

    summary = scored[1].summary
    path = write_summary_csv(tmp_path / "a.summary.csv", summary)
    rows = list(csv.reader(path.read_text().splitlines()))
    assert len(rows) == 2 and rows[0] == list(summary)
    values = dict(zip(*rows))
    assert float(values["positive_percent"]) == pytest.approx(summary["positive_percent"])
    assert values["n_nuclei"] == str(summary["n_nuclei"])
    for key, value in summary.items():
        if value is None:
            assert values[key] == ""
        elif isinstance(value, (list, tuple)):
            assert values[key] == ";".join(str(v) for v in value)
