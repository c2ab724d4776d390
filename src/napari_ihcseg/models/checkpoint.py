"""Checkpoints: a folder with ``weights.safetensors`` and ``config.json``.

``config.json`` records the architecture, its config, the sha256 of the weights
file, training metadata, model-card fields and the instance-step settings
tuned for the model (``instances``, see :func:`set_instance_params`) and the per-nucleus classifiers
calibrated for it (``classifiers``, see :func:`set_classifier`). Loading verifies the checksum
before reading any tensor and reads tensors with safetensors only: nothing is
ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import atomic_directory, atomic_path, write_json_atomic
from ..device import resolve_device
from ..instances.tuning import check_instance_params
from ..scoring.classifier import NucleusClassifier, check_classifiers
from ._base import SegmentationModel
from .registry import build_from_config, config_for_loading, get_spec, list_models

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
#: Version of the config.json layout written by :func:`save_checkpoint`.
FORMAT_VERSION = 1
#: Model-card fields every checkpoint has (``None`` / empty when unknown).
CARD_DEFAULTS: dict[str, Any] = {"data": None, "licence": None, "metrics": {}}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a loaded model's weights came from, for reports.

    Attributes
    ----------
    name : str
        The checkpoint folder's name.
    path : str
        The checkpoint folder.
    arch : str
        The registry name of the architecture.
    sha256 : str
        Checksum of ``weights.safetensors``.
    card : dict
        Model-card fields: ``data``, ``licence``, ``metrics`` and any others.
    training : dict
        Training metadata as saved.
    instances : dict
        The instance-step settings tuned for the model (any of
        ``mask_threshold``, ``contour_threshold``, ``min_size``); empty when
        none were tuned.
    classifiers : dict
        Stain -> positive/negative classifier calibrated for the model (the
        JSON of :class:`~napari_ihcseg.scoring.classifier.NucleusClassifier`).
    """

    name: str
    path: str
    arch: str
    sha256: str
    card: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    instances: dict[str, Any] = field(default_factory=dict)
    classifiers: dict[str, Any] = field(default_factory=dict)

    def classifier(self, stain: str) -> NucleusClassifier | None:
        """The classifier calibrated for ``stain``, or ``None``."""
        from ..scoring.presets import get_preset

        data = self.classifiers.get(get_preset(stain).name)
        return None if data is None else NucleusClassifier.from_dict(data)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_dict(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable: {exc}") from None


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
    training_dict = _json_dict(training, "training")
    card_dict = {**CARD_DEFAULTS, **_json_dict(card, "card")}
    instances_dict = check_instance_params(instances or {}, "instances")

    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if weights_dtype is not None:
        tensors = _cast_floating(tensors, weights_dtype)
    with atomic_directory(folder, overwrite=True) as staging:
        staging.mkdir()
        _carry_over(folder, staging)
        with atomic_path(staging / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata=_weights_metadata(model.arch))
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


def _weights_metadata(arch: str) -> dict[str, str]:
    """The header metadata of ``weights.safetensors``: one key, so the file's bytes are reproducible.

    safetensors writes its metadata map in hash order, which changes from
    call to call; with two keys the same tensors could give two different
    files (and sha256s). One key holding sorted JSON always gives one.
    """
    return {"napari_ihcseg": json.dumps({"arch": arch, "format_version": FORMAT_VERSION}, sort_keys=True)}


def _package_version() -> str:
    from napari_ihcseg import __version__

    return __version__


def read_checkpoint_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint folder's ``config.json`` (weights untouched).

    Raises
    ------
    ValueError
        If the folder or the file is missing, the JSON is malformed, a
        required key is absent, or the architecture is not registered.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a checkpoint folder (expected a folder with {CONFIG_FILE} and {WEIGHTS_FILE})")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise ValueError(f"{config_path}: missing; a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{config_path}: expected a JSON object, got {type(document).__name__}")
    missing = [k for k in ("arch", "config", "sha256") if k not in document]
    if missing:
        raise ValueError(f"{config_path}: missing key(s) {', '.join(missing)}")
    version = document.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{config_path}: checkpoint format {version!r} is newer than this version of napari-ihcseg "
            f"reads (up to {FORMAT_VERSION}); update napari-ihcseg"
        )
    if document["arch"] not in list_models():
        raise ValueError(
            f"{config_path}: unknown architecture {document['arch']!r}; valid names: {', '.join(list_models())}"
        )
    for key in ("training", "card", "instances", "classifiers"):
        if not isinstance(document.setdefault(key, {}), dict):
            raise ValueError(f"{config_path}: {key!r} must be a JSON object")
    document["card"] = {**CARD_DEFAULTS, **document["card"]}
    document["instances"] = check_instance_params(document["instances"], f"{config_path}: 'instances'")
    document["classifiers"] = check_classifiers(document["classifiers"], f"{config_path}: classifiers")
    return document


