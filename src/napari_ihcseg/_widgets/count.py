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
    QWidget,
)

from napari_ihcseg import editing
from napari_ihcseg.editing.recovery import RecoveryStore
from napari_ihcseg.io import image_stem
from napari_ihcseg.io.points import read_points, write_points

from ._common import (
    Ask,
    ChoosePath,
    ask_with_dialog,
    choose_with_dialog,
    describe_error,
    in_memory,
    key_table,
    labels_in_image,
    show_error,
    show_info,
)
from ._counts import add_counts_layer, counted_points, drop_points, put_point, scored_positive, tie_counts
from ._forms import LayerForm, LayerPicker
from ._session import offer_restore, session_for

#: (key, what clicks on a nucleus then do, action). Free in napari's Labels, Points and viewer keymaps.
BINDINGS = (
    ("Q", "grow only: clicks on empty tissue add a nucleus, clicks on nuclei do nothing", "grow"),
    ("U", "mark positive", "positive"),
    ("J", "mark negative", "negative"),
    ("H", "give an intensity class; each press steps 0 → 1+ → 2+ → 3+", "intensity"),
    ("W", "give back the model's class", "model"),
    ("D", "delete the nucleus (a false one)", "delete"),
)
#: Held while clicking, whatever key was pressed last.
MODIFIERS = (("Shift", "positive"), ("Ctrl", "negative"))
#: Shown for each action.
ACTION_TEXT = {"grow": "grow only", "positive": "positive", "negative": "negative", "0": "intensity 0",
               "1": "intensity 1+", "2": "intensity 2+", "3": "intensity 3+", "model": "the model's class",
               "delete": "delete"}
#: Match radius of "compare with my counts", in pixels (as ``ihcseg evaluate --points``).
MATCH_RADIUS = 10.0
#: A press and release farther apart than this many screen pixels is a drag (pan), not a click.
CLICK_SLOP_PX = 4.0


