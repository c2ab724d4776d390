"""Read IHC images and label images; write label images.

Every image comes out as RGB ``uint8`` of shape ``(H, W, 3)``, whatever the
file holds:

* **Formats**: PNG, JPEG and TIFF in all its forms that tifffile reads
  (BigTIFF, OME-TIFF, tiled pyramidal TIFF, Aperio SVS, ...). The format is
  recognised from the file's first bytes, not its name.
* **Alpha** is composited onto white (``rgb * a + 255 * (1 - a)``;
  premultiplied TIFF alpha as ``rgb + 255 * (1 - a)``).
* **16-bit** (and other unsigned integer) images are rescaled by the type's
  full range, ``round(v * 255 / 65535)``, not by the image's own range: the
  mapping is the same for every block of a large image and for every image,
  so optical densities (``I0 = 255``) keep their meaning. Floating-point
  images are taken to lie in [0, 1].
* **Planar** RGB (channels first, ``(3, H, W)``) is transposed.
* **Palette** images are expanded through their colour map.
* **Grayscale** images are refused: IHC scoring separates hematoxylin from
  DAB by colour.

:func:`read_image` loads the full-resolution level into memory (up to
:data:`MAX_READ_PIXELS`); :func:`open_image` opens TIFFs lazily as a list of
dask arrays, one per pyramid level, read tile by tile through
``tifffile``'s Zarr store, so a whole slide never has to fit in memory.

Any problem with a file (missing, a folder, empty, truncated, corrupt,
unsupported) raises :class:`ImageReadError`, whose message is one line,
``"<path>: <reason>"``; errors of the decoding libraries never escape as
another type, also not from lazy reads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_READ_PIXELS",
    "ImageReadError",
    "LazyImage",
    "open_image",
    "read_image",
    "read_labels",
    "write_labels",
]

#: File name endings the readers announce (content decides the format).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".svs", ".btf", ".ome.tif", ".ome.tiff")
#: The most pixels :func:`read_image` loads into memory (16384 x 16384).
MAX_READ_PIXELS = 2**28
#: Target side of a dask chunk of a lazily opened image, in pixels.
CHUNK_SIDE = 1024

_MAGIC = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
)
_SUFFIX_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                  ".svs": "TIFF", ".btf": "TIFF"}
# Microscopy pixel sizes; outside this range a resolution tag is an editor's
# default (72, 96 or 300 dpi are 353, 265 and 85 µm per pixel) and is ignored.
_PLAUSIBLE_UM = (0.01, 20.0)
_UNIT_TO_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "\\u00B5m": 1.0,
               "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


class ImageReadError(ValueError):
    """A file that cannot be read as an image; the message is one line.

    Parameters
    ----------
    path : path-like
        The file.
    reason : str
        What is wrong, for a person (newlines are folded).

    Attributes
    ----------
    path : str
    reason : str
    """

    def __init__(self, path, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.path}: {self.reason}")


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_quiet() -> Iterator[_Collect]:
    """Collect tifffile's logged warnings instead of letting Python print them.

    tifffile reports damaged files (bad offsets, short reads) through the
    ``tifffile`` logger; without a handler Python prints them to standard
    error, which would add lines to the one-line error the user gets. A
    handler configured by the application still receives them.
    """
    handler = _Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _sniff(path) -> tuple[Path, str]:
    """Check that ``path`` is a readable, non-empty file; return its format."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"expected a file path, got {type(path).__name__}")
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot access the file ({exc.strerror or _describe(exc)})") from None
    if path.is_dir():
        raise ImageReadError(path, "is a folder, not an image file")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    if st.st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise ImageReadError(path, f"cannot read the file ({exc.strerror or _describe(exc)})") from None
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return path, kind
    expected = _SUFFIX_FORMAT.get(path.suffix.lower())
    if expected is not None:
        raise ImageReadError(path, f"not a valid {expected} file (its first bytes are not a {expected} "
                                   "signature; the file is corrupt or mislabelled)")
    suffix = path.suffix or "(no extension)"
    raise ImageReadError(path, f"unsupported file type {suffix}; "
                               "supported: PNG, JPEG, TIFF (incl. BigTIFF, OME-TIFF, tiled pyramids, SVS)")


