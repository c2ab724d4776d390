"""Checkpoints shipped with the package, and loading a model from any spec.

Shipped checkpoints are folders under ``napari_ihcseg/weights/`` (one per
checkpoint, named by the folder), each holding ``config.json`` and
``weights.safetensors``. The folder may be absent or empty.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch

from ..device import resolve_device
from ._base import SegmentationModel
from .checkpoint import CONFIG_FILE, load_checkpoint, read_checkpoint_config
from .registry import build_model, get_spec, list_models

#: Where shipped checkpoints live; read at call time.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
#: Card metrics that rank checkpoints of the same tier, best first (higher is better).
RANKING_METRICS = ("aji", "dice")


def shipped_checkpoints() -> dict[str, Path]:
    """The checkpoints shipped with the package.

    Returns
    -------
    dict of str to Path
        Checkpoint name (its folder's name) → folder, sorted by name; empty
        when none are shipped.

    Examples
    --------
    >>> isinstance(shipped_checkpoints(), dict)
    True
    """
    root = Path(WEIGHTS_DIR)
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and (p / CONFIG_FILE).is_file()}


def is_shipped_path(path: str | os.PathLike) -> bool:
    """True when ``path`` lies in the package's own checkpoints, which are never to be changed.

    >>> is_shipped_path(Path(WEIGHTS_DIR) / "anything"), is_shipped_path("/tmp/lab-model")
    (True, False)
    """
    try:
        Path(path).expanduser().resolve().relative_to(Path(WEIGHTS_DIR).resolve())
    except ValueError:
        return False
    return True


def _device_type(device: str | torch.device) -> str:
    if isinstance(device, torch.device):
        return device.type
    name = str(device).strip().lower()
    if name == "auto":
        return resolve_device("auto").type
    return name.split(":", 1)[0]


def _rank(name: str, folder: Path, device_type: str) -> tuple:
    """Sort key: lower is better."""
    document = read_checkpoint_config(folder)
    card = document["card"]
    recommended = card.get("recommended_for") or []
    lite = get_spec(document["arch"]).lite
    # Tier 0: the card recommends it for this device; tier 1: lite on CPU/MPS, full on CUDA.
    if device_type in recommended:
        tier = 0
    elif lite == (device_type != "cuda"):
        tier = 1
    else:
        tier = 2
    scores = []
    for key in RANKING_METRICS:
        value = _metric(card, key)
        scores.append(math.inf if value is None else -value)
    return (tier, *scores, name)


def _metric(card: dict, key: str) -> float | None:
    """A validation figure from the card: ``metrics`` (or ``validation.metrics``), as ``key`` or ``val_<key>``."""
    validation = card.get("validation")
    sources = [card.get("metrics"), validation.get("metrics") if isinstance(validation, dict) else None]
    for metrics in sources:
        if not isinstance(metrics, dict):
            continue
        for name in (key, f"val_{key}"):
            value = metrics.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return float(value)
    return None


def default_checkpoint_name(device: str | torch.device = "auto") -> str | None:
    """The best shipped checkpoint for a device, or ``None`` if none is shipped.

    Checkpoints whose card lists the device type under ``recommended_for``
    come first; then lite models on the CPU (and MPS) and full-size models on
    CUDA; then the rest. Within a tier the card's validation figures rank
    them (``aji``, then ``dice``, higher first, read from ``card["metrics"]``
    or ``card["validation"]["metrics"]``, with or without a ``val_``
    prefix), then the name.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a :class:`torch.device`.

    Returns
    -------
    str or None
    """
    device_type = _device_type(device)
    candidates = []
    for name, folder in shipped_checkpoints().items():
        try:
            candidates.append(_rank(name, folder, device_type))
        except ValueError:
            continue
    if not candidates:
        return None
    return min(candidates)[-1]


def load_model(spec: str | os.PathLike, device: str | torch.device = "auto") -> SegmentationModel:
    """Load a model from a shipped checkpoint name, a checkpoint folder or an architecture name.

    Parameters
    ----------
    spec : str or path-like
        Tried in order: the name of a shipped checkpoint
        (:func:`shipped_checkpoints`), a checkpoint folder, a registered
        architecture (:func:`list_models`). An architecture gives an
        *untrained* model and a :class:`UserWarning` that says so.
    device : str or torch.device
        Where to put the model (``"auto"`` picks CUDA, then MPS, then CPU).

    Returns
    -------
    SegmentationModel
        In eval mode on ``device``.

    Raises
    ------
    ValueError
        If ``spec`` is none of these (the message lists what is available), or
        the checkpoint is corrupt (see :func:`load_checkpoint`).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     model = load_model("r2unet-lite", device="cpu")
    >>> model.training
    False
    """
    folder = checkpoint_folder(spec)
    if folder is not None:
        return load_checkpoint(folder, device)
    target = resolve_device(device)
    warnings.warn(
        f"{os.fspath(spec)!r} is an architecture, not a trained checkpoint: the model has random weights "
        "and its output is meaningless until it is trained",
        UserWarning,
        stacklevel=2,
    )
    return build_model(os.fspath(spec)).to(target).eval()


def checkpoint_folder(spec: str | os.PathLike) -> Path | None:
    """The checkpoint folder ``spec`` names; ``None`` for an architecture.

    Tried in order, as :func:`load_model` does: the name of a shipped
    checkpoint, a checkpoint folder, a registered architecture.

    Raises
    ------
    ValueError
        If ``spec`` is none of these (the message lists what is available).

    Examples
    --------
    >>> checkpoint_folder("r2unet-lite") is None
    True
    """
    shipped = shipped_checkpoints()
    text = os.fspath(spec)
    if text in shipped:
        return shipped[text]
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if text in list_models():
        return None
    raise ValueError(
        f"{text!r} is not a shipped checkpoint ({', '.join(shipped) or 'none shipped'}), "
        f"an existing checkpoint folder, or an architecture ({', '.join(list_models())})"
    )


def checkpoint_sha256(spec: str | os.PathLike) -> str | None:
    """The sha256 of the weights that ``spec`` names now, from its ``config.json`` (weights unread).

    ``None`` for an architecture. Retraining a checkpoint in place changes
    it, so outputs that record another sha256 were made by other weights.

    Raises
    ------
    ValueError
        As :func:`checkpoint_folder`, or for an invalid ``config.json``.

    Examples
    --------
    >>> checkpoint_sha256("r2unet-lite") is None
    True
    """
    folder = checkpoint_folder(spec)
    return None if folder is None else str(read_checkpoint_config(folder)["sha256"])


def classifiers_stamp(classifiers: dict | None) -> str:
    """A short fingerprint of a checkpoint's calibrated classifiers (``""`` for none).

    Outputs scored with one classifier record it, so that they are redone
    when the checkpoint's classifiers are recalibrated or removed.

    >>> classifiers_stamp({}) == classifiers_stamp(None) == ""
    True
    """
    import hashlib
    import json

    if not classifiers:
        return ""
    return hashlib.sha256(json.dumps(classifiers, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_classifiers_stamp(spec: str | os.PathLike) -> str | None:
    """:func:`classifiers_stamp` of the classifiers that ``spec`` carries now (``None`` for an architecture).

    >>> checkpoint_classifiers_stamp("r2unet-lite") is None
    True
    """
    folder = checkpoint_folder(spec)
    return None if folder is None else classifiers_stamp(read_checkpoint_config(folder)["classifiers"])


def recommended_instance_params(spec: str | os.PathLike) -> dict:
    """The instance-step settings to use with a model, without loading its weights.

    Parameters
    ----------
    spec : str or path-like
        As for :func:`load_model`: a shipped checkpoint name, a checkpoint
        folder or an architecture.

    Returns
    -------
    dict
        ``mask_threshold``, ``contour_threshold`` and ``min_size``: those
        tuned for the checkpoint where it has them, the defaults
        (:data:`~napari_ihcseg.instances.INSTANCE_DEFAULTS`) otherwise.

    Raises
    ------
    ValueError
        If ``spec`` is none of these, or the checkpoint's ``config.json`` is
        invalid.

    Examples
    --------
    >>> recommended_instance_params("r2unet-lite")  # an untrained architecture
    {'mask_threshold': 0.5, 'contour_threshold': 0.5, 'min_size': 16}
    """
    from ..instances import INSTANCE_DEFAULTS

    folder = checkpoint_folder(spec)
    return {**INSTANCE_DEFAULTS, **(read_checkpoint_config(folder)["instances"] if folder is not None else {})}


def recommended_classifier(spec: str | os.PathLike | None, stain: str):
    """The nucleus classifier a checkpoint has for ``stain``, without loading its weights.

    ``spec`` as for :func:`load_model`; ``None`` takes the default shipped
    checkpoint (for the CPU). Returns ``None`` for an architecture, a
    checkpoint without one, or when nothing is shipped.

    Examples
    --------
    >>> recommended_classifier("r2unet-lite", "ki67") is None  # an untrained architecture
    True
    """
    from ..scoring.classifier import NucleusClassifier
    from ..scoring.presets import get_preset

    if spec is None:
        spec = default_checkpoint_name("cpu")
        if spec is None:
            return None
    folder = checkpoint_folder(spec)
    if folder is None:
        return None
    data = read_checkpoint_config(folder)["classifiers"].get(get_preset(stain).name)
    return None if data is None else NucleusClassifier.from_dict(data)
