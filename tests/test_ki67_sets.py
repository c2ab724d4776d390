"""Readers of the real Ki-67 sets: layout, held-out split, scale, regions; real data when present."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from napari_ihcseg.datasets import load_dataset
from napari_ihcseg.datasets.ki67_sets import (KI67_SETS, POINT_NEGATIVE, POINT_POSITIVE, load_glioma_polygons,
                                          load_immunoratio, load_ki67_points, resample_labels, scale_points)
from napari_ihcseg.datasets.ki67_split import GLIOMA_HELD_OUT, IMMUNORATIO_HELD_OUT, KI67_POINTS_HELD_OUT


def _field(rng, shape=(40, 60)) -> np.ndarray:
    image = np.full((*shape, 3), 230, np.uint8)
    image[10:20, 20:30] = (90, 70, 150)        # one dark nucleus at rows 10-19, cols 20-29
    return image + rng.integers(0, 3, image.shape).astype(np.uint8)


def _point_case(folder, image_name: str, region_name: str, rng) -> None:
    folder.mkdir(parents=True)
    Image.fromarray(_field(rng)).save(folder / image_name, quality=95)
    region = np.zeros((40, 60), np.uint8)
    region[5:35, 5:55] = 255
    Image.fromarray(region).save(folder / region_name)
    (folder / "markers.csv").write_text("type,x,y\n1,24.5,14.5\n2,40,30\n2,200,10\n")  # the last is outside


def immunoratio_folder(root, rng):
    for case in ("1164-03", IMMUNORATIO_HELD_OUT[0]):
        _point_case(root / case, "field.jpg", "region.png", rng)
    return root


def test_immunoratio_reads_points_classes_and_region_and_keeps_the_held_out_cases_apart(tmp_path):
    root = immunoratio_folder(tmp_path / "ir", np.random.default_rng(0))
    train = load_immunoratio(root, scale=1.0)
    assert [s.name for s in train] == ["immunoratio/1164-03"], "held-out cases are never training data"
    held = load_immunoratio(root, cases="held-out", scale=1.0)
    assert [s.name for s in held] == [f"immunoratio/{IMMUNORATIO_HELD_OUT[0]}"]
    assert len(load_immunoratio(root, cases="all", scale=1.0)) == 2
    s = train[0]
    assert s.labels is None and s.mask is None and s.stain == "Ki-67"
    np.testing.assert_allclose(s.points, [[14.5, 24.5], [30.0, 40.0]])   # (row, col); the outside point dropped
    assert s.point_classes.tolist() == [POINT_POSITIVE, POINT_NEGATIVE]
    assert s.region.dtype == bool and s.region[20, 20] and not s.region[2, 2]
    # The spec reads the training cases at the set's scale (2x): the points stay on their nucleus.
    (spec,) = load_dataset(f"immunoratio:{root}")
    assert spec.image.shape[:2] == (80, 120) and spec.region.shape == (80, 120)
    r, c = np.rint(spec.points[0]).astype(int)
    assert spec.image[r, c].mean() < 150, "the positive point lies on the dark nucleus after upsampling"
    assert spec.region[r, c] and not spec.region[3, 3]


def test_ki67_points_are_all_held_out_and_a_training_spec_says_so(tmp_path):
    rng = np.random.default_rng(1)
    for case in KI67_POINTS_HELD_OUT:
        _point_case(tmp_path / "kp" / case, "base.png", "mask-gt.png", rng)
    with pytest.raises(ValueError, match="held out"):
        load_dataset(f"ki67-points:{tmp_path / 'kp'}")
    held = load_ki67_points(tmp_path / "kp", cases="held-out")
    assert sorted(s.name.split("/")[1] for s in held) == sorted(KI67_POINTS_HELD_OUT)
    assert held[0].image.shape[:2] == (40, 60), "ki67-points is at the models' scale already"


def test_point_readers_name_the_missing_file(tmp_path):
    root = immunoratio_folder(tmp_path / "ir", np.random.default_rng(2))
    (root / "1164-03" / "region.png").unlink()
    with pytest.raises(ValueError, match=r"1164-03/region\.png: missing"):
        load_immunoratio(root)
    with pytest.raises(ValueError, match="cases must be one of"):
        load_immunoratio(root, cases="test")


def _glioma_frame(folder, labels: np.ndarray, classes: dict, rng) -> None:
    folder.mkdir(parents=True)
    image = np.full((*labels.shape, 3), 220, np.uint8)
    image[labels > 0] = (100, 80, 160)
    Image.fromarray(image + rng.integers(0, 3, image.shape).astype(np.uint8)).save(folder / "image.jpg")
    Image.fromarray(labels.astype(np.uint16)).save(folder / "labels.png")
    with open(folder / "classes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", "class"])
        w.writerows((k, v) for k, v in classes.items())


def test_glioma_frames_are_downscaled_with_their_classes_and_grouped_by_specimen(tmp_path):
    rng = np.random.default_rng(3)
    labels = np.zeros((80, 100), np.int32)
    labels[10:40, 10:40] = 1
    labels[40:70, 50:90] = 2
    labels[0:1, 99:100] = 3                        # a sliver that vanishes at half size
    classes = {1: "positive", 2: "negative", 3: "negative"}
    for frame in ("111_-A1-01", "111_-A1-02", GLIOMA_HELD_OUT[0]):
        _glioma_frame(tmp_path / "g" / frame, labels, classes, rng)
    samples = load_glioma_polygons(tmp_path / "g", scale=0.5)
    assert [s.name for s in samples] == ["glioma/111_-A1-01", "glioma/111_-A1-02"]
    assert {s.group for s in samples} == {"glioma/111"}, "frames of one specimen split together"
    s = samples[0]
    assert s.image.shape == (40, 50, 3) and s.labels.shape == (40, 50)
    assert s.classes == {1: 1, 2: 0}, "classes follow the labels that survive the resampling"
    assert s.labels[12, 12] == 1 and s.labels[27, 35] == 2
    assert load_dataset(f"glioma:{tmp_path / 'g'}")[0].image.shape[:2] == (30, 37), "the set's 0.37 by default"
    (tmp_path / "g" / "111_-A1-01" / "classes.csv").write_text("label,class\n1,maybe\n")
    with pytest.raises(ValueError, match=r"classes\.csv, line 2: class must be positive or negative"):
        load_glioma_polygons(tmp_path / "g")


def test_resampling_helpers_keep_points_on_their_pixels():
    labels = np.arange(12).reshape(3, 4)
    assert resample_labels(labels, (6, 8))[::2, ::2].tolist() == labels.tolist()
    assert scale_points(np.array([[2.0, 3.0]]), 0.5).tolist() == [[0.75, 1.25]]


# ------------------------------------------------------------------ real data

def test_real_immunoratio_cases_match_the_sets_table(shared_data):
    root = shared_data / "ki67-immunoratio"
    table = {r["case"]: r for r in csv.DictReader(open(root / "cases.csv"))}
    samples = load_immunoratio(root, cases="all", scale=1.0)
    assert len(samples) == len(table) == 26
    assert {s.name.split("/")[1] for s in load_immunoratio(root, cases="held-out", scale=1.0)} == \
        set(IMMUNORATIO_HELD_OUT)
    for s in samples:
        row = table[s.name.split("/")[1]]
        assert s.image.shape[:2] == (int(row["height"]), int(row["width"]))
        n_pos = int((s.point_classes == POINT_POSITIVE).sum())
        assert n_pos == int(row["n_positive"]) and len(s.points) == n_pos + int(row["n_negative"])
    assert KI67_SETS["immunoratio"].scale == 2.0


def test_real_glioma_frames_downscale_to_40x_like_nuclei(shared_data):
    samples = load_glioma_polygons(shared_data / "ki67-glioma-polygons", cases="all")
    assert len(samples) == 5
    areas = np.concatenate([np.bincount(s.labels.ravel())[1:] for s in samples])
    diameter = np.median(np.sqrt(4 * areas[areas > 0] / np.pi))
    assert 20 <= diameter <= 30, diameter
    assert sum(len(s.classes) for s in samples) > 2500


@pytest.mark.parametrize(("markers", "region"), [("type,x,y\n", True), ("type,x,y\n1,200,10\n", True),
                                                 ("type,x,y\n1,24.5,14.5\n", False)],
                         ids=["no point", "every point outside", "empty region"])
def test_a_point_case_without_points_or_region_is_refused(tmp_path, markers, region):
    """Without points every annotated pixel, nuclei included, would be taught as background."""
    root = immunoratio_folder(tmp_path / "ir", np.random.default_rng(4))
    (root / "1164-03" / "markers.csv").write_text(markers)
    if not region:
        Image.fromarray(np.zeros((40, 60), np.uint8)).save(root / "1164-03" / "region.png")
    with pytest.raises(ValueError, match=r"1164-03/(markers\.csv: no point inside|region\.png: the annotated region "
                                         r"is empty)"):
        load_immunoratio(root)


def test_glioma_classes_name_the_file_and_line_and_accept_a_spreadsheet_bom(tmp_path):
    rng = np.random.default_rng(5)
    labels = np.zeros((40, 40), np.int32)
    labels[5:20, 5:20] = 1
    frame = tmp_path / "g" / "111_-A1-01"
    _glioma_frame(frame, labels, {1: "positive"}, rng)
    (frame / "classes.csv").write_text("\ufefflabel,class\n1,positive\n", encoding="utf-8")
    assert load_glioma_polygons(tmp_path / "g", scale=1.0)[0].classes == {1: 1}
    for text in ("label,class\nabc,positive\n", "label,class\n1.5,positive\n", "label,class\n,negative\n"):
        (frame / "classes.csv").write_text(text)
        with pytest.raises(ValueError, match=r"classes\.csv, line 2: label must be a nucleus id"):
            load_glioma_polygons(tmp_path / "g", scale=1.0)
    Image.fromarray(np.zeros((40, 40), np.uint16)).save(frame / "labels.png")
    with pytest.raises(ValueError, match=r"labels\.png: no nucleus outlined"):
        load_glioma_polygons(tmp_path / "g", scale=1.0)


def test_a_folder_whose_name_holds_a_colon_is_a_folder_not_a_kind(tmp_path):
    from napari_ihcseg.datasets.registry import split_spec

    folder = tmp_path / "run 2024-05-01T10:30"
    folder.mkdir()
    assert split_spec(str(folder)) == ("folder", str(folder))
    assert split_spec(f"immunoratio:{folder}") == ("immunoratio", str(folder))
    with pytest.raises(ValueError, match="unknown data set kind 'nosuchkind'"):
        split_spec("nosuchkind:/nowhere")
