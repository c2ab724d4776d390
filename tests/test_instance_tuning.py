"""Instance settings tuned per model: the search, the checkpoint field, and their use at inference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_ihcseg.inference import InferenceConfig
from napari_ihcseg.instances import INSTANCE_DEFAULTS, check_instance_params, tune_instance_params

torch = pytest.importorskip("torch")


def _field(seed: int):
    """Truth with two touching nuclei and a far one; probabilities with specks and a soft shared boundary."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((96, 96), np.int32)
    truth[20:44, 10:34] = 1
    truth[20:44, 34:58] = 2
    truth[60:84, 60:84] = 3
    mask = np.where(truth > 0, 0.9, 0.05)
    contour = np.zeros((96, 96))
    contour[20:44, 33:35] = 0.35  # the boundary between 1 and 2: split only below 0.35
    for _ in range(6):  # 5x5 specks of foreground in the stroma: kept only with min_size < 25
        y, x = rng.integers(48, 90), rng.integers(2, 50)
        mask[y:y + 5, x:x + 5] = 0.9
    mask[truth > 0] = 0.9
    return mask, contour, truth


def test_tuning_finds_the_settings_that_split_touching_nuclei_and_drop_specks():
    fields = [_field(seed) for seed in range(3)]
    result = tune_instance_params([(m, c) for m, c, _ in fields], [t for _, _, t in fields])
    assert result.params["contour_threshold"] < 0.35
    assert result.params["min_size"] >= 40
    assert result.score > result.default_score + 0.2
    assert result.images == 3 and len(result.table) == 60
    card = result.to_card()
    assert json.loads(json.dumps(card))["params"] == result.params


def test_tuning_weighs_each_source_equally():
    """Four images of one source that want min_size 16 do not outvote one image of another that needs 40."""
    small = np.zeros((64, 64), np.int32)
    small[10:14, 10:14] = 1  # two 16-px nuclei, lost at min_size 40
    small[30:34, 30:34] = 2
    small[40:50, 5:15] = 3
    small[5:15, 40:50] = 4
    few = [(np.where(small > 0, 0.9, 0.0), np.zeros((64, 64)))] * 4
    m, c, t = _field(0)
    grid = {"min_size": (16, 40), "contour_threshold": (0.3,)}
    result = tune_instance_params([*few, (m, c)], [small] * 4 + [t], sources=["a"] * 4 + ["b"], grid=grid)
    assert result.params["min_size"] == 40
    pooled = tune_instance_params([*few, (m, c)], [small] * 4 + [t], grid=grid)
    assert pooled.params["min_size"] == 16


def test_tuning_keeps_to_the_grid_and_skips_images_it_cannot_score():
    m, c, t = _field(0)
    result = tune_instance_params([(m, c)], [t], grid={"min_size": (60, 100), "contour_threshold": (0.3,)})
    assert result.params["min_size"] in (60, 100) and result.params["contour_threshold"] == 0.3
    assert result.default_score < result.score  # the defaults are scored for comparison only
    # An empty validation tile predicted empty scores NaN under every setting; it must not decide.
    empty = np.zeros_like(t)
    nothing = (np.zeros_like(m), np.zeros_like(c))
    result = tune_instance_params([nothing, (m, c)], [empty, t], sources=["a", "a"])
    assert result.params["contour_threshold"] < 0.35 and result.params["min_size"] >= 40
    assert json.loads(json.dumps(result.to_card(), allow_nan=False))["score"] == pytest.approx(result.score, abs=1e-4)
    with pytest.raises(ValueError, match="no image could be scored"):
        tune_instance_params([nothing], [empty])


