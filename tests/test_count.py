"""Count mode's core: a nucleus grown at a click, classes set by hand, point annotations in and out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_ihcseg.editing import EditTracker, compare_counts, grow_nucleus_at, typical_diameter
from napari_ihcseg.io.points import read_points, write_points
from napari_ihcseg.scoring import ScoringConfig, apply_class_overrides, classify, summarize
from napari_ihcseg.stain import compose


def _disk_field(centres, radius, shape=(96, 96)):
    rr, cc = np.ogrid[:shape[0], :shape[1]]
    labels = np.zeros(shape, np.int32)
    for k, (r, c) in enumerate(centres, start=1):
        labels[(rr - r) ** 2 + (cc - c) ** 2 <= radius ** 2] = k
    return labels


def test_grow_follows_the_probabilities_and_stops_at_neighbours():
    truth = _disk_field([(40, 40), (40, 52)], 6)
    mask_prob = np.where(truth > 0, 0.3, 0.02).astype(np.float32)  # the model was unsure: below 0.5
    contour_prob = np.zeros_like(mask_prob)
    labels = np.where(truth == 2, 7, 0).astype(np.int32)  # nucleus 1 was missed, its neighbour found
    edit = grow_nucleus_at(labels, (40, 39), mask_prob=mask_prob, contour_prob=contour_prob, diameter=12,
                           mask_threshold=0.5, contour_threshold=0.5)
    grown = edit.apply(labels.copy()) == 8
    assert edit.change.created == {8} and edit.action == "grow"
    iou = (grown & (truth == 1)).sum() / (grown | (truth == 1)).sum()
    assert iou > 0.8
    assert not (grown & (labels == 7)).any(), "a grown nucleus never covers another"


def test_grow_without_probabilities_finds_the_dark_nucleus_in_the_density():
    truth = _disk_field([(48, 48)], 7)
    conc = np.zeros((96, 96, 3), np.float32)
    conc[..., 0] = np.where(truth > 0, 0.6, 0.05)  # hematoxylin nucleus on pale tissue
    image = compose(conc)
    edit = grow_nucleus_at(np.zeros((96, 96), np.int32), (46, 50), image=image, diameter=14)
    grown = edit.apply(np.zeros((96, 96), np.int32)) > 0
    iou = (grown & (truth > 0)).sum() / (grown | (truth > 0)).sum()
    assert iou > 0.8


def test_grow_is_bounded_by_the_typical_size_and_refuses_a_click_on_a_nucleus():
    image = compose(np.dstack([np.full((96, 96), 0.6, np.float32), np.zeros((96, 96, 2), np.float32)]))
    edit = grow_nucleus_at(np.zeros((96, 96), np.int32), (48, 48), image=image, diameter=10)
    assert edit.n_pixels <= np.pi * (0.75 * 10) ** 2 + 1, "uniform dark tissue: stops at the reach"
    labels = _disk_field([(20, 20)], 5)
    with pytest.raises(ValueError, match="already a nucleus"):
        grow_nucleus_at(labels, (20, 20))
    with pytest.raises(ValueError, match="outside"):
        grow_nucleus_at(labels, (200, 20))


@pytest.mark.parametrize("dtype, new_label, problem", [
    (np.int32, 1, "belong to other nuclei: 1"),       # would merge the new pixels into nucleus 1
    (np.int32, 0, "must be 1 or more"),               # would paint background
    (np.int32, -4, "must be 1 or more"),
    (np.uint8, 256, "no room"),                       # would wrap to 0 in a uint8 image
])
def test_grow_refuses_a_new_label_that_is_not_a_free_id(dtype, new_label, problem):
    labels = _disk_field([(20, 20)], 5).astype(dtype)
    before = labels.copy()
    with pytest.raises(ValueError, match=problem):
        grow_nucleus_at(labels, (60, 60), diameter=10, new_label=new_label)
    np.testing.assert_array_equal(labels, before)
    edit = grow_nucleus_at(labels, (60, 60), diameter=10, new_label=9)
    assert set(np.unique(edit.apply(labels)).tolist()) == {0, 1, 9}


def test_typical_diameter_is_the_median_nucleus():
    labels = _disk_field([(20, 20), (20, 50), (50, 20), (50, 50), (80, 80)], 6)
    assert typical_diameter(labels) == pytest.approx(12, abs=1)
    assert typical_diameter(labels[:30, :30]) == 12.0  # too few nuclei: the default


def _cells(dab):
    n = len(dab)
    import pandas as pd

    return pd.DataFrame({"label": np.arange(1, n + 1), "dab_od_mean": dab, "area_px": np.full(n, 50)})


def test_typical_diameter_of_labels_with_huge_ids():
    labels = _disk_field([(20, 20), (20, 50), (50, 20), (50, 50), (80, 80)], 6).astype(np.int64)
    labels[labels == 2] = 2 ** 40  # np.bincount would need 8 TB
    assert typical_diameter(labels) == pytest.approx(12, abs=1)
    assert typical_diameter(labels, sizes=np.array([113] * 5)) == pytest.approx(12, abs=0.1)


def test_grow_checks_a_given_new_label_against_known_areas():
    labels = _disk_field([(20, 20)], 5)
    with pytest.raises(ValueError, match="belong to other nuclei: 1"):
        grow_nucleus_at(labels, (60, 60), diameter=10, new_label=1, areas=np.bincount(labels.ravel()))
    edit = grow_nucleus_at(labels, (60, 60), diameter=10, new_label=2, areas=np.bincount(labels.ravel()))
    assert edit.change.created == {2}


def test_hand_classes_survive_threshold_moves_and_count_in_the_summary():
    tracker = EditTracker()
    tracker.set_class(1, "positive")
    tracker.set_class(2, "negative")
    tracker.set_class(3, "3")
    cells = _cells([0.0, 2.0, 0.0, 2.0])
    for thresholds in ((0.1, 0.2, 0.3), (5.0, 6.0, 7.0)):
        cfg = ScoringConfig(stain="ki67", thresholds=thresholds)
        scored = apply_class_overrides(classify(cells, cfg), tracker.class_overrides)
        assert scored["class_source"].tolist() == ["human", "human", "human", "model"]
        assert scored["positive"].tolist()[:3] == [1, 0, 1]
        assert scored["intensity_class"].tolist()[2] == 3
        again = classify(scored, cfg)  # re-scoring keeps what a person said
        assert again["intensity_class"].tolist()[:3] == scored["intensity_class"].tolist()[:3]
        summary = summarize(scored, cfg)
        assert summary["n_positive"] == 2 + (thresholds[0] < 2.0)
    tracker.set_class(1, None)  # back to the model
    tracker.record("delete", deleted=[2])
    assert tracker.class_overrides == {3: "3"}
    assert EditTracker.from_dict(json.loads(json.dumps(tracker.to_dict()))).class_overrides == {3: "3"}
    assert 1 in tracker.edited, "a nucleus classified by hand counts as edited"
    with pytest.raises(ValueError, match="unknown class"):
        tracker.set_class(4, "4+")


@pytest.mark.parametrize("suffix", [".csv", ".geojson"])
def test_points_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    points = np.round(rng.uniform(0, 500, (40, 2)), 1)
    positive = rng.random(40) < 0.3
    path = write_points(tmp_path / f"counts{suffix}", points, positive)
    back, back_pos = read_points(path)
    order = np.lexsort((back[:, 1], back[:, 0]))
    ref = np.lexsort((points[:, 1], points[:, 0]))
    np.testing.assert_allclose(back[order], points[ref])
    np.testing.assert_array_equal(back_pos[order], positive[ref])
    with pytest.raises(FileExistsError):
        write_points(path, points, positive)  # never replaced without asking


def test_qupath_points_and_bad_point_files_are_named(tmp_path):
    geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [10, 20]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor: Positive"}}},
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[1, 2], [3, 4]]},
         "properties": {"classification": {"name": "Negative"}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
         "properties": {}}]}
    path = tmp_path / "qupath.geojson"
    path.write_text(json.dumps(geo))
    points, positive = read_points(path)  # QuPath's (x, y) from the pixel corner, less half a pixel
    assert points.tolist() == [[19.5, 9.5], [1.5, 0.5], [3.5, 2.5]] and positive.tolist() == [True, False, False]
    geo["features"][0]["properties"]["classification"]["name"] = "Stroma"
    path.write_text(json.dumps(geo))
    with pytest.raises(ValueError, match="qupath.geojson.*Stroma"):
        read_points(path)
    bad = tmp_path / "bad.csv"
    bad.write_text("type,x,y\n3,1,2\n")
    with pytest.raises(ValueError, match="bad.csv, line 2"):
        read_points(bad)


def test_points_geojson_shares_the_pixel_corner_frame_of_nuclei_and_regions(tmp_path):
    """Points written for QuPath sit where the nuclei GeoJSON puts their nucleus, and read back onto it."""
    from napari_ihcseg.scoring import label_outlines, region_from_geojson

    labels = np.zeros((20, 30), np.int32)
    labels[4:7, 10:13] = 1                        # centre pixel (5, 11)
    ring = label_outlines(labels, [1])[1][0][0]   # (x, y) along the pixel edges, as in nuclei.geojson
    centre = ((ring.min(0) + ring.max(0)) / 2).tolist()
    path = write_points(tmp_path / "counts.geojson", [[5, 11], [0, 0]], [True, False])
    written = {f["properties"]["classification"]["name"]: f["geometry"]["coordinates"]
               for f in json.loads(path.read_text())["features"]}
    assert written == {"Positive": [centre], "Negative": [[0.5, 0.5]]} and centre == [11.5, 5.5]
    np.testing.assert_allclose(read_points(path)[0], [[5, 11], [0, 0]])  # the round trip

    # Points placed in QuPath: one at the nucleus' centre, one just inside its bottom-right corner
    qupath = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [centre, [12.9, 6.9]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Positive"}}}]}
    (tmp_path / "qupath.geojson").write_text(json.dumps(qupath))
    points, _ = read_points(tmp_path / "qupath.geojson")
    np.testing.assert_allclose(points, [[5, 11], [6.4, 12.4]])
    rows, cols = np.rint(points).astype(int).T    # the pixel each point lies on
    assert labels[rows, cols].tolist() == [1, 1]

    # and a region drawn along the same pixel edges holds both
    (tmp_path / "roi.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring.tolist()]}))
    assert region_from_geojson(tmp_path / "roi.geojson").contains(points[:, 0], points[:, 1]).all()


def test_compare_counts_gives_matched_missed_extra_and_the_index_difference():
    labels = _disk_field([(20, 20), (20, 60), (70, 20), (70, 60)], 5)
    points = [[20, 21], [21, 60], [70, 19], [90, 90]]  # three nuclei counted, one point on nothing
    result = compare_counts(labels, points, [True, False, False, True], radius=5,
                            nucleus_positive={1: True, 2: True, 3: False, 4: False})
    assert (result["matched"], result["missed"], result["extra"]) == (3, 1, 1)
    assert result["delta_index"] == pytest.approx(50.0 - 50.0)
    detection_only = compare_counts(labels, points, [True, False, False, True], radius=5)
    assert np.isnan(detection_only["delta_index"])


def test_the_shared_marker_csv_reads(shared_data):
    points, positive = read_points(shared_data / "ki67-points" / "503-05" / "markers.csv")
    assert len(points) > 100 and 0 < positive.mean() < 0.5
