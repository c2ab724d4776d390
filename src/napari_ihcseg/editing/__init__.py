"""Correcting nucleus labels by hand: delete, merge, split, and a record of what changed.

Every operation here is computed, not applied: it returns a :class:`LabelEdit`
holding the pixels that change, their new values and the nucleus ids it
creates, changes and deletes. ``edit.apply(labels)`` writes it into the array;
a napari widget instead passes ``edit.indices, edit.values`` to
``Labels.data_setitem`` so that the edit joins the layer's undo history.

:class:`LabelDiffer` finds what changed between two states of a label image
(for edits made with the paint, fill and erase tools, and for undo), and
:class:`EditTracker` keeps the record of which nuclei a human created, changed
or deleted, and when, so that exports and training pairs can say so.
:class:`RecoveryStore` keeps corrections not yet saved in a per-user folder,
so that a crash loses none.

The names above are defined in these modules and importable from here:

* :mod:`~napari_ihcseg.editing.operations`: :class:`LabelChange`,
  :class:`LabelEdit`, :func:`next_free_label`, :func:`label_at`,
  :func:`delete_label` and :func:`merge_labels`;
* :mod:`~napari_ihcseg.editing.split`: :func:`split_label_by_line`,
  :func:`split_label_by_distance` and :func:`split_label_by_instances`;
* :mod:`~napari_ihcseg.editing.tracking`: :class:`LabelDiffer`,
  :class:`EditRecord`, :class:`EditTracker` and :data:`CLASS_VALUES`;
* :mod:`~napari_ihcseg.editing.count`: :func:`grow_nucleus_at` (a nucleus
  grown where a person clicked), :func:`typical_diameter` and
  :func:`compare_counts` (nuclei against a person's point counts);
* :mod:`~napari_ihcseg.editing.recovery`: :class:`RecoveryStore`,
  :class:`RecoveryInfo`, :func:`recovery_key` and
  :func:`default_recovery_dir` (unsaved corrections, autosaved).
"""

from __future__ import annotations

from .operations import LabelChange, LabelEdit, delete_label, label_at, merge_labels, next_free_label
from .split import split_label_by_distance, split_label_by_instances, split_label_by_line
from .count import compare_counts, grow_nucleus_at, typical_diameter
from .tracking import CLASS_VALUES, EditRecord, EditTracker, LabelDiffer
from .recovery import RecoveryInfo, RecoveryStore, default_recovery_dir, recovery_key

__all__ = [
    "CLASS_VALUES",
    "EditRecord",
    "EditTracker",
    "LabelChange",
    "LabelDiffer",
    "LabelEdit",
    "RecoveryInfo",
    "RecoveryStore",
    "compare_counts",
    "default_recovery_dir",
    "delete_label",
    "grow_nucleus_at",
    "label_at",
    "merge_labels",
    "next_free_label",
    "recovery_key",
    "split_label_by_distance",
    "split_label_by_instances",
    "split_label_by_line",
    "typical_diameter",
]
