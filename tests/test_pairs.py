"""Training pairs written safely and read back by the one reader, and the recovery file of unsaved corrections."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_ihcseg.editing import EditTracker
from napari_ihcseg.editing.recovery import RecoveryStore, default_recovery_dir, recovery_key
from napari_ihcseg.pairs import FORMAT, TrainingPairWriter, load_pairs_folder, plan_regions, save_pairs


@pytest.fixture
def field():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (600, 520, 3), dtype=np.uint8)
    labels = np.zeros((600, 520), np.int32)
    labels[20:40, 20:40] = 7
    labels[300:330, 30:60] = 8
    labels[50:70, 400:420] = 9  # tiles on the right hold only this one
    return image, labels


def test_whole_pair_round_trip_and_manifest(tmp_path, field):
    image, labels = field
    saved = save_pairs(tmp_path, image, labels, source="/slides/case 1.svs", stain="ki67", pixel_size_um=0.5,
                       model="harunet-lite", corrected_labels={8: "2024-05-01T09:00:00+00:00"})
    assert [p.id for p in saved] == ["case_1"]
    img = np.asarray(Image.open(tmp_path / "images" / "case_1.png"))
    mask = tifffile.imread(tmp_path / "masks" / "case_1.tif")
    assert np.array_equal(img, image)
    assert mask.dtype == np.uint32 and set(np.unique(mask)) == {0, 1, 2, 3}
    assert np.array_equal(mask > 0, labels > 0)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert meta["format"] == FORMAT and meta["image_suffix"] == ".png" and meta["mask_suffix"] == ".tif"
    pair = meta["pairs"][0]
    assert pair["source"] == "/slides/case 1.svs" and pair["stain"] == "ki67" and pair["pixel_size_um"] == 0.5
    assert pair["model"] == "harunet-lite" and pair["n_nuclei"] == 3
    assert pair["corrected"] and pair["n_corrected"] == 1 and pair["corrected_at"] == "2024-05-01T09:00:00+00:00"
    assert not list(tmp_path.rglob("*.part*")), "no temporary file is left behind"


def test_tiles_drop_empty_and_record_settings(tmp_path, field):
    image, labels = field
    saved = save_pairs(tmp_path, image, labels, mode="tiles", tile=256, stride=192, source="/s/a.tif",
                       corrected_labels=[9])
    boxes = plan_regions(labels.shape, mode="tiles", tile=256, stride=192)
    nonempty = [b for b in boxes if labels[b[0]:b[2], b[1]:b[3]].any()]
    assert len(saved) == len(nonempty) < len(boxes)
    for pair in saved:
        y0, x0, y1, x1 = pair.region
        assert (y1 - y0, x1 - x0) == (256, 256)
        mask = tifffile.imread(tmp_path / pair.mask)
        assert np.array_equal(mask > 0, labels[y0:y1, x0:x1] > 0)
        assert pair.corrected == (9 in labels[y0:y1, x0:x1])
    meta = json.loads((tmp_path / "dataset.json").read_text())
    assert (meta["mode"], meta["tile_size"], meta["stride"], meta["drop_empty"]) == ("tiles", 256, 192, True)
    every = save_pairs(tmp_path / "all", image, labels, mode="tiles", tile=256, stride=192, drop_empty=False)
    assert len(every) == len(boxes)


def test_existing_pair_is_never_overwritten_without_asking(tmp_path, field):
    image, labels = field
    writer = TrainingPairWriter(tmp_path)
    writer.save(image, labels, mode="region", region=(0, 0, 100, 100), source="/s/a.tif")
    first = (tmp_path / "masks" / "a_y0_x0_100x100.tif").read_bytes()
    relabelled = np.where(labels > 0, 1, 0).astype(np.int32)
    with pytest.raises(FileExistsError, match="a_y0_x0_100x100"):
        writer.save(image, relabelled, mode="region", region=(0, 0, 100, 100), source="/s/a.tif")
    assert (tmp_path / "masks" / "a_y0_x0_100x100.tif").read_bytes() == first
    writer.save(image, relabelled, mode="region", region=(0, 0, 100, 100), source="/s/a.tif", overwrite=True)
    assert writer.pair_ids() == ["a_y0_x0_100x100"], "an overwritten pair is listed once"


def test_two_slides_of_one_file_name_keep_their_pairs_apart(tmp_path, field):
    """case1.tif of two folders (two patients) would share the pair ids: the second gets case1-2, and saving
    either slide again still asks before replacing its own pairs."""
    image, labels = field
    writer = TrainingPairWriter(tmp_path)
    first = writer.save(image, labels, mode="tiles", source="/lab/2025/case1.tif")
    other = np.zeros_like(labels)
    other[100:130, 100:130] = 1
    second = writer.save(image, other, mode="tiles", source="/lab/2026/case1.tif")
    assert [p.id for p in second] == ["case1-2_t256_y00000_x00000"]
    assert sorted(writer.pair_ids()) == sorted([p.id for p in first] + [second[0].id]), "the first slide's kept"
    with pytest.raises(FileExistsError, match="case1-2_t256"):
        writer.save(image, other, mode="tiles", source="/lab/2026/case1.tif")
    with pytest.raises(FileExistsError, match="'case1_t256"):
        writer.save(image, labels, mode="tiles", source="/lab/2025/../2025/case1.tif")
    third = writer.save(image, other, mode="tiles", source="/lab/2027/case1.tif")
    assert [p.id for p in third] == ["case1-3_t256_y00000_x00000"]


def test_refusal_writes_nothing_when_one_tile_exists(tmp_path, field):
    image, labels = field
    first = save_pairs(tmp_path, image, labels, mode="tiles", region=(0, 0, 256, 256), source="/s/b.png")
    assert [p.id for p in first] == ["b_t256_y00000_x00000"]
    with pytest.raises(FileExistsError):
        save_pairs(tmp_path, image, labels, mode="tiles", source="/s/b.png")
    assert len(list((tmp_path / "masks").iterdir())) == 1


def test_origin_shifts_regions_and_ids(tmp_path, field):
    image, labels = field
    saved = save_pairs(tmp_path, image, labels, source="/s/slide.svs", origin=(1000, 2000))
    assert saved[0].region == (1000, 2000, 1600, 2520)
    assert saved[0].id == "slide_y1000_x2000_600x520", "a field of view of a slide is named by its place"


def test_bad_folder_and_options(tmp_path, field):
    image, labels = field
    with pytest.raises(ValueError, match="absolute"):
        TrainingPairWriter("relative/folder")
    with pytest.raises(ValueError, match="tile must be one of"):
        save_pairs(tmp_path, image, labels, mode="tiles", tile=300)
    with pytest.raises(ValueError, match="stride"):
        save_pairs(tmp_path, image, labels, mode="tiles", stride=0)
    with pytest.raises(ValueError, match="needs region"):
        save_pairs(tmp_path, image, labels, mode="region")
    with pytest.raises(ValueError, match="labels must be integers"):
        save_pairs(tmp_path, image, labels[:10])
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "dataset.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a napari-ihcseg training-pair folder"):
        save_pairs(tmp_path / "x", image, labels)


def test_recovery_round_trip_and_clear(tmp_path):
    store = RecoveryStore(tmp_path)
    labels = np.zeros((30, 40), np.int32)
    labels[3:9, 4:10] = 5
    tracker = EditTracker()
    tracker.record("new", created=[5])
    key = recovery_key("/slides/x.svs", labels.shape)
    assert store.pending(key) is None
    store.save(key, labels, tracker, source="/slides/x.svs")
    info = store.pending(key)
    assert info.shape == (30, 40) and info.n_edits == 1 and info.source == "/slides/x.svs"
    restored, tracker2, _ = store.restore(key)
    assert np.array_equal(restored, labels) and tracker2.created == {5}
    assert [i.key for i in store.list()] == [key]
    assert store.clear(key) and store.pending(key) is None and not store.clear(key)
    with pytest.raises(FileNotFoundError):
        store.restore(key)


def test_recovery_keys_and_folder(tmp_path):
    assert recovery_key("/a/b.png", (10, 10)) != recovery_key("/a/b.png", (10, 11))
    assert recovery_key("/a/b.png", (10, 10)) != recovery_key("/a/c.png", (10, 10))
    # two fields of view of one slide, the same size: their corrections stay apart
    assert recovery_key("/a/b.svs", (10, 10), (0, 0)) != recovery_key("/a/b.svs", (10, 10), (256, 256))
    assert recovery_key("/a/b.svs", (10, 10), (0, 0)) == recovery_key("/a/b.svs", (10, 10))
    assert default_recovery_dir().is_absolute()
    store = RecoveryStore(tmp_path)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert store.pending("broken") is None and store.list() == []
    with pytest.raises(ValueError, match="invalid recovery key"):
        store.path_for("../escape")


def test_training_reader_reads_the_saved_pairs(tmp_path, field):
    image, labels = field
    saved = save_pairs(tmp_path, image, labels, mode="tiles", tile=256, source="/s/c.png", stain="ki67")
    samples = load_pairs_folder(tmp_path)
    assert [s.name.split("/")[-1] for s in samples] == sorted(p.id for p in saved)
    for sample, pair in zip(samples, sorted(saved, key=lambda p: p.id)):
        y0, x0, y1, x1 = pair.region
        assert np.array_equal(sample.image, image[y0:y1, x0:x1])
        assert np.array_equal(sample.labels > 0, labels[y0:y1, x0:x1] > 0)
        assert sample.stain == "ki67" and sample.pixel_size_um is None
    # The pixel size saved with the pairs comes back with them (tuning picks its scale from it).
    save_pairs(tmp_path / "px", image, labels, source="/s/d.png", stain="ki67", pixel_size_um=0.5)
    assert [s.pixel_size_um for s in load_pairs_folder(tmp_path / "px")] == [0.5]


# ------------------------------------------------------------------ one owner of the format

def _manifest(**changes):
    meta = {"format": FORMAT, "version": 1, "pairs": []}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not ...}


@pytest.mark.parametrize("content, message", [
    (_manifest(format=...), "not a napari-ihcseg training-pair folder (format None"),
    (_manifest(format="nnunet"), "not a napari-ihcseg training-pair folder (format 'nnunet'"),
    (_manifest(version=2), "format version 2 is not one this version"),
    (_manifest(tile_size=0), "'tile_size' must be a positive integer or null, got 0"),
    (_manifest(stride="256"), "'stride' must be a positive integer or null"),
    (_manifest(masks_dir="../elsewhere"), "masks_dir '../elsewhere' points outside the dataset folder"),
    (_manifest(pairs=[{"image": "images/a.png"}]), "'pairs' must be a list of objects with an 'id'"),
    (_manifest(pairs=[{"id": "a", "mask": "/etc/a.tif"}]), "pair 'a' mask '/etc/a.tif' points outside"),
    ([1, 2], "expected a JSON object at the top level, got a list"),
    ("{broken", "not valid JSON (line 1, column 2: "),
])
def test_writer_and_reader_refuse_the_same_manifests_with_the_same_message(tmp_path, field, content, message):
    """One check of dataset.json: what the writer refuses, the reader refuses, in the same words."""
    image, labels = field
    folder = tmp_path / "set"
    save_pairs(folder, image, labels, mode="tiles", tile=256)  # a readable folder, then its manifest spoiled
    (folder / "dataset.json").write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError) as by_writer:
        save_pairs(folder, image, labels, name="more")
    with pytest.raises(ValueError) as by_reader:
        load_pairs_folder(folder)
    assert str(by_writer.value) == str(by_reader.value)
    assert str(by_reader.value).startswith(f"{folder / 'dataset.json'}: ")
    assert message in str(by_reader.value)
    assert not list((folder / "images").glob("more*")), "a refused folder gets no new pair"


def test_masks_are_written_by_write_labels(tmp_path, field, monkeypatch):
    import napari_ihcseg.pairs.writer as writer
    from napari_ihcseg.io import read_labels, write_labels

    calls = []

    def spy(path, labels, **options):
        calls.append(path)
        return write_labels(path, labels, **options)

    monkeypatch.setattr(writer, "write_labels", spy)
    image, labels = field
    saved = save_pairs(tmp_path, image, labels, mode="tiles", tile=256)
    assert sorted(calls) == sorted(tmp_path / p.mask for p in saved)
    with tifffile.TiffFile(tmp_path / saved[0].mask) as tif:  # the label TIFF every other writer makes
        page = tif.pages[0]
        assert page.dtype == np.uint32 and page.predictor == 2 and page.compression == 8
    y0, x0, y1, x1 = saved[0].region
    mask = read_labels(tmp_path / saved[0].mask)
    assert np.array_equal(mask > 0, labels[y0:y1, x0:x1] > 0)


def test_count_points_are_part_of_the_pairs(tmp_path, field):
    image, labels = field
    points = [[30.0, 30.0], [310.0, 40.0], [60.0, 410.0], [590.0, 10.0]]
    saved = save_pairs(tmp_path, image, labels, mode="tiles", tile=256, points=points,
                       point_positive=[True, False, True, False], drop_empty=False)
    by_id = {p.id: p for p in saved}
    samples = {s.name.split("/")[-1]: s for s in load_pairs_folder(tmp_path)}
    assert sum(p.n_points for p in saved) >= 4
    for pid, pair in by_id.items():
        assert pair.points == f"points/{pid}.csv" and (tmp_path / pair.points).is_file()
        sample = samples[pid]
        assert len(sample.points) == pair.n_points
        y0, x0 = pair.region[:2]
        for (r, c), cls in zip(sample.points, sample.point_classes):
            k = points.index([r + y0, c + x0])
            assert cls == (1 if k in (0, 2) else 0)


# ------------------------------------------------------------------ folders the writer did not make

def _lab_folder(root, n=3):
    """A lab's own images/ + masks/ folder (no dataset.json)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    image = np.full((64, 64, 3), 220, np.uint8)
    labels = np.zeros((64, 64), np.uint16)
    labels[5:15, 5:15] = 1
    for k in range(n):
        Image.fromarray(image).save(root / "images" / f"lab{k}.png")
        tifffile.imwrite(root / "masks" / f"lab{k}.tif", labels)
    return root


