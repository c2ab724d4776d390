"""A count-mode click: from a mouse press on the counts layer to one edit of the nuclei.

A press and release close together is a click; farther apart, a drag that
napari turns into a pan (:func:`click_callback`). The key last pressed chooses
what a click on a nucleus does (:func:`next_action`) and a held modifier
overrides it (:func:`click_action`). :func:`count_click` then grows a nucleus
on empty tissue, sets a nucleus's class by hand or deletes it, each through
the layer's correction session: one undoable edit, logged as made by hand.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_ihcseg import editing

from ._layer_pixels import viewer_camera

#: Held while clicking, whatever key was pressed last.
MODIFIERS = (("Shift", "positive"), ("Ctrl", "negative"))
#: Shown for each action.
ACTION_TEXT = {"grow": "grow only", "positive": "positive", "negative": "negative", "0": "intensity 0",
               "1": "intensity 1+", "2": "intensity 2+", "3": "intensity 3+", "model": "the model's class",
               "delete": "delete"}
#: A press and release farther apart than this many screen pixels is a drag (pan), not a click.
CLICK_SLOP_PX = 4.0


def next_action(current: str, action: str) -> str:
    """The action chosen by ``action`` while ``current`` holds.

    ``"intensity"`` steps 0 → 1+ → 2+ → 3+ → 0; any other action must be one
    of :data:`ACTION_TEXT`.

    >>> next_action("grow", "intensity"), next_action("3", "intensity"), next_action("0", "delete")
    ('0', '0', 'delete')
    """
    if action == "intensity":
        action = str((int(current) + 1) % 4) if current in ("0", "1", "2", "3") else "0"
    if action not in ACTION_TEXT:
        raise ValueError(f"unknown count-mode action {action!r}")
    return action


def click_action(action: str, modifiers) -> str:
    """What a click does with ``modifiers`` held: Shift marks positive, Ctrl (or Cmd) negative, else ``action``.

    >>> click_action("grow", ["Shift"]), click_action("grow", {"control"}), click_action("delete", ())
    ('positive', 'negative', 'delete')
    """
    modifiers = {str(m).lower() for m in modifiers}
    if "shift" in modifiers:
        return "positive"
    if modifiers & {"control", "ctrl", "meta"}:
        return "negative"
    return action


def click_callback(viewer, on_click: Callable[[np.ndarray, set], object]):
    """A napari ``mouse_drag_callbacks`` entry calling ``on_click(world_position, modifiers)`` on a left click.

    The position is where the button went down; a press and release farther
    apart than :data:`CLICK_SLOP_PX` screen pixels is a drag, left to napari.
    """

    def on_mouse(_layer, event):
        if getattr(event, "button", 1) != 1:
            return
        start = np.asarray(event.position, float)
        modifiers = {getattr(m, "name", str(m)).lower() for m in (event.modifiers or ())}
        yield
        end = start
        while event.type == "mouse_move":
            end = np.asarray(event.position, float)
            yield
        zoom = float(viewer_camera(viewer).zoom) or 1.0
        if np.hypot(*(end - start)[-2:]) * zoom > CLICK_SLOP_PX:
            return  # a drag: napari pans
        on_click(start, modifiers)

    return on_mouse


def count_click(session, data: np.ndarray, position, action: str, *, grow: Callable[[object], int],
                drop_points: Callable[[int, np.ndarray], None]) -> tuple[str, int, str | None]:
    """One click doing ``action`` at ``position`` (row, col) of the nuclei ``data``, as edits in ``session``.

    On empty tissue it grows a nucleus (``grow(position)`` returns its id) and
    gives it the class of a classifying ``action``. On a nucleus it deletes it
    (``drop_points(label, data)`` first removes its counted points) or sets its
    class by hand (``"model"`` gives back the model's class).

    Returns
    -------
    done : str
        ``"grow"``, ``"class"`` or ``"delete"``.
    label : int
        The nucleus grown or clicked.
    point : str or None
        The class of the nucleus's counted point (``""``: none yet), or
        ``None`` when the nucleus has no point any more (deleted).
    """
    label = editing.label_at(data, position)
    if label == 0:
        if action == "delete":
            raise ValueError("there is no nucleus here to delete")
        label = grow(position)
        value = action if action in editing.CLASS_VALUES else ""
        if value:
            session.set_class(label, value)
        return "grow", label, value
    if action == "delete":
        drop_points(label, data)
        session.apply(editing.delete_label(data, label, region=nucleus_window(data, position, label, session)))
        return "delete", label, None
    if action == "grow":
        raise ValueError(f"nucleus {label} is already here; press U (positive), J (negative) or H "
                         "(intensity) first to classify it, or D to delete it")
    value = None if action == "model" else action
    session.set_class(label, value)
    return "class", label, value or ""


def grow_nucleus(session, layer, position, *, pixels: Callable[[], np.ndarray | None]) -> int:
    """Grow a nucleus at ``position`` on empty tissue of the nuclei ``layer``, as one undoable edit.

    The probabilities kept on the layer guide the growth when they cover it;
    otherwise ``pixels()``, the RGB image under the layer (or ``None``), is
    asked for. The layer's instance thresholds are used, and the new id
    follows the largest one (no pass over the whole image). Returns the id.
    """
    data = np.asarray(layer.data)
    meta = layer.metadata.get("ihcseg", {})
    probs = meta.get("probabilities")
    opts = meta.get("instances", {})
    mask_prob = contour_prob = None
    if probs is not None and np.shape(probs[0]) == data.shape:
        mask_prob, contour_prob = probs[0], probs[1]
    edit = editing.grow_nucleus_at(
        data, position, mask_prob=mask_prob, contour_prob=contour_prob,
        image=pixels() if mask_prob is None else None,
        diameter=editing.typical_diameter(data, sizes=session.differ.sizes()),
        new_label=session.differ.max_label + 1, areas=session.differ.areas,
        mask_threshold=opts.get("mask_threshold", 0.5), contour_threshold=opts.get("contour_threshold", 0.5))
    session.apply(edit)
    return next(iter(edit.change.created))


def nucleus_window(data: np.ndarray, position, label: int, session):
    """A box around the click holding the whole nucleus ``label``, or ``None`` (search the image)."""
    d = editing.typical_diameter(data, sizes=session.differ.sizes())
    half = int(4 * d)
    r, c = (int(round(float(v))) for v in tuple(position)[-2:])
    box = (slice(max(r - half, 0), r + half + 1), slice(max(c - half, 0), c + half + 1))
    inside = int(np.count_nonzero(data[box] == label))
    return box if inside == session.differ.area(label) else None
