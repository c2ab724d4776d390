"""Checks of what a file holds, once it is decoded: which image, which value range, any content.

* :func:`main_series`: a TIFF may hold several images (series); the largest
  is the image, and reading another than the first is announced.
* :func:`value_range_top`: floating-point pixels are scaled by the range
  they use, ``[0, 1]``, ``[0, 255]`` or ``[0, 65535]`` (an overshoot of up
  to 2 %, as resampling leaves, is clipped); other ranges are refused, never
  clipped into a blank image. Not-a-number pixels read as white background,
  announced. 16-bit pixels that use only 8, 10, 12 or 14 bits (a camera's
  range in a 16-bit file) are scaled by that range, announced, instead of
  reading as a nearly black image. A bright-field image's background is
  near white, so the largest value shows the range.
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
#: How far above a range's top floating-point values may go and still be taken as that range (clipped).
FLOAT_OVERSHOOT = 0.02
#: The ranges 16-bit pixels may use: 8, 10, 12, 14 or all 16 bits.
UINT16_RANGES = (255, 1023, 4095, 16383, 65535)
#: Float images whose smallest level has more pixels than this are refused (their range is read in full);
#: 16-bit ones are then taken to use all 16 bits.
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


def value_range_top(raw: np.ndarray, path) -> float | None:
    """The top of the value range an image's pixels use, or ``None`` for its type's own range.

    Floating-point pixels: 1, 255 or 65535 (values up to :data:`FLOAT_OVERSHOOT`
    above it are clipped). 16-bit pixels: the smallest of
    :data:`UINT16_RANGES` that holds them, with an :class:`ImageWarning`
    when that is less than 65535. Not-a-number pixels are announced (they
    read as white). Other types: ``None``.

    Raises
    ------
    ImageReadError
        For a floating-point image without finite values, with negative
        values, or above 65535, naming the values found.

    Examples
    --------
    >>> value_range_top(np.array([0.0, 0.5]), "a.tif"), value_range_top(np.array([3.0, 200.0]), "a.tif")
    (1.0, 255.0)
    >>> value_range_top(np.array([0.0, 1.004]), "a.tif")  # resampling overshoot: still [0, 1]
    1.0
    >>> value_range_top(np.array([0, 60000], np.uint16), "a.tif")
    65535.0
    """
    values = np.asarray(raw)
    if values.dtype == np.uint16:
        high = int(values.max()) if values.size else 0
        if high == 0:
            return None  # all black: no range to read (the reader warns about a one-colour image)
        top = next(t for t in UINT16_RANGES if high <= t)
        if top < UINT16_RANGES[-1]:
            bits = int(top).bit_length()
            warnings.warn(ImageWarning(
                f"{path}: its 16-bit values reach only {high} of 65535, so it is read as {bits}-bit data "
                f"(0-{top}), as a camera's {bits}-bit range is stored; save it as 8-bit RGB if the colours look "
                "wrong"), stacklevel=3)
        return float(top)
    if values.dtype.kind != "f":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
    if not (np.isfinite(low) and np.isfinite(high)):  # infinities (or only NaN): look at the finite values
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            raise ImageReadError(path, "floating-point image without a finite value")
        low, high = float(finite.min()), float(finite.max())
    top = next((t for t in FLOAT_RANGES if high <= t * (1 + FLOAT_OVERSHOOT)), None)
    if low < 0 or top is None:
        raise ImageReadError(path, f"floating-point values from {low:g} to {high:g}; expected the range "
                                   "[0, 1], [0, 255] or [0, 65535]; save the image as 8-bit RGB")
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        warnings.warn(ImageWarning(
            f"{path}: {n_nan} value(s) are not a number (NaN); they read as white background"), stacklevel=3)
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
