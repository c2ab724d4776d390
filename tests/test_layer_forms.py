"""Every widget picks its layers with one magicgui form (``LayerForm``) that follows the viewer.

Needs a display: run under ``xvfb-run -a env QT_QPA_PLATFORM=xcb python -m pytest tests/test_layer_forms.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from gui import nuclei_field, require_display

pytestmark = pytest.mark.gui

require_display()

#: widget: its layer pickers, as {name: (layer class offered, optional)}.
PICKERS = {
    "segment": {"image": ("Image", False)},
    "correct": {"nuclei": ("Labels", False)},
    "count": {"nuclei": ("Labels", False), "image": ("Image", True), "counts": ("Points", True)},
    "score": {"image": ("Image", False), "nuclei": ("Labels", False), "roi": ("Shapes", True)},
    "pairs": {"image": ("Image", False), "nuclei": ("Labels", False), "region": ("Shapes", True)},
}


def make_widget(name, viewer, store, tmp_path):
    no = lambda *a: False  # noqa: E731 - answers every question
    if name == "segment":
        from napari_ihcseg._widgets.segment import SegmentWidget

        return SegmentWidget(viewer, ask=no, store=store, catalog=tmp_path / "catalog.json")
    if name == "correct":
        from napari_ihcseg._widgets.correct import CorrectWidget

        return CorrectWidget(viewer, ask=no, store=store)
    if name == "count":
        from napari_ihcseg._widgets.count import CountWidget

        return CountWidget(viewer, ask=no, store=store)
    if name == "score":
        from napari_ihcseg._widgets.score import ScoreWidget

        return ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    from napari_ihcseg._widgets.pairs import SavePairsWidget

    return SavePairsWidget(viewer, ask=no, store=store)


def add_layer(viewer, kind: str, name: str, ihc):
    if kind == "Image":
        return viewer.add_image(ihc, name=name, rgb=True)
    if kind == "Labels":
        return viewer.add_labels(nuclei_field(), name=name)
    if kind == "Shapes":
        return viewer.add_shapes([np.array([[0, 0], [0, 140], [140, 140], [140, 0]])], shape_type="polygon", name=name)
    return viewer.add_points(np.array([[60.0, 60.0]]), name=name)


def texts(picker) -> list[str]:
    return [picker.native.itemText(i) for i in range(picker.native.count())]


@pytest.fixture
def viewer(make_napari_viewer, ihc):
    from napari_ihcseg._widgets._common import DISPLAY_ONLY

    viewer = make_napari_viewer()
    for kind in ("Image", "Labels", "Shapes", "Points"):
        add_layer(viewer, kind, f"{kind} 1", ihc)
    viewer.add_image(np.zeros((8, 8)), name="heat map", metadata={DISPLAY_ONLY: True})
    viewer.add_labels([nuclei_field(), nuclei_field()[::2, ::2]], name="slide nuclei", multiscale=True)
    return viewer


@pytest.mark.parametrize("name", sorted(PICKERS))
def test_each_widget_offers_the_layers_of_its_kinds(viewer, qtbot, store, tmp_path, name):
    """Only the layers a picker can use, the newest at first for a required one, none for an optional one."""
    from napari_ihcseg._widgets._forms import NONE_TEXT, LayerForm, LayerPicker

    widget = make_widget(name, viewer, store, tmp_path)
    qtbot.addWidget(widget)
    form = widget.form
    assert isinstance(form, LayerForm)
    pickers = {w.name: w for w in form if isinstance(w, LayerPicker)}
    assert {n: p.optional for n, p in pickers.items()} == {n: opt for n, (_k, opt) in PICKERS[name].items()}
    for picker_name, (kind, optional) in PICKERS[name].items():
        picker = pickers[picker_name]
        # no layer drawn only to show a result, no whole-slide labels (they cannot be edited or scored)
        assert texts(picker) == ([NONE_TEXT] if optional else []) + [f"{kind} 1"]
        assert picker.value is (None if optional else viewer.layers[f"{kind} 1"])


@pytest.mark.parametrize("name", sorted(PICKERS))
def test_each_widget_follows_additions_renames_and_removals(viewer, qtbot, store, tmp_path, ihc, name):
    widget = make_widget(name, viewer, store, tmp_path)
    qtbot.addWidget(widget)
    for picker_name, (kind, optional) in PICKERS[name].items():
        picker = getattr(widget.form, picker_name)
        chosen = viewer.layers[f"{kind} 1"]
        picker.value = chosen
        heard = []
        picker.changed.connect(heard.append)

        newer = add_layer(viewer, kind, f"{kind} 2", ihc)
        assert picker.value is chosen and newer in picker.choices, "a new layer leaves the choice alone"
        chosen.name = f"{kind} renamed"
        assert picker.value is chosen and f"{kind} renamed" in texts(picker), "a renamed layer stays chosen"
        assert heard == []

        viewer.layers.remove(chosen)
        expected = None if optional else newer
        assert picker.value is expected and heard == [expected], "the chosen layer gone: one change, to the newest"
        picker.changed.disconnect(heard.append)


def test_score_counts_every_nucleus_again_when_its_region_is_removed(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets.score import ScoreWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    viewer.add_labels(nuclei_field(), name="nuclei")
    roi = add_layer(viewer, "Shapes", "tumour", ihc)
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    qtbot.addWidget(score)
    score.form.roi.value = roi
    score.start()
    assert score.summary["n_nuclei"] == 2, "nuclei 1 and 2 lie in the region, 3 outside"
    viewer.layers.remove(roi)
    qtbot.waitUntil(lambda: score.summary["n_nuclei"] == 3, timeout=3000)


#: widget: a field of its own, laid out below its layer pickers.
OTHER_FIELD = {"segment": lambda w: w.tile, "correct": lambda w: w.form.split_contour.native,
               "count": lambda w: w.form.radius.native, "score": lambda w: w.stain, "pairs": lambda w: w.stain}


@pytest.mark.parametrize("name", sorted(PICKERS))
def test_the_pickers_and_the_other_fields_line_up_in_one_column(viewer, qtbot, store, tmp_path, name):
    from qtpy.QtCore import QPoint

    widget = make_widget(name, viewer, store, tmp_path)
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    fields = [getattr(widget.form, p).native for p in PICKERS[name]] + [OTHER_FIELD[name](widget)]
    lefts = {field.mapTo(widget, QPoint(0, 0)).x() for field in fields}
    assert max(lefts) - min(lefts) <= 2, lefts
    # napari's theme restyles a docked panel after it was built, with another font: still one column
    widget.setStyleSheet("QLabel { font-size: 21px; }")
    qtbot.wait(50)
    lefts = {field.mapTo(widget, QPoint(0, 0)).x() for field in fields}
    assert max(lefts) - min(lefts) <= 2, lefts
