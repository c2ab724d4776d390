"""What napari-ihcseg guarantees about the outputs of an image: no silent overwrite, no stale "done".

Faults are injected where they happen: a rename that fails or a process killed between two renames,
a disk that fills up (``ENOSPC`` from ``fsync``), options and output folders that are wrong.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from napari_ihcseg import pipeline
from napari_ihcseg.cli import main
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.inference import InferenceConfig
from napari_ihcseg.pipeline import PipelineOptions, output_paths, outputs_complete, process_image
from napari_ihcseg.scoring import ScoringConfig

from fakes import ODNet

TESTS = Path(__file__).resolve().parent
OPTIONS = PipelineOptions(inference=InferenceConfig(tile=128, overlap=32), scoring=ScoringConfig(stain="ki67"))


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("field") / "x.png"
    Image.fromarray(make_synthetic_ihc((160, 192), seed=4, density=0.3, positive_fraction=0.4).image).save(path)
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a model is loaded: the checks must come before any expensive work."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the options were checked")

    monkeypatch.setattr(pipeline, "resolve_model", refuse)


def _files(out: Path, stem: str = "x") -> dict[str, bytes]:
    """The visible outputs of ``stem``, by name, with their bytes."""
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith(f"{stem}.")}


def _first_set(field: Path, out: Path) -> dict[str, bytes]:
    process_image(field, out, OPTIONS, model=ODNet(stains=(0, 1)), model_name="odnet")
    assert outputs_complete(out, "x")
    return _files(out)


def _fail_fsync(monkeypatch, code: int, *, of: str = "") -> None:
    """Make ``os.fsync`` fail with ``code`` (a full or read-only disk) for files whose name holds ``of``.

    Other files are synced as usual; with ``of`` empty every write fails.
    """
    real_fsync = os.fsync

    def fsync(fd):
        if of in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


# 1 ------------------------------------------------------------------ same stems

@pytest.mark.parametrize("names", [("d1/x.png", "d2/x.png"), ("d1/x.png", "d1/x.tif"), ("d1/x.png", "d2/X.png")])
def test_inputs_with_the_same_stem_are_refused_before_any_work(field, tmp_path, no_model, capsys, names):
    paths = []
    for name in names:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(field.read_bytes())
        paths.append(str(path))
    out = tmp_path / "out"
    assert main(["segment", *paths, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "same outputs" in err[0] and paths[0] in err[0] and paths[1] in err[0]
    assert not list(out.glob("x.*"))


# 2 ---------------------------------------------------- outputs replaced as a unit

def test_a_rerun_that_fails_late_leaves_the_old_set(field, tmp_path):
    out = tmp_path / "out"
    old = _first_set(field, out)
    bad_roi = tmp_path / "roi.geojson"
    bad_roi.write_text('{"type": "FeatureCollection", "features": []}')   # no polygon: fails while scoring
    with pytest.raises(ValueError, match="no Polygon"):   # other nuclei (min_size), then a bad region
        process_image(field, out, PipelineOptions(inference=InferenceConfig(tile=128, overlap=32, min_size=150),
                                                  scoring=ScoringConfig(stain="ki67"), roi=str(bad_roi)),
                      model=ODNet(stains=(0, 1)), model_name="odnet")
    assert _files(out) == old
    assert outputs_complete(out, "x", OPTIONS)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_full_disk_while_writing_leaves_the_old_set_and_names_the_file(field, tmp_path, monkeypatch):
    out = tmp_path / "out"
    old = _first_set(field, out)
    _fail_fsync(monkeypatch, errno.ENOSPC, of=".cells.csv.")
    with pytest.raises(OSError, match="disk is full") as caught:
        process_image(field, out, PipelineOptions(inference=InferenceConfig(tile=128, overlap=32, min_size=150),
                                                  scoring=ScoringConfig(stain="ki67")),
                      model=ODNet(stains=(0, 1)), model_name="odnet")
    assert caught.value.errno == errno.ENOSPC
    assert str(out / "x.cells.csv") in str(caught.value)
    monkeypatch.undo()  # the disk has room again
    assert _files(out) == old and outputs_complete(out, "x", OPTIONS)


def test_a_rename_that_fails_mid_replacement_moves_the_old_set_back(field, tmp_path, monkeypatch):
    out = tmp_path / "out"
    old = _first_set(field, out)
    real_replace = os.replace
    moved_in = []

    def replace(src, dst):
        if Path(dst).parent == out and not Path(src).parent.name.startswith(".x.ihcseg-old-"):
            moved_in.append(dst)
            if len(moved_in) == 2:  # the second new file: the first is already in place
                raise OSError(errno.EIO, "simulated failure of a rename")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    overlay = PipelineOptions(inference=InferenceConfig(tile=128, overlap=32, min_size=150),
                              scoring=ScoringConfig(stain="ki67"), overlay=True)  # other nuclei
    with pytest.raises(OSError, match="simulated"):
        process_image(field, out, overlay, model=ODNet(stains=(0, 1)), model_name="odnet")
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(moved_in) == 2
    assert _files(out) == old
    assert outputs_complete(out, "x", OPTIONS) and not outputs_complete(out, "x", overlay)


_KILLED_RUN = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from fakes import ODNet
    from napari_ihcseg.inference import InferenceConfig
    from napari_ihcseg.pipeline import PipelineOptions, process_image
    from napari_ihcseg.scoring import ScoringConfig

    out = Path({out!r})
    real_replace = os.replace
    moved_in = []

    def replace(src, dst):
        if out in (Path(src).parent, Path(dst).parent):
            moved_in.append(dst)
            if len(moved_in) == {kill_at}:
                os._exit(9)  # killed between two renames: no clean-up code runs
        real_replace(src, dst)

    os.replace = replace
    options = PipelineOptions(inference=InferenceConfig(tile=128, overlap=32), scoring=ScoringConfig(stain="ki67"),
                              overlay=True)
    process_image({field!r}, out, options, model=ODNet(stains=(0, 1)), model_name="odnet")
""")


