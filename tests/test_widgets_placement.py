"""Which pixels the panels take under a nuclei layer, and which nuclei layers and recoveries they take.

Needs a display: run under ``xvfb-run -a env QT_QPA_PLATFORM=xcb python -m pytest tests/test_widgets_placement.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gui import require_display

pytestmark = pytest.mark.gui

require_display()


@pytest.fixture
def errors(monkeypatch):
    """The error messages the panels show the user (instead of napari's notifications)."""
    from napari_ihcseg._widgets import _common, score

    shown: list[str] = []
    monkeypatch.setattr(_common, "show_error", shown.append)
    monkeypatch.setattr(score, "show_error", shown.append)
    return shown


def _layer(scale=(1.0, 1.0), translate=(0.0, 0.0), origin=None, name="layer"):
    meta = {} if origin is None else {"ihcseg": {"origin": origin}}
    return SimpleNamespace(scale=np.array(scale), translate=np.array(translate), metadata=meta, name=name)


@pytest.mark.parametrize("image, labels, expected", [
    (_layer(), _layer(translate=(200, 100)), (200, 100)),  # reopened from the writer's TIFF: no metadata origin
    (_layer(), _layer(origin=(30, 40)), (30, 40)),  # not placed in the viewer: the metadata says where
    (_layer(scale=(0.5, 0.5)), _layer(scale=(0.5, 0.5), translate=(100, 50)), (200, 100)),  # micrometres
    (_layer(scale=(0.5, 0.5), translate=(10, 10)), _layer(scale=(0.5, 0.5), translate=(110, 60)), (200, 100)),
    (_layer(), _layer(translate=(200, 100), origin=(0, 0)), (200, 100)),  # shown there: scored there
])
def test_labels_lie_where_the_viewer_shows_them(image, labels, expected):
    from napari_ihcseg._widgets._common import labels_origin

    assert labels_origin(image, labels) == expected


def test_labels_at_another_pixel_size_or_between_pixels_are_refused():
    from napari_ihcseg._widgets._common import labels_origin

    with pytest.raises(ValueError, match="pixel size"):
        labels_origin(_layer(scale=(0.5, 0.5)), _layer(scale=(0.25, 0.25)))
    with pytest.raises(ValueError, match="between the pixels"):
        labels_origin(_layer(), _layer(translate=(10.5, 0)))


def test_a_reopened_field_of_view_is_scored_on_the_pixels_it_lies_on(make_napari_viewer, qtbot, store, tmp_path):
    from napari_ihcseg._reader import get_reader
    from napari_ihcseg._widgets.score import ScoreWidget
    from napari_ihcseg._writer import write_labels
    from napari_ihcseg.data.synthetic import make_synthetic_ihc
    from napari_ihcseg.scoring import read_cells_csv

    big = make_synthetic_ihc((512, 512), seed=1)
    viewer = make_napari_viewer()
    image = viewer.add_image(big.image, name="ihc", rgb=True)
    oy, ox = 200, 100
    fov = viewer.add_labels(big.labels[oy:oy + 256, ox:ox + 256].copy(), name="nuclei", translate=(oy, ox),
                            metadata={"ihcseg": {"source": "ihc", "origin": (oy, ox), "image_layer": "ihc"}})
    [path] = write_labels(str(tmp_path / "nuclei.tif"), fov.data, {"scale": fov.scale, "translate": fov.translate})
    [(data, meta, _kind)] = get_reader(path)(path)
    reopened = viewer.add_labels(data, **meta)
    assert "origin" not in reopened.metadata.get("ihcseg", {}), "the TIFF keeps the placement, not the metadata"

    score = ScoreWidget(viewer, store=store, choose_path=lambda *a: None)
    qtbot.addWidget(score)
    score.form.image.value = image
    results = []
    for layer in (fov, reopened):
        score.form.nuclei.value = layer
        score.start()
        cells = read_cells_csv(score.export("cells", tmp_path / f"{layer.name}.cells.csv"))
        results.append((score.summary["positive_percent"], cells[["centroid_y", "centroid_x"]].to_numpy()))
    (first, first_xy), (again, again_xy) = results
    assert again == pytest.approx(first), "the same nuclei on the same pixels score the same"
    np.testing.assert_allclose(again_xy, first_xy)
    assert again_xy[:, 0].min() >= oy and again_xy[:, 1].min() >= ox, "centroids in the full image's pixels"
