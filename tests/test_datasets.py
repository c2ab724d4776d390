"""Readers of training-pair folders and real data sets, and the split by image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from skimage.io import imsave

from napari_ihcseg.datasets import (
    Sample,
    deepliif_labels,
    load_dataset,
    load_deepliif,
    load_monuseg,
    load_pairs_folder,
    split_by_image,
)


def _labels(shape=(32, 40), n=3):
    labels = np.zeros(shape, np.uint32)
    for i in range(n):
        labels[4 + 8 * i: 10 + 8 * i, 5:15] = i + 1
    return labels


def _write_pairs(folder, ids, *, manifest=None, shape=(32, 40)):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(0)
    for pid in ids:
        imsave(folder / "images" / f"{pid}.png", rng.integers(0, 255, (*shape, 3), dtype=np.uint8),
               check_contrast=False)
        tifffile.imwrite(folder / "masks" / f"{pid}.tif", _labels(shape))
    meta = {"format": "napari-ihcseg-pairs", "tile_size": 256, "stride": 256, "stain": "Ki-67"}
    meta.update(manifest or {})
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


def test_pairs_folder_round_trip(tmp_path):
    folder = _write_pairs(tmp_path / "set", ["b", "a"])
    samples = load_pairs_folder(folder)
    assert [s.name for s in samples] == ["set/a", "set/b"]
    s = samples[0]
    assert s.image.dtype == np.uint8 and s.image.shape == (32, 40, 3)
    assert s.labels.dtype == np.int32 and s.labels.max() == 3
    assert np.array_equal(s.mask, s.labels > 0)
    assert s.stain == "Ki-67" and s.source == "pairs"


def test_pairs_folder_uses_manifest_entries_and_groups_by_source(tmp_path):
    pairs = [{"id": "a", "image": "images/a.png", "mask": "masks/a.tif", "source": "slide1.svs", "stain": "ER"},
             {"id": "b", "image": "images/b.png", "mask": "masks/b.tif", "source": "slide1.svs", "stain": "ER"},
             {"id": "c", "image": "images/c.png", "mask": "masks/c.tif", "source": "slide2.svs", "stain": "ER"}]
    folder = _write_pairs(tmp_path / "set", ["a", "b", "c", "unlisted"], manifest={"pairs": pairs})
    samples = load_pairs_folder(folder)
    assert [s.name for s in samples] == ["set/a", "set/b", "set/c"]
    assert samples[0].group == samples[1].group != samples[2].group
    assert {s.stain for s in samples} == {"ER"}
    # Tiles of one slide never straddle the split.
    for seed in range(5):
        train, val = split_by_image(samples, 0.4, seed)
        assert {s.group for s in train}.isdisjoint({s.group for s in val})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "dataset.json").unlink(), "dataset.json"),
        (lambda f: (f / "dataset.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "dataset.json").write_text(json.dumps({"format": "other"})), "format"),
        (lambda f: (f / "dataset.json").write_text(json.dumps({"format": "napari-ihcseg-pairs", "tile_size": -1})),
         "tile_size"),
        (lambda f: (f / "masks" / "a.tif").unlink(), "unmatched ids: a"),
        (lambda f: tifffile.imwrite(f / "masks" / "a.tif", np.zeros((5, 5), np.uint32)), "differs from its image"),
        (lambda f: tifffile.imwrite(f / "masks" / "a.tif", np.zeros((32, 40), np.float32)), "must be integers"),
    ],
)
def test_pairs_folder_rejects_bad_input_naming_the_file(tmp_path, damage, message):
    folder = _write_pairs(tmp_path / "set", ["a", "b"])
    damage(folder)
    with pytest.raises(ValueError, match=message):
        load_pairs_folder(folder)


def test_split_by_image_is_deterministic_disjoint_and_order_free():
    img = np.zeros((8, 8, 3), np.uint8)
    samples = [Sample(img, np.zeros((8, 8), np.int32), name=f"im{i:02d}") for i in range(20)]
    train, val = split_by_image(samples, 0.25, seed=3)
    assert len(val) == 5 and len(train) == 15
    assert {s.name for s in train}.isdisjoint({s.name for s in val})
    train2, val2 = split_by_image(samples[::-1], 0.25, seed=3)
    assert {s.name for s in val2} == {s.name for s in val}
    other = {frozenset(s.name for s in split_by_image(samples, 0.25, seed=k)[1]) for k in range(6)}
    assert len(other) > 1, "the seed must change the split"
    assert split_by_image(samples[:2], 0.1, 0)[1], "a non-zero fraction keeps at least one image"
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_image(samples, 1.0)


def test_sample_validates_shapes():
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="labels or a mask"):
        Sample(img, None, name="x")
    with pytest.raises(ValueError, match="x: labels shape"):
        Sample(img, np.zeros((4, 4), np.int32), name="x")
    with pytest.raises(ValueError, match="uint8"):
        Sample(img.astype(float), np.zeros((8, 8), np.int32), name="x")
    mask_only = Sample(img, None, np.ones((8, 8), np.uint8), name="m")
    assert mask_only.mask.dtype == bool and mask_only.labels is None


def test_deepliif_colours_give_separate_classed_nuclei():
    seg = np.zeros((40, 40, 3), np.uint8)
    seg[5:15, 5:15] = (250, 10, 10)      # positive
    seg[5:15, 15:25] = (10, 10, 250)     # negative, touching the positive one
    seg[25:35, 25:35] = (200, 0, 0)      # positive
    seg[20, 20] = (255, 0, 0)            # anti-aliasing speck
    seg[0, :] = (0, 255, 0)              # cell boundary, not a nucleus
    labels, classes = deepliif_labels(seg)
    assert labels.max() == 3
    assert sorted(classes.values()) == [0, 1, 1]
    assert labels[10, 10] != labels[10, 20]
    assert classes[labels[10, 10]] == 1 and classes[labels[10, 20]] == 0
    assert labels[20, 20] == 0 and labels[0].max() == 0


def test_load_dataset_spec_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown data set kind 'nope'"):
        load_dataset(f"nope:{tmp_path}")
    with pytest.raises(ValueError, match="not a folder"):
        load_dataset(str(tmp_path / "missing"))


def test_real_deepliif_counts_match_the_source(shared_data):
    samples = {s.name: s for s in load_deepliif(shared_data / "deepliif-ki67-sample")}
    for stem in ("Bladder1", "Lung1"):
        truth = json.loads((shared_data / "deepliif-ki67-sample" / f"{stem}.json").read_text())
        s = samples[f"deepliif/{stem}"]
        assert s.image.shape == (512, 512, 3)
        positives = sum(s.classes.values())
        assert positives == truth["num_pos"]
        assert abs(len(s.classes) - truth["num_total"]) <= 3


def test_real_monuseg_has_13_instance_and_17_mask_only_images(shared_data):
    samples = load_monuseg(shared_data / "monuseg-train")
    with_labels = [s for s in samples if s.labels is not None]
    assert len(samples) == 30 and len(with_labels) == 13
    counts = [int(s.labels.max()) for s in with_labels]
    assert min(counts) > 200 and max(counts) < 1200
    assert all(s.mask.any() for s in samples)


def test_reads_what_the_pair_writer_saves(tmp_path):
    from napari_ihcseg.pairs import save_pairs

    rng = np.random.default_rng(1)
    folder = tmp_path / "pairs"
    for name in ("slideA", "slideB"):
        image = rng.integers(0, 255, (300, 280, 3), dtype=np.uint8)
        labels = np.zeros((300, 280), np.int32)
        labels[20:40, 20:40] = 7
        labels[270:290, 250:270] = 9
        save_pairs(folder, image, labels, mode="tiles", tile=256, source=f"/slides/{name}.svs", stain="ER")
    samples = load_pairs_folder(folder)
    assert len(samples) >= 4 and all(s.image.shape[:2] == s.labels.shape for s in samples)
    assert {s.stain for s in samples} == {"ER"}
    assert len({s.group for s in samples}) == 2, "tiles are grouped by their source slide"
    assert all(set(np.unique(s.labels)) <= {0, 1, 2} for s in samples)
    train, val = split_by_image(samples, 0.5, seed=0)
    assert train and val and {s.group for s in train}.isdisjoint({s.group for s in val})


def test_gbm_fields_of_one_tcga_patient_are_one_group_and_a_missing_outline_file_is_refused(shared_data, tmp_path):
    """R01 and R02 are two fields of one patient: a split by group never trains on one and validates on the
    other. A set with an outline file missing is refused, not read as a smaller set."""
    import shutil

    from napari_ihcseg.datasets.public import load_gbm

    source = shared_data / "gbm-tcga-contours" / "TCGA_result"
    for stem in ("TCGA-FG-A4MU-R01.tif_normal.png_normal_small", "TCGA-FG-A4MU-R02.tif_normal.png_normal_small",
                 "TCGA-DB-5270-R01.tif_normal.png_normal_small"):
        for sub, suffix in (("raw_image", ".png"), ("contour_annotation_xml", "_data.xml")):
            (tmp_path / "TCGA_result" / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(source / sub / f"{stem}{suffix}", tmp_path / "TCGA_result" / sub / f"{stem}{suffix}")
    groups = {s.name.split("/")[-1][:16]: s.group for s in load_gbm(tmp_path)}
    assert groups["TCGA-FG-A4MU-R01"] == groups["TCGA-FG-A4MU-R02"] != groups["TCGA-DB-5270-R01"]
    (tmp_path / "TCGA_result" / "contour_annotation_xml" / "TCGA-DB-5270-R01.tif_normal.png_normal_small_data.xml").unlink()
    with pytest.raises(ValueError, match="TCGA-DB-5270-R01.tif_normal.png_normal_small.png: no contour annotation"):
        load_gbm(tmp_path)
