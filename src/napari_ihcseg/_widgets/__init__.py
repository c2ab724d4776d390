"""napari dock widgets: segment, correct, save training pairs, score, train.

Each widget only wires the Qt-free core (:mod:`napari_ihcseg.inference`,
:mod:`napari_ihcseg.editing`, :mod:`napari_ihcseg.pairs`,
:mod:`napari_ihcseg.scoring`, :mod:`napari_ihcseg.training`) to napari. The
manifest points at the submodules, so nothing here is imported with
``napari_ihcseg``.
"""
