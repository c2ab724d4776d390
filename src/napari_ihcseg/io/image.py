"""Read a whole image into memory: TIFF, PNG (8- and 16-bit) and JPEG.

Also reads the pixel size a file records (Aperio, OME, ImageJ or resolution
tags for TIFF, the DPI of PNG and JPEG) and refuses images too large for
memory.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from .content import MAX_FLOAT_RANGE_PIXELS, main_series, value_range_top, warn_if_uniform
from .recorded_pixel_size import dpi_to_um, tiff_pixel_size
from .errors import ImageReadError, as_read_error, describe_error, sniff_format, tifffile_quiet
from .layout import Layout, check_dtype, grayscale_error, pixel_layout, yx_size

__all__ = ["IMAGE_SUFFIXES", "MAX_READ_PIXELS", "read_image"]

#: File name endings the readers announce (content decides the format).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".btf", ".ome.tif", ".ome.tiff")
#: The most pixels :func:`read_image` loads into memory (16384 x 16384).
MAX_READ_PIXELS = 2**28

# ---------------------------------------------------------------------------
# TIFF


def open_tiff(path: Path):
    """Open a TIFF file that holds at least one image.

    Parameters
    ----------
    path : Path

    Returns
    -------
    tifffile.TiffFile
        Open; the caller closes it.

    Raises
    ------
    ImageReadError
        When tifffile cannot parse it or it holds no image (with tifffile's
        first logged complaint as the hint).
    """
    import tifffile

    with tifffile_quiet() as log:
        with as_read_error(path, "TIFF file"):
            tif = tifffile.TiffFile(path)
        with as_read_error(path, "TIFF file", cleanup=tif.close):
            if not tif.series or not tif.series[0].levels:
                hint = f" ({log.messages[0]})" if log.messages else ""
                raise ImageReadError(path, f"the TIFF file holds no image; it is truncated or corrupt{hint}")
        return tif


def tiff_layout(path: Path, series) -> Layout:
    """How a TIFF series becomes RGB: axes, alpha, palette and the range of floats.

    Parameters
    ----------
    path : Path
        The file, named by any error.
    series : tifffile.TiffPageSeries
        The series read (see :func:`~napari_ihcseg.io.content.main_series`).

    Returns
    -------
    Layout

    Raises
    ------
    ImageReadError
        For CMYK, grayscale, unsupported pixel types and floating-point
        whole slides.
    """
    from tifffile import COMPRESSION, EXTRASAMPLE, PHOTOMETRIC

    page = series.keyframe
    check_dtype(np.dtype(series.dtype), path)
    if page.photometric == PHOTOMETRIC.SEPARATED:
        raise ImageReadError(path, "CMYK colour is not supported; save the image as RGB")
    # tifffile hands these over as stored: the values are no RGB (YCbCr in a JPEG flavour is decoded to RGB).
    lab = {PHOTOMETRIC.CIELAB: "CIELAB", PHOTOMETRIC.ICCLAB: "ICC L*a*b*", PHOTOMETRIC.ITULAB: "ITU L*a*b*"}
    decoded_to_rgb = {COMPRESSION.OJPEG, COMPRESSION.JPEG, 33007, 34892}  # JPEG flavours tifffile converts
    if page.photometric in lab or (page.photometric == PHOTOMETRIC.YCBCR and page.compression not in decoded_to_rgb):
        raise ImageReadError(path, f"{lab.get(page.photometric, 'YCbCr')} colour is not supported; "
                                   "save the image as RGB")
    colormap = None
    if page.photometric == PHOTOMETRIC.PALETTE and page.colormap is not None:
        cmap = np.asarray(page.colormap).T  # (entries, 3), 16-bit in TIFF
        colormap = (cmap >> 8 if cmap.max() > 255 else cmap).astype(np.uint8)
    alpha = None
    extras = tuple(page.extrasamples or ())
    if extras:
        if extras[0] == EXTRASAMPLE.UNASSALPHA:
            alpha = "straight"
        elif extras[0] == EXTRASAMPLE.ASSOCALPHA:
            alpha = "premultiplied"
    layout = pixel_layout(path, series.axes, tuple(series.shape), alpha=alpha, colormap=colormap)
    dtype = np.dtype(series.dtype)
    if colormap is None and (dtype.kind == "f" or dtype == np.uint16):
        # The range is read from the smallest level, so that every block of a slide is scaled alike.
        level = series.levels[-1]
        if int(np.prod(level.shape, dtype=np.int64)) <= MAX_FLOAT_RANGE_PIXELS:
            try:
                raw = level.asarray()
            except Exception as exc:  # noqa: BLE001
                raise ImageReadError(path, f"cannot decode the image data ({describe_error(exc)})") from None
            layout = dataclasses.replace(layout, value_top=value_range_top(layout.colour_samples(raw), path))
        elif dtype.kind == "f":
            raise ImageReadError(path, "floating-point whole slides are not supported; save it as 8-bit RGB")
    return layout


def _check_size(path, height: int, width: int, max_pixels: int, *, whole_only: bool = False) -> None:
    """Refuse an image larger than ``max_pixels``; ``whole_only``: a PNG or JPEG, which cannot be read in
    blocks, so the way out is another file format rather than :func:`~napari_ihcseg.io.open_image`."""
    if height * width <= max_pixels:
        return
    if whole_only:
        raise ImageReadError(path, f"{height} x {width} pixels is more than is decoded into memory at once "
                                   f"({max_pixels} pixels), and PNG and JPEG files can only be decoded whole; "
                                   "save it as a tiled (pyramidal) TIFF, which is read block by block")
    raise ImageReadError(path, f"{height} x {width} pixels is more than read_image loads into memory "
                               f"({max_pixels} pixels); open it lazily with napari_ihcseg.io.open_image")


def _read_tiff(path: Path, max_pixels: int) -> tuple[np.ndarray, float | None]:
    tif = open_tiff(path)
    with tif:
        series = main_series(tif, path)
        layout = tiff_layout(path, series)
        _check_size(path, *yx_size(tuple(series.shape), layout), max_pixels)
        pixel_size = tiff_pixel_size(tif, series)
        try:
            raw = series.asarray(level=0)
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"cannot decode the image data ({describe_error(exc)})") from None
    image = layout.to_rgb8(raw[layout.yx_key(slice(None), slice(None))], path, warn_translucent=True)
    warn_if_uniform(image, path)
    return image, pixel_size


# ---------------------------------------------------------------------------
# PNG and JPEG

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _png_header(path: Path) -> tuple[int, int, int, int]:
    """Height, width, bit depth and colour type from a PNG's IHDR chunk."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise ImageReadError(path, "not a valid PNG file (no IHDR header; truncated or corrupt)")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return height, width, head[24], head[25]


