"""What the metrics modules share: a ratio that is ``nan`` for 0 / 0."""

from __future__ import annotations


def ratio(num: float, den: float) -> float:
    """``num / den`` as a float, ``nan`` when ``den`` is not positive.

    Every figure of :mod:`napari_ihcseg.metrics` with nothing to count (no
    object, no pixel, no point on either side) is ``nan`` this way; average
    such figures with :func:`numpy.nanmean`.

    Parameters
    ----------
    num, den : float
        Numerator and denominator; ``den`` is a count or a sum of counts.

    Returns
    -------
    float

    Examples
    --------
    >>> ratio(2, 4), ratio(0, 0)
    (0.5, nan)
    """
    return float(num / den) if den > 0 else float("nan")
