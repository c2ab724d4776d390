"""Former home of the data-set readers, kept for the callers that still import from here (training.prepare).

The readers now live in :mod:`napari_ihcseg.datasets` (public sets, folder
layouts, :func:`load_dataset`), the training-pair reader in
:mod:`napari_ihcseg.pairs`, and :class:`Sample` with :func:`split_by_image`
in :mod:`napari_ihcseg.data.sample`. Import them from there.
"""

from napari_ihcseg.data.sample import Sample, split_by_image
from napari_ihcseg.datasets.public import deepliif_labels, load_cpm15, load_deepliif, load_gbm, load_monuseg
from napari_ihcseg.datasets.registry import DATASET_KINDS, LICENCES, load_dataset
from napari_ihcseg.pairs.reader import load_pairs_folder

__all__ = ["DATASET_KINDS", "LICENCES", "Sample", "deepliif_labels", "load_cpm15", "load_dataset", "load_deepliif",
           "load_gbm", "load_monuseg", "load_pairs_folder", "split_by_image"]