def test_settings_tuned_at_a_scale_give_their_score_when_segmenting_at_that_scale():
    """min_size is tuned in the model's pixels: at scale 2 the image's 36-px nuclei are 144 px to the model."""
    from napari_ihcseg.instances import probabilities_to_instances
    from napari_ihcseg.metrics import evaluate_instances

    truth = np.zeros((64, 64), np.int32)
    for i, (y, x) in enumerate([(8, 8), (8, 40), (40, 8), (40, 40)], start=1):
        truth[y:y + 6, x:x + 6] = i  # 36-px nuclei of the image
    mask = np.where(truth > 0, 0.9, 0.0)
    for y, x in [(24, 24), (24, 52), (52, 24), (2, 28)]:
        mask[y:y + 3, x:x + 3] = 0.9  # 9-px specks
    prediction, grid = (mask, np.zeros_like(mask)), {"min_size": (16, 40, 100)}
    at_2 = tune_instance_params([prediction], [truth], grid=grid, scales=[2.0])
    assert at_2.params["min_size"] in (40, 100) and at_2.score == 1.0  # 36 px specks, 144 px nuclei to the model
    assert at_2.scales == (2.0,) and at_2.to_card()["scales"] == {"2": 1}
    at_1 = tune_instance_params([prediction], [truth], grid=grid)
    assert at_1.params["min_size"] == 16 and "scales" not in at_1.to_card()
    # Segmenting at scale 2 with the stored settings reproduces the tuned score; scale-1 settings would not.
    for tuned, score in ((at_2.params, 1.0), (at_1.params, None)):
        options = InferenceConfig(scale=2.0).instance_options_for(tuned)
        result = evaluate_instances(probabilities_to_instances(*prediction, **options), truth)
        if score is None:
            assert (result["aji"] + result["pq"]) / 2 < 0.9  # the specks come back
        else:
            assert (result["aji"] + result["pq"]) / 2 == score
    with pytest.raises(ValueError, match="one positive scale per image"):
        tune_instance_params([prediction], [truth], grid=grid, scales=[2.0, 1.0])


def test_a_tie_keeps_the_defaults():
    m, c, t = _field(0)
    flat = np.full_like(m, 0.01)  # nothing predicted under any setting: every setting scores the same
    result = tune_instance_params([(flat, np.zeros_like(c))], [t])
    assert result.params == INSTANCE_DEFAULTS and result.score == result.default_score


def test_tuning_rejects_bad_input():
    m, c, t = _field(0)
    with pytest.raises(ValueError, match="one truth per prediction"):
        tune_instance_params([(m, c)], [])
    with pytest.raises(ValueError, match="mask_threshold"):
        tune_instance_params([(m, c)], [t], grid={"mask_threshold": (1.5,)})
    with pytest.raises(ValueError, match="unknown instance setting 'erode'"):
        check_instance_params({"erode": 2})
    with pytest.raises(ValueError, match="min_size must be an integer"):
        check_instance_params({"min_size": 2.5})


def _checkpoint(tmp_path, instances=None):
    from napari_ihcseg.models import build_model, save_checkpoint

    return save_checkpoint(build_model("r2unet-lite"), tmp_path / "ckpt", instances=instances)


def test_set_instance_params_keeps_the_weights_and_reaches_the_loaded_model(tmp_path):
    from napari_ihcseg.models import (load_checkpoint, read_checkpoint_config, recommended_instance_params,
                                      set_instance_params)

    folder = _checkpoint(tmp_path)
    assert read_checkpoint_config(folder)["instances"] == {}
    assert recommended_instance_params(folder) == INSTANCE_DEFAULTS
    weights = (folder / "weights.safetensors").read_bytes()
    set_instance_params(folder, {"min_size": 60, "contour_threshold": 0.3}, tuning={"score": 0.7})
    assert (folder / "weights.safetensors").read_bytes() == weights
    document = read_checkpoint_config(folder)
    assert document["instances"] == {"min_size": 60, "contour_threshold": 0.3}
    assert document["card"]["instances"] == {"score": 0.7}
    model = load_checkpoint(folder, device="cpu")  # the checksum still matches
    assert model.checkpoint_info.instances == {"min_size": 60, "contour_threshold": 0.3}
    assert recommended_instance_params(folder) == {"mask_threshold": 0.5, "contour_threshold": 0.3, "min_size": 60}
    with pytest.raises(ValueError, match="not a shipped checkpoint"):
        recommended_instance_params(tmp_path / "missing")


