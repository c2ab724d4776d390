"""Checkpoints: a folder with ``weights.safetensors`` and ``config.json``.

:func:`save_checkpoint` writes both files as one unit; :func:`load_checkpoint`
verifies the checksum before reading any tensor and reads tensors with
safetensors only: nothing is ever unpickled. What ``config.json`` records, and
the fields edited in place, are in :mod:`~napari_ihcseg.models.checkpoint_config`
(its names are importable from here too); the weights file's reproducible
bytes and size checks in :mod:`~napari_ihcseg.models.weights_file`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import atomic_directory, atomic_path, write_json_atomic
from ..device import resolve_device
from ..instances.tuning import check_instance_params
from ._base import SegmentationModel
from .checkpoint_config import (
    CARD_DEFAULTS,
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    CheckpointInfo,
    json_dict,
    read_checkpoint_config,
    set_classifier,
    set_instance_params,
)
from .registry import build_from_config, config_for_loading, get_spec
from .weights_file import cast_floating, check_sizes, load_state, sha256_file, weights_metadata

__all__ = ["CARD_DEFAULTS", "CONFIG_FILE", "FORMAT_VERSION", "WEIGHTS_FILE", "CheckpointInfo", "load_checkpoint",
           "read_checkpoint_config", "save_checkpoint", "set_classifier", "set_instance_params", "sha256_file",
           "verify_weights"]


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    training: Mapping[str, Any] | None = None,
    card: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    weights_dtype: str | None = None,
    instances: Mapping[str, Any] | None = None,
) -> Path:
    """Save a registered model as a checkpoint folder.

    Parameters
    ----------
    model : SegmentationModel
        A model built by :func:`build_model` (it has ``.arch`` and ``.config``),
        or the ``torch.compile`` wrapper of one.
    path : path-like
        The checkpoint folder; created if needed.
    training : dict, optional
        JSON-serialisable training metadata (epochs, losses, data split, …).
    card : dict, optional
        Model-card fields; ``data``, ``licence`` and ``metrics`` are always
        present (``None`` / ``{}`` unless given). ``metrics`` may hold
        validation figures such as ``aji`` and ``dice``, which
        :func:`default_checkpoint_name` uses to rank checkpoints.
    overwrite : bool
        Replace an existing checkpoint in ``path``. Otherwise an existing one
        raises :class:`FileExistsError` before anything is written. The two
        files are written into a new folder that then replaces ``path`` in one
        rename (other files in ``path`` are kept), so a crash leaves the old
        checkpoint or the new one, never new weights beside an old
        ``config.json``.
    weights_dtype : {None, "float32", "float16", "bfloat16"}
        Store the floating-point tensors in this type (``None``: as they
        are). ``"float16"`` halves the file for shipping; loading casts the
        tensors back to the model's own type. A tensor that float16 cannot
        hold (overflow) raises :class:`ValueError`.
    instances : dict, optional
        Instance-step settings tuned for the model (see
        :func:`set_instance_params`).

    Returns
    -------
    Path
        The checkpoint folder.

    Examples
    --------
    >>> import tempfile
    >>> from napari_ihcseg.models import build_model
    >>> folder = Path(tempfile.mkdtemp()) / "r2unet-lite-demo"
    >>> save_checkpoint(build_model("r2unet-lite"), folder, card={"licence": "CC-BY-4.0"}) == folder
    True
    >>> sorted(p.name for p in folder.iterdir())
    ['config.json', 'weights.safetensors']

    The weights file is reproducible: the same tensors and dtype give the
    same bytes, hence the same sha256.
    """
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    if not isinstance(model, SegmentationModel) or not model.arch:
        raise TypeError("save_checkpoint needs a model built by napari_ihcseg.models.build_model")
    get_spec(model.arch)
    folder = Path(path).expanduser()
    weights_path, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    if not overwrite:
        for existing in (weights_path, config_path):
            if existing.exists():
                raise FileExistsError(
                    f"{existing}: a checkpoint already exists here; pass overwrite=True to replace it"
                )
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder")
    training_dict = json_dict(training, "training")
    card_dict = {**CARD_DEFAULTS, **json_dict(card, "card")}
    instances_dict = check_instance_params(instances or {}, "instances")

    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if weights_dtype is not None:
        tensors = cast_floating(tensors, weights_dtype)
    with atomic_directory(folder, overwrite=True) as staging:
        staging.mkdir()
        _carry_over(folder, staging)
        with atomic_path(staging / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata=weights_metadata(model.arch, model.config.to_dict()))
        document = {
            "format_version": FORMAT_VERSION,
            "arch": model.arch,
            "config": model.config.to_dict(),
            "sha256": sha256_file(staging / WEIGHTS_FILE),
            "weights": WEIGHTS_FILE,
            "training": training_dict,
            "card": card_dict,
            "instances": instances_dict,
            "versions": {"napari_ihcseg": _package_version(), "torch": torch.__version__},
        }
        write_json_atomic(staging / CONFIG_FILE, document)
    return folder


def _carry_over(folder: Path, staging: Path) -> None:
    """Link (or copy) the files of ``folder`` other than the checkpoint's own into ``staging``."""
    import shutil

    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.name in (WEIGHTS_FILE, CONFIG_FILE):
            continue
        target = staging / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(source, target) -> None:
    import shutil

    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, target, follow_symlinks=False)


