"""Label editing: the operations behind the correction key bindings."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ihcseg.editing import (
    EditTracker,
    LabelChange,
    LabelDiffer,
    delete_label,
    label_at,
    merge_labels,
    next_free_label,
    split_label_by_distance,
    split_label_by_instances,
    split_label_by_line,
)


def two_discs(gap: int = 0) -> np.ndarray:
    """Two touching (or ``gap``-separated) discs, ids 3 and 5, plus a far nucleus 9."""
    yy, xx = np.mgrid[:40, :60]
    lab = np.zeros((40, 60), np.int32)
    lab[(yy - 20) ** 2 + (xx - 18) ** 2 <= 81] = 3
    lab[((yy - 20) ** 2 + (xx - (37 + gap)) ** 2 <= 81) & (lab == 0)] = 5
    lab[2:6, 50:56] = 9
    return lab


def test_next_free_label():
    assert next_free_label(np.zeros((3, 3), np.uint8)) == 1
    assert next_free_label(two_discs()) == 10
    with pytest.raises(ValueError, match="no free nucleus id"):
        next_free_label(np.full((2, 2), 255, np.uint8))


def test_label_at_rounds_and_clips():
    lab = two_discs()
    assert label_at(lab, (20.4, 17.6)) == 3
    assert label_at(lab, (0, 20, 37)) == 5  # extra leading dims are ignored
    assert label_at(lab, (-5, 3)) == 0


def test_delete_only_removes_that_nucleus():
    lab = two_discs()
    before = lab.copy()
    edit = delete_label(lab, 5)
    assert np.array_equal(lab, before), "computing an edit must not change the labels"
    assert edit.change == LabelChange(frozenset(), frozenset(), frozenset({5}))
    edit.apply(lab)
    assert not (lab == 5).any()
    assert np.array_equal(lab[before != 5], before[before != 5])
    assert edit.n_pixels == (before == 5).sum()
    with pytest.raises(ValueError, match="nucleus 5 is not in the label image"):
        delete_label(lab, 5)
    with pytest.raises(ValueError, match="positive"):
        delete_label(lab, 0)


@pytest.mark.parametrize("gap", [0, 1])
def test_merge_keeps_smallest_id_and_fills_small_gap(gap):
    lab = two_discs(gap)
    area = (lab == 3).sum() + (lab == 5).sum()
    edit = merge_labels(lab, 5, 3)
    assert edit.change.changed == {3} and edit.change.deleted == {5}
    edit.apply(lab)
    assert not (lab == 5).any()
    assert (lab == 3).sum() >= area
    from scipy import ndimage as ndi

    assert ndi.label(lab == 3)[1] == 1, "the merged nucleus is one connected piece"
    assert (lab == 9).sum() == 24, "other nuclei are untouched"


def test_merge_into_and_errors():
    lab = two_discs()
    merge_labels(lab, 3, 5, 9, into=9, gap=0).apply(lab)
    assert set(np.unique(lab)) == {0, 9}
    with pytest.raises(ValueError, match="at least two"):
        merge_labels(lab, 9, 9)
    with pytest.raises(ValueError, match="into=4"):
        merge_labels(two_discs(), 3, 5, into=4)
    with pytest.raises(ValueError, match="nucleus 7 is not in"):
        merge_labels(two_discs(), 3, 7)


def test_split_by_line_cuts_across_and_keeps_every_pixel():
    lab = two_discs()
    merged = merge_labels(lab, 3, 5).apply(lab)
    area = (merged == 3).sum()
    # A short vertical stroke in the neck: the ends are extended through the nucleus.
    edit = split_label_by_line(merged, 3, [(18, 27.5), (22, 27.5)])
    assert edit.change.created == {10} and edit.change.changed == {3}
    edit.apply(merged)
    assert (merged == 3).sum() + (merged == 10).sum() == area
    assert (merged == 3).sum() >= (merged == 10).sum(), "the larger side keeps the id"
    assert merged[20, 10] != merged[20, 45], "the two sides are different nuclei"


def test_split_by_line_polyline_and_new_label():
    lab = np.zeros((30, 30), np.int32)
    lab[5:25, 5:25] = 1
    edit = split_label_by_line(lab, 1, [(0, 15), (15, 15), (15, 29)], new_label=40)
    edit.apply(lab)
    assert set(np.unique(lab)) == {0, 1, 40}
    assert lab[6, 6] == 1 and lab[20, 20] == 1 and lab[8, 22] == 40  # the corner is the smaller side


def test_split_by_line_that_misses_raises():
    lab = two_discs()
    with pytest.raises(ValueError, match="could not be cut"):
        split_label_by_line(lab, 9, [(30, 0), (30, 10)])
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        split_label_by_line(lab, 9, [(3, 3)])


def test_split_by_distance_separates_two_touching_discs():
    lab = two_discs()
    merge_labels(lab, 3, 5).apply(lab)
    split_label_by_distance(lab, 3, min_distance=5).apply(lab)
    assert lab[20, 18] != lab[20, 37] and {lab[20, 18], lab[20, 37]} == {3, 10}


def test_split_by_instances_uses_the_probabilities():
    truth = two_discs()
    lab = truth.copy()
    merge_labels(lab, 3, 5).apply(lab)
    merged_area = (lab == 3).sum()
    from napari_ihcseg.data.targets import labels_to_contour

    mask_prob = (truth > 0).astype(np.float32) * 0.9
    contour_prob = labels_to_contour(truth, width=2).astype(np.float32) * 0.8
    edit = split_label_by_instances(lab, 3, mask_prob, contour_prob, min_size=10)
    edit.apply(lab)
    assert {lab[20, 18], lab[20, 37]} == {3, 10}
    assert (lab == 9).sum() == 24
    assert ((lab == 3) | (lab == 10)).sum() == merged_area, "no pixel of the nucleus is lost"
    with pytest.raises(ValueError, match="shape"):
        split_label_by_instances(lab, 3, mask_prob[:5], contour_prob)


def test_differ_classifies_paint_fill_and_undo():
    lab = two_discs()
    differ = LabelDiffer(lab)
    lab[30:35, 0:5] = 12  # a new nucleus painted by hand
    lab[lab == 9] = 0  # erased
    lab[20, 20] = 5  # 3 shrinks, 5 grows
    change = differ.update(lab)
    assert change.created == {12} and change.deleted == {9} and change.changed == {3, 5}
    assert differ.area(12) == 25
    assert differ.update(lab).touched == frozenset(), "nothing changed since"
    lab[30:35, 0:5] = 0  # undo the new nucleus, reported inside a region hint
    assert differ.update(lab, region=(slice(25, 40), slice(0, 10))).deleted == {12}
    with pytest.raises(ValueError, match="shape"):
        differ.update(lab[:10])


def test_differ_knows_when_every_edit_is_undone():
    from napari_ihcseg.editing.tracking import ORIGINAL_BLOCK

    lab = np.zeros((2 * ORIGINAL_BLOCK + 40, 300), np.int32)
    lab[10:30, 10:30] = 1
    lab[-30:-10, -30:-10] = 2
    original = lab.copy()
    differ = LabelDiffer(lab)
    assert differ.matches_original()
    lab[-30:-10, -30:-10] = 0  # deleted, in another block than the first change
    lab[5:8, 280:290] = 3
    differ.update(lab, region=(slice(0, None), slice(0, None)))
    assert not differ.matches_original()
    lab[-30:-10, -30:-10] = 2  # one undone: still edited
    differ.update(lab)
    assert not differ.matches_original()
    lab[5:8, 280:290] = 0  # all undone, reported inside a region hint
    differ.update(lab, region=(slice(0, 20), slice(270, 300)))
    assert differ.matches_original() and np.array_equal(lab, original)
    assert len(differ._original) <= 4, "only the blocks edits reached are kept"
    differ.reset(lab * 0)
    assert differ.matches_original()


@pytest.mark.parametrize("dtype, huge", [(np.int64, 2 ** 40), (np.uint64, 2 ** 63 + 5), (np.uint32, 3_000_000_000)])
def test_differ_handles_huge_ids_in_memory_proportional_to_the_nuclei(dtype, huge):
    """Ids in the billions (relabelled tiles, hashed ids) open in the panels without an id-sized array."""
    import tracemalloc

    lab = two_discs().astype(dtype)
    lab[lab == 5] = huge
    tracemalloc.start()
    try:
        differ = LabelDiffer(lab)
        lab[30:35, 0:5] = huge - 1  # painted by hand under another huge id
        lab[20, 20] = huge  # 3 shrinks, the huge one grows
        change = differ.update(lab)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"{peak / 1e6:.0f} MB for a 40 x 60 image"
    assert change == LabelChange(frozenset({huge - 1}), frozenset({3, huge}), frozenset())
    assert differ.area(huge) == (lab == huge).sum() and differ.area(huge - 1) == 25
    assert differ.max_label == huge and sorted(differ.sizes().tolist()) == sorted(
        int((lab == i).sum()) for i in (3, 9, huge - 1, huge))
    lab[lab == huge] = 0
    lab[30:35, 0:5] = 0
    assert differ.update(lab).deleted == {huge, huge - 1}
    assert differ.max_label == 9 and differ.area(huge) == 0


def test_tracker_follows_each_ids_history():
    t = EditTracker()
    assert t.record("paint") is None, "an edit that touched nothing is not logged"
    t.record("merge", changed=[3], deleted=[5], time="2024-01-01T10:00:00+00:00")
    t.record("paint", created=[12], time="2024-01-01T10:01:00+00:00")
    t.record("paint", changed=[12], time="2024-01-01T10:02:00+00:00")
    t.record("new", created=[13])
    t.record("delete", deleted=[13])
    assert t.status(3) == "changed" and t.status(5) == "deleted" and t.status(12) == "created"
    assert t.status(13) is None, "drawn then deleted again leaves no trace"
    t.record("undo", created=[5], time="2024-01-01T10:03:00+00:00")
    assert t.status(5) == "changed", "a model nucleus deleted then restored counts as changed"
    t.record("delete", deleted=[5], time="2024-01-01T10:00:00+00:00")
    assert t.edited == {3, 12}
    assert t.edit_times() == {3: "2024-01-01T10:00:00+00:00", 12: "2024-01-01T10:02:00+00:00"}
    copy = EditTracker.from_dict(t.to_dict())
    assert copy.edit_times() == t.edit_times() and copy.deleted == t.deleted and copy.n_edits == 7


def test_tracker_records_an_edit_change():
    lab = two_discs()
    t = EditTracker()
    t.record_change("split", split_label_by_line(lab, 3, [(0, 18), (39, 18)]).change)
    assert t.created == {10} and t.changed == {3}


def _three_touching_discs(dtype=np.int32):
    yy, xx = np.mgrid[:20, :50]
    blob = ((yy - 10) ** 2 + (xx - 8) ** 2 <= 36) | ((yy - 10) ** 2 + (xx - 22) ** 2 <= 36) \
        | ((yy - 10) ** 2 + (xx - 36) ** 2 <= 36) | ((abs(yy - 10) <= 1) & (xx >= 8) & (xx <= 36))
    lab = np.zeros((20, 50), dtype)
    lab[blob] = 1
    return lab


def test_a_split_never_reuses_an_id_or_overflows_the_dtype():
    lab = _three_touching_discs()
    lab[0, 49] = 6
    assert sorted(split_label_by_distance(lab, 1, min_distance=5).change.created) == [7, 8]
    with pytest.raises(ValueError, match="5..6.*6"):  # the second new id would merge into nucleus 6
        split_label_by_distance(lab, 1, min_distance=5, new_label=5)
    with pytest.raises(ValueError, match="1 or more"):
        split_label_by_distance(lab, 1, min_distance=5, new_label=-3)
    full = _three_touching_discs(np.uint8)
    full[0, 49] = 254  # new ids 255 and 256: the second does not fit in uint8
    with pytest.raises(ValueError, match="uint8"):
        split_label_by_distance(full, 1, min_distance=5)


def test_hand_classes_follow_splits_merges_and_undo():
    t = EditTracker()
    t.set_class(3, "positive")
    t.record("split", created=[7, 8], changed=[3])  # both halves of a positive nucleus stay positive
    assert t.class_overrides == {3: "positive", 7: "positive", 8: "positive"}
    t.record("delete", deleted=[7])
    assert 7 not in t.class_overrides
    t.record("edit", created=[7])  # Ctrl+Z brings nucleus 7 back: with its class
    assert t.class_overrides[7] == "positive"
    t.set_class(1, "negative")
    t.record("merge", changed=[2], deleted=[1])  # merged into a nucleus without a hand class
    assert t.class_overrides[2] == "negative" and 1 not in t.class_overrides
    t.record("delete", deleted=[8])
    t.record("grow", created=[8])  # a new nucleus under a freed id is not the old one
    assert 8 not in t.class_overrides
    assert EditTracker.from_dict(t.to_dict()).class_overrides == t.class_overrides


def test_recovery_files_keep_counted_points_beside_the_labels(tmp_path):
    from napari_ihcseg.editing import EditTracker
    from napari_ihcseg.editing.recovery import RecoveryStore, recovery_key

    store = RecoveryStore(tmp_path)
    key = recovery_key("/slides/a.svs", (8, 8))
    tracker = EditTracker()
    tracker.set_class(1, "positive")
    store.save(key, np.ones((8, 8), np.int32), tracker, points=([[2.5, 3.0], [6, 1]], ["positive", ""]))
    assert store.pending(key).n_points == 2
    coords, classes = store.points(key)
    np.testing.assert_allclose(coords, [[2.5, 3.0], [6, 1]])
    assert classes == ["positive", ""]
    with pytest.raises(ValueError, match="2 counted points but 1 classes"):
        store.save(key, np.ones((8, 8), np.int32), tracker, points=([[2.5, 3.0], [6, 1]], ["positive"]))
    assert store.points(key)[1] == ["positive", ""], "a refused save leaves the file as it was"
    store.save(key, np.ones((8, 8), np.int32), tracker)  # outside count mode
    assert store.points(key) is None and store.pending(key).n_points == 0
