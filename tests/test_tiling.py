"""The pure tiling functions: tile grids, batches, blend windows, stitching, padding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_ihcseg.inference.planning import DEFAULT_TILE, fit_axis, fit_block, plan_tiles
from napari_ihcseg.inference.tiling import (
    Box,
    Stitcher,
    batched,
    blend_window,
    pad_to_multiple,
    round_up,
    tile_boxes,
    tile_starts,
)


def coverage(shape, boxes) -> np.ndarray:
    count = np.zeros(shape, np.int32)
    for b in boxes:
        count[b.slices] += 1
    return count


@pytest.mark.parametrize(
    ("size", "tile", "overlap", "expected"),
    [
        (1000, 256, 32, [0, 224, 448, 672, 744]),
        (512, 512, 64, [0]),  # tile == image
        (100, 512, 64, [0]),  # tile > image
        (513, 512, 64, [0, 1]),  # one pixel too many: the last tile shifts by one
        (896, 512, 128, [0, 384]),  # exact fit of a regular grid
        (7, 3, 0, [0, 3, 4]),  # no overlap requested, odd size
        (600, 256, 0, [0, 256, 344]),  # a training grid with stride 256
        (512, 256, 0, [0, 256]),
        (300, 256, 128, [0, 44]),  # stride 128
        (1000, 256, -44, [0, 300, 600, 744]),  # stride 300: gaps, the last tile still flush
    ],
)
def test_tile_starts_table(size, tile, overlap, expected):
    assert tile_starts(size, tile, overlap) == expected


@pytest.mark.parametrize(("size", "tile", "overlap"), [(0, 8, 2), (10, 0, 0), (10, 8, 8), (10, 8, 9)])
def test_tile_starts_rejects_bad_arguments(size, tile, overlap):
    with pytest.raises(ValueError):
        tile_starts(size, tile, overlap)


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 700), w=st.integers(1, 700), tile=st.integers(2, 300), data=st.data())
def test_tile_boxes_cover_every_pixel_inside_the_image(h, w, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    boxes = tile_boxes((h, w), tile, overlap)
    # Every pixel covered, every box inside the image and of one size.
    assert coverage((h, w), boxes).min() >= 1
    assert all(0 <= b.y0 < b.y1 <= h and 0 <= b.x0 < b.x1 <= w for b in boxes)
    assert len({b.shape for b in boxes}) == 1
    assert boxes[0].shape == (min(tile, h), min(tile, w))
    # Neighbours overlap by at least the requested amount, and no tile is redundant.
    ys = sorted({b.y0 for b in boxes})
    for a, b in zip(ys, ys[1:]):
        assert a + min(tile, h) - b >= overlap
        assert b > a
    assert len(boxes) == len(set(boxes))


def test_tile_boxes_for_a_4096_by_3286_field():
    boxes = tile_boxes((4096, 3286), 512, 64)
    assert len(boxes) == 9 * 8
    assert boxes[-1] == Box(4096 - 512, 3286 - 512, 4096, 3286)


def test_box_helpers():
    b = Box(10, 20, 30, 60)
    assert b.shape == (20, 40)
    assert b.edges((30, 100)) == (False, True, False, False)
    assert b.shift(-10, -20) == Box(0, 0, 20, 40)
    assert Box(-5, -5, 5, 200).clip((100, 100)) == Box(0, 0, 5, 100)


@settings(max_examples=50, deadline=None)
@given(items=st.lists(st.integers(), max_size=40), n=st.integers(1, 9))
def test_batched_keeps_order_and_sizes(items, n):
    batches = list(batched(items, n))
    assert [x for b in batches for x in b] == items
    assert all(len(b) == n for b in batches[:-1])
    assert all(1 <= len(b) <= n for b in batches)


def test_batched_rejects_zero():
    with pytest.raises(ValueError, match="at least 1"):
        list(batched([1, 2], 0))


@pytest.mark.parametrize("kind", ["cosine", "gaussian", "constant"])
def test_blend_window_is_non_negative_symmetric_and_peaks_at_one(kind):
    w = blend_window((48, 64), 16, kind)
    assert w.shape == (48, 64) and w.dtype == np.float32
    assert (w >= 0).all() and (w <= 1).all()
    assert (w > 0).all() or kind == "cosine"
    assert w.max() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-7)


def test_cosine_window_is_zero_then_ramps_within_the_overlap():
    w = blend_window((1, 100), 20)[0]
    assert (w[:5] == 0).all() and (w[-5:] == 0).all()  # the outer quarter of the overlap is not used
    assert (np.diff(w[5:15]) > 0).all()
    assert (w[15:85] == 1).all()


def test_flat_edges_stay_at_one():
    w = blend_window(32, 8, edges=(True, False, False, True))
    assert (w[0, 8:] == 1).all()  # top side flat (beside the left ramp)
    assert (w[:24, -1] == 1).all()  # right side flat (above the bottom ramp)
    assert w[-1, 16] == 0 and 0 < w[-3, 16] < 1  # bottom keeps its margin and ramp


@pytest.mark.parametrize("stride_tiles", [3, 5])
def test_cosine_windows_of_a_regular_grid_sum_to_one(stride_tiles):
    tile, overlap = 64, 16
    size = tile + (stride_tiles - 1) * (tile - overlap)  # tiles fit exactly
    total = np.zeros((size, size))
    for b in tile_boxes((size, size), tile, overlap):
        total[b.slices] += blend_window(tile, overlap, edges=b.edges((size, size)))
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize(("kind", "error"), [("box", ValueError)])
def test_blend_window_rejects_unknown_kind(kind, error):
    with pytest.raises(error, match="cosine"):
        blend_window(16, 4, kind)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(8, 200), w=st.integers(8, 200), tile=st.integers(8, 64), data=st.data(),
       kind=st.sampled_from(["cosine", "gaussian", "constant"]))
def test_stitching_exact_crops_gives_back_the_image(h, w, tile, data, kind):
    overlap = data.draw(st.integers(0, tile - 1))
    rng = np.random.default_rng(h * 1000 + w)
    truth = rng.random((2, h, w)).astype(np.float32)
    st_ = Stitcher((h, w), channels=2)
    for b in tile_boxes((h, w), tile, overlap):
        st_.add(b, truth[(slice(None), *b.slices)], blend_window(b.shape, overlap, kind, edges=b.edges((h, w))))
    assert st_.coverage.all()
    # float32 accumulation of several weighted tiles: a few ulps of error per pixel
    np.testing.assert_allclose(st_.result(), truth, rtol=1e-4, atol=1e-5)


def test_stitcher_blends_disagreeing_tiles_smoothly():
    # Two tiles that predict 0 and 1: the blend ramps over the overlap, without a step.
    st_ = Stitcher((1, 96), channels=1)
    left, right = Box(0, 0, 1, 64), Box(0, 32, 1, 96)
    st_.add(left, np.zeros((1, 1, 64)), blend_window((1, 64), 32, edges=left.edges((1, 96))))
    st_.add(right, np.ones((1, 1, 64)), blend_window((1, 64), 32, edges=right.edges((1, 96))))
    row = st_.result()[0, 0]
    assert (row[:40] == 0).all() and (row[56:] == 1).all()  # each tile's outer 8 pixels are not used
    assert (np.diff(row[40:56]) > 0).all()
    assert np.abs(np.diff(row)).max() < 0.15


def test_stitcher_leaves_uncovered_pixels_at_zero_and_checks_shapes():
    st_ = Stitcher((10, 10), channels=1)
    st_.add(Box(0, 0, 5, 5), np.full((5, 5), 3.0), np.ones((5, 5), np.float32))
    out = st_.result()
    assert out[0, :5, :5].tolist() == np.full((5, 5), 3.0).tolist()
    assert (out[0, 5:] == 0).all()
    with pytest.raises(RuntimeError, match="already"):
        st_.add(Box(0, 0, 5, 5), np.ones((5, 5)), np.ones((5, 5), np.float32))
    st2 = Stitcher((10, 10), channels=2)
    with pytest.raises(ValueError, match="does not fit"):
        st2.add(Box(0, 0, 5, 5), np.ones((1, 5, 5)), np.ones((5, 5), np.float32))
    with pytest.raises(ValueError, match="outside"):
        st2.add(Box(8, 8, 13, 13), np.ones((2, 5, 5)), np.ones((5, 5), np.float32))


@pytest.mark.parametrize(("shape", "multiple", "expected"), [((20, 40, 3), 32, (32, 64, 3)), ((64, 33), 32, (64, 64)),
                                                              ((1, 1, 3), 32, (32, 32, 3))])
def test_pad_to_multiple(shape, multiple, expected):
    img = np.arange(np.prod(shape)).reshape(shape).astype(np.float32)
    padded, hw = pad_to_multiple(img, multiple)
    assert padded.shape == expected and hw == shape[:2]
    np.testing.assert_array_equal(padded[: shape[0], : shape[1]], img)


def test_pad_to_multiple_returns_the_same_array_when_nothing_to_do():
    img = np.zeros((64, 96, 3), np.uint8)
    padded, _ = pad_to_multiple(img, 32)
    assert padded is img
    assert pad_to_multiple(img, 32, min_shape=(128, 128))[0].shape == (128, 128, 3)
    assert round_up(33, 32) == 64 and round_up(32, 32) == 32


@pytest.mark.parametrize(
    ("shape", "tile_shape", "padded"),
    [((4096, 3286), (512, 480), (4096, 3286)), ((100, 1000), (128, 1024), (128, 1024)), ((1, 1), (32, 32), (32, 32)),
     ((500, 500), (512, 512), (512, 512)), ((640, 640), (352, 640), (640, 640))],
)
def test_plan_tiles_pads_only_axes_one_tile_covers(shape, tile_shape, padded):
    plan = plan_tiles(shape, tile=512, overlap=64)
    assert plan.tile_shape == tile_shape and plan.padded_shape == padded
    assert coverage(padded, plan.boxes)[: shape[0], : shape[1]].min() >= 1


#: Fields from a 256² crop to the block segment_large reads from a whole slide (4096 + 2 × 128 halo).
FIELDS = [(256, 256), (512, 512), (640, 640), (1000, 1000), (1024, 1024), (1100, 1100), (1500, 1200), (2048, 2048),
          (3000, 4000), (4096, 3286), (4352, 4352), (8192, 6000), (20000, 30000)]


@pytest.mark.parametrize("shape", FIELDS)
def test_plan_computes_little_more_than_the_image(shape):
    plan = plan_tiles(shape)
    assert plan.computed_ratio <= 1.2, (plan.tile_shape, len(plan.boxes))
    th, tw = plan.tile_shape
    assert th * tw <= DEFAULT_TILE**2 and max(th, tw) <= 2 * DEFAULT_TILE and th % 32 == 0 and tw % 32 == 0
    assert plan.computed_ratio == len(plan.boxes) * th * tw / (shape[0] * shape[1])
    count = coverage(plan.padded_shape, plan.boxes)
    assert count[: shape[0], : shape[1]].min() >= 1
    assert all(b.shape == plan.tile_shape and b.y0 >= 0 and b.x0 >= 0 for b in plan.boxes)
    # Neighbours overlap by the least overlap or more, and the blend band is the smallest overlap.
    ys = sorted({b.y0 for b in plan.boxes})
    xs = sorted({b.x0 for b in plan.boxes})
    for starts, tile, band in ((ys, th, plan.overlap[0]), (xs, tw, plan.overlap[1])):
        gaps = [tile - (b - a) for a, b in zip(starts, starts[1:])]
        assert band == (min(gaps) if gaps else 0)
        assert not gaps or band >= 64


def test_a_field_up_to_the_largest_tile_is_one_tile():
    for shape in [(256, 256), (640, 640), (1024, 1024), (700, 1000)]:
        plan = plan_tiles(shape)
        assert len(plan.boxes) == 1
        assert plan.padded_shape == plan.tile_shape == (round_up(shape[0], 32), round_up(shape[1], 32))
    # The old fixed grid ran 2 × 2 tiles of 512 for a 640² field: 2.56 times its pixels; a budget
    # of 512² pixels per tile now runs two tiles of 352 × 640.
    assert plan_tiles((640, 640)).computed_ratio == 1.0
    assert plan_tiles((640, 640), tile=512).computed_ratio == 2 * 352 * 640 / 640**2


@given(size=st.integers(1, 20000), max_tile=st.sampled_from([32, 64, 256, 512, 1024]), data=st.data())
@settings(max_examples=100, deadline=None)
def test_fit_axis_covers_with_the_fewest_pixels(size, max_tile, data):
    overlap = data.draw(st.integers(0, max_tile - 1))
    plan = fit_axis(size, max_tile, overlap, 32)
    assert plan.tile % 32 == 0 and plan.tile <= max_tile
    n = len(plan.starts)
    if n == 1:
        assert plan.starts == (0,) and plan.tile == plan.padded == round_up(size, 32)
        return
    assert plan.padded == size and plan.starts[0] == 0 and plan.starts[-1] + plan.tile == size
    steps = [b - a for a, b in zip(plan.starts, plan.starts[1:])]
    assert max(steps) - min(steps) <= 1  # spread evenly
    assert plan.overlap == plan.tile - max(steps) >= overlap
    # No other tile count with tiles that fit computes fewer pixels.
    for m in range(1, n + 3):
        t = round_up(-(-(size + (m - 1) * overlap) // m), 32)
        if (m == 1 and t <= max_tile) or (m > 1 and t <= min(max_tile, size)):
            assert m * t >= n * plan.tile


@pytest.mark.parametrize(("tile", "overlap", "match"), [(500, 64, "tile=512"), (512, 512, "overlap"), (0, 0, "tile")])
def test_plan_tiles_explains_bad_tiles(tile, overlap, match):
    with pytest.raises(ValueError, match=match):
        plan_tiles((1000, 1000), tile=tile, overlap=overlap)


@pytest.mark.parametrize(("tile", "overlap", "halo", "max_side"),
                         [(1024, 64, 128, 8192), (512, 64, 128, 4096), (1024, 128, 224, 8192), (256, 32, 96, 1024)])
def test_fitted_blocks_are_whole_tiles(tile, overlap, halo, max_side):
    block = fit_block(halo, tile=tile, overlap=overlap, max_side=max_side)
    region = block + 2 * halo
    assert block % 32 == 0 and region <= max_side
    plan = plan_tiles((region, region), tile=tile, overlap=overlap)
    n = len({box.y0 for box in plan.boxes})
    assert plan.tile_shape == (tile, tile)                      # no tile shortened ...
    assert [box.y0 for box in plan.boxes[::n]] == [i * (tile - overlap) for i in range(n)]  # ... nor shifted back
    assert fit_block(halo, tile=tile, overlap=overlap, max_side=region + tile - overlap - 1) == block


def test_a_whole_slide_in_default_blocks_computes_at_most_1_2_times_its_pixels():
    from napari_ihcseg.inference.blocks import block_grid

    halo = 128  # the default: overlap 64 + the largest nucleus radius 64
    block = fit_block(halo)
    for shape in [(40000, 40000), (30000, 52000), (12000, 9000)]:
        computed = 0
        for _, region in block_grid(shape, block, halo):
            plan = plan_tiles(region.shape)
            computed += len(plan.boxes) * plan.tile_shape[0] * plan.tile_shape[1]
        assert computed / (shape[0] * shape[1]) <= 1.205, shape   # 1.199, 1.200, 1.202: the partial blocks at the edges
    # the blocks of before, 4096 a side, computed 1.27 times the pixels of the 40000² slide
    old = sum(np.prod(p.tile_shape) * len(p.boxes) for p in
              (plan_tiles(r.shape) for _, r in block_grid((40000, 40000), 4096, halo)))
    assert old / 40000**2 > 1.25


def test_fit_block_needs_room_for_a_core():
    assert fit_block(512, tile=256, overlap=32, max_side=512) >= 32