def test_saving_into_a_lab_folder_is_refused_and_its_pairs_kept(tmp_path, field):
    from napari_ihcseg.datasets.layouts import load_folder

    image, labels = field
    lab = _lab_folder(tmp_path / "lab")
    with pytest.raises(ValueError) as caught:
        save_pairs(lab, image, labels, source="/s/new.svs")
    message = str(caught.value)
    assert message.startswith(f"{lab}: already holds training data") and "\n" not in message
    assert "images/ holds 3 file(s)" in message and "Choose another" in message
    assert not (lab / "dataset.json").exists() and sorted(p.name for p in (lab / "images").iterdir()) == [
        "lab0.png", "lab1.png", "lab2.png"], "nothing is written"
    found = load_folder(lab)
    assert found.layout == "images-masks" and len(found.samples) == 3

    flat = tmp_path / "cellpose"  # images beside their masks, as Cellpose keeps them
    flat.mkdir()
    Image.fromarray(image).save(flat / "x.png")
    tifffile.imwrite(flat / "x_masks.tif", labels.astype(np.uint16))
    with pytest.raises(ValueError, match="already holds training data .*image file"):
        save_pairs(flat, image, labels, source="/s/new.svs")
    assert load_folder(flat).layout == "cellpose"

    handwritten = _lab_folder(tmp_path / "hand")  # a dataset.json without a list: every image is a pair
    (handwritten / "dataset.json").write_text(json.dumps({"format": FORMAT}))
    with pytest.raises(ValueError, match="that its dataset.json does not list"):
        save_pairs(handwritten, image, labels, source="/s/new.svs")
    assert len(load_pairs_folder(handwritten)) == 3

    empty = tmp_path / "empty"  # an empty folder (or empty images/ and masks/) is fine
    (empty / "images").mkdir(parents=True)
    (empty / "masks").mkdir()
    assert [p.id for p in save_pairs(empty, image, labels, source="/s/new.svs")] == ["new"]


