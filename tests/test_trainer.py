"""The trainer on tiny synthetic data: learning, resume, cancel, CLI, fine-tuning."""

from __future__ import annotations

import csv
import json
import threading

import numpy as np
import pytest
import tifffile
from conftest import torchvision_resnet_state
from scipy import ndimage as ndi
from skimage.io import imsave

torch = pytest.importorskip("torch")

from napari_ihcseg.data.sample import Sample  # noqa: E402
from napari_ihcseg.data.synthetic import make_synthetic_ihc  # noqa: E402
from napari_ihcseg.models import load_checkpoint, read_checkpoint_config  # noqa: E402
from napari_ihcseg.models.resnet import ResNetEncoder  # noqa: E402
from napari_ihcseg.stain import compose, deconvolve  # noqa: E402
from napari_ihcseg.training.augment import NO_AUGMENT  # noqa: E402
from napari_ihcseg.training.run_state import RunState  # noqa: E402
from napari_ihcseg.training.trainer import TrainConfig, lr_at, train  # noqa: E402
from napari_ihcseg.training.validate import evaluate_samples  # noqa: E402

#: A narrow R2U-Net: learns 96-px synthetic fields in a few dozen steps on one thread.
TINY = {"filters": (8, 16, 32, 64, 64, 64), "recur_num": 1}
FAST = dict(model="r2unet-lite", model_options=TINY, batch_size=4, tile=64, stride=32, warmup_steps=5,
            synthetic_fraction=0.0, augment=NO_AUGMENT, patience=None, num_threads=1, lr=1e-2)


def fields(seeds, *, brown_background: float = 0.0) -> list[Sample]:
    """Synthetic IHC fields; ``brown_background`` adds diffuse DAB outside nuclei (a domain shift)."""
    out = []
    for seed in seeds:
        f = make_synthetic_ihc((96, 96), seed=seed, positive_fraction=0.0 if brown_background else 0.3)
        image = f.image
        if brown_background:
            conc = deconvolve(image)
            rng = np.random.default_rng(seed)
            texture = 1 + 0.9 * ndi.gaussian_filter(rng.normal(0, 1, image.shape[:2]), 3)
            conc[..., 1] += np.where(f.labels > 0, 0.0, brown_background * texture)
            image = compose(conc)
        out.append(Sample(image, f.labels, name=f"field{seed}", source="synthetic", stain="Ki-67"))
    return out


def _weights(path):
    from safetensors.torch import load_file

    return load_file(path / "weights.safetensors")


def test_loss_decreases_on_a_tiny_overfit(tmp_path):
    result = train(TrainConfig(out=str(tmp_path), epochs=3, max_steps_per_epoch=8, min_steps_per_epoch=8, **FAST),
                   train_samples=fields([0, 1]), val_samples=[])
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 3 and losses[-1] < 0.7 * losses[0]
    assert result.best_checkpoint is not None and not result.cancelled


def test_resume_continues_from_the_saved_step_with_the_same_state(tmp_path):
    cfg = dict(epochs=2, max_steps_per_epoch=2, min_steps_per_epoch=2, **FAST)
    data = fields([0, 1, 2])
    straight = train(TrainConfig(out=str(tmp_path / "a"), **cfg), train_samples=data, val_samples=[])

    calls = []

    def cancel():  # interrupt before the 4th step: mid-way through epoch 2
        calls.append(1)
        return len(calls) == 4

    first = train(TrainConfig(out=str(tmp_path / "b"), **cfg), train_samples=data, val_samples=[], cancel=cancel)
    assert first.cancelled and first.global_step == 3
    state = json.loads((tmp_path / "b" / "state" / "state.json").read_text())
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 1, 3)

    steps = []
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **cfg), train_samples=data, val_samples=[], resume=True,
                    progress=lambda e: steps.append(e.global_step) if e.phase == "train" else None)
    assert steps == [4], "the resumed run must run only the missing step"
    assert resumed.global_step == straight.global_step == 4
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    a, b = _weights(tmp_path / "a" / "best"), _weights(tmp_path / "b" / "best")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_a_changed_configuration(tmp_path):
    cfg = dict(epochs=1, max_steps_per_epoch=1, **FAST)
    train(TrainConfig(out=str(tmp_path), **cfg), train_samples=fields([0]), val_samples=[])
    with pytest.raises(ValueError, match="already holds a training run"):
        train(TrainConfig(out=str(tmp_path), **cfg), train_samples=fields([0]), val_samples=[])
    changed = {**cfg, "lr": 0.5}
    with pytest.raises(ValueError, match="lr changed"):
        train(TrainConfig(out=str(tmp_path), **changed), train_samples=fields([0]), val_samples=[], resume=True)


