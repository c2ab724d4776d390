"""Shared test fixtures."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

#: ../shared/data beside the repository, or $IHCSEG_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("IHCSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real nucleus data sets; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set IHCSEG_SHARED_DATA)")
    return SHARED_DATA


def load_script(relative: str):
    """A script of the repository (``scripts/NAME.py``, ``benchmarks/NAME.py``) loaded as a module."""
    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def train_recipe():
    """``scripts/train_default.py``, the recipe of the shipped weights, as a module."""
    return load_script("scripts/train_default.py")


@pytest.fixture(scope="session")
def benchmark():
    """``benchmark("evaluate_ki67")`` loads ``benchmarks/evaluate_ki67.py`` as a module."""
    return lambda name: load_script(f"benchmarks/{name}.py")


def torchvision_resnet_state(depths=(1, 1, 1, 1)):
    """A ResNet encoder and its state dict as torchvision writes it (with the ``fc`` classifier).

    Returns ``(encoder, state)``: what ImageNet weights in a file look like, and the encoder they hold.
    """
    import torch

    from napari_ihcseg.models.resnet import ResNetEncoder

    encoder = ResNetEncoder(depths)
    state = {k: v.clone() for k, v in encoder.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 2048), torch.zeros(1000)
    return encoder, state


@pytest.fixture
def torch_seeded_one_thread():
    """Torch seeded with 0 and held to one intra-op thread during the test.

    On a small shared CPU, two spinning OpenMP threads slow tiny convolutions
    down many times over. Use it for a whole module with
    ``pytestmark = pytest.mark.usefixtures("torch_seeded_one_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    """Mark tests that use the real data so they can be selected with -m."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


@pytest.fixture
def ihc():
    """A 256² crop of scikit-image's IHC sample."""
    from skimage import data

    return data.immunohistochemistry()[:256, :256]


@pytest.fixture
def store(tmp_path):
    """A recovery store for unsaved edits, in the test's own folder."""
    from napari_ihcseg.editing.recovery import RecoveryStore

    return RecoveryStore(tmp_path / "recovery")
