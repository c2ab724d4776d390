"""Device choice: CUDA, then MPS, then CPU; a missing device fails clearly."""

import pytest

torch = pytest.importorskip("torch")

from napari_ihcseg.device import available_devices, describe_device, resolve_device  # noqa: E402


def test_auto_picks_the_best_available():
    assert resolve_device("auto").type == available_devices()[0]
    assert available_devices()[-1] == "cpu"


def test_cpu_always_works():
    dev = resolve_device("cpu")
    assert dev == torch.device("cpu")
    assert describe_device(dev).startswith("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_fails_clearly():
    with pytest.raises(ValueError, match="'cuda' was requested but is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:", "cuda:-1", "gpu0"])
def test_unknown_device_lists_choices(name):
    """A misspelt index is named like an unknown type (it used to raise int()'s or torch's own message)."""
    with pytest.raises(ValueError, match=rf"unknown device '{name}'; choose auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)


def test_device_names_are_checked_by_configs_without_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom napari_ihcseg.inference.config import InferenceConfig\n"
            "try:\n    InferenceConfig(device='cuda:x')\nexcept ValueError as e:\n    print(e)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0].startswith("unknown device 'cuda:x'") and out[1] == "False", out


def test_auto_falls_back_to_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