def test_a_run_recorded_before_an_augmentation_existed_resumes_without_it(tmp_path):
    from dataclasses import replace

    from napari_ihcseg.training.augment import AugmentConfig

    old_recipe = replace(NO_AUGMENT, p_granular_dab=0.0, p_cytoplasmic_stain=0.0, p_faint_nuclei=0.0,
                         stain_vector_spread=(0.06, 0.06))
    cfg = dict(FAST, epochs=1, max_steps_per_epoch=1, augment=old_recipe)
    train(TrainConfig(out=str(tmp_path), **cfg), train_samples=fields([0]), val_samples=[])
    run = tmp_path / "run.json"
    doc = json.loads(run.read_text())
    for key in ("p_granular_dab", "granular_dab", "p_cytoplasmic_stain", "cytoplasmic_stain", "p_faint_nuclei",
                "nuclear_contrast", "stain_vector_spread"):
        del doc["config"]["augment"][key]          # as written before these options existed
    run.write_text(json.dumps(doc))
    old = TrainConfig.from_dict(doc["config"]).augment
    assert old.p_granular_dab == 0.0 and old.p_faint_nuclei == 0.0, "the old run had none"
    assert old.stain_vector_spread == (0.06, 0.06), "nor the wider counterstain hues"
    more = {**cfg, "epochs": 2}
    resumed = train(TrainConfig(out=str(tmp_path), **more), train_samples=fields([0]), val_samples=[], resume=True)
    assert resumed.global_step == 2
    with_grains = {**more, "epochs": 3, "augment": replace(old_recipe, p_granular_dab=0.5)}
    with pytest.raises(ValueError, match="augment changed"):
        train(TrainConfig(out=str(tmp_path), **with_grains), train_samples=fields([0]), val_samples=[], resume=True)
    assert AugmentConfig.from_dict(AugmentConfig().to_dict()) == AugmentConfig()


def test_cancel_stops_after_the_current_step_and_keeps_the_state(tmp_path):
    stop = threading.Event()
    events = []

    def progress(event):
        events.append(event)
        if event.phase == "train" and event.global_step == 2:
            stop.set()

    result = train(TrainConfig(out=str(tmp_path), epochs=5, max_steps_per_epoch=10, min_steps_per_epoch=10, **FAST),
                   train_samples=fields([0]), val_samples=[], progress=progress, cancel=stop)
    assert result.cancelled and result.global_step == 2 and result.epochs_completed == 0
    assert result.best_checkpoint is None
    assert (tmp_path / "state" / "state.json").is_file()
    train_events = [e for e in events if e.phase == "train"]
    assert [e.global_step for e in train_events] == [1, 2]
    assert all(e.total_steps == 50 and e.eta_seconds > 0 and np.isfinite(e.loss) for e in train_events)
    assert events[-1].phase == "done"


def _pairs_folder(root, seeds):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for s in fields(seeds):
        pid = s.name
        imsave(root / "images" / f"{pid}.png", s.image, check_contrast=False)
        tifffile.imwrite(root / "masks" / f"{pid}.tif", s.labels.astype(np.uint32))
    (root / "dataset.json").write_text(json.dumps({"format": "napari-ihcseg-pairs", "stain": "Ki-67",
                                                   "tile_size": None, "stride": None}))
    return root


