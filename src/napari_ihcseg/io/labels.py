"""Read and write instance label images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import ImageReadError, describe_error, sniff_format, tifffile_quiet
from .content import main_series
from .image import open_tiff

__all__ = ["LABELS_KEY", "binary_mask_regions", "label_image_error", "labels_placement", "read_labels", "split_components",
           "write_labels"]

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
        (int64 when an id is above 2**31 - 1, as a slide's merged blocks may hold)

    Raises
    ------
    ImageReadError
        If the file cannot be read or does not hold a 2-D, non-negative
        integer image.
    """
    path, kind = sniff_format(path)
    if kind == "JPEG":
        raise ImageReadError(path, "JPEG is lossy and cannot hold labels; use a PNG or TIFF label image")
    if kind == "TIFF":
        with tifffile_quiet():
            tif = open_tiff(path)
            with tif:
                try:
                    data = main_series(tif, path).asarray()
                except Exception as exc:  # noqa: BLE001
                    raise ImageReadError(path, f"cannot decode the image data ({describe_error(exc)})") from None
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
            raise ImageReadError(path, f"cannot decode the PNG file ({describe_error(exc)})") from None
    # Drop singleton page/channel axes, never the image's own rows or columns (a 1-row strip stays 2-D).
    while data.ndim > 2 and data.shape[0] == 1:
        data = data[0]
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2:
        raise ImageReadError(path, f"expected a 2-D single-channel label image, got shape {data.shape}")
    if data.dtype == bool:
        return data.astype(np.int32)
    if data.dtype.kind not in "ui":
        raise ImageReadError(path, f"labels must be integers, got pixel type {data.dtype}")
    top = int(data.max()) if data.size else 0
    if data.size and (data.min() < 0 or top > np.iinfo(np.int64).max):
        raise ImageReadError(path, f"label values must be in 0..{np.iinfo(np.int64).max}, "
                                   f"got {data.min()}..{data.max()}")
    # Ids above 2**31 - 1 (write_labels keeps up to 2**32 - 1) stay as they are, in int64.
    return data.astype(np.int32 if top <= np.iinfo(np.int32).max else np.int64)


def binary_mask_regions(labels: np.ndarray) -> int:
    """How many separate regions share the one label of a binary 0/1 mask; 0 for an instance image.

    A label image with a single id spread over several separate regions is
    almost surely a binary mask, not one nucleus: scoring it as it is counts
    one nucleus.

    Examples
    --------
    >>> mask = np.zeros((5, 5), int); mask[0, 0] = mask[3:, 3:] = 1
    >>> binary_mask_regions(mask), binary_mask_regions(split_components(mask))
    (2, 0)
    """
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    ids = np.unique(labels[labels != 0])
    if ids.size != 1:
        return 0
    n = int(ndi.label(labels == ids[0])[1])
    return n if n > 1 else 0


def split_components(labels: np.ndarray) -> np.ndarray:
    """Label each connected region (4-connected, as the outlines are traced) of each label as its own nucleus.

    Meant for binary masks, whose touching nuclei stay one region. In an
    instance image, nuclei of different ids stay apart however they touch;
    only a label in several separate pieces is split.

    Examples
    --------
    >>> labels = np.array([[1, 1, 2, 0, 1]])
    >>> split_components(labels)
    array([[1, 1, 2, 0, 3]], dtype=int32)
    """
    from skimage.measure import label

    return label(np.asarray(labels), background=0, connectivity=1).astype(np.int32)


#: The key of the JSON description of label TIFFs this package writes (where they sit in napari).
LABELS_KEY = "napari_ihcseg_labels"


def label_image_error(labels: np.ndarray, where: str = "labels") -> Exception | None:
    """The error :func:`write_labels` raises for ``labels`` (naming ``where``); ``None`` when it writes them.

    Nucleus labels are 2-D, integer (or bool), with ids in 0 .. 2**32 - 1.

    >>> label_image_error(np.zeros((2, 3, 3), int), "x.tif")
    ValueError('x.tif: labels must be a 2-D array (H, W), got shape (2, 3, 3)')
    >>> label_image_error(np.array([[0, 7]])) is None
    True
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        return ValueError(f"{where}: labels must be a 2-D array (H, W), got shape {labels.shape}")
    if labels.dtype != bool and labels.dtype.kind not in "ui":
        return TypeError(f"{where}: labels must be an integer array, got dtype {labels.dtype}")
    if labels.size and labels.dtype != bool:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > np.iinfo(np.uint32).max:
            return ValueError(f"{where}: label values must be in 0..{np.iinfo(np.uint32).max}, got {low}..{high}")
    return None


def write_labels(path: str | os.PathLike, labels: np.ndarray, *, overwrite: bool = True,
                 placement: dict | None = None) -> Path:
    """Write instance labels as a zlib-compressed uint32 TIFF, atomically.

    Parameters
    ----------
    path : path-like
        Output ``.tif`` or ``.tiff`` file; its folder is created if needed.
    labels : (H, W) array of int or bool
        0 background, 1..N objects; values must fit in uint32.
    overwrite : bool
        If false and the file exists, raise :class:`FileExistsError`.
    placement : dict, optional
        JSON-able ``scale`` and ``translate`` of the napari layer, kept in
        the file's description under :data:`LABELS_KEY` (with or without
        them, the key marks the file as this package's labels;
        :func:`labels_placement` reads it back).

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
    error = label_image_error(labels, str(path))
    if error is not None:
        raise error
    data = np.ascontiguousarray(labels, dtype=np.uint32)
    tile = (512, 512) if max(data.shape) > 4096 else None
    with atomic_path(path, overwrite=overwrite) as tmp:
        tifffile.imwrite(tmp, data, photometric="minisblack", compression="zlib", predictor=True,
                         tile=tile, metadata={LABELS_KEY: dict(placement or {})})
    return path


def labels_placement(path: str | os.PathLike) -> dict | None:
    """The placement :func:`write_labels` recorded in a TIFF; ``None`` if the file is not such a label image.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "nuclei.tif"
    >>> _ = write_labels(out, np.ones((4, 4), int), placement={"scale": [0.5, 0.5]})
    >>> labels_placement(out)
    {'scale': [0.5, 0.5]}
    """
    import tifffile

    try:
        with tifffile_quiet(), tifffile.TiffFile(path) as tif:
            shaped = tif.shaped_metadata or ()
    except Exception:  # noqa: BLE001 - not a readable TIFF: not this package's labels
        return None
    found = shaped[0].get(LABELS_KEY) if shaped and isinstance(shaped[0], dict) else None
    return dict(found) if isinstance(found, dict) else None
