"""The Ki-67 held-out benchmark's matching and summary (benchmarks/evaluate_ki67.py)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(benchmark):
    return benchmark("evaluate_ki67")


def test_counts_match_within_half_a_nucleus_and_only_inside_the_region(bench):
    region = np.zeros((100, 100), bool)
    region[:, :60] = True
    truth = np.array([[10.0, 10.0], [30.0, 30.0], [50.0, 50.0], [70.0, 20.0]])
    case = {"set": "immunoratio", "points": truth, "positive": np.array([True, True, False, False]),
            "region": region}
    cells = np.array([[11.0, 12.0, 1, 1],      # matches the positive at (10, 10), called positive
                      [30.0, 37.0, 1, 1],      # 7 px from (30, 30): beyond 6.5, so unmatched
                      [52.0, 49.0, 1, 1],      # matches the negative at (50, 50), called positive
                      [20.0, 90.0, 1, 1],      # outside the region: not counted at all
                      [70.0, 20.0, 0, 0]])     # on the point at (70, 20) but left out by the score
    c = bench.case_counts(cells, case)
    assert (c["tp"], c["fp"], c["fn"]) == (2, 1, 2)
    assert (c["found_pos"], c["found_neg"], c["agree"]) == (1, 1, 1)
    assert c["pred_index"] == pytest.approx(100.0) and c["truth_index"] == pytest.approx(50.0)
    s = bench.summarise([c, c])
    assert s["f1"] == pytest.approx(4 / 7) and s["precision"] == pytest.approx(2 / 3)
    assert s["recall_positive"] == pytest.approx(0.5) and s["recall_negative"] == pytest.approx(0.5)
    assert s["class_agreement"] == pytest.approx(0.5) and s["abs_delta_index"] == pytest.approx(50.0)


def test_the_glioma_radius_is_at_the_frames_own_scale(bench):
    case = {"set": "glioma", "points": np.array([[100.0, 100.0]]), "positive": np.array([False]), "region": None}
    assert bench.case_counts(np.array([[100.0, 130.0, 0, 1]]), case)["tp"] == 1, "34 px: half a 68-px nucleus"
    assert bench.case_counts(np.array([[100.0, 140.0, 0, 1]]), case)["tp"] == 0


def test_a_wider_radius_matches_points_placed_off_the_nucleus_centre(bench):
    case = {"set": "immunoratio", "points": np.array([[30.0, 30.0]]), "positive": np.array([True]), "region": None}
    cells = np.array([[30.0, 39.0, 1, 1]])   # 9 px off: beyond half a 13-px nucleus, within three quarters
    assert bench.case_counts(cells, case)["tp"] == 0
    assert bench.case_counts(cells, case, radius=0.75)["tp"] == 1


def test_the_cache_key_changes_with_the_classifier_the_instance_settings_and_the_preset(bench, tmp_path,
                                                                                        monkeypatch):
    import dataclasses
    import json

    from napari_ihcseg.scoring import presets

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"weights")
    (folder / "config.json").write_text(json.dumps({"arch": "r2unet-lite"}))
    plain = bench._weights_key(str(folder))
    (folder / "config.json").write_text(json.dumps({"classifiers": {"ki67": {"cut": 0.2}}}))
    first = bench._weights_key(str(folder))
    (folder / "config.json").write_text(json.dumps({"classifiers": {"ki67": {"cut": 0.15}}}))
    second = bench._weights_key(str(folder))
    (folder / "config.json").write_text(json.dumps({"classifiers": {"ki67": {"cut": 0.15}},
                                                    "instances": {"mask_threshold": 0.6}}))
    tuned = bench._weights_key(str(folder))
    t1, t2, t3 = presets.PRESETS["ki67"].thresholds
    monkeypatch.setitem(presets.PRESETS, "ki67", dataclasses.replace(presets.PRESETS["ki67"],
                                                                     thresholds=(t1 + 0.05, t2, t3)))
    assert len({plain, first, second, tuned, bench._weights_key(str(folder))}) == 5, \
        "cells cached with one classifier, instance setting or preset cut must not be reused with another"


def test_cached_cells_are_reused_and_caches_without_every_column_are_not(bench, tmp_path):
    import json

    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "weights.safetensors").write_bytes(b"not a real checkpoint")
    (folder / "config.json").write_text(json.dumps({"arch": "r2unet-lite"}))
    case = {"set": "immunoratio", "name": "immunoratio/1", "image": np.zeros((8, 8, 3), np.uint8)}
    cache = tmp_path / "cache"
    cache.mkdir()
    path = cache / f"{bench._weights_key(str(folder))}-immunoratio_1-x2-t256.npy"
    cells = np.array([[1.0, 2.0, 1.0, 0.0, 0.31]])
    np.save(path, cells)
    np.testing.assert_array_equal(bench.predict_cells(str(folder), [case], tile=256, cache=cache)[0], cells)
    np.save(path, cells[:, :4])             # an older cache, without the DAB OD: the model must run again
    with pytest.raises(ValueError, match="config.json"):   # it tries to load the (unreadable) checkpoint
        bench.predict_cells(str(folder), [case], tile=256, cache=cache)


def test_cells_are_scored_with_the_checkpoints_own_classifier_as_the_pipeline_does(bench, monkeypatch):
    import pandas as pd

    import napari_ihcseg.inference as inference
    import napari_ihcseg.models as models
    import napari_ihcseg.scoring as scoring
    from napari_ihcseg.scoring.classifier import LogisticModel, NucleusClassifier

    classifier = NucleusClassifier(LogisticModel(("dab_od_mean",), (0.0,), (1.0,), (1.0,), 0.0))

    class Info:
        def classifier(self, stain):
            return classifier if stain == "ki67" else None

    class Model:
        checkpoint_info = Info()

    class Segmentation:
        labels = np.zeros((8, 8), np.int32)

    seen = []

    def fake_score(image, labels, config):
        seen.append(config.classifier)
        cells = pd.DataFrame({"centroid_y": [1.0], "centroid_x": [2.0], "positive": [1], "included": [True],
                              "dab_od_mean": [0.25]})
        return type("Scores", (), {"cells": cells})()

    monkeypatch.setattr(bench, "_weights_key", lambda spec: "key")
    monkeypatch.setattr(models, "load_model", lambda spec, device: Model())
    monkeypatch.setattr(inference, "segment_image", lambda image, model, config: Segmentation())
    monkeypatch.setattr(scoring, "score_image", fake_score)
    case = {"set": "immunoratio", "name": "immunoratio/1", "image": np.zeros((8, 8, 3), np.uint8)}
    cells = bench.predict_cells("ckpt", [case], tile=256, cache=None)[0]
    assert seen == [classifier], "the checkpoint's calibrated classifier scores the cells"
    np.testing.assert_array_equal(cells, [[1.0, 2.0, 1.0, 1.0, 0.25]])


def test_training_cases_are_the_breast_fields_and_glioma_frames_not_held_out(bench, shared_data):
    from napari_ihcseg.datasets.ki67_split import is_held_out

    if not (shared_data / "ki67-immunoratio").is_dir() or not (shared_data / "ki67-glioma-polygons").is_dir():
        pytest.skip("the Ki-67 sets are not in the shared data")
    train = bench.ki67_cases(shared_data, ("immunoratio", "glioma"), cases="train")
    held = bench.ki67_cases(shared_data, cases="held-out")
    assert [c["set"] for c in train].count("immunoratio") == 20 and [c["set"] for c in train].count("glioma") == 4
    assert bench.ki67_cases(shared_data, ("ki67-points",), cases="train") == [], "both fields are held out"
    assert sorted({c["set"] for c in held}) == ["glioma", "immunoratio", "ki67-points"] and len(held) == 9
    assert not any(is_held_out(c["set"], c["name"].split("/", 1)[1]) for c in train)
    assert all(is_held_out(c["set"], c["name"].split("/", 1)[1]) for c in held)
