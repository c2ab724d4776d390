"""The stain-pattern check: is the DAB in the nuclei or around them?"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_ihcseg.scoring import measure_nuclei, score_image
from napari_ihcseg.scoring.stain_pattern import (
    NO_DAB,
    NON_NUCLEAR,
    NON_NUCLEAR_WARNING,
    NUCLEAR,
    NUCLEAR_SHARE_CUT,
    ring_dab_od,
    ring_for,
    stain_pattern,
)
from napari_ihcseg.stain import compose

SIDE, STEP = 8, 24   # square nuclei of 8 px, one every 24 px


def cells_field(n=6, *, nuclear_dab=0.0, cytoplasm_dab=0.0, cytoplasm=7):
    """An ``n`` x ``n`` grid of nuclei, each in a square of cytoplasm ``cytoplasm`` px wide."""
    size = n * STEP
    conc = np.zeros((size, size, 3), np.float32)
    conc[..., 0] = 0.05
    labels = np.zeros((size, size), np.int32)
    for i in range(n * n):
        r, c = divmod(i, n)
        y0, x0 = r * STEP + (STEP - SIDE) // 2, c * STEP + (STEP - SIDE) // 2
        conc[y0 - cytoplasm:y0 + SIDE + cytoplasm, x0 - cytoplasm:x0 + SIDE + cytoplasm, 1] = cytoplasm_dab
        conc[y0:y0 + SIDE, x0:x0 + SIDE, 0] = 0.5
        conc[y0:y0 + SIDE, x0:x0 + SIDE, 1] = nuclear_dab
        labels[y0:y0 + SIDE, x0:x0 + SIDE] = i + 1
    return compose(conc), labels


def test_ring_measures_the_dab_around_each_nucleus_not_inside():
    image, labels = cells_field(2, nuclear_dab=0.1, cytoplasm_dab=0.5, cytoplasm=4)
    ring = ring_dab_od(image, labels, [1, 2, 3, 4], ring=(0, 3))
    assert ring == pytest.approx(0.5, abs=0.02)
    # Past the cytoplasm (4 px) the ring reaches unstained background and its mean drops.
    assert ring_dab_od(image, labels, [1], ring=(2, 6))[0] < 0.4
    # A label absent from the image has no ring.
    assert np.isnan(ring_dab_od(image, labels, [99], ring=(0, 3))[0])
    with pytest.raises(ValueError, match="gap >= 0 and width >= 1"):
        ring_dab_od(image, labels, [1], ring=(0, 0))


def test_ring_size_follows_the_nuclei():
    assert ring_for([np.pi * 10 ** 2]) == (5, 10)
    assert ring_for([np.pi * 2 ** 2]) == (1, 2)        # at least 2 px wide
    assert ring_for([np.pi * 100 ** 2]) == (24, 24)    # at most 24 px


@pytest.mark.parametrize("nuclear, cytoplasm, expected", [
    (0.5, 0.02, NUCLEAR),
    (0.15, 0.5, NON_NUCLEAR),
    (0.5, 0.5, NON_NUCLEAR),       # as much DAB around as inside: not a nuclear pattern
    (0.03, 0.03, NO_DAB),
])
def test_pattern_of_synthetic_fields(nuclear, cytoplasm, expected):
    image, labels = cells_field(nuclear_dab=nuclear, cytoplasm_dab=cytoplasm)
    summary = score_image(image, labels, stain="ki67").summary
    assert summary["stain_pattern"] == expected
    assert (NON_NUCLEAR_WARNING in summary["warnings"]) == (expected == NON_NUCLEAR)
    if expected == NON_NUCLEAR:
        assert summary["warnings"][0] == NON_NUCLEAR_WARNING   # the first thing a reader sees
        assert summary["ki67_index"] is not None                # scores are still computed


def test_pattern_needs_enough_stained_cells():
    assert stain_pattern([0.5] * 9 + [0.0] * 91, [0.0] * 100)["stain_pattern"] == NO_DAB
    call = stain_pattern([0.5] * 10 + [0.0] * 90, [0.0] * 100)
    assert call == {"stain_pattern": NUCLEAR, "dab_nuclear_share": 1.0, "n_stained_cells": 10}


# ----------------------------------------------------------- real data

def _disk_labels(shape, points, diameter):
    labels = np.zeros(shape, np.int32)
    r = diameter / 2
    k = int(np.ceil(r))
    dy, dx = np.mgrid[-k:k + 1, -k:k + 1]
    inside = dy ** 2 + dx ** 2 <= r * r
    for i, (y, x) in enumerate(np.rint(points).astype(int)):
        ys, xs = dy[inside] + y, dx[inside] + x
        ok = (ys >= 0) & (ys < shape[0]) & (xs >= 0) & (xs < shape[1])
        labels[ys[ok], xs[ok]] = i + 1
    return labels


def _share(image, labels):
    cells = measure_nuclei(image, labels, ring="auto")
    return stain_pattern(cells["dab_od_mean"], cells["dab_od_ring"])


def test_real_ki67_fields_read_as_nuclear(shared_data):
    """Ki-67 from three sources, nuclei from their truth: the DeepLIIF masks, disks at the
    ImmunoRatio points (the two cases lowest in the calibration), the glioma polygons (the
    lowest frame)."""
    from skimage import io

    from napari_ihcseg.io.points import read_points_csv
    from napari_ihcseg.datasets import load_deepliif

    calls = {}
    bladder = next(s for s in load_deepliif(shared_data / "deepliif-ki67-sample") if s.name.endswith("Bladder1"))
    calls["Bladder1"] = _share(bladder.image, bladder.labels)
    folder = shared_data / "ki67-immunoratio"
    with open(folder / "cases.csv", newline="") as fh:
        diameters = {row["case"]: float(row["median_nucleus_diameter_px"]) for row in csv.DictReader(fh)}
    for case in ("7468-03", "22210-10"):
        image = np.asarray(io.imread(folder / case / "field.jpg"))[..., :3]
        points, _ = read_points_csv(folder / case / "markers.csv")
        calls[case] = _share(image, _disk_labels(image.shape[:2], points, diameters[case]))
    frame = shared_data / "ki67-glioma-polygons" / "1329941_-B3-26"
    calls["glioma"] = _share(np.asarray(io.imread(frame / "image.jpg"))[..., :3],
                             np.asarray(io.imread(frame / "labels.png")).astype(np.int32))
    for name, call in calls.items():
        assert call["stain_pattern"] == NUCLEAR, (name, call)
        assert call["dab_nuclear_share"] > NUCLEAR_SHARE_CUT + 0.05, (name, call)


@pytest.mark.slow
def test_scikit_image_fhl2_sample_is_flagged_cytoplasmic():
    """The FHL2 sample, nuclei from the shipped model as in the demo: flagged, scores still there."""
    from skimage import data

    from napari_ihcseg.inference import InferenceConfig, segment_image
    from napari_ihcseg.pipeline import resolve_model

    image = data.immunohistochemistry()
    model, _ = resolve_model(None, "cpu")
    labels = segment_image(image, model, InferenceConfig(device="cpu", scale=2.0)).labels
    summary = score_image(image, labels, stain="ki67").summary
    assert summary["stain_pattern"] == NON_NUCLEAR
    assert summary["dab_nuclear_share"] < NUCLEAR_SHARE_CUT - 0.05
    assert summary["warnings"][0] == NON_NUCLEAR_WARNING
    assert "cytoplasmic/membranous" in NON_NUCLEAR_WARNING and "do not apply" in NON_NUCLEAR_WARNING
    assert summary["ki67_index"] is not None


def test_packed_stained_nuclei_without_rings_count_as_stained():
    """64 strongly stained nuclei touching each other leave no ring pixel: they are stained cells, and
    the pattern is unknown rather than "too little DAB"."""
    conc = np.zeros((64, 64, 3), np.float32)
    conc[..., 0], conc[..., 1] = 0.2, 0.8
    labels = (np.arange(64)[:, None] // 8 * 8 + np.arange(64)[None, :] // 8 + 1).astype(np.int32)
    summary = score_image(compose(conc), labels, stain="ki67").summary
    assert summary["n_positive"] == 64
    assert summary["n_stained_cells"] == 64
    assert summary["stain_pattern"] is None and summary["dab_nuclear_share"] is None
