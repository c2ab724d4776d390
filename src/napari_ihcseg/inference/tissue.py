"""Tissue detection on a low-resolution level, to skip background on slides.

The summed optical density (OD) of the three RGB channels is near 0 on bare
glass and positive on tissue, whatever the stains. As in the multi-stain
nucleus segmentation study, Otsu's threshold on a low-resolution version of
the slide (16× downsampled, from the pyramid) separates the two. How bright
glass is depends on the scanner (OD sums from 0.01 to 0.08 are common), and
pale counterstained stroma, which holds nuclei, lies only a few hundredths
above it, while Otsu on a field that is all tissue splits pale from dark
tissue. So the threshold is taken relative to the slide's own background,
the 1st percentile of the OD sum: Otsu's value, kept within
``[background + MIN_MARGIN, background + MAX_MARGIN]``. A field that is all
glass does not turn its noise into tissue, and pale tissue is kept. Anything
darker than :data:`ALWAYS_TISSUE_OD` is tissue whatever the statistics.
Small specks are removed, holes are filled and the mask is dilated by a
margin, so that nuclei on the edge of the tissue are kept.

Skipping is only a saving: the mask leans towards keeping too much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..stain import rgb_to_od
from .tiling import Box

#: Otsu's threshold on the OD sum is clipped to ``background + [MIN_MARGIN,
#: MAX_MARGIN]``, the background being the 1st percentile of the OD sum. On two
#: pale Ki-67 fields (``ki67-points``) margins up to 0.05 keep every annotated
#: nucleus inside the mask; Otsu alone leaves about half of them outside.
MIN_MARGIN = 0.02
MAX_MARGIN = 0.05
#: Percentile of the low-resolution OD sum taken as the glass level.
BACKGROUND_PERCENTILE = 1.0
#: An OD sum above this (grey darker than RGB 194) is never glass.
ALWAYS_TISSUE_OD = 0.35
#: Tissue is detected at this downsampling at least (one low-resolution pixel
#: averages 16 × 16 full-resolution pixels, nuclei and stroma together) ...
DEFAULT_DOWNSAMPLE = 16
#: ... and coarser where needed so that the longer side is at most this.
DEFAULT_MAX_SIZE = 2048
#: Tissue pieces smaller than this many low-resolution pixels are dropped.
DEFAULT_MIN_AREA = 16
#: The mask is dilated by this many low-resolution pixels.
DEFAULT_MARGIN = 2


@dataclass(frozen=True, eq=False)
class TissueMask:
    """A low-resolution tissue mask and the full-resolution shape it covers.

    Parameters
    ----------
    mask : (h, w) ndarray of bool
        True on tissue, at low resolution.
    shape : (int, int)
        The full-resolution ``(H, W)`` the mask stands for.
    threshold : float
        The OD-sum threshold used (``nan`` for a mask given by the user).
    """

    mask: np.ndarray
    shape: tuple[int, int]
    threshold: float = float("nan")

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask, dtype=bool)
        if mask.ndim != 2 or mask.size == 0:
            raise ValueError(f"a tissue mask must be a non-empty 2-D array, got shape {mask.shape}")
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))

    @property
    def scale(self) -> tuple[float, float]:
        """Full-resolution pixels per mask pixel, ``(sy, sx)``."""
        return (self.shape[0] / self.mask.shape[0], self.shape[1] / self.mask.shape[1])

    @property
    def fraction(self) -> float:
        """Share of the slide area that is tissue."""
        return float(self.mask.mean())

    def has_tissue(self, box: Box | Sequence[int]) -> bool:
        """Whether the full-resolution ``box`` (y0, x0, y1, x1) touches tissue.

        Examples
        --------
        >>> import numpy as np
        >>> m = np.zeros((10, 10), bool); m[0, 0] = True
        >>> t = TissueMask(m, (1000, 1000))
        >>> t.has_tissue((0, 0, 50, 50)), t.has_tissue((500, 500, 600, 600))
        (True, False)
        """
        y0, x0, y1, x1 = (int(v) for v in box)
        sy, sx = self.scale
        h, w = self.mask.shape
        ly0, lx0 = max(int(y0 // sy), 0), max(int(x0 // sx), 0)
        ly1, lx1 = min(math.ceil(y1 / sy), h), min(math.ceil(x1 / sx), w)
        if ly1 <= ly0 or lx1 <= lx0:
            return False
        return bool(self.mask[ly0:ly1, lx0:lx1].any())


def slide_levels(image) -> list:
    """The resolution levels of a slide, full resolution first.

    ``image`` is a :class:`~napari_ihcseg.io.LazyImage` or anything with
    ``levels``, a list or tuple of levels (e.g. the dask arrays of a napari
    multiscale layer), or one (H, W, 3) array (numpy, dask or zarr): one
    level.
    """
    levels = getattr(image, "levels", None)
    if levels is None:
        levels = image if isinstance(image, (list, tuple)) else [image]
    if not levels:
        raise ValueError("the slide has no resolution level")
    return list(levels)


def _block_mean(level, k: int) -> np.ndarray:
    """Average ``k`` × ``k`` blocks of an (h, w, 3) array, lazily for dask and zarr."""
    if k <= 1:
        return np.asarray(level.compute() if hasattr(level, "compute") else level[...])
    h, w = (level.shape[0] // k) * k, (level.shape[1] // k) * k
    if h == 0 or w == 0:
        raise ValueError(f"the image ({level.shape[0]}×{level.shape[1]}) is smaller than one "
                         f"tissue-detection block ({k}×{k})")
    if isinstance(level, np.ndarray):
        small = level[:h, :w].reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))
    else:
        import dask.array as da

        arr = level if isinstance(level, da.Array) else da.from_array(level, chunks=(4096, 4096, 3))
        small = da.coarsen(np.mean, arr[:h, :w].astype(np.float32), {0: k, 1: k}).compute()
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def low_resolution(image, *, downsample: int = DEFAULT_DOWNSAMPLE, max_size: int = DEFAULT_MAX_SIZE
                   ) -> tuple[np.ndarray, int]:
    """A small RGB version of a (lazy, multiscale) image, and its downsampling factor.

    The factor is ``downsample``, or larger so that the longer side fits in
    ``max_size``. The coarsest pyramid level not coarser than that is read and
    block-averaged the rest of the way (chunk by chunk for dask arrays), so a
    slide without a pyramid is still read in bounded memory.
    """
    levels = slide_levels(image)
    full = levels[0].shape
    factor = max(int(downsample), math.ceil(max(full[:2]) / max_size), 1)
    best, best_f = levels[0], 1
    for level in levels[1:]:
        f = full[0] / level.shape[0]
        if best_f < f <= factor:
            best, best_f = level, f
    k = max(1, min(int(factor / best_f), *best.shape[:2]))
    return _block_mean(best, k), int(round(best_f * k))


def tissue_threshold(od_sum: np.ndarray) -> float:
    """Otsu's threshold of the OD sum, kept within ``background + [MIN_MARGIN, MAX_MARGIN]``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)  # half glass (OD sum 0.03), half tissue (0.9)
    >>> od_sum = np.concatenate([rng.normal(0.03, 0.005, 500), rng.normal(0.9, 0.2, 500)])
    >>> round(tissue_threshold(od_sum), 3)  # Otsu alone: 0.44, which would drop pale tissue
    0.069
    """
    from skimage.filters import threshold_otsu

    values = od_sum[np.isfinite(od_sum)]
    if values.size == 0:
        return ALWAYS_TISSUE_OD
    background = float(np.percentile(values, BACKGROUND_PERCENTILE))
    otsu = threshold_otsu(values) if values.min() < values.max() else background
    return float(np.clip(otsu, background + MIN_MARGIN, background + MAX_MARGIN))


def detect_tissue(
    image,
    *,
    downsample: int = DEFAULT_DOWNSAMPLE,
    max_size: int = DEFAULT_MAX_SIZE,
    threshold: float | None = None,
    min_area: int = DEFAULT_MIN_AREA,
    margin: int = DEFAULT_MARGIN,
) -> TissueMask:
    """Find the tissue of a slide on a low-resolution level (Otsu on the OD sum).

    Parameters
    ----------
    image : LazyImage, list of arrays, or (H, W, 3) array
        An object with ``.levels`` (full resolution first), a list of levels,
        or a single RGB array (numpy, dask or zarr).
    downsample : int
        Work at this downsampling of the full resolution (or coarser, to
        respect ``max_size``); see :func:`low_resolution`.
    max_size : int
        The longest side of the low-resolution image.
    threshold : float, optional
        OD-sum threshold; by default Otsu's, kept close to the background
        (see the module notes and :func:`tissue_threshold`).
    min_area : int
        Drop tissue pieces smaller than this (low-resolution pixels).
    margin : int
        Dilate the mask by this many low-resolution pixels.

    Returns
    -------
    TissueMask

    Examples
    --------
    >>> import numpy as np
    >>> slide = np.full((400, 400, 3), 245, np.uint8)
    >>> slide[100:300, 50:200] = (150, 110, 160)
    >>> t = detect_tissue(slide, downsample=8)
    >>> t.has_tissue((150, 100, 200, 150)), t.has_tissue((0, 300, 50, 400))
    (True, False)
    """
    full = slide_levels(image)[0]
    if len(full.shape) != 3 or full.shape[2] != 3:
        raise ValueError(f"tissue detection needs an RGB image of shape (H, W, 3), got shape {tuple(full.shape)}")
    small, _ = low_resolution(image, downsample=downsample, max_size=max_size)
    od_sum = rgb_to_od(small).sum(axis=-1)
    od_sum = ndi.gaussian_filter(od_sum, 1.0)
    t = tissue_threshold(od_sum) if threshold is None else float(threshold)
    mask = (od_sum > t) | (od_sum > ALWAYS_TISSUE_OD)
    if min_area > 1 and mask.any():
        lab, n = ndi.label(mask)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        keep = sizes >= min_area
        keep[0] = False
        mask = keep[lab]
    mask = ndi.binary_fill_holes(mask)
    if margin > 0:
        mask = ndi.binary_dilation(mask, iterations=int(margin))
    return TissueMask(mask, (int(full.shape[0]), int(full.shape[1])), t)
