"""The napari widgets, driven as a pathologist would: segment, correct, score, save pairs.

Needs a display: run under ``xvfb-run -a env QT_QPA_PLATFORM=xcb python -m pytest tests/test_widgets.py``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from gui import nuclei_field, require_display, start_short_training

pytestmark = pytest.mark.gui

require_display()


def wait_worker(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


# ----------------------------------------------------------------- segment

def test_one_click_segmentation_adds_the_nuclei_layer(make_napari_viewer, qtbot, ihc, store, tmp_path):
    from napari_ihcseg._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc[:128, :128], name="ihc", rgb=True)  # one tile keeps the untrained model quick
    widget = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=tmp_path / "catalog.json")
    qtbot.addWidget(widget)
    widget.model.setCurrentIndex(widget.model.findData("harunet-lite"))
    widget.tile.setValue(128)
    widget.overlap.setValue(32)
    widget.keep_probs.setChecked(True)
    widget.run()
    assert widget.running and not widget.run_button.isEnabled(), "the run happens in the background"
    wait_worker(qtbot, widget)
    assert "nuclei" in viewer.layers, widget.status.text()
    layer = viewer.layers["nuclei"]
    assert layer.data.shape == (128, 128) and layer.data.dtype == np.int32
    assert widget.device_used.text().startswith("cpu")
    assert {"nucleus probability", "contour probability"} <= {lyr.name for lyr in viewer.layers}
    meta = layer.metadata["ihcseg"]
    assert meta["model"] == "harunet-lite" and meta["probabilities"][0].shape == (128, 128)
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()

    # Another image of the same name and size (not from a file) never shares the recovery file of these nuclei.
    from napari_ihcseg._widgets._session import layer_recovery_key

    viewer.layers.remove("ihc")
    viewer.add_image(ihc[128:256, :128], name="ihc", rgb=True)
    first = layer_recovery_key(layer)
    widget.run()
    wait_worker(qtbot, widget)
    [second] = [lyr for lyr in viewer.layers if lyr.name.startswith("nuclei") and lyr is not layer]
    assert second.metadata["ihcseg"]["image_digest"] != meta["image_digest"]
    assert layer_recovery_key(second) != first


def test_cancel_stops_the_run_without_adding_a_layer(make_napari_viewer, qtbot, ihc, store, tmp_path):
    from napari_ihcseg._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.tile(ihc, (2, 2, 1)), name="ihc", rgb=True)
    widget = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=tmp_path / "catalog.json")
    qtbot.addWidget(widget)
    widget.model.setCurrentIndex(widget.model.findData("harunet-lite"))
    widget.tile.setValue(128)
    widget.run()
    widget.cancel()
    wait_worker(qtbot, widget)
    assert widget.status.text() == "Cancelled."
    assert "nuclei" not in viewer.layers


@pytest.mark.slow
def test_multiscale_field_of_view_and_whole_slide(make_napari_viewer, qtbot, ihc, store, tmp_path):
    from napari_ihcseg._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    slide = np.tile(ihc[:96, :96], (2, 2, 1))  # 192 x 192, two levels
    image = viewer.add_image([slide, slide[::2, ::2]], name="slide", rgb=True, multiscale=True)
    widget = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=tmp_path / "catalog.json",
                           choose_path=lambda title, suggested, f: str(tmp_path / "slide.nuclei.zarr"))
    qtbot.addWidget(widget)
    widget.model.setCurrentIndex(widget.model.findData("r2unet-lite"))
    widget.tile.setValue(192)  # one tile per run keeps the untrained model quick
    widget.overlap.setValue(32)
    assert widget.scope.currentData() == "view", "a slide opens on the field-of-view choice"

    viewer.scene.camera.center = (140, 150)
    viewer.scene.camera.zoom = viewer.canvas.size[0] / 80  # about 80 pixels of the slide on screen
    widget.run()
    wait_worker(qtbot, widget)
    fov = viewer.layers["nuclei"]
    y0, x0 = fov.metadata["ihcseg"]["origin"]
    assert 0 < y0 < 140 < y0 + fov.data.shape[0] and 0 < x0 < 150 < x0 + fov.data.shape[1]
    assert fov.data.shape[0] < 192 and np.allclose(fov.translate[-2:], (y0, x0))

    widget.scope.setCurrentIndex(widget.scope.findData("whole"))
    widget.run()
    wait_worker(qtbot, widget)
    whole = viewer.layers["nuclei [1]"]
    assert whole.data.shape == (192, 192) and whole.data.dtype == np.uint32, widget.status.text()
    assert (tmp_path / "slide.nuclei.zarr").exists()
    assert image.multiscale


def test_segment_scale_keeps_the_image_shape_and_is_refused_for_whole_slides(make_napari_viewer, qtbot, ihc, store,
                                                                               tmp_path):
    from napari_ihcseg._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc[:64, :64], name="ihc", rgb=True)
    widget = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=tmp_path / "catalog.json",
                           choose_path=lambda title, suggested, f: str(tmp_path / "slide.nuclei.zarr"))
    qtbot.addWidget(widget)
    assert widget.image_scale.value() == 1.0 and "magnification" in widget.image_scale.toolTip()
    widget.model.setCurrentIndex(widget.model.findData("harunet-lite"))
    widget.tile.setValue(128)  # the 64-pixel field scaled by 2 is one tile
    widget.overlap.setValue(32)
    widget.image_scale.setValue(2.0)
    assert widget.config().scale == 2.0
    widget.run()
    wait_worker(qtbot, widget)
    assert viewer.layers["nuclei"].data.shape == (64, 64), widget.status.text()

    slide = np.tile(ihc[:96, :96], (2, 2, 1))
    viewer.add_image([slide, slide[::2, ::2]], name="slide", rgb=True, multiscale=True)
    widget.form.image.value = viewer.layers["slide"]
    widget.scope.setCurrentIndex(widget.scope.findData("whole"))
    widget.run()
    assert not widget.running and "Scale" in widget.status.text()
    assert not (tmp_path / "slide.nuclei.zarr").exists()


def test_segment_tta_box_reaches_the_run_and_the_layer(make_napari_viewer, qtbot, ihc, store, tmp_path,
                                                       monkeypatch):
    from napari_ihcseg._widgets.segment import SegmentWidget
    from napari_ihcseg.inference import tiled

    seen = []
    original = tiled.predict

    def spy(image, model, config=None, **kwargs):
        fields = {k: v for k, v in kwargs.items() if k not in ("progress", "cancel", "keep_tile")}
        seen.append((config or tiled.InferenceConfig()).replace(**fields).tta)
        return original(image, model, config, **kwargs)

    monkeypatch.setattr(tiled, "predict", spy)  # what segment_image, which the widget runs, calls

    viewer = make_napari_viewer()
    viewer.add_image(ihc[:64, :64], name="ihc", rgb=True)
    widget = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=tmp_path / "catalog.json")
    qtbot.addWidget(widget)
    assert not widget.tta.isChecked() and not widget.config().tta
    widget.model.setCurrentIndex(widget.model.findData("harunet-lite"))
    widget.tile.setValue(64)
    widget.overlap.setValue(16)
    widget.tta.setChecked(True)
    assert widget.config().tta
    widget.run()
    wait_worker(qtbot, widget)
    layer = viewer.layers["nuclei"]
    assert layer.data.shape == (64, 64), widget.status.text()
    assert seen == [True], "the box must reach the prediction"
    assert layer.metadata["ihcseg"]["tta"] is True


def test_bad_input_is_reported_not_raised(make_napari_viewer, qtbot, store, tmp_path):
    from napari_ihcseg._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64, 5), np.uint8), name="odd", rgb=False)
    widget = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=tmp_path / "catalog.json")
    qtbot.addWidget(widget)
    widget.run()
    assert not widget.running
    assert "odd" in widget.status.text() and "RGB" in widget.status.text()


# ----------------------------------------------------------------- correct

def test_corrections_through_the_helpers_are_tracked_and_undoable(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets.correct import CorrectWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    layer = viewer.add_labels(nuclei_field(), name="nuclei")
    widget = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(widget)
    assert widget.layer is layer

    widget.merge_at((60, 60))  # first press marks nucleus 1
    widget.merge_at((60, 100))  # second press merges 2 into it
    assert set(np.unique(layer.data)) == {0, 1, 3}
    widget.split_with_line([(30, 80), (90, 80)])
    assert set(np.unique(layer.data)) == {0, 1, 3, 4} and layer.data[60, 100] == 4, "the new part gets a new id"
    widget.delete_at((170, 170))
    assert 3 not in layer.data
    assert widget.new_nucleus() == 5 and layer.selected_label == 5 and layer.mode == "paint"

    session = widget.session()
    assert [r.action for r in session.tracker.log] == ["merge", "split", "delete"]
    assert session.tracker.deleted == {3, 2} and session.tracker.edited == {1, 4}
    assert "3 edit(s)" in widget.status.text()

    layer.undo()  # napari's undo reverts the delete, and the log follows
    qtbot.waitUntil(lambda: session.tracker.status(3) == "changed", timeout=3000)
    layer.paint((220, 30), 5)  # napari's brush
    qtbot.waitUntil(lambda: 5 in session.tracker.created, timeout=3000)


def test_key_bindings_are_on_the_layer(make_napari_viewer, qtbot, store):
    from napari_ihcseg._widgets.correct import BINDINGS, CorrectWidget

    viewer = make_napari_viewer()
    layer = viewer.add_labels(nuclei_field(), name="nuclei")
    widget = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(widget)
    bound = {str(k).lower() for k in layer.keymap}
    assert {key.lower() for key, _, _ in BINDINGS} <= bound
    viewer.cursor.position = (170, 170)
    layer.keymap[next(k for k in layer.keymap if str(k).lower() == "d")](layer)
    assert 3 not in layer.data, "D deletes the nucleus under the cursor"

    # Draw a cut line across nucleus 2, press K on the cut-line layer.
    widget.start_cut_line()
    cuts = viewer.layers["cuts"]
    assert viewer.layers.selection.active is cuts and cuts.mode == "add_line"
    cuts.add_lines(np.array([[35, 100], [85, 100]]))
    cuts.keymap[next(k for k in cuts.keymap if str(k).lower() == "k")](cuts)
    assert layer.data[60, 90] != layer.data[60, 110] and {layer.data[60, 90], layer.data[60, 110]} == {2, 3}  # 3 was freed by D
    assert len(cuts.data) == 0, "the used line is removed"
    assert viewer.layers.selection.active is layer


def test_split_by_instance_step_uses_kept_probabilities(make_napari_viewer, qtbot, store):
    from napari_ihcseg._widgets.correct import CorrectWidget
    from napari_ihcseg.data.targets import labels_to_contour

    viewer = make_napari_viewer()
    truth = nuclei_field()
    merged = np.where(truth == 2, 1, truth).astype(np.int32)
    probs = ((truth > 0) * 0.9).astype(np.float32), labels_to_contour(truth, width=2) * np.float32(0.8)
    layer = viewer.add_labels(merged, name="nuclei", metadata={"ihcseg": {"probabilities": probs}})
    widget = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(widget)
    widget.split_at((60, 60))
    assert layer.data[60, 60] != layer.data[60, 100] and layer.data[60, 100] > 0


def test_split_looks_below_the_contour_threshold_the_layer_was_segmented_with(make_napari_viewer, store):
    """Nuclei merged at a tuned contour threshold of 0.3 (boundary at 0.25) still split."""
    from napari_ihcseg._widgets.correct import CorrectWidget
    from napari_ihcseg.data.targets import labels_to_contour

    viewer = make_napari_viewer()
    truth = nuclei_field()
    merged = np.where(truth == 2, 1, truth).astype(np.int32)
    probs = ((truth > 0) * 0.9).astype(np.float32), labels_to_contour(truth, width=2) * np.float32(0.25)
    used = {"mask_threshold": 0.4, "contour_threshold": 0.3, "min_size": 100}
    layer = viewer.add_labels(merged, name="nuclei", metadata={"ihcseg": {"probabilities": probs, "instances": used}})
    widget = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    assert widget.form.split_contour.value == pytest.approx(0.15)
    # A part of a split keeps at least 16 px, however large the layer's min_size: a 30 px piece survives.
    small = np.zeros((64, 64), np.int32)
    small[10:16, 10:20] = 1  # two 6x5 halves, merged
    halves = np.zeros((64, 64), np.int32)
    halves[10:16, 10:15], halves[10:16, 15:20] = 1, 2
    small_probs = ((halves > 0) * 0.9).astype(np.float32), labels_to_contour(halves, width=1) * np.float32(0.25)
    widget.form.split_contour.value = 0.2  # the user's value stays while the target stays
    tiny = viewer.add_labels(small, name="tiny",
                             metadata={"ihcseg": {"probabilities": small_probs, "instances": used}})
    assert widget.layer is layer and widget.form.split_contour.value == pytest.approx(0.2)
    widget.split_at((60, 60))
    assert layer.data[60, 60] != layer.data[60, 100] and layer.data[60, 100] > 0
    widget.form.nuclei.value = tiny
    assert widget.layer is tiny
    widget.split_at((12, 11))
    assert len(np.unique(tiny.data[tiny.data > 0])) == 2


# ------------------------------------------------------------------- pairs

def test_save_pairs_refuses_to_overwrite_and_restores_after_reopening(make_napari_viewer, qtbot, ihc, store,
                                                                       tmp_path):
    import tifffile

    from napari_ihcseg._widgets.correct import CorrectWidget
    from napari_ihcseg._widgets.pairs import SavePairsWidget

    dataset = tmp_path / "dataset"
    answers = []
    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    viewer.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {"source": "/slides/case7.tif",
                                                                          "model": "harunet-lite"}})
    correct = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(correct)
    correct.delete_at((170, 170))
    session = correct.session()
    qtbot.waitUntil(lambda: store.pending(session.key) is not None, timeout=10_000)  # autosaved

    # The window closes with unsaved corrections; the same image is opened again.
    viewer.close()
    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    layer2 = viewer.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {"source": "/slides/case7.tif",
                                                                                   "model": "harunet-lite"}})
    widget = SavePairsWidget(viewer, ask=lambda title, q: answers.append(title) or True, store=store)
    qtbot.addWidget(widget)
    widget.form.nuclei.value = layer2
    assert answers == ["Restore corrections"]
    assert 3 not in layer2.data, "the corrections came back"

    widget.folder.setText(str(dataset))
    saved = widget.save()
    assert [p.id for p in saved] == ["case7"] and saved[0].corrected
    assert "named case7 (" in widget.status.text()
    mask = tifffile.imread(dataset / "masks" / "case7.tif")
    assert mask.dtype == np.uint32 and mask.max() == 2
    assert store.pending(session.key) is None, "a successful save clears the recovery file"

    # Saving again: the user is asked, says no, nothing changes.
    before = (dataset / "masks" / "case7.tif").read_bytes()
    widget.ask = lambda title, q: answers.append(title) or False
    layer2.data = nuclei_field()
    assert widget.save() == []
    assert answers[-1] == "Replace training pairs?"
    assert (dataset / "masks" / "case7.tif").read_bytes() == before
    assert "Nothing saved" in widget.status.text()
    widget.ask = lambda title, q: True
    assert len(widget.save()) == 1
    assert tifffile.imread(dataset / "masks" / "case7.tif").max() == 3


def test_undoing_every_edit_drops_the_recovery_file_but_not_restored_work(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets.correct import CorrectWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    meta = {"ihcseg": {"source": "/slides/case9.tif"}}
    layer = viewer.add_labels(nuclei_field(), name="nuclei", metadata=meta)
    correct = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(correct)
    correct.delete_at((170, 170))
    session = correct.session()
    assert session.autosave_now() is not None and store.pending(session.key) is not None
    layer.undo()
    assert session.autosave_now() is None
    assert store.pending(session.key) is None, "nothing is left to recover: no restore offered next time"
    correct.delete_at((170, 170))
    session.autosave()
    qtbot.waitUntil(lambda: store.pending(session.key) is not None, timeout=10_000)
    viewer.close()

    # Restored corrections are unsaved work: they keep their recovery file, even after an edit and its undo.
    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    layer = viewer.add_labels(nuclei_field(), name="nuclei", metadata=meta)
    correct = CorrectWidget(viewer, ask=lambda *a: True, store=store)
    qtbot.addWidget(correct)
    correct.form.nuclei.value = layer
    session = correct.session()
    assert 3 not in layer.data, "restored"
    correct.delete_at((60, 60))
    layer.undo()
    assert session.autosave_now() is not None and store.pending(session.key) is not None


def test_two_fields_of_view_of_one_slide_keep_their_corrections_apart(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets.correct import CorrectWidget

    big = np.tile(ihc, (2, 2, 1))
    viewer = make_napari_viewer()
    viewer.add_image(big, name="ihc", rgb=True)
    viewer.add_labels(nuclei_field(), name="nuclei", metadata={"ihcseg": {"source": "/slides/s.svs", "origin": (0, 0)}})
    correct = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(correct)
    correct.delete_at((170, 170))
    correct.session().autosave_now()
    viewer.close()

    # The other field of the slide, the same size, segmented elsewhere: nothing of the first is offered there.
    viewer = make_napari_viewer()
    viewer.add_image(big, name="ihc", rgb=True)
    other = np.zeros(nuclei_field().shape, np.int32)
    other[10:30, 10:30] = 1
    field_b = viewer.add_labels(other, name="nuclei", translate=(256, 256),
                                metadata={"ihcseg": {"source": "/slides/s.svs", "origin": (256, 256)}})
    asked = []
    again = CorrectWidget(viewer, ask=lambda title, q: asked.append(title) or True, store=store)
    qtbot.addWidget(again)
    assert not asked and np.unique(field_b.data).tolist() == [0, 1]


def test_nuclei_are_never_saved_over_another_images_pixels(make_napari_viewer, qtbot, ihc, store, tmp_path):
    from napari_ihcseg._widgets.pairs import SavePairsWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="slideA", rgb=True)
    viewer.add_image(ihc[::-1].copy(), name="slideB", rgb=True)
    layer = viewer.add_labels(nuclei_field(), name="nuclei",
                              metadata={"ihcseg": {"source": "slideA", "image_layer": "slideA"}})
    widget = SavePairsWidget(viewer, ask=lambda *a: True, store=store)
    qtbot.addWidget(widget)
    widget.form.nuclei.value = layer
    widget.folder.setText(str(tmp_path / "dataset"))
    viewer.layers.remove("slideA")
    widget.form.image.value = viewer.layers["slideB"]
    with pytest.raises(ValueError, match="segmented on the image 'slideA', not on 'slideB'"):
        widget._save()
    assert not (tmp_path / "dataset" / "images").exists()


def test_save_pairs_needs_an_absolute_folder(make_napari_viewer, qtbot, ihc, store):
    from napari_ihcseg._widgets.pairs import SavePairsWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    viewer.add_labels(nuclei_field(), name="nuclei")
    widget = SavePairsWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(widget)
    widget.folder.setText("relative/data")
    assert widget.save() == []
    assert not os.path.exists("relative/data")


def test_save_pairs_tiles_from_a_region(make_napari_viewer, qtbot, ihc, store, tmp_path):
    from napari_ihcseg._widgets.pairs import SavePairsWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.tile(ihc, (3, 3, 1)), name="ihc", rgb=True)
    labels = np.zeros((768, 768), np.int32)
    labels[100:120, 100:120] = 1
    labels[600:620, 600:620] = 2
    viewer.add_labels(labels, name="nuclei")
    viewer.add_shapes([np.array([[0, 0], [0, 300], [300, 300], [300, 0]])], shape_type="rectangle", name="roi")
    widget = SavePairsWidget(viewer, ask=lambda *a: False, store=store)
    qtbot.addWidget(widget)
    widget.folder.setText(str(tmp_path / "ds"))
    widget.mode.setCurrentIndex(widget.mode.findData("tiles"))
    widget.form.region.value = viewer.layers["roi"]
    widget.stride.setValue(128)
    saved = widget.save()
    assert saved and all(p.region[2] <= 301 and p.region[3] <= 301 for p in saved), [p.region for p in saved]
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["tile_size"] == 256 and meta["stride"] == 128 and meta["source"] is None


# ------------------------------------------------------------------- score

def test_score_panel_scores_nuclei_numbered_in_the_billions(make_napari_viewer, qtbot, ihc, store, monkeypatch):
    """Without numba napari cannot colour ids above 65536 by class: the scores still come, uncoloured."""
    import importlib.util

    from napari_ihcseg._widgets import score as score_module
    from napari_ihcseg._widgets.score import ScoreWidget

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numba" else real(name, *a))
    told = []
    monkeypatch.setattr(score_module, "show_info", told.append)
    labels = nuclei_field().astype(np.uint32)
    labels[labels == 3] = 3_000_000_000
    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    layer = viewer.add_labels(labels, name="nuclei")
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    qtbot.addWidget(score)
    score.start()
    assert len(score.cells) == 3 and 3_000_000_000 in set(score.cells["label"])
    assert type(layer.colormap).__name__ != "DirectLabelColormap"
    assert any("not coloured by class" in m for m in told)


def test_live_table_follows_edits_and_thresholds(make_napari_viewer, qtbot, ihc, store, tmp_path):
    from napari_ihcseg._widgets.correct import CorrectWidget
    from napari_ihcseg._widgets.score import ScoreWidget

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    layer = viewer.add_labels(nuclei_field(), name="nuclei")
    correct = CorrectWidget(viewer, ask=lambda *a: False, store=store)
    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    qtbot.addWidget(correct)
    qtbot.addWidget(score)
    score.start()

    def table():
        return {score.table.item(r, 0).text(): score.table.item(r, 1).text() for r in range(score.table.rowCount())}

    assert table()["Nuclei counted"] == "3"
    correct.delete_at((170, 170))
    qtbot.waitUntil(lambda: table()["Nuclei counted"] == "2", timeout=3000)
    assert table()["Edited by hand"] == "0"  # the deleted nucleus is gone; the others are untouched
    correct.split_with_line([(30, 60), (90, 60)])
    qtbot.waitUntil(lambda: table()["Nuclei counted"] == "3", timeout=3000)
    assert table()["Edited by hand"] == "2"

    # Thresholds: everything is positive at 0, nothing above the largest DAB OD.
    score.histogram.drag_to(0, 0.0)
    qtbot.waitUntil(lambda: table()["Positive"] == "3", timeout=3000)
    top = float(score.cells["dab_od_mean"].max())
    score.set_thresholds((top + 0.1, top + 0.2, top + 0.3))
    qtbot.waitUntil(lambda: table()["Positive"] == "0", timeout=3000)
    assert score.histogram.thresholds[0] == pytest.approx(top + 0.1, abs=1e-3)

    # The layer is coloured by class through its features.
    assert set(layer.features["index"]) == {1, 2, 3}
    assert type(layer.colormap).__name__ == "DirectLabelColormap"


def test_region_of_interest_and_exports(make_napari_viewer, qtbot, ihc, store, tmp_path):
    from napari_ihcseg._widgets.score import ScoreWidget
    from napari_ihcseg.scoring import read_cells_csv, read_geojson, read_summary_json

    viewer = make_napari_viewer()
    viewer.add_image(ihc, name="ihc", rgb=True)
    viewer.add_labels(nuclei_field(), name="nuclei")
    score = ScoreWidget(viewer, store=store, choose_path=lambda title, suggested, f: str(tmp_path / suggested.split("/")[-1]))
    qtbot.addWidget(score)
    score.start()
    viewer.add_shapes([np.array([[0, 0], [0, 140], [140, 140], [140, 0]])], shape_type="polygon", name="tumour")
    score.form.roi.value = viewer.layers["tumour"]
    qtbot.waitUntil(lambda: score.summary["n_nuclei"] == 2, timeout=3000)

    paths = {kind: score.export(kind) for kind in ("cells", "summary_json", "summary_csv", "geojson")}
    assert all(p is not None and p.exists() for p in paths.values())
    cells = read_cells_csv(paths["cells"])
    assert len(cells) == 3 and cells["included"].sum() == 2
    assert "edit_status" in cells, "the table says which nuclei a human changed"
    assert read_summary_json(paths["summary_json"])["n_nuclei"] == 2
    assert len(read_geojson(paths["geojson"])) == 2
    assert paths["summary_csv"].read_text().splitlines()[0].startswith("n_nuclei,")

    score.pixel_size.setValue(250.0)  # nanometres typed as micrometres: held at the largest microscope pixel
    assert score.pixel_size.value() == 20.0 and score.config().pixel_size_um == 20.0


# ------------------------------------------------------------------- train

@pytest.mark.slow
def _segment_and_train(viewer, store, tmp_path, seeds):
    """A pairs folder of synthetic fields, and the Segment and Train widgets docked on one viewer."""
    from napari_ihcseg._widgets.segment import SegmentWidget
    from napari_ihcseg._widgets.train import TrainWidget
    from napari_ihcseg.pairs import save_pairs
    from napari_ihcseg.data.synthetic import make_synthetic_ihc

    dataset = tmp_path / "pairs"
    for seed in seeds:
        field = make_synthetic_ihc((128, 128), seed=seed)
        save_pairs(dataset, field.image, field.labels, name=f"field{seed}", stain="ki67")
    catalog = tmp_path / "catalog.json"
    segment = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=catalog)
    trainer = TrainWidget(viewer, catalog=catalog)
    viewer.window.add_dock_widget(segment, name="Segment")
    viewer.window.add_dock_widget(trainer, name="Train")
    trainer.dataset.setText(str(dataset))
    return dataset, segment, trainer


def test_train_widget_fine_tunes_and_the_model_appears_in_segment(make_napari_viewer, qtbot, store, tmp_path):
    dataset, segment, trainer = _segment_and_train(make_napari_viewer(), store, tmp_path, seeds=(0, 1, 2))
    start_short_training(trainer, max_steps=2)
    assert trainer.running
    qtbot.waitUntil(lambda: not trainer.running, timeout=180_000)
    result = trainer.result
    assert result is not None, trainer.status.text()
    assert result.best_checkpoint is not None and (result.best_checkpoint / "weights.safetensors").exists()
    assert result.out.parent == dataset / "models", "the run is written inside the chosen dataset folder"
    assert len(trainer.plot.losses) == result.global_step >= 1, "one loss point per step"
    assert segment.model.findData(str(result.best_checkpoint.resolve())) >= 0, "the new model is offered at once"
    assert result.instance_params is not None and "Instance settings tuned" in trainer.status.text()
    from napari_ihcseg.cli._train import FINETUNE_LR, SCRATCH_LR

    assert json.loads((result.out / "run.json").read_text())["config"]["lr"] == SCRATCH_LR
    from napari_ihcseg.models import shipped_checkpoints

    trainer.base.setCurrentIndex(trainer.base.findData(str(shipped_checkpoints()["r2unet-lite-ihc"])))
    assert trainer.config().lr == FINETUNE_LR, "the command line's rate, so `ihcseg train --resume --out` goes on"


def test_segment_widget_shows_the_settings_tuned_for_the_chosen_model(make_napari_viewer, store, tmp_path):
    from napari_ihcseg._widgets.segment import SegmentWidget
    from napari_ihcseg.models import build_model, save_checkpoint

    folder = save_checkpoint(build_model("r2unet-lite"), tmp_path / "tuned",
                             instances={"mask_threshold": 0.4, "contour_threshold": 0.3, "min_size": 100})
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer, ask=lambda *a: False, store=store, catalog=tmp_path / "catalog.json")
    widget.model.setCurrentIndex(widget.model.findData("harunet-lite"))
    assert (widget.mask_threshold.value(), widget.contour_threshold.value(), widget.min_size.value()) == (0.5, 0.5, 16)
    widget.add_checkpoint(folder)
    assert (widget.mask_threshold.value(), widget.contour_threshold.value(), widget.min_size.value()) == (0.4, 0.3, 100)
    assert widget.config().instance_options()["min_size"] == 100
    widget.image_scale.setValue(2.0)  # the model's min_size counts the pixels it sees: a quarter at scale 2
    assert widget.min_size.value() == 25
    widget.image_scale.setValue(1.0)
    widget.min_size.setValue(40)  # the user's own value survives the list being refreshed (each show)
    widget.refresh_models()
    widget.image_scale.setValue(2.0)
    assert widget.min_size.value() == 40
    widget.model.setCurrentIndex(widget.model.findData("harunet-lite"))  # another model: its own value again
    assert widget.min_size.value() == 4  # the default 16 model pixels, at scale 2


def test_the_relay_answers_a_worker_thread_on_the_gui_thread(qtbot):
    import threading

    from napari_ihcseg._widgets._common import Relay

    heard = []
    relay = Relay(lambda *args: heard.append((args, threading.current_thread() is threading.main_thread())))
    worker = threading.Thread(target=lambda: [relay(done, 3) for done in (1, 2, 3)])
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: len(heard) == 3, timeout=3000)
    assert heard == [((1, 3), True), ((2, 3), True), ((3, 3), True)], "in order, on the GUI thread"


def test_a_model_added_to_the_catalog_is_listed_by_every_segment_widget_at_once(make_napari_viewer, store,
                                                                                 tmp_path):
    """Not only a Segment widget docked beside the Train widget: one in another window, and only for its catalog."""
    from napari_ihcseg._widgets._common import remember_checkpoint
    from napari_ihcseg._widgets.segment import SegmentWidget
    from napari_ihcseg.models import build_model, save_checkpoint

    folder = str(save_checkpoint(build_model("r2unet-lite"), tmp_path / "new").resolve())
    catalog = tmp_path / "catalog.json"
    mine = SegmentWidget(make_napari_viewer(), ask=lambda *a: False, store=store, catalog=catalog)
    other = SegmentWidget(make_napari_viewer(), ask=lambda *a: False, store=store, catalog=tmp_path / "other.json")
    assert mine.model.findData(folder) < 0
    remember_checkpoint(folder, catalog)
    assert mine.model.findData(folder) >= 0
    assert other.model.findData(folder) < 0, "another catalog lists other models"


def test_train_widget_tunes_a_copy_of_the_model_on_the_pairs(make_napari_viewer, qtbot, store, tmp_path):
    from napari_ihcseg.models import read_checkpoint_config, shipped_checkpoints

    dataset, segment, trainer = _segment_and_train(make_napari_viewer(), store, tmp_path, seeds=(0, 1))
    name, shipped = next(iter(shipped_checkpoints().items()))
    before = (shipped / "config.json").read_bytes()
    trainer.base.setCurrentIndex(trainer.base.findData(str(shipped)))
    trainer.tune()
    assert trainer.running and not trainer.start_button.isEnabled()
    qtbot.waitUntil(lambda: not trainer.running, timeout=120_000)
    [copy] = (dataset / "models").iterdir()
    assert copy.name.startswith(f"{name}-tuned-") and "Done" in trainer.status.text()
    assert read_checkpoint_config(copy)["instances"] == trainer.tuned.params
    assert (shipped / "config.json").read_bytes() == before, "the shipped model is never changed"
    assert segment.model.findData(str(copy.resolve())) >= 0, "the tuned model is offered at once"
    trainer.base.setCurrentIndex(trainer.base.findData("r2unet-lite"))  # an untrained architecture
    trainer.tune()
    assert not trainer.running and "untrained" in trainer.status.text()


def test_train_widget_refuses_a_relative_dataset(make_napari_viewer, qtbot, tmp_path):
    from napari_ihcseg._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    trainer = TrainWidget(viewer, catalog=tmp_path / "catalog.json")
    qtbot.addWidget(trainer)
    trainer.dataset.setText("pairs")
    trainer.start()
    assert not trainer.running and "absolute" in trainer.status.text()


def test_choose_buttons_put_the_chosen_folder_in_the_field_and_cancel_keeps_it(make_napari_viewer, qtbot, store,
                                                                               monkeypatch, tmp_path):
    from qtpy.QtWidgets import QFileDialog, QPushButton

    from napari_ihcseg._widgets.pairs import SavePairsWidget
    from napari_ihcseg._widgets.train import TrainWidget

    viewer = make_napari_viewer()
    pairs = SavePairsWidget(viewer, ask=lambda *a: False, store=store)
    trainer = TrainWidget(viewer, catalog=tmp_path / "catalog.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    opened_at, answer = [], [str(empty)]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda parent, title, start: opened_at.append(start) or answer[0])
    for widget, field in ((pairs, pairs.folder), (trainer, trainer.dataset)):
        qtbot.addWidget(widget)
        [choose] = [b for b in widget.findChildren(QPushButton) if b.text() == "Choose…"]
        field.setText("/typed/before")
        choose.click()
        assert field.text() == str(empty)
    assert opened_at == ["/typed/before"] * 2, "the dialog opens at the folder typed"
    assert "no known training layout" in trainer.layout_label.text(), "the Train widget looks at the folder chosen"
    answer[0] = ""  # the user cancels
    trainer.layout_label.setText("")
    trainer.choose_dataset()
    assert trainer.dataset.text() == str(empty) and trainer.layout_label.text() == ""


def test_manifest_opens_every_widget(make_napari_viewer, qtbot):
    from napari_ihcseg._widgets._session import session_for

    viewer = make_napari_viewer()
    viewer.add_labels(nuclei_field(), name="nuclei")
    widgets = {}
    for name in ("Segment nuclei", "Correct nuclei", "Count nuclei", "Score nuclei", "Save training pairs",
                 "Train a model"):
        _dock, widgets[name] = viewer.window.add_plugin_dock_widget("napari-ihcseg", name)
    assert type(widgets["Correct nuclei"]).__name__ == "CorrectWidget"
    # napari hands plugins a proxy of the viewer; the widgets still share one session per layer.
    a = widgets["Correct nuclei"].layer
    b = widgets["Save training pairs"].form.nuclei.value
    assert session_for(a, create=False) is session_for(b, create=False) is not None


def test_float_image_layers_are_scaled_by_the_range_they_use_as_files_are():
    """A 12-bit float layer (0-4095) was saturated to {0, 255}; now scaled like a file, or refused naming it."""
    from napari_ihcseg._widgets._layer_pixels import to_rgb_uint8
    from napari_ihcseg.io import ImageReadError

    ramp = np.linspace(0, 4095, 3 * 8 * 8).reshape(8, 8, 3)
    out = to_rgb_uint8(ramp * 65535 / 4095, where="ihc")
    assert out.dtype == np.uint8 and len(np.unique(out)) > 100
    np.testing.assert_array_equal(to_rgb_uint8(ramp / 4095, where="ihc"), out)  # 0-1 and 0-65535 alike
    with pytest.raises(ImageReadError, match="ihc: floating-point values from 0 to 70000"):
        to_rgb_uint8(ramp * 70000 / 4095, where="ihc")
