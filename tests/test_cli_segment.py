"""``ihcseg segment`` and ``ihcseg models`` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_ihcseg import pipeline
from napari_ihcseg.cli import COMMANDS, main
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.io import read_labels

from fakes import ODNet


def _cli(*args, timeout=300):
    env = dict(os.environ, PYTHONWARNINGS="ignore", COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "napari_ihcseg.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    for i, seed in enumerate((1, 2)):
        sample = make_synthetic_ihc((192, 224), seed=seed, density=0.3, positive_fraction=0.4)
        Image.fromarray(sample.image).save(folder / f"field{i}.png")
    (folder / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.fixture
def odnet(monkeypatch):
    monkeypatch.setattr(pipeline, "resolve_model", lambda spec, device="auto": (ODNet(stains=(0, 1)), "odnet"))


def test_good_and_bad_files(inputs, tmp_path, odnet, capsys):
    code = main(["segment", str(inputs / "field0.png"), str(inputs / "broken.tif"), str(inputs / "field1.png"),
                 "--out", str(tmp_path), "--stain", "ki67", "--tile", "128", "--overlap", "32", "--overlay"])
    out, err = capsys.readouterr()
    assert code == 1
    bad_lines = [line for line in err.splitlines() if "broken.tif" in line]
    assert len(bad_lines) == 1 and bad_lines[0].startswith("ihcseg: error:")
    assert "Traceback" not in err
    for stem in ("field0", "field1"):
        assert (tmp_path / f"{stem}.labels.tif").is_file(), err   # a good file next to a bad one is still done
        labels = read_labels(tmp_path / f"{stem}.labels.tif")
        summary = json.loads((tmp_path / f"{stem}.summary.json").read_text())
        n = len(np.unique(labels[labels > 0]))
        assert labels.shape == (192, 224)
        assert summary["n_nuclei"] == n > 5
        assert {"model", "device", "seconds", "ki67_index", "positive_percent"} <= set(summary)
        assert summary["ki67_index"] == summary["positive_percent"]
        assert len(pd.read_csv(tmp_path / f"{stem}.cells.csv")) == n
        assert (tmp_path / f"{stem}.overlay.png").is_file()
        assert f"{stem}.png: {n} nuclei" in out
        # when not to trust the numbers: said on the terminal as in the summary
        assert f"ihcseg: warning: {inputs / stem}.png: only {n} cells counted (at least 500 advised)" in err, err
    assert not (tmp_path / "broken.summary.json").exists()


def test_a_missing_file_among_good_ones_is_one_line_naming_it(inputs, tmp_path, odnet, capsys):
    code = main(["segment", str(tmp_path / "nope.png"), str(inputs / "field0.png"), "--out", str(tmp_path / "o"),
                 "--tile", "128", "--overlap", "32"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"ihcseg: error: {tmp_path / 'nope.png'}: no such file" in err.splitlines(), err


def test_only_unreadable_inputs_exit_2(inputs, tmp_path, odnet, capsys):
    assert main(["segment", str(inputs / "notes.txt"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["--thresholds", "0.2,0.4,0.6"], "--thresholds needs --stain"),
    (["--stain", "er", "--thresholds", "0.5,0.4,0.6"], "increasing"),
    (["--tile", "100"], "multiple of 32"),
    (["--roi", "missing.geojson"], "no such ROI file"),
    (["--pixel-size", "250"], "--pixel-size: 250 µm is not a microscope pixel size (0.01 to 20 µm); "
                              "was it given in nanometres?"),
    (["--pixel-size", "0.0005"], "was it given in millimetres?"),
])
def test_usage_errors(inputs, tmp_path, odnet, capsys, args, message):
    assert main(["segment", str(inputs / "field0.png"), "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_unknown_model_is_a_usage_error(inputs, tmp_path, capsys):
    assert main(["segment", str(inputs / "field0.png"), "--out", str(tmp_path), "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "harunet-lite" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"ihcseg {command}" in capsys.readouterr().out


def test_subprocess_default_model_with_a_bad_file(inputs, tmp_path):
    result = _cli("segment", inputs / "field0.png", inputs / "broken.tif", "--out", tmp_path, "--stain", "er")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert sum("broken.tif" in line for line in result.stderr.splitlines()) == 1
    labels = read_labels(tmp_path / "field0.labels.tif")
    summary = json.loads((tmp_path / "field0.summary.json").read_text())
    assert summary["n_nuclei_segmented"] == len(np.unique(labels[labels > 0]))
    assert summary["interpretation"] in {"negative", "low positive", "positive", None}


def test_subprocess_models_lists_architectures():
    result = _cli("models")
    assert result.returncode == 0, result.stderr
    for name in ("r2unet", "r2unet-lite", "harunet", "harunet-lite", "unet-resnet50"):
        assert name in result.stdout
    info = json.loads(_cli("models", "--json").stdout)
    assert {a["name"] for a in info["architectures"]} >= {"harunet-lite", "r2unet"}
    for ckpt in info["checkpoints"]:
        assert len(ckpt["sha256"]) == 64
        # The shipped models carry the settings tuned for them, and say so.
        assert set(ckpt["instances"]) == {"mask_threshold", "contour_threshold", "min_size"}
        assert f"instances mask_threshold {ckpt['instances']['mask_threshold']:g}" in result.stdout


def test_models_lists_the_good_checkpoints_and_names_a_damaged_one_in_one_line(tmp_path, monkeypatch, capsys):
    import shutil

    import napari_ihcseg.models.shipped as shipped
    from napari_ihcseg.cli import main

    real = shipped.shipped_checkpoints()
    name, folder = next(iter(real.items()))
    broken = shutil.copytree(folder, tmp_path / "broken-ihc")
    (broken / "config.json").write_text("{bad")
    import napari_ihcseg.models as models

    with_broken = {**real, "broken-ihc": broken}
    monkeypatch.setattr(shipped, "shipped_checkpoints", lambda: with_broken)
    monkeypatch.setattr(models, "shipped_checkpoints", lambda: with_broken)
    assert main(["models"]) == 1
    out, err = capsys.readouterr()
    assert name in out and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ihcseg: error: {broken / 'config.json'}"), lines


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_models_checks_the_weights_of_each_checkpoint_as_loading_would(tmp_path, monkeypatch, capsys, damage):
    import shutil

    import napari_ihcseg.models as models
    import napari_ihcseg.models.shipped as shipped
    from napari_ihcseg.cli import main

    real = shipped.shipped_checkpoints()
    broken = shutil.copytree(next(iter(real.values())), tmp_path / "broken-ihc")
    weights = broken / "weights.safetensors"
    weights.write_bytes(b"x" * 100) if damage == "garbage" else weights.unlink()
    with_broken = {**real, "broken-ihc": broken}
    monkeypatch.setattr(shipped, "shipped_checkpoints", lambda: with_broken)
    monkeypatch.setattr(models, "shipped_checkpoints", lambda: with_broken)
    assert main(["models"]) == 1
    out, err = capsys.readouterr()
    assert "broken-ihc" not in out
    assert err.startswith(f"ihcseg: error: {weights}: " + ("checksum mismatch" if damage == "garbage" else "missing"))
