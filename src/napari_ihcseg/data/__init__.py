"""Data in memory for training and testing: generated IHC fields, annotated samples, targets.

Submodules import only numpy, scipy and scikit-image (never torch):

* :mod:`napari_ihcseg.data.synthetic`: :func:`make_synthetic_ihc`, synthetic
  hematoxylin + DAB fields with exact instance truth;
* :mod:`napari_ihcseg.data.nuclei`: irregular nucleus outlines and their
  placement, the shapes both synthetic generators draw;
* :mod:`napari_ihcseg.data.synthetic_ki67`: ``make_ki67_field``, the demo's
  Ki-67-like field;
* :mod:`napari_ihcseg.data.synthetic_slide`: :func:`make_synthetic_slide`,
  large tiled pyramidal test slides;
* :mod:`napari_ihcseg.data.sample`: :class:`Sample`, one annotated image as
  every reader of training data returns it, and :func:`split_by_image`;
* :mod:`napari_ihcseg.data.targets`: :func:`labels_to_mask` and
  :func:`labels_to_contour`, the training targets.

File formats are read in :mod:`napari_ihcseg.io`, the training-pair format in
:mod:`napari_ihcseg.pairs`, the public data sets in
:mod:`napari_ihcseg.datasets`.
"""

from .sample import Sample, split_by_image
from .synthetic import SyntheticIHC, make_synthetic_ihc
from .synthetic_slide import make_synthetic_slide
from .targets import labels_to_contour, labels_to_mask

__all__ = [
    "Sample",
    "SyntheticIHC",
    "labels_to_contour",
    "labels_to_mask",
    "make_synthetic_ihc",
    "make_synthetic_slide",
    "split_by_image",
]
