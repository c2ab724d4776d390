"""The Train widget's loss curve and time-left text."""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QWidget

#: Weight of the newest loss in the smoothed curve.
SMOOTHING = 0.1


class LossPlot(QWidget):
    """The training loss per step (raw, faint; smoothed, bold)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(120)
        self.steps: list[int] = []
        self.losses: list[float] = []

    def clear(self) -> None:
        self.steps, self.losses = [], []
        self.update()

    def add(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.steps.append(int(step))
            self.losses.append(float(loss))
            self.update()

    def smoothed(self) -> np.ndarray:
        """Exponential moving average; short runs are smoothed less."""
        alpha = max(SMOOTHING, 4.0 / max(len(self.losses), 1))
        out, level = [], None
        for v in self.losses:
            level = v if level is None else (1 - alpha) * level + alpha * v
            out.append(level)
        return np.asarray(out)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), self.palette().base())
        r = QRectF(34, 6, max(self.width() - 42, 10), max(self.height() - 22, 10))
        text = self.palette().text().color()
        p.setPen(QPen(text))
        p.drawLine(QPointF(r.left(), r.bottom()), QPointF(r.right(), r.bottom()))
        p.drawLine(QPointF(r.left(), r.top()), QPointF(r.left(), r.bottom()))
        if len(self.losses) < 2:
            p.drawText(r, Qt.AlignmentFlag.AlignCenter, "loss per step")
            p.end()
            return
        lo, hi = min(self.losses), max(self.losses)
        hi = hi if hi > lo else lo + 1e-6
        s0, s1 = self.steps[0], max(self.steps[-1], self.steps[0] + 1)

        def point(step, value):
            return QPointF(r.left() + r.width() * (step - s0) / (s1 - s0),
                           r.bottom() - r.height() * (value - lo) / (hi - lo))

        for values, colour, width in ((self.losses, QColor(120, 150, 230, 110), 1.0),
                                      (self.smoothed(), QColor(40, 80, 210), 2.0)):
            pen = QPen(colour)
            pen.setWidthF(width)
            p.setPen(pen)
            pts = [point(s, v) for s, v in zip(self.steps, values)]
            for a, b in zip(pts[:-1], pts[1:]):
                p.drawLine(a, b)
        p.setPen(QPen(text))
        p.drawText(QRectF(0, r.top() - 2, 32, 14), Qt.AlignmentFlag.AlignRight, f"{hi:.2f}")
        p.drawText(QRectF(0, r.bottom() - 12, 32, 14), Qt.AlignmentFlag.AlignRight, f"{lo:.2f}")
        p.end()


def format_eta(seconds: float) -> str:
    """``"1 h 05 min"``, ``"4 min 10 s"`` or ``"12 s"``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