def _package_version() -> str:
    from napari_ihcseg import __version__

    return __version__


def verify_weights(folder: Path, document: dict) -> str:
    """Check that a checkpoint's weights file is there and is the one its config records; return its sha256.

    ``document`` is the folder's config as :func:`read_checkpoint_config`
    reads it.

    Raises
    ------
    ValueError
        Naming the weights file: missing, or a *checksum* mismatch.
    """
    weights_path = Path(folder) / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ValueError(f"{weights_path}: missing; the checkpoint has no weights file")
    actual = sha256_file(weights_path)
    if actual != document["sha256"]:
        raise ValueError(
            f"{weights_path}: checksum mismatch (sha256 {actual}, but {CONFIG_FILE} records "
            f"{document['sha256']}); the file is corrupt or was modified, refusing to load it"
        )
    return actual


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "auto") -> SegmentationModel:
    """Load a checkpoint folder into a model in eval mode.

    Parameters
    ----------
    path : path-like
        A folder written by :func:`save_checkpoint`.
    device : str or torch.device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.

    Returns
    -------
    SegmentationModel
        In eval mode on ``device``, with ``.checkpoint_info`` set.

    Raises
    ------
    ValueError
        If a file is missing or corrupt, the sha256 of ``weights.safetensors``
        does not match ``config.json`` (a *checksum* error naming the file), or
        the weights do not fit the recorded architecture.

    Examples
    --------
    >>> import tempfile
    >>> from napari_ihcseg.models import build_model
    >>> folder = save_checkpoint(build_model("harunet-lite"), Path(tempfile.mkdtemp()) / "demo")
    >>> model = load_checkpoint(folder, device="cpu")
    >>> model.arch, model.training, model.checkpoint_info.name
    ('harunet-lite', False, 'demo')
    """
    folder = Path(path).expanduser()
    document = read_checkpoint_config(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    target = resolve_device(device)
    arch = document["arch"]
    config = config_for_loading(arch, document["config"], source=str(config_path))
    actual = verify_weights(folder, document)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    # The sizes config.json declares are checked against the weights file's header on a
    # model without memory, so a wrong or hostile config never allocates.
    check_sizes(arch, config, weights_path)
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    model = build_from_config(arch, config)
    load_state(model, state, weights_path, arch)
    model.checkpoint_info = CheckpointInfo(
        name=folder.name,
        path=str(folder),
        arch=arch,
        sha256=actual,
        card=document["card"],
        training=document["training"],
        instances=document["instances"],
        classifiers=document["classifiers"],
    )
    return model.to(target).eval()