class CountWidget(QWidget):
    """Count nuclei by clicking: grow missed ones, classify by hand, delete false ones.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    ask : callable, optional
        ``ask(title, question) -> bool``, used to offer restoring unsaved corrections.
    store : RecoveryStore, optional
        Where corrections are autosaved (default: the per-user cache folder).
    choose_save, choose_open : callable, optional
        ``(title, suggested, filter) -> path or None`` for saving and opening
        point files (default: file dialogs).
    """

    def __init__(self, napari_viewer, *, ask: Ask | None = None, store: RecoveryStore | None = None,
                 choose_save: ChoosePath | None = None, choose_open: ChoosePath | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.ask = ask or ask_with_dialog(self)
        self.store = store
        self.choose_save = choose_save or choose_with_dialog(self)
        self.choose_open = choose_open or choose_with_dialog(self, mode="open")
        self.action = "grow"
        self.last_comparison: dict | None = None
        self._image_cache: tuple | None = None
        self._points_pending = 0
        self._bound: list = []

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
        return session_for(layer, store=self.store)

    def _target_changed(self, *_args) -> None:
        self._forget_image()
        if self.layer is not None:
            offer_restore(self._session(), self.ask)

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
        if action == "intensity":  # 0 → 1+ → 2+ → 3+ → 0
            action = str((int(self.action) + 1) % 4) if self.action in ("0", "1", "2", "3") else "0"
        if action not in ACTION_TEXT:
            raise ValueError(f"unknown count-mode action {action!r}")
        self.action = action
        self.action_label.setText(f"Clicks on nuclei now: <b>{ACTION_TEXT[action]}</b>")
        return action

    def start(self):
        """Add (or reuse) the counts layer, in the mode where clicks count, and make it active."""
        labels = self.layer
        if labels is None:
            raise ValueError("choose a nuclei (Labels) layer first")
        points = self.counts
        if points is None:
            points = add_counts_layer(self.viewer, f"{labels.name} counts", labels)
            self.form.counts.value = points
        tie_counts(labels, points)
        if "class" not in points.features:
            points.features = points.features.assign(**{"class": [""] * len(points.data)})
        if points not in self._bound:
            points.mouse_drag_callbacks.append(self._on_mouse)
            for key, _text, action in BINDINGS:
                points.bind_key(key, lambda _layer, a=action: self._run(self.set_action, a), overwrite=True)
            self._bound.append(points)
        points.mode = "pan_zoom"  # napari adds no point itself; a click comes to _on_mouse
        self.viewer.layers.selection.active = points
        self.status.setText("Counting: click on the image. " + self._tally())
        return points

    def _on_mouse(self, layer, event):
        if getattr(event, "button", 1) != 1:
            return
        start = np.asarray(event.position, float)
        modifiers = {getattr(m, "name", str(m)).lower() for m in (event.modifiers or ())}
        yield
        end = start
        while event.type == "mouse_move":
            end = np.asarray(event.position, float)
            yield
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 moved the camera
        zoom = float((scene.camera if scene is not None else self.viewer.camera).zoom) or 1.0
        if np.hypot(*(end - start)[-2:]) * zoom > CLICK_SLOP_PX:
            return  # a drag: napari pans
        self._run(self._click_at, start, modifiers)

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

    def click(self, position, *, modifiers=()) -> str:
        """One count-mode click at ``position`` (row, col in the nuclei layer's data).

        Returns what it did: ``"grow"``, ``"class"``, ``"delete"``.
        """
        session = self._session()
        data = np.asarray(self.layer.data)
        action = self.action
        modifiers = {str(m).lower() for m in modifiers}
        if "shift" in modifiers:
            action = "positive"
        elif modifiers & {"control", "ctrl", "meta"}:
            action = "negative"
        label = editing.label_at(data, position)
        if label == 0:
            if action == "delete":
                raise ValueError("there is no nucleus here to delete")
            label = self.grow_at(position)
            value = action if action in editing.CLASS_VALUES else ""
            if value:
                session.set_class(label, value)
            self._later_point(position, label, value)
            done = "grow"
        elif action == "delete":
            self._drop_points(label, data)
            session.apply(editing.delete_label(data, label, region=self._window(data, position, label, session)))
            done = "delete"
        elif action == "grow":
            raise ValueError(f"nucleus {label} is already here; press U (positive), J (negative) or H "
                             "(intensity) first to classify it, or D to delete it")
        else:
            value = None if action == "model" else action
            session.set_class(label, value)
            self._later_point(position, label, value or "")
            done = "class"
        self.status.setText(self._tally())
        return done

    def grow_at(self, position) -> int:
        """Grow a nucleus at ``position`` on empty tissue, as one undoable edit; returns its id."""
        session = self._session()
        layer = self.layer
        data = np.asarray(layer.data)
        meta = layer.metadata.get("ihcseg", {})
        probs = meta.get("probabilities")
        opts = meta.get("instances", {})
        mask_prob = contour_prob = None
        if probs is not None and np.shape(probs[0]) == data.shape:
            mask_prob, contour_prob = probs[0], probs[1]
        edit = editing.grow_nucleus_at(
            data, position, mask_prob=mask_prob, contour_prob=contour_prob,
            image=self._image() if mask_prob is None else None,
            diameter=editing.typical_diameter(data, areas=session.differ.areas),
            new_label=int(np.flatnonzero(session.differ.areas)[-1]) + 1,  # no pass over the whole image
            mask_threshold=opts.get("mask_threshold", 0.5), contour_threshold=opts.get("contour_threshold", 0.5))
        session.apply(edit)
        return next(iter(edit.change.created))

    @staticmethod
    def _window(data: np.ndarray, position, label: int, session):
        """A box around the click holding the whole nucleus ``label``, or ``None`` (search the image)."""
        d = editing.typical_diameter(data, areas=session.differ.areas)
        half = int(4 * d)
        r, c = (int(round(float(v))) for v in tuple(position)[-2:])
        box = (slice(max(r - half, 0), r + half + 1), slice(max(c - half, 0), c + half + 1))
        inside = int(np.count_nonzero(data[box] == label))
        return box if inside == session.differ.area(label) else None

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
        put_point(self.counts if self.counts is not None else self.start(), position, label, value, data)

    def _drop_points(self, label: int, data: np.ndarray) -> None:
        if self.counts is not None:
            drop_points(self.counts, label, data)

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
        nucleus under it (see :func:`counted_points`); one on no scored
        nucleus is an error naming how many.
        """
        points = points_layer if points_layer is not None else self.counts
        if points is None or not len(points.data):
            raise ValueError("there are no counted points; start counting or open a points file")
        coords, positive, known = counted_points(points, self.layer)
        if not known.all():
            raise ValueError(f"{int((~known).sum())} counted point(s) have no class and lie on no scored "
                             "nucleus; classify them (U / J) or score the nuclei first")
        return coords, positive

    def _scored_positive(self) -> dict | None:
        return scored_positive(self.layer)

    def save_points(self, path=None) -> Path | None:
        """Write the counts as a marker CSV (``type,x,y``) or QuPath GeoJSON (by the file ending)."""
        coords, positive = self.point_classes()
        if path is None:
            path = self.choose_save("Save counts", str(Path.home() / "counts.csv"),
                                    "Marker CSV (*.csv);;QuPath GeoJSON (*.geojson)")
            if not path:
                return None
        path = Path(path).expanduser()
        if not path.is_absolute():
            raise ValueError(f"{path}: choose an absolute path")
        overwrite = path.exists() and self.ask("Replace file", f"{path} exists. Replace it?")
        if path.exists() and not overwrite:
            return None
        write_points(path, coords, positive, overwrite=overwrite)
        show_info(f"Wrote {len(coords)} counted nuclei to {path}")
        return path

    def open_points(self, path=None):
        """Open a marker CSV or QuPath GeoJSON of points as a counts layer."""
        if path is None:
            path = self.choose_open("Open point counts", str(Path.home()),
                                    "Point counts (*.csv *.geojson *.json)")
            if not path:
                return None
        path = Path(path).expanduser()
        coords, positive = read_points(path)
        labels = self.layer
        classes = ["positive" if p else "negative" for p in positive]
        layer = add_counts_layer(self.viewer, image_stem(path), labels, coords=coords, classes=classes)
        self.form.counts.value = layer
        if labels is not None:
            tie_counts(labels, layer)
        self.status.setText(f"Opened {len(coords)} points ({int(positive.sum())} positive) from {path.name}.")
        return layer

    def compare(self) -> dict:
        """Compare the nuclei with the counted points: matched, missed, extra and Δ index."""
        labels = self.layer
        if labels is None:
            raise ValueError("choose a nuclei (Labels) layer first")
        coords, positive = self.point_classes()
        result = editing.compare_counts(np.asarray(labels.data), coords, positive, radius=float(self.form.radius.value),
                                        nucleus_positive=self._scored_positive())
        text = (f"Matched {result['matched']}, missed {result['missed']} (counted, not found), "
                f"extra {result['extra']} (found, not counted); F1 {result['f1']:.2f}.")
        if np.isfinite(result["delta_index"]):
            text += (f" Index: nuclei {result['pred_pct_positive']:.1f} %, counts "
                     f"{result['truth_pct_positive']:.1f} %, Δ {result['delta_index']:+.1f} points.")
        else:
            text += " Score the nuclei to compare the positive index."
        self.status.setText(text)
        self.last_comparison = result
        return result
