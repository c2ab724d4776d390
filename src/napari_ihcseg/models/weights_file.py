"""A checkpoint's weights file: safetensors with reproducible bytes, checked against the config before loading.

:func:`weights_metadata` keeps the header (hence the sha256) the same for the
same tensors; :func:`cast_floating` stores them in a smaller type;
:func:`check_sizes` compares the shapes a config would build with the file's
header on a model without memory; :func:`load_state` loads strictly.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from .checkpoint_config import CONFIG_FILE, FORMAT_VERSION
from .registry import build_from_config, config_for_loading

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_metadata(arch: str, config: dict | None = None) -> dict[str, str]:
    """The header metadata of ``weights.safetensors``: one key, so the file's bytes are reproducible.

    safetensors writes its metadata map in hash order, which changes from
    call to call; with two keys the same tensors could give two different
    files (and sha256s). One key holding sorted JSON always gives one.

    ``config`` (the model config as a dict) is recorded too, so the sha256
    that ``config.json`` keeps covers the settings that give no tensor a
    shape (an activation, say): :func:`check_sizes` compares them.
    """
    header = {"arch": arch, "format_version": FORMAT_VERSION}
    if config is not None:
        header["config"] = config
    return {"napari_ihcseg": json.dumps(header, sort_keys=True)}


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def cast_floating(tensors: dict[str, torch.Tensor], dtype: str) -> dict[str, torch.Tensor]:
    """The floating-point tensors cast to ``dtype``, a key of :data:`STORAGE_DTYPES`; others unchanged.

    Raises
    ------
    ValueError
        For an unknown ``dtype``, or a tensor with values the type cannot
        hold (finite before, infinite after the cast).
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"weights_dtype must be one of {', '.join(STORAGE_DTYPES)}, not {dtype!r}")
    target = STORAGE_DTYPES[dtype]
    out = {}
    for key, value in tensors.items():
        if value.is_floating_point():
            cast = value.to(target)
            if not torch.isfinite(cast).all() and torch.isfinite(value).all():
                raise ValueError(f"{key}: values out of the range of {dtype}; store the weights in float32")
            value = cast.contiguous()
        out[key] = value
    return out


def _read_header(weights_path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """The name and shape of every tensor in a safetensors file, and its metadata, from its header alone."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights_path), framework="pt") as fh:
            return {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}, dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({exc})") from None


def _header(metadata: dict[str, str]) -> tuple[str | None, dict | None]:
    """The architecture and model config the weights were saved with; ``None`` where not recorded.

    Read from :func:`weights_metadata`'s one key, or from the plain ``arch``
    key that checkpoints saved before it carry (they record no config).
    """
    try:
        header = json.loads(metadata.get("napari_ihcseg", "{}"))
        arch, config = header.get("arch", metadata.get("arch")), header.get("config")
    except (ValueError, AttributeError):
        arch, config = metadata.get("arch"), None
    return (arch if isinstance(arch, str) else None), (config if isinstance(config, dict) else None)


def _compare_configs(arch: str, config, saved: dict, weights_path: Path) -> None:
    """Refuse a config.json whose model config differs from the one the weights were saved with."""
    config_path = weights_path.parent / CONFIG_FILE
    try:
        saved_config = config_for_loading(arch, saved, source=f"{weights_path} header")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{weights_path}: its header holds a config that cannot be read ({exc})") from None
    ours, theirs = json.loads(json.dumps(config.to_dict())), json.loads(json.dumps(saved_config.to_dict()))
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differ:
        said = "; ".join(f"{k} {ours.get(k)!r} against {theirs.get(k)!r}" for k in differ[:3])
        raise ValueError(f"{config_path}: its model config differs from the one {weights_path.name} was saved "
                         f"with ({said}); the file was edited, refusing to load it")


def check_sizes(arch: str, config, weights_path: Path) -> None:
    """Refuse a config whose model would not fit the weights, before any memory is allocated.

    The model is built on the ``meta`` device and its tensor shapes compared
    with those in the weights file's header, so a wrong or hostile
    ``config.json`` never allocates.

    Raises
    ------
    ValueError
        Naming the file: when the weights were saved from another
        architecture than ``arch`` (recorded in their header), or how many
        tensors are missing, unexpected or of the wrong shape.
    """
    file_shapes, metadata = _read_header(weights_path)
    saved_from, saved_config = _header(metadata)
    if saved_from is not None and saved_from != arch:
        raise ValueError(f"{weights_path.parent / CONFIG_FILE}: says the model is {arch!r}, but "
                         f"{weights_path.name} holds {saved_from!r} weights; refusing to load them")
    if saved_config is not None:
        _compare_configs(arch, config, saved_config, weights_path)
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


def load_state(model: nn.Module, state: dict[str, torch.Tensor], weights_path: Path, arch: str) -> None:
    """Load ``state`` into ``model`` strictly, after the same shape check as :func:`check_sizes`."""
    _compare_shapes({k: v.shape for k, v in model.state_dict().items()},
                    {k: v.shape for k, v in state.items()}, weights_path, arch)
    model.load_state_dict(state, strict=True)
