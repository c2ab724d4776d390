"""The one CSV writer of napari-ihcseg: cells that a spreadsheet cannot run.

A spreadsheet treats a cell that begins with ``=``, ``+``, ``-`` or ``@``
(and, in some programs, a tab or a carriage return) as a formula, so a file
name such as ``=HYPERLINK("http://…")`` in a report would run when the report
is opened. Following the OWASP guidance on CSV injection, :func:`safe_cell`
prefixes such text with a single quote, which spreadsheets show as text;
numbers, also negative ones and numbers already formatted as text
(``"-0.125"``), stay numbers. Every CSV file the package writes goes through
:func:`csv_text`, :func:`write_csv` or :func:`write_table_csv`, which also
turn a carriage return inside text into a line break, so that the cell is
quoted and the row stays one row.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from napari_ihcseg._atomic import atomic_path, write_text_atomic

#: First characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def safe_cell(value):
    """A CSV cell that no spreadsheet runs as a formula.

    Text beginning with one of :data:`FORMULA_START` gets a leading ``'``;
    numbers (and text that is exactly a number) are returned unchanged.

    Examples
    --------
    >>> safe_cell('=HYPERLINK("x")'), safe_cell("@SUM(1+1)"), safe_cell("+1+1")
    ('\\'=HYPERLINK("x")', "'@SUM(1+1)", "'+1+1")
    >>> safe_cell(-3.5), safe_cell("-3.5"), safe_cell("case 1")
    (-3.5, '-3.5', 'case 1')
    """
    if isinstance(value, str) and value.startswith(FORMULA_START) and not (
            value[0] in "+-" and _is_number(value)):
        return "'" + value
    return value


def _cell(value):
    """:func:`safe_cell`, with carriage returns in text made line breaks (which the writer quotes)."""
    value = safe_cell(value)
    if isinstance(value, str) and "\r" in value:
        value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value


def _row(values: Iterable) -> list:
    return [_cell(v) for v in values]


def csv_text(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    """CSV text (``\\n`` line ends) of a header and rows, every cell made safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_row(header))
    for row in rows:
        writer.writerow(_row(row))
    return buffer.getvalue()


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence], *,
              overwrite: bool = True) -> Path:
    """Write a header and rows to ``path`` atomically, every cell made safe."""
    return write_text_atomic(path, csv_text(header, rows), overwrite=overwrite)


def safe_table(table):
    """A copy of a pandas DataFrame whose text cells and column names are safe; numbers untouched."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    table = table.copy()
    for column in table.columns:
        if not (is_numeric_dtype(table[column]) or is_bool_dtype(table[column])):
            table[column] = table[column].astype(object).map(_cell)
    table.columns = [_cell(c) if isinstance(c, str) else c for c in table.columns]
    return table


def write_table_csv(path: str | os.PathLike, table, *, float_format: str | None = None,
                    overwrite: bool = True) -> Path:
    """Write a pandas DataFrame (no index) to ``path`` atomically, every text cell made safe."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        safe_table(table).to_csv(tmp, index=False, lineterminator="\n", float_format=float_format)
    return Path(path)

