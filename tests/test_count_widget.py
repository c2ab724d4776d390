"""Count mode in napari: clicks that grow, classify and delete nuclei, and reach the exports and pairs.

Needs a display: run under ``xvfb-run -a env QT_QPA_PLATFORM=xcb python -m pytest tests/test_count_widget.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from gui import nuclei_field, require_display

pytestmark = pytest.mark.gui

require_display()


@pytest.fixture
def counting(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets.count import CountWidget
    from napari_ihcseg._widgets.score import ScoreWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    layer = viewer.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {"source": "/slides/case9.tif"}})
    count = CountWidget(viewer, ask=lambda *a: True, store=store)
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    qtbot.addWidget(count)
    qtbot.addWidget(score)
    count.form.image.value = viewer.layers["ihc"]
    count.start()
    score.start()
    return viewer, layer, count, score


def _drawn(qtbot, count):
    """Wait for the clicks' points (drawn just after the nuclei and the table)."""
    qtbot.waitUntil(lambda: not count.points_pending, timeout=3000)


def _table(score):
    return {score.table.item(r, 0).text(): score.table.item(r, 1).text() for r in range(score.table.rowCount())}


def test_clicks_grow_classify_and_delete_undoably_and_reach_the_live_table(counting, qtbot, tmp_path):
    viewer, layer, count, score = counting
    session = count._session()
    points = count.counts
    assert viewer.layers.selection.active is points and points.mode == "pan_zoom"

    # A click on empty tissue grows one nucleus there, one undoable edit.
    assert count.click((220, 40)) == "grow"
    new = int(layer.data[220, 40])
    assert new == 4 and 20 < (layer.data == new).sum() < 2000
    _drawn(qtbot, count)
    assert session.tracker.status(new) == "created" and len(points.data) == 1
    qtbot.waitUntil(lambda: _table(score)["Nuclei counted"] == "4", timeout=3000)
    layer.undo()
    assert not (layer.data == new).any()
    qtbot.waitUntil(lambda: _table(score)["Nuclei counted"] == "3", timeout=3000)

    # Classes by hand: they survive a threshold move and count as edited by hand.
    top = float(score.cells["dab_od_mean"].max())
    score.set_thresholds((top + 0.1, top + 0.2, top + 0.3))
    qtbot.waitUntil(lambda: _table(score)["Positive"] == "0", timeout=3000)
    count.set_action("positive")
    assert count.click((60, 60)) == "class"
    assert count.click((60, 100), modifiers={"Control"}) == "class"  # Ctrl+click: negative, whatever the key
    qtbot.waitUntil(lambda: _table(score)["Positive"] == "1", timeout=3000)
    assert _table(score)["Edited by hand"] == "2"
    score.set_thresholds((0.0, 0.01, 0.02))
    qtbot.waitUntil(lambda: _table(score)["Positive"] == "2", timeout=3000)  # 2 stays negative by hand
    assert session.tracker.class_overrides == {1: "positive", 2: "negative"}
    _drawn(qtbot, count)
    # One point per counted nucleus. The undone nucleus had no class: its point went with it (it could be
    # neither saved nor classified, a click there growing a nucleus again); classified points stay.
    assert sorted(points.features["class"]) == ["negative", "positive"]
    assert count.save_points(tmp_path / "counts.csv") is not None

    # Every per-nucleus export says whose class it is.
    cells_csv = score.export("cells", tmp_path / "case9.cells.csv")
    import pandas as pd

    table = pd.read_csv(cells_csv).set_index("label")
    assert table.loc[1, "class_source"] == "human" and table.loc[3, "class_source"] == "model"
    geo = json.loads(score.export("geojson", tmp_path / "case9.nuclei.geojson").read_text())
    sources = {f["properties"]["measurements"]["label"]: f["properties"]["class_source"] for f in geo["features"]}
    assert sources == {1: "human", 2: "human", 3: "model"}

    # W gives a nucleus back to the model; D then a click deletes a false one, undoably.
    count.set_action("model")
    count.click((60, 100))
    assert session.tracker.class_overrides == {1: "positive"}
    count.set_action("delete")
    assert count.click((170, 170)) == "delete"
    assert 3 not in layer.data and session.tracker.status(3) == "deleted"
    layer.undo()
    assert (layer.data == 3).sum() == 40 * 40


