"""``ihcseg evaluate`` in process, on hand-made prediction and truth folders."""

from __future__ import annotations

import argparse
import csv
import json
import math

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_ihcseg.cli._common import CLIError, print_error
from napari_ihcseg.cli._evaluate import file_key, pair_files, register


def run_cli(argv: list[str]) -> int:
    """Parse and run like ``ihcseg`` does: a CLIError becomes one line and its exit code."""
    parser = argparse.ArgumentParser(prog="ihcseg")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["evaluate", *argv])
    try:
        return args.func(args)
    except CLIError as exc:
        print_error(str(exc))
        return exc.exit_code


def boxes(shape, *rects, dtype=np.uint32):
    out = np.zeros(shape, dtype=dtype)
    for k, (r0, r1, c0, c1) in enumerate(rects, start=1):
        out[r0:r1, c0:c1] = k
    return out


def aperio(*rects) -> str:
    """Aperio XML with one rectangular region per (r0, r1, c0, c1), inclusive pixel bounds."""
    regions = []
    for r0, r1, c0, c1 in rects:
        vertices = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in ((c0, r0), (c1, r0), (c1, r1), (c0, r1)))
        regions.append(f'<Region Type="0"><Vertices>{vertices}</Vertices></Region>')
    return f"<Annotations><Annotation><Regions>{''.join(regions)}</Regions></Annotation></Annotations>"


def read_csv(path):
    with open(path, newline="") as fh:
        return {row["image"]: row for row in csv.DictReader(fh)}


@pytest.fixture
def folders(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    # a: two squares, one shifted by a column (see test_metrics: Dice 0.75, AJI 0.6, PQ 0.5)
    tifffile.imwrite(pred / "a.labels.tif", boxes((8, 8), (0, 2, 1, 3), (3, 5, 3, 5)))
    Image.fromarray(boxes((8, 8), (0, 2, 0, 2), (3, 5, 3, 5), dtype=np.uint16)).save(truth / "a_labels.png")
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(truth / "a.png")  # the picture, not truth
    # b: one 2x5 nucleus split 6 + 4 (AJI 3/7, PQ 0.4, Dice 1), truth as Aperio XML polygons
    tifffile.imwrite(pred / "b.labels.tif", boxes((8, 8), (0, 2, 0, 3), (0, 2, 3, 5)))
    (truth / "b.xml").write_text(aperio((0, 1, 0, 4)))
    # files without a partner, and segment's other outputs
    tifffile.imwrite(pred / "c.labels.tif", boxes((8, 8), (0, 1, 0, 1)))
    (truth / "d.xml").write_text(aperio((0, 1, 0, 1)))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(pred / "a.overlay.png")
    return pred, truth


def test_instance_metrics_per_image_and_mean(folders, capsys):
    pred, truth = folders
    assert run_cli(["--pred", str(pred), "--truth", str(truth)]) == 0
    out, err = capsys.readouterr()
    rows = read_csv(pred / "evaluation.csv")
    assert list(rows) == ["a", "b", "mean"]
    a, b, mean = rows["a"], rows["b"], rows["mean"]
    assert a["truth_file"].endswith("a_labels.png") and b["truth_file"].endswith("b.xml")
    assert float(a["dice"]) == pytest.approx(0.75) and float(a["aji"]) == pytest.approx(0.6)
    assert float(a["pq"]) == pytest.approx(0.5) and float(a["iou_loss"]) == pytest.approx(0.4)
    assert float(b["dice"]) == pytest.approx(1.0)
    assert float(b["aji"]) == pytest.approx(3 / 7, abs=1e-6)
    assert float(b["pq"]) == pytest.approx(0.4) and float(b["sq"]) == pytest.approx(0.6)
    assert (b["tp"], b["fp"], b["fn"]) == ("1", "1", "0")
    assert float(mean["aji"]) == pytest.approx((0.6 + 3 / 7) / 2, abs=1e-6)
    # the printed table: header, a rule, one line per image, a rule, the mean
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["image", "n_truth", "n_pred", "dice"]
    assert lines[-1].split()[0] == "mean" and len(lines) == 6
    assert len({len(line) for line in (lines[2], lines[3])}) == 1  # aligned columns
    assert "c.labels.tif" in err and "d.xml" in err  # unpaired, reported
    assert "a.png not used" in err


def test_tversky_and_threshold_options_and_csv_path(folders, tmp_path):
    pred, truth = folders
    out_csv = tmp_path / "reports" / "eval.csv"
    argv = ["--pred", str(pred), "--truth", str(truth), "--csv", str(out_csv),
            "--tversky-alpha", "0.3", "--tversky-beta", "0.7", "--iou-threshold", "0.3"]
    assert run_cli(argv) == 0
    rows = read_csv(out_csv)
    assert not (pred / "evaluation.csv").exists()
    # a: TP 6, FP 2, FN 2 -> 6 / (6 + 0.6 + 1.4); the shifted square (IoU 1/3) now matches too
    assert float(rows["a"]["tversky"]) == pytest.approx(0.75)
    assert rows["a"]["tp"] == "2"


def test_a_bad_file_gets_one_line_and_the_others_still_run(folders, capsys):
    pred, truth = folders
    (pred / "e.labels.tif").write_bytes(b"not a tiff")
    (truth / "e.xml").write_text(aperio((0, 1, 0, 1)))
    tifffile.imwrite(pred / "f.labels.tif", boxes((9, 9), (0, 1, 0, 1)))
    tifffile.imwrite(truth / "f_labels.tif", boxes((8, 8), (0, 1, 0, 1)))
    assert run_cli(["--pred", str(pred), "--truth", str(truth)]) == 1
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("ihcseg: error:")]
    assert len(errors) == 2
    assert any("e.labels.tif" in line for line in errors)
    assert any("f_labels.tif" in line and "9x9" in line for line in errors)
    assert "Traceback" not in err
    assert list(read_csv(pred / "evaluation.csv")) == ["a", "b", "mean"]


