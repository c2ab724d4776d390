"""Checkpoints and training runs survive a crash, Ctrl-C, and a hostile ``config.json``.

Faults are injected where they happen: a rename that fails between the two files of a
checkpoint, SIGINT delivered to the training process, a config that declares huge layers
(loaded in a process whose address space is limited, so that allocating them cannot go unnoticed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")

from napari_ihcseg.cli import main  # noqa: E402
from napari_ihcseg.models import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from napari_ihcseg.training import trainer  # noqa: E402
from napari_ihcseg.training.trainer import TrainConfig, train  # noqa: E402

from test_trainer import FAST, TINY, _pairs_folder, fields  # noqa: E402


def _tiny(seed: int):
    torch.manual_seed(seed)
    return build_model("r2unet-lite", **TINY)


def _same_weights(model, other) -> bool:
    a, b = model.state_dict(), other.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


# 4 ------------------------------------------------------------------------------

@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_checkpoint_replaced_by_a_failing_save_still_loads_the_old_weights(tmp_path, monkeypatch, fail_at):
    best = save_checkpoint(_tiny(0), tmp_path / "best")
    (best / "notes.txt").write_text("kept")
    real_replace = os.replace
    calls = []

    def replace(src, dst):  # the n-th rename of the save fails, as a kill there would stop it
        calls.append(dst)
        if len(calls) == fail_at:
            raise OSError("simulated crash between the renames")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(_tiny(1), best, overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert _same_weights(load_checkpoint(best, device="cpu"), _tiny(0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    # A save that completes replaces both files at once and keeps the folder's other files.
    save_checkpoint(_tiny(1), best, overwrite=True)
    assert _same_weights(load_checkpoint(best, device="cpu"), _tiny(1))
    assert (best / "notes.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


# 5 ------------------------------------------------------------------------------

def _sigint_at(step: int):
    """A progress callback that delivers SIGINT to this process at a training step, as Ctrl-C does."""
    def progress(event):
        if event.phase == "train" and event.global_step == step:
            os.kill(os.getpid(), signal.SIGINT)
    return progress


def test_ctrl_c_during_training_saves_the_state_and_the_run_resumes(tmp_path):
    cfg = dict(epochs=1, max_steps_per_epoch=4, min_steps_per_epoch=4, checkpoint_minutes=60.0, **FAST)
    data = fields([0, 1])
    straight = train(TrainConfig(out=str(tmp_path / "a"), **cfg), train_samples=data, val_samples=[])

    with pytest.raises(KeyboardInterrupt) as caught:
        train(TrainConfig(out=str(tmp_path / "b"), **cfg), train_samples=data, val_samples=[],
              progress=_sigint_at(2))
    assert isinstance(caught.value, trainer.TrainingInterrupted) and caught.value.global_step == 2
    state = json.loads((tmp_path / "b" / "state" / "state.json").read_text())
    assert state["global_step"] == 2, "the state at Ctrl-C must be saved, not the one of the last epoch"

    resumed = train(TrainConfig(out=str(tmp_path / "b"), **cfg), train_samples=data, val_samples=[], resume=True)
    assert resumed.global_step == straight.global_step == 4
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]


def test_ctrl_c_in_ihcseg_train_says_how_to_resume(tmp_path, monkeypatch, capsys):
    folder = _pairs_folder(tmp_path / "pairs", [0, 1, 2])
    out = tmp_path / "run"
    args = ["train", str(folder), "--model", "r2unet-lite", "--epochs", "1", "--out", str(out), "--tile", "64",
            "--batch-size", "2", "--max-steps-per-epoch", "3", "--threads", "1", "--val-split", "0.3",
            "--synthetic-fraction", "0"]
    real_step = trainer._step
    steps = []

    def step(*a, **k):
        steps.append(1)
        if len(steps) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*a, **k)

    monkeypatch.setattr(trainer, "_step", step)
    assert main(args) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and str(out / "state") in err[0], err
    monkeypatch.setattr(trainer, "_step", real_step)
    assert main([*args, "--resume"]) == 0
    assert (out / "best" / "weights.safetensors").is_file()


# 7 ------------------------------------------------------------------------------

_LOAD_HOSTILE = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))   # 130 GB would fail loudly
    from napari_ihcseg.cli import main
    sys.exit(main(["segment", {image!r}, "--out", {out!r}, "--model", {checkpoint!r}, "--device", "cpu"]))
""")


def test_a_config_json_declaring_huge_layers_is_refused_in_one_line_without_allocating(tmp_path):
    from PIL import Image

    checkpoint = save_checkpoint(_tiny(0), tmp_path / "hostile")
    document = json.loads((checkpoint / "config.json").read_text())
    document["config"]["filters"] = [60000] * 6
    (checkpoint / "config.json").write_text(json.dumps(document))

    # First in a process with limited memory, where allocating the layers fails loudly ...
    image = tmp_path / "x.png"
    Image.new("RGB", (64, 64), (200, 150, 150)).save(image)
    script = _LOAD_HOSTILE.format(image=str(image), out=str(tmp_path / "out"), checkpoint=str(checkpoint))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(err) == 1 and "config.json" in err[0] and "Traceback" not in proc.stderr, proc.stderr
    # ... then here, through the Python API.
    with pytest.raises(ValueError, match="config.json") as caught:
        load_checkpoint(checkpoint, device="cpu")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("arch", ["r2unet-lite", "harunet-lite", "unet-resnet50"])
def test_the_size_check_accepts_every_architectures_own_checkpoints(tmp_path, arch):
    from napari_ihcseg.models import list_models

    assert arch in list_models()
    model = build_model(arch)
    loaded = load_checkpoint(save_checkpoint(model, tmp_path / arch), device="cpu")
    assert _same_weights(loaded, model)