def test_negative_label_ids_are_refused_naming_the_image(tmp_path, field):
    image, labels = field
    labels = labels.copy()
    labels[500:520, 500:520] = -1
    with pytest.raises(ValueError, match=r"^/slides/case\.svs: negative label ids .*400 pixel\(s\), smallest -1"):
        save_pairs(tmp_path / "set", image, labels, source="/slides/case.svs")
    with pytest.raises(ValueError, match="^field3: negative label ids"):
        save_pairs(tmp_path / "set", image, labels, name="field3", mode="tiles")
    assert not (tmp_path / "set").exists(), "nothing is written"


def test_huge_label_ids_are_renumbered(tmp_path, field):
    image, labels = field
    labels = labels.astype(np.int64)
    labels[labels == 9] = 2**40  # ids need not be small
    saved = save_pairs(tmp_path, image, labels, source="/s/big_ids.png")
    mask = tifffile.imread(tmp_path / saved[0].mask)
    assert sorted(np.unique(mask).tolist()) == [0, 1, 2, 3] and mask[60, 410] == 3


# ------------------------------------------------------------------ a save that fails or is killed

def _child_save(folder, *, kill_at_mask: int, overwrite: bool, seed: int, unlist_batch: int = 32):
    """Run a tiles save (with counted points) in a child process that SIGKILLs itself when it is about
    to write its ``kill_at_mask``-th mask (0 = never); return the process' exit code."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import napari_ihcseg

    code = f"""
