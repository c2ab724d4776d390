"""Classes set by hand: a person's call on a nucleus overrides the DAB threshold.

In count mode a pathologist can say "this one is positive" (or negative, or
give an intensity class 0 / 1+ / 2+ / 3+) where the DAB cut-off is wrong for
that nucleus. The override is kept by nucleus id (in the layer's
:class:`~napari_ihcseg.editing.EditTracker`) and applied after every
classification, so it survives re-scoring and threshold moves:

- ``"positive"``: at least class 1+ (the model's class when it is higher);
- ``"negative"``: class 0;
- ``"0"`` .. ``"3"``: exactly that intensity class.

Every scored table gets a ``class_source`` column, ``"human"`` for the nuclei
classified by hand and ``"model"`` for the others, which every export carries.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: Values of the ``class_source`` column.
MODEL, HUMAN = "model", "human"


def override_classes(model_class: np.ndarray, values) -> np.ndarray:
    """The intensity classes after the hand-set ``values`` (one per nucleus).

    Examples
    --------
    >>> override_classes(np.array([0, 2, 3, 1]), ["positive", "positive", "negative", "3"]).tolist()
    [1, 2, 0, 3]
    """
    model_class = np.asarray(model_class, np.int8)
    out = model_class.copy()
    for k, value in enumerate(values):
        if value == "positive":
            out[k] = max(1, int(model_class[k]))
        elif value == "negative":
            out[k] = 0
        elif value in ("0", "1", "2", "3"):
            out[k] = int(value)
        else:
            raise ValueError(f"unknown class {value!r}; expected positive, negative or 0 to 3")
    return out


def apply_class_overrides(cells: pd.DataFrame, overrides: Mapping[int, str] | None) -> pd.DataFrame:
    """A copy of a classified table with the hand-set classes and ``class_source``.

    Parameters
    ----------
    cells : pandas.DataFrame
        With ``label``, ``intensity_class`` and ``positive`` (from
        :func:`~napari_ihcseg.scoring.classify`).
    overrides : mapping of int to str, optional
        Nucleus id → ``"positive"``, ``"negative"`` or ``"0"`` .. ``"3"``;
        ids not in the table are ignored.

    Returns
    -------
    pandas.DataFrame
    """
    out = cells.copy()
    source = np.full(len(out), MODEL, dtype=object)
    if overrides:
        labels = out["label"].to_numpy()
        hit = np.flatnonzero(np.isin(labels, np.fromiter(overrides, np.int64, len(overrides))))
        if hit.size:
            values = [overrides[int(labels[k])] for k in hit]
            cls = out["intensity_class"].to_numpy(np.int8).copy()
            cls[hit] = override_classes(cls[hit], values)
            out["intensity_class"] = cls
            out["positive"] = (cls >= 1).astype(np.int8)
            source[hit] = HUMAN
    out["class_source"] = source
    return out


def human_classes(cells: pd.DataFrame) -> np.ndarray:
    """Which rows of a scored table carry a class set by hand."""
    if "class_source" not in cells:
        return np.zeros(len(cells), bool)
    return cells["class_source"].to_numpy() == HUMAN
