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

from magicgui.widgets import ComboBox, Container, Widget

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

    When the layer a picker showed is gone, a required picker takes the
    newest layer it offers and an optional one shows :data:`NONE_TEXT`.

    Parameters
    ----------
    viewer : napari.Viewer
    widgets : sequence of magicgui widgets
        The fields, in order, among them :class:`LayerPicker` s.
    """

    def __init__(self, viewer, widgets: Sequence[Widget]) -> None:
        super().__init__(widgets=list(widgets))
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.reset_choices)

    def reset_choices(self, *_args) -> None:
        """Offer the viewer's layers as they are now."""
        pickers = [w for w in self if isinstance(w, LayerPicker)]
        before = {picker.name: picker.value for picker in pickers}
        super().reset_choices()
        for picker in pickers:
            gone = before[picker.name] is None or before[picker.name] not in picker.choices
            if not picker.optional and gone and picker.choices:
                picker.value = picker.choices[-1]
