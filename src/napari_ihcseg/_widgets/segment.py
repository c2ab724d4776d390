"""Segment nuclei: one click, in a background thread, with progress and cancel."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_ihcseg.editing.recovery import RecoveryStore
from napari_ihcseg.inference.planning import SIZE_MULTIPLE
from napari_ihcseg.io import image_stem, strided_pyramid

from ._common import (
    Ask,
    Relay,
    choose_with_dialog,
    describe_error,
    layer_source,
    show_error,
    show_info,
    start_worker,
)
from ._layer_pixels import field_of_view, image_level0, pixel_digest, to_rgb_uint8
from ._forms import LayerForm, LayerPicker, add_form
from ._models import ModelChoice, TunedSettings
from ._session import CorrectionPanel

if TYPE_CHECKING:
    from napari_ihcseg.inference import InferenceConfig


#: Largest field of view segmented in memory (full-resolution pixels).
MAX_FIELD_PIXELS = 6144 * 6144
SCOPES = (("Whole image", "whole"), ("Current field of view", "view"))


@dataclass
class SegmentResult:
    """What a run produced (in the worker thread), handed to the GUI thread."""

    labels: object
    mask_prob: np.ndarray | None
    contour_prob: np.ndarray | None
    device: str
    origin: tuple[int, int] = (0, 0)
    path: Path | None = None
    notes: list[str] = field(default_factory=list)


def _load(spec: str, device: str, notes: list[str]):
    from napari_ihcseg.models import load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(spec, device)
    notes.extend(str(w.message) for w in caught)
    return model


def _segment_field(image, spec, device, config, progress, cancel, origin) -> SegmentResult:
    """Worker: load the model and segment the field in memory (:func:`~napari_ihcseg.inference.segment_image`)."""
    from napari_ihcseg.inference import segment_image
    from napari_ihcseg.inference.control import check_cancel

    notes: list[str] = []
    check_cancel(cancel, "segmentation")
    model = _load(spec, device, notes)
    segmentation = segment_image(image, model, config, progress=progress, cancel=cancel)
    return SegmentResult(segmentation.labels, segmentation.mask_prob, segmentation.contour_prob,
                         segmentation.info.description, origin, notes=notes)


def _segment_slide(levels, source, spec, device, config, out, progress, cancel) -> SegmentResult:
    """Worker: whole slide, block by block, written to ``out``."""
    from napari_ihcseg.inference import segment_large

    notes: list[str] = []
    model = _load(spec, device, notes)
    result = segment_large(list(levels), model, out=out, config=config, source=source, progress=progress,
                           cancel=cancel)
    notes.append(f"{result.n_nuclei} nuclei in {result.blocks} block(s) ({result.skipped_blocks} without tissue)")
    return SegmentResult(None, None, None, str(device), path=Path(result.path), notes=notes)


def open_labels_pyramid(path: Path, *, min_side: int = 2048) -> list:
    """A whole-slide label image as lazy levels (full resolution, then every 2nd, 4th... pixel)."""
    import dask.array as da

    if path.suffix.lower() == ".zarr":
        base = da.from_zarr(str(path))
    else:
        import tifffile
        import zarr

        base = da.from_zarr(zarr.open(tifffile.imread(str(path), aszarr=True), mode="r"))
    return strided_pyramid(base, smallest_side=min_side)


class SegmentWidget(CorrectionPanel):
    """Segment nuclei in an image layer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    ask : callable, optional
        ``ask(title, question) -> bool``; offers to restore unsaved corrections.
    store : RecoveryStore, optional
        Where corrections of the new layer are autosaved.
    choose_path : callable, optional
        ``choose_path(title, suggested, filter) -> str | None``: the output of
        whole-slide runs and the checkpoint folder to load (default: dialogs).
    catalog : path, optional
        The file listing checkpoints the user loaded or trained.
    """

    def __init__(self, napari_viewer, *, ask: Ask | None = None, store: RecoveryStore | None = None,
                 choose_path=None, catalog: Path | None = None) -> None:
        super().__init__(napari_viewer, ask=ask, store=store)
        self.choose_path = choose_path or choose_with_dialog(self)
        self.catalog = catalog
        self.worker = None
        self.last_result: SegmentResult | None = None
        self._cancel = threading.Event()
        self._pbar = None
        self._relay = Relay(self._progressed, parent=self)

        #: The layer to segment, a magicgui form: ``image``.
        self.form = LayerForm(napari_viewer, [LayerPicker(napari_viewer, ("Image",), name="image", label="Image")])
        self.model = ModelChoice(catalog, choose_path=lambda *args: self.choose_path(*args), parent=self)
        self.device = QComboBox()
        self.device_used = QLabel("–")
        self.scope = QComboBox()
        for text, key in SCOPES:
            self.scope.addItem(text, key)
        self.tile = QSpinBox(minimum=2 * SIZE_MULTIPLE, maximum=2048, singleStep=SIZE_MULTIPLE, value=1024)
        self.tile.setToolTip("Largest tile side: tiles are fitted to the image, so a field up to this size "
                             "runs as one tile. Lower it if memory runs out.")
        self.overlap = QSpinBox(minimum=0, maximum=512, singleStep=16, value=64)
        self.image_scale = QDoubleSpinBox(minimum=0.25, maximum=8.0, singleStep=0.25, value=1.0)
        self.image_scale.setDecimals(2)
        self.image_scale.setToolTip(
            "Factor applied to the image before the model: 2 for images at half the magnification of the "
            "training data, e.g. 20x images with a 40x model; 0.5 for twice it. Labels keep the image's size. "
            "Fields segmented in memory only, not whole slides written to disk.")
        self.mask_threshold = QDoubleSpinBox(minimum=0.05, maximum=0.95, singleStep=0.05, value=0.5)
        self.contour_threshold = QDoubleSpinBox(minimum=0.05, maximum=0.95, singleStep=0.05, value=0.5)
        self.min_size = QSpinBox(minimum=0, maximum=10000, value=16)
        self.min_size.setSuffix(" px")
        self.tta = QCheckBox("Test-time augmentation (4× slower)")
        self.tta.setToolTip("Average each tile's prediction with those of its three flips: smoother outlines "
                            "and fewer split or missed nuclei, at four times the compute.")
        self.keep_probs = QCheckBox("Add probability layers")
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Model", self.model)
        form.addRow("Device", self.device)
        form.addRow("Device used", self.device_used)
        form.addRow("Segment", self.scope)
        form.addRow("Tile", self.tile)
        form.addRow("Overlap", self.overlap)
        form.addRow("Scale", self.image_scale)
        form.addRow("Mask threshold", self.mask_threshold)
        form.addRow("Contour threshold", self.contour_threshold)
        form.addRow("Minimum size", self.min_size)
        form.addRow("", self.tta)
        form.addRow("", self.keep_probs)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        add_form(layout, self.form, form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self._fill_devices()
        self._tuned = TunedSettings(self.model, self.mask_threshold, self.contour_threshold, self.min_size,
                                    self.image_scale, parent=self)
        self.refresh_models()
        self.form.image.changed.connect(self._image_changed)
        self._image_changed()

    # --------------------------------------------------------------- choices
    def _fill_devices(self) -> None:
        from napari_ihcseg.device import available_devices

        self.device.addItem("auto")
        self.device.addItems(available_devices())

    def refresh_models(self) -> None:
        """List the shipped checkpoints, the user's checkpoints, then the untrained architectures."""
        self.model.refresh()

    def add_checkpoint(self, folder) -> None:
        """Remember a checkpoint folder and select it."""
        self.model.add_checkpoint(folder)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt API; picks up newly trained models
        self.refresh_models()
        super().showEvent(event)

    def _image_changed(self, *_args) -> None:
        layer = self.form.image.value
        multiscale = bool(layer is not None and layer.multiscale)
        self.scope.setItemText(0, "Whole slide (written to disk)" if multiscale else "Whole image")
        if multiscale:
            self.scope.setCurrentIndex(1)

    def config(self):
        from napari_ihcseg.inference import InferenceConfig

        tile = int(self.tile.value()) // SIZE_MULTIPLE * SIZE_MULTIPLE
        return InferenceConfig(tile=tile, overlap=min(int(self.overlap.value()), tile - SIZE_MULTIPLE),
                               device=self.device.currentText(),
                               mask_threshold=float(self.mask_threshold.value()),
                               contour_threshold=float(self.contour_threshold.value()),
                               min_size=int(self.min_size.value()), scale=float(self.image_scale.value()),
                               tta=self.tta.isChecked())

    # ------------------------------------------------------------------- run
    @property
    def running(self) -> bool:
        return self.worker is not None

    def run(self) -> None:
        """Start segmenting with the current settings (returns at once)."""
        if self.running:
            return
        try:
            self._start()
        except Exception as exc:  # noqa: BLE001 - reported to the user
            show_error(f"Segmentation could not start: {describe_error(exc)}")
            self.status.setText(f"Not started: {exc}")

    def _start(self) -> None:
        layer = self.form.image.value
        if layer is None:
            raise ValueError("open an RGB image first (File ▸ Open, or the IHC sample)")
        spec = self.model.currentData()
        if spec is None:
            raise ValueError("choose a model")
        config = self.config()
        device = self.device.currentText()
        self._cancel = threading.Event()
        progress = self._relay
        source = layer_source(layer) or layer.name
        if self.scope.currentData() == "whole" and layer.multiscale:
            if config.scale != 1.0:
                raise ValueError(f"Scale {config.scale:g} works on fields segmented in memory only; set Scale to 1 "
                                 "to segment the whole slide, or segment the current field of view")
            folder = Path(source).parent if Path(source).is_absolute() else Path.home()
            stem = image_stem(source)
            out = self.choose_path("Write the whole-slide nuclei to", str(folder / f"{stem}.nuclei.zarr"),
                                   "Zarr (*.zarr)")
            if not out:
                return
            if not Path(out).expanduser().is_absolute():
                raise ValueError(f"{out}: choose an absolute path for the whole-slide nuclei")
            job = (_segment_slide, list(layer.data), source, spec, device, config, out, progress, self._cancel)
        else:
            if self.scope.currentData() == "view":
                y0, x0, y1, x1 = field_of_view(layer, self.viewer)
            else:
                y0, x0 = 0, 0
                y1, x1 = image_level0(layer).shape[:2]
            if (y1 - y0) * (x1 - x0) > MAX_FIELD_PIXELS:
                raise ValueError(f"the region is {y1 - y0}×{x1 - x0} pixels at full resolution; zoom in, or "
                                 "segment the whole slide (written to disk)")
            image = to_rgb_uint8(image_level0(layer)[y0:y1, x0:x1], where=layer.name)
            job = (_segment_field, image, spec, device, config, progress, self._cancel, (y0, x0))
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Segmenting {layer.name} with {self.model.currentText()}…")
        self.worker = start_worker(*job, on_result=lambda result, lyr=layer, s=spec, c=config: self._finished(
                                       result, lyr, s, c),
                                   on_error=self._failed, on_finished=self._done)

    def cancel(self) -> None:
        """Ask the running segmentation to stop (it stops within one batch of tiles)."""
        self._cancel.set()
        self.status.setText("Cancelling…")

    def _progressed(self, done: int, total: int) -> None:
        from napari.utils import progress

        if self._pbar is None and total:
            self._pbar = progress(total=total, desc="Segmenting nuclei")
        if self._pbar is not None:
            self._pbar.update(done - self._pbar.n)
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _finished(self, result: SegmentResult, image_layer, spec: str, config: InferenceConfig) -> None:
        try:
            self._show(result, image_layer, spec, config)
        except Exception as exc:  # noqa: BLE001 - reported to the user
            self.status.setText(f"Failed to show the result: {describe_error(exc)}")
            show_error(f"Showing the nuclei failed: {describe_error(exc)}")

    def _show(self, result: SegmentResult, image_layer, spec: str, config: InferenceConfig) -> None:
        self.last_result = result
        self.device_used.setText(result.device)
        for note in result.notes:
            show_info(note)
        scale = np.asarray(image_layer.scale)[-2:]
        translate = np.asarray(image_layer.translate)[-2:] + np.asarray(result.origin) * scale
        file = layer_source(image_layer)
        meta = {"source": file or image_layer.name, "model": spec, "device": result.device,
                "origin": tuple(result.origin),
                # An image not read from a file is told from another of its name and size by its pixels.
                **({} if file else {"image_digest": pixel_digest(image_level0(image_layer))}),
                "image_layer": image_layer.name, "instances": config.instance_options(), "scale": config.scale,
                "tta": config.tta}
        if result.path is not None:
            levels = open_labels_pyramid(result.path)
            self.viewer.add_labels(levels if len(levels) > 1 else levels[0], name="nuclei", scale=scale,
                                   translate=translate, metadata={"ihcseg": meta}, multiscale=len(levels) > 1)
            self.status.setText(f"Whole slide done: {result.path}. {' '.join(result.notes)}")
            return
        meta["probabilities"] = (result.mask_prob, result.contour_prob)
        if self.keep_probs.isChecked():
            for name, prob in (("nucleus probability", result.mask_prob), ("contour probability", result.contour_prob)):
                self.viewer.add_image(prob, name=name, colormap="magma", blending="additive", opacity=0.6,
                                      scale=scale, translate=translate, contrast_limits=(0, 1), visible=False)
        labels = self.viewer.add_labels(result.labels, name="nuclei", scale=scale, translate=translate,
                                        metadata={"ihcseg": meta}, opacity=0.5)
        n = int(result.labels.max()) if result.labels.size else 0
        self.status.setText(f"Found {n} {'nucleus' if n == 1 else 'nuclei'} on {result.device}.")
        self.offer_restore_for(labels)

    def _failed(self, exc: BaseException) -> None:
        from napari_ihcseg.inference import Cancelled

        if isinstance(exc, Cancelled):
            self.status.setText("Cancelled.")
            show_info("Segmentation cancelled")
            return
        self.status.setText(f"Failed: {describe_error(exc)}")
        show_error(f"Segmentation failed: {describe_error(exc)}")

    def _done(self) -> None:
        self.worker = None
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