def _read_png16(path: Path, max_pixels: int) -> np.ndarray:
    import imagecodecs

    _check_size(path, *_png_header(path)[:2], max_pixels, whole_only=True)  # before decoding: a few MB can hold gigabytes
    try:
        raw = imagecodecs.png_decode(path.read_bytes())
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"cannot decode the PNG file ({describe_error(exc)})") from None
    layout = pixel_layout(path, "YXS", raw.shape, alpha="straight")
    layout = dataclasses.replace(layout, value_top=value_range_top(layout.colour_samples(raw), path))
    image = layout.to_rgb8(raw, path, warn_translucent=True)
    warn_if_uniform(image, path, transparent=_transparent(raw))
    return image


def read_png_or_jpeg(path: Path, kind: str, max_pixels: int) -> tuple[np.ndarray, float | None]:
    """Decode a PNG (16-bit RGB at full precision) or JPEG file to RGB uint8.

    Parameters
    ----------
    path : Path
    kind : {"PNG", "JPEG"}
        The format :func:`~napari_ihcseg.io.errors.sniff_format` found.
    max_pixels : int
        Larger images are refused before they are decoded.

    Returns
    -------
    image : (H, W, 3) uint8 ndarray
        Alpha composited onto white; an :class:`ImageWarning` when blank.
    pixel_size_um : float or None
        From the file's DPI, when it records a plausible one.

    Raises
    ------
    ImageReadError
        For grayscale, too large, truncated or corrupt files.
    """
    from PIL import Image

    if kind == "PNG":
        _h, _w, depth, colour_type = _png_header(path)
        if depth == 16 and colour_type in (2, 6):  # 16-bit RGB(A): Pillow would drop the low byte
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                try:
                    with Image.open(path) as im:
                        dpi = im.info.get("dpi")
                except Exception:  # noqa: BLE001 - only the resolution is read here
                    dpi = None
            return _read_png16(path, max_pixels), dpi_to_um(dpi)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                _check_size(path, height, width, max_pixels, whole_only=True)
                dpi = im.info.get("dpi")
                if im.mode in _GRAY_MODES:
                    raise grayscale_error(path)
                if im.mode in ("P", "PA"):
                    im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
                elif im.mode not in ("RGB", "RGBA"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                arr = np.asarray(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large to decode ({describe_error(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
        raise ImageReadError(path, f"cannot decode the {kind} file ({describe_error(exc)})") from None
    layout = pixel_layout(path, "YXS", arr.shape, alpha="straight")
    image = layout.to_rgb8(arr, path, warn_translucent=True)
    warn_if_uniform(image, path, transparent=_transparent(arr))
    return image, dpi_to_um(dpi)


def _transparent(raw: np.ndarray) -> bool:
    """True for an RGBA array whose every pixel is fully transparent."""
    return raw.ndim == 3 and raw.shape[-1] == 4 and not raw[..., 3].any()


def file_pixel_size(path: str | os.PathLike) -> float | None:
    """The pixel size (µm) an image file records, read from its header alone; ``None`` when unknown.

    The same value :func:`read_image_and_pixel_size` gives (a TIFF's
    resolution tags or OME / ImageJ metadata, a PNG's or JPEG's DPI when it
    is a microscope's), without decoding the pixels. A file that cannot be
    read gives ``None``: reading the pixels is what reports it.
    """
    from PIL import Image

    try:
        path, kind = sniff_format(path)
        if kind == "TIFF":
            with tifffile_quiet(), open_tiff(path) as tif:
                return tiff_pixel_size(tif)
        with Image.open(path) as im:
            return dpi_to_um(im.info.get("dpi"))
    except Exception:  # noqa: BLE001 - metadata is optional; an unreadable file is reported when read
        return None


def read_image_and_pixel_size(path: str | os.PathLike, *,
                              max_pixels: int = MAX_READ_PIXELS) -> tuple[np.ndarray, float | None]:
    """:func:`read_image`, with the pixel size (µm) the file records, or ``None``, from one read."""
    path, kind = sniff_format(path)
    if kind == "TIFF":
        with tifffile_quiet():
            return _read_tiff(path, max_pixels)
    return read_png_or_jpeg(path, kind, max_pixels)


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_READ_PIXELS) -> np.ndarray:
    """Read an image file into memory as RGB uint8.

    For pyramidal files the full-resolution level is read. See
    :mod:`napari_ihcseg.io` for the conversions applied.

    Parameters
    ----------
    path : path-like
        A PNG, JPEG or TIFF (BigTIFF, OME-TIFF, SVS, ...) file.
    max_pixels : int, optional
        Refuse images with more pixels than this; use :func:`open_image` for
        those.

    Returns
    -------
    image : (H, W, 3) ndarray of uint8

    Raises
    ------
    ImageReadError
        If the file is missing, empty, truncated, corrupt, grayscale, too
        large or of an unsupported format.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, tifffile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rgba16.tif"
    >>> rgba = np.zeros((2, 2, 4), np.uint16); rgba[..., 0] = 65535  # red, transparent
    >>> rgba[1, 1, 3] = 65535  # but one pixel opaque
    >>> tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    >>> image = read_image(path)
    >>> image[0, 0].tolist(), image[1, 1].tolist()  # flattened onto white
    ([255, 255, 255], [255, 0, 0])
    """
    return read_image_and_pixel_size(path, max_pixels=max_pixels)[0]
