"""Correct nuclei: napari's Labels tools plus helpers bound to keys on the layer.

The helpers compute their edit with :mod:`napari_ihcseg.editing` and apply it
through ``Labels.data_setitem``, so napari's undo (Ctrl+Z) reverts them like
any brush stroke. Every edit is logged in the layer's correction session (who
changed which nucleus, and when) and autosaved to a recovery file.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import FloatSpinBox
from qtpy.QtWidgets import (
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from napari_ihcseg import editing
from napari_ihcseg.editing.recovery import RecoveryStore

from ._common import Ask, describe_error, in_memory, key_table, show_error, show_info
from ._forms import LayerForm, LayerPicker
from ._session import CorrectionPanel, CorrectionSession

#: Name of the Shapes layer holding the cut lines.
CUTS_LAYER = "cuts"

#: (key, what it does, method name); the keys are free in napari's Labels keymap.
BINDINGS = (
    ("N", "new nucleus: the next free id, ready to paint", "new_nucleus"),
    ("D", "delete the nucleus under the cursor", "delete_at"),
    ("G", "merge: press over one nucleus, then over the other", "merge_at"),
    ("K", f"split along the last line drawn in the '{CUTS_LAYER}' layer", "split_with_line"),
    ("S", "split the nucleus under the cursor by re-running the instance step", "split_at"),
)


#: The split contour threshold for a layer segmented elsewhere (nothing recorded).
SPLIT_CONTOUR = 0.3
#: How far below the segmentation's contour threshold a split looks for a boundary.
SPLIT_BELOW = 0.15
#: The smallest part a split keeps, in pixels (a tuned min_size can be far larger).
SPLIT_MIN_SIZE = 16


class CorrectWidget(CorrectionPanel):
    """Correction helpers for a nucleus Labels layer.

    Parameters
    ----------
    napari_viewer, ask, store
        As for :class:`~._session.CorrectionPanel`: ``ask`` offers to restore
        unsaved corrections, ``store`` is where they are autosaved.
    """

    def __init__(self, napari_viewer, *, ask: Ask | None = None, store: RecoveryStore | None = None) -> None:
        super().__init__(napari_viewer, ask=ask, store=store)
        self._merge_first: int | None = None
        self._bound: list = []

        self._split_for = None
        #: The settings, a magicgui form: the ``nuclei`` layer and the ``split_contour`` threshold.
        self.form = LayerForm(napari_viewer, [
            LayerPicker(napari_viewer, ("Labels",), name="nuclei", label="Nuclei layer", accept=in_memory),
            FloatSpinBox(name="split_contour", label="Split contour threshold", min=0.05, max=0.95, step=0.05,
                         value=SPLIT_CONTOUR,
                         tooltip="Contour threshold used when splitting by the instance step; set "
                                 f"{SPLIT_BELOW:g} below the one the layer was segmented with, so that a "
                                 "weak boundary separates."),
        ])

        keys, self.buttons = key_table("<b>Helper</b> (on the nuclei layer)", BINDINGS, self._run)
        self.cut_button = QPushButton(f"Draw a cut line (adds the '{CUTS_LAYER}' layer)")
        self.cut_button.clicked.connect(self.start_cut_line)
        tools = QLabel("napari's own tools work too: paint (P), erase (E), fill (F), pick (L), undo (Ctrl+Z).")
        tools.setWordWrap(True)
        self.status = QLabel("No edits yet.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addLayout(keys)
        layout.addWidget(self.cut_button)
        layout.addWidget(tools)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.form.nuclei.changed.connect(self._target_changed)
        self._target_changed()

    # --------------------------------------------------------------- wiring
    @property
    def layer(self):
        return self.form.nuclei.value

    def session(self) -> CorrectionSession | None:
        layer = self.layer
        return None if layer is None else self.session_of(layer)

    def _target_changed(self, *_args) -> None:
        layer = self.layer
        if layer is None:
            return
        session = self.session()
        if layer not in self._bound:
            for key, _text, method in BINDINGS:
                layer.bind_key(key.lower(), lambda _layer, m=method: self._run(m), overwrite=True)
            self._bound.append(layer)
            session.changed.connect(self._show_status)
            session.autosaved.connect(self._show_status)
        if layer is not self._split_for:  # a new target; the user's value stays while it is the same
            self._split_for = layer
            used = layer.metadata.get("ihcseg", {}).get("instances", {}).get("contour_threshold")
            self.form.split_contour.value = (SPLIT_CONTOUR if used is None
                                             else max(0.05, round(float(used) - SPLIT_BELOW, 2)))
        self.offer_restore_for(layer)
        self._show_status()

    def _show_status(self, *_args) -> None:
        session = self.session()
        if session is None:
            return
        t = session.tracker
        parts = [f"Edited by hand: {len(t.created)} drawn, {len(t.changed)} changed, {len(t.deleted)} deleted "
                 f"({t.n_edits} edit(s))."]
        if t.n_edits:
            parts.append(f"Autosaved to {session.store.folder}.")
        self.status.setText(" ".join(parts))

    def _run(self, method: str) -> None:
        try:
            getattr(self, method)()
        except ValueError as exc:  # nothing under the cursor, a line that misses...
            show_info(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, not swallowed silently
            show_error(f"{method.replace('_', ' ')} failed: {describe_error(exc)}")

    def _position(self, position=None) -> np.ndarray:
        layer = self.layer
        if layer is None:
            raise ValueError("choose a nuclei (Labels) layer first")
        if position is not None:
            return np.asarray(position, float)
        return np.asarray(layer.world_to_data(self.viewer.cursor.position), float)

    def _id_at(self, position) -> int:
        label = editing.label_at(np.asarray(self.layer.data), self._position(position))
        if label == 0:
            raise ValueError("there is no nucleus under the cursor")
        return label

    # -------------------------------------------------------------- helpers
    def new_nucleus(self) -> int:
        """Select the next free id and switch to the brush."""
        layer = self.layer
        if layer is None:
            raise ValueError("choose a nuclei (Labels) layer first")
        label = editing.next_free_label(np.asarray(layer.data))
        layer.selected_label = label
        layer.mode = "paint"
        return label

    def delete_at(self, position=None) -> int:
        """Delete the nucleus at ``position`` (data coordinates; default: the cursor)."""
        label = self._id_at(position)
        self.session().apply(editing.delete_label(np.asarray(self.layer.data), label))
        return label

    def merge_at(self, position=None):
        """First call marks a nucleus; the second merges the nucleus there into it."""
        label = self._id_at(position)
        first, self._merge_first = self._merge_first, None
        if first is None or first == label or not np.any(np.asarray(self.layer.data) == first):
            self._merge_first = label
            show_info(f"Merge: nucleus {label} chosen; now press G over the nucleus to join to it.")
            return None
        return self.merge(first, label)

    def merge(self, *labels: int):
        """Merge the given nuclei into the one with the smallest id."""
        return self.session().apply(editing.merge_labels(np.asarray(self.layer.data), *labels))

    def split_at(self, position=None):
        """Split the nucleus at ``position`` by re-running the instance step inside it.

        Uses the probabilities kept by the Segment widget; without them, a
        watershed on the distance transform.
        """
        label = self._id_at(position)
        data = np.asarray(self.layer.data)
        meta = self.layer.metadata.get("ihcseg", {})
        probs = meta.get("probabilities")
        if probs is not None and np.shape(probs[0]) == data.shape:
            opts = meta.get("instances", {})
            edit = editing.split_label_by_instances(
                data, label, probs[0], probs[1], mask_threshold=opts.get("mask_threshold", 0.5),
                contour_threshold=float(self.form.split_contour.value),
                min_size=min(opts.get("min_size", SPLIT_MIN_SIZE), SPLIT_MIN_SIZE))
        else:
            edit = editing.split_label_by_distance(data, label)
        return self.session().apply(edit)

    def cuts_layer(self, *, create: bool = False):
        """The Shapes layer of cut lines (created on request)."""
        if CUTS_LAYER in self.viewer.layers:
            return self.viewer.layers[CUTS_LAYER]
        if not create:
            return None
        target = self.layer
        return self.viewer.add_shapes(name=CUTS_LAYER, edge_color="yellow", edge_width=1.5, ndim=2,
                                      scale=target.scale if target is not None else None,
                                      translate=target.translate if target is not None else None)

    def start_cut_line(self) -> None:
        """Add (or select) the cut-line layer in line-drawing mode; K on it splits."""
        layer = self.cuts_layer(create=True)
        layer.bind_key("k", lambda _layer: self._run("split_with_line"), overwrite=True)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_line"

    def split_with_line(self, line=None):
        """Split the nucleus crossed by the last cut line (or by ``line``, in labels data coordinates)."""
        labels_layer = self.layer
        if labels_layer is None:
            raise ValueError("choose a nuclei (Labels) layer first")
        cuts = self.cuts_layer()
        from_layer = line is None
        if from_layer:
            if cuts is None or not len(cuts.data):
                raise ValueError(f"draw a line across the nucleus in the '{CUTS_LAYER}' layer first")
            world = [cuts.data_to_world(p) for p in cuts.data[-1]]
            line = np.array([labels_layer.world_to_data(p) for p in world])[:, -2:]
        line = np.asarray(line, float)
        data = np.asarray(labels_layer.data)
        label = _most_crossed(data, line)
        edit = editing.split_label_by_line(data, label, line)
        change = self.session().apply(edit)
        if from_layer:  # the line has done its job
            cuts.selected_data = {len(cuts.data) - 1}
            cuts.remove_selected()
        self.viewer.layers.selection.active = labels_layer
        return change


def _most_crossed(labels: np.ndarray, line: np.ndarray) -> int:
    """The nucleus with the most pixels under a polyline."""
    from skimage.draw import line as draw_line

    pts = np.round(line).astype(int)
    rr = np.concatenate([draw_line(*a, *b)[0] for a, b in zip(pts[:-1], pts[1:])])
    cc = np.concatenate([draw_line(*a, *b)[1] for a, b in zip(pts[:-1], pts[1:])])
    keep = (rr >= 0) & (rr < labels.shape[0]) & (cc >= 0) & (cc < labels.shape[1])
    hit = labels[rr[keep], cc[keep]]
    hit = hit[hit > 0]
    if hit.size == 0:
        raise ValueError("the cut line does not cross any nucleus")
    values, counts = np.unique(hit, return_counts=True)
    return int(values[np.argmax(counts)])
