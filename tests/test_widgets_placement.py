"""Which pixels the panels take under a nuclei layer, and which nuclei layers and recoveries they take.

Needs a display: run under ``xvfb-run -a env QT_QPA_PLATFORM=xcb python -m pytest tests/test_widgets_placement.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gui import nuclei_field, require_display

pytestmark = pytest.mark.gui

require_display()


@pytest.fixture
def errors(monkeypatch):
    """The error messages the panels show the user (instead of napari's notifications)."""
    from napari_ihcseg._widgets import _common, score

    shown: list[str] = []
    monkeypatch.setattr(_common, "show_error", shown.append)
    monkeypatch.setattr(score, "show_error", shown.append)
    return shown


def _layer(scale=(1.0, 1.0), translate=(0.0, 0.0), origin=None, name="layer"):
    meta = {} if origin is None else {"ihcseg": {"origin": origin}}
    return SimpleNamespace(scale=np.array(scale), translate=np.array(translate), metadata=meta, name=name)


@pytest.mark.parametrize("image, labels, expected", [
    (_layer(), _layer(translate=(200, 100)), (200, 100)),  # reopened from the writer's TIFF: no metadata origin
    (_layer(), _layer(origin=(30, 40)), (30, 40)),  # not placed in the viewer: the metadata says where
    (_layer(scale=(0.5, 0.5)), _layer(scale=(0.5, 0.5), translate=(100, 50)), (200, 100)),  # micrometres
    (_layer(scale=(0.5, 0.5), translate=(10, 10)), _layer(scale=(0.5, 0.5), translate=(110, 60)), (200, 100)),
    (_layer(), _layer(translate=(200, 100), origin=(0, 0)), (200, 100)),  # shown there: scored there
])
def test_labels_lie_where_the_viewer_shows_them(image, labels, expected):
    from napari_ihcseg._widgets._layer_pixels import labels_origin

    assert labels_origin(image, labels) == expected


def test_labels_at_another_pixel_size_or_between_pixels_are_refused():
    from napari_ihcseg._widgets._layer_pixels import labels_origin

    with pytest.raises(ValueError, match="pixel size"):
        labels_origin(_layer(scale=(0.5, 0.5)), _layer(scale=(0.25, 0.25)))
    with pytest.raises(ValueError, match="between the pixels"):
        labels_origin(_layer(), _layer(translate=(10.5, 0)))


def test_a_reopened_field_of_view_is_scored_on_the_pixels_it_lies_on(make_napari_viewer, qtbot, store, tmp_path):
    from napari_ihcseg._reader import get_reader
    from napari_ihcseg._widgets.score import ScoreWidget
    from napari_ihcseg._writer import write_labels
    from napari_ihcseg.data.synthetic import make_synthetic_ihc
    from napari_ihcseg.scoring import read_cells_csv

    big = make_synthetic_ihc((512, 512), seed=1)
    viewer = make_napari_viewer()
    image = viewer.add_image(big.image, name="ihc", rgb=True)
    oy, ox = 200, 100
    fov = viewer.add_labels(big.labels[oy:oy + 256, ox:ox + 256].copy(), name="nuclei", translate=(oy, ox),
                            metadata={"ihcseg": {"source": "ihc", "origin": (oy, ox), "image_layer": "ihc"}})
    [path] = write_labels(str(tmp_path / "nuclei.tif"), fov.data, {"scale": fov.scale, "translate": fov.translate})
    [(data, meta, _kind)] = get_reader(path)(path)
    reopened = viewer.add_labels(data, **meta)
    assert "origin" not in reopened.metadata.get("ihcseg", {}), "the TIFF keeps the placement, not the metadata"

    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    qtbot.addWidget(score)
    score.form.image.value = image
    results = []
    for layer in (fov, reopened):
        score.form.nuclei.value = layer
        score.start()
        cells = read_cells_csv(score.export("cells", tmp_path / f"{layer.name}.cells.csv"))
        results.append((score.summary["positive_percent"], cells[["centroid_y", "centroid_x"]].to_numpy()))
    (first, first_xy), (again, again_xy) = results
    assert again == pytest.approx(first), "the same nuclei on the same pixels score the same"
    np.testing.assert_allclose(again_xy, first_xy)
    assert again_xy[:, 0].min() >= oy and again_xy[:, 1].min() >= ox, "centroids in the full image's pixels"


# ------------------------------------------------------------ recovery from Score

def _crash_with_corrections(make_napari_viewer, ihc, store) -> int:
    """Day one: nucleus 3 deleted in the Correct panel, autosaved, never saved. Returns the edits logged."""
    from napari_ihcseg._widgets.correct import CorrectWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    viewer.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {"source": "/slides/case1.tif"}})
    correct = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    correct.delete_at((170, 170))
    assert correct.session().autosave_now() is not None
    n_edits = store.pending(correct.session().key).n_edits
    viewer.close()
    return n_edits


