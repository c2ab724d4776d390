"""Synthetic whole-slide images: large tiled pyramidal BigTIFF files.

:func:`make_synthetic_slide` writes slides of synthetic IHC tissue, tile by
tile, for tests and benchmarks of whole-slide code (input/output, tiling,
memory). A few irregular tissue pieces lie on empty glass (:data:`GLASS_RGB`);
tissue tiles are drawn from a few :func:`~napari_ihcseg.data.synthetic.make_synthetic_ihc`
fields, so a slide of any size costs only a few fields to generate. The lower
resolutions are 2 x 2 means of the level above, written as SubIFDs, and kept
between levels as JPEG-encoded quarter tiles, so memory stays at a few tiles
whatever the slide's size.

The names are also available from :mod:`napari_ihcseg.data.synthetic` and
:mod:`napari_ihcseg.data`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .nuclei import normalised_radius, outline_harmonics, outline_reach
from .synthetic import make_synthetic_ihc

__all__ = [
    "GLASS_RGB",
    "make_synthetic_slide",
]

#: RGB of empty glass in synthetic slides.
GLASS_RGB = (246, 246, 244)
_MIN_LEVEL_SIDE = 1  # never make a level smaller than this


@dataclass(frozen=True)
class _Blob:
    """One piece of tissue: an irregular ellipse in level-0 pixels."""

    cy: float
    cx: float
    a: float
    b: float
    theta: float
    coeffs: np.ndarray

    def mask(self, y0: int, x0: int, height: int, width: int) -> np.ndarray | None:
        """Tissue mask of this blob over a window, or None when it misses it."""
        reach = outline_reach(self.a, self.coeffs)
        if (self.cy + reach < y0 or self.cy - reach > y0 + height
                or self.cx + reach < x0 or self.cx - reach > x0 + width):
            return None
        # A coarse look first: most windows are far outside or deep inside.
        step = 16
        dy = (np.arange(y0, y0 + height + step, step, dtype=np.float32) - np.float32(self.cy))[:, None]
        dx = (np.arange(x0, x0 + width + step, step, dtype=np.float32) - np.float32(self.cx))[None, :]
        rho = normalised_radius(dy, dx, self.a, self.b, self.theta, self.coeffs)
        margin = 2.0 * step / self.b  # rho changes by less than this between grid points
        if rho.min() > 1.0 + margin:
            return None
        if rho.max() < 1.0 - margin:
            return np.ones((height, width), bool)
        dy = (np.arange(y0, y0 + height, dtype=np.float32) - np.float32(self.cy))[:, None]
        dx = (np.arange(x0, x0 + width, dtype=np.float32) - np.float32(self.cx))[None, :]
        return normalised_radius(dy, dx, self.a, self.b, self.theta, self.coeffs) <= 1.0


def _tissue_layout(rng: np.random.Generator, shape: tuple[int, int], fraction: float) -> list[_Blob]:
    """A few tissue pieces covering about ``fraction`` of the slide."""
    if fraction <= 0:
        return []
    h, w = shape
    n = int(rng.integers(2, 6))
    shares = rng.dirichlet(np.full(n, 2.0)) * fraction * h * w
    blobs = []
    for area in shares:
        aspect = float(rng.uniform(0.5, 1.0))
        r = float(np.sqrt(area / np.pi))
        a, b = r / np.sqrt(aspect), r * np.sqrt(aspect)
        cy = float(rng.uniform(min(b, h / 2), max(h - b, h / 2)))
        cx = float(rng.uniform(min(a, w / 2), max(w - a, w / 2)))
        coeffs = (outline_harmonics(rng) * 1.5).astype(np.complex64)
        blobs.append(_Blob(cy, cx, a, b, float(rng.uniform(0, np.pi)), coeffs))
    return blobs


def _level_shapes(shape: tuple[int, int], tile: int, levels: int | None) -> list[tuple[int, int]]:
    shapes = [shape]
    while True:
        h, w = shapes[-1]
        if levels is not None and len(shapes) >= levels:
            break
        if levels is None and max(h, w) <= tile:
            break
        if min(h, w) // 2 < _MIN_LEVEL_SIDE:
            break
        shapes.append((h // 2, w // 2))
    return shapes


def _halve(tile_rgb: np.ndarray) -> np.ndarray:
    """2 x 2 mean of an RGB tile with even sides."""
    t = tile_rgb.astype(np.uint16)
    s = t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8)


class _ChunkCache:
    """Half-resolution quarters of the tiles of one level, kept JPEG-encoded.

    ``None`` stands for an empty-glass quarter, so background costs nothing.
    """

    def __init__(self) -> None:
        import imagecodecs

        self._encode = lambda a: imagecodecs.jpeg_encode(a, level=95)
        self._decode = imagecodecs.jpeg_decode
        self._chunks: dict[tuple[int, int], bytes] = {}

    def put(self, i: int, j: int, quarter: np.ndarray | None) -> None:
        if quarter is not None:
            self._chunks[i, j] = self._encode(quarter)

    def get(self, i: int, j: int) -> np.ndarray | None:
        data = self._chunks.get((i, j))
        return None if data is None else self._decode(data)


def make_synthetic_slide(
    path: str | os.PathLike,
    shape: tuple[int, int] = (20000, 20000),
    *,
    tile: int = 512,
    pyramid_levels: int | None = None,
    seed: int = 0,
    compression: str | None = "jpeg",
    tissue_fraction: float = 0.3,
    pixel_size_um: float = 0.5,
    n_fields: int = 4,
    overwrite: bool = True,
    progress: Callable[[int, int], None] | None = None,
    **field_options,
) -> Path:
    """Write a large tiled pyramidal BigTIFF slide of synthetic IHC tissue.

    The slide is generated and written tile by tile, so memory stays at a few
    tiles whatever its size. A few irregular tissue pieces cover about
    ``tissue_fraction`` of the slide; the rest is empty glass
    (:data:`GLASS_RGB`), which tissue detection should skip. Tissue tiles are
    drawn from ``n_fields`` :func:`make_synthetic_ihc` fields of one tile
    each, turned by a multiple of 90 degrees and mirrored at random (seeded
    from ``seed`` and the tile position), so a slide of any size costs only a
    few fields to generate. Nuclei are cut at tile seams: the slide serves
    tests and benchmarks of input/output, tiling and memory, not accuracy.

    Level 0 is written as the main image, the lower resolutions (each half
    the previous, 2 x 2 mean) as SubIFDs, which tifffile, QuPath and
    OME-aware readers open as a pyramid. Files named ``*.ome.tif(f)`` get
    OME-XML metadata. The pixel size goes into the resolution tags.

    Parameters
    ----------
    path : path-like
        Output file (``.tif``, ``.tiff``, ``.btf`` or ``.ome.tif``). Written
        atomically (temporary file, then rename).
    shape : (int, int)
        Height and width of level 0 in pixels.
    tile : int
        Tile side in pixels, a multiple of 16.
    pyramid_levels : int, optional
        Number of levels including level 0. By default, halve until the
        level fits in one tile.
    seed : int
        Seed of the layout and of every tile.
    compression : str or None
        Tile compression understood by tifffile: ``"jpeg"``, ``"zlib"``,
        ``"lzw"``, ``"zstd"``, ... or None.
    tissue_fraction : float
        About how much of the slide is tissue, in [0, 1].
    pixel_size_um : float
        Pixel size of level 0 in micrometres.
    n_fields : int
        Number of distinct synthetic fields the tissue tiles are drawn from.
    overwrite : bool
        Replace an existing file.
    progress : callable, optional
        ``progress(done, total)`` called after each tile (all levels).
    **field_options
        Passed to :func:`make_synthetic_ihc` (e.g. ``density``).

    Returns
    -------
    path : Path
        The written file.

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "slide.tif"
    >>> _ = make_synthetic_slide(out, (2048, 3072), tile=512, tissue_fraction=0.2)
    >>> with tifffile.TiffFile(out) as tif:
    ...     [lvl.shape for lvl in tif.series[0].levels]
    [(2048, 3072, 3), (1024, 1536, 3), (512, 768, 3), (256, 384, 3)]
    """
    import tifffile

    from napari_ihcseg._atomic import atomic_path

    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive (height, width), got {shape!r}")
    if tile < 16 or tile % 16:
        raise ValueError(f"tile must be a positive multiple of 16, got {tile!r}")
    if not 0.0 <= tissue_fraction <= 1.0:
        raise ValueError(f"tissue_fraction must be in [0, 1], got {tissue_fraction!r}")
    if pyramid_levels is not None and pyramid_levels < 1:
        raise ValueError(f"pyramid_levels must be >= 1, got {pyramid_levels!r}")
    if not pixel_size_um > 0:
        raise ValueError(f"pixel_size_um must be > 0, got {pixel_size_um!r}")
    if n_fields < 1:
        raise ValueError(f"n_fields must be >= 1, got {n_fields!r}")
    path = Path(path)
    shapes = _level_shapes((h, w), tile, pyramid_levels)
    grids = [(-(-lh // tile), -(-lw // tile)) for lh, lw in shapes]
    total = sum(gy * gx for gy, gx in grids)
    blobs = _tissue_layout(np.random.default_rng(seed), (h, w), tissue_fraction)
    glass = np.empty((tile, tile, 3), np.uint8)
    glass[:] = GLASS_RGB
    half = tile // 2
    done = 0
    fields: dict[int, np.ndarray] = {}

    def tissue_tile(i: int, j: int) -> np.ndarray:
        rng = np.random.default_rng((seed, i, j))
        k, turns, mirror = int(rng.integers(n_fields)), int(rng.integers(4)), bool(rng.integers(2))
        if k not in fields:
            field_seed = int(np.random.SeedSequence((seed, k)).generate_state(1)[0])
            fields[k] = make_synthetic_ihc((tile, tile), seed=field_seed, **field_options).image
        out = np.rot90(fields[k], turns)
        return out[:, ::-1] if mirror else out

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def level0(cache: _ChunkCache):
        gy, gx = grids[0]
        for i in range(gy):
            for j in range(gx):
                y0, x0 = i * tile, j * tile
                mask = None
                for blob in blobs:
                    m = blob.mask(y0, x0, tile, tile)
                    if m is not None:
                        mask = m if mask is None else mask | m
                if mask is not None:
                    mask[min(h - y0, tile):] = False
                    mask[:, min(w - x0, tile):] = False
                if mask is None or not mask.any():
                    out = glass
                    cache.put(i, j, None)
                else:
                    out = np.where(mask[..., None], tissue_tile(i, j), glass)
                    cache.put(i, j, _halve(out))
                tick()
                yield out

    def reduced(level: int, source: _ChunkCache, cache: _ChunkCache):
        gy, gx = grids[level]
        for i in range(gy):
            for j in range(gx):
                quarters = [[source.get(2 * i + di, 2 * j + dj) for dj in (0, 1)] for di in (0, 1)]
                if all(q is None for row in quarters for q in row):
                    out = glass
                    cache.put(i, j, None)
                else:
                    out = glass.copy()
                    for di in (0, 1):
                        for dj in (0, 1):
                            q = quarters[di][dj]
                            if q is not None:
                                out[di * half:(di + 1) * half, dj * half:(dj + 1) * half] = q
                    cache.put(i, j, _halve(out))
                tick()
                yield out

    name = path.name.lower()
    ome = name.endswith((".ome.tif", ".ome.tiff"))
    resolution = (1e4 / pixel_size_um, 1e4 / pixel_size_um)
    options = dict(
        dtype=np.uint8, tile=(tile, tile), photometric="rgb", compression=compression,
        resolution=resolution, resolutionunit="CENTIMETER",
    )
    metadata = {"axes": "YXS", "PhysicalSizeX": pixel_size_um, "PhysicalSizeY": pixel_size_um,
                "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"} if ome else None
    with atomic_path(path, overwrite=overwrite) as tmp:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=ome) as tif:
            cache = _ChunkCache()
            tif.write(level0(cache), shape=(h, w, 3), subifds=len(shapes) - 1,
                      metadata=metadata, **options)
            for level in range(1, len(shapes)):
                source, cache = cache, _ChunkCache()
                lh, lw = shapes[level]
                scale = 2**level
                options["resolution"] = (resolution[0] / scale, resolution[1] / scale)
                tif.write(reduced(level, source, cache), shape=(lh, lw, 3), subfiletype=1,
                          metadata=None, **options)
    return path
