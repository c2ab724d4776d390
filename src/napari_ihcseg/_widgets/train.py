"""Fine-tune a model on saved training pairs, in the background, with a loss curve and cancel."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ._common import (
    Relay,
    check_absolute_folder,
    choose_folder_into,
    describe_error,
    folder_row,
    known_checkpoints,
    remember_checkpoint,
    show_error,
    show_info,
    start_worker,
)
from ._lossplot import LossPlot, format_eta


class TrainWidget(QWidget):
    """Fine-tune or train a model on a dataset folder: the Save-pairs widget's, or any layout labs have
    (see :mod:`napari_ihcseg.datasets.layouts`); the layout found is named before training starts.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    catalog : path, optional
        The file listing the user's checkpoints (shared with the Segment widget).
    """

    def __init__(self, napari_viewer, *, catalog: Path | None = None) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.catalog = catalog
        self.worker = None
        self.result = None
        self.tuned = None
        self.folder_data = None
        self._job = "Training"
        self._cancel = threading.Event()
        self._relay = Relay(self._progressed, parent=self)

        self.dataset, row = folder_row("training pairs, images/ + masks/, Cellpose, QuPath or point CSVs",
                                       self.choose_dataset)
        self.base = QComboBox()
        self.epochs = QSpinBox(minimum=1, maximum=1000, value=20)
        self.tile = QComboBox()
        self.tile.addItems(["256", "512", "128"])
        self.batch = QSpinBox(minimum=1, maximum=64, value=4)
        self.max_steps = QSpinBox(minimum=0, maximum=100000, value=0)
        self.max_steps.setSpecialValueText("all tiles")
        self.device = QComboBox()
        self.out = QLineEdit()
        self.out.setPlaceholderText("default: <dataset>/models/<model>-<date>")
        self.start_button = QPushButton("Train")
        self.tune_button = QPushButton("Tune settings only")
        self.tune_button.setToolTip(
            "Choose the mask and contour thresholds and the minimum size with which the model best reproduces "
            "the pairs, without training (about a minute). Writes a tuned copy of the model; needs a trained "
            "model in 'Start from'.")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.tune_button.clicked.connect(self.tune)
        self.cancel_button.clicked.connect(self.cancel)
        self.plot = LossPlot()
        self.bar = QProgressBar()
        self.eta = QLabel("ETA –")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.layout_label = QLabel("")
        self.layout_label.setWordWrap(True)
        self.dataset.editingFinished.connect(self.show_layout)

        form = QFormLayout()
        form.addRow("Dataset folder", row)
        form.addRow("", self.layout_label)
        form.addRow("Start from", self.base)
        form.addRow("Epochs", self.epochs)
        form.addRow("Tile", self.tile)
        form.addRow("Batch size", self.batch)
        form.addRow("Steps per epoch (max)", self.max_steps)
        form.addRow("Device", self.device)
        form.addRow("Output folder", self.out)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.tune_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.bar)
        layout.addWidget(self.eta)
        layout.addWidget(self.plot)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self._fill()

    def _fill(self) -> None:
        from napari_ihcseg.device import available_devices
        from napari_ihcseg.models import list_models, shipped_checkpoints

        for name, folder in shipped_checkpoints().items():
            self.base.addItem(f"{name} (shipped)", str(folder))
        for folder in known_checkpoints(self.catalog):
            self.base.addItem(f"{Path(folder).name} ({folder})", folder)
        for name in list_models():
            self.base.addItem(f"{name} (from scratch)", name)
        self.device.addItem("auto")
        self.device.addItems(available_devices())

    def choose_dataset(self) -> None:
        if choose_folder_into(self, "Training-pair folder", self.dataset):
            self.show_layout()

    def show_layout(self) -> str | None:
        """Say which training layout the dataset folder follows (or why none fits)."""
        from napari_ihcseg.datasets.layouts import LAYOUTS, detect_layout

        try:
            layout = detect_layout(check_absolute_folder(self.dataset.text(), what="dataset folder"))
        except ValueError as exc:
            self.layout_label.setText(str(exc))
            return None
        self.layout_label.setText(f"Found: {LAYOUTS[layout]}")
        return layout

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _dataset_base_out(self, suffix: str = "") -> tuple[Path, str, Path]:
        """The pairs folder, the chosen model and the output folder.

        The output folder defaults to ``<dataset>/models/<model><suffix>-<date>``.
        """
        from napari_ihcseg.datasets.layouts import detect_layout

        dataset = check_absolute_folder(self.dataset.text(), what="dataset folder")
        detect_layout(dataset)  # a clear message, listing the known layouts, when none fits
        self.show_layout()
        base = self.base.currentData()
        if self.out.text().strip():
            out = check_absolute_folder(self.out.text(), what="output folder")
        else:
            out = dataset / "models" / f"{Path(base).name}{suffix}-{time.strftime('%Y%m%d-%H%M%S')}"
        return dataset, base, out

    def config(self):
        from napari_ihcseg.training import TrainConfig
        from napari_ihcseg.training.learning_rates import default_lr
        from napari_ihcseg.training.prepare import base_checkpoint

        dataset, base, out = self._dataset_base_out()
        # The command line's default rate, so a run started here continues there (ihcseg train --resume --out).
        lr = default_lr(finetune=base_checkpoint(base) is not None)
        return TrainConfig(out=str(out), model=base, train_data=(f"folder:{dataset}",), epochs=int(self.epochs.value()),
                           lr=lr,
                           batch_size=int(self.batch.value()), tile=int(self.tile.currentText()),
                           device=self.device.currentText(), max_steps_per_epoch=int(self.max_steps.value()) or None,
                           warmup_steps=min(100, max(1, int(self.max_steps.value()) or 100)))

    def start(self) -> None:
        """Start training in the background (returns at once)."""
        if self.running:
            return
        from napari_ihcseg.training import train

        try:
            config = self.config()
        except Exception as exc:  # noqa: BLE001 - reported to the user
            show_error(f"Training could not start: {describe_error(exc)}")
            self.status.setText(f"Not started: {exc}")
            return
        self._cancel = threading.Event()
        self.plot.clear()
        self.bar.setValue(0)
        self.status.setText(f"Training {config.model} → {config.out}")
        self.start_button.setEnabled(False)
        self.tune_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._job = "Training"

        def job():
            from napari_ihcseg.datasets.layouts import load_folder
            from napari_ihcseg.datasets.registry import split_spec

            self.folder_data = load_folder(split_spec(config.train_data[0])[1])
            return train(config, train_samples=self.folder_data.samples, progress=self._relay,
                         cancel=self._cancel)

        self.worker = start_worker(job, on_result=self._finished, on_error=self._failed, on_finished=self._done)

    def tune(self) -> None:
        """Tune the chosen model's instance settings on the pairs, into a copy (returns at once)."""
        if self.running:
            return
        from napari_ihcseg.datasets.registry import read_folder_spec
        from napari_ihcseg.models import list_models
        from napari_ihcseg.models.shipped import is_shipped_path
        from napari_ihcseg.training.validate import tune_checkpoint_copy

        try:
            dataset, base, out = self._dataset_base_out("-tuned")
            if base in list_models():
                raise ValueError(f"{base} is untrained: choose a trained model in 'Start from' to tune")
            if is_shipped_path(out):
                raise ValueError(f"{out}: inside the package's shipped models; choose a folder of your own")
            samples = read_folder_spec("folder", dataset).samples
        except Exception as exc:  # noqa: BLE001 - reported to the user
            show_error(f"Tuning could not start: {describe_error(exc)}")
            self.status.setText(f"Not started: {exc}")
            return
        self._cancel = threading.Event()
        self.bar.setRange(0, 0)  # busy: tuning reports no steps
        self.eta.setText("Tuning the instance thresholds on the pairs…")
        self.status.setText(f"Tuning {Path(base).name} → {out}")
        self.start_button.setEnabled(False)
        self.tune_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._job = "Tuning"
        device = self.device.currentText()

        def job():
            return out, tune_checkpoint_copy(base, out, samples, device=device, cancel=self._cancel.is_set)

        self.worker = start_worker(job, on_result=self._tuned, on_error=self._failed, on_finished=self._done)

    def _tuned(self, outcome) -> None:
        out, result = outcome
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        self.eta.setText("")
        self.tuned = result
        if result is None:
            self.status.setText("Cancelled, or no pair has nuclei to tune on; nothing was written.")
            return
        remember_checkpoint(out, self.catalog)  # the Segment widgets listing this catalog show it at once
        settings = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in result.params.items())
        self.status.setText(f"Done: {out} has {settings} (mean of AJI and PQ on the pairs {result.score:.3f}, "
                            f"{result.default_score:.3f} with the defaults). It is now in the Segment widget's "
                            "model list.")
        show_info(f"Tuned model: {out}")

    def cancel(self) -> None:
        """Stop after the current step; the state is saved so the run can resume."""
        self._cancel.set()
        self.status.setText("Cancelling after this step…")

    def _progressed(self, event) -> None:
        self.bar.setRange(0, max(event.total_steps, 1))
        self.bar.setValue(event.global_step)
        if event.phase == "train":
            self.plot.add(event.global_step, event.loss)
            self.eta.setText(f"Epoch {event.epoch + 1}/{event.epochs}, step {event.step}/{event.steps_per_epoch}, "
                             f"loss {event.loss:.3f}, ETA {format_eta(event.eta_seconds)}")
        elif event.phase == "validate" and event.metrics:
            m = event.metrics
            val = ", ".join(f"{k[4:]} {m[k]:.3f}" for k in ("val_dice", "val_aji", "val_pq") if k in m)
            self.status.setText(f"Epoch {event.epoch}: train loss {m['train_loss']:.3f}" + (f"; {val}" if val else ""))
        elif event.phase == "tune":
            self.eta.setText("Tuning the instance thresholds on the validation images…")

    def _finished(self, result) -> None:
        self.result = result
        if result.best_checkpoint is None:
            self.status.setText("Stopped before the first epoch ended; no checkpoint was written "
                                f"(the state in {result.out} lets a later run resume).")
            return
        remember_checkpoint(result.best_checkpoint, self.catalog)  # the Segment widgets show it at once
        what = "Cancelled; kept" if result.cancelled else "Done;"
        tuned = ""
        if result.instance_params:
            tuned = " Instance settings tuned on the validation images: " + ", ".join(
                f"{k.replace('_', ' ')} {v:g}" for k, v in result.instance_params.items()) + "."
        data = ""
        if self.folder_data is not None:
            data = f" Trained on {self.folder_data.summary()}."
            if self.folder_data.skipped:
                data += " Skipped: " + "; ".join(self.folder_data.skipped[:5]) + (
                    " …" if len(self.folder_data.skipped) > 5 else "")
            if self.folder_data.warnings:
                data += " " + " ".join(self.folder_data.warnings)
        self.status.setText(f"{what} the best model after {result.epochs_completed} epoch(s) is "
                            f"{result.best_checkpoint}. It is now in the Segment widget's model list.{tuned}{data}")
        show_info(f"New model: {result.best_checkpoint}")

    def _failed(self, exc: BaseException) -> None:
        self.status.setText(f"Failed: {describe_error(exc)}")
        show_error(f"{self._job} failed: {describe_error(exc)}")

    def _done(self) -> None:
        self.worker = None
        if self.bar.maximum() == 0:  # a failed tuning run leaves the busy bar
            self.bar.setRange(0, 1)
        self.start_button.setEnabled(True)
        self.tune_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
