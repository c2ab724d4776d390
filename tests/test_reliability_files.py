"""Hostile or mistaken files, and inputs that would silently give a wrong answer.

Spreadsheet formulas in file names, ``dataset.json`` paths out of the dataset, invalid
GeoJSON rings, float/multi-series/transparent images, binary masks and negative label ids.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_ihcseg.batch.report import SlideResult, write_cohort
from napari_ihcseg.cli import main
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.inference import InferenceConfig
from napari_ihcseg.io import ImageReadError, read_image, read_labels

from geometry import invalid_reason

HOSTILE = ['=HYPERLINK("http://example.com/x")+cmd', "+1+1", "@SUM(1+1)", "-2+3", "\tx", "\rx"]
#: What a spreadsheet reads as the start of a formula (OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@pytest.fixture
def image_warning():
    """:class:`napari_ihcseg.io.ImageWarning`, imported per test, so that each test fails on its own without it."""
    from napari_ihcseg.io import ImageWarning

    return ImageWarning


def _dangerous(cell: str) -> bool:
    """Would a spreadsheet run this cell as a formula? (numbers, also negative ones, are data)"""
    if not cell.startswith(FORMULA_START):
        return False
    try:
        float(cell)
    except ValueError:
        return True
    return False


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


# 6 -------------------------------------------------------------- formula injection

@pytest.mark.parametrize("value, expected", [
    *[(v, "'" + v) for v in HOSTILE],
    ("case 1", "case 1"), ("", ""), (-3.5, -3.5), (7, 7), ("-3.5", "-3.5"), ("+2e3", "+2e3"), (None, None),
])
def test_formula_cells_are_neutralised_and_numbers_stay_numbers(value, expected):
    from napari_ihcseg._csv import safe_cell

    assert safe_cell(value) == expected


def test_cohort_report_with_hostile_stems_is_safe_in_a_spreadsheet(tmp_path):
    results = [SlideResult(Path(f"/slides/{stem}.svs"), stem, "ok", seconds=-0.5,
                           summary={"positive_percent": 12.5, "model": {"name": "@model"}, "n_nuclei": 3})
               for stem in HOSTILE]
    path = write_cohort(tmp_path / "cohort.csv", results)
    cells = _cells(path)
    assert not [c for c in cells if _dangerous(c)]
    table = pd.read_csv(path)
    assert table["stem"].tolist() == ["'" + s.replace("\r", "\n") for s in HOSTILE]
    assert table["positive_percent"].dtype.kind == "f" and table["seconds"].tolist() == [-0.5] * len(HOSTILE)


def test_evaluation_csv_with_hostile_file_names_is_safe(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    labels = np.zeros((32, 32), np.uint32)
    labels[4:12, 4:12] = 1
    labels[16:28, 10:20] = 2
    for name in ('=HYPERLINK("x")+cmd', "+1+1", "@SUM(1+1)"):
        tifffile.imwrite(pred / f"{name}.labels.tif", labels)
        tifffile.imwrite(truth / f"{name}.tif", labels)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 0
    cells = _cells(pred / "evaluation.csv")
    assert not [c for c in cells if _dangerous(c)]
    assert any(c == "'+1+1" for c in cells) and any(c.startswith("'=HYPERLINK") for c in cells)


def test_a_table_keeps_its_numbers_and_neutralises_its_text(tmp_path):
    from napari_ihcseg._csv import csv_text, write_table_csv

    table = pd.DataFrame({"label": [1, 2], "x": [-1.25, 3.0], "note": ["=1+1", "fine"]})
    read = pd.read_csv(write_table_csv(tmp_path / "t.csv", table))
    assert read["label"].tolist() == [1, 2] and read["x"].tolist() == [-1.25, 3.0]
    assert read["note"].tolist() == ["'=1+1", "fine"]
    assert csv_text(["a", "=b"], [[-1, "@c"]]) == "a,'=b\n-1,'@c\n"


def test_every_csv_export_goes_through_the_one_writer():
    """No module writes CSV but :mod:`napari_ihcseg._csv`, so the rule holds for every export."""
    import napari_ihcseg

    package = Path(napari_ihcseg.__file__).parent
    writers = re.compile(r"\.to_csv\(|csv\.writer\(|csv\.DictWriter\(")
    offenders = [str(p.relative_to(package)) for p in package.rglob("*.py")
                 if p.name != "_csv.py" and writers.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


# 8 ------------------------------------------------------------- dataset.json paths

def _pairs(root: Path, meta: dict) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    sample = make_synthetic_ihc((64, 64), seed=0)
    Image.fromarray(sample.image).save(root / "images" / "a.png")
    tifffile.imwrite(root / "masks" / "a.tif", sample.labels.astype(np.uint32))
    (root / "dataset.json").write_text(json.dumps({"format": "napari-ihcseg-pairs", **meta}))
    return root


@pytest.mark.parametrize("meta", [
    {"images_dir": "../outside"},
    {"masks_dir": "/etc"},
    {"pairs": [{"id": "a", "image": "../outside/a.png"}]},
    {"pairs": [{"id": "a", "mask": "/tmp/a.tif"}]},
    {"pairs": [{"id": "../../outside/a"}]},
    {"images_dir": "images/../../outside"},
])
def test_dataset_json_cannot_point_outside_its_folder(tmp_path, meta):
    from napari_ihcseg.pairs import load_pairs_folder

    outside = tmp_path / "outside"
    outside.mkdir()
    sample = make_synthetic_ihc((64, 64), seed=1)
    Image.fromarray(sample.image).save(outside / "a.png")
    tifffile.imwrite(outside / "a.tif", sample.labels.astype(np.uint32))
    root = _pairs(tmp_path / "data", meta)
    with pytest.raises(ValueError, match="outside the dataset folder") as caught:
        load_pairs_folder(root)
    assert str(root / "dataset.json") in str(caught.value)


def test_dataset_json_paths_inside_the_folder_still_work(tmp_path):
    from napari_ihcseg.pairs import load_pairs_folder

    root = _pairs(tmp_path / "data", {"pairs": [{"id": "a", "image": "images/a.png", "mask": "./masks/a.tif"}]})
    assert [s.name for s in load_pairs_folder(root)] == ["data/a"]


# 9 --------------------------------------------------------------- valid geometries

def _check_outlines(labels: np.ndarray) -> list[str]:
    from napari_ihcseg.scoring.export import _geometry
    from napari_ihcseg.scoring.outlines import label_outlines

    problems = []
    for label, polygons in label_outlines(labels).items():
        geometry = _geometry(polygons)
        reason = invalid_reason(geometry)
        if reason:
            problems.append(f"label {label}: {reason}")
            continue
        area = sum(abs(_area(p[0])) - sum(abs(_area(h)) for h in p[1:]) for p in
                   ([geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]))
        if area != np.count_nonzero(labels == label):
            problems.append(f"label {label}: area {area} is not its pixel count")
    return problems


def _area(ring) -> float:
    a = np.asarray(ring, np.float64)
    return 0.5 * float(np.sum(a[:-1, 0] * a[1:, 1] - a[1:, 0] * a[:-1, 1]))


def test_the_validity_check_catches_a_ring_that_touches_itself():
    ring = [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [1, 2], [1, 1], [0, 1], [0, 0]]  # two squares, one ring
    assert "Self-intersection" in invalid_reason({"type": "Polygon", "coordinates": [ring]})
    square = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]
    assert invalid_reason({"type": "Polygon", "coordinates": [square]}) is None


def test_every_outline_of_random_labels_is_a_valid_polygon_of_its_pixels():
    rng = np.random.default_rng(0)
    problems = []
    for t in range(600):
        labels = (rng.random((8, 8)) < rng.uniform(0.4, 0.7)).astype(np.int32)
        if t % 2:
            labels *= rng.integers(1, 4, labels.shape).astype(np.int32)
        problems += _check_outlines(labels)
    assert problems == []


@pytest.mark.slow
def test_pinched_nuclei_of_real_annotations_export_valid_geojson(shared_data, tmp_path):
    from napari_ihcseg.scoring import score_image, write_geojson

    problems, n = [], 0
    # Fields in which today's tracing met pinched nuclei (main gave 44 invalid rings in all 20).
    paths = [shared_data / "cpm15" / "image01_labels.png",
             *sorted((shared_data / "ki67-glioma-polygons").glob("*/labels.png"))[:4]]
    for path in paths:
        labels = read_labels(path)
        n += len(np.unique(labels)) - 1
        problems += [f"{path}: {p}" for p in _check_outlines(labels)]
    assert n > 500 and problems == []

    # The written GeoJSON itself, as QuPath would read it.
    labels = read_labels(paths[0])
    image = np.full(labels.shape + (3,), 180, np.uint8)
    result = score_image(image, labels, stain="ki67")
    path = write_geojson(tmp_path / "x.nuclei.geojson", result.cells, labels)
    features = json.loads(path.read_text())["features"]
    assert len(features) > 50
    assert [invalid_reason(f["geometry"]) for f in features if invalid_reason(f["geometry"])] == []


# 10 ------------------------------------------------------------ blank-looking images

@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return make_synthetic_ihc((64, 80), seed=3).image


@pytest.mark.parametrize("top", [1.0, 255.0, 65535.0])
def test_a_float_tiff_is_scaled_by_the_range_it_uses(tmp_path, rgb, top):
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, (rgb.astype(np.float32) * np.float32(top / 255)), photometric="rgb")
    np.testing.assert_allclose(read_image(path).astype(int), rgb.astype(int), atol=1)


@pytest.mark.parametrize("values", [(-5.0, 100.0), (0.0, 1e6)])
def test_a_float_tiff_in_no_known_range_is_refused(tmp_path, rgb, values):
    path = tmp_path / "f.tif"
    data = rgb.astype(np.float32)
    data[0, 0, 0], data[0, 0, 1] = values
    tifffile.imwrite(path, data, photometric="rgb")
    with pytest.raises(ImageReadError, match="floating-point values") as caught:
        read_image(path)
    assert str(path) in str(caught.value)


def test_the_largest_series_of_a_tiff_is_read_and_announced(tmp_path, rgb, image_warning):
    path = tmp_path / "multi.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.full((16, 16, 3), 255, np.uint8), photometric="rgb")   # a blank thumbnail first
        tif.write(rgb, photometric="rgb")
    with pytest.warns(image_warning, match="largest"):
        image = read_image(path)
    np.testing.assert_array_equal(image, rgb)
    from napari_ihcseg.io import open_image

    with pytest.warns(image_warning, match="largest"), open_image(path) as lazy:
        np.testing.assert_array_equal(np.asarray(lazy.levels[0].compute()), rgb)


@pytest.fixture
def transparent_png(tmp_path) -> Path:
    path = tmp_path / "clear.png"
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = make_synthetic_ihc((64, 64), seed=5).image   # colour is there, alpha hides it
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def test_a_fully_transparent_or_uniform_image_is_announced(transparent_png, tmp_path, image_warning):
    with pytest.warns(image_warning, match="fully transparent"):
        read_image(transparent_png)
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full((40, 40, 3), 200, np.uint8), photometric="rgb")
    with pytest.warns(image_warning, match="one colour"):
        read_image(blank)
    with warnings.catch_warnings():
        warnings.simplefilter("error", image_warning)
        read_image(_save(tmp_path / "fine.png", make_synthetic_ihc((40, 40), seed=1).image))


def _save(path: Path, image: np.ndarray) -> Path:
    Image.fromarray(image).save(path)
    return path


def test_blank_image_warnings_reach_the_cli_the_summary_and_the_batch(transparent_png, tmp_path, monkeypatch,
                                                                      image_warning, capsys):
    from napari_ihcseg import pipeline
    from napari_ihcseg.batch.worker import score_slide
    from napari_ihcseg.pipeline import PipelineOptions

    from fakes import ODNet

    monkeypatch.setattr(pipeline, "resolve_model", lambda spec, device="auto": (ODNet(stains=(0, 1)), "odnet"))
    assert main(["segment", str(transparent_png), "--out", str(tmp_path / "out"), "--tile", "64",
                 "--overlap", "16"]) == 0
    err = capsys.readouterr().err
    assert "ihcseg: warning:" in err and "fully transparent" in err and str(transparent_png) in err
    summary = json.loads((tmp_path / "out" / "clear.summary.json").read_text())
    assert any("fully transparent" in w for w in summary["warnings"])

    # The task a batch worker runs records it; the batch command prints it.
    factory = "fakes:ODNet"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", image_warning)
        result = score_slide(str(transparent_png), str(tmp_path / "batch"),
                             PipelineOptions(inference=InferenceConfig(tile=64, overlap=16)), factory)
    assert result["status"] == "ok" and any("fully transparent" in w for w in result["summary"]["warnings"])

    import napari_ihcseg.batch

    def fake_run_batch(slides, out, options, *, on_slide, **kwargs):
        on_slide(SlideResult(Path(slides[0]), "clear", "ok", summary=result["summary"]))
        raise ValueError("stop here")

    monkeypatch.setattr(napari_ihcseg.batch, "run_batch", fake_run_batch)
    main(["batch", str(transparent_png), "--out", str(tmp_path / "batch2"), "--model", "r2unet-lite"])
    assert "fully transparent" in capsys.readouterr().err


def test_blank_image_warnings_reach_napari_through_the_reader(transparent_png, image_warning):
    from napari_ihcseg._reader import read_ihc

    with pytest.warns(image_warning, match="fully transparent"):
        read_ihc(str(transparent_png))


# 11 ------------------------------------------------------------------ binary masks

def test_score_warns_about_a_binary_mask_and_offers_to_split_it(tmp_path, capsys):
    sample = make_synthetic_ihc((96, 96), seed=2, density=0.2)
    image = _save(tmp_path / "x.png", sample.image)
    mask = tmp_path / "mask.png"
    binary = (sample.labels > 0).astype(np.uint8)
    Image.fromarray(binary).save(mask)
    from scipy import ndimage as ndi

    regions = ndi.label(binary)[1]
    assert regions > 3
    out = tmp_path / "out"
    assert main(["score", str(image), "--labels", str(mask), "--stain", "er", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{regions} separate regions" in err and "--split-components" in err and str(mask) in err
    assert main(["score", str(image), "--labels", str(mask), "--stain", "er", "--out", str(out),
                 "--split-components"]) == 0
    assert json.loads((out / "x.summary.json").read_text())["n_nuclei"] == regions
    # An instance image is not warned about.
    labels = tmp_path / "labels.tif"
    tifffile.imwrite(labels, sample.labels.astype(np.uint32))
    capsys.readouterr()
    assert main(["score", str(image), "--labels", str(labels), "--stain", "er", "--out", str(out)]) == 0
    assert "separate regions" not in capsys.readouterr().err


# 12 -------------------------------------------------------------- negative label ids

def test_negative_label_ids_are_refused_naming_the_file(tmp_path):
    from napari_ihcseg.data.sample import Sample
    from napari_ihcseg.pairs import load_pairs_folder

    root = _pairs(tmp_path / "data", {})
    sample = make_synthetic_ihc((64, 64), seed=0)
    mask = root / "masks" / "a.tif"
    tifffile.imwrite(mask, -sample.labels.astype(np.int32))   # every nucleus id negative
    with pytest.raises(ValueError, match=r"label values must be in 0\.\.") as caught:  # pairs masks: io.read_labels
        load_pairs_folder(root)
    assert str(mask) in str(caught.value)
    with pytest.raises(ValueError, match="negative label ids"):
        Sample(sample.image, -sample.labels.astype(np.int32), name="field")
    with pytest.raises(ImageReadError, match=re.escape(str(mask))):
        read_labels(mask)


def test_ihcseg_train_on_negative_masks_names_the_mask(tmp_path, capsys):
    root = _pairs(tmp_path / "data", {"stain": "Ki-67", "tile_size": None, "stride": None})
    sample = make_synthetic_ihc((64, 64), seed=0)
    mask = root / "masks" / "a.tif"
    tifffile.imwrite(mask, -sample.labels.astype(np.int32))
    code = main(["train", str(root), "--model", "r2unet-lite", "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--tile", "64", "--val-split", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(mask) in err[0] and "negative" in err[0]


def test_cli_is_still_light_to_import():
    code = ("import sys, napari_ihcseg.cli, napari_ihcseg.output_set, napari_ihcseg._csv; "
            "sys.exit(any(m in sys.modules for m in ('torch', 'qtpy', 'napari')))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
