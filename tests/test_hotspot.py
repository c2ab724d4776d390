"""The Ki-67 hot spot, found from the cell centroids."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ihcseg.data.synthetic_ki67 import make_ki67_field
from napari_ihcseg.scoring import ScoringConfig, score_image
from napari_ihcseg.scoring.hotspot import HotSpotSearch, find_hotspot, local_index_map, nearest_radius, search_hotspot


def lattice_with_patch(side=80, spacing=10.0, patch=(500.0, 250.0, 60.0), base_every=10):
    """Cells every ``spacing`` px; every ``base_every``-th cell positive, all positive in a disk ``patch``."""
    yy, xx = np.divmod(np.arange(side * side), side)
    y, x = yy * spacing, xx * spacing
    cy, cx, r = patch
    positive = (np.arange(y.size) % base_every == 0) | ((y - cy) ** 2 + (x - cx) ** 2 <= r * r)
    return y, x, positive


def test_hot_spot_on_a_known_dense_positive_patch():
    """A 60 px disk of positive cells in a field at 10 %: a 50 px circle fits inside it.

    Worked by hand: a circle of radius 50 around any lattice point 10 px or
    less from the patch centre lies inside the patch (50 + 10 <= 60), so the
    best circle is 100 % positive; it holds the lattice points within 50 px
    of its centre: 81 when centred on a cell (Gauss circle count for r = 5
    cells).
    """
    y, x, positive = lattice_with_patch()
    spot = find_hotspot(y, x, positive, radius=50.0, min_cells=50)
    assert spot.mode == "circle" and spot.radius == 50.0
    assert spot.index == 100.0 and spot.n_positive == spot.n_cells
    assert np.hypot(spot.center[0] - 500, spot.center[1] - 250) <= 10.0 + 1e-9
    assert spot.n_cells == 81


def test_hot_spot_counts_only_places_with_enough_cells():
    y, x, positive = lattice_with_patch()
    # A lone positive cell far from the others would be a 100 % "hot spot" of one cell.
    y, x, positive = np.r_[y, 5000.0], np.r_[x, 5000.0], np.r_[np.zeros_like(positive), True]
    spot = find_hotspot(y, x, positive, radius=50.0, min_cells=50)
    assert spot.index == 0.0 and spot.n_cells >= 50
    assert find_hotspot(y[:30], x[:30], positive[:30], radius=50.0, min_cells=50) is None


def test_nearest_n_hot_spot_without_a_pixel_size():
    y, x, positive = lattice_with_patch()
    spot = find_hotspot(y, x, positive, n_cells=60)
    assert spot.mode == "nearest" and spot.n_cells == 60
    assert spot.index == 100.0            # 60 nearest cells of a point in the patch: all positive
    assert np.hypot(spot.center[0] - 500, spot.center[1] - 250) < 60
    # The radius of 60 nearest lattice cells: about sqrt(60 / pi) cells.
    assert nearest_radius(y, x, 60) == pytest.approx(10 * np.sqrt(60 / np.pi), rel=0.15)
    with pytest.raises(ValueError, match="either radius"):
        find_hotspot(y, x, positive, radius=5.0, n_cells=5)


def test_heat_map_shows_the_patch():
    y, x, positive = lattice_with_patch()
    search = search_hotspot(y, x, positive, radius=50.0, min_cells=50)
    spot, heat = search.hotspot, search.local_map
    assert spot == find_hotspot(y, x, positive, radius=50.0, min_cells=50)
    assert search_hotspot(y[:10], x[:10], positive[:10], radius=50.0, min_cells=50) == HotSpotSearch(None, None)
    row, col = np.unravel_index(np.nanargmax(heat.index), heat.index.shape)
    peak = np.array(heat.origin) + heat.spacing * np.array([row, col])
    assert np.hypot(*(peak - [500, 250])) <= 15
    assert np.nanmedian(heat.index) == pytest.approx(10.0, abs=3)     # the 10 % background
    empty = local_index_map([0.0], [0.0], [True], radius=10.0, min_cells=5)
    assert np.isnan(empty.index).all()


def test_summary_reports_global_and_hot_spot_index_side_by_side():
    ki67 = make_ki67_field((512, 512), seed=3, background=0.1, hotspot=0.9, hotspot_radius=90)
    result = score_image(ki67.field.image, ki67.field.labels, config=ScoringConfig(hotspot_cells=60))
    s = result.summary
    keys = list(s)
    assert keys.index("hotspot_ki67_index") == keys.index("ki67_index_ci") + 1
    assert s["hotspot_mode"] == "nearest" and s["hotspot_n_cells"] == 60
    assert s["hotspot_ki67_index"] > s["ki67_index"] + 20
    assert np.hypot(*(np.array(s["hotspot_center_yx"]) - ki67.hotspot_center)) < 90
    low, high = s["hotspot_ki67_index_ci"]
    assert low < s["hotspot_ki67_index"] < high
    # With a pixel size the circle has the asked diameter (here 100 µm at 0.5 µm per pixel: radius 100 px).
    circle = result.rescore(pixel_size_um=0.5, hotspot_diameter_um=100.0, hotspot_min_cells=20).summary
    assert circle["hotspot_mode"] == "circle" and circle["hotspot_radius_px"] == pytest.approx(100.0)
