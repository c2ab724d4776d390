"""npe2 reader: open IHC images in napari as RGB layers, and the plugin's own label TIFFs as labels.

Pyramidal files (SVS, OME-TIFF and other tiled pyramids) open as a lazy
multiscale layer, so napari shows a whole slide while reading only the tiles
on screen. A large file without a pyramid gets a lazy pyramid of strided
views. Everything else is read into memory. Images come out as RGB uint8
(see :mod:`napari_ihcseg.io`); a file that cannot be read raises
:class:`~napari_ihcseg.io.ImageReadError` with a one-line message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from napari_ihcseg.io import IMAGE_SUFFIXES, image_stem, labels_placement, open_image, read_labels, strided_pyramid

__all__ = ["get_reader", "read_ihc"]

#: Single-level images with more pixels than this open lazily with a pyramid.
LARGE_PIXELS = 8192 * 8192
#: The smallest level of a generated pyramid fits in this many pixels a side.
SMALLEST_LEVEL_SIDE = 2048

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]


def _paths(path: PathOrPaths) -> list[str]:
    if isinstance(path, (str, os.PathLike)):
        return [os.fspath(path)]
    return [os.fspath(p) for p in path]


def _accepts(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES) and not os.path.isdir(path)


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[tuple]] | None:
    """Return :func:`read_ihc` if every path looks like a supported image.

    Parameters
    ----------
    path : str or list of str
        One path or several (opened as one layer each).

    Returns
    -------
    reader : callable or None
        None for an empty list, folders, and file names without a supported
        ending (``.png``, ``.jpg``, ``.jpeg``, ``.tif``, ``.tiff``, ``.svs``,
        ``.btf``), so napari offers other readers.
    """
    paths = _paths(path)
    if not paths or not all(_accepts(p) for p in paths):
        return None
    return read_ihc


def _labels_layer(path: str) -> tuple | None:
    """A label TIFF this package wrote, as a labels layer placed where it was saved from; else None."""
    if not path.lower().endswith((".tif", ".tiff")):
        return None
    placement = labels_placement(path)
    if placement is None:
        return None
    name = Path(path).name
    meta: dict = {"name": name[: -len(Path(name).suffix)], "metadata": {"path": str(Path(path).resolve())}}
    for key in ("scale", "translate"):
        if isinstance(placement.get(key), list) and len(placement[key]) == 2:
            meta[key] = tuple(float(v) for v in placement[key])
    return read_labels(path), meta, "labels"


def _layer(path: str) -> tuple:
    labels = _labels_layer(path)
    if labels is not None:
        return labels
    image = open_image(path)
    meta: dict = {
        "name": image_stem(path),
        "rgb": True,
        "metadata": {"path": str(Path(path).resolve()), "pixel_size_um": image.pixel_size_um},
    }
    if image.pixel_size_um:
        meta["scale"] = (image.pixel_size_um, image.pixel_size_um)
    h, w = image.shape[:2]
    if image.is_multiscale:
        data = list(image.levels)
        meta["multiscale"] = True
    elif h * w > LARGE_PIXELS:
        data = strided_pyramid(image.levels[0], smallest_side=SMALLEST_LEVEL_SIDE, chunks=(1024, 1024, 3))
        meta["multiscale"] = True
    else:
        try:
            data = np.asarray(image.levels[0].compute())
        finally:  # read now in full: the file is not needed, and a damaged one is not left open
            image.close()
    return data, meta, "image"


def read_ihc(path: PathOrPaths) -> list[tuple]:
    """Read one or several image files as napari layer data.

    Parameters
    ----------
    path : str or list of str
        Image file(s).

    Returns
    -------
    layers : list of (data, metadata, "image")
        One RGB image layer per file, named after the file. ``data`` is a
        list of dask arrays (``multiscale=True``) for pyramidal or large
        files, else a numpy array. ``metadata["metadata"]`` holds the file
        path and the pixel size in micrometres (or None); when the pixel size
        is known, ``scale`` is set to it (layer coordinates in micrometres).
        A label TIFF written by the plugin (its writer, ``ihcseg segment``)
        opens as ``(labels, metadata, "labels")``, with the scale and
        translate of the layer it was saved from.

        napari passes a list of paths only when asked to open them as a
        stack (``viewer.open(paths, stack=True)``): images of one size then
        become one ``(N, H, W, 3)`` layer, named after the first file.

    Raises
    ------
    ValueError
        For a stack of images of different sizes, or of whole slides,
        naming the files.
    """
    paths = _paths(path)
    layers = [_layer(p) for p in paths]
    if isinstance(path, (str, os.PathLike)) or len(layers) < 2:
        return layers
    return [_stacked(layers, paths)]


def _stacked(layers: list[tuple], paths: list[str]) -> tuple:
    """One layer stacking the images of ``layers`` (napari's "open as stack")."""
    kinds = {kind for _, _, kind in layers}
    shapes = {np.shape(data) if not meta.get("multiscale") else None for data, meta, _ in layers}
    if kinds != {"image"} or None in shapes or len(shapes) > 1:
        found = ", ".join(f"{Path(p).name} ({'whole slide' if meta.get('multiscale') else kind} "
                          f"{'x'.join(map(str, np.shape(data)[:2]))})" for p, (data, meta, kind) in zip(paths, layers))
        raise ValueError(f"cannot open as one stack images of different sizes or kinds: {found}; "
                         "open them as separate layers")
    _, meta, kind = layers[0]
    return np.stack([d for d, _, _ in layers]), {**meta, "metadata": {**meta["metadata"], "paths": paths}}, kind
