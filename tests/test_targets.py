"""Training targets: foreground mask and inner contour band."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from napari_ihcseg.data.targets import labels_to_contour, labels_to_mask

SQUARE = np.ones((3, 3), bool)


def _touching_pair():
    labels = np.zeros((12, 20), np.int32)
    labels[2:10, 2:10] = 1
    labels[2:10, 10:18] = 2
    return labels


def _reference_contour(labels, width):
    """The documented recipe: inner boundary, then grown within each instance."""
    band = find_boundaries(labels, connectivity=2, mode="inner") & (labels > 0)
    for _ in range(width - 1):
        grown = np.zeros_like(band)
        for value in np.unique(labels[labels > 0]):
            inside = labels == value
            grown |= ndi.binary_dilation(band & inside, SQUARE) & inside
        band |= grown
    return band


label_images = arrays(np.int32, st.tuples(st.integers(1, 14), st.integers(1, 14)), elements=st.integers(0, 3))


def test_mask_is_foreground():
    labels = np.array([[0, 1, 1], [2, 0, 3]])
    np.testing.assert_array_equal(labels_to_mask(labels), labels > 0)
    assert labels_to_mask(labels).dtype == bool


def test_touching_nuclei_get_a_contour_on_both_sides():
    labels = _touching_pair()
    contour = labels_to_contour(labels, width=2)
    # columns 8, 9 (nucleus 1) and 10, 11 (nucleus 2) straddle the shared boundary
    assert contour[5, 8:12].all()
    assert not contour[5, 4:6].any() and not contour[5, 14:16].any()
    interiors = labels_to_mask(labels) & ~contour
    assert ndi.label(interiors)[1] == 2


@pytest.mark.parametrize("width", [1, 2, 3])
def test_band_thickness_on_a_square(width):
    labels = np.zeros((20, 20), np.int32)
    labels[3:17, 3:17] = 1
    contour = labels_to_contour(labels, width=width)
    row = contour[10, 3:17]
    assert row[:width].all() and row[-width:].all() and not row[width:-width].any()


def test_image_border_is_not_a_boundary():
    labels = np.ones((10, 10), np.int32)
    assert not labels_to_contour(labels).any()
    labels[:, 6:] = 2  # two nuclei cut by the border: only their shared edge is contour
    contour = labels_to_contour(labels, width=1)
    np.testing.assert_array_equal(np.nonzero(contour.any(axis=0))[0], [5, 6])


def test_small_nucleus_is_contour_throughout():
    labels = np.zeros((9, 9), np.int32)
    labels[3:7, 3:7] = 5  # 4 px across = 2 * width
    contour = labels_to_contour(labels, width=2)
    np.testing.assert_array_equal(contour, labels > 0)


@settings(max_examples=60, deadline=None)
@given(labels=label_images, width=st.integers(1, 3))
def test_matches_the_documented_definition(labels, width):
    contour = labels_to_contour(labels, width=width)
    np.testing.assert_array_equal(contour, _reference_contour(labels, width))
    assert not (contour & (labels == 0)).any()


def test_bool_labels_are_accepted():
    labels = np.zeros((8, 8), bool)
    labels[2:6, 2:6] = True
    assert labels_to_contour(labels, width=1).sum() == 12


@pytest.mark.parametrize(
    ("labels", "kwargs", "error"),
    [
        (np.zeros((4, 4, 2), int), {}, ValueError),
        (np.zeros((4, 4), float), {}, TypeError),
        (np.zeros((4, 4), int), {"width": 0}, ValueError),
        (np.zeros((4, 4), int), {"width": 1.5}, ValueError),
    ],
)
def test_bad_input_is_refused(labels, kwargs, error):
    with pytest.raises(error):
        labels_to_contour(labels, **kwargs)
