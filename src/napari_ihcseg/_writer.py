"""npe2 writer: save a napari Labels layer as a zlib-compressed TIFF.

Nucleus labels (2-D, ids 0 .. 2**32 - 1) are written as
:func:`napari_ihcseg.io.write_labels` writes them, a uint32 TIFF that keeps
the layer's scale and translate, so the plugin's reader puts them back on
the image they were drawn on. Anything else a Labels layer can hold (a
stack, negative ids) is written as it is: napari takes this writer first for
labels saved as TIFF, and a refusal would save nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_ihcseg import io
from napari_ihcseg.io.labels import label_image_error

__all__ = ["write_labels"]


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Write the data of a Labels layer to ``path`` (npe2 single-layer writer).

    Parameters
    ----------
    path : str
        Output file; ``.tif`` is appended when it does not end with ``.tif``
        or ``.tiff``.
    data : array-like
        The layer's integer labels (numpy, dask, zarr; a multiscale list is
        written at full resolution).
    meta : dict
        The layer's attributes; its ``scale`` and ``translate`` are kept.

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
    placement = {key: [float(v) for v in meta[key]] for key in ("scale", "translate") if meta.get(key) is not None}
    if label_image_error(labels) is None:
        return [str(io.write_labels(out, labels, placement=placement))]
    import tifffile  # not nucleus labels (a stack, negative ids): written as they are

    from napari_ihcseg._atomic import atomic_path

    with atomic_path(out) as tmp:
        tifffile.imwrite(tmp, labels, photometric="minisblack", compression="zlib", metadata=None)
    return [str(out)]
