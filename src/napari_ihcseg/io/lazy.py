"""Open an image lazily, as one dask array per pyramid level."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .content import main_series, warn_if_uniform
from .errors import ImageReadError, as_read_error, describe_error, sniff_format, tifffile_quiet
from .image import MAX_READ_PIXELS, open_tiff, read_png_or_jpeg, tiff_layout
from .recorded_pixel_size import tiff_pixel_size
from .layout import Layout, yx_size

__all__ = ["CHUNK_SIDE", "LazyImage", "open_image"]

#: Target side of a dask chunk of a lazily opened image, in pixels.
CHUNK_SIDE = 1024
#: Opening decodes the smallest level in full, to warn about a blank image, up to this size.
UNIFORM_CHECK_PIXELS = 2048 * 2048


class _TiffSource:
    """A TIFF file's Zarr arrays, one per level, opened on first use.

    Only the path travels when pickled (to dask workers); each process opens
    the file itself.
    """

    def __init__(self, path: Path, n_levels: int, series: int = 0) -> None:
        self.path = path
        self.n_levels = n_levels
        self.series = series
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
                    series = tif.series[self.series]
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
        return {"path": self.path, "n_levels": self.n_levels, "series": self.series}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["n_levels"], state.get("series", 0))


class _LazyLevel:
    """Array-like RGB uint8 view of one level, for ``dask.array.from_array``."""

    def __init__(self, source: _TiffSource, level: int, layout: Layout, shape: tuple[int, int], *,
                 warn_translucent: bool = False) -> None:
        self.warn_translucent = warn_translucent
        self.source = source
        self.level = level
        self.layout = layout
        self.shape = (*shape, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3

    def __getitem__(self, key) -> np.ndarray:
        y, x, c = key
        try:
            with tifffile_quiet():
                raw = self.source.array(self.level)[self.layout.yx_key(y, x)]
        except Exception as exc:  # noqa: BLE001 - report any decoder failure as the file's
            where = f"level {self.level}, rows {y.start}:{y.stop}, columns {x.start}:{x.stop}"
            raise ImageReadError(self.source.path, f"cannot decode the image data at {where} "
                                                   f"({describe_error(exc)})") from None
        return self.layout.to_rgb8(raw, self.source.path, warn_translucent=self.warn_translucent)[..., c]


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
    >>> from napari_ihcseg.data.synthetic_slide import make_synthetic_slide
    >>> path = make_synthetic_slide(pathlib.Path(tempfile.mkdtemp()) / "s.tif", (4096, 4096))
    >>> with open_image(path) as img:
    ...     print(img.is_multiscale, img.shape, img.pixel_size_um)
    ...     tile = img.levels[0][:256, :256].compute()
    True (4096, 4096, 3) 0.5
    """
    import dask.array as da
    from dask.base import tokenize

    path, kind = sniff_format(path)
    if kind != "TIFF":
        image, pixel_size = read_png_or_jpeg(path, kind, MAX_READ_PIXELS)
        chunks = (min(CHUNK_SIDE * 2, image.shape[0]), min(CHUNK_SIDE * 2, image.shape[1]), 3)
        return LazyImage(path, [da.from_array(image, chunks=chunks)], pixel_size)

    with tifffile_quiet():
        tif = open_tiff(path)
        with tif:
            series = main_series(tif, path)
            index = next(i for i, s in enumerate(tif.series) if s is series)
            layout = tiff_layout(path, series)
            shapes = [yx_size(tuple(level.shape), layout) for level in series.levels]
            pixel_size = tiff_pixel_size(tif, series)
        source = _TiffSource(path, len(shapes), index)
        st = path.stat()
        free = [k for k, v in enumerate(layout.index) if v is None]
        levels = []
        with as_read_error(path, "TIFF file", cleanup=source.close):
            for i, shape in enumerate(shapes):
                native = source.array(i).chunks
                chunks = (_chunk(native[free[layout.order[0]]], shape[0]),
                          _chunk(native[free[layout.order[1]]], shape[1]), 3)
                name = "ihc-image-" + tokenize(str(path.resolve()), st.st_mtime_ns, st.st_size, i)
                levels.append(da.from_array(_LazyLevel(source, i, layout, shape), chunks=chunks, name=name,
                                            lock=False, asarray=False, fancy=False,
                                            meta=np.empty((0, 0, 0), np.uint8)))
            # Decode the smallest level now (one pixel of a large one), so a corrupt file fails at
            # opening and, when that level is decoded whole, a blank or translucent one is announced;
            # a level decoded in full is kept, not decoded again when it is computed.
            smallest = _LazyLevel(source, len(shapes) - 1, layout, shapes[-1], warn_translucent=True)
            whole = None
            if shapes[-1][0] * shapes[-1][1] <= UNIFORM_CHECK_PIXELS:
                try:
                    whole = smallest[slice(0, shapes[-1][0]), slice(0, shapes[-1][1]), slice(0, 3)]
                except ImageReadError:
                    pass  # a corrupt block is reported, naming it, where it is read
            if whole is not None:
                warn_if_uniform(whole, path)
                levels[-1] = da.from_array(whole, chunks=levels[-1].chunks, name=levels[-1].name)
            else:
                smallest.warn_translucent = False  # one pixel says nothing of the share of translucent ones
                smallest[slice(0, 1), slice(0, 1), slice(0, 3)]
    return LazyImage(path, levels, pixel_size, source)
