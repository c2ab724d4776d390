"""Conversion of any supported pixel layout to RGB ``uint8``.

A :class:`Layout` records how an array, as a file stores it, becomes an
``(H, W, 3)`` RGB image: which axes to drop and transpose, how to treat a
fourth (alpha) channel, and the colour map of a palette image. The readers
of whole images and the lazy per-block reads share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ImageReadError

#: Rows converted at a time, so the temporaries of a conversion stay small.
_STRIP_ROWS = 1024


@dataclass(frozen=True, eq=False)
class Layout:
    """How to turn a raw array (as the file stores it) into ``(H, W, 3)`` RGB.

    ``index`` fixes singleton axes to 0; ``order`` transposes the remaining
    axes to (y, x[, c]); ``alpha`` is "straight", "premultiplied" or None
    (a fourth channel is dropped); ``colormap`` is a (256 or more, 3) uint8
    table for palette images; ``value_top`` is the top of the range the
    pixels use (for floating point 1, 255 or 65535; for 16 bits 65535 or a
    camera's smaller range; ``None``: the type's own, see
    :func:`~napari_ihcseg.io.content.value_range_top`).
    """

    index: tuple
    order: tuple[int, ...]
    alpha: str | None = None
    colormap: np.ndarray | None = None
    value_top: float | None = None

    def yx_key(self, y: slice, x: slice) -> tuple:
        """The raw index of a (y, x) window."""
        key = list(self.index)
        free = [i for i, k in enumerate(key) if k is None]
        # order maps output axes to the free raw axes
        key[free[self.order[0]]] = y
        key[free[self.order[1]]] = x
        return tuple(slice(None) if k is None else k for k in key)

    def colour_samples(self, raw: np.ndarray) -> np.ndarray:
        """The colour channels of a whole raw array, as (y, x, 3), without its alpha: what decides the range
        its values use (an opaque 16-bit alpha at 65535 says nothing about 12-bit colours)."""
        return np.transpose(raw[self.yx_key(slice(None), slice(None))], self.order)[..., :3]

    def to_rgb8(self, raw: np.ndarray, path, *, warn_translucent: bool = False) -> np.ndarray:
        """Convert a raw block (already indexed with :meth:`yx_key`) to RGB uint8.

        Large blocks are converted in strips of rows, so the temporary arrays
        of the conversion stay small next to the result. Transparency is
        blended onto white; with ``warn_translucent``, an image of which more
        than 1 % of the pixels are partly transparent gives an
        :class:`~napari_ihcseg.io.errors.ImageWarning` (the blend pales their
        stain, so nuclei there score as less stained).
        """
        block = np.transpose(raw, self.order)
        if self.colormap is not None:
            return self.colormap[block]
        if block.dtype == np.uint8 and block.shape[-1] == 3:
            return np.ascontiguousarray(block)
        out = np.empty((*block.shape[:2], 3), np.uint8)
        blend = self.alpha is not None and block.shape[-1] == 4
        # An integer alpha is opacity over its type's full range, whatever range the colours use (a camera's
        # 12 bits); a float alpha is on the colours' scale (0-255 colours, 0-255 alpha).
        alpha_top = self.value_top if block.dtype.kind == "f" else None
        translucent = 0
        for top in range(0, block.shape[0], _STRIP_ROWS):
            rows = block[top:top + _STRIP_ROWS]
            colours = to_uint8(rows[..., :3], path, self.value_top)
            if not blend:
                out[top:top + _STRIP_ROWS] = colours
                continue
            alpha = to_uint8(rows[..., 3], path, alpha_top)
            translucent += int(np.count_nonzero((alpha > 0) & (alpha < 255)))
            out[top:top + _STRIP_ROWS] = self._blend(colours, alpha)
        if warn_translucent and translucent > 0.01 * out.shape[0] * out.shape[1]:
            import warnings

            from .errors import ImageWarning

            share = 100.0 * translucent / (out.shape[0] * out.shape[1])
            warnings.warn(ImageWarning(
                f"{path}: {share:.0f} % of the pixels are partly transparent; they are blended onto white, "
                "which pales their stain (nuclei there score as less stained); save the image without "
                "transparency"), stacklevel=3)
        return out

    def _blend(self, colours: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """``colours`` (uint8 RGB) composited onto white by ``alpha`` (uint8), straight or premultiplied."""
        rgb = colours.astype(np.float32)
        a = alpha[..., None].astype(np.float32) / np.float32(255)
        white = np.float32(255) * (1 - a)
        out = (rgb * a if self.alpha == "straight" else rgb) + white
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_uint8(a: np.ndarray, path, value_top: float | None = None) -> np.ndarray:
    """Scale pixels to uint8 by the top of their range: ``value_top``, else their type's (1 for floats).

    Values above the top are clipped; not-a-number reads as the top (white).
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "u":
        top = int(value_top) if value_top is not None else int(np.iinfo(a.dtype).max)
        if a.dtype.itemsize <= 2:  # exact integer rounding, round(v * 255 / top)
            return ((np.minimum(a, top).astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)
        return np.rint(np.minimum(a, top).astype(np.float64) * (255.0 / top)).astype(np.uint8)
    if a.dtype.kind == "f":
        top = float(value_top) if value_top is not None else 1.0
        # Clip before scaling: +inf (float32 max after nan_to_num) would overflow the multiply.
        scaled = np.clip(np.nan_to_num(a.astype(np.float32), nan=top), 0, top) * np.float32(255.0 / top)
        return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)
    raise ImageReadError(path, f"unsupported pixel type {a.dtype} (expected 8- or 16-bit unsigned, or float)")


