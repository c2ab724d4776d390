"""Data for training and testing: synthetic IHC fields, targets, annotations.

Submodules import only numpy, scipy and scikit-image (never torch):

* :mod:`napari_ihcseg.data.synthetic`: :func:`make_synthetic_ihc`, synthetic
  hematoxylin + DAB fields with exact instance truth;
* :mod:`napari_ihcseg.data.synthetic_slide`: :func:`make_synthetic_slide`,
  large tiled pyramidal test slides;
* :mod:`napari_ihcseg.data.targets`: :func:`labels_to_mask` and
  :func:`labels_to_contour`, the training targets.
"""

from .synthetic import SyntheticIHC, make_synthetic_ihc
from .synthetic_slide import make_synthetic_slide
from .targets import labels_to_contour, labels_to_mask

__all__ = [
    "SyntheticIHC",
    "labels_to_contour",
    "labels_to_mask",
    "make_synthetic_ihc",
    "make_synthetic_slide",
]
