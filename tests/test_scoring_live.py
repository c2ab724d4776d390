"""Live scoring (scoring.live.LiveScore): edits re-measure only what changed, and agree with a full score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.scoring import LiveScore, ScoringConfig, measure_nuclei, region_from_shapes, score_image

#: Columns whose values must match a fresh measurement exactly (floats to rounding).
MEASURED = ("label", "area_px", "centroid_y", "centroid_x", "dab_od_mean", "hematoxylin_od_mean", "dab_od_ring")


@pytest.fixture(scope="module")
def field():
    return make_synthetic_ihc((160, 160), seed=3)


def fresh(live: LiveScore, labels: np.ndarray) -> pd.DataFrame:
    """What measuring the whole label image from scratch gives, with the live table's ring."""
    return measure_nuclei(live.image, labels, stains=live.stain_vectors, pixel_size_um=live.config.pixel_size_um,
                          ring=live.ring)


def assert_same_table(live: LiveScore, labels: np.ndarray) -> None:
    got = live.cells().sort_values("label").reset_index(drop=True)
    want = fresh(live, labels).sort_values("label").reset_index(drop=True)
    assert got["label"].tolist() == want["label"].tolist()
    for col in MEASURED:
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-6, atol=1e-9,
                                   err_msg=col)


def test_the_live_result_is_the_full_score(field):
    config = ScoringConfig(stain="ki67")
    live = LiveScore(field.image, field.labels, config)
    cells, summary = live.result()
    full = score_image(field.image, field.labels, config=config)
    assert summary["n_nuclei"] == full.summary["n_nuclei"] == len(np.unique(field.labels)) - 1
    assert summary["n_positive"] == full.summary["n_positive"]
    assert summary["positive_percent"] == pytest.approx(full.summary["positive_percent"])
    np.testing.assert_array_equal(cells.sort_values("label")["intensity_class"].to_numpy(),
                                  full.cells.sort_values("label")["intensity_class"].to_numpy())


@pytest.mark.parametrize("boxed", [False, True], ids=["search the image", "search the edit's box"])
def test_edits_leave_the_table_as_a_fresh_measurement(field, boxed):
    labels = field.labels.copy()
    live = LiveScore(field.image, labels, ScoringConfig())
    ids = [int(i) for i in np.unique(labels) if i]
    # delete one nucleus, paint a new one on background, and grow another over its neighbour's pixels
    gone = ids[0]
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(labels == gone))
    labels[labels == gone] = 0
    live.update(labels, [gone], region=box if boxed else None)
    assert gone not in live.cells()["label"].tolist()
    assert_same_table(live, labels)

    ys, xs = np.nonzero(labels == 0)
    new = max(ids) + 1
    r, c = int(ys[len(ys) // 2]), int(xs[len(xs) // 2])
    disc = (slice(max(r - 3, 0), r + 4), slice(max(c - 3, 0), c + 4))
    touched = {int(i) for i in np.unique(labels[disc]) if i} | {new}
    labels[disc] = new
    live.update(labels, touched, region=disc if boxed else None)
    assert new in live.cells()["label"].tolist()
    assert_same_table(live, labels)
    assert live.n_nuclei == len(ids)  # one deleted, one added

    # grow a nucleus by a stroke below it: the box holds the stroke, not the nucleus
    grown = ids[1]
    ys, xs = np.nonzero(labels == grown)
    r, c = int(ys.max()), int(xs[ys.argmax()])
    stroke = (slice(r + 1, min(r + 4, labels.shape[0])), slice(max(c - 1, 0), c + 2))
    touched = {int(i) for i in np.unique(labels[stroke]) if i} | {grown}
    labels[stroke] = grown
    live.update(labels, touched, region=stroke if boxed else None)
    assert_same_table(live, labels)


def test_an_update_of_no_nucleus_reads_nothing(field):
    live = LiveScore(field.image, field.labels, ScoringConfig())
    before = live.cells()
    live.update(np.zeros_like(field.labels), [0])  # background only: nothing to measure, nothing dropped
    pd.testing.assert_frame_equal(live.cells(), before)


def test_threshold_changes_need_no_new_measurement_but_other_stain_vectors_do(field):
    config = ScoringConfig(stain="ki67")
    live = LiveScore(field.image, field.labels, config)
    n_positive = live.result()[1]["n_positive"]
    assert live.set_config(config.replace(thresholds=(5.0, 6.0, 7.0)))
    assert live.result()[1]["n_positive"] == 0 < n_positive
    assert not live.set_config(config.replace(pixel_size_um=0.5)), "area in µm² needs measuring again"
    assert live.config.pixel_size_um is None, "the refused config is not taken"


def test_region_and_hand_classes(field):
    live = LiveScore(field.image, field.labels, ScoringConfig(stain="ki67"))
    cells = live.cells()
    top = cells[cells["centroid_y"] < 80]
    live.set_region(region_from_shapes([np.array([[-1, -1], [-1, 161], [80, 161], [80, -1]], float)]))
    cells, summary = live.result()
    assert summary["n_nuclei"] == len(top)
    assert cells["in_roi"].sum() == len(top)
    negative = int(cells.loc[cells["positive"] == 0, "label"].iloc[0])
    live.set_region(None)
    live.set_overrides({negative: "positive"})
    cells = live.cells().set_index("label")
    assert cells.loc[negative, "positive"] == 1 and cells.loc[negative, "class_source"] == "human"


def test_an_edit_measures_the_rings_of_its_neighbours_again():
    """A nucleus's DAB ring depends on the nuclei around it: deleting or adding one changes its neighbours'."""
    from napari_ihcseg.stain import compose

    conc = np.zeros((60, 80, 3), np.float32)
    conc[..., 0] = 0.2
    conc[:, 20:30, 1] = 0.5  # DAB between the nuclei
    image = compose(conc)
    labels = np.zeros((60, 80), np.int32)
    labels[30:36, 10:16], labels[30:36, 30:36] = 1, 9
    live = LiveScore(image, labels, ScoringConfig())
    labels[30:36, 18:22] = 5  # a new nucleus whose ring meets the larger id 9's, outside its own box
    live.update(labels, [5])
    assert_same_table(live, labels)
    labels[labels == 5] = 0  # and deleted again, searching only its box: 1 and 9 get their rings back
    live.update(labels, [5], region=(slice(30, 36), slice(18, 22)))
    assert_same_table(live, labels)
