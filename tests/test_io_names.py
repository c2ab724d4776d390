"""The names and the strided levels derived from an image file."""

import dask.array as da
import numpy as np
import pytest

from napari_ihcseg.data import make_synthetic_ihc
from napari_ihcseg.io import image_stem, strided_pyramid
from napari_ihcseg.scoring import ScoringConfig
from napari_ihcseg.stain import H_DAB


@pytest.mark.parametrize(("path", "stem"), [
    ("slides/case 1.ome.tif", "case 1"),
    ("case.1.svs", "case.1"),          # the widgets and the CLI once disagreed here
    ("A.OME.TIFF", "A"),
    ("x.y.png", "x.y"),
    ("scan.ndpi", "scan"),
    (".png", ".png"),
])
def test_image_stem(path, stem):
    assert image_stem(path) == stem


def test_the_reader_and_the_batch_name_an_image_alike(tmp_path):
    from napari_ihcseg.output_set import check_stems

    assert check_stems([tmp_path / "case.1.svs", tmp_path / "case.2.svs"]) == ["case.1", "case.2"]


def test_strided_pyramid_halves_until_the_smallest_side():
    image = np.arange(300 * 260 * 3, dtype=np.uint32).reshape(300, 260, 3)
    levels = strided_pyramid(da.from_array(image, chunks=(64, 64, 3)), smallest_side=64, chunks=(32, 32, 3))
    assert [level.shape[:2] for level in levels] == [(300, 260), (150, 130), (75, 65), (38, 33)]
    np.testing.assert_array_equal(levels[2].compute(), image[::4, ::4])
    assert levels[1].chunks[0][0] == 32
    assert len(strided_pyramid(da.zeros((64, 10)), smallest_side=64)) == 1


def test_estimated_stain_vectors_read_the_image_only_when_asked():
    reads = []

    def read():
        reads.append(1)
        return make_synthetic_ihc((128, 128), seed=3).image

    assert ScoringConfig().resolve_stain_vectors(read) == H_DAB and not reads
    vectors = ScoringConfig(stain_vectors="estimate").resolve_stain_vectors(read)
    assert reads == [1] and vectors.matrix.shape == (3, 3)
