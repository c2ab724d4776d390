"""The Segment widget's model list (shipped checkpoints, the user's own, untrained architectures),
and the instance settings each model was tuned with.

The user's checkpoints come from a catalog file (:func:`._common.known_checkpoints`);
a model trained, tuned or loaded anywhere in the process joins every list
reading that catalog at once (:func:`._common.catalog_events`).
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QObject
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QSpinBox, QWidget

from ._common import (
    ChoosePath,
    catalog_events,
    catalog_key,
    known_checkpoints,
    remember_checkpoint,
    show_error,
)

#: The last entry: choose a checkpoint folder not listed yet.
LOAD_CHECKPOINT = "Load checkpoint folder…"


class ModelChoice(QComboBox):
    """A combo box of models; each entry's data is what :func:`napari_ihcseg.models.load_model` takes.

    Parameters
    ----------
    catalog : path, optional
        The file listing the checkpoints the user loaded or trained.
    choose_path : callable
        ``choose_path(title, suggested, "folder") -> str | None``: the folder of
        a checkpoint to load, asked for when :data:`LOAD_CHECKPOINT` is picked.
    parent : QWidget, optional

    Notes
    -----
    ``currentIndexChanged`` is emitted once after each :meth:`refresh`, not for
    the entries passed through while the list is rebuilt.
    """

    def __init__(self, catalog: Path | None = None, *, choose_path: ChoosePath,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.choose_path = choose_path
        self.activated.connect(self._activated)
        catalog_events().changed.connect(self._catalog_changed)

    def refresh(self) -> None:
        """List the shipped checkpoints, the user's checkpoints, then the untrained architectures."""
        from napari_ihcseg.models import default_checkpoint_name, list_models, shipped_checkpoints

        current = self.currentData()
        # Rebuilding the list passes through other models; only the final choice counts.
        self.blockSignals(True)
        try:
            self.clear()
            for name in shipped_checkpoints():
                self.addItem(f"{name} (shipped)", name)
            for folder in known_checkpoints(self.catalog):
                self.addItem(f"{Path(folder).name} ({folder})", folder)
            for name in list_models():
                self.addItem(f"{name} (untrained)", name)
            self.addItem(LOAD_CHECKPOINT, None)
            preferred = current or default_checkpoint_name("auto") or "harunet-lite"
            self.setCurrentIndex(max(self.findData(preferred), 0))
        finally:
            self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())

    def add_checkpoint(self, folder) -> None:
        """Remember a checkpoint folder and select it; a folder that is not a checkpoint raises ``ValueError``."""
        from napari_ihcseg.models import read_checkpoint_config

        read_checkpoint_config(folder)  # refuse a folder that is not a checkpoint, with the reason
        remember_checkpoint(folder, self.catalog)
        self.refresh()
        self.setCurrentIndex(self.findData(str(Path(folder).expanduser().resolve())))

    def _catalog_changed(self, key: str) -> None:
        """A model was trained, tuned or loaded into this catalog: list it at once."""
        if key == catalog_key(self.catalog):
            self.refresh()

    def _activated(self, _index: int) -> None:
        if self.currentData() is not None:
            return
        folder = self.choose_path("Checkpoint folder", str(Path.home()), "folder")
        try:
            if folder:
                self.add_checkpoint(folder)
            else:
                self.refresh()
        except ValueError as exc:
            show_error(f"Cannot use {folder} as a model: {exc}")
            self.refresh()


class TunedSettings(QObject):
    """Shows the instance settings tuned for the chosen model in a widget's boxes, until the user edits them.

    Parameters
    ----------
    model : ModelChoice
    mask_threshold, contour_threshold : QDoubleSpinBox
    min_size : QSpinBox
        In the image's pixels: the model's value (in the pixels it sees)
        follows ``scale`` until the user types one.
    scale : QDoubleSpinBox
        The factor applied to the image before the model.
    parent : QObject, optional
    """

    def __init__(self, model: ModelChoice, mask_threshold: QDoubleSpinBox, contour_threshold: QDoubleSpinBox,
                 min_size: QSpinBox, scale: QDoubleSpinBox, *, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model, self.mask_threshold, self.contour_threshold = model, mask_threshold, contour_threshold
        self.min_size, self.scale = min_size, scale
        self._instances_for: str | None = None
        self._model_min_size: int | None = None  # the model's min_size, in the pixels it sees
        model.currentIndexChanged.connect(self.model_changed)
        min_size.valueChanged.connect(self._min_size_edited)
        scale.valueChanged.connect(self._show_model_min_size)

    def model_changed(self, *_args) -> None:
        """Show the instance settings tuned for a newly chosen model.

        Only a change of model sets them, so refreshing the list (each time
        the widget is shown) keeps what the user typed.
        """
        from napari_ihcseg.models import recommended_instance_params

        spec = self.model.currentData()
        if spec is None or spec == self._instances_for:
            return
        try:
            params = recommended_instance_params(spec)
        except ValueError:
            return  # a checkpoint that went missing: Run reports it
        self._instances_for = spec
        self.mask_threshold.setValue(params["mask_threshold"])
        self.contour_threshold.setValue(params["contour_threshold"])
        self._model_min_size = params["min_size"]
        self._show_model_min_size()
        tip = (f"Set for {Path(spec).name}: tuned on its validation images when its checkpoint has a tuned "
               "value, the default otherwise. Change it to override.")
        for box in (self.mask_threshold, self.contour_threshold):
            box.setToolTip(tip)
        self.min_size.setToolTip(tip + " In the image's pixels: the model's value follows Scale "
                                       "(a quarter of it at Scale 2) until you change it.")

    def _min_size_edited(self, _value: int) -> None:
        self._model_min_size = None  # the user's own value: Scale no longer changes it

    def _show_model_min_size(self, *_args) -> None:
        from napari_ihcseg.inference.config import model_min_size

        if self._model_min_size is None:
            return
        self.min_size.blockSignals(True)  # not the user's edit
        try:
            self.min_size.setValue(model_min_size(self._model_min_size, float(self.scale.value())))
        finally:
            self.min_size.blockSignals(False)