def _plausible(um: float | None) -> float | None:
    if um is None or not np.isfinite(um):
        return None
    return float(um) if _PLAUSIBLE_UM[0] <= um <= _PLAUSIBLE_UM[1] else None


# ---------------------------------------------------------------------------
# Conversion of any supported pixel layout to RGB uint8


@dataclass(frozen=True, eq=False)
class _Layout:
    """How to turn a raw array (as the file stores it) into ``(H, W, 3)`` RGB.

    ``index`` fixes singleton axes to 0; ``order`` transposes the remaining
    axes to (y, x[, c]); ``alpha`` is "straight", "premultiplied" or None
    (a fourth channel is dropped); ``colormap`` is a (256 or more, 3) uint8
    table for palette images.
    """

    index: tuple
    order: tuple[int, ...]
    alpha: str | None = None
    colormap: np.ndarray | None = None

    def yx_key(self, y: slice, x: slice) -> tuple:
        """The raw index of a (y, x) window."""
        key = list(self.index)
        free = [i for i, k in enumerate(key) if k is None]
        # order maps output axes to the free raw axes
        key[free[self.order[0]]] = y
        key[free[self.order[1]]] = x
        return tuple(slice(None) if k is None else k for k in key)

    def to_rgb8(self, raw: np.ndarray, path) -> np.ndarray:
        """Convert a raw block (already indexed with :meth:`yx_key`) to RGB uint8.

        Large blocks are converted in strips of rows, so the temporary arrays
        of the conversion stay small next to the result.
        """
        block = np.transpose(raw, self.order)
        if self.colormap is not None:
            return self.colormap[block]
        if block.dtype == np.uint8 and block.shape[-1] == 3:
            return np.ascontiguousarray(block)
        out = np.empty((*block.shape[:2], 3), np.uint8)
        for top in range(0, block.shape[0], _STRIP_ROWS):
            rows = slice(top, top + _STRIP_ROWS)
            out[rows] = self._strip(_to_uint8(block[rows], path))
        return out

    def _strip(self, block: np.ndarray) -> np.ndarray:
        if block.shape[-1] == 3 or self.alpha is None:
            return block[..., :3]
        rgb = block[..., :3].astype(np.float32)
        a = block[..., 3:4].astype(np.float32) / np.float32(255)
        white = np.float32(255) * (1 - a)
        out = (rgb * a if self.alpha == "straight" else rgb) + white
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


_STRIP_ROWS = 1024


