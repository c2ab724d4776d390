"""The training-pair format: folders of image/mask pairs with a ``dataset.json``.

This package owns the format: one definition of its names and of the check
of ``dataset.json``, and the one writer and the one reader of it.

* :mod:`~napari_ihcseg.pairs.layout`: the folders, suffixes, the
  ``dataset.json`` keys (:data:`FORMAT`, :class:`SavedPair`), pair ids and
  :func:`check_manifest`, the check both sides use;
* :mod:`~napari_ihcseg.pairs.writer`: :class:`TrainingPairWriter` and
  :func:`save_pairs`, corrected labels (and counted points) saved as pairs;
* :mod:`~napari_ihcseg.pairs.manifest`: ``dataset.json`` kept to the list
  of complete pairs while they are written, and the training data of other
  layouts it must not hide;
* :mod:`~napari_ihcseg.pairs.reader`: :func:`load_pairs_folder` and
  :func:`read_pairs_folder` (which skips bad pairs, naming them), the pairs
  read back as :class:`~napari_ihcseg.data.sample.Sample` objects for
  training.
"""

from .layout import FORMAT, FORMAT_VERSION, MANIFEST, TILE_SIZES, SavedPair, check_folder, check_manifest, read_manifest
from .reader import PairsFolder, load_pairs_folder, read_pairs_folder
from .writer import TrainingPairWriter, plan_regions, save_pairs

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "PairsFolder",
    "TILE_SIZES",
    "SavedPair",
    "TrainingPairWriter",
    "check_folder",
    "check_manifest",
    "load_pairs_folder",
    "plan_regions",
    "read_manifest",
    "read_pairs_folder",
    "save_pairs",
]
