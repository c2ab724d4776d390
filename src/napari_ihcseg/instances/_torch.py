"""Contour subtraction and constrained dilation with torch (GPU or CPU).

Each sweep is one masked 3x3 minimum over the whole image on ``int32`` labels,
with unlabelled and outside pixels held at ``INT32_MAX`` so that they never win
the minimum. That is the sweep of the paper's loop, computed for every pixel
at once in buffers allocated once, which suits a GPU. The seeds (connected components) and the seedless
regions are labelled on the CPU with scipy, exactly as in the numpy version,
so both give identical output.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from ..device import resolve_device
from ._common import STRUCTURE_8, check_min_size, label_seedless

_BIG = torch.iinfo(torch.int32).max
#: Sweeps run between two checks for convergence (each check waits for the device).
_SWEEPS_PER_CHECK = 4


def _as_bool_tensor(name: str, value, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.dtype != torch.bool:
            raise TypeError(f"{name} must be a boolean tensor, got dtype {value.dtype}")
        tensor = value.detach()
    else:
        arr = np.asarray(value)
        if arr.dtype != np.bool_:
            raise TypeError(
                f"{name} must be a boolean array, got dtype {arr.dtype}; threshold probability maps "
                "first (probabilities_to_instances does that)"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {tuple(tensor.shape)}")
    return tensor.to(device)


def _pick_device(mask, contour, device) -> torch.device:
    if device is not None:
        return resolve_device(device)
    for value in (mask, contour):
        if isinstance(value, torch.Tensor):
            return value.device
    return resolve_device("auto")


def _grow(padded: torch.Tensor, done: torch.Tensor) -> None:
    """Run sweeps in place until one labels no pixel.

    ``padded`` holds the labels with a one-pixel frame, ``_BIG`` for every
    pixel without an id; ``done`` is ``False`` exactly at the unlabelled mask
    pixels and is updated. All buffers are allocated once.
    """
    height, width = done.shape
    work = padded[1:-1, 1:-1]
    nearest = torch.empty_like(done, dtype=padded.dtype)
    reached = torch.empty_like(done)
    shifts = [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]
    total = done.numel()
    left = total - int(done.sum())
    while left:
        for _ in range(_SWEEPS_PER_CHECK):
            nearest.copy_(shifts[0])
            for shifted in shifts[1:]:
                torch.minimum(nearest, shifted, out=nearest)
            nearest.masked_fill_(done, _BIG)  # only unlabelled mask pixels take an id
            torch.minimum(work, nearest, out=work)
            torch.ne(nearest, _BIG, out=reached)
            done.logical_or_(reached)
        now = total - int(done.sum())
        if now == left:  # the first of these sweeps changed nothing
            break
        left = now


def contour_subtract_dilate_torch(mask, contour, *, min_size: int = 0, device=None) -> np.ndarray:
    """Torch version of :func:`contour_subtract_dilate`, with identical output.

    The sweeps run on ``device`` as masked 3x3 minimum filters on ``int32``
    labels; the seeds and the seedless regions are labelled on the CPU with
    scipy.

    Parameters
    ----------
    mask, contour : (H, W) ndarray or torch.Tensor of bool
        Nucleus foreground and nucleus boundaries.
    min_size : int, optional
        Seedless regions with fewer pixels are dropped, as in
        :func:`contour_subtract_dilate`.
    device : str or torch.device, optional
        Where the sweeps run (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``,
        ``"auto"``). By default the device of a tensor input, else the best
        available one.

    Returns
    -------
    labels : (H, W) ndarray of int32
        Equal to ``contour_subtract_dilate(mask, contour, min_size=min_size)``.

    Raises
    ------
    TypeError
        If ``mask`` or ``contour`` is not boolean.
    ValueError
        If they are not 2-D of the same shape, ``min_size < 0``, or the device
        is not available.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.ones((1, 7), bool)
    >>> contour = np.array([[0, 1, 1, 1, 1, 1, 0]], bool)
    >>> contour_subtract_dilate_torch(mask, contour, device="cpu")
    array([[1, 1, 1, 1, 2, 2, 2]], dtype=int32)
    """
    min_size = check_min_size(min_size)
    target = _pick_device(mask, contour, device)
    mask_t = _as_bool_tensor("mask", mask, target)
    contour_t = _as_bool_tensor("contour", contour, target)
    if mask_t.shape != contour_t.shape:
        raise ValueError(
            f"mask and contour must have the same shape, got {tuple(mask_t.shape)} and {tuple(contour_t.shape)}"
        )
    shape = tuple(mask_t.shape)
    if mask_t.numel() == 0:
        return np.zeros(shape, dtype=np.int32)

    seeds = (mask_t & ~contour_t).cpu().numpy()
    height, width = shape
    seed_labels = np.empty((height + 2, width + 2), dtype=np.int32)
    n_seeds = ndi.label(np.pad(seeds, 1), STRUCTURE_8, output=seed_labels)
    padded = torch.from_numpy(seed_labels).to(target)
    padded.masked_fill_(padded == 0, _BIG)
    done = ~mask_t | ~contour_t  # outside the mask, or a seed
    _grow(padded, done)

    inner = padded[1:-1, 1:-1]
    out = np.ascontiguousarray(inner.masked_fill(inner == _BIG, 0).cpu().numpy())
    left = np.flatnonzero(~done.cpu().numpy())
    if left.size:
        out.reshape(-1)[left] = label_seedless(left, shape, first_id=n_seeds + 1, min_size=min_size)
    return out
