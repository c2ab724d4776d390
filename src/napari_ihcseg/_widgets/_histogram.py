"""A histogram of per-nucleus DAB optical density with draggable threshold lines.

Painted with :class:`QPainter` (no plotting library needed). The three
vertical lines are the 1+, 2+ and 3+ thresholds; dragging one moves that
threshold, kept between its neighbours.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QFont, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Colours of the intensity classes 0, 1+, 2+, 3+ (RGB 0..255), shared with the layer colouring.
CLASS_COLORS = ((90, 120, 235), (240, 215, 60), (245, 140, 30), (215, 40, 40))
#: Smallest distance kept between two thresholds while dragging.
MIN_GAP = 0.01
#: How close (pixels) the mouse must be to grab a line.
GRAB_PX = 6
N_BINS = 60


class DabHistogram(QWidget):
    """Histogram of DAB OD values with three draggable thresholds.

    Signals
    -------
    thresholds_changed(tuple)
        While a line is dragged, the three thresholds.
    """

    thresholds_changed = Signal(tuple)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMouseTracking(True)
        self._values = np.zeros(0)
        self._thresholds = (0.2, 0.4, 0.6)
        self._xmax = 1.0
        self._counts = np.zeros(N_BINS)
        self._edges = np.linspace(0, 1, N_BINS + 1)
        self._drag: int | None = None
        self.setToolTip("Mean DAB optical density per nucleus. Drag a line to move that threshold.")

    # ----------------------------------------------------------------- data
    def set_values(self, values) -> None:
        values = np.asarray(values, dtype=np.float64)
        self._values = values[np.isfinite(values)]
        top = float(np.percentile(self._values, 99.5)) if self._values.size else 1.0
        self._xmax = max(1.0, top * 1.05, self._thresholds[2] * 1.15)
        self._counts, self._edges = np.histogram(np.clip(self._values, 0, self._xmax), bins=N_BINS,
                                                 range=(0.0, self._xmax))
        self.update()

    def set_thresholds(self, thresholds) -> None:
        self._thresholds = tuple(float(t) for t in thresholds)
        if self._thresholds[2] * 1.15 > self._xmax:
            self.set_values(self._values)
        self.update()

    @property
    def thresholds(self) -> tuple[float, float, float]:
        return self._thresholds

    # ------------------------------------------------------------- geometry
    def _plot_rect(self) -> QRectF:
        return QRectF(8, 6, max(self.width() - 16, 10), max(self.height() - 26, 10))

    def value_to_x(self, value: float) -> float:
        r = self._plot_rect()
        return r.left() + r.width() * value / self._xmax

    def x_to_value(self, x: float) -> float:
        r = self._plot_rect()
        return (x - r.left()) / r.width() * self._xmax

    # ------------------------------------------------------------- painting
    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = self._plot_rect()
        p.fillRect(self.rect(), self.palette().base())
        top = max(int(self._counts.max()) if self._counts.size else 0, 1)
        classes = np.searchsorted(np.asarray(self._thresholds), self._edges[:-1], side="right")
        for i, count in enumerate(self._counts):
            if not count:
                continue
            x0, x1 = self.value_to_x(self._edges[i]), self.value_to_x(self._edges[i + 1])
            h = r.height() * count / top
            p.fillRect(QRectF(x0, r.bottom() - h, max(x1 - x0 - 1, 1), h), QColor(*CLASS_COLORS[classes[i]]))
        axis = QPen(self.palette().text().color())
        p.setPen(axis)
        p.drawLine(QPointF(r.left(), r.bottom()), QPointF(r.right(), r.bottom()))
        font = QFont(p.font())
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 6))
        p.setFont(font)
        step = 0.2 if self._xmax <= 1.6 else 0.5
        for tick in np.arange(0, self._xmax + 1e-9, step):
            x = self.value_to_x(tick)
            p.drawLine(QPointF(x, r.bottom()), QPointF(x, r.bottom() + 3))
            p.drawText(QRectF(x - 20, r.bottom() + 3, 40, 14), Qt.AlignmentFlag.AlignHCenter, f"{tick:.1f}")
        for k, t in enumerate(self._thresholds):
            pen = QPen(QColor(*CLASS_COLORS[k + 1]).darker(130 if k < 2 else 100))
            pen.setWidthF(2.5 if self._drag == k else 1.5)
            p.setPen(pen)
            x = self.value_to_x(t)
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
            p.drawText(QRectF(x + 2, r.top(), 40, 14), Qt.AlignmentFlag.AlignLeft, f"{k + 1}+")
        p.end()

    # ---------------------------------------------------------------- mouse
    def _nearest_line(self, x: float) -> int | None:
        dist = [abs(self.value_to_x(t) - x) for t in self._thresholds]
        k = int(np.argmin(dist))
        return k if dist[k] <= GRAB_PX else None

    def drag_to(self, k: int, value: float) -> tuple[float, float, float]:
        """Move threshold ``k`` to ``value`` (kept between its neighbours) and announce it."""
        t = list(self._thresholds)
        lo = t[k - 1] + MIN_GAP if k > 0 else 0.0
        hi = t[k + 1] - MIN_GAP if k < 2 else self._xmax
        t[k] = round(float(np.clip(value, lo, hi)), 3)
        self._thresholds = tuple(t)
        self.update()
        self.thresholds_changed.emit(self._thresholds)
        return self._thresholds

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._drag = self._nearest_line(_event_x(event))
        self.update()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        x = _event_x(event)
        if self._drag is not None:
            self.drag_to(self._drag, self.x_to_value(x))
        else:
            near = self._nearest_line(x) is not None
            self.setCursor(Qt.CursorShape.SizeHorCursor if near else Qt.CursorShape.ArrowCursor)

    def mouseReleaseEvent(self, _event) -> None:  # noqa: N802 - Qt API
        self._drag = None
        self.update()


def _event_x(event) -> float:
    """The mouse x position of a Qt5 or Qt6 mouse event."""
    return event.position().x() if hasattr(event, "position") else float(event.x())