def test_keys_are_listed_bound_on_the_counts_layer_and_free_in_napari(counting):
    from napari.utils.shortcuts import default_shortcuts

    from napari_ihcseg._widgets.count import BINDINGS

    _viewer, _layer, count, _score = counting
    keys = {key.lower() for key, _, _ in BINDINGS}
    bound = {str(k).lower() for k in count.counts.keymap}
    assert keys <= bound
    # napari's Labels and Points shortcuts, and the viewer's own; those of other layer kinds do not apply.
    other_layers = ("shapes", "image_", "tracks", "surface", "vectors", "direct_mode", "activate_select_mode",
                    "vertex", "activate_add_", "orient_plane", "auto_contrast", "polygon", "paste_shape",
                    "finish_drawing", "select_all", "select_append")
    taken = {str(s).lower() for name, shortcuts in default_shortcuts.items()
             if "labels" in name or "points" in name or not any(k in name for k in other_layers)
             for s in shortcuts}
    assert {"p", "e", "f", "l", "z", "m", "2", "delete"} <= taken  # the filter keeps what it should
    assert not keys & taken, f"clash with napari's shortcuts: {keys & taken}"
    for key, text, action in BINDINGS:  # each key is listed in the widget with what it does
        assert count.buttons[action].text().lower() == text.lower()
    count.counts.keymap[next(k for k in count.counts.keymap if str(k).lower() == "h")](count.counts)
    assert count.action == "0"
    count.counts.keymap[next(k for k in count.counts.keymap if str(k).lower() == "h")](count.counts)
    assert count.action == "1"


