"""Checks of what a file holds, once it is decoded: which image, which value range, any content.

* :func:`main_series`: a TIFF may hold several images (series); the largest
  is the image, and reading another than the first is announced.
* :func:`float_range_top`: floating-point pixels are scaled by the range
  they use, ``[0, 1]``, ``[0, 255]`` or ``[0, 65535]``; other ranges are
  refused, never clipped into a blank image.
* :func:`warn_if_uniform`: an image whose pixels all have one colour (fully
  transparent, blank, or decoded wrongly) gives an :class:`ImageWarning`,
  since segmenting it silently finds no nucleus.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import ImageReadError, ImageWarning

#: The value ranges a floating-point image may use, by their top.
FLOAT_RANGES = (1.0, 255.0, 65535.0)
#: Float images whose smallest level has more pixels than this are refused (their range is read in full).
MAX_FLOAT_RANGE_PIXELS = 2**28


def _pixels(series) -> int:
    shape = series.levels[0].shape if series.levels else series.shape
    return int(np.prod(shape, dtype=np.int64))


def main_series(tif, path):
    """The series of a TIFF that holds the image: the largest (series 0 when they tie).

    Warns with :class:`ImageWarning` when that is not the first series (a
    thumbnail or label stored first would otherwise be read instead).
    """
    series = [s for s in tif.series if s.levels]
    if not series:
        return tif.series[0]
    best = max(range(len(series)), key=lambda i: (_pixels(series[i]), -i))
    if best != 0:
        shape = "×".join(str(n) for n in series[best].shape)
        warnings.warn(ImageWarning(
            f"{path}: holds {len(series)} images; reading the largest ({shape}, series {best}), "
            f"not the first ({'×'.join(str(n) for n in series[0].shape)})"), stacklevel=3)
    return series[best]


def float_range_top(raw: np.ndarray, path) -> float:
    """The top of the range a floating-point image uses: 1, 255 or 65535.

    Raises
    ------
    ImageReadError
        For an image without finite values, with negative values, or above
        65535, naming the values found.

    Examples
    --------
    >>> float_range_top(np.array([0.0, 0.5]), "a.tif"), float_range_top(np.array([3.0, 200.0]), "a.tif")
    (1.0, 255.0)
    """
    values = np.asarray(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if not (np.isfinite(low) and np.isfinite(high)):  # infinities (or only NaN): look at the finite values
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise ImageReadError(path, "floating-point image without a finite value")
        low, high = float(finite.min()), float(finite.max())
    top = next((t for t in FLOAT_RANGES if high <= t), None)
    if low < 0 or top is None:
        raise ImageReadError(path, f"floating-point values from {low:g} to {high:g}; expected the range "
                                   "[0, 1], [0, 255] or [0, 65535]; save the image as 8-bit RGB")
    return top


def warn_if_uniform(image: np.ndarray, path, *, transparent: bool = False) -> None:
    """Warn (:class:`ImageWarning`) when every pixel of ``image`` has the same colour."""
    flat = image.reshape(-1, image.shape[-1])
    if not flat.shape[0] or not (flat[:: max(1, flat.shape[0] // 1024)] == flat[0]).all():
        return  # most images differ within a thousand evenly spread pixels
    if (flat.min(axis=0) == flat.max(axis=0)).all():
        what = ("is fully transparent, so it reads as" if transparent else "reads as one colour,")
        warnings.warn(ImageWarning(
            f"{path}: the image {what} RGB {tuple(int(v) for v in flat[0])} everywhere; "
            "no nucleus can be found in it"), stacklevel=3)
