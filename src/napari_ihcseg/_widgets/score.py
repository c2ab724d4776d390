"""Score nuclei: intensity classes, positive %, H-score, Allred, Ki-67 index, live as labels change."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)
from superqt import QLabeledDoubleSlider

from napari_ihcseg.editing.recovery import RecoveryStore
from napari_ihcseg.io import image_stem
from napari_ihcseg.scoring import (
    PRESETS,
    ScoringConfig,
    region_from_shapes,
    write_cells_csv,
    write_geojson,
    write_summary_csv,
    write_summary_json,
)
from napari_ihcseg.scoring.live import LiveScore

from ._common import (
    Ask,
    ChoosePath,
    Debouncer,
    choose_with_dialog,
    describe_error,
    in_memory,
    layer_source,
    show_error,
    show_info,
)
from ._forms import LayerForm, LayerPicker, add_form, pixel_size_box
from ._histogram import CLASS_COLORS, DabHistogram
from ._layer_pixels import labels_in_image
from ._scoretable import ScoreTable
from ._trust import TrustPanel
from ._session import CorrectionPanel, session_for

#: Delay between the last threshold move or brush stroke and the table update (ms).
REFRESH_DELAY_MS = 200
#: After a discrete edit (a helper key, a count-mode click) the table updates at once and the
#: colours this long after the last one: recolouring thousands of nuclei redraws the whole layer.
RECOLOUR_DELAY_MS = 300
#: Largest DAB OD offered by the threshold sliders.
SLIDER_MAX = 2.0
#: Colour of nuclei that do not count (outside the region or the area limits).
EXCLUDED_COLOR = (0.55, 0.55, 0.55, 0.6)
#: Largest nucleus id napari's direct colormap takes without numba; larger ids are not coloured by class.
DIRECT_COLORMAP_MAX_ID = 2**16

EXPORTS = (("cells", "Cells CSV", ".cells.csv", "CSV (*.csv)"),
           ("summary_json", "Summary JSON", ".summary.json", "JSON (*.json)"),
           ("summary_csv", "Summary CSV", ".summary.csv", "CSV (*.csv)"),
           ("geojson", "QuPath GeoJSON", ".nuclei.geojson", "GeoJSON (*.geojson *.json)"))


class ScoreWidget(CorrectionPanel):
    """Score the nuclei of a Labels layer on its IHC image, live.

    Edits made to the nuclei while they are scored are tracked and autosaved:
    the first time a layer is scored, the panel offers to restore its unsaved
    corrections of an earlier session, as the Correct panel does.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    choose_path : callable, optional
        ``choose_path(title, suggested, filter) -> path or None`` for exports
        (default: a save dialog).
    store : RecoveryStore, optional
        Where corrections are autosaved, if this widget is the first to watch the layer.
    ask : callable, optional
        ``ask(title, question) -> bool`` (default: a Yes/No dialog), used to
        offer restoring unsaved corrections.
    """

    def __init__(self, napari_viewer, *, choose_path: ChoosePath | None = None,
                 store: RecoveryStore | None = None, ask: Ask | None = None) -> None:
        super().__init__(napari_viewer, ask=ask, store=store)
        self.choose_path = choose_path or choose_with_dialog(self)
        self.live: LiveScore | None = None
        self.cells = None
        self.summary: dict | None = None
        self._layer = None
        self._origin = (0, 0)
        self._original_colormap = None
        self._roi_layer = None

        #: The layers scored, a magicgui form: ``image``, ``nuclei`` and the region of interest ``roi``.
        self.form = LayerForm(napari_viewer, [
            LayerPicker(napari_viewer, ("Image",), name="image", label="Image"),
            LayerPicker(napari_viewer, ("Labels",), name="nuclei", label="Nuclei", accept=in_memory),
            LayerPicker(napari_viewer, ("Shapes",), name="roi", label="Region of interest", optional=True),
        ])
        self.stain = QComboBox()
        for key, preset in PRESETS.items():
            self.stain.addItem(preset.title, key)
        self.sliders = []
        for _ in range(3):
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(0.0, SLIDER_MAX)
            slider.setDecimals(3)
            slider.setSingleStep(0.01)
            self.sliders.append(slider)
        self.pixel_size = pixel_size_box()
        self.colour = QCheckBox("Colour nuclei by intensity class")
        self.colour.setChecked(True)
        self.trust = TrustPanel(napari_viewer)
        self.score_button = QPushButton("Score")
        self.score_button.clicked.connect(self.start)
        self.histogram = DabHistogram()
        self.table = ScoreTable()
        self.export_buttons = {}
        exports = QGridLayout()
        for i, (kind, text, _suffix, _filt) in enumerate(EXPORTS):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, k=kind: self.export(k))
            button.setEnabled(False)
            exports.addWidget(button, i // 2, i % 2)
            self.export_buttons[kind] = button

        form = QFormLayout()
        form.addRow("Stain", self.stain)
        for k, slider in enumerate(self.sliders):
            form.addRow(f"{k + 1}+ from DAB OD", slider)
        form.addRow("Pixel size", self.pixel_size)
        form.addRow("", self.colour)
        layout = QVBoxLayout(self)
        add_form(layout, self.form, form)
        layout.addWidget(self.score_button)
        layout.addWidget(QLabel("Nuclei by mean DAB optical density (drag a line to move a threshold):"))
        layout.addWidget(self.histogram)
        layout.addWidget(self.trust)
        layout.addWidget(self.table)
        layout.addWidget(QLabel("Export"))
        layout.addLayout(exports)
        layout.addStretch(1)

        self._refresh = Debouncer(self.refresh, REFRESH_DELAY_MS)
        self._measure = Debouncer(self._sliders_moved, REFRESH_DELAY_MS)  # another pixel size: measure again
        self._recolour = Debouncer(self._draw, RECOLOUR_DELAY_MS)
        self.stain.currentIndexChanged.connect(self._stain_changed)
        for slider in self.sliders:
            slider.valueChanged.connect(self._sliders_moved)
        self.histogram.thresholds_changed.connect(self.set_thresholds)
        self.form.roi.changed.connect(self._roi_changed)
        self.form.nuclei.changed.connect(self._choice_changed)
        self.form.image.changed.connect(self._choice_changed)
        self.pixel_size.valueChanged.connect(lambda *_: self._measure.trigger())
        self.colour.toggled.connect(lambda *_: self._refresh.trigger())
        self.trust.connect(self._sliders_moved)
        self._stain_changed()

    # --------------------------------------------------------------- config
    def config(self) -> ScoringConfig:
        return ScoringConfig(stain=self.stain.currentData(), thresholds=self.thresholds(),
                             pixel_size_um=self.pixel_size.value() or None, **self.trust.config_changes())

    def thresholds(self) -> tuple[float, float, float]:
        return tuple(round(float(s.value()), 3) for s in self.sliders)

    def set_thresholds(self, thresholds) -> None:
        """Move the three sliders (and the histogram lines) to ``thresholds``."""
        for slider, t in zip(self.sliders, thresholds):
            slider.blockSignals(True)
            slider.setValue(float(t))
            slider.blockSignals(False)
        self._sliders_moved()

    def _stain_changed(self, *_args) -> None:
        self.set_thresholds(PRESETS[self.stain.currentData()].thresholds)

    def _sliders_moved(self, *_args) -> None:
        t = list(self.thresholds())
        for k in (1, 2):  # keep them increasing
            if t[k] <= t[k - 1]:
                t[k] = min(t[k - 1] + 0.01, SLIDER_MAX)
                self.sliders[k].blockSignals(True)
                self.sliders[k].setValue(t[k])
                self.sliders[k].blockSignals(False)
        self.histogram.set_thresholds(t)
        if self.live is not None:
            if not self.live.set_config(self.config()):
                self.start()
                return
            self._refresh.trigger()

    # ------------------------------------------------------------- scoring
    def start(self) -> None:
        """Measure every nucleus once; from then on, edits and threshold moves update live."""
        try:
            image_layer, layer = self.form.image.value, self.form.nuclei.value
            if image_layer is None or layer is None:
                raise ValueError("choose the image and its nuclei (Labels) layer")
            image, labels, origin = labels_in_image(image_layer, layer)
            if self._layer is not layer:  # unsaved corrections of an earlier session first: they are scored
                self.offer_restore_for(layer)
                labels = np.asarray(layer.data)
            self.live = LiveScore(image, labels, self.config())
        except Exception as exc:  # noqa: BLE001 - reported to the user
            show_error(f"Scoring failed: {describe_error(exc)}")
            return
        if self._layer is not layer:
            self._detach()
            self.session_of(layer).changed.connect(self._labels_changed)
        self._layer, self._origin = layer, origin
        meta = layer.metadata.setdefault("ihcseg", {})
        meta["stain"] = self.stain.currentData()
        self._roi_changed()
        self.refresh()

    def _detach(self) -> None:
        """Stop following the layer scored so far and give it its colours back."""
        if self._layer is None:
            return
        self._restore_colormap()
        session = session_for(self._layer, create=False)
        if session is not None:
            session.changed.disconnect(self._labels_changed)
        self._layer = None

    def _choice_changed(self, *_args) -> None:
        """Another image or nuclei layer: the old table no longer applies."""
        chosen = self.form.nuclei.value
        if self.live is None or (chosen is not None and chosen is self._layer
                                 and self.form.image.value is not None):
            return
        self._detach()
        self.live = self.cells = self.summary = None
        self.table.setRowCount(0)
        self.trust.reset()
        self.histogram.set_values([])
        for button in self.export_buttons.values():
            button.setEnabled(False)

    def _labels_changed(self, change) -> None:
        if self.live is None or self._layer is None:
            return
        session = session_for(self._layer, create=False)
        box = getattr(session, "last_edit_box", None)
        if box != ():  # () : no pixel changed (a class set by hand)
            self.live.update(np.asarray(self._layer.data), change.touched, region=box)
        if getattr(session, "last_edit_discrete", False):  # one click: the numbers now, the colours just after
            self._refresh.cancel()
            self.refresh(colour=False)
            self._recolour.trigger()
        else:
            self._refresh.trigger()

    def _roi_changed(self, *_args) -> None:
        if self._roi_layer is not None:
            self._roi_layer.events.data.disconnect(self._roi_changed)
            self._roi_layer = None
        roi = self.form.roi.value
        if self.live is None:
            return
        region = None
        if roi is not None:
            roi.events.data.connect(self._roi_changed)
            self._roi_layer = roi
            shapes = [(verts, kind) for verts, kind in zip(roi.data, roi.shape_type) if kind not in ("line", "path")]
            if shapes:
                to_labels = [np.array([self._layer.world_to_data(roi.data_to_world(p)) for p in v])[:, -2:]
                             for v, _ in shapes]
                region = region_from_shapes(to_labels, [k for _, k in shapes])
        self.live.set_region(region)
        self._refresh.trigger()

    def refresh(self, *, colour: bool = True) -> None:
        """Update the table, the histogram and (unless ``colour`` is false) the colours now."""
        if self.live is None:
            return
        layer = self._layer
        session = session_for(layer, create=False) if layer is not None else None
        if session is not None:  # classes set by hand in count mode
            self.live.set_overrides(session.tracker.class_overrides)
        cells, summary = self.live.result()
        if session is not None:
            states = session.tracker.states
            cells["edit_status"] = np.array([states.get(i, "") for i in cells["label"].tolist()], dtype=object)
        self.cells, self.summary = cells, summary
        self.table.show_scores(summary, cells)
        included = cells["included"].to_numpy(bool)
        self.histogram.set_values(cells["dab_od_mean"].to_numpy()[included])
        for button in self.export_buttons.values():
            button.setEnabled(True)
        if colour:
            self._recolour.cancel()
            self._draw()

    def _draw(self) -> None:
        """Colour the nuclei by class and update the warning banner and hot-spot layers."""
        if self.cells is None or self.live is None:
            return
        self._colour(self.cells)
        self.trust.show_result(self.summary, self.cells, self.live.config, self._layer)

    def _colour(self, cells) -> None:
        layer = self._layer
        if layer is None:
            return
        from napari.utils.colormaps import DirectLabelColormap

        table = cells[["label", "dab_od_mean", "intensity_class", "included"]].rename(columns={"label": "index"})
        table["dab_od_mean"] = table["dab_od_mean"].round(3)
        if "edit_status" in cells:
            table["edit_status"] = cells["edit_status"].to_numpy()
        layer.features = table.reset_index(drop=True)
        if not self.colour.isChecked():
            self._restore_colormap()
            return
        labels = cells["label"].to_numpy()
        if labels.size and int(labels.max()) > DIRECT_COLORMAP_MAX_ID and importlib.util.find_spec("numba") is None:
            # napari colours ids above 65536 one by one only with numba; the table and exports are unaffected.
            self._restore_colormap()
            show_info(f"{layer.name}: nuclei numbered above {DIRECT_COLORMAP_MAX_ID} are not coloured by class "
                      "(napari needs numba for that); the scores and exports are complete")
            return
        if self._original_colormap is None:
            self._original_colormap = layer.colormap
        palette = np.array([[*(c / 255 for c in rgb), 1.0] for rgb in CLASS_COLORS])
        colors = np.where(cells["included"].to_numpy(bool)[:, None],
                          palette[cells["intensity_class"].to_numpy(np.int64)], EXCLUDED_COLOR)
        color_dict = {None: np.array([0.8, 0.8, 0.8, 1.0]), 0: np.zeros(4)}
        color_dict.update(zip(labels.tolist(), colors))
        layer.colormap = DirectLabelColormap(color_dict=color_dict)

    def _restore_colormap(self) -> None:
        if self._layer is not None and self._original_colormap is not None:
            self._layer.colormap = self._original_colormap
        self._original_colormap = None

    # --------------------------------------------------------------- export
    def _stem(self) -> str:
        image_layer = self.form.image.value
        source = layer_source(image_layer) if image_layer is not None else None
        return image_stem(source) if source else (image_layer.name if image_layer else "image")

    def export(self, kind: str, path=None) -> Path | None:
        """Write one export (``"cells"``, ``"summary_json"``, ``"summary_csv"`` or ``"geojson"``)."""
        if self.cells is None:
            show_error("Score the image first.")
            return None
        _key, title, suffix, file_filter = next(e for e in EXPORTS if e[0] == kind)
        if path is None:
            image_layer = self.form.image.value
            source = layer_source(image_layer) if image_layer is not None else None
            folder = Path(source).parent if source else Path.home()
            path = self.choose_path(f"Export {title}", str(folder / f"{self._stem()}{suffix}"), file_filter)
            if not path:
                return None
        path = Path(path).expanduser()
        if not path.is_absolute():
            show_error(f"{path}: choose an absolute path for the export")
            return None
        try:
            self._write(kind, path)
        except Exception as exc:  # noqa: BLE001 - reported to the user
            show_error(f"Export to {path} failed: {describe_error(exc)}")
            return None
        show_info(f"Wrote {path}")
        return path

    def _write(self, kind: str, path: Path) -> None:
        cells = self.cells.copy()
        oy, ox = self._origin
        cells["centroid_y"] += oy  # coordinates of the full image, not of the field of view
        cells["centroid_x"] += ox
        edited = "edit_status" in cells  # which nuclei a human drew or changed
        if kind == "cells":
            write_cells_csv(path, cells, extra_columns=("edit_status",) if edited else ())
        elif kind == "summary_json":
            write_summary_json(path, self.summary)
        elif kind == "summary_csv":
            write_summary_csv(path, self.summary)
        elif kind == "geojson":
            if edited:
                cells["edited_by_hand"] = (cells["edit_status"] != "").astype(np.int64)
            write_geojson(path, cells, np.asarray(self._layer.data), offset=(oy, ox),
                          extra_measurements=("edited_by_hand",) if edited else ())
        else:
            raise ValueError(f"unknown export {kind!r}")
