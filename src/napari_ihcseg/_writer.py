"""npe2 writer: save a napari Labels layer as a uint32 zlib-compressed TIFF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_ihcseg import io

__all__ = ["write_labels"]


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write the data of a Labels layer to ``path`` (npe2 single-layer writer).

    Parameters
    ----------
    path : str
        Output file; ``.tif`` is appended when it does not end with ``.tif``
        or ``.tiff``.
    data : array-like
        The layer's 2-D integer labels (numpy, dask, zarr; a multiscale list
        is written at full resolution).
    meta : dict
        The layer's attributes (unused; part of the npe2 signature).

    Returns
    -------
    paths : list of str
        The written file.
    """
    out = Path(path)
    if out.suffix.lower() not in (".tif", ".tiff"):
        out = out.with_name(out.name + ".tif")
    if isinstance(data, (list, tuple)):
        data = data[0]
    labels = np.asarray(data)
    return [str(io.write_labels(out, labels))]