import os, signal
import numpy as np
import napari_ihcseg.pairs.writer as writer
from napari_ihcseg.pairs import save_pairs
calls = []
real = writer.write_labels
def write_labels(path, labels, **options):
    calls.append(path)
    if len(calls) == {kill_at_mask}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, labels, **options)
writer.write_labels = write_labels
writer._UNLIST_BATCH = {unlist_batch}
image, labels = _field({seed})
save_pairs({str(folder)!r}, image, labels, source="/s/big.svs", mode="tiles", tile=256,
           points=[[10, 10], [300, 300]], point_positive=[True, False], overwrite={overwrite})
"""
    env = dict(os.environ, PYTHONPATH=str(Path(napari_ihcseg.__file__).parents[1]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", _FIELD_CODE + code], env=env, timeout=120).returncode


_FIELD_CODE = '''
import numpy as np
def _field(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (768, 768, 3), dtype=np.uint8), rng.integers(0, 50, (768, 768)).astype(np.int32)
'''


def _field_of(seed):
    scope = {}
    exec(_FIELD_CODE, scope)
    return scope["_field"](seed)


def _made_by(folder, pair_entry, seeds):
    """Which of ``seeds`` made the image of a pair, and which made its mask."""
    from napari_ihcseg.pairs.writer import _relabel

    y0, x0, y1, x1 = pair_entry["region"]
    image = np.asarray(Image.open(folder / pair_entry["image"]))
    mask = tifffile.imread(folder / pair_entry["mask"])
    fields = {s: _field_of(s) for s in seeds}
    return ([s for s, (im, _) in fields.items() if np.array_equal(image, im[y0:y1, x0:x1])],
            [s for s, (_, lab) in fields.items() if np.array_equal(mask, _relabel(lab[y0:y1, x0:x1]))])


def test_a_killed_first_save_leaves_a_pairs_folder_and_the_same_save_completes_it(tmp_path):
    import signal

    from napari_ihcseg.datasets.layouts import detect_layout, load_folder

    folder = tmp_path / "set"
    assert _child_save(folder, kill_at_mask=4, overwrite=False, seed=0) == -signal.SIGKILL
    assert (folder / "images").is_dir() and len(list((folder / "masks").glob("*.tif"))) == 3
    # Not mistaken for a lab's images/ + masks/ folder, whose tiles would straddle the split.
    assert detect_layout(folder) == "pairs"
    assert json.loads((folder / "dataset.json").read_text())["pairs"] == [], "only complete saves are listed"
    with pytest.raises(ValueError, match="lists none, and .* file\\(s\\) there are not listed"):
        load_folder(folder)

    assert _child_save(folder, kill_at_mask=0, overwrite=False, seed=0) == 0, "the same save, again, succeeds"
    found = load_folder(folder)
    assert len(found.samples) == 9 and not found.skipped and not found.warnings
    assert all(s.points is not None for s in found.samples) and len({s.group for s in found.samples}) == 1
    assert not [p for p in folder.rglob(".*")], "no temporary file is left"


def test_a_killed_overwrite_never_lists_a_pair_with_files_of_two_saves(tmp_path):
    import signal

    from napari_ihcseg.datasets.layouts import load_folder

    folder = tmp_path / "set"
    assert _child_save(folder, kill_at_mask=0, overwrite=False, seed=0) == 0
    # The new image of the second tile is in place when the process dies before its mask.
    assert _child_save(folder, kill_at_mask=2, overwrite=True, seed=1, unlist_batch=2) == -signal.SIGKILL
    meta = json.loads((folder / "dataset.json").read_text())
    listed = {p["id"]: p for p in meta["pairs"]}
    for entry in listed.values():
        made_image, made_mask = _made_by(folder, entry, (0, 1))
        assert made_image == made_mask == [0], f"{entry['id']}: image and mask of one save"
    assert len(listed) == 7, "the two tiles being replaced are out of the list, the others still in it"
    found = load_folder(folder)
    assert len(found.samples) == 7 and "does not list are ignored" in found.warnings[0]

    assert _child_save(folder, kill_at_mask=0, overwrite=True, seed=1) == 0
    meta = json.loads((folder / "dataset.json").read_text())
    assert len(meta["pairs"]) == 9
    assert all(_made_by(folder, e, (0, 1)) == ([1], [1]) for e in meta["pairs"])
    assert not load_folder(folder).warnings


def _fail_at_mask(monkeypatch, n):
    import errno

    import napari_ihcseg.pairs.writer as writer

    calls = []
    real = writer.write_labels

    def write_labels(path, labels, **options):
        calls.append(path)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, f"{path}: cannot write it, the disk is full")
        return real(path, labels, **options)

    monkeypatch.setattr(writer, "write_labels", write_labels)


def test_a_failed_save_lists_none_of_its_pairs_and_keeps_those_it_did_not_reach(tmp_path, field, monkeypatch):
    image, labels = field
    first = save_pairs(tmp_path, image, labels, mode="tiles", source="/s/a.png")
    assert len(first) == 4
    before = {p.id: (tmp_path / p.mask).read_bytes() for p in first}
    moved = np.roll(labels, 3, axis=0)  # every nucleus corrected: 3 pixels lower
    _fail_at_mask(monkeypatch, 2)
    with pytest.raises(OSError, match="disk is full"):
        save_pairs(tmp_path, image, moved, mode="tiles", source="/s/a.png", overwrite=True)
    listed = TrainingPairWriter(tmp_path).pair_ids()
    assert all((tmp_path / "masks" / f"{pid}.tif").read_bytes() == before[pid] for pid in listed), \
        "a listed pair is the old one, whole"
    assert sorted(listed) == sorted(p.id for p in first[2:]), "the two tiles it reached are out of the list"
    for sample in load_pairs_folder(tmp_path):
        pair = next(p for p in first if sample.name.endswith(p.id))
        assert np.array_equal(sample.image, image[pair.region[0]:pair.region[2], pair.region[1]:pair.region[3]])

    _fail_at_mask(monkeypatch, 2)
    with pytest.raises(OSError, match="disk is full"):
        save_pairs(tmp_path, image, labels, mode="tiles", source="/s/new.png")
    assert not list((tmp_path / "images").glob("new*")), "a failed save leaves no file it added"
    monkeypatch.undo()
    assert len(save_pairs(tmp_path, image, labels, mode="tiles", source="/s/new.png")) == 4, "and can be done again"


# ------------------------------------------------------------------ a bad pair is skipped

@pytest.mark.parametrize("damage, problem", [
    (lambda d: (d / "masks" / "case1.tif").unlink(), "masks/case1.tif: listed in "),
    (lambda d: tifffile.imwrite(d / "masks" / "case1.tif", np.zeros((64, 64), np.uint32)),
     "masks/case1.tif: shape (64, 64) differs from its image (128, 128)"),
    (lambda d: (d / "images" / "case1.png").write_bytes(b"\x89PNG garbage"), "images/case1.png: cannot read"),
    (lambda d: tifffile.imwrite(d / "masks" / "case1.tif", np.zeros((128, 128), np.float32)),
     "masks/case1.tif: labels must be integers"),
    (lambda d: (d / "points" / "case1.csv").write_text("type,x\n1,2\n"), "points/case1.csv: missing column(s) y"),
    (lambda d: (d / "points" / "case1.csv").write_text("type,x,y\n1,500,2\n"),
     "points/case1.csv: 1 point(s) lie outside its image"),
])
def test_a_bad_pair_is_skipped_naming_the_file_and_the_good_ones_used(tmp_path, damage, problem):
    from napari_ihcseg.datasets.layouts import load_folder

    image = np.full((128, 128, 3), 220, np.uint8)
    labels = np.zeros((128, 128), np.int32)
    labels[10:20, 10:20] = 1
    folder = tmp_path / "set"
    for k in range(3):
        save_pairs(folder, image, labels, source=f"/s/case{k}.svs", points=[[15, 15]], point_positive=[True])
    damage(folder)
    found = load_folder(folder)
    assert found.layout == "pairs" and [s.name for s in found.samples] == ["set/case0", "set/case2"]
    assert len(found.skipped) == 1 and "\n" not in found.skipped[0]
    assert found.skipped[0].startswith(str(folder)) and problem in found.skipped[0]
    assert "1 skipped" in found.summary()
    from napari_ihcseg.pairs import read_pairs_folder

    assert read_pairs_folder(folder).skipped == found.skipped
    with pytest.raises(ValueError, match="case1"):  # the strict reader stops at it
        load_pairs_folder(folder)


def test_a_pairs_folder_without_a_usable_pair_is_refused(tmp_path, field):
    from napari_ihcseg.datasets.layouts import load_folder

    image, labels = field
    save_pairs(tmp_path / "set", image, labels, source="/s/only.svs")
    (tmp_path / "set" / "masks" / "only.tif").unlink()
    with pytest.raises(ValueError, match=r"training pairs .* but no pair could be read \(.*only\.tif: listed in"):
        load_folder(tmp_path / "set")


def test_files_the_manifest_does_not_list_are_ignored_with_a_warning(tmp_path, field):
    from napari_ihcseg.datasets.layouts import load_folder

    image, labels = field
    save_pairs(tmp_path / "set", image, labels, source="/s/a.svs")
    Image.fromarray(image).save(tmp_path / "set" / "images" / "stray.png")
    tifffile.imwrite(tmp_path / "set" / "masks" / "stray.tif", (labels > 0).astype(np.uint32))
    found = load_folder(tmp_path / "set")
    assert [s.name for s in found.samples] == ["set/a"]
    assert found.warnings == [f"{tmp_path / 'set'}: 2 file(s) that dataset.json does not list are ignored "
                              "(e.g. images/stray.png); a save that did not finish leaves such files, save "
                              "those pairs again to use them"]


# ------------------------------------------------------------------ saves into one folder take turns

def test_two_saves_at_once_into_one_folder_both_stay_listed(tmp_path, field, monkeypatch):
    """Two windows saving into the lab's folder: the second reads dataset.json after the first has listed its pairs."""
    import threading
    import time

    from napari_ihcseg.pairs import writer as writer_module

    image, labels = field
    slow = writer_module.TrainingPairWriter._write_pair

    def write_slowly(self, *args, **kwargs):  # both saves are writing files at the same moment
        time.sleep(0.3)
        return slow(self, *args, **kwargs)

    monkeypatch.setattr(writer_module.TrainingPairWriter, "_write_pair", write_slowly)
    errors = []

    def save(name):
        try:
            save_pairs(tmp_path, image, labels, source=f"/slides/{name}.png")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(TrainingPairWriter(tmp_path).pair_ids()) == ["a", "b"]
    assert sorted(s.name.rpartition("/")[2] for s in load_pairs_folder(tmp_path)) == ["a", "b"]