def test_cli_train_writes_a_loadable_checkpoint_and_metrics(tmp_path, capsys):
    from napari_ihcseg.cli import main

    folder = _pairs_folder(tmp_path / "pairs", [0, 1, 2])
    out = tmp_path / "run"
    code = main(["train", str(folder), "--model", "r2unet-lite", "--epochs", "2", "--out", str(out), "--tile", "64",
                 "--batch-size", "2", "--max-steps-per-epoch", "2", "--threads", "1", "--val-split", "0.3",
                 "--synthetic-fraction", "0", "--augment", "p_granular_dab=0", "--augment", "blur_sigma=0.5,2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "checkpoint:" in printed and "instance settings: mask_threshold" in printed
    recorded = json.loads((out / "run.json").read_text())["config"]["augment"]
    assert recorded["p_granular_dab"] == 0.0 and recorded["blur_sigma"] == [0.5, 2.0]
    model = load_checkpoint(out / "best", device="cpu")
    assert model.arch == "r2unet-lite"
    with open(out / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "val_dice", "val_aji", "val_pq"} <= set(rows[0])
    document = read_checkpoint_config(out / "best")
    split = document["training"]["split"]
    assert len(split["val"]) == 1 and set(split["train"]).isdisjoint(split["val"])
    assert any(d["name"] == "pairs" for d in document["card"]["data"])
    assert "val_aji" in document["card"]["validation"]["metrics"]
    # The instance settings were tuned on the one validation image and reach the loaded model.
    assert set(document["instances"]) == {"mask_threshold", "contour_threshold", "min_size"}
    assert document["card"]["instances"]["images"] == 1
    assert model.checkpoint_info.instances == document["instances"]
    # A missing data folder is a usage error, not a traceback.
    assert main(["train", str(tmp_path / "nope"), "--model", "r2unet-lite", "--epochs", "1", "--out", str(out)]) == 2
    bad = ["train", str(folder), "--model", "r2unet-lite", "--epochs", "1", "--out", str(tmp_path / "run2")]
    capsys.readouterr()
    assert main([*bad, "--augment", "p_granularity=0"]) == 2
    assert "p_granularity" in capsys.readouterr().err
    assert main([*bad, "--augment", "blur_sigma=1"]) == 2
    assert "blur_sigma takes 2 comma-separated numbers" in capsys.readouterr().err


def _resnet_file(path):
    """A small torchvision-style ResNet file (as ImageNet weights would come); returns the encoder's state."""
    from safetensors.torch import save_file

    torch.manual_seed(7)
    encoder, state = torchvision_resnet_state()
    save_file(state, str(path))
    return encoder.state_dict()


def test_unet_resnet50_trains_from_encoder_weights_in_a_file(tmp_path):
    encoder = _resnet_file(tmp_path / "resnet50.safetensors")
    options = dict(encoder_depths=(1, 1, 1, 1), decoder_channels=(16, 8, 8, 8, 8),
                   encoder_weights=str(tmp_path / "resnet50.safetensors"))
    config = TrainConfig(out=str(tmp_path / "run"), epochs=1, max_steps_per_epoch=1, tune_instances=False,
                         **{**FAST, "model": "unet-resnet50", "model_options": options, "lr": 1e-4})
    result = train(config, train_samples=fields([0, 1]), val_samples=fields([2]))
    trained = load_checkpoint(result.best_checkpoint, device="cpu").encoder.state_dict()
    fresh = ResNetEncoder((1, 1, 1, 1)).state_dict()
    key = "layer1.0.conv2.weight"
    # One AdamW step of lr 1e-4 from the file's weights stays within ~1e-4 of them; a random start is far off.
    assert (trained[key] - encoder[key]).abs().max() < 1e-3
    assert (fresh[key] - encoder[key]).abs().max() > 0.02


def test_cli_train_passes_encoder_weights_and_refuses_them_where_they_do_not_apply(tmp_path, capsys):
    from napari_ihcseg.cli import main

    folder = _pairs_folder(tmp_path / "pairs", [0, 1])
    small = tmp_path / "resnet-small.safetensors"
    _resnet_file(small)
    base = ["train", str(folder), "--epochs", "1", "--out", str(tmp_path / "run"), "--tile", "64"]
    # The file reaches the model: a ResNet that is not a ResNet-50 is refused by name, before training.
    assert main([*base, "--model", "unet-resnet50", "--encoder-weights", str(small)]) == 2
    err = capsys.readouterr().err
    assert "resnet-small.safetensors: not a ResNet state dict" in err
    assert main([*base, "--model", "unet-resnet50", "--encoder-weights", str(tmp_path / "none.pth")]) == 2
    assert "none.pth: encoder weights file not found" in capsys.readouterr().err
    assert main([*base, "--model", "r2unet-lite", "--encoder-weights", str(small)]) == 2
    assert "r2unet-lite has no pretrained encoder" in capsys.readouterr().err
    assert main([*base, "--model", "r2unet-lite-ihc", "--encoder-weights", str(small)]) == 2
    assert "fine-tuned from its own weights" in capsys.readouterr().err
    assert not (tmp_path / "run" / "state").exists()


def test_tuning_the_instance_settings_can_be_turned_off(tmp_path):
    config = TrainConfig(out=str(tmp_path), epochs=1, max_steps_per_epoch=2, tune_instances=False, **FAST)
    result = train(config, train_samples=fields([0, 1]), val_samples=fields([2]))
    assert result.instance_params is None
    assert read_checkpoint_config(result.best_checkpoint)["instances"] == {}


def test_a_fine_tuned_model_keeps_its_bases_settings_until_it_has_its_own(tmp_path):
    from napari_ihcseg.models import set_instance_params

    base = train(TrainConfig(out=str(tmp_path / "base"), epochs=1, max_steps_per_epoch=2, tune_instances=False,
                             **FAST), train_samples=fields([0, 1]), val_samples=fields([2])).best_checkpoint
    set_instance_params(base, {"min_size": 60, "contour_threshold": 0.3})
    fast = {**FAST, "model": str(base), "model_options": {}}
    untuned = train(TrainConfig(out=str(tmp_path / "ft"), epochs=1, max_steps_per_epoch=2, tune_instances=False,
                                **fast), train_samples=fields([3]), val_samples=fields([4]))
    assert read_checkpoint_config(untuned.best_checkpoint)["instances"] == {"min_size": 60, "contour_threshold": 0.3}

    # Cancelled while tuning: the run says so, and the settings stay those of the base.
    stop = threading.Event()

    def progress(event):
        if event.phase == "tune":
            stop.set()

    cancelled = train(TrainConfig(out=str(tmp_path / "ft2"), epochs=1, max_steps_per_epoch=2, **fast),
                      train_samples=fields([3]), val_samples=fields([4]), progress=progress, cancel=stop)
    assert cancelled.cancelled and cancelled.instance_params is None
    assert read_checkpoint_config(cancelled.best_checkpoint)["instances"] == {"min_size": 60, "contour_threshold": 0.3}


def test_fine_tuning_improves_a_shifted_domain(tmp_path):
    """A model trained on one staining fails where the background is brown (diffuse DAB);
    fine-tuning on four corrected fields of that domain fixes held-out fields of it, while
    the same number of extra steps on the original domain does not."""
    base_cfg = dict(epochs=1, max_steps_per_epoch=60, min_steps_per_epoch=60, **FAST)
    train(TrainConfig(out=str(tmp_path / "base"), **base_cfg), train_samples=fields(range(6)), val_samples=[])
    base = tmp_path / "base" / "best"
    tune_cfg = {**base_cfg, "max_steps_per_epoch": 30, "min_steps_per_epoch": 30, "model": str(base)}
    train(TrainConfig(out=str(tmp_path / "tuned"), **tune_cfg),
          train_samples=fields(range(200, 204), brown_background=0.5), val_samples=[])
    train(TrainConfig(out=str(tmp_path / "control"), **tune_cfg), train_samples=fields(range(6)), val_samples=[])

    shifted_val = fields(range(300, 303), brown_background=0.5)
    cpu = torch.device("cpu")

    def score(path, samples):
        return evaluate_samples(load_checkpoint(path, device="cpu"), samples, device=cpu)

    assert score(base, fields([100, 101]))["aji"] > 0.5, "the base model must work on its own domain"
    before = score(base, shifted_val)
    control = score(tmp_path / "control" / "best", shifted_val)
    after = score(tmp_path / "tuned" / "best", shifted_val)
    assert after["aji"] > before["aji"] + 0.3
    assert after["aji"] > control["aji"] + 0.3
    assert after["dice"] > before["dice"] + 0.2
    assert read_checkpoint_config(tmp_path / "tuned" / "best")["training"]["base_checkpoint"] == str(base.resolve())


def test_training_starts_from_a_shipped_checkpoint_by_name(tmp_path):
    """``--model harunet-lite-ihc`` fine-tunes the shipped weights, not a fresh network."""
    from napari_ihcseg.models.shipped import shipped_checkpoints

    name, folder = next(iter(shipped_checkpoints().items()))
    cfg = {**FAST, "model": name, "model_options": {}, "batch_size": 2, "lr": 1e-12}
    train(TrainConfig(out=str(tmp_path), epochs=1, max_steps_per_epoch=1, min_steps_per_epoch=1, **cfg),
          train_samples=fields([0]), val_samples=[])
    assert read_checkpoint_config(tmp_path / "best")["training"]["base_checkpoint"] == str(folder.resolve())
    shipped, tuned = _weights(folder), _weights(tmp_path / "best")
    assert shipped.keys() == tuned.keys()
    assert all(torch.allclose(shipped[k], tuned[k], rtol=0, atol=1e-9) for k in shipped
               if shipped[k].is_floating_point() and "running" not in k)   # lr 1e-12: the shipped weights
    with pytest.raises(ValueError, match="shipped checkpoint"):
        train(TrainConfig(out=str(tmp_path / "x"), epochs=1, **{**cfg, "model": "no-such-model"}),
              train_samples=fields([0]), val_samples=[])


def test_cli_train_fine_tunes_a_shipped_checkpoint_by_name(tmp_path, capsys):
    from napari_ihcseg.cli import main
    from napari_ihcseg.models.shipped import shipped_checkpoints

    name, folder = next(iter(shipped_checkpoints().items()))
    data = _pairs_folder(tmp_path / "pairs", [0, 1])
    common = ["--epochs", "1", "--tile", "64", "--batch-size", "2", "--max-steps-per-epoch", "1", "--threads", "1",
              "--val-split", "0", "--synthetic-fraction", "0"]
    assert main(["train", str(data), "--model", name, "--out", str(tmp_path / "run"), *common]) == 0
    assert read_checkpoint_config(tmp_path / "run" / "best")["training"]["base_checkpoint"] == str(folder.resolve())
    capsys.readouterr()
    assert main(["train", str(data), "--model", "no-such-model", "--out", str(tmp_path / "x"), *common]) == 2
    assert "shipped checkpoint" in capsys.readouterr().err


def test_run_state_keeps_the_best_epoch_and_counts_the_epochs_without_progress():
    state = RunState()
    for epoch, aji in enumerate([0.5, 0.6, 0.55, 0.58, 0.7]):
        state.add_step(1.0 / (epoch + 1), {"mask": 0.5 / (epoch + 1)}, seconds=0.5)
        state.add_step(1.0 / (epoch + 1), {"mask": 0.5 / (epoch + 1)}, seconds=0.5)
        row = state.epoch_row(lr=0.1, val_seconds=0.2,
                              metrics={"dice": 0.8, "aji": aji, "pq": 0.4, "per_source": {"synthetic": {"aji": aji}}})
        assert row["train_loss"] == pytest.approx(1.0 / (epoch + 1)) and row["val_synthetic_aji"] == aji
        improved = state.close_epoch(row, "aji")
        assert improved == (epoch in (0, 1, 4))
        assert (state.step, state.loss_count, state.loss_parts) == (0, 0, {}), "the next epoch starts from zero"
        if epoch == 3:
            assert state.bad_epochs == 2 and state.patience_spent(2) and not state.patience_spent(3)
    assert (state.epoch, state.global_step, state.best_epoch, state.best_score) == (5, 10, 5, 0.7)
    assert state.best_row is state.history[-1] and state.train_seconds == pytest.approx(5.0)
    # Without validation every epoch is the best: the last one is kept.
    plain = RunState()
    assert plain.close_epoch(plain.epoch_row(lr=0.1, val_seconds=0.0, metrics=None), "aji")
    assert plain.best_score is None and plain.best_epoch == 1


def test_run_state_reads_the_state_json_a_run_saved(tmp_path):
    train(TrainConfig(out=str(tmp_path), epochs=1, max_steps_per_epoch=2, min_steps_per_epoch=2, **FAST),
          train_samples=fields([0]), val_samples=[])
    saved = json.loads((tmp_path / "state" / "state.json").read_text())
    state = RunState.from_dict(saved)  # the tensor file's name and checksum are left out
    assert (state.epoch, state.step, state.global_step, state.best_epoch) == (1, 0, 2, 1)
    assert state.to_dict() == {k: saved[k] for k in state.to_dict()}


def test_config_round_trips_and_schedule_shape():
    cfg = TrainConfig(out="x", val_names=("a", "b"), **FAST)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="multiple of 32"):
        TrainConfig(out="x", tile=100)
    lrs = [lr_at(s, total=100, base=1.0, warmup=10, min_ratio=0.1) for s in range(100)]
    assert lrs[9] == pytest.approx(1.0) and max(lrs) <= 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] >= 0.1


def test_training_recipe_moves_the_ihc_tiles_into_training_only_when_asked(tmp_path, train_recipe):
    recipe = train_recipe
    deepliif = f"deepliif:{tmp_path / 'deepliif-ki67-sample'}"
    _, config = recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path)])
    assert config.val_data == (deepliif,) and deepliif not in config.train_data
    assert set(recipe.VAL_NAMES) == set(config.val_names)
    _, config = recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path), "--ihc-train-repeat", "3"])
    assert config.val_data == () and config.train_data.count(deepliif) == 3
    encoder = tmp_path / "resnet50.safetensors"
    _, config = recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path), "--model", "unet-resnet50",
                                   "--encoder-weights", str(encoder)])
    assert config.model_options == {"encoder_weights": str(encoder.resolve())}
    with pytest.raises(SystemExit):
        recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path), "--ihc-train-repeat", "-1"])
