"""Count mode: correct nuclei by clicking, as a pathologist counts them.

A Points layer of counts is tied to a nucleus Labels layer. A click on empty
tissue grows a nucleus there (:func:`napari_ihcseg.editing.grow_nucleus_at`);
a click on a nucleus sets its class by hand, or deletes it, depending on the
key last pressed (or the modifier held). Label edits go through the layer's
correction session (``Labels.data_setitem``), so Ctrl+Z on the nuclei layer
undoes them, and every click is logged as a human edit: it reaches the
"edited by hand" count, the exports' ``class_source`` and the training pairs.
Each counted nucleus gets a point with its class; the points can be saved as a
marker CSV or QuPath GeoJSON, opened again, and compared with the nuclei.

This module is the panel and its wiring; what a click does is in
:mod:`._count_clicks`, the counts layer in :mod:`._counts`, and the counts
saved, opened and compared in :mod:`._count_files`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import FloatSpinBox
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from napari_ihcseg import editing
from napari_ihcseg.editing.recovery import RecoveryStore

from ._common import (
    Ask,
    ChoosePath,
    choose_with_dialog,
    describe_error,
    in_memory,
    key_table,
    show_error,
    show_info,
)
from ._layer_pixels import labels_in_image, labels_origin
from ._count_clicks import (
    ACTION_TEXT,
    MODIFIERS,
    click_action,
    click_callback,
    count_click,
    grow_nucleus,
    next_action,
)
from ._count_files import classified_points, comparison_text, open_counts, save_counts
from ._counts import (
    add_counts_layer,
    counts_layer_of,
    drop_points,
    ensure_class_feature,
    point_classes_text,
    points_in_labels,
    put_point,
    remove_points,
    scored_positive,
    tie_counts,
    unclassified_left_bare,
)
from ._forms import LayerForm, LayerPicker
from ._session import CorrectionPanel, session_for

#: (key, what clicks on a nucleus then do, action). Free in napari's Labels, Points and viewer keymaps.
BINDINGS = (
    ("Q", "grow only: clicks on empty tissue add a nucleus, clicks on nuclei do nothing", "grow"),
    ("U", "mark positive", "positive"),
    ("J", "mark negative", "negative"),
    ("H", "give an intensity class; each press steps 0 → 1+ → 2+ → 3+", "intensity"),
    ("W", "give back the model's class", "model"),
    ("D", "delete the nucleus (a false one)", "delete"),
)
#: Match radius of "compare with my counts", in pixels (as ``ihcseg evaluate --points``).
MATCH_RADIUS = 10.0


class CountWidget(CorrectionPanel):
    """Count nuclei by clicking: grow missed ones, classify by hand, delete false ones.

    Parameters
    ----------
    napari_viewer, ask, store
        As for :class:`~._session.CorrectionPanel`: ``ask`` offers to restore
        unsaved corrections (and asks before replacing a points file),
        ``store`` is where corrections are autosaved.
    choose_save, choose_open : callable, optional
        ``(title, suggested, filter) -> path or None`` for saving and opening
        point files (default: file dialogs).
    """

    def __init__(self, napari_viewer, *, ask: Ask | None = None, store: RecoveryStore | None = None,
                 choose_save: ChoosePath | None = None, choose_open: ChoosePath | None = None) -> None:
        super().__init__(napari_viewer, ask=ask, store=store)
        self.choose_save = choose_save or choose_with_dialog(self)
        self.choose_open = choose_open or choose_with_dialog(self, mode="open")
        self.action = "grow"
        self.last_comparison: dict | None = None
        self._image_cache: tuple | None = None
        self._points_pending = 0
        self._bound: list = []
        self._watched: list = []
        self._on_mouse = click_callback(napari_viewer, lambda world, mods: self._run(self._click_at, world, mods))

        #: The settings, a magicgui form: ``nuclei``, ``image`` and ``counts`` layers, ``radius`` (px).
        self.form = LayerForm(napari_viewer, [
            LayerPicker(napari_viewer, ("Labels",), name="nuclei", label="Nuclei layer", accept=in_memory),
            LayerPicker(napari_viewer, ("Image",), name="image", label="Image (grows without probabilities)",
                        optional=True),
            LayerPicker(napari_viewer, ("Points",), name="counts", label="Counts (points)", optional=True),
            FloatSpinBox(name="radius", label="Match radius", min=1.0, max=200.0, value=MATCH_RADIUS,
                         tooltip="A nucleus and a counted point this close match (as ihcseg evaluate --points)."),
        ])
        self.form.radius.native.setSuffix(" px")

        self.start_button = QPushButton("Start counting (adds a counts layer)")
        self.start_button.clicked.connect(lambda: self._run(self.start))
        keys, self.buttons = key_table("<b>Then a click on a nucleus will</b> (on the counts layer)", BINDINGS,
                                       self.set_action)
        for row, (key, action) in enumerate(MODIFIERS, start=len(BINDINGS) + 1):
            keys.addWidget(QLabel(f"<b>{key}+click</b>"), row, 0)
            keys.addWidget(QLabel(f"mark {action}, whatever the key"), row, 1)
        grow = QLabel("A click on empty tissue always grows a nucleus (and gives it the class chosen). "
                      "Ctrl+Z on the nuclei layer undoes a grown or deleted nucleus; W undoes a class.")
        grow.setWordWrap(True)
        self.action_label = QLabel()
        files = QHBoxLayout()
        self.open_button = QPushButton("Open points…")
        self.open_button.clicked.connect(lambda: self._run(self.open_points))
        self.save_button = QPushButton("Save counts…")
        self.save_button.clicked.connect(lambda: self._run(self.save_points))
        files.addWidget(self.open_button)
        files.addWidget(self.save_button)
        self.compare_button = QPushButton("Compare with my counts")
        self.compare_button.clicked.connect(lambda: self._run(self.compare))
        self.status = QLabel("Press Start, then click on the image.")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.start_button)
        layout.addWidget(self.action_label)
        layout.addLayout(keys)
        layout.addWidget(grow)
        layout.addLayout(files)
        layout.addWidget(self.compare_button)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.form.nuclei.changed.connect(self._target_changed)
        self.form.image.changed.connect(self._forget_image)
        self.set_action("grow")
        self._target_changed()

    # --------------------------------------------------------------- wiring
    @property
    def layer(self):
        return self.form.nuclei.value

    @property
    def counts(self):
        return self.form.counts.value

    def _session(self):
        layer = self.layer
        if layer is None:
            raise ValueError("choose a nuclei (Labels) layer first")
        return self.session_of(layer)

    def _target_changed(self, *_args) -> None:
        self._forget_image()
        if self.layer is not None:
            self.offer_restore_for(self.layer)

    def _forget_image(self, *_args) -> None:
        self._image_cache = None

    def _run(self, func, *args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ValueError as exc:  # nothing there, no layer chosen...
            show_info(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown to the user, not swallowed silently
            show_error(f"Count mode: {describe_error(exc)}")
        return None

    def set_action(self, action: str) -> str:
        """What the next clicks on nuclei do (one of :data:`BINDINGS`' actions; ``"intensity"`` steps)."""
        action = next_action(self.action, action)
        self.action = action
        self.action_label.setText(f"Clicks on nuclei now: <b>{ACTION_TEXT[action]}</b>")
        return action

    def start(self):
        """Add (or reuse) the counts layer, in the mode where clicks count, and make it active."""
        labels = self.layer
        if labels is None:
            raise ValueError("choose a nuclei (Labels) layer first")
        session = self._session()
        points = self.counts
        if points is None:
            restored = session.restored_points or (np.zeros((0, 2)), [])
            points = add_counts_layer(self.viewer, f"{labels.name} counts", labels, coords=restored[0],
                                      classes=restored[1])
            self.form.counts.value = points
        session.restored_points = None
        tie_counts(labels, points)
        ensure_class_feature(points)
        if session not in self._watched:
            session.changed.connect(lambda change, s=session: self._run(self._nuclei_changed, s, change))
            session.counted_points = lambda s=session: self._counted_points(s.layer)
            self._watched.append(session)
        if points not in self._bound:
            points.mouse_drag_callbacks.append(self._on_mouse)
            for key, _text, action in BINDINGS:
                points.bind_key(key, lambda _layer, a=action: self._run(self.set_action, a), overwrite=True)
            self._bound.append(points)
        points.mode = "pan_zoom"  # napari adds no point itself; a click comes to _on_mouse
        self.viewer.layers.selection.active = points
        self.status.setText("Counting: click on the image. " + self._tally())
        return points

    def _counted_points(self, labels):
        """The points counted on the nuclei ``labels`` (row, col in its pixels) and their classes, for the
        recovery file; ``None`` without a counts layer."""
        points = counts_layer_of(self.viewer, labels) if labels is not None else None
        if points is None:
            return None
        return points_in_labels(points, labels), point_classes_text(points)

    def _click_at(self, world, modifiers) -> str:
        layer = self.layer
        if layer is None:  # the nuclei layer was deleted while counting
            raise ValueError("choose a nuclei (Labels) layer first")
        return self.click(np.asarray(layer.world_to_data(world))[-2:], modifiers=modifiers)

    # ---------------------------------------------------------------- clicks
    def _image(self):
        """The RGB pixels under the labels (cached; ``None`` without an image layer)."""
        image_layer, labels = self.form.image.value, self.layer
        if image_layer is None:
            return None
        key = (id(image_layer), id(labels))
        if self._image_cache is None or self._image_cache[0] != key:
            self._image_cache = (key, labels_in_image(image_layer, labels)[0])
        return self._image_cache[1]

    def _slide_origin(self) -> tuple[int, int]:
        """Where the nuclei layer lies in the slide's pixels, as the Score panel places it (the layers' scale
        and translate, :func:`._layer_pixels.labels_origin`), so point files and the cells table share a frame."""
        return labels_origin(self.form.image.value, self.layer)

    def click(self, position, *, modifiers=()) -> str:
        """One count-mode click at ``position`` (row, col in the nuclei layer's data).

        Returns what it did: ``"grow"``, ``"class"``, ``"delete"``.
        """
        session = self._session()
        done, label, point = count_click(session, np.asarray(self.layer.data), position,
                                         click_action(self.action, modifiers), grow=self.grow_at,
                                         drop_points=self._drop_points)
        if point is not None:
            self._later_point(position, label, point)
        self.status.setText(self._tally())
        return done

    def grow_at(self, position) -> int:
        """Grow a nucleus at ``position`` on empty tissue, as one undoable edit; returns its id."""
        return grow_nucleus(self._session(), self.layer, position, pixels=self._image)

    # ---------------------------------------------------------------- points
    def _later_point(self, position, label: int, value: str) -> None:
        """Mark the counted nucleus on the counts layer right after the click (the nuclei and table come first)."""
        from qtpy.QtCore import QTimer

        position = np.asarray(position, float)
        self._points_pending += 1

        def put() -> None:
            self._points_pending -= 1
            self._run(self._put_point, position, label, value, data=np.asarray(self.layer.data))
            self.status.setText(self._tally())

        QTimer.singleShot(0, put)

    @property
    def points_pending(self) -> bool:
        """Whether a click's point is still to be drawn."""
        return self._points_pending > 0

    def _put_point(self, position, label: int, value: str, *, data: np.ndarray) -> None:
        put_point(self.counts if self.counts is not None else self.start(), position, label, value, data,
                  self.layer)

    def _nuclei_changed(self, session, change) -> None:
        """After an edit of the nuclei (Ctrl+Z of a grown nucleus, the eraser), drop the points without a
        class left on background: they could be neither saved nor classified (a click there grows)."""
        labels, differ = session.layer, session.differ
        if labels is None or not change.touched or session.last_edit_box == ():  # a class set: no pixel moved
            return
        points = counts_layer_of(self.viewer, labels)
        if points is None:
            return
        bare = unclassified_left_bare(points, labels, np.asarray(labels.data), differ.last_region, differ.last_diff)
        if bare.size:
            remove_points(points, bare)
            self.status.setText(self._tally())

    def _drop_points(self, label: int, data: np.ndarray) -> None:
        if self.counts is not None:
            drop_points(self.counts, label, data, self.layer)

    def _tally(self) -> str:
        session = session_for(self.layer, create=False) if self.layer is not None else None
        n_points = len(self.counts.data) if self.counts is not None else 0
        if session is None:
            return f"{n_points} counted."
        t = session.tracker
        return (f"{n_points} counted; by hand: {len(t.created)} drawn, {len(t.deleted)} deleted, "
                f"{len(t.class_overrides)} classified.")

    def point_classes(self, points_layer=None) -> tuple[np.ndarray, np.ndarray]:
        """The counted points (row, col in the nuclei layer) and whether each is positive.

        A point without a class of its own takes the class of the scored
        nucleus under it; one on no scored nucleus is an error naming how
        many (see :func:`._count_files.classified_points`).
        """
        return classified_points(points_layer if points_layer is not None else self.counts, self.layer)

    def save_points(self, path=None) -> Path | None:
        """Write the counts as a marker CSV (``type,x,y``) or QuPath GeoJSON (by the file ending).

        The points are in the full slide's pixels, as the nuclei GeoJSON and
        the cells CSV: a field of view's place in the slide is added.
        """
        coords, positive = self.point_classes()
        if path is None:
            path = self.choose_save("Save counts", str(Path.home() / "counts.csv"),
                                    "Marker CSV (*.csv);;QuPath GeoJSON (*.geojson)")
            if not path:
                return None
        path = save_counts(path, coords, positive, ask=self.ask, origin=self._slide_origin())
        if path is not None:
            show_info(f"Wrote {len(coords)} counted nuclei to {path}")
        return path

    def open_points(self, path=None):
        """Open a marker CSV or QuPath GeoJSON of points (in the full slide's pixels) as a counts layer.

        The points are placed on the nuclei layer, a field of view's place in
        the slide taken off; the status says how many lie outside it.
        """
        if path is None:
            path = self.choose_open("Open point counts", str(Path.home()),
                                    "Point counts (*.csv *.geojson *.json)")
            if not path:
                return None
        layer, n_outside = open_counts(self.viewer, path, self.layer, origin=self._slide_origin())
        self.form.counts.value = layer
        n_positive = int((layer.features["class"] == "positive").sum())
        name = Path(path).expanduser().name
        outside = f" {n_outside} lie outside the nuclei layer {self.layer.name}." if n_outside else ""
        self.status.setText(f"Opened {len(layer.data)} points ({n_positive} positive) from {name}.{outside}")
        return layer

    def compare(self) -> dict:
        """Compare the nuclei with the counted points: matched, missed, extra and Δ index."""
        labels = self.layer
        if labels is None:
            raise ValueError("choose a nuclei (Labels) layer first")
        coords, positive = self.point_classes()
        result = editing.compare_counts(np.asarray(labels.data), coords, positive, radius=float(self.form.radius.value),
                                        nucleus_positive=scored_positive(labels))
        self.status.setText(comparison_text(result))
        self.last_comparison = result
        return result