def test_a_folder_locked_by_another_process_waits_and_a_crash_frees_it(tmp_path):
    import subprocess
    import sys

    from napari_ihcseg._folder_lock import folder_lock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom napari_ihcseg._folder_lock import folder_lock\n"
         f"with folder_lock({str(tmp_path)!r}):\n    print('held', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError, match=rf"{tmp_path}: another save has been writing to this dataset folder"):
            with folder_lock(tmp_path, timeout=0.3, what="dataset folder"):
                pass
    finally:
        holder.kill()  # dies holding the lock
        holder.wait(10)
    assert [p.name for p in tmp_path.iterdir()] == [".napari-ihcseg.lock"], "the crash left the file"
    with folder_lock(tmp_path, timeout=5):
        pass
    assert not list(tmp_path.iterdir()), "and the next writer removed it"


def test_the_tiles_of_one_image_stay_on_one_side_of_the_split(tmp_path, field):
    """Tiles of an image not read from a file (named by the layer), and one slide's pairs saved into two
    folders, are one image each: a split never trains on some of its tiles and validates on the others."""
    from napari_ihcseg.data.sample import split_by_image

    image, labels = field
    save_pairs(tmp_path / "a", image, labels, mode="tiles", drop_empty=False, name="slide7")
    samples = load_pairs_folder(tmp_path / "a")
    assert len(samples) > 1 and len({s.group for s in samples}) == 1
    for who in ("alice", "bob"):
        save_pairs(tmp_path / who, image, labels, mode="region", region=(0, 0, 256, 256) if who == "alice"
                   else (256, 256, 512, 512), source="/slides/case1.svs", drop_empty=False)
    both = load_pairs_folder(tmp_path / "alice") + load_pairs_folder(tmp_path / "bob")
    assert len({s.group for s in both}) == 1
    for seed in range(4):
        train, val = split_by_image(samples + both, 0.5, seed)
        assert {s.group for s in train}.isdisjoint({s.group for s in val})


