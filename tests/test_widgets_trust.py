"""The Score widget's confidence figures, stain-pattern banner and Ki-67 hot-spot layers.

Needs a display: run under ``xvfb-run -a env QT_QPA_PLATFORM=xcb python -m pytest tests/test_widgets_trust.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gui import require_display

pytestmark = pytest.mark.gui

require_display()


@pytest.fixture
def ki67():
    from napari_ihcseg.data.synthetic_ki67 import make_ki67_field

    return make_ki67_field((512, 512), seed=3, background=0.1, hotspot=0.9, hotspot_radius=90)


@pytest.fixture
def score_widget(make_napari_viewer, qtbot, tmp_path):
    from napari_ihcseg._widgets.score import ScoreWidget
    from napari_ihcseg.editing.recovery import RecoveryStore

    viewer = make_napari_viewer()
    widget = ScoreWidget(viewer, store=RecoveryStore(tmp_path / "recovery"),
                         choose_path=lambda title, suggested, f: str(tmp_path / suggested.split("/")[-1]))
    qtbot.addWidget(widget)
    return viewer, widget


def table(widget) -> dict:
    return {widget.table.item(r, 0).text(): widget.table.item(r, 1).text() for r in range(widget.table.rowCount())}


def test_ki67_hot_spot_layers_table_and_exports(score_widget, ki67, qtbot, tmp_path):
    from napari_ihcseg._widgets._trust import HEATMAP_LAYER, HOTSPOT_LAYER

    viewer, widget = score_widget
    viewer.add_image(ki67.field.image, name="ki67", rgb=True)
    viewer.add_labels(ki67.field.labels, name="nuclei")
    widget.stain.setCurrentIndex(widget.stain.findData("ki67"))
    widget.trust.hotspot_cells.setValue(60)
    widget.start()
    rows = table(widget)
    s = widget.summary
    assert rows["Positive %, 95 % CI"] == f"{s['ki67_index_ci'][0]:.1f}–{s['ki67_index_ci'][1]:.1f} %"
    assert rows["Ki-67 index, hot spot"].startswith(f"{s['hotspot_ki67_index']:.1f} %")
    assert s["hotspot_n_cells"] == 60 and s["hotspot_ki67_index"] > s["ki67_index"] + 20
    assert rows["DAB pattern"].startswith("nuclear") and rows["Enough cells"] == "no (≥ 500)"
    assert widget.trust.warning.isVisibleTo(widget) and "only" in widget.trust.warning.text()

    # The hot spot is drawn where it was found, the heat map is there and can be hidden.
    circle = viewer.layers[HOTSPOT_LAYER].data[0]
    assert np.allclose(circle.mean(axis=0), s["hotspot_center_yx"], atol=1.0)
    assert np.allclose(np.hypot(*(circle - circle.mean(axis=0)).T), s["hotspot_radius_px"], rtol=0.01)
    heat = viewer.layers[HEATMAP_LAYER]
    assert heat.visible and np.nanmax(heat.data) > s["ki67_index"]
    widget.trust.show_heatmap.setChecked(False)
    assert not heat.visible
    # Neither is offered as an input: a widget opened now still picks the field and its nuclei.
    from napari_ihcseg._widgets.pairs import SavePairsWidget

    assert widget.form.image.value.name == "ki67" and widget.form.roi.value is None
    assert HEATMAP_LAYER not in [layer.name for layer in widget.form.image.choices]
    pairs = SavePairsWidget(viewer, ask=lambda *a: True, store=widget.store)
    qtbot.addWidget(pairs)
    assert pairs.form.image.value.name == "ki67"

    # A cut-off set by the user is called, and the export holds both indices side by side.
    widget.trust.ki67_cutoff.setValue(round(s["ki67_index"]))
    qtbot.waitUntil(lambda: widget.summary["ki67_call"] is not None, timeout=3000)
    assert "uncertain" in table(widget)[f"Ki-67 vs {round(s['ki67_index']):g} % cut-off"]
    path = widget.export("summary_json")
    on_disk = json.loads(path.read_text())
    keys = list(on_disk)
    assert keys.index("hotspot_ki67_index") == keys.index("ki67_index_ci") + 1
    assert on_disk["hotspot_ki67_index"] == pytest.approx(s["hotspot_ki67_index"])
    header, values = widget.export("summary_csv").read_text().splitlines()
    row = dict(zip(header.split(","), values.split(",")))
    assert float(row["hotspot_ki67_index"]) == pytest.approx(s["hotspot_ki67_index"])
    assert row["ki67_index_ci"].count(";") == 1


def test_cytoplasmic_stain_shows_the_warning_banner(score_widget, qtbot):
    from napari_ihcseg.scoring.stain_pattern import NON_NUCLEAR_WARNING
    from napari_ihcseg.stain import compose

    viewer, widget = score_widget
    conc = np.zeros((192, 192, 3), np.float32)
    conc[..., 0] = 0.05
    labels = np.zeros((192, 192), np.int32)
    for i in range(36):   # nuclei in brown cytoplasm, little DAB in the nuclei
        r, c = divmod(i, 6)
        y0, x0 = r * 32 + 12, c * 32 + 12
        conc[y0 - 8:y0 + 16, x0 - 8:x0 + 16, 1] = 0.6
        conc[y0:y0 + 8, x0:x0 + 8, 0], conc[y0:y0 + 8, x0:x0 + 8, 1] = 0.5, 0.15
        labels[y0:y0 + 8, x0:x0 + 8] = i + 1
    viewer.add_image(compose(conc), name="her2-like", rgb=True)
    viewer.add_labels(labels, name="nuclei")
    widget.start()
    assert widget.summary["stain_pattern"] == "cytoplasmic/membranous"
    assert widget.trust.warning.isVisibleTo(widget)
    assert widget.trust.warning.text().splitlines()[0] == f"⚠ {NON_NUCLEAR_WARNING}"
    assert table(widget)["DAB pattern"].startswith("cytoplasmic/membranous")
