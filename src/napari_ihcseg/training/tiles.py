"""Training tiles: a strided grid over each image, empty tiles dropped, and
random crops around the grid with scale jitter.

Each image is covered by a grid of ``tile``-sized windows placed every
``stride`` pixels (the last window flush with the far edge). Windows without a
nucleus pixel are dropped, as in the tumour-nuclei preprocessing of the
R2U-Net paper. During training a window is not used as is: its origin is
jittered by up to half a stride and its size scaled, so every epoch sees new
crops while the grid fixes how much of each image an epoch covers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..inference.planning import SIZE_MULTIPLE
from ..inference.tiling import tile_starts


@dataclass(frozen=True)
class Window:
    """A grid window: which sample, and the top-left corner of the tile."""

    index: int
    y: int
    x: int


def grid_windows(samples, *, tile: int, stride: int, drop_empty: bool = True) -> list[Window]:
    """All grid windows over ``samples``, without the empty ones.

    Parameters
    ----------
    samples : sequence of Sample
        Objects with ``image`` and ``mask`` (bool nucleus mask or None).
    tile, stride : int
        Window size and step in pixels.
    drop_empty : bool
        Drop windows whose mask has no nucleus pixel. Samples without any
        mask are always kept whole (their windows cannot be judged).

    Returns
    -------
    windows : list of Window
    """
    if tile < SIZE_MULTIPLE:
        raise ValueError(f"tile must be at least {SIZE_MULTIPLE} pixels, got {tile}")
    if stride < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    windows = []
    for i, sample in enumerate(samples):
        h, w = sample.image.shape[:2]
        mask = sample.mask
        for y in tile_starts(h, tile, tile - stride):
            for x in tile_starts(w, tile, tile - stride):
                if drop_empty and mask is not None and not mask[y:y + tile, x:x + tile].any():
                    continue
                windows.append(Window(i, y, x))
    return windows


def _pad_to(array: np.ndarray, height: int, width: int, *, mode: str) -> np.ndarray:
    ph, pw = max(0, height - array.shape[0]), max(0, width - array.shape[1])
    if ph == 0 and pw == 0:
        return array
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (array.ndim - 2)
    if mode == "reflect" and (array.shape[0] < 2 or array.shape[1] < 2):
        mode = "edge"
    return np.pad(array, pad, mode=mode)


@dataclass(frozen=True, eq=False)
class Crop:
    """A training crop: image, targets' source labels, and where loss counts.

    ``labels`` is None for mask-only samples; ``valid`` is False on padding
    and outside the sample's annotated region.
    """

    image: np.ndarray
    labels: np.ndarray | None
    mask: np.ndarray | None
    valid: np.ndarray


def crop_window(sample, y: int, x: int, size: int, out: int | None = None) -> Crop:
    """Cut a ``size`` window at (y, x), pad past the edges, resize to ``out``.

    Image padding reflects the image; label padding is background and is
    marked invalid so the loss ignores it, as is everything outside the
    sample's ``region`` (where the annotation is complete), when it has one. Resizing is bilinear for the image
    and nearest-neighbour for labels (scale jitter).
    """
    out = size if out is None else out
    image = sample.image[y:y + size, x:x + size]
    h, w = image.shape[:2]
    valid = np.zeros((size, size), bool)
    region = getattr(sample, "region", None)
    valid[:h, :w] = True if region is None else region[y:y + size, x:x + size]
    image = _pad_to(image, size, size, mode="reflect")
    labels = sample.labels
    if labels is not None:
        labels = _pad_to(labels[y:y + size, x:x + size], size, size, mode="constant")
    mask = sample.mask
    if mask is not None:
        mask = _pad_to(mask[y:y + size, x:x + size], size, size, mode="constant")
    if out != size:
        zoom = out / size
        image = np.clip(ndi.zoom(image.astype(np.float32), (zoom, zoom, 1), order=1, grid_mode=True,
                                 mode="nearest"), 0, 255).round().astype(np.uint8)
        image = _fit(image, out)
        valid = _fit(ndi.zoom(valid, zoom, order=0, grid_mode=True, mode="nearest"), out)
        if labels is not None:
            labels = _fit(ndi.zoom(labels, zoom, order=0, grid_mode=True, mode="nearest"), out)
        if mask is not None:
            mask = _fit(ndi.zoom(mask, zoom, order=0, grid_mode=True, mode="nearest"), out)
    return Crop(image=np.ascontiguousarray(image), labels=labels, mask=mask, valid=valid)


def _fit(array: np.ndarray, size: int) -> np.ndarray:
    """Trim or edge-pad the first two axes to exactly ``size`` (zoom rounding)."""
    array = array[:size, :size]
    return _pad_to(array, size, size, mode="edge")


def random_crop(sample, window: Window | None, *, tile: int, stride: int, rng: np.random.Generator,
                scale_range: tuple[float, float] = (1.0, 1.0), min_nucleus_pixels: int = 1,
                attempts: int = 4) -> Crop:
    """A random ``tile`` crop near ``window`` with a random scale.

    The crop covers ``tile / scale`` source pixels, resized to ``tile``, with
    its origin jittered by up to half a stride around the window (anywhere in
    the image when ``window`` is None). Crops without a nucleus are redrawn up
    to ``attempts`` times.
    """
    lo, hi = scale_range
    if not (0 < lo <= hi):
        raise ValueError(f"scale_range must be increasing and positive, got {scale_range}")
    h, w = sample.image.shape[:2]
    crop = None
    for _ in range(max(1, attempts)):
        scale = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        size = max(SIZE_MULTIPLE, int(round(tile / scale)))
        if window is None:
            cy = int(rng.integers(0, max(1, h - size + 1)))
            cx = int(rng.integers(0, max(1, w - size + 1)))
        else:
            j = stride // 2
            centre_y = window.y + tile // 2 + int(rng.integers(-j, j + 1))
            centre_x = window.x + tile // 2 + int(rng.integers(-j, j + 1))
            cy = int(np.clip(centre_y - size // 2, 0, max(0, h - size)))
            cx = int(np.clip(centre_x - size // 2, 0, max(0, w - size)))
        crop = crop_window(sample, cy, cx, size, tile)
        if crop.mask is None or int(crop.mask.sum()) >= min_nucleus_pixels:
            break
    return crop
