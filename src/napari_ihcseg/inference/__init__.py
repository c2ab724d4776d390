"""Tiled inference, from fields in memory to whole slides.

- :func:`predict`: mask and contour probabilities of an image in memory,
  tile by tile with blended overlaps, on CUDA, MPS or the CPU (a
  :class:`Prediction`).
- :func:`segment_image`: :func:`predict` plus the instance step (a
  :class:`Segmentation`: labels and probabilities).
- :func:`segment_large`: a lazy (dask / zarr / pyramidal TIFF) image, block
  by block with halos, written to a zarr store or a tiled BigTIFF in bounded
  memory; background blocks are skipped with :func:`detect_tissue` (a
  :class:`LargeResult`). The blocks and which nuclei each owns are
  :mod:`~napari_ihcseg.inference.blocks`.

- :mod:`~napari_ihcseg.inference.tiling`: the pure tile, batch, window and
  stitching functions.
- :mod:`~napari_ihcseg.inference.preprocess`: optional filters from the
  literature (off by default).

The three functions take an :class:`InferenceConfig`; keyword arguments
override its fields.

Long runs take ``progress(done, total)`` and ``cancel`` (a
:class:`threading.Event` or a callable); cancelling raises :class:`Cancelled`.
See ``docs/inference.md``.

torch loads with the names that run a model; the pure parts (``tiling``,
``planning``, ``config``, ``control``, ``results``, ``blocks``) import
without it.
"""

from __future__ import annotations

#: Where each public name lives; the module is imported on first use.
_WHERE = {
    "PREPROCESSING": "preprocess",
    "apply_preprocess": "preprocess",
    "BlockReadError": "blocks",
    "LargeResult": "results",
    "Prediction": "results",
    "PredictionInfo": "results",
    "Segmentation": "results",
    "segment_large": "large",
    "Box": "tiling",
    "Stitcher": "tiling",
    "TilePlan": "planning",
    "batched": "tiling",
    "blend_window": "tiling",
    "pad_to_multiple": "tiling",
    "plan_tiles": "planning",
    "tile_boxes": "tiling",
    "Cancelled": "control",
    "InferenceConfig": "config",
    "predict": "tiled",
    "segment_image": "tiled",
    "Runtime": "runtime",
    "resolve_runtime": "runtime",
    "TissueMask": "tissue",
    "detect_tissue": "tissue",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
