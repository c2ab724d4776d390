"""What became of each slide of a batch, and the cohort report.

A :class:`SlideResult` records one slide (``ok``, ``skipped``, ``failed`` or
``cancelled``, its error and its ``summary.json``); a :class:`BatchReport`
holds them all. :func:`write_cohort` writes them to ``cohort.csv``, one row
per slide (:data:`COHORT_COLUMNS`). Errors are kept to one line of at most
:data:`MAX_ERROR_CHARS` characters (:func:`one_line_error`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from napari_ihcseg._csv import write_csv

#: Name of the cohort report in the output folder.
COHORT_NAME = "cohort.csv"
#: Columns of the cohort report, in order.
COHORT_COLUMNS = (
    "slide", "stem", "status", "error", "seconds", "n_nuclei", "n_positive", "positive_percent",
    "ki67_index", "h_score", "allred_proportion_score", "allred_intensity_score", "allred_total_score",
    "interpretation", "model", "device",
    "ki67_index_ci_low", "ki67_index_ci_high", "hotspot_ki67_index", "positive_percent_ci_low",
    "positive_percent_ci_high", "enough_cells", "uncertain_calls", "stain_pattern", "dab_nuclear_share",
    "warnings",
)
#: Summary keys copied into the cohort report as they are.
SUMMARY_COLUMNS = COHORT_COLUMNS[5:14] + ("hotspot_ki67_index", "enough_cells", "stain_pattern",
                                          "dab_nuclear_share")
#: Longest error text kept in the report.
MAX_ERROR_CHARS = 300


@dataclass(frozen=True)
class SlideResult:
    """What became of one slide.

    Attributes
    ----------
    slide : Path
    stem : str
        Its outputs are ``<out>/<stem>.*``.
    status : {"ok", "skipped", "failed", "cancelled"}
        ``skipped``: finished by an earlier run; ``cancelled``: not run
        because the batch was stopped.
    error : str
        One line; empty unless failed.
    seconds : float or None
        Time spent on the slide (for a skipped one, by the run that made it).
    summary : dict or None
        Its ``summary.json``.
    """

    slide: Path
    stem: str
    status: str
    error: str = ""
    seconds: float | None = None
    summary: dict | None = None

    def row(self) -> dict:
        """The slide's cohort row (:data:`COHORT_COLUMNS`)."""
        summary = self.summary or {}
        model = summary.get("model")
        row = {"slide": str(self.slide), "stem": self.stem, "status": self.status, "error": self.error,
               "seconds": self.seconds, "model": model.get("name") if isinstance(model, dict) else model,
               "device": summary.get("device")}
        row.update({key: summary.get(key) for key in SUMMARY_COLUMNS})
        for key in ("ki67_index_ci", "positive_percent_ci"):  # an interval becomes two columns
            low, high = summary.get(key) or (None, None)
            row[f"{key}_low"], row[f"{key}_high"] = low, high
        for key in ("uncertain_calls", "warnings"):  # lists become one cell, "; "-separated
            row[key] = "; ".join(summary.get(key) or []) or None
        return {key: row[key] for key in COHORT_COLUMNS}


@dataclass(frozen=True)
class BatchReport:
    """The outcome of :func:`~napari_ihcseg.batch.run_batch`.

    Attributes
    ----------
    results : tuple of SlideResult
        One per slide, in input order.
    cohort_path : Path
        The ``cohort.csv`` written.
    scheduler : str
        Address of the scheduler used.
    dashboard_link : str or None
    seconds : float
    """

    results: tuple[SlideResult, ...]
    cohort_path: Path
    scheduler: str = ""
    dashboard_link: str | None = None
    seconds: float = 0.0
    counts: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        counts = {status: 0 for status in ("ok", "skipped", "failed", "cancelled")}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        object.__setattr__(self, "counts", counts)

    @property
    def failed(self) -> list[SlideResult]:
        """The slides that failed."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def all_done(self) -> bool:
        """True when every slide is ``ok`` or ``skipped``."""
        return all(r.status in ("ok", "skipped") for r in self.results)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if value != value else repr(value)
    return str(value)


def write_cohort(path: str | os.PathLike, results: Iterable[SlideResult]) -> Path:
    """Write the cohort report atomically: one row per slide (:data:`COHORT_COLUMNS`).

    Missing values (no stain, a failed slide, Ki-67's interpretation) are
    empty cells; floats are written at full precision.
    """
    return write_csv(path, COHORT_COLUMNS, ([_cell(v) for v in result.row().values()] for result in results))


def one_line_error(exc: BaseException) -> str:
    """The error of a slide as the cohort report keeps it: one line, at most :data:`MAX_ERROR_CHARS` long.

    Parameters
    ----------
    exc : BaseException
        What the slide raised. An :class:`~napari_ihcseg.io.ImageReadError`
        gives its reason (the file is named by the report's row); any other
        error its type and message.

    Returns
    -------
    str
        The text with its whitespace runs made single spaces, cut with an
        ellipsis when longer than :data:`MAX_ERROR_CHARS`.

    Examples
    --------
    >>> one_line_error(ValueError("bad\\n  value"))
    'ValueError: bad value'
    >>> len(one_line_error(RuntimeError("x" * 1000))) == MAX_ERROR_CHARS
    True
    """
    from napari_ihcseg.io import ImageReadError
    from napari_ihcseg.io.errors import describe_error

    text = exc.reason if isinstance(exc, ImageReadError) else describe_error(exc)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