@pytest.mark.parametrize("argv, message", [
    (["--pred", "{missing}", "--truth", "{truth}"], "no such folder"),
    (["--pred", "{pred}", "--truth", "{empty}"], "no label images and truth files with matching names"),
    (["--pred", "{pred}", "--truth", "{truth}", "--radius", "5"], "--radius applies only with --points"),
    (["--pred", "{pred}", "--truth", "{truth}", "--iou-threshold", "1"], "--iou-threshold"),
    (["--pred", "{pred}", "--truth", "{truth}", "--region", "{truth}/a_labels.png"],
     "--region applies only with --points"),
    (["--pred", "{pred}", "--truth", "{truth}", "--points", "--region", "{missing}"], "nope: no such file"),
])
def test_usage_errors_exit_2(folders, tmp_path, capsys, argv, message):
    pred, truth = folders
    (tmp_path / "empty").mkdir()
    argv = [a.format(pred=pred, truth=truth, missing=tmp_path / "nope", empty=tmp_path / "empty") for a in argv]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") >= 1


CELLS_HEADER = "label,centroid_y,centroid_x,area_px,positive,included\n"


def test_points_mode(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    (truth / "k1").mkdir(parents=True)
    # k1 (as test_metrics' point case): tp 3, fp 1, fn 1; 2 of 3 matched agree; kappa 0.4;
    # pred 75 % positive, truth 50 %. A fifth prediction outside the ROI (included 0) is ignored.
    (pred / "k1.cells.csv").write_text(CELLS_HEADER + "1,1,0,50,1,1\n2,0,21,50,1,1\n3,0,39,50,0,1\n"
                                       "4,90,90,50,1,1\n5,0,60,50,1,0\n")
    (truth / "k1" / "markers.csv").write_text("type,x,y\n1,0,0\n2,20,0\n2,40,0\n1,50,50\n")
    # k2: segmentation without scoring: no positive column -> detection only
    (pred / "k2.cells.csv").write_text("label,centroid_y,centroid_x,area_px\n1,10,10,30\n2,40,40,30\n")
    (truth / "k2_points.csv").write_text("type,x,y\n1,11,10\n")
    assert run_cli(["--pred", str(pred), "--truth", str(truth), "--points", "--radius", "3"]) == 0
    out, err = capsys.readouterr()
    rows = read_csv(pred / "evaluation.csv")
    k1, k2 = rows["k1"], rows["k2"]
    assert (k1["tp"], k1["fp"], k1["fn"]) == ("3", "1", "1")
    assert float(k1["f1"]) == pytest.approx(0.75)
    assert float(k1["accuracy"]) == pytest.approx(2 / 3, abs=1e-6)
    assert float(k1["kappa"]) == pytest.approx(0.4)
    assert float(k1["abs_delta_pct_positive"]) == pytest.approx(25.0)
    assert float(k2["f1"]) == pytest.approx(2 / 3, abs=1e-6)
    assert math.isnan(float(k2["kappa"])) and math.isnan(float(k2["pred_pct_positive"]))
    assert float(rows["mean"]["abs_delta_pct_positive"]) == pytest.approx(25.0)  # nan left out
    assert "|d%pos|" in out.splitlines()[0]


def test_points_mode_radius_decides_matches(tmp_path):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    (pred / "x.cells.csv").write_text(CELLS_HEADER + "1,0,0,9,1,1\n")
    (truth / "x.csv").write_text("type,x,y\n1,6,8\n")  # 10 px away
    assert run_cli(["--pred", str(pred), "--truth", str(truth), "--points", "--radius", "9.9"]) == 0
    assert read_csv(pred / "evaluation.csv")["x"]["tp"] == "0"
    assert run_cli(["--pred", str(pred), "--truth", str(truth), "--points"]) == 0  # default 10 px
    assert read_csv(pred / "evaluation.csv")["x"]["tp"] == "1"


@pytest.mark.parametrize("name, key", [
    ("01.labels.tif", "01"), ("image01_labels.png", "image01"), ("01_data.xml", "01"),
    ("TCGA-21-5784-01Z-00-DX1.xml", "TCGA-21-5784-01Z-00-DX1"), ("x-mask.tif", "x"),
    ("slide.tif_normal.png_small_2_data.xml", "slide.tif_normal.png_small_2"), ("labels.png", "labels"),
    ("a_GT.tif", "a"),
])
def test_file_key(name, key):
    assert file_key(name) == key


def _pairing_of(tmp_path, preds, truths):
    """How empty files of these names in a prediction and a truth folder are paired."""
    for folder, names in (("pred", preds), ("truth", truths)):
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).touch()
    return pair_files(tmp_path / "pred", tmp_path / "truth")


