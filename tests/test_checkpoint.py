"""Checkpoint folders: round trips, checksum and file errors, shipped checkpoints, load_model."""

from __future__ import annotations

import hashlib
import json
import pickle

import pytest
import torch

from napari_ihcseg.models import (
    build_model,
    default_checkpoint_name,
    list_models,
    load_checkpoint,
    load_model,
    read_checkpoint_config,
    save_checkpoint,
    shipped_checkpoints,
)
from napari_ihcseg.models import shipped as shipped_module

#: Small configs of every architecture, so that round trips stay fast.
TINY = {
    "r2unet": dict(filters=(4, 8, 8, 8, 8, 8), recur_num=2),
    "r2unet-lite": dict(filters=(4, 8, 8, 8, 8, 8)),
    "harunet": dict(encoder_mid=(4,) * 6, encoder_out=(8,) * 6, decoder_mid=(4,) * 5, decoder_out=(8,) * 5),
    "harunet-lite": dict(encoder_mid=(4,) * 6, encoder_out=(8,) * 6, decoder_mid=(4,) * 5, decoder_out=(8,) * 5),
    "unet-resnet50": dict(encoder_depths=(1, 1, 1, 1), decoder_channels=(16, 8, 8, 8, 8)),
}


pytestmark = pytest.mark.usefixtures("torch_seeded_one_thread")


def tiny(name: str) -> torch.nn.Module:
    """A small model whose batch-norm statistics have moved off their defaults."""
    model = build_model(name, **TINY[name])
    with torch.no_grad():
        model.train()(torch.rand(2, 3, 32, 32))
    return model.eval()


def saved(tmp_path, name="harunet-lite", folder="ckpt", **kwargs):
    return save_checkpoint(tiny(name), tmp_path / folder, **kwargs)


@pytest.mark.parametrize("name", list_models())
def test_round_trip_gives_identical_outputs(tmp_path, name):
    model = tiny(name)
    folder = save_checkpoint(model, tmp_path / name, training={"epochs": 3}, card={"licence": "CC-BY-4.0"})
    loaded = load_checkpoint(folder, device="cpu")
    assert loaded.arch == name and loaded.config == model.config
    assert not loaded.training and loaded.device.type == "cpu"
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            assert torch.equal(a, b)
    info = loaded.checkpoint_info
    assert (info.name, info.arch, info.path) == (name, name, str(folder))
    assert info.card["licence"] == "CC-BY-4.0" and info.training == {"epochs": 3}


def test_float16_storage_halves_the_file_and_loads_back_in_float32(tmp_path):
    model = tiny("r2unet-lite")
    full = save_checkpoint(model, tmp_path / "fp32")
    half = save_checkpoint(model, tmp_path / "fp16", weights_dtype="float16")
    size = lambda folder: (folder / "weights.safetensors").stat().st_size  # noqa: E731
    float_bytes = sum(v.numel() * 4 for v in model.state_dict().values() if v.is_floating_point())
    # every float in 2 bytes instead of 4 (the header differs by a little padding)
    assert abs(size(full) - size(half) - float_bytes // 2) < 1024
    loaded = load_checkpoint(half, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x)):
            assert torch.allclose(torch.sigmoid(a), torch.sigmoid(b), atol=5e-3)
    with pytest.raises(ValueError, match="weights_dtype"):
        save_checkpoint(model, tmp_path / "x", weights_dtype="int8")
    big = tiny("r2unet-lite")
    with torch.no_grad():
        next(big.parameters()).fill_(1e6)   # beyond float16's range
    with pytest.raises(ValueError, match="out of the range of float16"):
        save_checkpoint(big, tmp_path / "y", weights_dtype="float16")


def test_config_json_records_what_the_contract_promises(tmp_path):
    folder = saved(tmp_path, "r2unet-lite", card={"metrics": {"dice": 0.8}, "data": "synthetic"})
    document = json.loads((folder / "config.json").read_text())
    assert {"format_version", "arch", "config", "sha256", "training", "card"} <= set(document)
    assert document["arch"] == "r2unet-lite"
    assert document["config"]["filters"] == [4, 8, 8, 8, 8, 8]
    assert document["sha256"] == hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    assert document["card"] == {"data": "synthetic", "licence": None, "metrics": {"dice": 0.8}}
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.safetensors"]


def test_saving_the_same_weights_again_gives_the_same_file_and_sha256(tmp_path):
    # Re-shipping a checkpoint (a new card, say) must not change its weights' checksum. safetensors
    # writes a metadata map in hash order, which varies from call to call: 12 saves catch that
    # with a two-key map but for 1 time in 2 048.
    model = tiny("r2unet-lite")
    shas = {json.loads((save_checkpoint(model, tmp_path / str(i), weights_dtype="float16") / "config.json")
                       .read_text())["sha256"] for i in range(12)}
    assert len(shas) == 1
    reloaded = save_checkpoint(load_checkpoint(tmp_path / "0", device="cpu"), tmp_path / "again",
                               weights_dtype="float16")
    assert (reloaded / "weights.safetensors").read_bytes() == (tmp_path / "0" / "weights.safetensors").read_bytes()


