"""Per-nucleus measurements, intensity classes and image scores."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from napari_ihcseg.scoring import (
    PRESETS,
    SUMMARY_KEYS,
    Region,
    ScoringConfig,
    allred_proportion_score,
    asco_cap_interpretation,
    get_preset,
    intensity_classes,
    measure_nuclei,
    region_from_geojson,
    region_from_shapes,
    score_image,
    summarize,
)
from napari_ihcseg.stain import H_DAB, StainVectors, compose, deconvolve

NUCLEUS = 6   # side of a square test nucleus, in pixels
GAP = 4       # background between nuclei


def grid_image(dab_ods, *, hematoxylin=0.4, stains=H_DAB, cols=10):
    """Square nuclei on a grid, nucleus i with DAB OD ``dab_ods[i]`` (Beer–Lambert).

    ``hematoxylin`` is one OD for all nuclei or one per nucleus.

    Returns the RGB image and the labels (nucleus i has label i + 1).
    """
    n = len(dab_ods)
    hematoxylin = np.broadcast_to(np.asarray(hematoxylin, np.float32), (n,))
    rows = max(1, -(-n // cols))
    step = NUCLEUS + GAP
    shape = (rows * step + GAP, min(n, cols) * step + GAP) if n else (16, 16)
    conc = np.zeros(shape + (3,), np.float32)
    conc[..., 0] = 0.05                                  # faint counterstain
    labels = np.zeros(shape, np.int32)
    for i, dab in enumerate(dab_ods):
        r, c = divmod(i, cols)
        y0, x0 = GAP + r * step, GAP + c * step
        sl = (slice(y0, y0 + NUCLEUS), slice(x0, x0 + NUCLEUS))
        labels[sl] = i + 1
        conc[sl + (0,)] = hematoxylin[i]
        conc[sl + (1,)] = dab
    return compose(conc, stains), labels


def table(dab_ods, area=36) -> pd.DataFrame:
    """A per-nucleus table without an image, for summary tests."""
    n = len(dab_ods)
    return pd.DataFrame({"label": np.arange(1, n + 1), "area_px": np.full(n, area),
                         "dab_od_mean": np.asarray(dab_ods, float)})


# ------------------------------------------------------------ hand-worked case

HAND_DAB = [0.1] * 4 + [0.3] * 3 + [0.5] * 2 + [0.8]


def test_hand_worked_case_gives_the_expected_scores():
    """10 nuclei mixed by Beer–Lambert: 4 at DAB OD 0.1, 3 at 0.3, 2 at 0.5, 1 at 0.8.

    With thresholds 0.2 / 0.4 / 0.6: classes 0/1+/2+/3+ = 4/3/2/1; 6 of 10
    positive = 60 %; H-score = 1*30 + 2*20 + 3*10 = 100; Allred proportion
    60 % -> 4; mean DAB of the positives (3*0.3 + 2*0.5 + 0.8) / 6 = 0.45
    -> intensity 2; total 6; ASCO/CAP: positive.
    """
    image, labels = grid_image(HAND_DAB)
    result = score_image(image, labels, stain="er")
    cells, s = result.cells, result.summary

    np.testing.assert_allclose(cells["dab_od_mean"], HAND_DAB, atol=0.01)
    np.testing.assert_allclose(cells["hematoxylin_od_mean"], 0.4, atol=0.01)
    assert np.bincount(cells["intensity_class"], minlength=4).tolist() == [4, 3, 2, 1]
    assert cells["positive"].tolist() == [0] * 4 + [1] * 6
    assert s["n_nuclei"] == 10 and s["n_positive"] == 6
    assert s["positive_percent"] == pytest.approx(60.0)
    assert s["h_score"] == pytest.approx(100.0)
    assert (s["allred_proportion_score"], s["allred_intensity_score"], s["allred_total_score"]) == (4, 2, 6)
    assert s["interpretation"] == "positive"
    assert s["ki67_index"] is None
    assert s["stain"] == "er" and s["thresholds"] == [0.2, 0.4, 0.6]
    assert s["stain_vectors"] == H_DAB.to_dict()
    assert tuple(s) == SUMMARY_KEYS
    json.dumps(s, allow_nan=False)  # JSON-ready


def test_hand_worked_case_as_ki67_reports_the_index():
    image, labels = grid_image(HAND_DAB)
    s = score_image(image, labels, stain="ki67").summary
    assert s["ki67_index"] == pytest.approx(60.0) == s["positive_percent"]
    assert s["interpretation"] is None
    assert s["stain"] == "ki67"


def test_rescore_with_new_thresholds_matches_a_fresh_score():
    image, labels = grid_image(HAND_DAB)
    first = score_image(image, labels, stain="er")
    again = first.rescore(thresholds=(0.4, 0.6, 0.7))
    fresh = score_image(image, labels, stain="er", thresholds=(0.4, 0.6, 0.7))
    assert again.summary == fresh.summary
    assert again.summary["n_positive"] == 3
    assert again.summary["h_score"] == pytest.approx(50.0)  # 1 * 20 % + 3 * 10 %
    pd.testing.assert_frame_equal(again.cells, fresh.cells)


# ------------------------------------------------------------------ edge cases

def test_no_nuclei():
    image, labels = grid_image([])
    result = score_image(image, labels, stain="er")
    assert len(result.cells) == 0
    assert {"label", "dab_od_mean", "intensity_class", "positive", "in_roi", "included"} <= set(result.cells)
    s = result.summary
    assert (s["n_nuclei"], s["n_positive"]) == (0, 0)
    for key in ("positive_percent", "h_score", "allred_proportion_score", "allred_intensity_score",
                "allred_total_score", "interpretation"):
        assert s[key] is None, key
    json.dumps(s, allow_nan=False)


def test_no_positive_nuclei():
    image, labels = grid_image([0.05, 0.1, 0.15])
    s = score_image(image, labels, stain="pr").summary
    assert (s["n_nuclei"], s["n_positive"], s["positive_percent"], s["h_score"]) == (3, 0, 0.0, 0.0)
    assert (s["allred_proportion_score"], s["allred_intensity_score"], s["allred_total_score"]) == (0, 0, 0)
    assert s["interpretation"] == "negative"


def test_every_nucleus_positive():
    image, labels = grid_image([0.8] * 5)
    s = score_image(image, labels, stain="er").summary
    assert (s["n_positive"], s["positive_percent"], s["h_score"]) == (5, 100.0, 300.0)
    assert (s["allred_proportion_score"], s["allred_intensity_score"], s["allred_total_score"]) == (5, 3, 8)
    assert s["interpretation"] == "positive"


@pytest.mark.parametrize(("n_pos", "n", "proportion", "reading"), [
    (1, 200, 1, "negative"),        # 0.5 %
    (1, 100, 2, "low positive"),    # exactly 1 %
    (10, 100, 2, "low positive"),   # exactly 10 %
    (21, 200, 3, "positive"),       # 10.5 %: above 10 % -> 3
    (11, 100, 3, "positive"),
])
def test_one_and_ten_percent_boundaries_on_images(n_pos, n, proportion, reading):
    image, labels = grid_image([0.5] * n_pos + [0.05] * (n - n_pos), cols=20)
    s = score_image(image, labels, stain="er").summary
    assert s["n_positive"] == n_pos and s["n_nuclei"] == n
    assert s["allred_proportion_score"] == proportion
    assert s["allred_intensity_score"] == 2
    assert s["allred_total_score"] == proportion + 2
    assert s["interpretation"] == reading


@pytest.mark.parametrize(("k", "n", "expected"), [
    (0, 10, 0), (1, 101, 1), (1, 100, 2), (10, 100, 2), (101, 1000, 3), (1, 3, 3),
    (33, 100, 3), (34, 100, 4), (2, 3, 4), (66, 100, 4), (67, 100, 5), (100, 100, 5), (0, 0, None),
])
def test_allred_proportion_table(k, n, expected):
    assert allred_proportion_score(k, n) == expected


@pytest.mark.parametrize(("k", "n", "expected"), [
    (0, 50, "negative"), (99, 10_000, "negative"), (100, 10_000, "low positive"),
    (1000, 10_000, "low positive"), (1001, 10_000, "positive"), (0, 0, None),
])
def test_asco_cap_boundaries(k, n, expected):
    assert asco_cap_interpretation(k, n) == expected


def test_threshold_values_belong_to_the_higher_class():
    assert intensity_classes([0.2, 0.4, 0.6, 0.19999, np.nan], (0.2, 0.4, 0.6)).tolist() == [1, 2, 3, 0, 0]


def test_allred_intensity_is_the_class_of_the_mean_positive_dab():
    # positives at 0.25 (1+) and 0.95 (3+): their mean 0.6 is 3+
    s = summarize(table([0.25, 0.95, 0.0, 0.0]), ScoringConfig(stain="er"))
    assert s["allred_intensity_score"] == 3
    s = summarize(table([0.25, 0.3, 0.9]), ScoringConfig(stain="er"))  # mean 0.483 -> 2
    assert s["allred_intensity_score"] == 2


def test_summarize_is_cheap_for_tens_of_thousands_of_nuclei():
    rng = np.random.default_rng(0)
    cells = table(rng.uniform(0, 1, 30_000))
    config = ScoringConfig(stain="ki67")
    summarize(cells, config)
    start = time.perf_counter()
    for t in np.linspace(0.1, 0.3, 10):
        summarize(cells, config.replace(thresholds=(t, 0.4, 0.6)))
    assert (time.perf_counter() - start) / 10 < 0.05


# ------------------------------------------------------------- measurements

def test_measurements_match_a_per_label_reference():
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    field = make_synthetic_ihc((128, 160), seed=4)
    cells = measure_nuclei(field.image, field.labels, pixel_size_um=0.5)
    conc = deconvolve(field.image)
    for row in cells.itertuples():
        mask = field.labels == row.label
        rr, cc = np.nonzero(mask)
        assert row.area_px == mask.sum()
        assert row.area_um2 == pytest.approx(0.25 * mask.sum())
        assert (row.centroid_y, row.centroid_x) == pytest.approx((rr.mean(), cc.mean()))
        assert row.dab_od_mean == pytest.approx(conc[..., 1][mask].mean(), abs=1e-5)
        assert row.hematoxylin_od_mean == pytest.approx(conc[..., 0][mask].mean(), abs=1e-5)


def test_synthetic_field_classes_are_recovered():
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    field = make_synthetic_ihc((256, 256), seed=1)
    cells = score_image(field.image, field.labels, stain="er").cells
    truth = field.intensity_class[cells["label"].to_numpy()]
    assert np.mean(cells["intensity_class"].to_numpy() == truth) >= 0.95


def test_dense_and_sparse_label_images_measure_alike():
    """Mostly-foreground and mostly-background images take different code paths."""
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    field = make_synthetic_ihc((64, 64), density=0.5, seed=2)
    assert np.count_nonzero(field.labels) > field.labels.size // 4       # dense
    pad = ((40, 40), (50, 50))
    image = np.pad(field.image, pad + ((0, 0),), constant_values=255)
    labels = np.pad(field.labels, pad)
    assert np.count_nonzero(labels) < labels.size // 4                   # sparse
    dense, sparse = measure_nuclei(field.image, field.labels), measure_nuclei(image, labels)
    sparse["centroid_y"] -= 40
    sparse["centroid_x"] -= 50
    pd.testing.assert_frame_equal(dense, sparse)


@pytest.mark.parametrize("big", [1000, 2**40])
def test_labels_need_not_be_consecutive(big):
    image, labels = grid_image([0.1, 0.5])
    labels = labels.astype(np.int64)
    labels[labels == 2] = big
    cells = measure_nuclei(image, labels)
    assert cells["label"].tolist() == [1, big]
    np.testing.assert_allclose(cells["dab_od_mean"], [0.1, 0.5], atol=0.01)
    assert cells["area_px"].tolist() == [NUCLEUS ** 2] * 2


def test_area_um2_is_nan_without_pixel_size():
    image, labels = grid_image([0.1])
    assert np.isnan(measure_nuclei(image, labels)["area_um2"]).all()


@pytest.mark.parametrize(("image", "labels", "error", "match"), [
    (np.zeros((8, 8), np.uint8), np.zeros((8, 8), int), ValueError, "RGB"),
    (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), int), TypeError, "uint8"),
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), int), ValueError, "do not match"),
    (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool), TypeError, "integers"),
    (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), -1), ValueError, "non-negative"),
])
def test_bad_inputs_are_refused(image, labels, error, match):
    with pytest.raises(error, match=match):
        score_image(image, labels)


def test_estimated_stain_vectors_are_used_and_reported():
    # A lab whose hematoxylin is 14 degrees off the Ruifrok-Johnston vector.
    stains = StainVectors(hematoxylin=(0.45, 0.8, 0.4), dab=(0.2, 0.5, 0.85))
    rng = np.random.default_rng(5)
    dab = rng.choice([0.05, 0.3, 0.5, 0.8], 200)
    hema = rng.uniform(0.05, 0.8, 200)   # some nuclei nearly pure DAB, some nearly pure H
    image, labels = grid_image(dab, hematoxylin=hema, stains=stains, cols=20)
    truth = intensity_classes(dab, (0.2, 0.4, 0.6))
    estimated = score_image(image, labels, config=ScoringConfig(stain="er", stain_vectors="estimate"))
    reference = score_image(image, labels, stain="er")
    assert np.abs(estimated.cells["dab_od_mean"] - dab).mean() < 0.03
    assert np.abs(reference.cells["dab_od_mean"] - dab).mean() > 0.1
    assert np.array_equal(estimated.cells["intensity_class"], truth)
    assert np.mean(reference.cells["intensity_class"] == truth) < 0.8
    assert estimated.summary["stain_vectors"]["name"] == "H-DAB (estimated)"
    rescored = estimated.rescore(thresholds=(0.1, 0.2, 0.3))
    assert rescored.summary["stain_vectors"]["name"] == "H-DAB (estimated)"


# ----------------------------------------------------------------- config

def test_presets_and_aliases():
    assert set(PRESETS) == {"er", "pr", "ki67"}
    assert get_preset("Ki-67").name == "ki67" == ScoringConfig(stain="KI67").stain
    for preset in PRESETS.values():
        t = preset.thresholds
        assert 0 < t[0] < t[1] < t[2]
    with pytest.raises(ValueError, match="er, pr, ki67"):
        get_preset("her2")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"thresholds": (0.4, 0.2, 0.6)}, "increasing"),
    ({"thresholds": (0.2, 0.4)}, "three"),
    ({"stain_vectors": "guess"}, "estimate"),
    ({"min_area_um2": 10}, "pixel_size_um"),
    ({"min_area_px": 50, "max_area_px": 10}, "larger"),
    ({"pixel_size_um": 0}, "positive"),
])
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScoringConfig(**kwargs)


def test_changing_the_stain_takes_its_thresholds():
    cfg = ScoringConfig(stain="er", thresholds=(0.1, 0.2, 0.3))
    assert cfg.replace(stain="ki67").thresholds == PRESETS["ki67"].thresholds


def test_changing_the_stain_drops_a_classifier_of_the_old_stain():
    """A checkpoint's classifier is calibrated for one stain: ER is not scored with Ki-67's."""
    from napari_ihcseg.scoring.classifier import LogisticModel, NucleusClassifier

    ki67 = NucleusClassifier(LogisticModel(("dab_od_mean",), (0.1,), (0.01,), (1.0,), 0.0))  # positive from 0.1
    cfg = ScoringConfig(stain="ki67", classifier=ki67)
    assert cfg.replace(stain="er").classifier is None
    assert cfg.replace(stain="Ki-67").classifier is ki67  # the same stain keeps it
    assert cfg.replace(stain="er", classifier=ki67).classifier is ki67  # asked for explicitly
    assert cfg.replace(pixel_size_um=0.5).classifier is ki67

    image, labels = grid_image([0.5, 0.15, 0.12, 0.02])
    assert score_image(image, labels, config=cfg).summary["n_positive"] == 3  # the classifier's 0.1
    er = score_image(image, labels, config=cfg, stain="er")
    assert er.config.classifier is None
    assert er.summary == score_image(image, labels, stain="er").summary
    assert er.summary["n_positive"] == 1  # ER's 0.2 cut
    assert score_image(image, labels, config=cfg).rescore(stain="er").summary == er.summary


# ------------------------------------------------------- regions and areas

def test_area_limits_in_pixels_and_square_micrometres():
    image, labels = grid_image([0.5, 0.5, 0.05])
    labels[labels == 1] = 0
    labels[GAP:GAP + 2, GAP:GAP + 2] = 1         # nucleus 1 now 4 px
    s = score_image(image, labels, config=ScoringConfig(stain="er", min_area_px=10)).summary
    assert (s["n_nuclei"], s["n_positive"]) == (2, 1)
    cfg = ScoringConfig(stain="er", pixel_size_um=0.5, min_area_um2=2.0)  # 2 µm² = 8 px
    result = score_image(image, labels, config=cfg)
    assert result.cells["included"].tolist() == [False, True, True]
    assert result.cells["area_um2"].tolist() == [1.0, 9.0, 9.0]
    assert result.summary["n_nuclei"] == 2


def test_region_from_napari_shapes_keeps_nuclei_whose_centroid_is_inside():
    image, labels = grid_image([0.5, 0.5, 0.05, 0.05], cols=4)
    # centroids at row 6.5, columns 6.5, 16.5, 26.5, 36.5; keep the first three
    square = np.array([[0, 0], [0, 30], [15, 30], [15, 0]], float)
    result = score_image(image, labels, stain="er", roi=[square])
    assert result.cells["in_roi"].tolist() == [True, True, True, False]
    assert (result.summary["n_nuclei"], result.summary["n_positive"]) == (3, 2)


def test_region_from_napari_ellipse_and_3d_vertices():
    region = region_from_shapes([np.array([[0, 0, 0], [0, 0, 20], [0, 10, 20], [0, 10, 0]], float)],
                                shape_types=["ellipse"])
    assert region.contains([5, 5, 0.5], [10, 1, 0.5]).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="encloses no area"):
        region_from_shapes([np.array([[0, 0], [5, 5]])], shape_types=["line"])


def test_geojson_region_with_multipolygon_and_hole(tmp_path):
    # GeoJSON/QuPath coordinates are pixel corners: pixel (r, c) is centred at (c + .5, r + .5).
    outer = [[0, 0], [20, 0], [20, 20], [0, 20], [0, 0]]
    hole = [[5, 5], [15, 5], [15, 15], [5, 15], [5, 5]]
    far = [[40, 40], [50, 40], [50, 50], [40, 50], [40, 40]]
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [[outer, hole], [far]]},
         "properties": {"objectType": "annotation"}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 1]}, "properties": {}},
    ]}
    path = tmp_path / "roi.geojson"
    path.write_text(json.dumps(gj))
    region = region_from_geojson(path)
    assert isinstance(region, Region) and len(region.polygons) == 2
    y = np.array([2.0, 10.0, 45.0, 19.0, 20.0, 30.0])
    x = np.array([2.0, 10.0, 45.0, 19.0, 19.0, 30.0])
    #             inside, in hole, 2nd part, last pixel inside, first pixel outside, between
    assert region.contains(y, x).tolist() == [True, False, True, True, False, False]
    mask = region.to_mask((25, 25))
    assert mask.sum() == 20 * 20 - 10 * 10


def test_qupath_plain_feature_list_is_read(tmp_path):
    features = [{"type": "Feature", "geometry": {"type": "Polygon",
                                                  "coordinates": [[[0, 0], [8, 0], [8, 8], [0, 8]]]},
                 "properties": {"objectType": "annotation"}}]
    path = tmp_path / "tumour.json"
    path.write_text(json.dumps(features))
    assert region_from_geojson(path).to_mask((10, 10)).sum() == 64


@pytest.mark.parametrize(("text", "match"), [
    ("{not json", "not valid GeoJSON"),
    (json.dumps({"type": "Point", "coordinates": [0, 0]}), "no Polygon"),
    (json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]}), "3 distinct"),
])
def test_bad_geojson_regions_name_the_file(tmp_path, text, match):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        region_from_geojson(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------ real Ki-67 data

def test_ki67_preset_reproduces_deepliif_counts(shared_data):
    """On the true nucleus masks of the DeepLIIF sample (a set the cut was not chosen on) the index is close.

    Its truth comes from co-registered immunofluorescence, not from the IHC,
    so no cut fits both images; the mean error over the two is what counts.
    """
    from scipy import ndimage
    from skimage import io

    folder = shared_data / "deepliif-ki67-sample"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    errors = []
    for name in ("Bladder1", "Lung1"):
        meta = json.loads((folder / f"{name}.json").read_text())
        rgb = io.imread(folder / f"{name}.png")[..., :3]
        seg = rgb[:, 5 * 512:] > 128
        pos, n_pos = ndimage.label(seg[..., 0] & ~seg[..., 1] & ~seg[..., 2])
        neg, _ = ndimage.label(seg[..., 2] & ~seg[..., 0] & ~seg[..., 1])
        labels = np.where(pos > 0, pos, np.where(neg > 0, neg + n_pos, 0))
        cfg = ScoringConfig(stain="ki67", min_area_px=meta["size_thresh"])
        result = score_image(np.ascontiguousarray(rgb[:, :512]), labels, config=cfg)
        assert result.summary["n_nuclei"] == meta["num_total"]
        included = result.cells[result.cells["included"]]
        truth = included["label"].to_numpy() <= n_pos
        assert np.mean(included["positive"].to_numpy().astype(bool) == truth) >= 0.9
        errors.append(abs(result.summary["ki67_index"] - meta["percent_pos"]))
    assert max(errors) <= 5.0 and np.mean(errors) <= 3.0, errors


def test_ki67_preset_counts_the_outlined_glioma_nuclei_close_to_the_pathologists(shared_data):
    """On the outlined nuclei of the five glioma frames, the preset's index is within a few points.

    Their dark hematoxylin reads as some DAB: a cut chosen on the breast
    fields alone (0.05) calls most of these nuclei positive, which this
    catches.
    """
    from napari_ihcseg.datasets.ki67_sets import load_glioma_polygons

    folder = shared_data / "ki67-glioma-polygons"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    errors = []
    for sample in load_glioma_polygons(folder, cases="all", scale=1.0):
        truth = 100.0 * np.mean([c == 1 for c in sample.classes.values()])
        result = score_image(sample.image, sample.labels, stain="ki67")
        assert result.summary["n_nuclei"] == len(sample.classes)
        errors.append(abs(result.summary["ki67_index"] - truth))
    assert len(errors) == 5 and max(errors) <= 4.0 and np.mean(errors) <= 3.0, errors


def test_geojson_positions_with_an_altitude_are_read_as_x_y(tmp_path):
    """RFC 7946 allows ``[x, y, z]``: the third value is not a coordinate of the plane."""
    square = [[0, 0, 5], [40, 0, 5], [40, 20, 5], [0, 20, 5], [0, 0, 5]]
    path = tmp_path / "roi3d.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [square]}))
    region = region_from_geojson(path)
    assert region.contains(np.array([10.0, 10.0]), np.array([30.0, 45.0])).tolist() == [True, False]


def test_rescore_with_a_pixel_size_gives_areas_in_square_micrometres():
    conc = np.zeros((20, 20, 3), np.float32)
    conc[2:11, 2:11, 1] = 0.5
    labels = np.zeros((20, 20), np.int32)
    labels[2:11, 2:11] = 1
    result = score_image(compose(conc), labels, stain="er")
    assert np.isnan(result.cells["area_um2"][0])
    assert result.rescore(pixel_size_um=0.5).cells["area_um2"][0] == pytest.approx(81 * 0.25)
    assert np.isnan(result.rescore(pixel_size_um=0.5).rescore(pixel_size_um=None).cells["area_um2"][0])


def test_ki67_hot_spot_counts_classes_set_by_hand():
    """Count mode: a pathologist calls every DAB-negative nucleus positive; the hot spot counts them so too."""
    from napari_ihcseg.scoring import LiveScore

    conc = np.zeros((96, 96, 3), np.float32)
    conc[..., 0] = 0.3
    labels = np.zeros((96, 96), np.int32)
    for k, (i, j) in enumerate(np.ndindex(12, 12), start=1):
        labels[i * 8 + 2:i * 8 + 6, j * 8 + 2:j * 8 + 6] = k
    live = LiveScore(compose(conc), labels, ScoringConfig(stain="ki67", hotspot_cells=50, min_cells=10))
    assert live.result()[1]["hotspot_ki67_index"] == 0.0
    live.set_overrides({k: "positive" for k in range(1, 145)})
    summary = live.result()[1]
    assert summary["ki67_index"] == 100.0
    assert summary["hotspot_ki67_index"] == 100.0 and summary["hotspot_n_cells"] == 50


def test_labels_beyond_the_int64_range_are_refused_by_name():
    labels = np.zeros((8, 8), np.uint64)
    labels[2:4, 2:4] = 2**63 + 1
    with pytest.raises(ValueError, match="above 9223372036854775807"):
        score_image(np.full((8, 8, 3), 200, np.uint8), labels)


@pytest.mark.parametrize("value", [250.0, 1e9, 0.001])
def test_a_pixel_size_no_microscope_has_is_refused_by_every_config(value):
    """Nanometres typed as micrometres would make areas, the hot-spot circle and the scale wrong by 1000x."""
    from napari_ihcseg.pipeline import PipelineOptions

    with pytest.raises(ValueError, match=r"pixel_size_um: .* µm is not a microscope pixel size"):
        ScoringConfig(pixel_size_um=value)
    with pytest.raises(ValueError, match=r"pixel size: .* µm is not a microscope pixel size"):
        PipelineOptions(pixel_size_um=value)
    assert ScoringConfig(pixel_size_um=0.25).pixel_size_um == 0.25
