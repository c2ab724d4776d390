"""Resumable training state on disk, without pickle.

The state of a run (model weights with batch-norm statistics, AdamW moments,
the torch random state, the step counters and the history) is written as two
files in ``<out>/state/``:

* ``state-<step>.safetensors``: every tensor;
* ``state.json``: everything else, the name and sha256 of the tensor file.

``state.json`` is written last and atomically, so it is the commit point: a
run killed while writing leaves the previous state intact. Older tensor files
are removed once the new JSON is in place.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from napari_ihcseg._atomic import write_bytes_atomic, write_json_atomic
from napari_ihcseg._json_file import read_json

STATE_DIR = "state"
STATE_JSON = "state.json"
#: Bumped when the layout of the state changes.
STATE_FORMAT = 1


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, slots in sd["state"].items():
        for key, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def save_state(out: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               info: dict) -> Path:
    """Write the resumable state of a run into ``<out>/state``.

    Parameters
    ----------
    out : path-like
        The run's output folder.
    model, optimizer : torch objects
    info : dict
        JSON-serialisable counters and history (``global_step`` is required).

    Returns
    -------
    Path
        The ``state.json`` written.
    """
    folder = Path(out) / STATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    optim_tensors, optim_meta = _optimizer_tensors(optimizer)
    tensors.update(optim_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    data = st_save(tensors)
    name = f"state-{int(info['global_step']):08d}.safetensors"
    write_bytes_atomic(folder / name, data)
    meta = {"format": STATE_FORMAT, "tensors": name, "sha256": hashlib.sha256(data).hexdigest(),
            "optimizer": optim_meta, **info}
    path = write_json_atomic(folder / STATE_JSON, meta)
    for old in folder.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


def has_state(out: str | Path) -> bool:
    """True when ``out`` holds a resumable state."""
    return (Path(out) / STATE_DIR / STATE_JSON).is_file()


def load_state(out: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model, optimizer and torch RNG from ``<out>/state``; return the info dict.

    Raises
    ------
    FileNotFoundError
        If there is no state.
    ValueError
        If the state is damaged (``state.json`` not a state, an entry missing
        or of the wrong kind, the tensor file missing, not a safetensors file
        or not matching its checksum) or does not fit the model: one line
        naming the file and the problem.
    """
    folder = Path(out) / STATE_DIR
    meta_path = folder / STATE_JSON
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: no training state to resume from")
    meta = read_json(meta_path)
    if meta.get("format") != STATE_FORMAT:
        raise ValueError(f"{meta_path}: unsupported state format {meta.get('format')!r}")

    def damaged(problem: str) -> ValueError:
        return ValueError(f"{meta_path}: {problem}; the training state is damaged")

    name, digest, optim_meta = meta.get("tensors"), meta.get("sha256"), meta.get("optimizer")
    if not isinstance(name, str) or not name.endswith(".safetensors") or Path(name).name != name:
        raise damaged(f"'tensors' must name the state's .safetensors file, got {name!r}")
    if not isinstance(digest, str):
        raise damaged(f"'sha256' must be the tensor file's checksum, got {digest!r}")
    if not (isinstance(optim_meta, dict) and isinstance(optim_meta.get("param_groups"), list)
            and isinstance(optim_meta.get("scalars"), dict)):
        raise damaged("'optimizer' must hold the optimizer's 'param_groups' and 'scalars'")
    tensor_path = folder / name
    try:
        data = tensor_path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{tensor_path}: cannot read the tensor file named in {meta_path} "
                         f"({exc.strerror or exc}); the training state is damaged") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{tensor_path}: checksum mismatch; the training state is damaged")
    try:
        tensors = st_load(data)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error type
        raise ValueError(f"{tensor_path}: not a safetensors file ({exc}); the training state is damaged") from None
    if "rng.torch" not in tensors:
        raise ValueError(f"{tensor_path}: the random state (rng.torch) is missing; the training state is damaged")
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{tensor_path}: the saved weights do not fit the model ({exc})") from None
    try:
        optimizer.load_state_dict({"state": _optimizer_state(tensors, optim_meta["scalars"]),
                                   "param_groups": optim_meta["param_groups"]})
        torch.set_rng_state(tensors["rng.torch"])
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
        raise damaged(f"the optimizer or random state does not fit the model ({exc})") from None
    return {k: v for k, v in meta.items() if k not in ("tensors", "sha256", "optimizer", "format")}


def _optimizer_state(tensors: dict[str, torch.Tensor], scalars: dict) -> dict[int, dict]:
    """The optimizer's per-parameter state from the ``optim.<pid>.<slot>`` tensors and ``<pid>.<slot>`` scalars."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, slot = key.split(".", 2)
            state.setdefault(int(pid), {})[slot] = value
    for key, value in scalars.items():
        pid, slot = key.split(".", 1)
        state.setdefault(int(pid), {})[slot] = value
    return state