def test_refuses_to_overwrite_unless_asked(tmp_path):
    folder = saved(tmp_path)
    before = (folder / "config.json").read_text()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_checkpoint(tiny("r2unet-lite"), folder)
    assert (folder / "config.json").read_text() == before
    save_checkpoint(tiny("r2unet-lite"), folder, overwrite=True)
    assert load_checkpoint(folder, device="cpu").arch == "r2unet-lite"


def test_training_metadata_must_be_json(tmp_path):
    with pytest.raises(ValueError, match="training must be JSON-serialisable"):
        save_checkpoint(tiny("r2unet-lite"), tmp_path / "c", training={"optimizer": object()})
    assert not (tmp_path / "c").exists()


def test_only_registry_models_can_be_saved(tmp_path):
    with pytest.raises(TypeError, match="build_model"):
        save_checkpoint(torch.nn.Conv2d(3, 1, 1), tmp_path / "c")


def test_tampered_weights_are_refused_with_a_checksum_error(tmp_path):
    folder = saved(tmp_path)
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0x01  # one bit inside the tensor data
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"weights\.safetensors: checksum mismatch"):
        load_checkpoint(folder, device="cpu")


def test_missing_or_corrupt_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere: not a checkpoint folder"):
        load_checkpoint(tmp_path / "nowhere", device="cpu")
    folder = saved(tmp_path)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(ValueError, match=r"weights\.safetensors: missing"):
        load_checkpoint(folder, device="cpu")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        load_checkpoint(folder, device="cpu")
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match=r"config\.json: missing"):
        load_checkpoint(folder, device="cpu")


def _edit_config(folder, **changes):
    document = json.loads((folder / "config.json").read_text())
    document.update(changes)
    (folder / "config.json").write_text(json.dumps(document))


