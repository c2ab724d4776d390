"""Tiled inference, from fields in memory to whole slides.

- :func:`predict`: mask and contour probabilities of an image in memory,
  tile by tile with blended overlaps, on CUDA, MPS or the CPU.
- :func:`segment_image`: :func:`predict` plus the instance step; labels.
- :func:`segment_large`: a lazy (dask / zarr / pyramidal TIFF) image, block
  by block with halos, written to a zarr store or a tiled BigTIFF in bounded
  memory; background blocks are skipped with :func:`detect_tissue`.
- :mod:`~napari_ihcseg.inference.tiling`: the pure tile, batch, window and
  stitching functions.
- :mod:`~napari_ihcseg.inference.preprocess`: optional filters from the
  literature (off by default).

Long runs take ``progress(done, total)`` and ``cancel`` (a
:class:`threading.Event` or a callable); cancelling raises :class:`Cancelled`.
See ``docs/inference.md``.
"""

from .config import InferenceConfig
from .control import Cancelled
from .large import BlockReadError, LargeResult, segment_large
from .predict import PredictionInfo, plan_tiles, predict, segment_image
from .preprocess import PREPROCESSING, apply_preprocess
from .runtime import Runtime, resolve_runtime
from .tiling import Box, Stitcher, batched, blend_window, pad_to_multiple, tile_boxes
from .tissue import TissueMask, detect_tissue

__all__ = [
    "PREPROCESSING",
    "BlockReadError",
    "Box",
    "Cancelled",
    "InferenceConfig",
    "LargeResult",
    "PredictionInfo",
    "Runtime",
    "Stitcher",
    "TissueMask",
    "apply_preprocess",
    "batched",
    "blend_window",
    "detect_tissue",
    "pad_to_multiple",
    "plan_tiles",
    "predict",
    "resolve_runtime",
    "segment_image",
    "segment_large",
    "tile_boxes",
]
