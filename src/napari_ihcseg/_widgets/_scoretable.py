"""The Score widget's table: the image's scores as (what, value) rows, then how far to trust them."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QTableWidget, QTableWidgetItem, QWidget

from ._trust import trust_rows


def summary_rows(summary: dict, cells) -> list[tuple[str, str]]:
    """The table shown in the widget: (what, value) pairs."""
    def fmt(v, unit=""):
        return "–" if v is None else (f"{v:.1f}{unit}" if isinstance(v, float) else f"{v}{unit}")

    included = cells[cells["included"].to_numpy(bool)] if len(cells) else cells
    counts = np.bincount(included["intensity_class"].to_numpy(np.int64), minlength=4) if len(included) else [0] * 4
    rows = [("Nuclei counted", fmt(summary["n_nuclei"])),
            ("Positive", fmt(summary["n_positive"])),
            ("Positive %", fmt(summary["positive_percent"], " %")),
            ("H-score", fmt(summary["h_score"])),
            ("Allred (P + I = total)", "–" if summary["allred_total_score"] is None else
             f"{summary['allred_proportion_score']} + {summary['allred_intensity_score']} = "
             f"{summary['allred_total_score']}"),
            ("0 / 1+ / 2+ / 3+", " / ".join(str(int(c)) for c in counts))]
    if summary.get("ki67_index") is not None:
        rows.insert(3, ("Ki-67 index", fmt(summary["ki67_index"], " %")))
    if summary.get("interpretation"):
        rows.append(("Reading (ASCO/CAP)", summary["interpretation"]))
    if "edit_status" in cells:
        rows.append(("Edited by hand", fmt(int((cells["edit_status"] != "").sum()))))
    return rows + trust_rows(summary)


class ScoreTable(QTableWidget):
    """A two-column, read-only table of :func:`summary_rows`, as tall as its rows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["Score", "Value"])
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setStretchLastSection(True)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)

    def show_scores(self, summary: dict, cells) -> None:
        """Show the rows of ``summary`` and the scored ``cells``."""
        rows = summary_rows(summary, cells)
        self.setRowCount(len(rows))
        for r, (name, value) in enumerate(rows):
            self.setItem(r, 0, QTableWidgetItem(name))
            self.setItem(r, 1, QTableWidgetItem(value))
        self.resizeColumnToContents(0)
        header = self.horizontalHeader().height()
        self.setMinimumHeight(header + sum(self.rowHeight(r) for r in range(len(rows))) + 6)
