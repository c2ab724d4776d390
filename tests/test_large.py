"""Whole-slide segmentation block by block: halos, ownership, tissue, corrupt tiles."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
import zarr

from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.data.synthetic_slide import make_synthetic_slide
from napari_ihcseg.inference import (
    BlockReadError,
    Cancelled,
    InferenceConfig,
    TissueMask,
    detect_tissue,
    segment_image,
    segment_large,
)
from napari_ihcseg.inference.blocks import _new_ids, block_grid, owns
from napari_ihcseg.io import ImageReadError, open_image, read_labels
from napari_ihcseg.metrics import aggregated_jaccard_index
from napari_ihcseg.stain import rgb_to_od

from fakes import ODNet

CONFIG = InferenceConfig(tile=128, overlap=32, device="cpu", amp=False)
BLOCK = 192


def write_pyramid(path, image, *, tile=64, levels=3, compression="zlib"):
    """A tiled pyramidal TIFF (level 0 plus SubIFDs), as slide scanners write."""
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(image, tile=(tile, tile), photometric="rgb", compression=compression, subifds=levels - 1)
        level = image
        for _ in range(levels - 1):
            level = level[::2, ::2]
            tw.write(level, tile=(tile, tile), photometric="rgb", compression=compression, subfiletype=1)
    return path


@pytest.fixture(scope="module")
def field():
    return make_synthetic_ihc((448, 576), seed=11, density=0.35)


@pytest.fixture(scope="module")
def field_tiff(field, tmp_path_factory):
    return write_pyramid(tmp_path_factory.mktemp("slide") / "field.tif", field.image)


def nuclei_on_block_borders(labels, block) -> int:
    ids = set()
    for y in range(block, labels.shape[0], block):
        ids |= set(np.unique(labels[y - 1][labels[y - 1] == labels[y]]))
    for x in range(block, labels.shape[1], block):
        ids |= set(np.unique(labels[:, x - 1][labels[:, x - 1] == labels[:, x]]))
    return len(ids - {0})


def test_blocks_give_the_same_nuclei_as_one_piece(field, field_tiff, tmp_path):
    assert nuclei_on_block_borders(field.labels, BLOCK) >= 15  # meaningful only with nuclei on block borders
    model = ODNet()
    with open_image(field_tiff) as img:
        result = segment_large(img, model, out=tmp_path / "labels.zarr", config=CONFIG, block=BLOCK, tissue=False)
    blocks = zarr.open_array(str(result.path), mode="r")
    assert blocks.shape == field.image.shape[:2] and blocks.dtype == np.uint32
    labels = np.asarray(blocks[:]).astype(np.int32)
    one = segment_image(field.image, ODNet(), CONFIG).labels
    assert result.n_nuclei == labels.max() == one.max() >= 80
    assert aggregated_jaccard_index(labels, one) >= 0.99
    # Ids are unique and consecutive over the slide: nothing counted twice, no gaps.
    np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))
    assert result.blocks == 9 and result.skipped_blocks == 0 and result.halo_touching == 0
    assert blocks.attrs["n_nuclei"] == result.n_nuclei


def test_a_nucleus_across_a_block_corner_is_written_once_and_whole(tmp_path):
    # One dark disk centred on the corner shared by four blocks.
    img = np.full((384, 384, 3), 235, np.uint8)
    yy, xx = np.mgrid[:384, :384]
    disk = (yy - 191.5) ** 2 + (xx - 191.5) ** 2 < 20 ** 2
    img[disk] = (60, 60, 140)
    out = segment_large(img, ODNet(), out=tmp_path / "corner.zarr", config=CONFIG, block=BLOCK, tissue=False).path
    labels = np.asarray(zarr.open_array(str(out), mode="r")[:])
    assert labels.max() == 1
    assert np.logical_xor(labels > 0, disk).sum() < 0.1 * disk.sum()


def test_tiff_output_is_readable(field, tmp_path):
    img = field.image[:256, :384]
    out = segment_large(img, ODNet(), out=tmp_path / "labels.tif", config=CONFIG, block=BLOCK, tissue=False).path
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.dtype == np.uint32 and tif.is_bigtiff
    labels = read_labels(out)
    assert labels.shape == (256, 384)
    assert aggregated_jaccard_index(labels, segment_image(img, ODNet(), CONFIG).labels) >= 0.99
    assert not [p for p in tmp_path.iterdir() if p.name != "labels.tif"]  # the temporary store is gone


def test_background_blocks_are_skipped(tmp_path):
    path = make_synthetic_slide(tmp_path / "slide.tif", (384, 576), tile=256, tissue_fraction=0.3, seed=2,
                                compression="zlib")
    with open_image(path) as img:
        tissue = detect_tissue(img)
        grid = block_grid(img.shape, BLOCK, 96)  # the default halo: overlap 32 + 64, a multiple of 32
        skipped = [core for core, _ in grid if not tissue.has_tissue(core)]
        assert 0 < len(skipped) < len(grid)
        model = ODNet()
        result = segment_large(img, model, out=tmp_path / "skip.zarr", config=CONFIG, block=BLOCK)
        all_model = ODNet()
        everything = segment_large(img, all_model, out=tmp_path / "all.zarr", config=CONFIG, block=BLOCK,
                                   tissue=False)
    assert result.skipped_blocks == len(skipped)
    assert sum(model.batches) == result.tiles < everything.tiles == sum(all_model.batches)
    fast = np.asarray(zarr.open_array(str(result.path), mode="r")[:])
    full = np.asarray(zarr.open_array(str(everything.path), mode="r")[:])
    for core in skipped:
        assert (fast[core.slices] == 0).all()
        # Segmenting those blocks anyway finds (almost) nothing there: no tissue was skipped.
        assert (full[core.slices] > 0).mean() < 0.002
    assert result.n_nuclei > 0
    assert aggregated_jaccard_index(fast, full) >= 0.99


def test_a_list_of_levels_is_the_slide_it_comes_from(tmp_path):
    # The levels of a napari multiscale layer, given as a list, segment as the opened file does.
    path = make_synthetic_slide(tmp_path / "slide.tif", (384, 576), tile=256, tissue_fraction=0.3, seed=2,
                                compression="zlib")
    with open_image(path) as img:
        assert img.is_multiscale
        by_file = segment_large(img, ODNet(), out=tmp_path / "file.zarr", config=CONFIG, block=BLOCK)
        by_levels = segment_large(list(img.levels), ODNet(), out=tmp_path / "levels.zarr", config=CONFIG,
                                  block=BLOCK, source=str(path))
    assert by_levels.skipped_blocks == by_file.skipped_blocks > 0  # the tissue is found on the levels too
    assert by_levels.n_nuclei == by_file.n_nuclei > 0
    np.testing.assert_array_equal(zarr.open_array(str(by_levels.path), mode="r")[:],
                                  zarr.open_array(str(by_file.path), mode="r")[:])
    with pytest.raises(ValueError, match="no resolution level"):
        segment_large([], ODNet(), out=tmp_path / "none.zarr", config=CONFIG, block=BLOCK)


def test_each_centroid_is_owned_by_exactly_one_core():
    grid = block_grid((300, 200), 64, 16)
    rng = np.random.default_rng(0)
    cy, cx = rng.uniform(0, 300, 2000), rng.uniform(0, 200, 2000)
    cy[:3], cx[:3] = (64.0, 63.999, 0.0), (128.0, 127.5, 199.9)  # on and next to core edges
    owners = np.sum([owns(core, cy, cx) for core, _ in grid], axis=0)
    np.testing.assert_array_equal(owners, 1)


def test_a_corrupt_tile_names_the_file_and_the_block(tmp_path):
    image = make_synthetic_ihc((1344, 320), seed=5).image
    path = write_pyramid(tmp_path / "corrupt.tif", image, tile=64, levels=1)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        index = 17 * (320 // 64) + 2  # the tile at y = 1088, x = 128
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes(range(256)) * (count // 256) + b"\xff" * (count % 256))
    block = 512
    with open_image(path) as img:
        # The reader decodes whole chunks: the first block whose region reaches
        # into the chunk that holds the bad tile is the one that fails.
        bounds = np.cumsum((0, *img.levels[0].chunks[0]))
        c0, c1 = next((a, b) for a, b in zip(bounds, bounds[1:]) if a <= 1088 < b)
        first = next(r for _, r in block_grid(image.shape, block, 96) if r.y0 < c1 and r.y1 > c0)
        assert first.y0 > 0  # some blocks are read fine before it
        with pytest.raises(BlockReadError) as info:
            segment_large(img, ODNet(), out=tmp_path / "labels.zarr", config=CONFIG, block=block, tissue=False)
    message = str(info.value)
    assert isinstance(info.value, ImageReadError)
    assert message.startswith(f"{path}: cannot decode the block at y={first.y0}, x={first.x0} (")
    assert "\n" not in message
    assert not (tmp_path / "labels.zarr").exists()


def test_cancel_leaves_no_output(field, tmp_path):
    event = threading.Event()
    calls = []

    def progress(done, total):
        calls.append(done)
        if done > 0:
            event.set()

    with pytest.raises(Cancelled):
        segment_large(field.image, ODNet(), out=tmp_path / "labels.zarr", config=CONFIG, block=BLOCK,
                      tissue=False, progress=progress, cancel=event)
    assert list(tmp_path.iterdir()) == []
    assert calls == sorted(calls)


def test_progress_reaches_the_total(field, tmp_path):
    calls = []
    segment_large(field.image[:256, :320], ODNet(), out=tmp_path / "p.zarr", config=CONFIG, block=BLOCK,
                  tissue=False, progress=lambda d, t: calls.append((d, t)))
    total = calls[0][1]
    assert calls[0] == (0, total) and calls[-1] == (total, total)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_existing_output_and_bad_names_are_refused(field, tmp_path):
    (tmp_path / "taken.zarr").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        segment_large(field.image[:64, :64], ODNet(), out=tmp_path / "taken.zarr", config=CONFIG, block=BLOCK)
    with pytest.raises(ValueError, match=r"\.zarr, \.tif or \.tiff"):
        segment_large(field.image[:64, :64], ODNet(), out=tmp_path / "labels.png", config=CONFIG, block=BLOCK)
    with pytest.raises(ValueError, match="block"):
        segment_large(field.image[:64, :64], ODNet(), out=tmp_path / "b.zarr", config=CONFIG, block=100)
    out = segment_large(field.image[:64, :64], ODNet(), out=tmp_path / "taken.zarr", config=CONFIG, block=BLOCK,
                        tissue=False, overwrite=True).path
    assert zarr.open_array(str(out), mode="r").shape == (64, 64)


def test_a_nucleus_claimed_by_two_blocks_is_written_once():
    # The earlier block wrote nucleus 5; this block's view of it (id 1) is shifted by a pixel.
    current = np.zeros((20, 20), np.uint32)
    current[2:10, 2:10] = 5
    owned = np.zeros((20, 20), np.int32)
    owned[3:11, 2:10] = 1  # 7 of its 8 rows are taken: the same nucleus
    owned[12:18, 12:18] = 2  # a new nucleus
    owned[9:12, 11:14] = 3  # touches nothing written
    ids, dropped = _new_ids(owned, current, offset=5)
    assert dropped == 1
    assert (ids[owned == 1] == 0).all()
    assert set(np.unique(ids)) == {0, 6, 7}
    assert (ids[owned == 2] == 6).all() and (ids[owned == 3] == 7).all()


def test_block_grid_cores_tile_the_image():
    shape = (1000, 700)
    count = np.zeros(shape, int)
    for core, region in block_grid(shape, 256, 64):
        count[core.slices] += 1
        assert region.y0 <= core.y0 and region.y1 >= core.y1 and region.x0 <= core.x0 and region.x1 >= core.x1
        assert region.y0 == max(core.y0 - 64, 0) and region.x1 == min(core.x1 + 64, 700)
    assert (count == 1).all()


def test_tissue_detection_on_a_slide(tmp_path):
    slide = np.full((600, 800, 3), 242, np.uint8)
    tissue = make_synthetic_ihc((300, 400), seed=1).image
    slide[100:400, 300:700] = tissue
    found = detect_tissue([slide, slide[::4, ::4]], downsample=8)
    assert found.mask.shape == (75, 100) and found.shape == (600, 800)
    assert found.has_tissue((150, 400, 350, 600))
    assert not found.has_tissue((450, 0, 600, 250))
    assert 0.15 < found.fraction < 0.4
    glass = float(rgb_to_od(np.array([[[242, 242, 242]]], np.uint8)).sum())
    assert glass + 0.015 <= found.threshold <= glass + 0.055  # just above the slide's own glass


def test_tissue_detection_extremes():
    glass = np.full((256, 256, 3), 240, np.uint8)
    glass = np.clip(glass + np.random.default_rng(0).normal(0, 2, glass.shape), 0, 255).astype(np.uint8)
    assert not detect_tissue(glass).mask.any()
    tissue = make_synthetic_ihc((256, 256), seed=3).image
    assert detect_tissue(tissue[::2, ::2]).fraction > 0.9
    # Uniform images: Otsu is undefined; glass stays glass, stained tissue stays tissue.
    assert not detect_tissue(np.full((64, 64, 3), 242, np.uint8)).mask.any()
    assert detect_tissue(np.full((64, 64, 3), (150, 110, 160), np.uint8)).mask.all()


def test_pale_tissue_keeps_every_annotated_nucleus(shared_data):
    # Two Ki-67 fields that are all tissue, much of it pale stroma: skipping any
    # annotated nucleus would lose it from the count.
    from PIL import Image

    for case in ("17993-04", "503-05"):
        folder = shared_data / "ki67-points" / case
        image = np.asarray(Image.open(folder / "base.png").convert("RGB"))
        points = np.loadtxt(folder / "markers.csv", delimiter=",", skiprows=1, usecols=(1, 2))
        tissue = detect_tissue(image)
        assert all(tissue.has_tissue((int(y), int(x), int(y) + 1, int(x) + 1)) for x, y in points)
        assert tissue.fraction > 0.9


def test_a_given_tissue_mask_is_scaled_to_the_slide():
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = True
    t = TissueMask(mask, (1024, 1024))
    assert t.has_tissue((0, 0, 256, 256)) and t.has_tissue((255, 255, 300, 300))
    assert not t.has_tissue((256, 256, 1024, 1024))


def test_the_default_block_is_fitted_to_the_tile_plan(field, tmp_path):
    from napari_ihcseg.inference.planning import fit_block, plan_tiles

    result = segment_large(field.image, ODNet(), out=tmp_path / "fitted.zarr", config=CONFIG, tissue=False)
    assert result.block == fit_block(result.halo, tile=CONFIG.tile, overlap=CONFIG.overlap)
    assert result.blocks == 1 and result.n_nuclei > 0
    region = result.block + 2 * result.halo
    assert plan_tiles((region, region), tile=CONFIG.tile, overlap=CONFIG.overlap).tile_shape == (128, 128)
    with pytest.raises(ValueError, match="block must be a positive multiple of 32"):
        segment_large(field.image, ODNet(), out=tmp_path / "bad.zarr", config=CONFIG, block=100)
