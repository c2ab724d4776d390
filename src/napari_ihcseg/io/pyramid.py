"""Lower resolutions of a single-level image, by striding."""

from __future__ import annotations

__all__ = ["SMALLEST_LEVEL_SIDE", "strided_pyramid"]

#: A strided pyramid stops at the first level whose longer side is at most this.
SMALLEST_LEVEL_SIDE = 2048


def strided_pyramid(level0, *, smallest_side: int = SMALLEST_LEVEL_SIDE, chunks=None) -> list:
    """Lazy levels of an image: every pixel, then every 2nd, 4th, ...

    napari shows a large single-level image (a slide written without a
    pyramid, a whole-slide label image) through these levels, reading only
    the pixels of the level it draws.

    Parameters
    ----------
    level0 : dask.array.Array
        The full-resolution image, ``(H, W)`` or ``(H, W, C)``.
    smallest_side : int
        Levels are added until the longer side is at most this.
    chunks : tuple of int, optional
        Rechunk each strided level to this (striding a chunked array leaves
        small chunks); default: keep the strided chunks.

    Returns
    -------
    list of dask.array.Array
        ``[level0, level0[::2, ::2], level0[::4, ::4], ...]``.

    Examples
    --------
    >>> import dask.array as da
    >>> [lvl.shape for lvl in strided_pyramid(da.zeros((5000, 3000), chunks=1024))]
    [(5000, 3000), (2500, 1500), (1250, 750)]
    """
    levels = [level0]
    step = 2
    while max(levels[-1].shape[:2]) > smallest_side:
        level = level0[::step, ::step]
        levels.append(level if chunks is None else level.rechunk(chunks))
        step *= 2
    return levels
