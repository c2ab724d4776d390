"""Readers of the data sets a model is trained and evaluated on.

Every reader returns a list of :class:`~napari_ihcseg.data.sample.Sample`;
they import numpy, scipy and scikit-image, never torch.

* :mod:`~napari_ihcseg.datasets.registry`: :func:`load_dataset`, data named by
  a spec string ``"kind:path"`` (:data:`DATASET_KINDS`), and the
  :data:`LICENCES` of the sources;
* :mod:`~napari_ihcseg.datasets.public`: the public nucleus sets,
  :func:`load_monuseg`, :func:`load_cpm15`, :func:`load_gbm`,
  :func:`load_deepliif`;
* :mod:`~napari_ihcseg.datasets.ki67_sets`: the real Ki-67 sets with point or
  polygon annotations (:func:`load_immunoratio`, :func:`load_ki67_points`,
  :func:`load_glioma_polygons`), resampled to the models' scale;
* :mod:`~napari_ihcseg.datasets.ki67_split`: the held-out Ki-67 cases
  (:func:`is_held_out`), never trained on;
* :mod:`~napari_ihcseg.datasets.layouts`: :func:`detect_layout` and
  :func:`load_folder`, the training folders labs already have.

The plugin's own training-pair folders are read by
:func:`napari_ihcseg.pairs.load_pairs_folder`, and :class:`Sample` and
:func:`split_by_image` live in :mod:`napari_ihcseg.data.sample`; all three are
importable from here too.
"""

from napari_ihcseg.data.sample import Sample, split_by_image
from napari_ihcseg.pairs.reader import load_pairs_folder

from .ki67_sets import KI67_SETS, load_glioma_polygons, load_immunoratio, load_ki67_points
from .ki67_split import HELD_OUT, is_held_out
from .layouts import LAYOUTS, FolderData, detect_layout, load_folder
from .public import deepliif_labels, load_cpm15, load_deepliif, load_gbm, load_monuseg
from .registry import DATASET_KINDS, LICENCES, load_dataset

__all__ = [
    "DATASET_KINDS",
    "HELD_OUT",
    "KI67_SETS",
    "LAYOUTS",
    "LICENCES",
    "FolderData",
    "Sample",
    "deepliif_labels",
    "detect_layout",
    "is_held_out",
    "load_cpm15",
    "load_dataset",
    "load_deepliif",
    "load_folder",
    "load_gbm",
    "load_glioma_polygons",
    "load_immunoratio",
    "load_ki67_points",
    "load_monuseg",
    "load_pairs_folder",
    "split_by_image",
]
