"""Optional image filters applied before a model sees the image.

Two recipes from the literature, both off by default:

``"median3"``
    A 3×3 median filter per channel, as in the R2U-Net study of IHC nucleus
    segmentation (it removes the salt-and-pepper noise of JPEG-compressed
    slide scans).
``"gauss5-sharpen3-median3"``
    A 5×5 Gaussian (σ = 1), a 3×3 sharpening kernel, then a 3×3 median, the
    chain of the tumour-nuclei preprocessing study.

The shipped models were trained on unfiltered images, so a filter applied only
at inference changes the input distribution the network learned; turn one on
only for a model trained with the same filter, or after measuring that it helps
on your images (``docs/inference.md``).

All filters work per channel on uint8 RGB and return uint8 RGB of the same
shape. They are local (at most 5×5), so filtering a block that carries a halo
of a few pixels gives the same pixels as filtering the whole image.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

#: How far (in pixels) each recipe looks beyond a pixel: blocks filtered with
#: at least this halo match the whole image filtered at once.
PREPROCESS_RADIUS = {"median3": 1, "gauss5-sharpen3-median3": 4}

#: 3×3 sharpening (identity plus a 4-neighbour Laplacian).
SHARPEN3 = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32)
#: σ of the 5×5 Gaussian; ``truncate`` is chosen so the kernel is exactly 5×5.
GAUSS5_SIGMA = 1.0


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 RGB image, got dtype {image.dtype}")
    return image


def median3(image: np.ndarray) -> np.ndarray:
    """3×3 median filter per channel (edges mirrored).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((5, 5, 3), 100, np.uint8); img[2, 2] = 255
    >>> int(median3(img)[2, 2, 0])
    100
    """
    image = _check_rgb(image)
    return ndi.median_filter(image, size=(3, 3, 1), mode="mirror")


def gauss5_sharpen3_median3(image: np.ndarray) -> np.ndarray:
    """5×5 Gaussian (σ = 1), then 3×3 sharpening, then a 3×3 median, per channel.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((9, 9, 3), 80, np.uint8)
    >>> bool((gauss5_sharpen3_median3(img) == 80).all())  # flat stays flat
    True
    """
    image = _check_rgb(image)
    x = image.astype(np.float32)
    # truncate * sigma = 2 pixels: a 5×5 kernel.
    x = ndi.gaussian_filter(x, sigma=(GAUSS5_SIGMA, GAUSS5_SIGMA, 0), truncate=2.0 / GAUSS5_SIGMA, mode="mirror")
    x = ndi.correlate(x, SHARPEN3[:, :, None], mode="mirror")
    x = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return ndi.median_filter(x, size=(3, 3, 1), mode="mirror")


#: Named preprocessing recipes.
PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median3": median3,
    "gauss5-sharpen3-median3": gauss5_sharpen3_median3,
}


def get_preprocess(preprocess: str | Callable | None) -> Callable[[np.ndarray], np.ndarray] | None:
    """Look up a recipe by name; a callable is returned as is, ``None``/``"none"`` gives ``None``."""
    if preprocess is None or (isinstance(preprocess, str) and preprocess.lower() in ("", "none")):
        return None
    if callable(preprocess):
        return preprocess
    if isinstance(preprocess, str) and preprocess in PREPROCESSING:
        return PREPROCESSING[preprocess]
    raise ValueError(f"unknown preprocessing {preprocess!r}; choose None or one of {', '.join(PREPROCESSING)}")


def preprocess_radius(preprocess: str | Callable | None) -> int:
    """Pixels of context a recipe needs (a generous 8 for a user's own callable)."""
    if get_preprocess(preprocess) is None:
        return 0
    if isinstance(preprocess, str):
        return PREPROCESS_RADIUS[preprocess]
    return 8


def apply_preprocess(image: np.ndarray, preprocess: str | Callable | None) -> np.ndarray:
    """Apply a named recipe (or a callable) to a uint8 RGB image; ``None`` returns it unchanged.

    Raises
    ------
    ValueError
        For an unknown name, or when a callable changes the shape or dtype.
    """
    fn = get_preprocess(preprocess)
    if fn is None:
        return image
    out = np.asarray(fn(image))
    if out.shape != image.shape or out.dtype != np.uint8:
        raise ValueError(
            f"preprocessing {getattr(fn, '__name__', fn)!r} must return uint8 of shape {image.shape}, "
            f"got {out.dtype} of shape {out.shape}"
        )
    return out