def test_counts_save_open_and_compare_with_the_nuclei(counting, qtbot, tmp_path):
    viewer, layer, count, score = counting
    count.set_action("positive")
    count.click((60, 60))
    count.set_action("negative")
    count.click((170, 170))
    count.click((230, 230))  # a nucleus the model missed, counted negative
    _drawn(qtbot, count)
    path = count.save_points(tmp_path / "counts.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "type,x,y" and sorted(line.split(",")[0] for line in lines[1:]) == ["1", "2", "2"]

    opened = count.open_points(path)
    assert opened.name == "counts" and count.counts is opened and len(opened.data) == 3
    layer.undo()  # the grown nucleus goes again: the counts now have one the nuclei lack
    qtbot.waitUntil(lambda: _table(score)["Nuclei counted"] == "3", timeout=3000)
    result = count.compare()
    assert (result["matched"], result["missed"], result["extra"]) == (2, 1, 1)
    assert np.isfinite(result["delta_index"]) and "Δ" in count.status.text()


def test_count_edits_reach_the_training_pairs(counting, qtbot, tmp_path):
    from napari_ihcseg._widgets.pairs import SavePairsWidget
    from napari_ihcseg.pairs import load_pairs_folder

    viewer, layer, count, _score = counting
    count.set_action("positive")
    count.click((60, 60))
    count.click((230, 230))
    _drawn(qtbot, count)
    count.counts.name = "Ki67 counts case 9"  # renaming the counts layer keeps its tie to the nuclei
    pairs = SavePairsWidget(viewer, ask=lambda *a: True, store=count.store)
    qtbot.addWidget(pairs)
    pairs.folder.setText(str(tmp_path / "dataset"))
    saved = pairs.save()
    assert len(saved) == 1 and saved[0].corrected and saved[0].n_corrected == 2
    manifest = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    entry = manifest["pairs"][0]
    assert entry["points"] == f"points/{entry['id']}.csv" and entry["n_points"] == 2
    assert entry["points_region"] == [0, 0, 256, 256]
    sample = load_pairs_folder(tmp_path / "dataset")[0]
    assert sample.points.shape == (2, 2) and sample.point_classes.tolist() == [1, 1]
    assert sample.labels[230, 230] > 0, "the grown nucleus is in the mask"


def test_undoing_a_grown_nucleus_takes_its_unclassified_point_away(counting, qtbot, tmp_path):
    viewer, layer, count, score = counting
    session = count._session()
    count.set_action("grow")
    assert count.click((220, 40)) == "grow"
    count.click((60, 60), modifiers={"Shift"})
    _drawn(qtbot, count)
    assert sorted(count.counts.features["class"]) == ["", "positive"]
    layer.undo()
    session.sync()
    assert not layer.data[220, 40]
    assert list(count.counts.features["class"]) == ["positive"], "the positive count stays"
    path = count.save_points(tmp_path / "counts.csv")  # refused before: a point of no class on no nucleus
    assert path.read_text().splitlines()[1:] == ["1,60,60"]
    count.set_action("negative")
    assert count.click((220, 40)) == "grow", "the spot is empty tissue again"


@pytest.fixture
def field_of_view(make_napari_viewer, qtbot, store):
    """A 200² field of view at (row 200, col 100) of a 512² slide, nuclei 1 and 2, with Count and Score."""
    from skimage import data

    from napari_ihcseg._widgets.count import CountWidget
    from napari_ihcseg._widgets.score import ScoreWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(data.immunohistochemistry(), name="ihc", rgb=True)
    fov = np.zeros((200, 200), np.int32)
    fov[40:80, 40:80] = 1
    fov[100:140, 100:140] = 2
    layer = viewer.add_labels(fov, name="nuclei", translate=(200, 100),
                              metadata={"ihcseg": {"source": "ihc", "origin": (200, 100), "image_layer": "ihc"}})
    count = CountWidget(viewer, ask=lambda *a: True, store=store)
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    qtbot.addWidget(count)
    qtbot.addWidget(score)
    count.form.image.value = image
    score.form.image.value = image
    score.form.nuclei.value = layer
    return viewer, layer, count, score


def test_point_files_are_in_the_slides_pixels_for_a_field_of_view(field_of_view, qtbot, tmp_path):
    from napari_ihcseg.cli import main
    from napari_ihcseg.io.points import read_points

    viewer, layer, count, score = field_of_view
    count.start()
    score.start()
    count._click_at(np.array([259.5, 159.5]), {"shift"})  # world = slide pixels: nucleus 1's centre
    count._click_at(np.array([319.5, 219.5]), {"control"})  # nucleus 2
    _drawn(qtbot, count)
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    path = count.save_points(tmp_path / "truth" / "case.csv")
    points, positive = read_points(path)
    np.testing.assert_allclose(points, [[259.5, 159.5], [319.5, 219.5]])
    geo = json.loads(count.save_points(tmp_path / "case.geojson").read_text())
    corners = {f["properties"]["classification"]["name"]: f["geometry"]["coordinates"] for f in geo["features"]}
    assert corners == {"Positive": [[160.0, 260.0]], "Negative": [[220.0, 320.0]]}, "QuPath's corner frame"
    # The counts match the Score panel's cells table, in the same frame, through ihcseg evaluate --points.
    score.export("cells", tmp_path / "pred" / "case.cells.csv")
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                 "--points", "--radius", "1"]) == 0
    import pandas as pd

    row = pd.read_csv(tmp_path / "pred" / "evaluation.csv").set_index("image").loc["case"]
    assert (row["tp"], row["fp"], row["fn"]) == (2, 0, 0)

    # Opened again, the points land where they were counted, on the same nuclei.
    opened = count.open_points(tmp_path / "case.geojson")
    world = np.array([opened.data_to_world(p) for p in opened.data])
    np.testing.assert_allclose(sorted(world.tolist()), [[259.5, 159.5], [319.5, 219.5]])
    coords, positive = count.point_classes()
    assert sorted(int(layer.data[int(r), int(c)]) for r, c in coords) == [1, 2]
    (tmp_path / "far.csv").write_text("type,x,y\n1,159.5,259.5\n2,20,20\n")
    count.open_points(tmp_path / "far.csv")
    assert "1 lie outside the nuclei layer nuclei" in count.status.text()


