"""From mask and contour probabilities to nucleus instance labels."""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import ndimage as ndi

from ._common import check_min_size
from ._numpy import contour_subtract_dilate

BACKENDS = ("numpy", "torch")


def _as_probability_map(name: str, value) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu()
        if value.dtype.is_floating_point and value.element_size() < 4:  # bfloat16 has no numpy dtype
            value = value.float()
        value = value.numpy()
    arr = np.asarray(value)
    if arr.dtype != np.bool_ and not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers (probabilities), got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) probability map, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; check the model output")
    return arr


def _check_threshold(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def disk(radius: int) -> np.ndarray:
    """A boolean disk footprint of the given radius (``2 * radius + 1`` wide)."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def remove_small_instances(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set instances with fewer than ``min_size`` pixels to 0 and renumber the rest 1..N.

    The kept instances keep their order (the one with the smaller id keeps
    the smaller id). Returns a new ``int32`` array.
    """
    flat = labels.reshape(-1)
    if flat.size and int(flat.max()) > 4 * flat.size:  # sparse huge ids: count by rank, not by id
        ids, flat = np.unique(flat, return_inverse=True)
        flat = flat.reshape(-1) + (0 if ids[0] == 0 else 1)
        labels = flat.reshape(labels.shape)
    sizes = np.bincount(flat)
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    lut = np.cumsum(keep, dtype=np.int64).astype(np.int32)
    lut[~keep] = 0
    return lut[labels]


def fill_instance_holes(labels: np.ndarray) -> np.ndarray:
    """Fill the holes of each instance with its own id.

    A hole is a 4-connected background region that does not reach the image
    edge and touches exactly one instance. Background enclosed by several
    instances together (a gland lumen ringed by touching nuclei, say) stays
    background, and no instance is ever overwritten. Returns a new array.
    """
    out = labels.copy()
    background, count = ndi.label(labels == 0)  # 4-connected: the complement of 8-connected nuclei
    if count == 0:
        return out
    edge = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    enclosed = np.ones(count + 1, dtype=bool)
    enclosed[0] = False
    enclosed[edge] = False
    if not enclosed.any():
        return out
    index = np.flatnonzero(enclosed[background.reshape(-1)])
    region = background.reshape(-1)[index]
    flat = labels.reshape(-1)
    width = labels.shape[1]
    # Enclosed pixels never lie on the edge, so their 4 neighbours exist.
    neighbours = np.stack([flat[index - width], flat[index + width], flat[index - 1], flat[index + 1]])
    big = np.iinfo(labels.dtype).max
    lowest = np.full(count + 1, big, dtype=labels.dtype)
    highest = np.zeros(count + 1, dtype=labels.dtype)
    np.minimum.at(lowest, region, np.where(neighbours > 0, neighbours, big).min(axis=0))
    np.maximum.at(highest, region, neighbours.max(axis=0))
    single = enclosed & (lowest == highest)
    fill = single[region]
    out.reshape(-1)[index[fill]] = highest[region[fill]]
    return out


def probabilities_to_instances(
    mask_prob,
    contour_prob,
    *,
    mask_threshold: float = 0.5,
    contour_threshold: float = 0.5,
    min_size: int = 16,
    erode: int = 0,
    fill_holes: bool = True,
    backend: str = "numpy",
    device=None,
) -> np.ndarray:
    """Turn mask and contour probability maps into nucleus instance labels.

    The steps, in order:

    1. ``mask = mask_prob > mask_threshold`` and
       ``contour = contour_prob > contour_threshold``.
    2. Seeds are ``mask & ~contour``; with ``erode > 0`` they are eroded by a
       disk of that radius, which splits seeds joined by thin bridges where a
       blurry boundary gave a weak contour (HARU-Net's addition for such data).
       The eroded seeds regrow to the full mask in the next step, so erosion
       does not shrink the nuclei. Seeds that vanish leave a seedless region.
    3. :func:`contour_subtract_dilate` grows the seeds through ``mask``;
       seedless regions of at least ``min_size`` pixels get their own ids.
    4. Instances with fewer than ``min_size`` pixels are removed and the rest
       renumbered 1..N, keeping their order.
    5. With ``fill_holes``, holes of each instance are filled with its id
       (see :func:`fill_instance_holes`).

    Parameters
    ----------
    mask_prob : (H, W) array_like of float
        Nucleus (foreground) probability per pixel. A torch tensor is copied
        to the host.
    contour_prob : (H, W) array_like of float
        Nucleus-boundary probability per pixel.
    mask_threshold : float, optional
        Pixels with ``mask_prob`` strictly above it are foreground.
    contour_threshold : float, optional
        Pixels with ``contour_prob`` strictly above it are boundary.
    min_size : int, optional
        The smallest nucleus kept, in pixels (counted before hole filling).
    erode : int, optional
        Radius, in pixels, of the disk that erodes the seeds (0: none). The
        image edge does not erode, so nuclei cut by a tile edge keep their
        seeds there.
    fill_holes : bool, optional
        Fill holes enclosed by a single nucleus.
    backend : {"numpy", "torch"}, optional
        Where the seeds grow: :func:`contour_subtract_dilate` or
        :func:`contour_subtract_dilate_torch` (same result).
    device : str or torch.device, optional
        The torch device for ``backend="torch"`` (default: the best available).

    Returns
    -------
    labels : (H, W) ndarray of int32
        0 background, nuclei 1..N.

    Raises
    ------
    TypeError
        If a map is not numeric, or an option has the wrong type.
    ValueError
        If the maps are not 2-D of one shape, contain NaN, or an option is out
        of range.

    Examples
    --------
    >>> import numpy as np
    >>> mask_prob = np.zeros((8, 16)); mask_prob[2:6, 1:15] = 0.9
    >>> contour_prob = np.zeros((8, 16)); contour_prob[:, 7:9] = 0.8
    >>> labels = probabilities_to_instances(mask_prob, contour_prob, min_size=4)
    >>> labels[4]
    array([0, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 0], dtype=int32)
    """
    mask_prob = _as_probability_map("mask_prob", mask_prob)
    contour_prob = _as_probability_map("contour_prob", contour_prob)
    if mask_prob.shape != contour_prob.shape:
        raise ValueError(
            f"mask_prob and contour_prob must have the same shape, got {mask_prob.shape} and {contour_prob.shape}"
        )
    mask_threshold = _check_threshold("mask_threshold", mask_threshold)
    contour_threshold = _check_threshold("contour_threshold", contour_threshold)
    min_size = check_min_size(min_size)
    erode = check_min_size(erode, name="erode")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")

    mask = mask_prob > mask_threshold
    seeds = mask & ~(contour_prob > contour_threshold)
    if erode:
        # A disk reaching past the image's diagonal erodes as any larger one does: cap it (and its memory).
        erode = min(erode, int(math.ceil(math.hypot(*seeds.shape))) + 1)
        seeds = ndi.binary_erosion(seeds, disk(erode), border_value=1)
    contour = mask & ~seeds
    if backend == "torch":
        from ._torch import contour_subtract_dilate_torch

        labels = contour_subtract_dilate_torch(mask, contour, min_size=min_size, device=device)
    else:
        labels = contour_subtract_dilate(mask, contour, min_size=min_size)
    if labels.size == 0:
        return labels
    labels = remove_small_instances(labels, min_size)
    if fill_holes:
        labels = fill_instance_holes(labels)
    return labels
