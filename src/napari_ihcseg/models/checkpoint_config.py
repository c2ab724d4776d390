"""A checkpoint's ``config.json``: what it records, how it is read and checked, and what is edited in place.

``config.json`` records the architecture, its config, the sha256 of the
weights file, training metadata, model-card fields, the instance-step
settings tuned for the model (``instances``, set with
:func:`set_instance_params`) and the per-nucleus classifiers calibrated for
it (``classifiers``, set with :func:`set_classifier`). Both edits rewrite the
file atomically and leave the weights untouched. A loaded model carries what
it records as :class:`CheckpointInfo`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._atomic import write_json_atomic
from .._json_file import read_json
from ..instances.tuning import check_instance_params
from ..scoring.classifier import NucleusClassifier, check_classifiers
from .registry import list_models

__all__ = ["CARD_DEFAULTS", "CONFIG_FILE", "FORMAT_VERSION", "WEIGHTS_FILE", "CheckpointInfo", "json_dict",
           "read_checkpoint_config", "set_classifier", "set_instance_params"]

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
#: Version of the config.json layout written by :func:`save_checkpoint`.
FORMAT_VERSION = 1
#: Model-card fields every checkpoint has (``None`` / empty when unknown).
CARD_DEFAULTS: dict[str, Any] = {"data": None, "licence": None, "metrics": {}}


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


def json_dict(value: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    """``value`` as a plain JSON-ready dict (``{}`` for ``None``), or a clear error naming ``what``.

    Examples
    --------
    >>> json_dict({"epochs": 3, "loss": (0.5, 0.25)}, "training")
    {'epochs': 3, 'loss': [0.5, 0.25]}
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} must be JSON-serialisable: {exc}") from None


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
    document = read_json(config_path)
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
    >>> from napari_ihcseg.models import build_model, save_checkpoint
    >>> folder = save_checkpoint(build_model("r2unet-lite"), Path(tempfile.mkdtemp()) / "demo")
    >>> _ = set_instance_params(folder, {"min_size": 60})
    >>> read_checkpoint_config(folder)["instances"]
    {'min_size': 60}
    """
    folder = Path(path).expanduser()
    document = read_checkpoint_config(folder)
    document["instances"] = check_instance_params(params, "instances")
    if tuning is not None:
        document["card"]["instances"] = json_dict(tuning, "tuning")
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
            document["card"]["classifiers"][key] = json_dict(calibration, "calibration")
    write_json_atomic(folder / CONFIG_FILE, document, overwrite=True)
    return folder
