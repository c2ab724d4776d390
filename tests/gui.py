"""What the widget tests share: the display check made when a module is collected, a small field, a short run.

Qt's application object (a session fixture) would abort the whole run without
a display, before any module-scoped fixture could skip; so each widget test
module calls :func:`require_display` at import.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest


def has_display() -> bool:
    """Whether Qt can open windows here (always outside Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"))


def require_display(*modules: str) -> None:
    """Skip the calling test module without Qt, napari, pytest-qt (and ``modules``) or a display."""
    for name in ("qtpy", "napari", "pytestqt", *modules):
        pytest.importorskip(name)
    if not has_display():
        pytest.skip("no display; run under xvfb-run", allow_module_level=True)


def nuclei_field() -> np.ndarray:
    """A small labelled field: two touching squares (1, 2) and a far one (3)."""
    labels = np.zeros((256, 256), np.int32)
    labels[40:80, 40:80] = 1
    labels[40:80, 80:120] = 2
    labels[150:190, 150:190] = 3
    return labels


def start_short_training(trainer, *, max_steps: int) -> None:
    """Start a Train widget on an untrained r2unet-lite: one epoch of ``max_steps`` steps, batch 2, 128-px tiles."""
    trainer.base.setCurrentIndex(trainer.base.findData("r2unet-lite"))
    trainer.epochs.setValue(1)
    trainer.tile.setCurrentText("128")
    trainer.batch.setValue(2)
    trainer.max_steps.setValue(max_steps)
    trainer.start()
