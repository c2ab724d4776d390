"""The Segment widget's tile setting follows the one size multiple (see test_size_multiple.py).

Needs a display: run under ``xvfb-run -a env QT_QPA_PLATFORM=xcb python -m pytest``.
"""

from __future__ import annotations

import pytest

from napari_ihcseg.inference.planning import SIZE_MULTIPLE, plan_tiles

from gui import require_display

pytestmark = pytest.mark.gui

require_display()


def test_segment_widget_rounds_the_tile_down_to_the_multiple(make_napari_viewer, qtbot, store, tmp_path):
    from napari_ihcseg._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=tmp_path / "catalog.json")
    qtbot.addWidget(widget)
    widget.tile.setValue(1000)
    widget.overlap.setValue(64)
    assert widget.config().tile == 992 and widget.config().overlap == 64
    widget.tile.setValue(90)
    widget.overlap.setValue(512)
    config = widget.config()
    assert config.tile == 64 and config.overlap == 64 - SIZE_MULTIPLE
    plan_tiles((300, 300), tile=config.tile, overlap=config.overlap)  # accepted as it is
