"""Forms built with magicgui: typed fields, and layer pickers that follow the viewer.

A panel that is a form of typed fields with layer pickers is a magicgui
:class:`~magicgui.widgets.Container` (:class:`LayerForm`): each field is a
magicgui widget, reached by its name (``form.nuclei.value``), and the layer
pickers (:class:`LayerPicker`) hold the layers themselves. The pickers offer
the layers of the viewer the widget was given (not whichever viewer is
current), without the layers the plugin draws only to show a result
(:data:`._common.DISPLAY_ONLY`), and they refresh as layers are added,
removed, reordered or renamed, docked or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack

from magicgui.widgets import ComboBox, Container, Widget
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QBoxLayout, QDoubleSpinBox, QFormLayout, QLabel

from napari_ihcseg.pixel_size import PIXEL_SIZE_RANGE_UM

from ._common import matching_layers, unwrap

#: The entry of an optional picker that chooses no layer.
NONE_TEXT = "(none)"


class LayerPicker(ComboBox):
    """A magicgui combo box of the viewer's layers of the class names ``kinds``.

    Parameters
    ----------
    viewer : napari.Viewer
    kinds : tuple of str
        Layer class names offered, e.g. ``("Labels",)``.
    name, label : str
        The field's name in its form, and the text shown beside it.
    optional : bool
        Offer :data:`NONE_TEXT` (value ``None``), chosen at first.
        Otherwise the newest layer is chosen at first.
    accept : callable, optional
        Extra filter ``accept(layer) -> bool``.
    tooltip : str, optional

    Notes
    -----
    ``value`` is the chosen layer (``None`` for none); ``changed`` is emitted
    with it.
    """

    def __init__(self, viewer, kinds: tuple[str, ...], *, name: str, label: str, optional: bool = False,
                 accept: Callable | None = None, tooltip: str | None = None) -> None:
        def choices(_widget) -> list:
            layers = [(layer.name, unwrap(layer)) for layer in matching_layers(viewer, kinds, accept)]
            return ([(NONE_TEXT, None)] if optional else []) + layers

        super().__init__(name=name, label=label, choices=choices, tooltip=tooltip)
        self.optional = optional
        if not optional and self.choices:
            self.value = self.choices[-1]


class LayerForm(Container):
    """A magicgui form whose layer pickers follow ``viewer``'s layers.

    A picker keeps its layer while the viewer has it (renamed or moved too).
    When the layer is gone, a required picker takes the newest layer it
    offers and an optional one shows :data:`NONE_TEXT`. A picker's
    ``changed`` is emitted once, with the new layer, when a refresh changes
    its value (``None`` included), and never when it does not.

    Parameters
    ----------
    viewer : napari.Viewer
    widgets : sequence of magicgui widgets
        The fields, in order, among them :class:`LayerPicker` s.
    """

    def __init__(self, viewer, widgets: Sequence[Widget]) -> None:
        super().__init__(widgets=list(widgets))
        self.margins = (0, 0, 0, 0)  # a part of a panel: lined up with the panel's other rows
        align_labels(self)
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)

    def reset_choices(self, *_args) -> None:
        """Offer the viewer's layers as they are now."""
        pickers = [w for w in self if isinstance(w, LayerPicker)]
        before = {picker.name: picker.value for picker in pickers}
        with ExitStack() as quiet:
            for picker in pickers:
                quiet.enter_context(picker.changed.blocked())
            super().reset_choices()
            for picker in pickers:
                kept = before[picker.name]
                if kept is None or not any(kept is layer for layer in picker.choices):
                    kept = None if picker.optional or not picker.choices else picker.choices[-1]
                if picker.choices and kept is not picker.value:
                    picker.value = kept
        for picker in pickers:
            if picker.value is not before[picker.name]:
                picker.changed.emit(picker.value)


def align_labels(form: Container, rows: QFormLayout | None = None) -> None:
    """Give the labels of ``form`` (and of the Qt form ``rows`` laid out with it) one column width.

    ``rows`` serves a panel whose layer pickers are a :class:`LayerForm` and
    whose other fields are still Qt rows: the two read as one form. The
    width follows the labels' font: it is measured again whenever the panel
    is shown, restyled (napari's theme, applied when the panel is docked) or
    moved to another parent.
    """
    aligner = next((c for c in form.native.children() if isinstance(c, _LabelColumn)), None)
    if aligner is None:  # one per form: a later call adds the Qt rows laid out with it
        aligner = _LabelColumn(form)
        form.native.installEventFilter(aligner)
    if rows is not None:
        aligner.rows = rows
    for label in aligner.labels():  # a restyled label (a new font) measures the column again
        label.installEventFilter(aligner)
    aligner.update()


def add_form(layout: QBoxLayout, form: Container, rows: QFormLayout) -> None:
    """Add a panel's layer pickers ``form`` to ``layout``, then its Qt form ``rows``, read as one form.

    The two share one label column (see :func:`align_labels`).
    """
    align_labels(form, rows)
    layout.addWidget(form.native)
    layout.addLayout(rows)


class _LabelColumn(QObject):
    """Keeps the labels of a magicgui form and of a Qt form at one width (see :func:`align_labels`)."""

    EVENTS = (QEvent.Type.Show, QEvent.Type.StyleChange, QEvent.Type.FontChange, QEvent.Type.ParentChange,
              QEvent.Type.Polish)

    def __init__(self, form: Container) -> None:
        super().__init__(form.native)
        self._form = form
        self.rows: QFormLayout | None = None

    def labels(self) -> list[QLabel]:
        texts = {widget.label for widget in self._form}
        labels = [label for label in self._form.native.findChildren(QLabel) if label.text() in texts]
        for row in range(self.rows.rowCount() if self.rows is not None else 0):
            item = self.rows.itemAt(row, QFormLayout.ItemRole.LabelRole)
            if item is not None and isinstance(item.widget(), QLabel):
                labels.append(item.widget())
        return labels

    def update(self) -> None:
        labels = self.labels()
        for label in labels:
            label.setMinimumWidth(0)
        width = max((label.sizeHint().width() for label in labels), default=0)
        for label in labels:
            label.setMinimumWidth(width)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() in self.EVENTS:
            self.update()
        return False


def pixel_size_box() -> QDoubleSpinBox:
    """A pixel-size field in µm: 0 reads "unknown", the top is the largest a microscope image has."""

    box = QDoubleSpinBox(minimum=0.0, maximum=PIXEL_SIZE_RANGE_UM[1], decimals=4, singleStep=0.05, value=0.0)
    box.setSpecialValueText("unknown")
    box.setSuffix(" µm")
    return box

