"""How sure a proportion is: Wilson intervals, the minimum count, uncertain calls.

A positive percentage counted on *n* nuclei is an estimate of the tumour's
true proportion; its 95 % Wilson score interval [Wilson 1927] says how far the
truth may lie from it. Wilson's interval is used rather than the textbook
normal ("Wald") one because it stays inside [0, 1], is not degenerate at 0 or
*n* positive nuclei, and keeps close to its nominal coverage for the small
proportions (1 %, 10 %) on which ER/PR and Allred calls turn [Brown, Cai &
DasGupta 2001].

A category call (Allred proportion score, ASCO/CAP "low positive", a Ki-67
cut-off) is *uncertain* when one of the cuts it depends on lies inside the
interval: another count of the same tumour could fall on the other side.
The International Ki67 in Breast Cancer Working Group advises counting at
least 500, ideally 1,000, invasive tumour cells [Nielsen 2021]; fewer draws a
warning. Definitions: ``docs/scoring.md``.
"""

from __future__ import annotations

import math
from statistics import NormalDist

#: Default smallest number of cells for a score (IKWG: at least 500).
DEFAULT_MIN_CELLS = 500
#: Default confidence level of the intervals.
DEFAULT_CONFIDENCE = 0.95
#: Cuts (as fractions) of the Allred proportion score: 1/100, 1/10, 1/3, 2/3.
ALLRED_CUTS = (0.01, 0.1, 1 / 3, 2 / 3)
#: Cuts (as fractions) of the ASCO/CAP 2020 ER/PR reading: 1 %, 10 %.
ASCO_CAP_CUTS = (0.01, 0.1)


