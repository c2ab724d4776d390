"""``ihcseg score``, run in-process through its own parser and, when every
sub-command is importable, through ``ihcseg`` itself and as a subprocess."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_ihcseg.cli import _score
from napari_ihcseg.cli._common import CLIError
from napari_ihcseg.scoring import read_cells_csv, read_geojson, read_summary_json
from napari_ihcseg.stain import compose

pytest.importorskip("napari_ihcseg.io")

# 4 nuclei: DAB 0.05 (0), 0.3 (1+), 0.5 (2+), 0.8 (3+); 6x6 pixels, 4 apart.
DAB = (0.05, 0.3, 0.5, 0.8)


@pytest.fixture()
def inputs(tmp_path):
    from skimage import io

    conc = np.zeros((14, 44, 3), np.float32)
    conc[..., 0] = 0.05
    labels = np.zeros((14, 44), np.uint32)
    for i, dab in enumerate(DAB):
        sl = (slice(4, 10), slice(4 + 10 * i, 10 + 10 * i))
        labels[sl] = i + 1
        conc[sl + (0,)] = 0.4
        conc[sl + (1,)] = dab
    image_path = tmp_path / "case 7.png"
    io.imsave(image_path, compose(conc), check_contrast=False)
    labels_path = tmp_path / "case 7.labels.tif"
    tifffile.imwrite(labels_path, labels)
    return image_path, labels_path


def run_score(argv: list[str]) -> int:
    """Parse with the sub-command's own parser and run it as ``ihcseg`` would."""
    parser = argparse.ArgumentParser(prog="ihcseg")
    _score.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["score", *map(str, argv)])
    return args.func(args)


def full_cli():
    try:
        from napari_ihcseg.cli import build_parser, main

        build_parser()
    except ImportError as exc:  # other sub-commands not installed in this tree
        pytest.skip(f"the full ihcseg parser cannot be built: {exc}")
    return main