@pytest.mark.parametrize("kill_at", [2, 6])   # while the 4 old files move out; while the 5 new ones move in
def test_a_run_killed_between_renames_is_rolled_back_to_the_old_set(field, tmp_path, kill_at):
    out = tmp_path / "out"
    old = _first_set(field, out)
    script = _KILLED_RUN.format(tests=str(TESTS), out=str(out), field=str(field), kill_at=kill_at)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 9, proc.stderr
    # Half-way, the folder never holds a set that counts as finished ...
    visible = _files(out)
    assert visible != old
    assert "x.summary.json" not in visible or json.loads(visible["x.summary.json"])["options"]["overlay"] is False
    # ... and the next look at it (a batch deciding what is done, or a new run) restores the old set whole.
    assert outputs_complete(out, "x", OPTIONS)
    assert _files(out) == old
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# 3 --------------------------------------------------- a model retrained in place

def test_outputs_of_a_checkpoint_retrained_in_place_are_stale(field, tmp_path):
    torch = pytest.importorskip("torch")
    from napari_ihcseg.batch.worker import _tuned_stamp
    from napari_ihcseg.models import build_model, save_checkpoint

    narrow = dict(encoder_mid=(4,) * 6, encoder_out=(8,) * 6, decoder_mid=(4,) * 5, decoder_out=(8,) * 5)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(build_model("harunet-lite", **narrow), tmp_path / "my_model" / "best")
    options = PipelineOptions(model=str(checkpoint), inference=InferenceConfig(tile=128, overlap=32))
    out = tmp_path / "out"
    process_image(field, out, options)
    assert outputs_complete(out, "x", options)
    stamp = _tuned_stamp(options)

    torch.manual_seed(1)  # "ihcseg train --out my_model" again: other weights in the same folder
    save_checkpoint(build_model("harunet-lite", **narrow), checkpoint, overwrite=True)
    assert not outputs_complete(out, "x", options), "the slide must be redone with the new weights"
    assert _tuned_stamp(options) != stamp, "a batch worker must reload the retrained weights"
    process_image(field, out, options)
    assert outputs_complete(out, "x", options)


# 13 ------------------------------------------------- fail before the expensive work

@pytest.mark.parametrize("args, message", [
    (["--pixel-size", "-0.5"], "--pixel-size"),
    (["--pixel-size", "nan"], "--pixel-size"),
    (["--pixel-size", "0"], "--pixel-size"),
    (["--roi", "{roi}"], "not valid GeoJSON"),
    (["--min-size", "-3"], "min_size"),
    (["--mask-threshold", "1.5"], "mask_threshold"),
])
@pytest.mark.parametrize("command", ["segment", "batch"])
def test_bad_options_exit_2_with_one_line_before_any_model_runs(field, tmp_path, no_model, monkeypatch, capsys,
                                                                 command, args, message):
    import napari_ihcseg.batch

    monkeypatch.setattr(napari_ihcseg.batch, "run_batch", lambda *a, **k: pytest.fail("the batch started"))
    roi = tmp_path / "roi.geojson"
    roi.write_text("not json")
    args = [a.format(roi=roi) for a in args]
    assert main([command, str(field), "--out", str(tmp_path / "out"), "--stain", "ki67", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ihcseg: error:") and message in err[0], err


@pytest.mark.parametrize("fault", ["a file", errno.EROFS, errno.ENOSPC])
@pytest.mark.parametrize("command", ["segment", "batch"])
def test_an_unwritable_output_folder_exits_2_before_any_model_runs(field, tmp_path, no_model, monkeypatch, capsys,
                                                                   command, fault):
    import napari_ihcseg.batch

    monkeypatch.setattr(napari_ihcseg.batch, "run_batch", lambda *a, **k: pytest.fail("the batch started"))
    out = tmp_path / "out"
    if fault == "a file":
        out.write_text("I am a file")
    else:
        _fail_fsync(monkeypatch, fault)   # a read-only or full disk refuses the first write
    assert main([command, str(field), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0], err
    assert ("not a folder" in err[0]) if fault == "a file" else (os.strerror(fault) in err[0])


def test_a_disk_that_fills_up_during_a_run_names_the_file(field, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "resolve_model", lambda spec, device="auto": (ODNet(stains=(0, 1)), "odnet"))
    _fail_fsync(monkeypatch, errno.ENOSPC, of=".labels.tif.")
    out = tmp_path / "out"
    assert main(["segment", str(field), "--out", str(out), "--tile", "128", "--overlap", "32"]) == 1
    err = capsys.readouterr().err
    assert str(out / "x.labels.tif") in err and "disk is full" in err and "Traceback" not in err
    assert output_paths(out, "x")["summary"].exists() is False
