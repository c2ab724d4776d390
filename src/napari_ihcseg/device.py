"""Choosing the torch device: CUDA, then Apple MPS, then the CPU.

The device names (:func:`check_device_name`) are checked without torch, so
that configs can refuse a misspelt device when they are made; torch is
imported when a device is resolved.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

#: ``auto``, or a device type with an optional index (``cuda:1``), any case.
_DEVICE_NAME = re.compile(rf"auto|({'|'.join(DEVICE_CHOICES[1:])})(:\d+)?", re.IGNORECASE)


def check_device_name(device) -> str:
    """``device`` as a lower-case name, refused unless it is ``auto`` or ``cpu``/``cuda``/``mps`` with an optional index.

    Raises
    ------
    ValueError
        Naming the device and the spellings accepted.

    Examples
    --------
    >>> check_device_name(" CUDA:1 ")
    'cuda:1'
    >>> check_device_name("gpu")
    Traceback (most recent call last):
    ...
    ValueError: unknown device 'gpu'; choose auto, cpu, cuda, cuda:N or mps
    """
    name = str(device).strip()
    if not _DEVICE_NAME.fullmatch(name):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu, cuda, cuda:N or mps")
    return name.lower()


def available_devices() -> list[str]:
    """The device types usable on this machine, best first."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device request into a :class:`torch.device`.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` picks CUDA, then MPS, then the CPU. An explicit ``"cuda"``
        (or ``"cuda:1"``) or ``"mps"`` that this machine lacks raises.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        For an unknown name, or a device that is not available here.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    name = check_device_name(device)
    if name == "auto":
        return torch.device(available_devices()[0])
    kind = name.split(":", 1)[0]
    if kind not in available_devices():
        raise ValueError(
            f"device {device!r} was requested but is not available on this machine "
            f"(available: {', '.join(available_devices())})"
        )
    if kind == "cuda" and ":" in name:
        index = int(name.split(":", 1)[1])
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """A human-readable name, e.g. ``"cuda:0 (NVIDIA H200)"`` or ``"cpu (2 threads)"``."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        n = torch.get_num_threads()
        return f"cpu ({n} thread{'s' if n != 1 else ''})"
    return str(device)
