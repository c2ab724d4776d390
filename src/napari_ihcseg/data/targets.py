"""Training targets derived from instance labels: the mask and the contour.

Instance segmentation by contour subtraction (see
:mod:`napari_ihcseg.instances`) learns two maps from an instance label image:

* the **mask**, every pixel that belongs to some nucleus;
* the **contour**, a band of ``width`` pixels along the inside of each
  nucleus's boundary.

Definition of the contour
-------------------------
A pixel ``p`` with label ``l > 0`` is a contour pixel when some pixel of the
image whose label differs from ``l`` (the background or another nucleus)
lies within chessboard distance ``width`` of ``p``. Equivalently: take the
inner boundary of each instance,
``skimage.segmentation.find_boundaries(labels, connectivity=2, mode="inner")``,
and dilate it ``width - 1`` times with a 3×3 square, keeping only pixels of
the same instance. The image border is not a boundary: a nucleus cut by the
border has no contour along the cut, because nothing in the image shows an
edge there (and targets computed on a crop then match the full image's). Consequences users rely on:

* the contour lies inside the mask (``contour & ~mask`` is empty);
* where two nuclei touch, both sides of the shared boundary are contour, so
  subtracting the contour from the mask always separates touching nuclei;
* a nucleus at most ``2 * width`` pixels across (away from the image border)
  is contour throughout.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["labels_to_contour", "labels_to_mask"]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array (H, W), got shape {labels.shape}")
    if labels.dtype == bool:
        return labels.astype(np.int32)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer array, got dtype {labels.dtype}")
    return labels


def labels_to_mask(labels: np.ndarray) -> np.ndarray:
    """Foreground mask of an instance label image.

    Parameters
    ----------
    labels : (H, W) array of int
        0 is background, 1..N are nuclei.

    Returns
    -------
    mask : (H, W) array of bool
        True where ``labels > 0``.

    Examples
    --------
    >>> import numpy as np
    >>> labels_to_mask(np.array([[0, 1], [2, 0]])).tolist()
    [[False, True], [True, False]]
    """
    return _check_labels(labels) > 0


def labels_to_contour(labels: np.ndarray, *, width: int = 2) -> np.ndarray:
    """Inner contour band of every instance, ``width`` pixels thick.

    See the module documentation for the exact definition.

    Parameters
    ----------
    labels : (H, W) array of int
        0 is background, 1..N are nuclei. Touching nuclei must carry
        different labels.
    width : int, optional
        Thickness of the band in pixels (``>= 1``); 1 gives the one-pixel
        inner boundary of ``find_boundaries(mode="inner")``.

    Returns
    -------
    contour : (H, W) array of bool
        True on the contour band; always a subset of ``labels > 0``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((7, 9), int)
    >>> labels[1:6, 1:4] = 1; labels[1:6, 4:8] = 2
    >>> labels_to_contour(labels, width=1).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0, 0, 0],
           [0, 1, 1, 1, 1, 1, 1, 1, 0],
           [0, 1, 0, 1, 1, 0, 0, 1, 0],
           [0, 1, 0, 1, 1, 0, 0, 1, 0],
           [0, 1, 0, 1, 1, 0, 0, 1, 0],
           [0, 1, 1, 1, 1, 1, 1, 1, 0],
           [0, 0, 0, 0, 0, 0, 0, 0, 0]])
    """
    labels = _check_labels(labels)
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    width = int(width)
    # A pixel sees a different label within chessboard distance `width` exactly
    # when the max or the min of the labels in its (2w+1)^2 window differs from
    # its own label. mode="nearest" repeats edge pixels, which adds no label
    # that is not already inside the window, so the border is not a boundary.
    size = 2 * width + 1
    high = ndi.maximum_filter(labels, size=size, mode="nearest")
    low = ndi.minimum_filter(labels, size=size, mode="nearest")
    return (labels > 0) & ((high != labels) | (low != labels))