def test_a_points_layer_of_ones_own_counts_in_place(field_of_view, qtbot):
    """An empty points layer (class column of no type) on a field of view placed otherwise than it."""
    viewer, layer, count, _score = field_of_view
    own = viewer.add_points(ndim=2, name="Points")
    count.form.counts.value = own
    count.start()
    count._click_at(np.array([259.5, 159.5]), {"shift"})
    _drawn(qtbot, count)
    assert list(own.features["class"]) == ["positive"]
    np.testing.assert_allclose(own.data_to_world(own.data[0]), (259.5, 159.5))
    count._click_at(np.array([262.0, 161.0]), {"control"})  # the same nucleus: its point changes class
    _drawn(qtbot, count)
    assert list(own.features["class"]) == ["negative"] and len(own.data) == 1
    count.set_action("delete")
    count._click_at(np.array([259.5, 159.5]), set())
    assert len(own.data) == 0 and not (layer.data == 1).any()


def test_a_mouse_click_on_the_counts_layer_counts_and_a_drag_pans(counting, qtbot):
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks
    from vispy.util.keys import SHIFT

    _viewer, layer, count, _score = counting
    points = count.counts

    def gesture(start, end=None, modifiers=()):
        def event(kind, position):
            from types import SimpleNamespace

            return ReadOnlyWrapper(SimpleNamespace(type=kind, is_dragging=kind == "mouse_move", modifiers=list(modifiers),
                                         position=position, button=1, view_direction=None, dims_displayed=[0, 1],
                                         pos=(0, 0), delta=(0, 0)))
        mouse_press_callbacks(points, event("mouse_press", start))
        if end is not None:
            mouse_move_callbacks(points, event("mouse_move", end))
        mouse_release_callbacks(points, event("mouse_release", end or start))

    gesture((220, 40), end=(120, 200))  # a drag: napari pans, nothing is counted
    assert not layer.data[220, 40] and not layer.data[120, 200]
    gesture((220, 40))  # a click on empty tissue grows a nucleus
    assert layer.data[220, 40] == 4
    gesture((60, 60), modifiers=(SHIFT,))  # Shift+click: positive
    assert count._session().tracker.class_overrides == {1: "positive"}
    _drawn(qtbot, count)
    assert len(points.data) == 2


def test_undoing_a_count_mode_delete_brings_the_hand_class_back(counting, qtbot):
    _viewer, layer, count, score = counting
    top = float(score.cells["dab_od_mean"].max())
    score.set_thresholds((top + 0.1, top + 0.2, top + 0.3))  # the model calls no nucleus positive
    qtbot.waitUntil(lambda: _table(score)["Positive"] == "0", timeout=3000)
    count.set_action("positive")
    count.click((170, 170))
    qtbot.waitUntil(lambda: _table(score)["Positive"] == "1", timeout=3000)
    count.set_action("delete")
    count.click((170, 170))
    qtbot.waitUntil(lambda: _table(score)["Nuclei counted"] == "2", timeout=3000)
    layer.undo()
    qtbot.waitUntil(lambda: _table(score)["Nuclei counted"] == "3", timeout=3000)
    qtbot.waitUntil(lambda: _table(score)["Positive"] == "1", timeout=3000)
    assert count._session().tracker.class_overrides == {int(layer.data[170, 170]): "positive"}