def _reopen(make_napari_viewer, ihc):
    viewer = make_napari_viewer()
    image = viewer.add_image(ihc, name="ihc", rgb=True)
    layer = viewer.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {"source": "/slides/case1.tif"}})
    return viewer, image, layer


def test_score_offers_to_restore_unsaved_corrections(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets.score import ScoreWidget

    _crash_with_corrections(make_napari_viewer, ihc, store)
    viewer, image, layer = _reopen(make_napari_viewer, ihc)
    asked = []
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None,
                        ask=lambda title, question: asked.append(title) or True)
    qtbot.addWidget(score)
    score.form.image.value, score.form.nuclei.value = image, layer
    score.start()
    assert asked == ["Restore corrections"]
    assert 3 not in np.unique(layer.data) and score.summary["n_nuclei"] == 2, "the restored nuclei are scored"
    score.start()
    assert len(asked) == 1, "asked once"


def test_corrections_never_offered_are_not_overwritten(make_napari_viewer, qtbot, ihc, store, errors):
    from napari_ihcseg._widgets._session import offer_restore, session_for

    n_edits = _crash_with_corrections(make_napari_viewer, ihc, store)
    viewer, _image, layer = _reopen(make_napari_viewer, ihc)
    session = session_for(layer, store=store)  # a panel that watches the layer without offering the restore
    layer.data_setitem((np.array([45]), np.array([45])), 0)
    session.sync()
    assert session.tracker.n_edits == 1
    assert session.autosave_now() is None
    session.saved()
    assert store.pending(session.key).n_edits == n_edits, "the earlier session's corrections are kept"
    assert len(errors) == 1 and "not autosaved" in errors[0]

    # Offered and declined: the user chose to go on without them.
    assert not offer_restore(session, lambda *a: False)
    assert session.autosave_now() is not None and store.pending(session.key).n_edits == 1


# ----------------------------------------------------------- stacks of labels

def test_stacks_of_labels_are_not_offered_as_nuclei(make_napari_viewer, qtbot, ihc, store, errors):
    from napari_ihcseg._widgets.correct import CorrectWidget
    from napari_ihcseg._widgets.count import CountWidget
    from napari_ihcseg._widgets.pairs import SavePairsWidget
    from napari_ihcseg._widgets.score import ScoreWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    viewer.add_labels(np.stack([nuclei_field()] * 3), name="stack")
    panels = [cls(viewer, ask=lambda *a: True, store=store) for cls in (CorrectWidget, SavePairsWidget, CountWidget)]
    panels.append(ScoreWidget(viewer, store=store, choose_path=lambda *a: None))
    for panel in panels:
        qtbot.addWidget(panel)
        assert panel.form.nuclei.choices == ()
    flat = viewer.add_labels(nuclei_field(), name="nuclei")
    viewer.add_labels(np.stack([nuclei_field()] * 2), name="another stack")
    for panel in panels:
        assert panel.form.nuclei.choices == (flat,)

    # A chosen layer whose data becomes a stack: told, not raised from the layer's events.
    panels[0].delete_at((170, 170))
    flat.data = np.stack([nuclei_field()] * 2)
    panels[0].session().sync()
    assert any("not one 2-D image of nuclei" in e for e in errors)
    score = panels[-1]
    score.form.nuclei.value = flat
    score.start()
    assert score.live is None and "2-D" in errors[-1]


# --------------------------------------------------------------- pixel size

def test_score_measures_again_when_the_pixel_size_changes(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets.score import ScoreWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    viewer.add_labels(nuclei_field(), name="nuclei")
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    qtbot.addWidget(score)
    score.start()
    assert score.summary["pixel_size_um"] is None and score.cells["area_um2"].isna().all()
    score.pixel_size.setValue(0.5)
    qtbot.waitUntil(lambda: score.summary["pixel_size_um"] == 0.5, timeout=3000)
    assert score.cells["area_um2"].tolist() == pytest.approx([1600 * 0.25] * 3)


# ------------------------------------------------------------ renamed images

def test_a_renamed_image_not_from_a_file_is_still_the_image_segmented(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets._layer_pixels import labels_in_image, pixel_digest

    viewer = make_napari_viewer()
    image = viewer.add_image(ihc, name="Synthetic Ki-67 field", rgb=True)
    other = viewer.add_image(ihc[::-1].copy(), name="other field", rgb=True)
    layer = viewer.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {
        "source": "Synthetic Ki-67 field", "image_layer": "Synthetic Ki-67 field", "image_digest": pixel_digest(ihc)}})
    image.name = "case 12 Ki-67"
    pixels, _labels, _origin = labels_in_image(image, layer)
    np.testing.assert_array_equal(pixels, ihc)
    with pytest.raises(ValueError, match="segmented on the image 'Synthetic Ki-67 field', not on 'other field'"):
        labels_in_image(other, layer)