def test_plain_images_are_predictions_when_no_segment_output(tmp_path):
    pairing = _pairing_of(tmp_path, ("a.tif", "b.png"), ("a.xml", "b_instances.tif", "b.geojson"))
    assert [(k, p.name, t.name) for k, p, t in pairing.pairs] == [("a", "a.tif", "a.xml"),
                                                                    ("b", "b.png", "b_instances.tif")]
    assert [(s.name, c.name) for s, c in pairing.not_used] == [("b.geojson", "b_instances.tif")]


def test_a_marked_prediction_beats_the_picture_beside_it(tmp_path):
    """c0_labels.tif is the prediction, c0.png the picture: the picture used to win (sorted first) and was scored."""
    pairing = _pairing_of(tmp_path, ("c0.png", "c0_labels.tif"), ("c0.tif",))
    assert [(k, p.name, t.name) for k, p, t in pairing.pairs] == [("c0", "c0_labels.tif", "c0.tif")]
    assert [(s.name, c.name) for s, c in pairing.not_used] == [("c0.png", "c0_labels.tif")]


def test_binary_mask_truth_gets_a_note(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    tifffile.imwrite(pred / "m.labels.tif", boxes((8, 8), (0, 2, 0, 2), (0, 2, 2, 4)))
    Image.fromarray(((boxes((8, 8), (0, 2, 0, 4)) > 0) * 255).astype(np.uint8)).save(truth / "m_mask.png")
    assert run_cli(["--pred", str(pred), "--truth", str(truth)]) == 0
    assert "m_mask.png holds a single label" in capsys.readouterr().err
    assert float(read_csv(pred / "evaluation.csv")["m"]["dice"]) == 1.0


def test_points_mode_names_the_cells_table_with_a_non_finite_centroid(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    (pred / "k1.cells.csv").write_text(CELLS_HEADER + "1,nan,10,50,1,1\n")
    (truth / "k1.csv").write_text("type,x,y\n1,10,10\n")
    (pred / "k2.cells.csv").write_text(CELLS_HEADER + "1,10,10,50,1,1\n")
    (truth / "k2.csv").write_text("type,x,y\n1,10,10\n")
    assert run_cli(["--pred", str(pred), "--truth", str(truth), "--points"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ihcseg: error:")]
    assert errors == [f"ihcseg: error: {pred / 'k1.cells.csv'}, line 2: non-finite centroid (nan, 10)"]
    assert list(read_csv(pred / "evaluation.csv")) == ["k2", "mean"]


def test_truth_polygons_outside_the_image_get_a_note_and_an_annotation_of_another_image_fails(tmp_path, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    tifffile.imwrite(pred / "a.labels.tif", boxes((100, 100), (10, 20, 10, 20)))
    tifffile.imwrite(pred / "b.labels.tif", boxes((100, 100), (10, 20, 10, 20)))
    (truth / "a.xml").write_text(aperio((500, 510, 500, 510), (600, 610, 600, 610)))  # drawn on a larger image
    (truth / "b.xml").write_text(aperio((10, 19, 10, 19), (500, 510, 500, 510)))
    assert run_cli(["--pred", str(pred), "--truth", str(truth)]) == 1
    err = capsys.readouterr().err
    assert (f"ihcseg: error: {truth / 'a.xml'}: all 2 polygon(s) lie outside the 100x100 image "
            "(they span x 500 to 610, y 500 to 610)") in err
    assert f"note: {truth / 'b.xml'}: 1 of 2 polygons lie outside the 100x100 image and are left out" in err
    rows = read_csv(pred / "evaluation.csv")
    assert list(rows) == ["b", "mean"] and rows["b"]["n_truth"] == "1" and float(rows["b"]["dice"]) == 1.0


def _region_case(tmp_path, summary=True):
    """A 40x60 field annotated only in its left half; two detections and two points on each side."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    # inside (col < 30): both found, one of two positive on both sides
    # outside: one found negative point, one unmarked positive detection
    (pred / "k.cells.csv").write_text(CELLS_HEADER + "1,10,10,50,1,1\n2,20,20,50,0,1\n"
                                      "3,10,45,50,0,1\n4,30,50,50,1,1\n")
    (truth / "k.csv").write_text("type,x,y\n1,10,10\n2,20,20\n2,45,10\n2,55,5\n")
    if summary:
        (pred / "k.summary.json").write_text(json.dumps({"height": 40, "width": 60}))
    mask = np.zeros((40, 60), np.uint8)
    mask[:, :30] = 255
    Image.fromarray(mask).save(tmp_path / "mask-gt.png")
    square = [[0, 0], [30, 0], [30, 40], [0, 40], [0, 0]]
    (tmp_path / "region.geojson").write_text(json.dumps(
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]}}))
    return pred, truth


@pytest.mark.parametrize("region", ["mask-gt.png", "region.geojson"])
def test_points_region_leaves_out_detections_and_points_outside_it(tmp_path, region):
    pred, truth = _region_case(tmp_path)
    assert run_cli(["--pred", str(pred), "--truth", str(truth), "--points", "--radius", "3"]) == 0
    everything = read_csv(pred / "evaluation.csv")["k"]
    assert (everything["n_pred"], everything["n_truth"], everything["fp"]) == ("4", "4", "1")
    assert float(everything["pred_pct_positive"]) == 50.0 and float(everything["truth_pct_positive"]) == 25.0
    argv = ["--pred", str(pred), "--truth", str(truth), "--points", "--radius", "3", "--region", str(tmp_path / region)]
    assert run_cli(argv) == 0
    k = read_csv(pred / "evaluation.csv")["k"]
    assert (k["n_pred"], k["n_truth"], k["tp"], k["fp"], k["fn"]) == ("2", "2", "2", "0", "0")
    assert float(k["precision"]) == 1.0 and float(k["abs_delta_pct_positive"]) == 0.0


def test_points_region_of_another_size_is_refused_naming_the_file_and_both_sizes(tmp_path, capsys):
    pred, truth = _region_case(tmp_path)
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(tmp_path / "other.png")
    argv = ["--pred", str(pred), "--truth", str(truth), "--points", "--region", str(tmp_path / "other.png")]
    assert run_cli(argv) == 1
    assert (f"ihcseg: error: {tmp_path / 'other.png'}: the region is 50x50 but the image of k.cells.csv is 60x40"
            in capsys.readouterr().err)
    (pred / "k.summary.json").unlink()  # without a summary the points tell: detections reach x 50
    assert run_cli(argv) == 1
    assert (f"{tmp_path / 'other.png'}: the region is 50x50 but {pred / 'k.cells.csv'} has points up to x 50"
            in capsys.readouterr().err)


def test_points_region_is_refused_when_several_images_are_paired(tmp_path, capsys):
    pred, truth = _region_case(tmp_path)
    (pred / "j.cells.csv").write_text(CELLS_HEADER + "1,10,10,50,1,1\n")
    (truth / "j.csv").write_text("type,x,y\n1,10,10\n")
    argv = ["--pred", str(pred), "--truth", str(truth), "--points", "--region", str(tmp_path / "mask-gt.png")]
    assert run_cli(argv) == 2
    assert "is the region of one image, but 2 images were paired (j, k)" in capsys.readouterr().err
    assert not (pred / "evaluation.csv").exists()


def test_points_outside_the_image_are_left_out_with_a_note_and_a_region_elsewhere_is_refused(tmp_path, capsys):
    pred, truth = _region_case(tmp_path)
    (truth / "k.csv").write_text("type,x,y\n1,10,10\n2,20,20\n2,45,10\n2,55,5\n1,5000,5000\n1,-300,-300\n")
    for extra in ([], ["--region", str(tmp_path / "mask-gt.png")]):
        assert run_cli(["--pred", str(pred), "--truth", str(truth), "--points", "--radius", "3", *extra]) == 0
        assert f"note: {truth / 'k.csv'}: 2 of 6 point(s) lie outside the 60x40 image" in capsys.readouterr().err
        k = read_csv(pred / "evaluation.csv")["k"]
        # As without the two points; with the region, (-300, -300) no longer counts as pixel (0, 0) inside it.
        assert (k["n_truth"], k["fn"]) == (("4", "1") if not extra else ("2", "0"))
    (truth / "k.csv").write_text("type,x,y\n1,5000,5000\n")
    assert run_cli(["--pred", str(pred), "--truth", str(truth), "--points"]) == 1
    assert "all 1 point(s) lie outside the 60x40 image" in capsys.readouterr().err

    (tmp_path / "b").mkdir()
    pred, truth = _region_case(tmp_path / "b")
    far = [[1000, 1000], [1100, 1000], [1100, 1100], [1000, 1100], [1000, 1000]]
    (tmp_path / "far.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [far]}))
    argv = ["--pred", str(pred), "--truth", str(truth), "--points", "--region", str(tmp_path / "far.geojson")]
    assert run_cli(argv) == 1  # not a row of nan
    assert f"{tmp_path / 'far.geojson'}: the region lies wholly outside the 60x40 image" in capsys.readouterr().err
    (pred / "k.summary.json").unlink()
    assert run_cli(argv) == 1
    assert "lies inside the region; is it the region of another image?" in capsys.readouterr().err


def test_a_cells_table_with_a_column_twice_and_polygon_truth_without_polygons_are_refused(tmp_path, capsys):
    pred, truth = _region_case(tmp_path)
    (pred / "k.cells.csv").write_text("label,centroid_y,centroid_x,centroid_x,positive\n1,10,10,99,1\n")
    assert run_cli(["--pred", str(pred), "--truth", str(truth), "--points"]) == 1
    assert "k.cells.csv: the column(s) centroid_x appear more than once" in capsys.readouterr().err

    pred, truth = tmp_path / "ip", tmp_path / "it"
    pred.mkdir()
    truth.mkdir()
    tifffile.imwrite(pred / "a.labels.tif", boxes((32, 32), (4, 4, 14, 14)))
    (truth / "a.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}}]}))
    assert run_cli(["--pred", str(pred), "--truth", str(truth)]) == 1
    assert "a.geojson: holds no nucleus outline (polygon) to evaluate against" in capsys.readouterr().err


def test_a_colour_region_mask_is_read_as_nonzero_where_annotated(tmp_path):
    pred, truth = _region_case(tmp_path)
    mask = np.zeros((40, 60, 3), np.uint8)
    mask[:, :30] = (255, 255, 0)  # drawn in colour, as saved by many editors
    Image.fromarray(mask).save(tmp_path / "colour.png")
    argv = ["--pred", str(pred), "--truth", str(truth), "--points", "--radius", "3", "--region", str(tmp_path / "colour.png")]
    assert run_cli(argv) == 0
    k = read_csv(pred / "evaluation.csv")["k"]
    assert (k["n_pred"], k["n_truth"], k["tp"]) == ("2", "2", "2")


def test_points_are_evaluated_on_the_outputs_of_ihcseg_score(tmp_path, capsys):
    """ihcseg score's summary has no image size: the labels beside the cells table give it."""
    from napari_ihcseg.cli import main
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    field = make_synthetic_ihc((96, 128), seed=1)
    Image.fromarray(field.image).save(tmp_path / "case.png")
    tifffile.imwrite(tmp_path / "case.labels.tif", field.labels.astype(np.int32))
    assert main(["score", str(tmp_path / "case.png"), "--labels", str(tmp_path / "case.labels.tif"),
                 "--stain", "er", "--out", str(tmp_path / "res")]) == 0
    truth = tmp_path / "truth"
    truth.mkdir()
    rows, cols = np.nonzero(field.labels)
    (truth / "case.csv").write_text(f"type,x,y\n1,{cols[0]},{rows[0]}\n1,500,500\n")
    assert run_cli(["--pred", str(tmp_path / "res"), "--truth", str(truth), "--points"]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 point(s) lie outside the 128x96 image" in err, err
    assert read_csv(tmp_path / "res" / "evaluation.csv")["case"]["n_truth"] == "1"


def test_a_region_is_checked_against_a_whole_slides_size_without_rasterising_the_slide(tmp_path):
    """A tumour outline on a slide of 10^6 x 10^6 pixels: only the outline's box is looked at."""
    from napari_ihcseg.cli._evaluate_points import check_region_overlaps
    from napari_ihcseg.scoring.regions import region_from_geojson

    ring = [[5000, 5000], [7000, 5000], [7000, 7000], [5000, 7000], [5000, 5000]]
    (tmp_path / "tumour.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    region = region_from_geojson(tmp_path / "tumour.geojson")
    check_region_overlaps(region, tmp_path / "tumour.geojson", (1_000_000, 1_000_000), [])
    with pytest.raises(ValueError, match="lies wholly outside the 4000x3000 image"):
        check_region_overlaps(region, tmp_path / "tumour.geojson", (3000, 4000), [])
