"""The QC overlay shows every nucleus outlined in its class colour."""

import numpy as np
import pytest

from napari_ihcseg.overlay import CLASS_COLOURS, UNSCORED_COLOUR, render_overlay, write_overlay


def _two_nuclei():
    image = np.full((60, 80, 3), 200, np.uint8)
    labels = np.zeros((60, 80), np.int32)
    labels[10:30, 10:30] = 1
    labels[10:30, 30:50] = 2  # touching nucleus 1
    return image, labels


def test_outlines_take_the_class_colour():
    image, labels = _two_nuclei()
    pic = render_overlay(image, labels, intensity_class={1: 0, 2: 3}, max_side=0)
    top = pic[:60]
    assert tuple(top[10, 15]) == CLASS_COLOURS[0]  # top edge of nucleus 1: blue
    assert tuple(top[10, 40]) == CLASS_COLOURS[3]  # top edge of nucleus 2: red
    assert tuple(top[20, 29]) == CLASS_COLOURS[0]  # shared border drawn for both
    assert tuple(top[20, 30]) == CLASS_COLOURS[3]
    assert tuple(top[20, 20]) == (200, 200, 200)  # interior untouched
    assert tuple(top[0, 0]) == (200, 200, 200)  # background untouched
    assert pic.shape[0] > 60 and pic.shape[1] == 80  # legend band below


def test_unscored_outlines_are_green():
    image, labels = _two_nuclei()
    pic = render_overlay(image, labels, max_side=0)
    assert tuple(pic[10, 15]) == UNSCORED_COLOUR


def test_large_pictures_are_downsampled():
    image = np.zeros((1000, 500, 3), np.uint8)
    labels = np.zeros((1000, 500), np.int32)
    pic = render_overlay(image, labels, max_side=250)
    assert pic.shape[1] == 125


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        render_overlay(np.zeros((5, 5, 3), np.uint8), np.zeros((4, 5), np.int32))


def test_written_png_reads_back(tmp_path):
    from PIL import Image

    image, labels = _two_nuclei()
    summary = {"n_nuclei": 2, "n_positive": 1, "positive_percent": 50.0, "h_score": 150.0,
               "allred_proportion_score": 4, "allred_intensity_score": 3, "allred_total_score": 7,
               "stain": "er", "interpretation": "positive"}
    path = write_overlay(tmp_path / "a.overlay.png", image, labels, intensity_class={1: 0, 2: 3}, summary=summary)
    back = np.asarray(Image.open(path))
    assert back.shape[1] == 80 and back.shape[0] > 60
