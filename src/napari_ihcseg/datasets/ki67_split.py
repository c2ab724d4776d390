"""The held-out split of the real Ki-67 data, by case.

Every Ki-67 figure the project reports (detection F1, recall of positive and
negative nuclei, class agreement, |Δ Ki-67 index|) is measured on the cases
named here, and nothing is trained, tuned or calibrated on them: training,
instance tuning and classifier calibration take only the other cases.

The split is by case (one field per case), and for the glioma frames by
specimen, so that no held-out figure comes from a specimen seen in training.
The held-out ki67-immunoratio cases span the index range of the set
(1.3 % to 35.8 %) and both small and large fields.
"""

from __future__ import annotations

#: ki67-immunoratio cases held out for evaluation (6 of 26).
IMMUNORATIO_HELD_OUT = ("1628-05", "5563-04", "9817-05", "16704-03", "18583-04", "20847-09")
#: ki67-points fields held out for evaluation (both: they are the full-resolution
#: versions of two ImmunoRatio cases that ki67-immunoratio leaves out).
KI67_POINTS_HELD_OUT = ("17993-04", "503-05")
#: ki67-glioma-polygons frames held out for evaluation: the one frame of the
#: third specimen.
GLIOMA_HELD_OUT = ("8682421_-A3-26",)

HELD_OUT = {
    "immunoratio": IMMUNORATIO_HELD_OUT,
    "ki67-points": KI67_POINTS_HELD_OUT,
    "glioma": GLIOMA_HELD_OUT,
}


def is_held_out(source: str, case: str) -> bool:
    """Whether a case of a Ki-67 source is held out for evaluation.

    Parameters
    ----------
    source : {"immunoratio", "ki67-points", "glioma"}
        The data set.
    case : str
        The case folder name.

    Examples
    --------
    >>> is_held_out("immunoratio", "1628-05")
    True
    >>> is_held_out("immunoratio", "1164-03")
    False
    >>> is_held_out("cpm15", "image01")
    Traceback (most recent call last):
    ValueError: unknown Ki-67 source 'cpm15'; choose one of immunoratio, ki67-points, glioma
    """
    if source not in HELD_OUT:
        raise ValueError(f"unknown Ki-67 source {source!r}; choose one of {', '.join(HELD_OUT)}")
    return case in HELD_OUT[source]
