"""Whole-slide segmentation, block by block, in bounded memory.

The slide is split into square *cores* of ``block`` pixels. Each core is read
with a *halo* around it (clipped at the slide border), segmented in memory
with :func:`~napari_ihcseg.inference.segment_image`, and only the
nuclei it *owns* are written out:

- A nucleus is owned by the core that contains its centroid
  (:func:`~napari_ihcseg.inference.blocks.owns`). The centroid of
  a nucleus is one point, so exactly one core owns it: no nucleus is counted
  twice, and none is lost.
- The owner writes the whole nucleus, including the part that reaches into a
  neighbouring core, so no nucleus is cut. This is correct when the halo is
  at least the model's context (the tile ``overlap``) plus the largest
  nucleus radius: then the owner sees the nucleus and its surroundings in
  full. The default halo is ``overlap + MAX_NUCLEUS_RADIUS``, rounded up to
  the model's size multiple so that tiles of neighbouring blocks stay on the
  same pixel grid. An owned nucleus that touches the halo's outer edge means
  the halo is too small; it is counted and reported in the log.
- Ids are the running count of nuclei written so far, so they are unique
  and consecutive (1..N) over the slide.
- Writes are read-modify-write of the block's region of the output and never
  overwrite a pixel already taken by a nucleus of an earlier block. Should two
  blocks both claim one nucleus (their masks of it differ, which a large
  enough halo prevents), the later copy finds most of its pixels taken and is
  dropped, so it is still counted once.

Memory is that of one block with its halo, whatever the slide size
(``docs/inference.md`` gives the measured figures). Blocks without tissue
(:func:`~napari_ihcseg.inference.tissue.detect_tissue`) are skipped and stay
0; inside a block, tiles without tissue are not run either.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._atomic import atomic_directory, atomic_path
from ..io.lazy import LazyImage
from .blocks import BlockReadError, block_grid, owned_labels, read_region, write_block
from .config import InferenceConfig
from .control import CancelCheck, OffsetProgress, ProgressCallback, check_cancel, validate_callbacks
from .tiled import check_rgb_image, segment_image
from .preprocess import preprocess_radius
from .planning import SIZE_MULTIPLE, fit_block, plan_tiles
from .results import LargeResult
from .tiling import Box, round_up
from .tissue import TissueMask, detect_tissue, slide_levels

if TYPE_CHECKING:
    import torch

log = logging.getLogger("napari_ihcseg.inference")

#: Largest nucleus radius (pixels) the default halo allows for: 64 px is
#: 32 µm at 0.5 µm/px (20x) and 16 µm at 0.25 µm/px (40x).
MAX_NUCLEUS_RADIUS = 64
#: Chunk side of the output zarr array and tile side of the output TIFF.
DEFAULT_CHUNK = 1024
TIFF_TILE = 512
OUTPUT_SUFFIXES = (".zarr", ".tif", ".tiff")


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or ``None`` where the C library has none."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _trim_heap() -> None:
    """Hand freed heap memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Each block allocates and frees arrays of several hundred MB whose sizes
    vary at the slide border; glibc then raises its mmap threshold and serves
    them from a heap that fragments, so the resident set creeps up over
    hundreds of blocks. Trimming after each block keeps it flat.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def default_halo(config: InferenceConfig, multiple: int = SIZE_MULTIPLE) -> int:
    """The halo :func:`segment_large` uses when none is given.

    The tile overlap, the largest nucleus and the reach of the
    preprocessing, rounded up to ``multiple``.
    """
    return round_up(config.overlap + MAX_NUCLEUS_RADIUS + preprocess_radius(config.preprocess), multiple)


def _create_zarr(path: Path, shape, chunk: int):
    import zarr

    return zarr.create_array(store=str(path), shape=tuple(shape), chunks=(chunk, chunk), dtype="uint32",
                             fill_value=0, zarr_format=3)


def zarr_to_tiff(array, path: Path, *, tile: int = TIFF_TILE, description: str | None = None) -> Path:
    """Write a 2-D label array (zarr or numpy) to a tiled, zlib-compressed BigTIFF.

    Reads one row of tiles at a time, so memory is ``tile * width * 4`` bytes.
    """
    import tifffile

    h, w = (int(s) for s in array.shape)

    def tiles():
        for y in range(0, h, tile):
            strip = np.asarray(array[y:y + tile, :])
            for x in range(0, w, tile):
                out = np.zeros((tile, tile), np.uint32)
                part = strip[:, x:x + tile]
                out[:part.shape[0], :part.shape[1]] = part
                yield out

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=(h, w), dtype=np.uint32, tile=(tile, tile), bigtiff=True,
                         compression="zlib", photometric="minisblack", description=description, metadata=None)
    return Path(path)


