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
        assert sample.stain == "ki67"


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
