"""The Train widget names the layout of the folder it is given, and trains from a folder without dataset.json.

Needs a display: run under ``xvfb-run -a env QT_QPA_PLATFORM=xcb python -m pytest tests/test_train_widget_layouts.py``.
"""

from __future__ import annotations


import numpy as np
import pytest
import tifffile

from gui import require_display, start_short_training

pytestmark = pytest.mark.gui

require_display("torch")


def test_train_widget_names_the_layout_and_trains_from_a_cellpose_folder(make_napari_viewer, qtbot, tmp_path):
    from skimage.io import imsave

    from napari_ihcseg._widgets.train import TrainWidget
    from napari_ihcseg.datasets.layouts import LAYOUTS
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    folder = tmp_path / "cellpose"
    folder.mkdir()
    for seed in range(3):
        f = make_synthetic_ihc((128, 128), seed=seed)
        imsave(folder / f"f{seed}.png", f.image, check_contrast=False)
        tifffile.imwrite(folder / f"f{seed}_masks.tif", f.labels.astype(np.uint16))
    imsave(folder / "lonely.png", f.image, check_contrast=False)  # no mask: named and skipped

    trainer = TrainWidget(make_napari_viewer(), catalog=tmp_path / "catalog.json")
    qtbot.addWidget(trainer)
    trainer.dataset.setText(str(tmp_path))  # nothing there fits
    assert trainer.show_layout() is None
    text = trainer.layout_label.text()
    assert "no known training layout" in text and LAYOUTS["cellpose"] in text
    trainer.dataset.setText(str(folder))
    assert trainer.show_layout() == "cellpose" and LAYOUTS["cellpose"] in trainer.layout_label.text()

    start_short_training(trainer, max_steps=1)
    qtbot.waitUntil(lambda: not trainer.running, timeout=180_000)
    assert trainer.result is not None and trainer.result.best_checkpoint is not None, trainer.status.text()
    status = trainer.status.text()
    assert "3 sample(s); 1 skipped" in status and "lonely.png: no partner beside it" in status