def _tissue_tiles(tissue: TissueMask, region: Box):
    """``keep_tile`` for the tiles of a block: those that touch tissue."""

    def keep(box: Box) -> bool:
        return tissue.has_tissue(box.shift(region.y0, region.x0))

    return keep


def _resolve_tissue(tissue, levels: list) -> TissueMask | None:
    base = levels[0]
    if tissue is None or tissue is False:
        return None
    if tissue is True or tissue == "auto":
        return detect_tissue(levels)
    if isinstance(tissue, TissueMask):
        return tissue
    mask = np.asarray(tissue)
    if mask.dtype != bool or mask.ndim != 2:
        raise TypeError("tissue must be 'auto', False, a TissueMask or a 2-D boolean array")
    return TissueMask(mask, base.shape[:2])


def segment_large(
    image: LazyImage | Sequence | np.ndarray,
    model: torch.nn.Module,
    *,
    out,
    config: InferenceConfig | None = None,
    block: int | None = None,
    halo: int | None = None,
    tissue: str | bool | TissueMask | np.ndarray = "auto",
    source: str | None = None,
    overwrite: bool = False,
    chunk: int = DEFAULT_CHUNK,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck | None = None,
    **options,
) -> LargeResult:
    """Segment the nuclei of a slide block by block and write the labels to disk.

    Parameters
    ----------
    image : LazyImage, list of arrays, or (H, W, 3) array
        The slide: a :class:`~napari_ihcseg.io.LazyImage` (from
        :func:`napari_ihcseg.io.open_image`), a list of its resolution
        levels, full resolution first (dask or zarr arrays, say those of a
        napari multiscale layer), or one uint8 array that supports slicing
        (numpy, dask or zarr). Only one block is in memory at a time; the
        tissue is found on a low-resolution level (:func:`slide_levels`).
    model : torch.nn.Module
        See :func:`~napari_ihcseg.inference.predict`.
    out : path-like
        ``*.zarr`` (a zarr v3 array, uint32, chunked) or ``*.tif`` /
        ``*.tiff`` (a tiled BigTIFF, uint32, written from a temporary zarr).
    config : InferenceConfig, optional
        Tiling, device and instance options; ``**options`` override fields.
        ``scale`` must be 1: resizing the image is supported in memory only
        (:func:`~napari_ihcseg.inference.segment_image`).
    block : int, optional
        Core size of a block, a multiple of the model's size multiple.
        Default: fitted to the tile plan (:func:`~napari_ihcseg.inference.planning.fit_block`),
        so that each block with its halo is whole tiles, at most
        :data:`~napari_ihcseg.inference.planning.DEFAULT_BLOCK_SIDE` pixels a side.
    halo : int, optional
        Context read around each core; default ``overlap + MAX_NUCLEUS_RADIUS``
        (plus the preprocessing radius), rounded up to the size multiple.
    tissue : "auto", False, TissueMask or 2-D bool array
        Skip blocks without tissue: ``"auto"`` detects it on a low-resolution
        level, ``False`` processes every block, a mask is used as given
        (scaled to the slide).
    source : str, optional
        The name used in error messages (default: the LazyImage's path).
    overwrite : bool
        Replace an existing ``out``.
    chunk : int
        Chunk side of the output zarr array.
    progress : callable, optional
        ``progress(done, total)`` in tiles over all blocks with tissue.
    cancel : threading.Event or callable, optional
        Checked before every batch of tiles; raises :class:`Cancelled` and
        leaves no output behind.
    Returns
    -------
    LargeResult
        The output ``path``, the number of nuclei, the blocks run and
        skipped, the tiles and the halo used.

    Raises
    ------
    BlockReadError
        When a block cannot be decoded; the message names the file and the
        block position.
    FileExistsError
        When ``out`` exists and ``overwrite`` is false.
    ValueError
        For a bad output name, block, halo or image, or ``scale != 1``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import numpy as np, torch, zarr
    >>> class Dark(torch.nn.Module):  # "nucleus" wherever the image is dark
    ...     size_multiple = 32
    ...     def forward(self, x):
    ...         m = 20 * (0.5 - x[:, :1])
    ...         return m, m * 0 - 10
    >>> img = np.full((300, 300, 3), 255, np.uint8)
    >>> img[118:138, 118:138] = 0  # on the corner shared by four 128-pixel blocks
    >>> result = segment_large(img, Dark(), out=pathlib.Path(tempfile.mkdtemp()) / "labels.zarr",
    ...                        block=128, tissue=False, tile=64, overlap=16, device="cpu")
    >>> labels = zarr.open_array(str(result.path), mode="r")[:]
    >>> result.n_nuclei, result.blocks, int((labels == 1).sum())
    (1, 9, 400)
    """
    started = time.perf_counter()
    config = (config or InferenceConfig()).replace(**options)
    if config.scale != 1.0:
        raise ValueError(f"scale={config.scale:g} is supported for images segmented in memory only "
                         "(segment_image, predict), not block by block; use scale=1")
    validate_callbacks(progress, cancel)
    out = Path(out).expanduser()
    if not out.name.lower().endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"{out}: the output must end with .zarr, .tif or .tiff")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass overwrite=True to replace it")
    levels = slide_levels(image)
    base = levels[0]
    if len(base.shape) != 3 or base.shape[2] != 3:
        raise ValueError(f"{source or 'image'}: expected an RGB image of shape (H, W, 3), got {tuple(base.shape)}")
    if np.dtype(base.dtype) != np.uint8:
        raise TypeError(f"{source or 'image'}: expected uint8 RGB, got dtype {base.dtype}")
    source = str(source or (image.path if isinstance(image, LazyImage) else None) or "image")
    multiple = int(getattr(model, "size_multiple", SIZE_MULTIPLE))
    if block is not None and (isinstance(block, bool) or not isinstance(block, int) or block < multiple
                              or block % multiple):
        raise ValueError(f"block must be a positive multiple of {multiple}, got {block!r}")
    if halo is None:
        halo = default_halo(config, multiple)
    if isinstance(halo, bool) or not isinstance(halo, int) or halo < 0:
        raise ValueError(f"halo must be a non-negative int, got {halo!r}")
    halo = round_up(halo, multiple)
    if block is None:
        block = fit_block(halo, tile=config.tile, overlap=config.overlap, multiple=multiple)
    shape = (int(base.shape[0]), int(base.shape[1]))

    tissue_mask = _resolve_tissue(tissue, levels)
    grid = block_grid(shape, block, halo)
    work = []  # (core, region, keep_tile, tiles to run)
    for core, region in grid:
        if tissue_mask is not None and not tissue_mask.has_tissue(core):
            continue
        keep = None if tissue_mask is None else _tissue_tiles(tissue_mask, region)
        boxes = plan_tiles(region.shape, tile=config.tile, overlap=config.overlap, size_multiple=multiple).boxes
        n_tiles = len(boxes) if keep is None else sum(map(keep, boxes))
        if n_tiles:
            work.append((core, region, keep, n_tiles))
    total = sum(w[-1] for w in work)
    if progress is not None:
        progress(0, total)

    n_written = 0
    touching = 0
    duplicates = 0
    is_tiff = not out.name.lower().endswith(".zarr")
    with contextlib.ExitStack() as stack:
        if is_tiff:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmpdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent)))
            store_path = tmpdir / "labels.zarr"
        else:
            store_path = stack.enter_context(atomic_directory(out, overwrite=overwrite))
        labels_out = _create_zarr(store_path, shape, chunk)
        done = 0
        for core, region, keep, n_tiles in work:
            check_cancel(cancel, "segmentation")
            pixels = check_rgb_image(read_region(base, region, source), name=f"{source} block at y={region.y0}, "
                                                                              f"x={region.x0}")
            labels = segment_image(pixels, model, config, cancel=cancel, keep_tile=keep,
                                   progress=OffsetProgress(progress, done, total, span=n_tiles) if progress else None
                                   ).labels
            del pixels
            done += n_tiles
            owned, n_touch = owned_labels(labels, core, region, shape)
            del labels
            touching += n_touch
            n_written, n_dup = write_block(labels_out, region, owned, n_written)
            duplicates += n_dup
            del owned
            _trim_heap()
            if progress is not None:
                progress(done, total)
        attrs = {"n_nuclei": n_written, "block": block, "halo": halo, "skipped_blocks": len(grid) - len(work),
                 "source": source, "inference": config.to_dict(), "instances": config.instance_options(model)}
        labels_out.attrs.update(attrs)
        if is_tiff:
            zarr_to_tiff(labels_out, out, description=json.dumps(attrs))
    if touching or duplicates:
        log.warning("%d nucleus/nuclei touch the halo edge of their block and %d were claimed by two blocks; "
                    "a halo of %d px is too small for them, use a larger halo", touching, duplicates, halo)
    result = LargeResult(out, shape, n_written, len(grid), len(grid) - len(work), total, block, halo, touching,
                         time.perf_counter() - started)
    log.info("segmented %s: %d nuclei in %d block(s) (%d without tissue) in %.1f s", source, n_written,
             len(grid), result.skipped_blocks, result.seconds)
    return result


__all__ = ["BlockReadError", "LargeResult", "default_halo", "segment_large", "slide_levels", "zarr_to_tiff"]