def check_dtype(dtype: np.dtype, path) -> None:
    """Raise :class:`ImageReadError` naming ``path`` unless ``dtype`` is unsigned or floating point."""
    if dtype == bool or dtype.kind not in "uf":
        raise ImageReadError(path, f"unsupported pixel type {dtype} (expected 8- or 16-bit unsigned, or float)")


def grayscale_error(path) -> ImageReadError:
    """The error for a grayscale ``path``: scoring needs colour to separate the stains."""
    return ImageReadError(path, "grayscale image; IHC scoring separates hematoxylin from DAB by colour, "
                                "so it needs an RGB image")


def pixel_layout(path, axes: str, shape: tuple[int, ...], *, alpha: str | None = None,
            colormap: np.ndarray | None = None, value_top: float | None = None) -> Layout:
    """Work out how a raw array, with tifffile-style axis letters, becomes RGB.

    Parameters
    ----------
    path : path-like
        The file, named by any error.
    axes : str
        One letter per axis of the raw array (``"YXS"``, ``"SYX"``,
        ``"IYXS"``...); singleton axes other than Y and X are dropped.
    shape : tuple of int
        The raw array's shape.
    alpha : {"straight", "premultiplied"} or None
        How a fourth channel is composited onto white.
    colormap : (N, 3) uint8 ndarray, optional
        The colour table of a palette image.
    value_top : float or None
        Top of the range the pixels use (see :class:`Layout`).

    Returns
    -------
    Layout

    Raises
    ------
    ImageReadError
        For grayscale, stacks and other channel counts than 3 or 4.

    Examples
    --------
    >>> pixel_layout("a.tif", "SYX", (3, 20, 30)).order
    (1, 2, 0)
    >>> pixel_layout("a.tif", "ZYX", (3, 20, 30))
    Traceback (most recent call last):
    ...
    napari_ihcseg.io.errors.ImageReadError: a.tif: holds a stack of 3 single-channel images (axes 'ZYX', shape (3, 20, 30)); expected one 2-D RGB image
    """
    keep = [i for i, n in enumerate(shape) if n > 1 or axes[i] in "YX"]
    index = tuple(None if i in keep else 0 for i in range(len(shape)))
    kept = "".join(axes[i] for i in keep)
    sizes = [shape[i] for i in keep]
    if "Y" not in kept or "X" not in kept:
        raise ImageReadError(path, f"not a 2-D image (axes {axes!r}, shape {shape})")
    others = [k for k in range(len(kept)) if kept[k] not in "YX"]
    if not others:
        if colormap is not None:
            return Layout(index, (kept.index("Y"), kept.index("X")), colormap=colormap)
        raise grayscale_error(path)
    if len(others) > 1:
        raise ImageReadError(path, f"holds a stack of images (axes {axes!r}, shape {shape}); "
                                   "expected one 2-D RGB image")
    c = others[0]
    if kept[c] not in "SC":  # planes of depth, time or pages, not colours (3 grayscale pages are no RGB)
        raise ImageReadError(path, f"holds a stack of {sizes[c]} single-channel images (axes {axes!r}, shape "
                                   f"{shape}); expected one 2-D RGB image")
    if sizes[c] not in (3, 4):
        what = "grayscale-like" if sizes[c] == 2 else "multichannel"
        raise ImageReadError(path, f"{what} image with {sizes[c]} channels (axes {axes!r}); expected RGB")
    order = (kept.index("Y"), kept.index("X"), c)
    return Layout(index, order, alpha=alpha if sizes[c] == 4 else None, value_top=value_top)


def yx_size(shape: tuple[int, ...], layout: Layout) -> tuple[int, int]:
    """Height and width of a raw array of ``shape`` read through ``layout``.

    Examples
    --------
    >>> yx_size((3, 20, 30), pixel_layout("a.tif", "SYX", (3, 20, 30)))
    (20, 30)
    """
    free = [i for i, k in enumerate(layout.index) if k is None]
    return int(shape[free[layout.order[0]]]), int(shape[free[layout.order[1]]])
