"""Save corrected nuclei as training pairs into a dataset folder the user chooses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_ihcseg.editing.recovery import RecoveryStore
from napari_ihcseg.pairs import TILE_SIZES, SavedPair, TrainingPairWriter, check_folder
from napari_ihcseg.pairs.layout import pair_stem

from ._common import (
    Ask,
    choose_folder_into,
    describe_error,
    folder_row,
    in_memory,
    layer_source,
    show_error,
    show_info,
)
from ._layer_pixels import field_of_view, labels_in_image
from ._forms import LayerForm, LayerPicker, add_form, pixel_size_box
from ._session import CorrectionPanel

#: Modes offered, as (label shown, core mode).
MODES = (("Whole image", "whole"), ("Region (shapes, else the current view)", "region"),
         ("Tiles (of the shapes' region, else the whole image)", "tiles"))
#: Stains offered; recorded in ``dataset.json`` as shown (the training readers' names).
STAINS = ("Ki-67", "ER", "PR", "H&E", "other")
#: Scoring preset keys (as the Score widget records them) to those names.
_FROM_PRESET = {"ki67": "Ki-67", "er": "ER", "pr": "PR"}


class SavePairsWidget(CorrectionPanel):
    """Write image/mask pairs and ``dataset.json`` for training.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    ask : callable, optional
        ``ask(title, question) -> bool``; asks before overwriting existing
        pairs and offers to restore unsaved corrections (default: a dialog).
    store : RecoveryStore, optional
        Where corrections are autosaved (default: the per-user cache folder).
    """

    def __init__(self, napari_viewer, *, ask: Ask | None = None, store: RecoveryStore | None = None) -> None:
        super().__init__(napari_viewer, ask=ask, store=store)
        self.last_saved: list[SavedPair] = []

        #: The layers saved, a magicgui form: ``image``, ``nuclei`` and the shapes of a ``region``.
        self.form = LayerForm(napari_viewer, [
            LayerPicker(napari_viewer, ("Image",), name="image", label="Image"),
            LayerPicker(napari_viewer, ("Labels",), name="nuclei", label="Nuclei", accept=in_memory),
            LayerPicker(napari_viewer, ("Shapes",), name="region", label="Region (shapes)", optional=True),
        ])
        self.folder, folder = folder_row("choose a dataset folder…", self.choose_folder)
        self.mode = QComboBox()
        for text, mode in MODES:
            self.mode.addItem(text, mode)
        self.tile = QComboBox()
        for size in TILE_SIZES:
            self.tile.addItem(str(size), size)
        self.stride = QSpinBox(minimum=16, maximum=512, singleStep=16, value=256)
        self.drop_empty = QCheckBox("Skip tiles without nuclei")
        self.drop_empty.setChecked(True)
        self.stain = QComboBox()
        self.stain.addItems(STAINS)
        self.pixel_size = pixel_size_box()
        self.save_button = QPushButton("Save training pairs")
        self.save_button.clicked.connect(self.save)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Dataset folder", folder)
        form.addRow("Save", self.mode)
        form.addRow("Tile size", self.tile)
        form.addRow("Stride", self.stride)
        form.addRow("", self.drop_empty)
        form.addRow("Stain", self.stain)
        form.addRow("Pixel size", self.pixel_size)
        layout = QVBoxLayout(self)
        add_form(layout, self.form, form)
        layout.addWidget(self.save_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.tile.currentIndexChanged.connect(lambda *_: self.stride.setMaximum(int(self.tile.currentData())))
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.form.nuclei.changed.connect(self._labels_changed)
        self._mode_changed()
        self._labels_changed()

    def _mode_changed(self, *_args) -> None:
        mode = self.mode.currentData()
        for widget in (self.tile, self.stride, self.drop_empty):
            widget.setEnabled(mode == "tiles")
        self.form.region.enabled = mode != "whole"

    def _labels_changed(self, *_args) -> None:
        layer = self.form.nuclei.value
        if layer is None or isinstance(layer.data, list):
            return
        meta = layer.metadata.get("ihcseg", {})
        stain = _FROM_PRESET.get(meta.get("stain"), meta.get("stain"))
        if stain in STAINS:
            self.stain.setCurrentText(stain)
        if meta.get("pixel_size_um"):
            self.pixel_size.setValue(float(meta["pixel_size_um"]))
        self.offer_restore_for(layer)

    def choose_folder(self) -> None:
        choose_folder_into(self, "Dataset folder for training pairs", self.folder)

    def _region(self, image_layer, origin, shape) -> tuple[int, int, int, int] | None:
        """The region in labels coordinates: the shapes' bounding box, else the current view."""
        shapes = self.form.region.value
        if shapes is not None and len(shapes.data):
            world = np.concatenate([[shapes.data_to_world(p) for p in verts] for verts in shapes.data])
            pts = np.array([image_layer.world_to_data(p) for p in world])[:, -2:]
            lo, hi = np.floor(pts.min(axis=0)), np.ceil(pts.max(axis=0)) + 1
        else:
            y0, x0, y1, x1 = field_of_view(image_layer, self.viewer)
            lo, hi = np.array([y0, x0]), np.array([y1, x1])
        lo, hi = lo - origin, hi - origin
        return (int(max(lo[0], 0)), int(max(lo[1], 0)), int(min(hi[0], shape[0])), int(min(hi[1], shape[1])))

    def _counts(self, labels_layer) -> dict:
        """The nuclei counted in count mode (with a known class), kept beside the masks."""
        from ._counts import counted_points, counts_layer_of

        counts = counts_layer_of(self.viewer, labels_layer)
        if counts is None or not len(counts.data):
            return {}
        coords, positive, known = counted_points(counts, labels_layer)
        if not known.all():
            show_info(f"{int((~known).sum())} counted point(s) without a class are left out of the pairs; "
                      "classify them or score the nuclei first")
        return {"points": coords[known], "point_positive": positive[known]}

    def save(self) -> list[SavedPair]:
        """Save with the current settings; asks before replacing existing pairs."""
        try:
            return self._save()
        except Exception as exc:  # noqa: BLE001 - reported to the user
            show_error(f"Saving training pairs failed: {describe_error(exc)}")
            return []

    def _save(self) -> list[SavedPair]:
        image_layer, labels_layer = self.form.image.value, self.form.nuclei.value
        if image_layer is None or labels_layer is None:
            raise ValueError("choose an image and its nuclei (Labels) layer")
        writer = TrainingPairWriter(check_folder(self.folder.text().strip() or None))
        session = self.session_of(labels_layer)
        session.sync()
        image, labels, origin = labels_in_image(image_layer, labels_layer)
        mode = self.mode.currentData()
        use_region = mode == "region" or (mode == "tiles" and self.form.region.value is not None)
        region = self._region(image_layer, np.array(origin), labels.shape) if use_region else None
        meta = labels_layer.metadata.get("ihcseg", {})
        options = dict(
            mode=mode, region=region, tile=int(self.tile.currentData()), stride=int(self.stride.value()),
            drop_empty=self.drop_empty.isChecked(), source=meta.get("source") or layer_source(image_layer),
            name=None if (meta.get("source") or layer_source(image_layer)) else image_layer.name,
            stain=self.stain.currentText(), pixel_size_um=self.pixel_size.value() or None,
            model=meta.get("model"), corrected_labels=session.tracker.edit_times(),
            edited_mask=session.edited_mask if session.edited_mask.shape == labels.shape else None,
            origin=origin, **self._counts(labels_layer))
        try:
            saved = writer.save(image, labels, **options)
        except FileExistsError:
            taken = writer.conflicts([pid for pid, _ in writer.plan(
                image.shape, mode=mode, region=region, tile=options["tile"], stride=options["stride"],
                source=options["source"], name=options["name"], origin=origin)])
            question = (f"{len(taken)} training pair(s) already exist in {writer.folder}, e.g. '{taken[0]}'.\n\n"
                        "Replace them with the current nuclei?")
            if not self.ask("Replace training pairs?", question):
                self.status.setText(f"Nothing saved: {len(taken)} pair(s) already exist in {writer.folder}.")
                return []
            saved = writer.save(image, labels, overwrite=True, **options)
        session.saved()
        self.last_saved = saved
        n_fixed = sum(p.corrected for p in saved)
        n_points = sum(p.n_points for p in saved)
        named = ", ".join(sorted({pair_stem(p.id) for p in saved}))
        self.status.setText(f"Saved {len(saved)} pair(s) named {named} ({n_fixed} corrected by hand"
                            + (f", {n_points} counted nuclei" if n_points else "") + f") to {writer.folder}.")
        show_info(f"Saved {len(saved)} training pair(s) to {Path(writer.folder)}")
        return saved
