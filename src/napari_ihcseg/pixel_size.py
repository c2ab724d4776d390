"""Pixel sizes in micrometres: the range a microscope image can have, and the one check of a value given.

Whole-slide scanners give 0.1–1 µm per pixel and low-power overviews a few
micrometres. A value far outside :data:`PIXEL_SIZE_RANGE_UM` is a unit
mistake (nanometres typed as micrometres: ``250``), or an editor's default
resolution tag (72 dpi is 353 µm per pixel). Read from a file, such a value
is ignored (:mod:`napari_ihcseg.io.image`); given by a user, it is refused,
since areas in µm², the hot-spot circle and the automatic scale would all
be wrong by its factor.
"""

from __future__ import annotations

import math
import numbers

#: The pixel sizes (µm) a microscope image can have, inclusive.
PIXEL_SIZE_RANGE_UM = (0.01, 20.0)


def check_pixel_size_um(value, what: str = "pixel size") -> float:
    """``value`` as a float, refused unless it is a number of micrometres in :data:`PIXEL_SIZE_RANGE_UM`.

    Parameters
    ----------
    value : float
        The pixel size given.
    what : str
        How to name it in the message (an option, a field).

    Raises
    ------
    ValueError
        Naming ``what``, the value and the range.

    Examples
    --------
    >>> check_pixel_size_um(0.25)
    0.25
    >>> check_pixel_size_um(250, "--pixel-size")
    Traceback (most recent call last):
    ...
    ValueError: --pixel-size: 250 µm is not a microscope pixel size (0.01 to 20 µm); was it given in nanometres?
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what}: must be a positive number of micrometres, got {value!r}")
    low, high = PIXEL_SIZE_RANGE_UM
    if not low <= value <= high:
        hint = "; was it given in nanometres?" if value > high else "; was it given in millimetres?"
        raise ValueError(f"{what}: {value:g} µm is not a microscope pixel size ({low:g} to {high:g} µm){hint}")
    return float(value)


__all__ = ["PIXEL_SIZE_RANGE_UM", "check_pixel_size_um"]
