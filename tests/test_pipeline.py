"""The headless pipeline: one file in, consistent labels, tables, overlay and summary out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_ihcseg import pipeline
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.data.synthetic_slide import make_synthetic_slide
from napari_ihcseg.inference import InferenceConfig
from napari_ihcseg.io import ImageReadError, read_labels
from napari_ihcseg.metrics import aggregated_jaccard_index
from napari_ihcseg.io import image_stem
from napari_ihcseg.pipeline import PipelineOptions, output_paths, outputs_complete, process_image
from napari_ihcseg.scoring import ScoringConfig, read_cells_csv, read_geojson

from fakes import ODNet


@pytest.fixture(scope="module")
def field_png(tmp_path_factory):
    sample = make_synthetic_ihc((256, 320), seed=3, density=0.3, positive_fraction=0.5)
    path = tmp_path_factory.mktemp("in") / "field.png"
    Image.fromarray(sample.image).save(path)
    return path, sample


def test_image_stem_drops_multi_part_suffixes():
    assert image_stem("a/b/slide.ome.tiff") == "slide"
    assert image_stem("x.svs") == "x"
    assert image_stem("case.1.svs") == "case.1"  # the dots of a name are kept, as the widgets suggest


def test_scored_outputs_are_consistent(field_png, tmp_path):
    path, sample = field_png
    opts = PipelineOptions(inference=InferenceConfig(tile=128, overlap=32), scoring=ScoringConfig(stain="er"),
                           overlay=True, save_probabilities=True)
    summary = process_image(path, tmp_path, opts, model=ODNet(stains=(0, 1)), model_name="odnet")
    paths = output_paths(tmp_path, "field")

    labels = read_labels(paths["labels"])
    assert labels.shape == sample.image.shape[:2]
    assert tifffile.TiffFile(paths["labels"]).pages[0].dtype == np.uint32
    n = len(np.unique(labels[labels > 0]))
    assert n > 10
    assert summary["n_nuclei"] == summary["n_nuclei_segmented"] == n

    cells = read_cells_csv(paths["cells"])
    assert len(cells) == n
    assert set(cells["label"]) == set(np.unique(labels[labels > 0]))
    assert summary["n_positive"] == int(cells["positive"].sum())
    assert 0 <= summary["h_score"] <= 300

    detections = read_geojson(paths["geojson"])
    assert len(detections) == n

    on_disk = json.loads(paths["summary"].read_text())
    assert on_disk["n_nuclei"] == n and on_disk["model"]["name"] == "odnet" and on_disk["device"].startswith("cpu")
    assert on_disk["seconds"] > 0
    for key in ("overlay", "mask_prob", "contour_prob"):
        assert paths[key].is_file()
    prob = tifffile.imread(paths["mask_prob"])
    assert prob.shape == labels.shape and 0 <= prob.min() and prob.max() <= 1
    assert outputs_complete(tmp_path, "field", opts)
    # The scores' own warnings (here: too few cells for a tight interval) are kept in the summary on disk.
    assert any("cells counted (at least 500 advised)" in w for w in on_disk["warnings"]), on_disk["warnings"]
    assert on_disk["enough_cells"] is False


def test_without_stain_cells_still_list_every_nucleus(field_png, tmp_path):
    path, _ = field_png
    summary = process_image(path, tmp_path, PipelineOptions(inference=InferenceConfig(tile=128, overlap=32)),
                            model=ODNet(stains=(0, 1)))
    cells = pd.read_csv(tmp_path / "field.cells.csv")
    assert list(cells.columns) == ["label", "centroid_y", "centroid_x", "area_px"]
    assert len(cells) == summary["n_nuclei"]
    assert not (tmp_path / "field.nuclei.geojson").exists()
    assert "positive_percent" not in summary


def test_completion_needs_summary_and_every_listed_output(field_png, tmp_path):
    path, _ = field_png
    opts = PipelineOptions(inference=InferenceConfig(tile=128, overlap=32))
    process_image(path, tmp_path, opts, model=ODNet(stains=(0, 1)))
    assert outputs_complete(tmp_path, "field", opts)
    # A run asking for more outputs is not satisfied by this one.
    assert not outputs_complete(tmp_path, "field", PipelineOptions(overlay=True))
    assert not outputs_complete(tmp_path, "field", PipelineOptions(scoring=ScoringConfig(stain="ki67")))
    (tmp_path / "field.cells.csv").unlink()
    assert not outputs_complete(tmp_path, "field", opts)
    assert not outputs_complete(tmp_path, "missing", opts)


def test_unreadable_file_names_it(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageReadError, match="broken.png"):
        process_image(bad, tmp_path / "out", PipelineOptions(), model=ODNet())
    assert not (tmp_path / "out" / "broken.summary.json").exists()


def test_whole_slide_path_matches_in_memory_path(tmp_path, monkeypatch):
    slide = make_synthetic_slide(tmp_path / "slide.tif", (1024, 1024), tile=256, seed=5,
                                 tissue_fraction=0.6, compression="zlib")
    model = ODNet(stains=(0, 1))
    opts = PipelineOptions(inference=InferenceConfig(tile=128, overlap=32), scoring=ScoringConfig(stain="ki67"),
                           block=512, overlay=True)
    small = process_image(slide, tmp_path / "field", opts, model=model)
    monkeypatch.setattr(pipeline, "LARGE_IMAGE_PIXELS", 256 * 256)
    large = process_image(slide, tmp_path / "large", opts, model=model)
    assert large["large"] and not small["large"]

    a = read_labels(tmp_path / "field" / "slide.labels.tif")
    b = read_labels(tmp_path / "large" / "slide.labels.tif")
    assert a.shape == b.shape == (1024, 1024)
    assert large["n_nuclei_segmented"] == len(np.unique(b[b > 0]))
    assert aggregated_jaccard_index(b, a) >= 0.99
    assert abs(large["n_nuclei"] - small["n_nuclei"]) <= max(2, 0.01 * small["n_nuclei"])
    assert abs(large["positive_percent"] - small["positive_percent"]) < 1.0
    # The stain pattern is pooled over the blocks; the hot spot comes from the pooled cell table.
    assert large["stain_pattern"] == small["stain_pattern"] == "nuclear"
    assert large["dab_nuclear_share"] == pytest.approx(small["dab_nuclear_share"], abs=0.02)
    assert large["hotspot_ki67_index"] == pytest.approx(small["hotspot_ki67_index"], abs=5)
    cells = read_cells_csv(tmp_path / "large" / "slide.cells.csv")
    assert len(cells) == large["n_nuclei_segmented"]
    assert cells["label"].is_unique
    assert len(read_geojson(tmp_path / "large" / "slide.nuclei.geojson")) == large["n_nuclei"]
    assert outputs_complete(tmp_path / "large", "slide", opts)
    # No temporary debris left beside the outputs.
    assert sorted(p.name for p in (tmp_path / "large").iterdir()) == sorted(large["outputs"].values()) + [
        "slide.summary.json"]


def test_a_region_that_misses_the_slide_is_said_to_on_both_paths(tmp_path, monkeypatch):
    """A tumour outline drawn on another slide (or in another frame): the summary warns, as for a field."""
    slide = make_synthetic_slide(tmp_path / "slide.tif", (512, 512), tile=256, seed=5, compression="zlib")
    ring = [[2000, 2000], [2100, 2000], [2100, 2100], [2000, 2100], [2000, 2000]]
    roi = tmp_path / "elsewhere.geojson"
    roi.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    opts = PipelineOptions(inference=InferenceConfig(tile=128, overlap=32), scoring=ScoringConfig(stain="ki67"),
                           block=256, roi=str(roi))
    field = process_image(slide, tmp_path / "field", opts, model=ODNet(stains=(0, 1)))
    monkeypatch.setattr(pipeline, "LARGE_IMAGE_PIXELS", 128 * 128)
    large = process_image(slide, tmp_path / "large", opts, model=ODNet(stains=(0, 1)))
    assert large["large"] and not field["large"]
    for summary in (field, large):
        assert summary["n_nuclei"] == 0 and summary["n_nuclei_segmented"] > 0
        assert any("the region (ROI) covers no pixel of the 512x512" in w for w in summary["warnings"])


def test_changed_options_or_model_make_outputs_stale(field_png, tmp_path):
    path, _ = field_png
    opts = PipelineOptions(model="odnet", inference=InferenceConfig(tile=128, overlap=32))
    process_image(path, tmp_path, opts, model=ODNet(stains=(0, 1)), model_name="odnet")
    assert outputs_complete(tmp_path, "field", opts)
    assert not outputs_complete(tmp_path, "field", opts.replace(inference=opts.inference.replace(min_size=40)))
    assert not outputs_complete(tmp_path, "field", opts.replace(model="other"))


def test_a_region_redrawn_in_place_makes_the_scores_stale(field_png, tmp_path):
    path, _ = field_png

    def region(x1):
        ring = [[0, 0], [x1, 0], [x1, 200], [0, 200], [0, 0]]
        return json.dumps({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}})

    roi = tmp_path / "tumour.geojson"
    roi.write_text(region(300))
    opts = PipelineOptions(model="odnet", inference=InferenceConfig(tile=128, overlap=32),
                           scoring=ScoringConfig(stain="ki67"), roi=str(roi))
    out = tmp_path / "out"
    before = process_image(path, out, opts, model=ODNet(stains=(0, 1)), model_name="odnet")
    assert outputs_complete(out, "field", opts)
    roi.write_text(region(300))  # written again, the same region: still current
    assert outputs_complete(out, "field", opts)
    roi.write_text(region(60))  # redrawn under the same name
    assert not outputs_complete(out, "field", opts)
    after = process_image(path, out, opts, model=ODNet(stains=(0, 1)), model_name="odnet")
    assert after["n_nuclei"] < before["n_nuclei"] and outputs_complete(out, "field", opts)
    roi.unlink()
    assert not outputs_complete(out, "field", opts)


def test_options_compose_the_configs_and_check_each_option_once():
    opts = PipelineOptions(inference=InferenceConfig(tile=256, tta=True), scoring=ScoringConfig(stain="er"))
    assert opts.stain == "er" and opts.inference.tta and PipelineOptions().stain is None
    assert opts.expected_outputs() == ["labels", "cells", "geojson", "summary"]
    # The configs check their own fields; the options only what they add.
    with pytest.raises(ValueError, match="overlap"):
        PipelineOptions(inference=InferenceConfig(tile=64, overlap=64))
    with pytest.raises(TypeError, match="InferenceConfig"):
        PipelineOptions(inference={"tile": 256})
    with pytest.raises(TypeError, match="ScoringConfig"):
        PipelineOptions(scoring="ki67")
    with pytest.raises(ValueError, match="auto_scale"):
        PipelineOptions(inference=InferenceConfig(scale=2.0))
    assert PipelineOptions(inference=InferenceConfig(scale=2.0), auto_scale=False).inference.scale == 2.0
    with pytest.raises(ValueError, match="PipelineOptions.pixel_size_um"):
        PipelineOptions(scoring=ScoringConfig(pixel_size_um=0.5))
    with pytest.raises(ValueError, match="pixel size"):
        PipelineOptions(pixel_size_um=-1.0)
    with pytest.raises(TypeError, match="overlay"):
        PipelineOptions(overlay="yes")
    # Each image gets its own pixel size in the scoring config; the resolved scale leaves auto.
    scoring = opts.scoring_for(0.25)
    assert scoring.pixel_size_um == 0.25 and scoring.thresholds == ScoringConfig(stain="er").thresholds
    assert PipelineOptions().at_scale(2.0).inference.scale == 2.0 and not PipelineOptions().at_scale(2.0).auto_scale


#: The options as summaries recorded them before the configs were composed (flat, without the model).
FLAT_RECORD = {"device": "auto", "tile": 128, "overlap": 32, "mask_threshold": None, "contour_threshold": None,
               "min_size": None, "stain": "ki67", "thresholds": None, "roi": None, "pixel_size_um": None,
               "estimate_stains": False, "save_probabilities": False, "overlay": False, "block": 4096,
               "scale": "auto", "tta": False, "min_cells": 500, "ki67_cutoff": None,
               "hotspot_diameter_um": 500.0, "hotspot_cells": 500}


@pytest.mark.parametrize(("old", "same", "other"), [
    ({}, {}, {"tta": True}),
    ({"thresholds": [0.1, 0.3, 0.5]}, {"thresholds": (0.1, 0.3, 0.5), "model_classifier": False},
     {"thresholds": (0.1, 0.3, 0.5)}),
    ({"estimate_stains": True, "ki67_cutoff": 20.0}, {"stain_vectors": "estimate", "ki67_cutoff": 20.0},
     {"ki67_cutoff": 20.0}),
    ({"scale": 2.0, "min_size": 30}, {"scale": 2.0, "auto_scale": False, "min_size": 30},
     {"min_size": 30}),
])
def test_summaries_with_the_flat_option_record_are_still_recognised(field_png, tmp_path, old, same, other):
    """Outputs written before the configs were composed stay finished for the same options, and stale for others."""
    def options(changes):
        inference = {k: v for k, v in changes.items() if k in ("tta", "scale", "min_size")}
        scoring = {k: v for k, v in changes.items() if k in ("thresholds", "stain_vectors", "ki67_cutoff")}
        return PipelineOptions(inference=InferenceConfig(tile=128, overlap=32, **inference),
                               scoring=ScoringConfig(stain="ki67", **scoring),
                               auto_scale=changes.get("auto_scale", True),
                               model_classifier=changes.get("model_classifier", True))

    path, _ = field_png
    process_image(path, tmp_path, options(same), model=ODNet(stains=(0, 1)), model_name="odnet")
    summary_path = output_paths(tmp_path, "field")["summary"]
    summary = json.loads(summary_path.read_text())
    assert summary["options"]["inference"]["tile"] == 128 and summary["options"]["scoring"]["stain"] == "ki67"
    summary["options"] = {**FLAT_RECORD, **old}
    summary_path.write_text(json.dumps(summary))
    assert outputs_complete(tmp_path, "field", options(same))
    assert not outputs_complete(tmp_path, "field", options(other))
    summary["options"] = {**FLAT_RECORD, "tile": "big"}  # an unreadable record is re-run, not trusted
    summary_path.write_text(json.dumps(summary))
    assert not outputs_complete(tmp_path, "field", options(same))