def test_a_point_on_the_last_half_pixel_of_a_tile_is_saved_with_the_tile_it_lies_on(tmp_path, field):
    image, labels = field
    saved = save_pairs(tmp_path, image, labels, mode="tiles", drop_empty=False, points=[[255.6, 255.6], [255.4, 10]],
                       point_positive=[True, False], source="/s/c.tif")
    counts = {p.id: p.n_points for p in saved if p.n_points}
    assert counts == {"c_t256_y00000_x00000": 1, "c_t256_y00256_x00256": 1}
    assert sum(len(s.points) for s in load_pairs_folder(tmp_path) if s.points is not None) == 2


def test_a_manifest_listing_a_pair_twice_is_refused(tmp_path, field):
    image, labels = field
    save_pairs(tmp_path, image, labels, source="/s/d.tif")
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["pairs"].append(dict(meta["pairs"][0]))
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="lists the pair 'd' twice"):
        load_pairs_folder(tmp_path)


def test_pair_masks_with_ids_over_2_31_are_renumbered_not_wrapped(tmp_path, field):
    image, labels = field
    save_pairs(tmp_path, image, labels, source="/s/e.tif")
    huge = np.where(labels > 0, labels.astype(np.uint32) + 3_000_000_000, 0).astype(np.uint32)
    tifffile.imwrite(tmp_path / "masks" / "e.tif", huge, compression="zlib")
    sample = load_pairs_folder(tmp_path)[0]
    assert sample.labels.min() == 0 and len(np.unique(sample.labels)) == len(np.unique(labels))


def test_a_source_path_as_typed_is_recorded_absolute(tmp_path, field, monkeypatch):
    """napari keeps a path as typed: case1.tif opened in two folders is two slides, and the same slide named
    relatively, then absolutely, is one."""
    image, labels = field
    out = TrainingPairWriter(tmp_path / "pairs")
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "case1.tif").write_bytes(b"")
    monkeypatch.chdir(tmp_path / "a")
    first = out.save(image, labels, source="case1.tif")
    assert first[0].source == str(tmp_path / "a" / "case1.tif")
    monkeypatch.chdir(tmp_path / "b")
    assert [p.id for p in out.save(image, labels, source="case1.tif")] == ["case1-2"]
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileExistsError, match="'case1'"):
        out.save(image, labels, source=str(tmp_path / "a" / "case1.tif"))