def test_count_mode_works_on_labels_with_huge_ids(make_napari_viewer, qtbot, ihc, store):
    """A uint32 id of 3,000,000,000 once made the panel allocate 24 GB (an array indexed by id)."""
    from napari_ihcseg._widgets.count import CountWidget

    huge = 3_000_000_000
    labels = nuclei_field().astype(np.uint32)
    labels[labels == 3] = huge
    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    layer = viewer.add_labels(labels, name="nuclei")
    count = CountWidget(viewer, ask=lambda *a: True, store=store)
    qtbot.addWidget(count)
    count.form.image.value = viewer.layers["ihc"]
    count.start()
    session = count._session()
    assert count.click((170, 170), modifiers={"Shift"}) == "class"
    assert session.tracker.class_overrides == {huge: "positive"}
    assert count.click((220, 40)) == "grow" and layer.data[220, 40] == huge + 1
    count.set_action("delete")
    assert count.click((170, 170)) == "delete" and not (layer.data == huge).any()
    assert session.tracker.status(huge) == "deleted"
    layer.undo()
    session.sync()
    assert (layer.data == huge).sum() == 40 * 40 and session.tracker.class_overrides[huge] == "positive"


def test_a_click_after_the_nuclei_layer_is_deleted_says_so(counting, monkeypatch):
    from napari_ihcseg._widgets import count as count_module

    viewer, layer, count, _score = counting
    told = []
    monkeypatch.setattr(count_module, "show_info", told.append)
    viewer.layers.remove(layer)
    assert count._run(count._click_at, (60.0, 60.0), set()) is None  # what a mouse click runs
    assert told == ["choose a nuclei (Labels) layer first"]


def texts(picker) -> list[str]:
    return [picker.native.itemText(i) for i in range(picker.native.count())]


def test_the_count_form_is_a_magicgui_form_that_follows_the_viewer(make_napari_viewer, qtbot, ihc, store):
    """Its layer pickers list the right layers, docked or not, and follow additions, renames and removals."""
    from magicgui.widgets import Container

    from napari_ihcseg._widgets._common import DISPLAY_ONLY
    from napari_ihcseg._widgets.count import CountWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    viewer.add_image(np.zeros((8, 8)), name="heat map", metadata={DISPLAY_ONLY: True})
    first = viewer.add_labels(nuclei_field(), name="first")
    count = CountWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(count)
    form = count.form
    assert isinstance(form, Container) and [w.name for w in form] == ["nuclei", "image", "counts", "radius"]
    assert count.layer is first and form.image.value is None and count.counts is None
    assert texts(form.image) == ["(none)", "ihc"], "a layer drawn only to show a result is never offered"

    second = viewer.add_labels(nuclei_field(), name="second")
    assert count.layer is first, "a new layer leaves the choice alone"
    assert second in form.nuclei.choices
    second.name = "renamed"
    assert texts(form.nuclei) == ["first", "renamed"]
    viewer.layers.remove(first)
    assert count.layer is second, "the chosen layer gone, the newest one is chosen"

    form.image.value = viewer.layers["ihc"]
    points = count.start()
    assert form.counts.value is points and count.counts is points
    form.radius.value = 3.0
    count.set_action("positive")
    count.click((60, 60))
    qtbot.waitUntil(lambda: not count.points_pending, timeout=3000)
    points.data = points.data + 5.0  # 7 px from the nucleus' centre of mass: beyond a 3 px radius
    assert count.compare()["matched"] == 0
    form.radius.value = 30.0
    assert count.compare()["matched"] == 1
    viewer.layers.remove(viewer.layers["ihc"])
    assert form.image.value is None