def wilson_interval(k: int, n: int, *, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of the proportion ``k / n``.

    With ``p = k / n`` and ``z`` the two-sided normal quantile of
    ``confidence`` (1.96 for 95 %)::

        centre = (p + z²/2n) / (1 + z²/n)
        half   = z / (1 + z²/n) · sqrt(p(1 - p)/n + z²/4n²)

    Parameters
    ----------
    k, n : int
        Positive and counted items, ``0 <= k <= n``.
    confidence : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    (low, high) : tuple of float or None
        Fractions in [0, 1]; ``None`` when ``n`` is 0.

    Examples
    --------
    Ten positive of 100 (worked by hand in ``docs/scoring.md``):

    >>> [round(v, 4) for v in wilson_interval(10, 100)]
    [0.0552, 0.1744]
    >>> wilson_interval(0, 20)[0], round(wilson_interval(0, 20)[1], 4)
    (0.0, 0.1611)
    """
    k, n = int(k), int(n)
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n == 0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = k / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z / (1.0 + z2n) * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n))
    # The exact interval reaches 0 (1) when k = 0 (n); keep rounding from moving it.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def percent_interval(k: int, n: int, *, confidence: float = DEFAULT_CONFIDENCE) -> list[float] | None:
    """:func:`wilson_interval` in percent, as a JSON-ready ``[low, high]`` list.

    Examples
    --------
    >>> [round(v, 2) for v in percent_interval(10, 100)]
    [5.52, 17.44]
    """
    interval = wilson_interval(k, n, confidence=confidence)
    return None if interval is None else [100.0 * interval[0], 100.0 * interval[1]]


def cuts_inside(interval, cuts) -> list[float]:
    """The cuts (fractions) that lie strictly inside ``interval`` (fractions).

    Examples
    --------
    >>> cuts_inside((0.05, 0.17), ALLRED_CUTS)
    [0.1]
    >>> cuts_inside((0.2, 0.3), ALLRED_CUTS)
    []
    """
    if interval is None:
        return []
    low, high = interval
    return [c for c in cuts if low < c < high]


def allred_proportion_range(interval) -> list[int] | None:
    """The Allred proportion scores (1–5) reached across a Wilson interval.

    ``[lowest, highest]``: the score of the interval's lower and upper end
    (proportion scores of a positive count; 0 is "no positive nucleus"). The
    call is uncertain when they differ.

    Examples
    --------
    >>> allred_proportion_range((0.0552, 0.1744))
    [2, 3]
    """
    if interval is None:
        return None

    def score(fraction: float) -> int:
        if fraction < ALLRED_CUTS[0]:
            return 1
        return 1 + sum(fraction > c for c in ALLRED_CUTS[1:]) + 1

    return [score(interval[0]), score(interval[1])]


def assess(n_positive: int, n: int, *, stain: str, ki67_cutoff: float | None = None,
           min_cells: int = DEFAULT_MIN_CELLS, confidence: float = DEFAULT_CONFIDENCE) -> dict:
    """The adequacy and confidence figures of one count.

    Parameters
    ----------
    n_positive, n : int
        Positive and counted nuclei.
    stain : {"er", "pr", "ki67"}
        ER and PR get the ASCO/CAP check, Ki-67 the cut-off check; every
        stain gets the Allred check.
    ki67_cutoff : float, optional
        A Ki-67 index cut-off in percent (e.g. 20); the call is "high" at or
        above it.
    min_cells : int
        Counts below this draw a warning.
    confidence : float
        Coverage of the intervals.

    Returns
    -------
    dict
        ``positive_percent_ci``, ``allred_proportion_range``, ``min_cells``,
        ``enough_cells``, ``ki67_cutoff``, ``ki67_call``, ``uncertain_calls``
        and ``warnings`` (see ``docs/scoring.md``).

    Examples
    --------
    >>> a = assess(10, 100, stain="er")
    >>> a["uncertain_calls"], a["enough_cells"]
    (['allred_proportion_score', 'interpretation'], False)
    >>> assess(0, 0, stain="ki67")["warnings"]
    ['no cell counted (at least 500 advised): no score']
    """
    interval = wilson_interval(n_positive, n, confidence=confidence)
    uncertain, warnings = [], []
    allred = allred_proportion_range(interval) if n_positive > 0 else ([0, 0] if n else None)
    if n_positive > 0 and cuts_inside(interval, ALLRED_CUTS):
        uncertain.append("allred_proportion_score")
    if stain in ("er", "pr") and cuts_inside(interval, ASCO_CAP_CUTS):
        uncertain.append("interpretation")
    call = None
    if stain == "ki67" and ki67_cutoff is not None and n:
        # index >= cut-off, exactly: 161 of 1000 at a cut of 16.1 % is high (16.1 * 1000 is 16100.000000000002).
        call = "high" if 100 * n_positive >= ki67_cutoff * n * (1 - 1e-12) else "low"
        if cuts_inside(interval, (ki67_cutoff / 100.0,)):
            uncertain.append("ki67_call")
    enough = n >= min_cells
    level = f"{100 * confidence:g} %"
    if n == 0:  # no interval to be wide: there is no score at all
        warnings.append(f"no cell counted (at least {min_cells} advised): no score")
    elif not enough:
        warnings.append(f"only {n} cells counted (at least {min_cells} advised): "
                        f"the {level} interval is wide")
    names = {"allred_proportion_score": "Allred proportion score",
             "interpretation": "ASCO/CAP reading (1 % / 10 % cut)",
             "ki67_call": f"Ki-67 call at the {ki67_cutoff or 0:g} % cut-off"}
    for name in uncertain:
        what = names[name]
        warnings.append(f"{what} uncertain: a cut lies inside the {level} interval "
                        f"{interval[0] * 100:.1f}–{interval[1] * 100:.1f} %")
    return {
        "positive_percent_ci": percent_interval(n_positive, n, confidence=confidence),
        "allred_proportion_range": allred,
        "min_cells": int(min_cells),
        "enough_cells": bool(enough),
        "ki67_cutoff": ki67_cutoff,
        "ki67_call": call,
        "uncertain_calls": uncertain,
        "warnings": warnings,
    }