def test_score_writes_the_three_files_and_prints_a_summary(inputs, tmp_path, capsys):
    image, labels = inputs
    out = tmp_path / "out"
    assert run_score([image, "--labels", labels, "--stain", "er", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "ER" in printed and "H-score" in printed and "Allred" in printed
    assert "positive            3   (75.0 %)" in printed
    summary = read_summary_json(out / "case 7.summary.json")
    assert (summary["n_nuclei"], summary["n_positive"], summary["h_score"]) == (4, 3, 150.0)
    assert summary["allred_total_score"] == 5 + 2 and summary["interpretation"] == "positive"
    cells = read_cells_csv(out / "case 7.cells.csv")
    assert cells["intensity_class"].tolist() == [0, 1, 2, 3]
    detections = read_geojson(out / "case 7.nuclei.geojson")
    assert [d.classification for d in detections] == ["Negative", "Positive", "Positive", "Positive"]


def test_thresholds_roi_pixel_size_and_area_limits(inputs, tmp_path):
    image, labels = inputs
    roi = tmp_path / "tumour.geojson"
    # x from 0 to 30 covers the first three nuclei (centres at x = 7, 17, 27 in pixel corners)
    square = [[0, 0], [30, 0], [30, 14], [0, 14], [0, 0]]
    roi.write_text(json.dumps({"type": "Polygon", "coordinates": [square]}))
    out = tmp_path / "o"
    rc = run_score([image, "--labels", labels, "--stain", "ki67", "--thresholds", "0.4,0.6,0.7",
                    "--roi", roi, "--pixel-size", "0.5", "--min-area", "5", "--out", out])
    assert rc == 0
    summary = read_summary_json(out / "case 7.summary.json")
    assert summary["thresholds"] == [0.4, 0.6, 0.7]
    assert (summary["n_nuclei"], summary["n_positive"]) == (3, 1)
    assert summary["ki67_index"] == pytest.approx(100 / 3)
    cells = read_cells_csv(out / "case 7.cells.csv")
    assert cells["in_roi"].tolist() == [True, True, True, False]
    assert cells["area_um2"].tolist() == [9.0] * 4
    # 9 µm² nuclei: a 10 µm² minimum leaves none
    rc = run_score([image, "--labels", labels, "--stain", "ki67", "--pixel-size", "0.5",
                    "--min-area", "10", "--out", out])
    assert rc == 0 and read_summary_json(out / "case 7.summary.json")["n_nuclei"] == 0
    assert not any("region" in w for w in read_summary_json(out / "case 7.summary.json")["warnings"])


def test_a_region_that_misses_the_image_is_said_to(inputs, tmp_path, capsys):
    image, labels = inputs
    roi = tmp_path / "elsewhere.geojson"
    far = [[1000, 1000], [1100, 1000], [1100, 1100], [1000, 1100], [1000, 1000]]
    roi.write_text(json.dumps({"type": "Polygon", "coordinates": [far]}))
    assert run_score([image, "--labels", labels, "--stain", "ki67", "--roi", roi, "--out", tmp_path / "o"]) == 0
    summary = read_summary_json(tmp_path / "o" / "case 7.summary.json")
    assert summary["n_nuclei"] == 0
    assert any("the region (ROI) covers no pixel of the" in w for w in summary["warnings"]), summary["warnings"]
    assert "region of another image" in capsys.readouterr().out  # the WARNING lines of the printed summary


def test_estimate_stains_reports_the_vectors(inputs, tmp_path, capsys):
    image, labels = inputs
    out = tmp_path / "o"
    assert run_score([image, "--labels", labels, "--stain", "pr", "--estimate-stains", "--out", out]) == 0
    captured = capsys.readouterr()
    vectors = read_summary_json(out / "case 7.summary.json")["stain_vectors"]
    # Too few stained pixels in this tiny image for an estimate: a warning and the reference.
    assert "warning" in captured.err
    assert vectors["name"].startswith("H-DAB")


def test_a_hotspot_diameter_without_a_pixel_size_is_said_to_be_unused(inputs, tmp_path, capsys):
    image, labels = inputs
    assert run_score([image, "--labels", labels, "--stain", "ki67", "--hotspot-diameter", "100",
                      "--out", tmp_path / "o"]) == 0
    assert "--hotspot-diameter needs a pixel size" in capsys.readouterr().err
    assert run_score([image, "--labels", labels, "--stain", "ki67", "--pixel-size", "0.5",
                      "--hotspot-diameter", "100", "--out", tmp_path / "p"]) == 0
    assert "--hotspot-diameter needs" not in capsys.readouterr().err


def test_the_files_pixel_size_is_used_when_none_is_given(inputs, tmp_path, capsys):
    """As segment does: a TIFF at 0.5 um gives areas in um^2; the area limits stay in pixels."""
    image, labels = inputs
    from skimage import io

    tif = tmp_path / "case 7.tif"
    tifffile.imwrite(tif, io.imread(image), photometric="rgb", resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    assert run_score([tif, "--labels", labels, "--stain", "ki67", "--min-area", "30", "--out", tmp_path / "o"]) == 0
    assert f"pixel size 0.5 um from {tif}" in capsys.readouterr().err
    summary = read_summary_json(tmp_path / "o" / "case 7.summary.json")
    assert summary["n_nuclei"] == 4, "36 px >= 30 px"
    assert summary["pixel_size_um"] == 0.5, "the summary says which pixel size the areas and hot spot used"
    assert read_cells_csv(tmp_path / "o" / "case 7.cells.csv")["area_um2"].tolist() == [9.0] * 4
    assert run_score([tif, "--labels", labels, "--stain", "ki67", "--pixel-size", "1", "--out", tmp_path / "p"]) == 0
    assert read_cells_csv(tmp_path / "p" / "case 7.cells.csv")["area_um2"].tolist() == [36.0] * 4, "given wins"
    assert read_summary_json(tmp_path / "p" / "case 7.summary.json")["pixel_size_um"] == 1.0


@pytest.mark.parametrize(("extra", "match"), [
    (["--thresholds", "0.5,0.4,0.6"], "increasing"),
    (["--thresholds", "a,b,c"], "three numbers"),
    (["--roi", "missing.geojson"], "missing.geojson"),
    (["--min-area", "20", "--max-area", "10"], "larger"),
    (["--pixel-size", "250"], r"--pixel-size: 250 µm is not a microscope pixel size .*nanometres"),
    (["--pixel-size", "0"], "--pixel-size: must be a positive number"),
])
def test_bad_options_are_usage_errors(inputs, tmp_path, extra, match):
    image, labels = inputs
    with pytest.raises(CLIError, match=match) as info:
        run_score([image, "--labels", labels, "--stain", "er", *extra, "--out", tmp_path / "o"])
    assert info.value.exit_code == 2


def test_unreadable_or_mismatched_inputs_name_the_file(inputs, tmp_path):
    image, labels = inputs
    with pytest.raises(CLIError, match="nothing.png"):
        run_score([tmp_path / "nothing.png", "--labels", labels, "--stain", "er", "--out", tmp_path])
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((5, 5), np.uint32))
    with pytest.raises(CLIError, match="do not match"):
        run_score([image, "--labels", small, "--stain", "er", "--out", tmp_path])
    assert not list(tmp_path.glob("*.summary.json"))


def test_full_cli_in_process_and_as_subprocess(inputs, tmp_path, capsys):
    main = full_cli()
    image, labels = inputs
    out = tmp_path / "out"
    assert main(["score", str(image), "--labels", str(labels), "--stain", "er", "--out", str(out)]) == 0
    assert main(["score", str(image), "--labels", str(labels), "--stain", "er",
                 "--thresholds", "1,2", "--out", str(out)]) == 2
    assert "ihcseg: error: --thresholds" in capsys.readouterr().err
    launcher = "import sys; from napari_ihcseg.cli import main; sys.exit(main())"
    proc = subprocess.run([sys.executable, "-c", launcher, "score", str(image), "--labels",
                           str(labels), "--stain", "ki67", "--model", "r2unet-lite", "--out", str(tmp_path / "sub")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Ki-67 index" in proc.stdout
    assert read_summary_json(tmp_path / "sub" / "case 7.summary.json")["ki67_index"] == 75.0


def test_score_replaces_the_stems_outputs_as_one_set(inputs, tmp_path, capsys):
    """The labels scored are written beside their summary; an earlier overlay goes; a failed write
    leaves the earlier set whole."""
    image, labels = inputs
    out = tmp_path / "out"
    out.mkdir()
    (out / "case 7.overlay.png").write_bytes(b"an overlay of an earlier run")
    (out / "case 7.mask_prob.tif").write_bytes(b"probabilities of an earlier run")
    assert run_score([image, "--labels", labels, "--stain", "er", "--out", out]) == 0
    assert "case 7.labels.tif" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out / "case 7.labels.tif"), tifffile.imread(labels))
    assert not (out / "case 7.overlay.png").exists(), "an overlay coloured by other scores is stale"
    assert (out / "case 7.mask_prob.tif").exists(), "the model's probabilities do not depend on the scoring"

    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    (out / "case 7.nuclei.geojson").unlink()
    (out / "case 7.nuclei.geojson").mkdir()  # the third file cannot be written
    del before["case 7.nuclei.geojson"]
    with pytest.raises(CLIError, match=r"case 7\.nuclei\.geojson: cannot write the results.*left as they were"):
        run_score([image, "--labels", labels, "--stain", "er", "--thresholds", "0.5,0.6,0.7", "--out", out])
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert (out / "case 7.nuclei.geojson").is_dir() and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_what_the_image_reader_warns_about_is_printed_once_and_kept_in_the_summary(inputs, tmp_path, capsys):
    from PIL import Image

    image, labels = inputs
    clear = tmp_path / "clear.png"
    Image.fromarray(np.zeros((14, 44, 4), np.uint8), mode="RGBA").save(clear)  # fully transparent
    out = tmp_path / "out"
    assert run_score([clear, "--labels", labels, "--stain", "er", "--out", out]) == 0
    err = capsys.readouterr().err
    assert err.count("fully transparent") == 1 and err.startswith("ihcseg: warning: ")
    assert any("fully transparent" in w for w in read_summary_json(out / "clear.summary.json")["warnings"])


def test_scoring_segments_outputs_in_place_keeps_its_labels_and_their_placement(inputs, tmp_path, capsys):
    """`ihcseg score IMG --labels out/IMG.labels.tif --out out`, the folder segment wrote: the labels file is
    the one scored, so it keeps its napari placement, and --split-components may not replace it."""
    from napari_ihcseg.io import labels_placement, read_labels, write_labels

    image_path, _ = inputs
    out = tmp_path / "out"
    labels = np.zeros((14, 44), np.int32)
    labels[2:10, 2:10], labels[2:10, 10:18] = 1, 2  # two nuclei that touch
    labels[11:13, 30:32] = 2  # and a piece of the second one apart
    path = write_labels(out / "case 7.labels.tif", labels, placement={"translate": [100.0, 200.0]})
    before = path.read_bytes()
    with pytest.raises(CLIError, match="would replace these labels with their split components"):
        run_score([image_path, "--labels", path, "--stain", "er", "--split-components", "--out", out])
    assert path.read_bytes() == before
    assert run_score([image_path, "--labels", path, "--stain", "er", "--out", out]) == 0
    np.testing.assert_array_equal(read_labels(path), labels)
    assert labels_placement(path) == {"translate": [100.0, 200.0]}

    # Written elsewhere, the split keeps touching nuclei apart and gives the separate piece its own id.
    assert run_score([image_path, "--labels", path, "--stain", "er", "--split-components",
                      "--out", tmp_path / "split"]) == 0
    split = read_labels(tmp_path / "split" / "case 7.labels.tif")
    assert len(np.unique(split)) - 1 == 3 and split[5, 5] != split[5, 12]
