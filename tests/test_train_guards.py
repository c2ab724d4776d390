"""Training refuses what would lose work or cannot run: an output folder already used, out-of-range options,
a damaged saved state. Each is one ``ValueError`` (one ``ihcseg: error`` line, exit code 2) naming the cause."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil

import pytest

torch = pytest.importorskip("torch")

from napari_ihcseg.cli import main  # noqa: E402
from napari_ihcseg.training import trainer  # noqa: E402
from napari_ihcseg.training.augment import AugmentConfig, with_overrides  # noqa: E402
from napari_ihcseg.training.run_state import RunState  # noqa: E402
from napari_ihcseg.training.trainer import TrainConfig, train  # noqa: E402

from test_trainer import FAST, TINY, _pairs_folder, fields  # noqa: E402

ONE_STEP = dict(FAST, epochs=1, max_steps_per_epoch=1)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished one-step run: ``state/``, ``best/``, ``metrics.csv``, ``run.json``."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(TrainConfig(out=str(out), **ONE_STEP), train_samples=fields([0]), val_samples=[])
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A copy of the finished run that a test may change."""
    return shutil.copytree(finished_run, tmp_path / "run")


def _snapshot(out) -> dict:
    """The bytes of every file of a run's results, to check that nothing was replaced."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and "state" not in p.parts}


@pytest.fixture
def pairs(tmp_path):
    return _pairs_folder(tmp_path / "pairs", [0, 1])


def _cli(pairs, out, *extra, epochs: int = 1) -> list[str]:
    """``ihcseg train`` on the pairs with tiny settings; a later repeat of an option wins."""
    return ["train", str(pairs), "--model", "r2unet-lite", "--epochs", str(epochs), "--out", str(out), "--tile", "64",
            "--batch-size", "2", "--max-steps-per-epoch", "1", "--threads", "1", "--val-split", "0",
            "--synthetic-fraction", "0", *extra]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ihcseg: error: "), err
    return err[0]


# A: the output folder ---------------------------------------------------------------------------------------


def test_resume_without_a_saved_state_is_refused_and_the_results_are_kept(run_copy):
    shutil.rmtree(run_copy / "state")  # e.g. removed to save space once the run was done
    before = _snapshot(run_copy)
    with pytest.raises(ValueError, match="nothing to resume") as caught:
        train(TrainConfig(out=str(run_copy), **{**ONE_STEP, "seed": 5}), train_samples=fields([0]),
              val_samples=[], resume=True)
    assert str(run_copy) in str(caught.value)
    assert _snapshot(run_copy) == before, "best/, metrics.csv and run.json must be left as they were"


def test_resume_into_a_missing_folder_is_refused_without_creating_it(tmp_path):
    with pytest.raises(ValueError, match="nothing to resume"):
        train(TrainConfig(out=str(tmp_path / "new"), **ONE_STEP), train_samples=fields([0]), val_samples=[],
              resume=True)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("left", [("best", "metrics.csv", "run.json"), ("best",), ("metrics.csv",)])
def test_a_new_run_never_replaces_a_previous_runs_outputs(run_copy, left):
    shutil.rmtree(run_copy / "state")
    for name in {"best", "metrics.csv", "run.json"} - set(left):
        path = run_copy / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    before = _snapshot(run_copy)
    with pytest.raises(ValueError, match="previous run's outputs") as caught:
        train(TrainConfig(out=str(run_copy), **ONE_STEP), train_samples=fields([0]), val_samples=[])
    assert str(run_copy) in str(caught.value) and "another output folder" in str(caught.value)
    assert _snapshot(run_copy) == before


def test_ihcseg_train_refuses_resume_with_no_state_and_a_new_run_over_old_results(run_copy, pairs, capsys):
    shutil.rmtree(run_copy / "state")
    before = _snapshot(run_copy)
    assert main(_cli(pairs, run_copy, "--resume")) == 2
    line = _one_error_line(capsys)
    assert str(run_copy) in line and "nothing to resume" in line
    assert main(_cli(pairs, run_copy)) == 2
    line = _one_error_line(capsys)
    assert str(run_copy) in line and "--out" in line and "previous run" in line
    assert _snapshot(run_copy) == before
    # A folder holding a resumable state still says how to continue it.
    assert main(_cli(pairs, _finished_with_state(run_copy))) == 2
    assert "add --resume" in _one_error_line(capsys)


def _finished_with_state(run_copy):
    out = run_copy.parent / "with-state"
    (out / "state").mkdir(parents=True)
    (out / "state" / "state.json").write_text("{}")
    return out


# B: options out of range ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("lr", 0.0), ("lr", -1e-3), ("lr", math.inf), ("lr", math.nan), ("lr", 2.0), ("lr", 1000.0),
    ("max_steps_per_epoch", 0), ("max_steps_per_epoch", -1),
    ("patience", -1), ("patience", 0),
    ("num_threads", 0), ("num_threads", -1),
    ("stride", 0), ("stride", -32), ("stride", 96),
    ("synthetic_fraction", 1.5), ("warmup_steps", -5), ("checkpoint_minutes", math.nan), ("seed", -1),
])
def test_train_config_refuses_out_of_range_values_naming_them(tmp_path, field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be .*got {value}"):
        TrainConfig(out=str(tmp_path), **{**ONE_STEP, field: value})  # tile 64


def test_train_config_accepts_the_edges_of_each_range(tmp_path):
    config = TrainConfig(out=str(tmp_path), **{**ONE_STEP, "stride": 64, "patience": 1, "num_threads": 1,
                                               "synthetic_fraction": 1.0, "warmup_steps": 0, "lr": 1.0})
    assert config.stride == 64
    assert TrainConfig(out=str(tmp_path), **{**ONE_STEP, "stride": None, "patience": None}).stride is None


@pytest.mark.parametrize("value", [2.0, -0.1, math.nan])
def test_augmentation_probabilities_must_be_between_0_and_1(value):
    with pytest.raises(ValueError, match=rf"AugmentConfig\.p_blur is a probability .*got {value}"):
        AugmentConfig(p_blur=value)
    with pytest.raises(ValueError, match=r"augment 'p_noise=2': p_noise is a probability and must be in \[0, 1\]"):
        with_overrides(AugmentConfig(), ["p_noise=2"])
    assert dataclasses.replace(AugmentConfig(), p_blur=1.0, p_noise=0.0).p_blur == 1.0


@pytest.mark.parametrize("option, value, named", [
    ("--lr", "0", "--lr"), ("--lr", "inf", "--lr"), ("--lr", "nan", "--lr"), ("--lr", "1000", "--lr"),
    ("--max-steps-per-epoch", "0", "--max-steps-per-epoch"), ("--patience", "-1", "--patience"),
    ("--threads", "-1", "--threads"), ("--threads", "0", "--threads"),
    ("--stride", "0", "--stride"), ("--stride", "1000", "--stride"),
    ("--augment", "p_blur=2", "p_blur"),
])
def test_ihcseg_train_refuses_an_out_of_range_option_before_any_model_runs(tmp_path, pairs, monkeypatch, capsys,
                                                                            option, value, named):
    def no_training(*args, **kwargs):
        raise AssertionError("training started with an out-of-range option")

    monkeypatch.setattr(trainer, "train", no_training)
    out = tmp_path / "run"
    assert main(_cli(pairs, out, f"{option}={value}")) == 2
    line = _one_error_line(capsys)
    assert named in line and value.split("=")[-1] in line, line
    assert "Traceback" not in line and not (out / "best").exists()


# C: a damaged saved state ----------------------------------------------------------------------------------


def _edit_json(state):
    def edit(change):
        path = state / "state.json"
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))
    return edit


def _rewrite_tensors(state, change):
    """Change the tensor file and give ``state.json`` its new checksum (a damage the checksum cannot see)."""
    from safetensors.torch import load, save

    path = next(state.glob("state-*.safetensors"))
    tensors = load(path.read_bytes())
    data = change(tensors)  # new bytes, or the dict changed in place
    path.write_bytes(data if isinstance(data, bytes) else save(tensors))
    _edit_json(state)(lambda d: d.update(sha256=hashlib.sha256(path.read_bytes()).hexdigest()))


def _pickle(tensors):
    import pickle

    return pickle.dumps({"a": 1})


DAMAGES = {
    "tensors missing": (lambda s: _edit_json(s)(lambda d: d.pop("tensors")), "state.json", "tensors"),
    "sha256 missing": (lambda s: _edit_json(s)(lambda d: d.pop("sha256")), "state.json", "sha256"),
    "optimizer missing": (lambda s: _edit_json(s)(lambda d: d.pop("optimizer")), "state.json", "optimizer"),
    "tensors null": (lambda s: _edit_json(s)(lambda d: d.update(tensors=None)), "state.json", "tensors"),
    "tensors a folder": (lambda s: _edit_json(s)(lambda d: d.update(tensors=".")), "state.json", "tensors"),
    "tensors outside": (lambda s: _edit_json(s)(lambda d: d.update(tensors="../best/weights.safetensors")),
                        "state.json", "tensors"),
    "global_step text": (lambda s: _edit_json(s)(lambda d: d.update(global_step="abc")), "state.json",
                         "global_step"),
    "history a number": (lambda s: _edit_json(s)(lambda d: d.update(history=5)), "state.json", "history"),
    "scalars bad": (lambda s: _edit_json(s)(lambda d: d["optimizer"].update(scalars={"x": 1})), "state.json",
                    "optimizer"),
    "tensor file gone": (lambda s: next(s.glob("state-*.safetensors")).unlink(), ".safetensors", "cannot read"),
    "tensor file a pickle": (lambda s: _rewrite_tensors(s, _pickle), ".safetensors", "not a safetensors file"),
    "rng missing": (lambda s: _rewrite_tensors(s, lambda t: t.pop("rng.torch") is None), ".safetensors",
                    "rng.torch"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_resuming_a_damaged_state_is_one_error_naming_the_file(run_copy, damage):
    do, file_ending, problem = DAMAGES[damage]
    do(run_copy / "state")
    with pytest.raises(ValueError) as caught:
        train(TrainConfig(out=str(run_copy), **{**ONE_STEP, "epochs": 2}), train_samples=fields([0]),
              val_samples=[], resume=True)
    message = str(caught.value)
    assert "\n" not in message and str(run_copy / "state") in message and problem in message, message
    assert message.split(":")[0].endswith(file_ending), message


def test_ihcseg_train_resume_reports_a_damaged_state_in_one_line(run_copy, pairs, capsys):
    # A run of the CLI's own, so that --resume's configuration matches it.
    out = run_copy.parent / "cli-run"
    assert main(_cli(pairs, out)) == 0
    _edit_json(out / "state")(lambda d: d.update(history=5))
    capsys.readouterr()
    assert main(_cli(pairs, out, "--resume", epochs=2)) == 2
    line = _one_error_line(capsys)
    assert str(out / "state" / "state.json") in line and "history" in line


def test_a_saved_run_state_with_values_of_the_wrong_kind_is_refused():
    saved = RunState().to_dict()
    for key, bad in [("global_step", "abc"), ("epoch", -1), ("history", 5), ("history", [3]), ("best_score", "x"),
                     ("loss_parts", []), ("step", True)]:
        with pytest.raises(ValueError, match=f"'{key}' must be"):
            RunState.from_dict({**saved, key: bad})
    assert RunState.from_dict(saved) == RunState()


def test_a_data_folder_whose_name_holds_a_colon_is_read_as_a_folder(tmp_path):
    from napari_ihcseg.cli._common import CLIError
    from napari_ihcseg.cli._train import _spec

    folder = tmp_path / "run 2024-05-01T10:30"
    folder.mkdir()
    assert _spec(str(folder)) == str(folder)
    with pytest.raises(CLIError, match="no such data folder"):
        _spec(str(tmp_path / "gone 10:30"))


def test_data_folders_and_a_model_folder_are_recorded_absolute(tmp_path, monkeypatch):
    """run.json kept `pairs` as typed: resuming from another working folder read another folder's images."""
    from napari_ihcseg.cli._train import _spec

    (tmp_path / "pairs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert _spec("pairs") == str(tmp_path / "pairs")
    assert _spec("pairs:pairs") == f"pairs:{tmp_path / 'pairs'}"


def test_resuming_on_other_images_or_with_no_epochs_left_is_refused(tmp_path, capsys):
    """Pairs added to the folder changed the split on resume; --epochs below those done rewrote run.json."""
    pairs = _pairs_folder(tmp_path / "pairs", [0, 1])
    out = tmp_path / "run"
    assert main(_cli(pairs, out)) == 0, capsys.readouterr().err
    capsys.readouterr()
    recorded = (out / "run.json").read_bytes()
    assert main(["train", "--resume", "--out", str(out), "--epochs", "1"]) == 2
    assert "the run has trained 1 epoch(s) already; give more epochs" in _one_error_line(capsys)
    assert (out / "run.json").read_bytes() == recorded, "run.json keeps the epochs the run has"
    extra = _pairs_folder(tmp_path / "more", [2])
    for name in ("images", "masks"):
        for path in (extra / name).iterdir():
            shutil.copy(path, pairs / name / path.name)
    assert main(["train", "--resume", "--out", str(out), "--epochs", "2"]) == 2
    assert "cannot resume on other images than the run started with (training images: new" in _one_error_line(capsys)
    assert (out / "run.json").read_bytes() == recorded


# D: a saved run continued with --resume --out alone ---------------------------------------------------------


def test_a_run_cancelled_in_the_panel_continues_with_resume_and_out_alone(tmp_path, capsys):
    """The Train panel's Cancel, then `ihcseg train --resume --out FOLDER`: the run's own options, no retyping."""
    pairs = _pairs_folder(tmp_path / "pairs", [0, 1])
    out = tmp_path / "run"
    config = TrainConfig(out=str(out), train_data=(f"folder:{pairs}",), val_fraction=0.0,
                         **{**FAST, "epochs": 2, "max_steps_per_epoch": 2, "lr": 3e-4})
    steps = []

    def cancel_after_one_step(event):
        steps.append(event.global_step) if event.phase == "train" else None

    result = train(config, progress=cancel_after_one_step, cancel=lambda: len(steps) >= 1)
    assert result.best_checkpoint is None and (out / "state").is_dir()
    assert main(["train", "--resume", "--out", str(out), "--lr", "0.1"]) == 2
    line = _one_error_line(capsys)
    assert "--lr" in line and "run.json" in line, line
    assert main(["train", "--resume", "--out", str(out)]) == 0, capsys.readouterr().err
    assert (out / "best" / "weights.safetensors").is_file()
    saved = json.loads((out / "run.json").read_text())["config"]
    assert saved["lr"] == 3e-4 and saved["epochs"] == 2, "the run went on with its own options"


def test_a_new_run_still_needs_its_data_model_and_epochs(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "DATASET, --model, --epochs required (or --resume --out FOLDER alone" in _one_error_line(capsys)


def test_a_fine_tune_continues_after_its_base_checkpoint_moved(finished_run, tmp_path, capsys):
    """The base folder moved (a new disk, a tidied models folder): the run says so in one line, continues
    with --model at the new place, and refuses another checkpoint's weights there."""
    pairs = _pairs_folder(tmp_path / "pairs", [0, 1])
    base = shutil.copytree(finished_run / "best", tmp_path / "models" / "base")
    out = tmp_path / "ft"
    steps = []
    config = TrainConfig(out=str(out), train_data=(f"folder:{pairs}",), val_fraction=0.0,
                         **{**FAST, "model": str(base), "model_options": {}, "epochs": 2, "max_steps_per_epoch": 2})
    train(config, progress=lambda e: steps.append(e) if e.phase == "train" else None, cancel=lambda: len(steps) >= 1)
    assert json.loads((out / "run.json").read_text())["base_sha256"]

    moved = shutil.move(str(base), str(tmp_path / "archive" / "base"))
    assert main(["train", "--resume", "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert f"started from the checkpoint {base}, which is no longer there" in line
    assert f"--resume --out {out} --model NEW_PLACE" in line

    from napari_ihcseg.models import build_model, save_checkpoint

    other = tmp_path / "other"
    save_checkpoint(build_model("r2unet-lite", **TINY), other)  # the same architecture, other weights
    assert main(["train", "--resume", "--out", str(out), "--model", str(other)]) == 2
    assert "not the checkpoint the run started from" in _one_error_line(capsys)

    assert main(["train", "--resume", "--out", str(out), "--model", str(moved)]) == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["model"] == str(moved) and (out / "best" / "weights.safetensors").is_file()


def test_a_moved_fine_tune_continues_from_the_shipped_checkpoint_by_name_and_an_old_run_says_to_put_it_back(
        tmp_path, capsys):
    from napari_ihcseg.models.shipped import default_checkpoint_name, shipped_checkpoints

    name = default_checkpoint_name("cpu")
    pairs = _pairs_folder(tmp_path / "pairs", [0, 1])
    base = shutil.copytree(shipped_checkpoints()[name], tmp_path / "models" / "base")  # the Train panel's record
    out = tmp_path / "ft"
    steps = []
    config = TrainConfig(out=str(out), train_data=(f"folder:{pairs}",), val_fraction=0.0,
                         **{**FAST, "model": str(base), "model_options": {}, "epochs": 2, "max_steps_per_epoch": 1,
                            "batch_size": 2})
    train(config, progress=lambda e: steps.append(e) if e.phase == "train" else None, cancel=lambda: len(steps) >= 1)
    shutil.rmtree(base)
    run_json = out / "run.json"
    recorded = json.loads(run_json.read_text())
    old = {**recorded, "base_sha256": None}  # a run recorded before the checksum was
    run_json.write_text(json.dumps(old))
    assert main(["train", "--resume", "--out", str(out)]) == 2
    assert "put it back there to continue" in _one_error_line(capsys)
    run_json.write_text(json.dumps(recorded))
    assert main(["train", "--resume", "--out", str(out), "--model", name]) == 0, capsys.readouterr().err