def set_instance_params(path: str | os.PathLike, params: Mapping[str, Any], *,
                        tuning: Mapping[str, Any] | None = None) -> Path:
    """Store tuned instance-step settings in a checkpoint's ``config.json``.

    The weights and their checksum are untouched; the file is rewritten
    atomically, so a crash leaves the old or the new version, never a mix.
    Inference uses these settings wherever the user leaves them unset.

    Parameters
    ----------
    path : path-like
        A checkpoint folder.
    params : dict
        Any of ``mask_threshold``, ``contour_threshold``, ``min_size``; they
        replace the settings stored before.
    tuning : dict, optional
        How they were chosen (objective, score, images), kept in the model
        card under ``instances``.

    Returns
    -------
    Path
        The checkpoint folder.

    Examples
    --------
    >>> import tempfile
    >>> from napari_ihcseg.models import build_model
    >>> folder = save_checkpoint(build_model("r2unet-lite"), Path(tempfile.mkdtemp()) / "demo")
    >>> _ = set_instance_params(folder, {"min_size": 60})
    >>> read_checkpoint_config(folder)["instances"]
    {'min_size': 60}
    """
    folder = Path(path).expanduser()
    document = read_checkpoint_config(folder)
    document["instances"] = check_instance_params(params, "instances")
    if tuning is not None:
        document["card"]["instances"] = _json_dict(tuning, "tuning")
    write_json_atomic(folder / CONFIG_FILE, document, overwrite=True)
    return folder


def set_classifier(path: str | os.PathLike, stain: str, classifier: NucleusClassifier | None, *,
                   calibration: Mapping[str, Any] | None = None) -> Path:
    """Store (or with ``None`` remove) a stain's nucleus classifier in a checkpoint's ``config.json``.

    Written atomically like :func:`set_instance_params`; the weights are
    untouched. ``calibration`` (data, figures) goes to the card under
    ``classifiers``. Scoring uses the classifier unless the user sets thresholds.
    """
    from ..scoring.presets import get_preset

    folder = Path(path).expanduser()
    document = read_checkpoint_config(folder)
    key = get_preset(stain).name
    document["classifiers"].pop(key, None)
    document["card"].setdefault("classifiers", {}).pop(key, None)
    if classifier is not None:
        document["classifiers"][key] = classifier.to_dict()
        if calibration is not None:
            document["card"]["classifiers"][key] = _json_dict(calibration, "calibration")
    write_json_atomic(folder / CONFIG_FILE, document, overwrite=True)
    return folder


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
    if not weights_path.is_file():
        raise ValueError(f"{weights_path}: missing; the checkpoint has no weights file")
    actual = sha256_file(weights_path)
    if actual != document["sha256"]:
        raise ValueError(
            f"{weights_path}: checksum mismatch (sha256 {actual}, but {config_path.name} records "
            f"{document['sha256']}); the file is corrupt or was modified, refusing to load it"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    # The sizes config.json declares are checked against the weights file's header on a
    # model without memory, so a wrong or hostile config never allocates.
    _check_sizes(arch, config, weights_path)
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({exc})") from None
    model = build_from_config(arch, config)
    _load_state(model, state, weights_path, arch)
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


_STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _cast_floating(tensors: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    """Floating tensors in ``dtype`` (a storage type); others unchanged."""
    if dtype not in _STORAGE_DTYPES:
        raise ValueError(f"weights_dtype must be one of {', '.join(_STORAGE_DTYPES)}, not {dtype!r}")
    target = _STORAGE_DTYPES[dtype]
    out = {}
    for key, value in tensors.items():
        if value.is_floating_point():
            cast = value.to(target)
            if not torch.isfinite(cast).all() and torch.isfinite(value).all():
                raise ValueError(f"{key}: values out of the range of {dtype}; store the weights in float32")
            value = cast.contiguous()
        out[key] = value
    return out


def _header_shapes(weights_path: Path) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in a safetensors file, from its header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as fh:
            return {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({exc})") from None


def _check_sizes(arch: str, config, weights_path: Path) -> None:
    """Refuse a config whose model would not fit the weights, before any memory is allocated."""
    file_shapes = _header_shapes(weights_path)
    try:
        with torch.device("meta"):
            skeleton = build_from_config(arch, config)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{weights_path.parent / CONFIG_FILE}: cannot build {arch!r} from its config "
                         f"({' '.join(str(exc).split())})") from None
    own = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    _compare_shapes(own, file_shapes, weights_path, arch)


def _compare_shapes(own: dict, state: dict, weights_path: Path, arch: str) -> None:
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k]) != tuple(state[k]))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise ValueError(
            f"{weights_path}: the weights do not match architecture {arch!r} and the config in "
            f"{CONFIG_FILE}: {'; '.join(parts)}"
        )


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], weights_path: Path, arch: str) -> None:
    _compare_shapes({k: v.shape for k, v in model.state_dict().items()},
                    {k: v.shape for k, v in state.items()}, weights_path, arch)
    model.load_state_dict(state, strict=True)