def test_a_checkpoint_with_invalid_instance_settings_is_refused_naming_the_file(tmp_path):
    from napari_ihcseg.models import load_checkpoint

    folder = _checkpoint(tmp_path)
    document = json.loads((folder / "config.json").read_text())
    document["instances"] = {"min_size": -3}
    (folder / "config.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"config\.json: 'instances': min_size must be an integer >= 0"):
        load_checkpoint(folder, device="cpu")
    del document["instances"]  # written before the field existed: no tuned settings
    (folder / "config.json").write_text(json.dumps(document))
    assert load_checkpoint(folder, device="cpu").checkpoint_info.instances == {}


def test_inference_uses_the_tuned_settings_unless_the_user_sets_them(tmp_path):
    """A model that finds a 10x10 nucleus: its checkpoint's min_size 150 drops it; min_size=16 keeps it."""
    from napari_ihcseg.inference import InferenceConfig, segment_image
    from napari_ihcseg.models import load_checkpoint

    folder = _checkpoint(tmp_path, instances={"min_size": 150})
    model = load_checkpoint(folder, device="cpu")
    assert InferenceConfig().instance_options(model)["min_size"] == 150
    assert InferenceConfig(min_size=16).instance_options(model)["min_size"] == 16
    assert InferenceConfig().instance_options()["min_size"] == INSTANCE_DEFAULTS["min_size"]
    # The checkpoint's min_size counts the model's pixels: at scale 2 the image's pixels are 4 times larger.
    assert InferenceConfig(scale=2.0).instance_options(model)["min_size"] == 38  # round(150 / 4)
    assert InferenceConfig(scale=2.0, min_size=150).instance_options(model)["min_size"] == 150

    class Dark(torch.nn.Module):  # "nucleus" wherever the red channel is dark
        size_multiple = 32
        checkpoint_info = model.checkpoint_info

        def forward(self, x):
            m = 20 * (0.5 - x[:, :1])
            return m, m * 0 - 10

    image = np.full((64, 64, 3), 255, np.uint8)
    image[10:20, 10:20] = 0  # 100 px
    image[30:50, 30:50] = 0  # 400 px
    opts = dict(tile=64, overlap=16, device="cpu", amp=False)
    assert segment_image(image, Dark(), **opts).labels.max() == 1
    assert segment_image(image, Dark(), min_size=16, **opts).labels.max() == 2


def test_pipeline_summary_records_the_settings_used(tmp_path):
    from skimage.io import imsave

    from napari_ihcseg.data.synthetic import make_synthetic_ihc
    from napari_ihcseg.pipeline import PipelineOptions, process_image

    folder = _checkpoint(tmp_path, instances={"min_size": 40, "mask_threshold": 0.6})
    image = tmp_path / "field.png"
    imsave(image, make_synthetic_ihc((64, 64), seed=0).image)
    tiles = InferenceConfig(tile=64, overlap=16, device="cpu")
    summary = process_image(image, tmp_path / "out", PipelineOptions(model=str(folder), inference=tiles))
    assert summary["instances"]["min_size"] == 40 and summary["instances"]["mask_threshold"] == 0.6
    summary = process_image(image, tmp_path / "out2",
                            PipelineOptions(model=str(folder), inference=tiles.replace(min_size=5)))
    assert summary["instances"]["min_size"] == 5 and summary["options"]["inference"]["min_size"] == 5


def test_batch_resume_redoes_an_image_when_the_checkpoint_is_tuned_again(tmp_path):
    from skimage.io import imsave

    from napari_ihcseg.data.synthetic import make_synthetic_ihc
    from napari_ihcseg.models import set_instance_params
    from napari_ihcseg.io import image_stem
    from napari_ihcseg.pipeline import PipelineOptions, outputs_complete, process_image

    folder = _checkpoint(tmp_path, instances={"min_size": 40})
    image = tmp_path / "field.png"
    imsave(image, make_synthetic_ihc((64, 64), seed=0).image)
    options = PipelineOptions(model=str(folder), inference=InferenceConfig(tile=64, overlap=16, device="cpu"))
    process_image(image, tmp_path / "out", options)
    assert outputs_complete(tmp_path / "out", image_stem(image), options)
    set_instance_params(folder, {"min_size": 60})
    assert not outputs_complete(tmp_path / "out", image_stem(image), options)
    # A value the user sets does not depend on the checkpoint.
    fixed = PipelineOptions(model=str(folder),
                            inference=InferenceConfig(tile=64, overlap=16, device="cpu", min_size=60))
    process_image(image, tmp_path / "out2", fixed)
    set_instance_params(folder, {"min_size": 60, "contour_threshold": 0.3})
    assert not outputs_complete(tmp_path / "out2", image_stem(image), fixed)
    set_instance_params(folder, {"min_size": 20})  # the user's min_size wins; the thresholds are as before
    assert outputs_complete(tmp_path / "out2", image_stem(image), fixed)


def test_batch_resume_rescores_an_image_when_the_checkpoints_classifier_changes(tmp_path):
    from skimage.io import imsave

    from napari_ihcseg.data.synthetic import make_synthetic_ihc
    from napari_ihcseg.io import image_stem
    from napari_ihcseg.models import set_classifier
    from napari_ihcseg.pipeline import PipelineOptions, outputs_complete, process_image
    from napari_ihcseg.scoring import ScoringConfig
    from napari_ihcseg.scoring.classifier import LogisticModel, NucleusClassifier

    folder = _checkpoint(tmp_path)
    image = tmp_path / "field.png"
    imsave(image, make_synthetic_ihc((64, 64), seed=0).image)
    tiles = InferenceConfig(tile=64, overlap=16, device="cpu")
    scored = PipelineOptions(model=str(folder), inference=tiles, scoring=ScoringConfig(stain="ki67"))
    plain = PipelineOptions(model=str(folder), inference=tiles)
    process_image(image, tmp_path / "scored", scored)
    process_image(image, tmp_path / "plain", plain)
    stem = image_stem(image)
    assert outputs_complete(tmp_path / "scored", stem, scored) and outputs_complete(tmp_path / "plain", stem, plain)
    classifier = NucleusClassifier(LogisticModel(("dab_od_mean",), (0.2,), (0.001,), (1.0,), 0.0))
    set_classifier(folder, "ki67", classifier)
    assert not outputs_complete(tmp_path / "scored", stem, scored), "scores made without it are redone"
    assert outputs_complete(tmp_path / "plain", stem, plain), "labels alone do not depend on a classifier"
    process_image(image, tmp_path / "scored", scored)
    assert outputs_complete(tmp_path / "scored", stem, scored)
    set_classifier(folder, "ki67", None)                     # withdrawn: the scores are redone again
    assert not outputs_complete(tmp_path / "scored", stem, scored)


def test_a_batch_worker_reloads_a_checkpoint_that_was_tuned_again(tmp_path):
    from napari_ihcseg.batch.worker import worker_model
    from napari_ihcseg.models import set_instance_params
    from napari_ihcseg.pipeline import PipelineOptions

    threads = torch.get_num_threads()
    try:
        folder = _checkpoint(tmp_path, instances={"min_size": 40})
        options = PipelineOptions(model=str(folder), inference=InferenceConfig(device="cpu"))
        first, _ = worker_model(options)
        assert worker_model(options)[0] is first  # kept between slides
        set_instance_params(folder, {"min_size": 60})
        again, _ = worker_model(options)
        assert again is not first and again.checkpoint_info.instances == {"min_size": 60}
        from napari_ihcseg.models import set_classifier
        from napari_ihcseg.scoring.classifier import LogisticModel, NucleusClassifier

        set_classifier(folder, "ki67", NucleusClassifier(LogisticModel(("dab_od_mean",), (0.2,), (0.001,), (1.0,), 0.0)))
        recalibrated, _ = worker_model(options)
        assert recalibrated is not again and recalibrated.checkpoint_info.classifier("ki67") is not None
    finally:
        torch.set_num_threads(threads)


def _pairs(folder, seeds):
    from napari_ihcseg.pairs import save_pairs
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    for seed in seeds:
        field = make_synthetic_ihc((128, 128), seed=seed)
        save_pairs(folder, field.image, field.labels, name=f"field{seed}", stain="ki67")
    return folder


def test_cli_tune_updates_a_checkpoint_folder_and_copies_a_shipped_one(tmp_path, capsys):
    from napari_ihcseg.cli import main
    from napari_ihcseg.models import read_checkpoint_config, shipped_checkpoints

    pairs = _pairs(tmp_path / "pairs", [0, 1])
    folder = _checkpoint(tmp_path)
    weights = (folder / "weights.safetensors").read_bytes()
    assert main(["tune", str(pairs), "--model", str(folder), "--device", "cpu"]) == 0
    document = read_checkpoint_config(folder)
    assert set(document["instances"]) == {"mask_threshold", "contour_threshold", "min_size"}
    assert document["card"]["instances"]["images"] == 2
    assert (folder / "weights.safetensors").read_bytes() == weights
    assert f"min_size {document['instances']['min_size']}" in capsys.readouterr().out

    name, shipped = next(iter(shipped_checkpoints().items()))
    before = (shipped / "config.json").read_bytes()
    assert main(["tune", str(pairs), "--model", name, "--device", "cpu"]) == 2
    assert "give --out" in capsys.readouterr().err
    copy = tmp_path / "lab-copy"
    assert main(["tune", str(pairs), "--model", name, "--out", str(copy), "--device", "cpu"]) == 0
    assert (shipped / "config.json").read_bytes() == before, "the package's checkpoint is never changed"
    assert read_checkpoint_config(copy)["card"]["instances"]["images"] == 2
    assert main(["tune", str(pairs), "--model", name, "--out", str(copy)]) == 2  # refuses to overwrite
    assert "not an empty folder" in capsys.readouterr().err
    assert main(["tune", str(pairs), "--model", "r2unet-lite"]) == 2
    assert "untrained architecture" in capsys.readouterr().err
    assert main(["tune", str(tmp_path / "nothing"), "--model", str(folder)]) == 2
    # The package's checkpoints are never changed, whatever they are called; nothing is made inside them.
    assert main(["tune", str(pairs), "--model", str(shipped)]) == 2
    assert main(["tune", str(pairs), "--model", name, "--out", str(shipped.parent / "lab")]) == 2
    assert not (shipped.parent / "lab").exists()
    assert (shipped / "config.json").read_bytes() == before


def test_cli_tune_predicts_at_the_scale_segment_would_use(tmp_path, capsys, monkeypatch):
    """--scale 2 predicts the pairs at scale 2; the default, auto, asks the estimate segment uses, per image."""
    import napari_ihcseg.inference.autoscale as autoscale
    from napari_ihcseg.cli import main
    from napari_ihcseg.models import read_checkpoint_config

    pairs = _pairs(tmp_path / "pairs", [0, 1])
    folder = _checkpoint(tmp_path)
    assert main(["tune", str(pairs), "--model", str(folder), "--device", "cpu", "--scale", "2"]) == 0
    assert "predicted at scale 2 (2 images)" in capsys.readouterr().out
    assert read_checkpoint_config(folder)["card"]["instances"]["scales"] == {"2": 2}

    seen = []

    def estimate(image, model, **kwargs):
        seen.append(image.shape)
        return autoscale.ScaleEstimate(0.5, "nuclei", "scale 0.5: large nuclei")

    monkeypatch.setattr(autoscale, "estimate_scale", estimate)
    assert main(["tune", str(pairs), "--model", str(folder), "--device", "cpu"]) == 0
    assert "predicted at scale 0.5 (2 images)" in capsys.readouterr().out
    assert len(seen) == 2 and read_checkpoint_config(folder)["card"]["instances"]["scales"] == {"0.5": 2}
    assert main(["tune", str(pairs), "--model", str(folder), "--scale", "0"]) == 2
    assert "--scale: expected 'auto' or a number" in capsys.readouterr().err


def test_cli_tune_takes_the_scale_from_the_files_pixel_size_as_segment_does(tmp_path, capsys):
    """Images at 0.5 um for a model trained at 0.25 um: tuned at scale 2, as `ihcseg segment` will run them."""
    import tifffile

    from napari_ihcseg.cli import main
    from napari_ihcseg.data.synthetic import make_synthetic_ihc
    from napari_ihcseg.datasets import load_folder
    from napari_ihcseg.models import build_model, read_checkpoint_config, save_checkpoint

    folder = tmp_path / "lab"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for seed in (0, 1):
        field = make_synthetic_ihc((128, 128), seed=seed)
        tifffile.imwrite(folder / "images" / f"f{seed}.tif", field.image, photometric="rgb",
                         resolution=(2e4, 2e4), resolutionunit="CENTIMETER")  # 0.5 um
        tifffile.imwrite(folder / "masks" / f"f{seed}.tif", field.labels.astype(np.uint16))
    assert [s.pixel_size_um for s in load_folder(folder).samples] == [0.5, 0.5]
    checkpoint = save_checkpoint(build_model("r2unet-lite"), tmp_path / "ckpt",
                                 training={"pixel_size_um": 0.25, "nucleus_diameter_px": 24.0})
    assert main(["tune", str(folder), "--model", str(checkpoint), "--device", "cpu"]) == 0
    assert "predicted at scale 2 (2 images)" in capsys.readouterr().out
    assert read_checkpoint_config(checkpoint)["card"]["instances"]["scales"] == {"2": 2}


def test_cli_tune_names_a_skipped_pair_in_one_line_as_train_does(tmp_path, capsys):
    import tifffile

    from napari_ihcseg.cli import main

    pairs = _pairs(tmp_path / "pairs", [0, 1])
    mask = next((pairs / "masks").glob("*.tif"))
    tifffile.imwrite(mask, np.zeros((5, 5), np.uint32))  # a mask that does not fit its image
    assert main(["tune", str(pairs), "--model", str(_checkpoint(tmp_path)), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert f"skipped: {mask}: shape (5, 5) differs" in captured.err, captured.err
    assert "1 skipped" in captured.out and "UserWarning" not in captured.err


def test_cli_tune_leaves_no_copy_when_it_fails(tmp_path, monkeypatch, capsys):
    import napari_ihcseg.training.validate as validate
    from napari_ihcseg.cli import main

    pairs = _pairs(tmp_path / "pairs", [0])
    folder = _checkpoint(tmp_path)
    out = tmp_path / "copy"
    assert main(["tune", str(pairs), "--model", str(folder), "--out", str(out), "--device", "cuda:7"]) == 2
    assert "--device" in capsys.readouterr().err

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(validate, "tune_checkpoint", broken)
    assert main(["tune", str(pairs), "--model", str(folder), "--out", str(out), "--device", "cpu"]) == 130
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".copy")] == []