def _to_uint8(a: np.ndarray, path) -> np.ndarray:
    """Scale unsigned integers by their type's range, floats from [0, 1], to uint8."""
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "u":
        top = int(np.iinfo(a.dtype).max)
        if a.dtype.itemsize <= 2:  # exact integer rounding, round(v * 255 / top)
            return ((a.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)
        return np.rint(a.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    if a.dtype.kind == "f":
        return np.rint(np.clip(np.nan_to_num(a.astype(np.float32)), 0, 1) * 255).astype(np.uint8)
    raise ImageReadError(path, f"unsupported pixel type {a.dtype} (expected 8- or 16-bit unsigned, or float)")


def _check_dtype(dtype: np.dtype, path) -> None:
    if dtype == bool or dtype.kind not in "uf":
        raise ImageReadError(path, f"unsupported pixel type {dtype} (expected 8- or 16-bit unsigned, or float)")


def _grayscale(path) -> ImageReadError:
    return ImageReadError(path, "grayscale image; IHC scoring separates hematoxylin from DAB by colour, "
                                "so it needs an RGB image")


def _layout(path, axes: str, shape: tuple[int, ...], *, alpha: str | None = None,
            colormap: np.ndarray | None = None) -> _Layout:
    """Work out the layout of a raw array with tifffile-style axis letters."""
    keep = [i for i, n in enumerate(shape) if n > 1 or axes[i] in "YX"]
    index = tuple(None if i in keep else 0 for i in range(len(shape)))
    kept = "".join(axes[i] for i in keep)
    sizes = [shape[i] for i in keep]
    if "Y" not in kept or "X" not in kept:
        raise ImageReadError(path, f"not a 2-D image (axes {axes!r}, shape {shape})")
    others = [k for k in range(len(kept)) if kept[k] not in "YX"]
    if not others:
        if colormap is not None:
            return _Layout(index, (kept.index("Y"), kept.index("X")), colormap=colormap)
        raise _grayscale(path)
    if len(others) > 1:
        raise ImageReadError(path, f"holds a stack of images (axes {axes!r}, shape {shape}); "
                                   "expected one 2-D RGB image")
    c = others[0]
    if sizes[c] not in (3, 4):
        what = "grayscale-like" if sizes[c] == 2 else "multichannel"
        raise ImageReadError(path, f"{what} image with {sizes[c]} channels (axes {axes!r}); expected RGB")
    order = (kept.index("Y"), kept.index("X"), c)
    return _Layout(index, order, alpha=alpha if sizes[c] == 4 else None)


# ---------------------------------------------------------------------------
# TIFF


def _tiff_open(path: Path):
    import tifffile

    with _tifffile_quiet() as log:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the file's fault
            raise ImageReadError(path, f"cannot read the TIFF file ({_describe(exc)})") from None
        try:
            if not tif.series or not tif.series[0].levels:
                hint = f" ({log.messages[0]})" if log.messages else ""
                raise ImageReadError(path, f"the TIFF file holds no image; it is truncated or corrupt{hint}")
            return tif
        except ImageReadError:
            tif.close()
            raise
        except Exception as exc:  # noqa: BLE001
            tif.close()
            raise ImageReadError(path, f"cannot read the TIFF file ({_describe(exc)})") from None


def _tiff_layout(path: Path, series) -> _Layout:
    from tifffile import EXTRASAMPLE, PHOTOMETRIC

    page = series.keyframe
    _check_dtype(np.dtype(series.dtype), path)
    if page.photometric == PHOTOMETRIC.SEPARATED:
        raise ImageReadError(path, "CMYK colour is not supported; save the image as RGB")
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
    return _layout(path, series.axes, tuple(series.shape), alpha=alpha, colormap=colormap)


def _tiff_pixel_size(tif) -> float | None:
    """Pixel size in micrometres from Aperio, OME, ImageJ or resolution tags."""
    page = tif.pages.first
    try:
        if tif.is_svs:
            # Aperio: "Aperio Image Library ...|AppMag = 20|MPP = 0.4990|..."
            for item in page.description.split("|")[1:]:
                key, _, value = item.partition("=")
                if key.strip() == "MPP":
                    return _plausible(float(value))
        if tif.is_ome and tif.ome_metadata:
            import xml.etree.ElementTree as ET

            for el in ET.fromstring(tif.ome_metadata).iter():
                if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
                    unit = el.attrib.get("PhysicalSizeXUnit", "µm")
                    factor = _UNIT_TO_UM.get(unit)
                    if factor is not None:
                        return _plausible(float(el.attrib["PhysicalSizeX"]) * factor)
                    break
        tag = page.tags.get("XResolution")
        unit_tag = page.tags.get("ResolutionUnit")
        if tag is None:
            return None
        num, den = tag.value
        if not num:
            return None
        unit = int(unit_tag.value) if unit_tag is not None else 2
        if unit == 2:
            per = 25400.0
        elif unit == 3:
            per = 10000.0
        elif tif.is_imagej and str((tif.imagej_metadata or {}).get("unit", "")).lower() in {"micron", "um", "µm"}:
            per = 1.0
        else:
            return None
        return _plausible(per * den / num)
    except Exception:  # noqa: BLE001 - metadata is optional; a bad tag means unknown
        return None


def _yx_size(shape: tuple[int, ...], layout: _Layout) -> tuple[int, int]:
    free = [i for i, k in enumerate(layout.index) if k is None]
    return int(shape[free[layout.order[0]]]), int(shape[free[layout.order[1]]])


def _check_size(path, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageReadError(
            path,
            f"{height} x {width} pixels is more than read_image loads into memory ({max_pixels} pixels); "
            "open it lazily with napari_ihcseg.io.open_image",
        )


def _read_tiff(path: Path, max_pixels: int) -> tuple[np.ndarray, float | None]:
    tif = _tiff_open(path)
    with tif:
        series = tif.series[0]
        layout = _tiff_layout(path, series)
        _check_size(path, *_yx_size(tuple(series.shape), layout), max_pixels)
        pixel_size = _tiff_pixel_size(tif)
        try:
            raw = series.asarray(level=0)
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"cannot decode the image data ({_describe(exc)})") from None
    return layout.to_rgb8(raw[layout.yx_key(slice(None), slice(None))], path), pixel_size


# ---------------------------------------------------------------------------
# PNG and JPEG

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _png_header(path: Path) -> tuple[int, int]:
    """Bit depth and colour type from a PNG's IHDR chunk."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[12:16] != b"IHDR":
        raise ImageReadError(path, "not a valid PNG file (no IHDR header; truncated or corrupt)")
    return head[24], head[25]


def _read_png16(path: Path, max_pixels: int) -> np.ndarray:
    import imagecodecs

    try:
        raw = imagecodecs.png_decode(path.read_bytes())
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(path, f"cannot decode the PNG file ({_describe(exc)})") from None
    _check_size(path, raw.shape[0], raw.shape[1], max_pixels)
    layout = _layout(path, "YXS", raw.shape, alpha="straight")
    return layout.to_rgb8(raw, path)


def _read_pil(path: Path, kind: str, max_pixels: int) -> tuple[np.ndarray, float | None]:
    from PIL import Image

    if kind == "PNG":
        depth, colour_type = _png_header(path)
        if depth == 16 and colour_type in (2, 6):  # 16-bit RGB(A): Pillow would drop the low byte
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                try:
                    with Image.open(path) as im:
                        dpi = im.info.get("dpi")
                except Exception:  # noqa: BLE001 - only the resolution is read here
                    dpi = None
            return _read_png16(path, max_pixels), _dpi_to_um(dpi)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                _check_size(path, height, width, max_pixels)
                dpi = im.info.get("dpi")
                if im.mode in _GRAY_MODES:
                    raise _grayscale(path)
                if im.mode in ("P", "PA"):
                    im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
                elif im.mode not in ("RGB", "RGBA"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                arr = np.asarray(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"image too large to decode ({_describe(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
        raise ImageReadError(path, f"cannot decode the {kind} file ({_describe(exc)})") from None
    layout = _layout(path, "YXS", arr.shape, alpha="straight")
    return layout.to_rgb8(arr, path), _dpi_to_um(dpi)


def _dpi_to_um(dpi) -> float | None:
    try:
        value = float(dpi[0])
    except (TypeError, ValueError, IndexError):
        return None
    return _plausible(25400.0 / value) if value > 0 else None


def _read_any(path, max_pixels: int) -> tuple[np.ndarray, float | None]:
    path, kind = _sniff(path)
    if kind == "TIFF":
        with _tifffile_quiet():
            return _read_tiff(path, max_pixels)
    return _read_pil(path, kind, max_pixels)


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_READ_PIXELS) -> np.ndarray:
    """Read an image file into memory as RGB uint8.

    For pyramidal files the full-resolution level is read. See the module
    documentation for the conversions applied.

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
    >>> rgba = np.zeros((2, 2, 4), np.uint16); rgba[..., 0] = 65535  # transparent red
    >>> tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    >>> read_image(path)[0, 0].tolist()  # flattened onto white
    [255, 255, 255]
    """
    return _read_any(path, max_pixels)[0]


# ---------------------------------------------------------------------------
# Lazy multiscale


class _TiffSource:
    """A TIFF file's Zarr arrays, one per level, opened on first use.

    Only the path travels when pickled (to dask workers); each process opens
    the file itself.
    """

    def __init__(self, path: Path, n_levels: int) -> None:
        self.path = path
        self.n_levels = n_levels
        self._lock = threading.Lock()
        self._tif = None
        self._stores: list = []
        self._arrays: list | None = None

    def array(self, level: int):
        with self._lock:
            if self._arrays is None:
                import tifffile
                import zarr

                tif = tifffile.TiffFile(self.path)
                try:
                    series = tif.series[0]
                    stores = [series.aszarr(level=i) for i in range(self.n_levels)]
                    arrays = [zarr.open(store, mode="r") for store in stores]
                except BaseException:
                    tif.close()
                    raise
                self._tif, self._stores, self._arrays = tif, stores, arrays
            return self._arrays[level]

    def close(self) -> None:
        with self._lock:
            for store in self._stores:
                store.close()
            if self._tif is not None:
                self._tif.close()
            self._tif, self._stores, self._arrays = None, [], None

    def __getstate__(self) -> dict:
        return {"path": self.path, "n_levels": self.n_levels}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["n_levels"])


class _LazyLevel:
    """Array-like RGB uint8 view of one level, for ``dask.array.from_array``."""

    def __init__(self, source: _TiffSource, level: int, layout: _Layout, shape: tuple[int, int]) -> None:
        self.source = source
        self.level = level
        self.layout = layout
        self.shape = (*shape, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, key) -> np.ndarray:
        y, x, c = key
        try:
            with _tifffile_quiet():
                raw = self.source.array(self.level)[self.layout.yx_key(y, x)]
        except Exception as exc:  # noqa: BLE001 - report any decoder failure as the file's
            where = f"level {self.level}, rows {y.start}:{y.stop}, columns {x.start}:{x.stop}"
            raise ImageReadError(self.source.path, f"cannot decode the image data at {where} "
                                                   f"({_describe(exc)})") from None
        return self.layout.to_rgb8(raw, self.source.path)[..., c]


@dataclass(frozen=True, eq=False)
class LazyImage:
    """An image opened lazily: one dask array per resolution level.

    Attributes
    ----------
    path : Path
        The file.
    levels : list of dask.array.Array
        ``(h, w, 3)`` RGB uint8 arrays, full resolution first. Nothing is
        read until a region is computed.
    pixel_size_um : float or None
        Level-0 pixel size in micrometres, when the file records it.
    """

    path: Path
    levels: list
    pixel_size_um: float | None = None
    _source: _TiffSource | None = field(default=None, repr=False)

    @property
    def is_multiscale(self) -> bool:
        """True when the file holds more than one resolution level."""
        return len(self.levels) > 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the full-resolution level, ``(H, W, 3)``."""
        return tuple(self.levels[0].shape)

    def close(self) -> None:
        """Close the file; a later read opens it again."""
        if self._source is not None:
            self._source.close()

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _chunk(native: int, size: int) -> int:
    native = max(1, int(native))
    return min(size, native * max(1, round(CHUNK_SIDE / native)))


def open_image(path: str | os.PathLike) -> LazyImage:
    """Open an image lazily, as a multiscale list of dask arrays.

    TIFFs (including BigTIFF, OME-TIFF and SVS pyramids) are read tile by
    tile through ``tifffile``'s Zarr store when a region is computed; each
    dask chunk covers whole TIFF tiles, about :data:`CHUNK_SIDE` pixels a
    side. PNG and JPEG files are decoded into memory as a single level. The
    conversions of :func:`read_image` apply block by block.

    Parameters
    ----------
    path : path-like
        The image file.

    Returns
    -------
    LazyImage

    Raises
    ------
    ImageReadError
        As :func:`read_image`, at opening; also later, from a ``compute``,
        for a region whose data cannot be decoded.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from napari_ihcseg.data.synthetic import make_synthetic_slide
    >>> path = make_synthetic_slide(pathlib.Path(tempfile.mkdtemp()) / "s.tif", (4096, 4096))
    >>> with open_image(path) as img:
    ...     print(img.is_multiscale, img.shape, img.pixel_size_um)
    ...     tile = img.levels[0][:256, :256].compute()
    True (4096, 4096, 3) 0.5
    """
    import dask.array as da
    from dask.base import tokenize

    path, kind = _sniff(path)
    if kind != "TIFF":
        image, pixel_size = _read_pil(path, kind, MAX_READ_PIXELS)
        chunks = (min(CHUNK_SIDE * 2, image.shape[0]), min(CHUNK_SIDE * 2, image.shape[1]), 3)
        return LazyImage(path, [da.from_array(image, chunks=chunks)], pixel_size)

    with _tifffile_quiet():
        tif = _tiff_open(path)
        with tif:
            series = tif.series[0]
            layout = _tiff_layout(path, series)
            shapes = [_yx_size(tuple(level.shape), layout) for level in series.levels]
            pixel_size = _tiff_pixel_size(tif)
        source = _TiffSource(path, len(shapes))
        st = path.stat()
        free = [k for k, v in enumerate(layout.index) if v is None]
        levels = []
        try:
            for i, shape in enumerate(shapes):
                native = source.array(i).chunks
                chunks = (_chunk(native[free[layout.order[0]]], shape[0]),
                          _chunk(native[free[layout.order[1]]], shape[1]), 3)
                name = "ihc-image-" + tokenize(str(path.resolve()), st.st_mtime_ns, st.st_size, i)
                levels.append(da.from_array(_LazyLevel(source, i, layout, shape), chunks=chunks, name=name,
                                            lock=False, asarray=False, fancy=False,
                                            meta=np.empty((0, 0, 0), np.uint8)))
            # Decode one pixel of the smallest level now, so a corrupt file fails at opening.
            _LazyLevel(source, len(shapes) - 1, layout, shapes[-1])[slice(0, 1), slice(0, 1), slice(0, 3)]
        except ImageReadError:
            source.close()
            raise
        except Exception as exc:  # noqa: BLE001
            source.close()
            raise ImageReadError(path, f"cannot read the TIFF file ({_describe(exc)})") from None
    return LazyImage(path, levels, pixel_size, source)


# ---------------------------------------------------------------------------
# Labels

_LABEL_SUFFIXES = (".tif", ".tiff")


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read an instance label image (TIFF or PNG).

    Parameters
    ----------
    path : path-like
        A single-channel integer image: 0 background, 1..N objects.

    Returns
    -------
    labels : (H, W) ndarray of int32

    Raises
    ------
    ImageReadError
        If the file cannot be read or does not hold a 2-D, non-negative
        integer image with values below 2**31.
    """
    path, kind = _sniff(path)
    if kind == "JPEG":
        raise ImageReadError(path, "JPEG is lossy and cannot hold labels; use a PNG or TIFF label image")
    if kind == "TIFF":
        with _tifffile_quiet():
            tif = _tiff_open(path)
            with tif:
                try:
                    data = tif.series[0].asarray()
                except Exception as exc:  # noqa: BLE001
                    raise ImageReadError(path, f"cannot decode the image data ({_describe(exc)})") from None
    else:
        from PIL import Image

        try:
            with Image.open(path) as im:
                if im.mode not in {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"}:
                    raise ImageReadError(path, f"expected a single-channel label image, got mode {im.mode}")
                data = np.asarray(im)
        except ImageReadError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(path, f"cannot decode the PNG file ({_describe(exc)})") from None
    data = np.squeeze(data)
    if data.ndim != 2:
        raise ImageReadError(path, f"expected a 2-D single-channel label image, got shape {data.shape}")
    if data.dtype == bool:
        return data.astype(np.int32)
    if data.dtype.kind not in "ui":
        raise ImageReadError(path, f"labels must be integers, got pixel type {data.dtype}")
    if data.size and (data.min() < 0 or data.max() > np.iinfo(np.int32).max):
        raise ImageReadError(path, f"label values must be in 0..{np.iinfo(np.int32).max}, "
                                   f"got {data.min()}..{data.max()}")
    return data.astype(np.int32)


def write_labels(path: str | os.PathLike, labels: np.ndarray, *, overwrite: bool = True) -> Path:
    """Write instance labels as a zlib-compressed uint32 TIFF, atomically.

    Parameters
    ----------
    path : path-like
        Output ``.tif`` or ``.tiff`` file; its folder is created if needed.
    labels : (H, W) array of int or bool
        0 background, 1..N objects; values must fit in uint32.
    overwrite : bool
        If false and the file exists, raise :class:`FileExistsError`.

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "labels.tif"
    >>> _ = write_labels(out, np.array([[0, 1], [2, 2]]))
    >>> read_labels(out).tolist()
    [[0, 1], [2, 2]]
    """
    import tifffile

    from napari_ihcseg._atomic import atomic_path

    path = Path(path)
    if path.suffix.lower() not in _LABEL_SUFFIXES:
        raise ValueError(f"{path}: labels are written as TIFF; use a .tif or .tiff file name")
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{path}: labels must be a 2-D array (H, W), got shape {labels.shape}")
    if labels.dtype != bool and labels.dtype.kind not in "ui":
        raise TypeError(f"{path}: labels must be an integer array, got dtype {labels.dtype}")
    if labels.size and labels.dtype != bool:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > np.iinfo(np.uint32).max:
            raise ValueError(f"{path}: label values must be in 0..{np.iinfo(np.uint32).max}, got {low}..{high}")
    data = np.ascontiguousarray(labels, dtype=np.uint32)
    tile = (512, 512) if max(data.shape) > 4096 else None
    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, data, photometric="minisblack", compression="zlib", predictor=True,
                         tile=tile, metadata=None)
    return path