def test_wrong_architecture_in_config_is_a_clear_error(tmp_path):
    folder = saved(tmp_path, "harunet-lite")
    _edit_config(folder, arch="unet")
    with pytest.raises(ValueError, match=r"config\.json: unknown architecture 'unet'; valid names: r2unet"):
        load_checkpoint(folder, device="cpu")
    _edit_config(folder, arch="r2unet-lite", config={})
    with pytest.raises(ValueError, match=r"config\.json: says the model is 'r2unet-lite', but weights\.safetensors "
                                         r"holds 'harunet-lite' weights"):
        load_checkpoint(folder, device="cpu")
    # Weights without the architecture in their header are still checked tensor by tensor.
    from safetensors.torch import load_file, save_file

    weights = folder / "weights.safetensors"
    save_file(load_file(str(weights)), str(weights))
    _edit_config(folder, arch="r2unet-lite", config={},
                 sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    with pytest.raises(ValueError, match=r"weights\.safetensors: the weights do not match architecture 'r2unet-lite'"):
        load_checkpoint(folder, device="cpu")
    _edit_config(folder, arch="harunet-lite", config={"fusion_hiden": 3})
    with pytest.raises(ValueError, match=r"config\.json: unknown option\(s\) 'fusion_hiden'"):
        load_checkpoint(folder, device="cpu")


def test_a_config_json_edited_in_a_setting_that_shapes_no_tensor_is_refused(tmp_path):
    """The activation changes every output but no tensor: the weights' header records the config, under the sha256."""
    folder = saved(tmp_path, "r2unet-lite")
    config = json.loads((folder / "config.json").read_text())["config"]
    assert config["activation"] == "gelu"
    _edit_config(folder, config={**config, "activation": "relu"})
    with pytest.raises(ValueError, match=r"config\.json: its model config differs from the one weights\.safetensors "
                                         r"was saved with \(activation 'relu' against 'gelu'\)"):
        load_checkpoint(folder, device="cpu")
    _edit_config(folder, config=config)
    assert load_checkpoint(folder, device="cpu").config.activation == "gelu"


def test_weights_saved_without_a_config_in_their_header_still_load(tmp_path):
    """Checkpoints written before the header held the config (the shipped ones among them) load as before."""
    from safetensors.torch import load_file, save_file

    from napari_ihcseg.models.weights_file import weights_metadata

    folder = saved(tmp_path, "r2unet-lite")
    weights = folder / "weights.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata=weights_metadata("r2unet-lite"))
    _edit_config(folder, sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    assert load_checkpoint(folder, device="cpu").arch == "r2unet-lite"
    for name, path in shipped_checkpoints().items():
        assert load_checkpoint(path, device="cpu").checkpoint_info.name == name


def test_a_config_naming_a_sibling_architecture_of_the_same_shapes_is_refused(tmp_path):
    """r2unet and r2unet-lite may share tensor names; the weights' header says which they are."""
    folder = saved(tmp_path, "r2unet-lite")
    document = json.loads((folder / "config.json").read_text())
    _edit_config(folder, arch="r2unet", config=document["config"])
    with pytest.raises(ValueError, match=r"says the model is 'r2unet', but weights\.safetensors holds 'r2unet-lite'"):
        load_checkpoint(folder, device="cpu")


def test_never_unpickles(tmp_path, monkeypatch):
    folder = saved(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    assert load_checkpoint(folder, device="cpu").arch == "harunet-lite"
    # a pickle in place of the weights, with a matching checksum, is still refused
    payload = pickle.dumps({"pixel_mean": torch.zeros(3)})
    (folder / "weights.safetensors").write_bytes(payload)
    _edit_config(folder, sha256=hashlib.sha256(payload).hexdigest())
    with pytest.raises(ValueError, match=r"weights\.safetensors: not a readable safetensors file"):
        load_checkpoint(folder, device="cpu")


def test_unknown_device_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown device"):
        load_checkpoint(saved(tmp_path), device="tpu")


def test_checkpoint_ignores_the_build_time_encoder_weights_path(tmp_path):
    from safetensors.torch import save_file

    encoder_file = tmp_path / "resnet.safetensors"
    base = build_model("unet-resnet50", **TINY["unet-resnet50"])
    save_file(base.encoder.state_dict(), str(encoder_file))
    model = build_model("unet-resnet50", **TINY["unet-resnet50"], encoder_weights=str(encoder_file))
    folder = save_checkpoint(model, tmp_path / "ckpt")
    assert read_checkpoint_config(folder)["config"]["encoder_weights"] == str(encoder_file)
    encoder_file.unlink()  # the checkpoint holds every weight; the original file is not needed
    assert load_checkpoint(folder, device="cpu").config.encoder_weights is None


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    root = tmp_path / "weights"
    monkeypatch.setattr(shipped_module, "WEIGHTS_DIR", root)
    return root


def test_no_shipped_checkpoints(weights_dir):
    assert shipped_checkpoints() == {}
    assert default_checkpoint_name("cpu") is None
    weights_dir.mkdir()
    (weights_dir / "not-a-checkpoint").mkdir()
    assert shipped_checkpoints() == {}
    assert default_checkpoint_name("cpu") is None


def test_default_checkpoint_depends_on_device_and_metrics(weights_dir):
    save_checkpoint(tiny("r2unet"), weights_dir / "r2unet-v1", card={"metrics": {"aji": 0.6}})
    save_checkpoint(tiny("harunet-lite"), weights_dir / "harunet-lite-v1", card={"metrics": {"aji": 0.5}})
    # the figures may also sit under validation.metrics with a val_ prefix
    card = {"validation": {"metrics": {"val_aji": 0.55}}}
    save_checkpoint(tiny("r2unet-lite"), weights_dir / "r2unet-lite-v1", card=card)
    assert list(shipped_checkpoints()) == ["harunet-lite-v1", "r2unet-lite-v1", "r2unet-v1"]
    assert default_checkpoint_name("cpu") == "r2unet-lite-v1"
    assert default_checkpoint_name(torch.device("cuda")) == "r2unet-v1"
    save_checkpoint(tiny("harunet"), weights_dir / "harunet-v1", card={"recommended_for": ["cpu"]})
    assert default_checkpoint_name("cpu") == "harunet-v1"


def test_load_model_from_name_folder_or_architecture(weights_dir, tmp_path):
    save_checkpoint(tiny("harunet-lite"), weights_dir / "harunet-lite-v1")
    model = load_model("harunet-lite-v1", device="cpu")
    assert model.checkpoint_info.name == "harunet-lite-v1" and not model.training
    elsewhere = saved(tmp_path, "r2unet-lite", folder="mine")
    assert load_model(str(elsewhere), device="cpu").checkpoint_info.path == str(elsewhere)
    with pytest.warns(UserWarning, match="random weights"):
        untrained = load_model("r2unet-lite", device="cpu")
    assert untrained.checkpoint_info is None and not untrained.training
    with pytest.raises(ValueError, match=r"'nope' is not a shipped checkpoint \(harunet-lite-v1\).*r2unet-lite"):
        load_model("nope", device="cpu")


def test_checkpoint_files_get_the_usual_permissions(tmp_path):
    # A model folder on a shared lab server must be readable by colleagues: safetensors
    # writes its file as 0600, the atomic write gives it the permissions of the umask.
    import os

    old = os.umask(0o022)
    try:
        folder = save_checkpoint(tiny("r2unet-lite"), tmp_path / "shared")
    finally:
        os.umask(old)
    for name in ("weights.safetensors", "config.json"):
        assert (folder / name).stat().st_mode & 0o777 == 0o644, name