@pytest.mark.parametrize("with_image", [True, False])
def test_a_reopened_field_of_view_counts_in_the_slides_pixels_as_score_does(field_of_view, qtbot, tmp_path,
                                                                           with_image):
    """A field of view saved and opened again keeps its place as scale and translate only (no metadata
    origin): its point files still use the slide's pixels, the frame of the Score panel's cells table."""
    from napari_ihcseg._reader import get_reader
    from napari_ihcseg._writer import write_labels
    from napari_ihcseg.io.points import read_points

    viewer, fov, count, score = field_of_view
    [path] = write_labels(str(tmp_path / "nuclei.tif"), fov.data, {"scale": fov.scale, "translate": fov.translate})
    [(data, meta, _kind)] = get_reader(path)(path)
    reopened = viewer.add_labels(data, **meta)
    assert "origin" not in reopened.metadata.get("ihcseg", {})
    count.form.nuclei.value = reopened
    if not with_image:
        count.form.image.value = None
    count.start()
    count._click_at(np.array([259.5, 159.5]), {"shift"})  # world = slide pixels: nucleus 1's centre
    _drawn(qtbot, count)
    points, positive = read_points(count.save_points(tmp_path / "case.csv"))
    np.testing.assert_allclose(points, [[259.5, 159.5]])
    opened = count.open_points(tmp_path / "case.csv")
    np.testing.assert_allclose(opened.data_to_world(opened.data[0]), (259.5, 159.5))


def test_counted_points_survive_a_crash_with_the_corrections(counting, make_napari_viewer, qtbot, ihc, store):
    """The autosave keeps the counted points beside the labels; restored, count mode shows them again."""
    from napari_ihcseg._widgets.count import CountWidget

    viewer, layer, count, _score = counting
    count.set_action("positive")
    count.click((60, 60))
    count.set_action("negative")
    count.click((230, 230))  # grown, counted negative
    _drawn(qtbot, count)
    before = sorted(zip(np.round(count.counts.data).tolist(), count.counts.features["class"]))
    assert count.session_of(layer).autosave_now() is not None

    # napari is gone; the same slide opened again, and count mode asked to restore.
    questions: list[str] = []
    again = make_napari_viewer()
    again.add_image(ihc, name="ihc", rgb=True)
    reopened = again.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {"source": "/slides/case9.tif"}})
    restored = CountWidget(again, ask=lambda title, text: questions.append(text) or True, store=store)
    qtbot.addWidget(restored)
    assert "2 counted point(s)" in questions[0]
    assert reopened.data[230, 230] > 0, "the grown nucleus is back"
    points = restored.start()
    assert sorted(zip(np.round(points.data).tolist(), points.features["class"])) == before
    _coords, positive = restored.point_classes()
    assert sorted(positive.tolist()) == [False, True]

    # Restored, not yet shown, then another image put in the layer: its recovery file gets none of them.
    session = restored.session_of(reopened)
    session.restored_points = store.points(session.key)
    reopened.data = np.zeros((128, 128), np.int32)
    assert session.restored_points is None


def test_counting_with_the_models_class_is_autosaved_and_restored_points_outlive_other_panels(
        counting, make_napari_viewer, qtbot, ihc, store):
    """Clicks that keep the model's class change no pixel and no class, yet they are counts: autosaved. Points
    restored by another panel stay in the recovery file until count mode shows them."""
    from napari_ihcseg._widgets.correct import CorrectWidget

    viewer, layer, count, _score = counting
    count.set_action("model")
    count.click((60, 60))
    count.click((170, 170))
    _drawn(qtbot, count)
    assert len(count.counts.data) == 2
    session = count.session_of(layer)
    assert session.autosave_now() is not None and store.points(session.key)[1] == ["", ""]

    again = make_napari_viewer()
    again.add_image(ihc, name="ihc", rgb=True)
    reopened = again.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {"source": "/slides/case9.tif"}})
    correct = CorrectWidget(again, ask=lambda *a: True, store=store)
    qtbot.addWidget(correct)
    correct.form.nuclei.value = reopened
    restored = correct.session()
    assert restored.restored_points is not None
    correct.delete_at((60, 60))
    assert restored.autosave_now() is not None
    assert len(store.points(restored.key)[0]) == 2, "the restored counts are still in the recovery file"
