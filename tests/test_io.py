"""Reading every supported image format as RGB uint8, lazily or not; labels."""

import os
import pickle
import warnings

import dask
import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.data.synthetic_slide import make_synthetic_slide
from napari_ihcseg.io import ImageReadError, ImageWarning, LazyImage, open_image, read_image, read_labels, write_labels


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return make_synthetic_ihc((96, 128), seed=4).image


def _svs(path, image, mpp=0.2520):
    """An Aperio-style file: tiled baseline, stripped thumbnail, tiled reduced levels."""
    header = "Aperio Image Library v12.0.5\r\n"
    h, w = image.shape[:2]
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, tile=(32, 32), photometric="rgb", compression="jpeg", metadata=None,
                  description=f"{header}{w}x{h} [0,0 {w}x{h}] (32x32) JPEG/RGB Q=90|AppMag = 40|MPP = {mpp}")
        tif.write(np.ascontiguousarray(image[::4, ::4]), photometric="rgb", metadata=None,
                  description=f"{header}thumbnail")
        tif.write(np.ascontiguousarray(image[::2, ::2]), tile=(32, 32), photometric="rgb",
                  compression="jpeg", metadata=None, description=f"{header}level 1")
    return path


# (writer, tolerance, pixel size in µm) per format
def _png(p, a):
    Image.fromarray(a).save(p)


def _jpeg(p, a):
    Image.fromarray(a).save(p, quality=95)


def _tiff(p, a):
    tifffile.imwrite(p, a, photometric="rgb", resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")


def _bigtiff(p, a):
    tifffile.imwrite(p, a, bigtiff=True, tile=(32, 32), compression="zlib", photometric="rgb")


def _ome(p, a):
    tifffile.imwrite(p, np.moveaxis(a, -1, 0), ome=True,
                     metadata={"axes": "CYX", "PhysicalSizeX": 250, "PhysicalSizeXUnit": "nm"})


def _planar(p, a):
    tifffile.imwrite(p, np.moveaxis(a, -1, 0), photometric="rgb", planarconfig="separate")


def _jpeg_tiles(p, a):
    tifffile.imwrite(p, a, tile=(32, 32), compression="jpeg", photometric="rgb")


def _pyramid(p, a):
    with tifffile.TiffWriter(p, bigtiff=True) as tif:
        tif.write(a, subifds=2, tile=(32, 32), photometric="rgb", compression="zlib")
        tif.write(np.ascontiguousarray(a[::2, ::2]), subfiletype=1, tile=(32, 32), photometric="rgb")
        tif.write(np.ascontiguousarray(a[::4, ::4]), subfiletype=1, tile=(16, 16), photometric="rgb")


FORMATS = {
    "png": ("a.png", _png, 0, None),
    "jpeg": ("a.jpg", _jpeg, 40, None),
    "tiff": ("a.tif", _tiff, 0, 0.5),
    "bigtiff": ("a.btf", _bigtiff, 0, None),
    "ome-tiff": ("a.ome.tif", _ome, 0, 0.25),
    "planar-tiff": ("planar.tif", _planar, 0, None),
    "jpeg-tiled-tiff": ("jt.tif", _jpeg_tiles, 40, None),
    "pyramidal-tiff": ("pyr.tif", _pyramid, 0, None),
    "svs": ("a.svs", _svs, 40, 0.252),
}


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_reads_as_rgb_uint8(tmp_path, rgb, kind):
    name, write, tolerance, pixel_size = FORMATS[kind]
    path = tmp_path / name
    write(path, rgb)
    image = read_image(path)
    assert image.shape == rgb.shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - rgb).max() <= tolerance
    if tolerance:
        assert np.abs(image.astype(int) - rgb).mean() < 4
    with open_image(path) as lazy:
        assert lazy.shape == rgb.shape
        assert lazy.pixel_size_um == (pytest.approx(pixel_size) if pixel_size else None)
        np.testing.assert_array_equal(lazy.levels[0].compute(), image)


def test_pyramids_open_with_all_levels(tmp_path, rgb):
    for name, write in (("pyr.tif", _pyramid), ("a.svs", _svs)):
        write(tmp_path / name, rgb)
        with open_image(tmp_path / name) as lazy:
            assert lazy.is_multiscale
            shapes = [lvl.shape for lvl in lazy.levels]
            assert shapes[:2] == [(96, 128, 3), (48, 64, 3)]
            assert all(lvl.dtype == np.uint8 for lvl in lazy.levels)
            level1 = lazy.levels[1].compute()
            assert np.abs(level1.astype(int) - rgb[::2, ::2]).mean() < 4
    with tifffile.TiffFile(tmp_path / "a.svs") as tif:
        assert tif.is_svs and tif.series[0].kind == "svs"


def test_rgba_is_flattened_onto_white(tmp_path, rgb):
    alpha = np.tile(np.linspace(0, 255, rgb.shape[1]).round().astype(np.uint8), (rgb.shape[0], 1))
    rgba = np.dstack([rgb, alpha])
    a = alpha[..., None] / 255.0
    expected = np.rint(rgb * a + 255 * (1 - a))
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    for name in ("rgba.png", "rgba.tif"):
        with pytest.warns(ImageWarning, match="partly transparent"):
            image = read_image(tmp_path / name)
        assert image.shape == rgb.shape
        assert np.abs(image - expected).max() <= 1
        assert (image[:, 0] == 255).all()  # fully transparent column is white
        with pytest.warns(ImageWarning, match="partly transparent"), open_image(tmp_path / name) as lazy:
            np.testing.assert_array_equal(lazy.levels[0].compute(), image)
    premultiplied = np.dstack([np.rint(rgb * a).astype(np.uint8), alpha])
    tifffile.imwrite(tmp_path / "pre.tif", premultiplied, photometric="rgb", extrasamples=["assocalpha"])
    with pytest.warns(ImageWarning, match="partly transparent"):
        assert np.abs(read_image(tmp_path / "pre.tif") - expected).max() <= 2


def test_16_bit_is_rescaled_by_the_full_range(tmp_path, rgb):
    rgb16 = rgb.astype(np.uint16) * 257 + (np.arange(rgb.size).reshape(rgb.shape) % 100).astype(np.uint16)
    rgb16 = np.minimum(rgb16, 65535)
    expected = np.rint(rgb16 * (255 / 65535)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a16.tif", rgb16, photometric="rgb", tile=(32, 32))
    (tmp_path / "a16.png").write_bytes(imagecodecs.png_encode(rgb16))
    for name in ("a16.tif", "a16.png"):
        np.testing.assert_array_equal(read_image(tmp_path / name), expected)
    with open_image(tmp_path / "a16.tif") as lazy:
        np.testing.assert_array_equal(lazy.levels[0].compute(), expected)


def test_a_cameras_12_bits_in_a_16_bit_file_read_as_12_bit_data_and_say_so(tmp_path, rgb):
    """Not a nearly black image scored 100 % positive; the same range for every image of the camera."""
    from napari_ihcseg.io import ImageWarning, read_image_and_pixel_size
    from napari_ihcseg.scoring import score_image

    field = make_synthetic_ihc((128, 128), seed=0)
    twelve = field.image.astype(np.uint16) * 16  # within 0..4095: a 12-bit camera's range, stored in 16 bits
    tifffile.imwrite(tmp_path / "c12.tif", twelve, photometric="rgb")
    (tmp_path / "c12.png").write_bytes(imagecodecs.png_encode(twelve))
    for name in ("c12.tif", "c12.png"):
        with pytest.warns(ImageWarning, match=rf"{name}: its 16-bit values reach only {twelve.max()} of 65535, so it is read "
                                              r"as 12-bit data \(0-4095\)"):
            image, _ = read_image_and_pixel_size(tmp_path / name)
        assert np.abs(image.astype(int) - field.image).max() <= 1
    with pytest.warns(ImageWarning, match="12-bit"):
        with open_image(tmp_path / "c12.tif") as lazy:
            np.testing.assert_array_equal(lazy.levels[0].compute(), image)
    truth = score_image(field.image, field.labels, stain="ki67").summary["positive_percent"]
    assert score_image(image, field.labels, stain="ki67").summary["positive_percent"] == pytest.approx(truth, abs=2)
    # A darker field of the same camera is scaled alike (its background is still above 2047): no stretching.
    darker = np.minimum(twelve, 3000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "d12.tif", darker, photometric="rgb")
    with pytest.warns(ImageWarning, match="12-bit"):
        assert read_image(tmp_path / "d12.tif").max() == round(3000 * 255 / 4095)


def test_tall_images_convert_in_strips_like_small_ones(tmp_path):
    rng = np.random.default_rng(0)
    rgba16 = rng.integers(0, 65536, (2500, 6, 4), dtype=np.uint16)  # more rows than one strip
    tifffile.imwrite(tmp_path / "tall.tif", rgba16, photometric="rgb", extrasamples=["unassalpha"])
    rgba8 = np.rint(rgba16 * (255 / 65535))
    a = rgba8[..., 3:] / 255
    expected = np.clip(np.rint(rgba8[..., :3] * a + 255 * (1 - a)), 0, 255)
    with pytest.warns(ImageWarning, match="partly transparent"):
        np.testing.assert_array_equal(read_image(tmp_path / "tall.tif"), expected)


def test_float_images_are_taken_in_0_1(tmp_path, rgb):
    tifffile.imwrite(tmp_path / "f.tif", (rgb / 255).astype(np.float32), photometric="rgb")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif"), rgb)


def test_a_float_image_a_little_over_1_is_still_read_as_0_to_1(tmp_path, rgb):
    """Resampling overshoot (1.004) must not switch the range to 0-255 and turn the image black."""
    data = (rgb / 255).astype(np.float32)
    data[5, 5, 0] = 1.004
    tifffile.imwrite(tmp_path / "over.tif", data, photometric="rgb")
    image = read_image(tmp_path / "over.tif")
    assert image[5, 5, 0] == 255
    image[5, 5, 0] = rgb[5, 5, 0]
    assert np.abs(image.astype(int) - rgb).max() <= 1


def test_float_images_with_non_finite_samples_read_without_numeric_warnings(tmp_path, rgb):
    data = (rgb / 255).astype(np.float32)
    data[0, 0] = (np.inf, -np.inf, np.nan)
    tifffile.imwrite(tmp_path / "f.tif", data, photometric="rgb")
    from napari_ihcseg.io import ImageWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow would name no file
        with pytest.warns(ImageWarning, match=r"f.tif: 1 value\(s\) are not a number \(NaN\); they read as white"):
            image = read_image(tmp_path / "f.tif")
    assert image[0, 0].tolist() == [255, 0, 255], "NaN is background, not dark stain"
    np.testing.assert_array_equal(image[0, 1:], rgb[0, 1:])
    np.testing.assert_array_equal(image[1:], rgb[1:])


def test_palette_images_are_expanded(tmp_path, rgb):
    pal = Image.fromarray(rgb).quantize(64)
    expected = np.asarray(pal.convert("RGB"))
    pal.save(tmp_path / "p.png")
    colormap = np.array(pal.getpalette()[: 3 * 256] + [0] * (768 - len(pal.getpalette()))).reshape(-1, 3)
    tifffile.imwrite(tmp_path / "p.tif", np.asarray(pal), photometric="palette",
                     colormap=(colormap.T * 257).astype(np.uint16))
    for name in ("p.png", "p.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / name), expected)


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("g.png", lambda p, a: Image.fromarray(a[..., 1]).save(p)),
        ("g16.png", lambda p, a: p.write_bytes(imagecodecs.png_encode(a[..., 1].astype(np.uint16) * 200))),
        ("la.png", lambda p, a: Image.fromarray(a[..., :2].copy(), "LA").save(p)),
        ("g.jpg", lambda p, a: Image.fromarray(a[..., 1]).save(p)),
        ("g.tif", lambda p, a: tifffile.imwrite(p, a[..., 1])),
    ],
)
def test_grayscale_is_refused_because_scoring_needs_colour(tmp_path, rgb, name, write):
    path = tmp_path / name
    write(path, rgb)
    for read in (read_image, open_image):
        with pytest.raises(ImageReadError, match="grayscale.*colour") as info:
            read(path)
        assert str(info.value).startswith(str(path))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((2, 32, 32), np.uint8), "stack of 2 single-channel images"),  # pages, not colours
        (np.zeros((5, 32, 32), np.uint8), "stack of 5 single-channel images"),
        (np.zeros((32, 32, 2), np.uint8), "grayscale-like image with 2 channels"),  # samples of one pixel
        (np.zeros((32, 32, 5), np.uint8), "multichannel image with 5 channels"),
        (np.zeros((4, 32, 32, 3), np.uint8), "stack"),
        (np.zeros((32, 32, 3), np.int16), "pixel type"),
    ],
)
def test_other_layouts_are_refused(tmp_path, data, match):
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, data, photometric="minisblack", **({"planarconfig": "contig"} if data.ndim == 3
                                                               and data.shape[-1] in (2, 5) else {}))
    with pytest.raises(ImageReadError, match=match):
        read_image(path)


def test_read_image_refuses_too_large_and_points_to_open_image(tmp_path, rgb):
    path = tmp_path / "a.tif"
    _bigtiff(path, rgb)
    with pytest.raises(ImageReadError, match="open_image"):
        read_image(path, max_pixels=1000)
    with open_image(path) as lazy:
        assert lazy.shape == rgb.shape


@pytest.mark.parametrize("levels", [1, 3])
def test_open_image_decodes_the_smallest_level_once(tmp_path, rgb, monkeypatch, levels):
    from napari_ihcseg.io import lazy as lazy_module

    path = tmp_path / "a.tif"
    if levels == 1:
        tifffile.imwrite(path, rgb, photometric="rgb", tile=(32, 32))
    else:
        _pyramid(path, rgb)
    decoded = []
    real = lazy_module._LazyLevel.__getitem__
    monkeypatch.setattr(lazy_module._LazyLevel, "__getitem__",
                        lambda self, key: decoded.append(self.level) or real(self, key))
    with open_image(path) as lazy:
        assert len(lazy.levels) == levels and decoded == [levels - 1]  # the blank-image check at opening
        smallest = lazy.levels[-1].compute()
        assert decoded == [levels - 1], "computing the smallest level decoded it again"
        step = 2 ** (levels - 1)
        np.testing.assert_array_equal(smallest, rgb[::step, ::step])
        if levels > 1:
            np.testing.assert_array_equal(lazy.levels[0].compute(), rgb)  # the others stay lazy
            assert set(decoded[1:]) == {0}


def test_lazy_levels_pickle_and_survive_close(tmp_path, rgb):
    path = tmp_path / "pyr.tif"
    _pyramid(path, rgb)
    lazy = open_image(path)
    assert isinstance(lazy, LazyImage)
    level = lazy.levels[0]
    chunks = level.chunks
    lazy.close()
    np.testing.assert_array_equal(level[10:40, 20:70].compute(), rgb[10:40, 20:70])
    clone = pickle.loads(pickle.dumps(level))  # what dask sends to other processes
    assert clone.chunks == chunks
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(clone.compute(), rgb)


def test_lazy_chunks_cover_whole_tiles(tmp_path):
    path = make_synthetic_slide(tmp_path / "s.tif", (3000, 2600), tile=256, tissue_fraction=0.2)
    with open_image(path) as lazy:
        ys, xs, _ = lazy.levels[0].chunks
        assert ys[0] == xs[0] == 1024  # four 256-pixel tiles a side
        assert lazy.pixel_size_um == pytest.approx(0.5)
        with tifffile.TiffFile(path) as tif:
            np.testing.assert_array_equal(lazy.levels[0][1000:1300, 900:1400].compute(),
                                          tif.series[0].levels[0].asarray()[1000:1300, 900:1400])


def test_large_pyramid_opens_lazily(tmp_path):
    """A 20000 x 20000 slide (1.2 GB of pixels) opens and serves a tile in a few MB."""
    psutil = pytest.importorskip("psutil")
    path = make_synthetic_slide(tmp_path / "big.tif", (20000, 20000), tile=512, tissue_fraction=0.03, seed=1)
    assert os.path.getsize(path) < 100e6
    size = 20000 * 20000 * 3
    process = psutil.Process()
    import zarr  # noqa: F401 - imported by open_image; not part of what is measured

    before = process.memory_info().rss
    lazy = open_image(path)
    assert lazy.is_multiscale and lazy.shape == (20000, 20000, 3)
    tile = lazy.levels[0][9000:9512, 9000:9512].compute()
    overview = lazy.levels[-1].compute()
    grown = process.memory_info().rss - before
    assert tile.shape == (512, 512, 3) and overview.shape[:2] == (312, 312)
    assert grown < size / 20, f"resident memory grew by {grown / 1e6:.0f} MB"
    with pytest.raises(ImageReadError, match="open_image"):
        read_image(path)
    lazy.close()


# ---------------------------------------------------------------------------
# Labels


def test_labels_round_trip_as_compressed_uint32(tmp_path):
    labels = np.zeros((40, 50), np.int64)
    labels[5:15, 5:20] = 1
    labels[20:30, 10:40] = 2**31 - 1
    path = write_labels(tmp_path / "sub" / "labels.tif", labels)
    assert path.exists() and sorted(p.name for p in path.parent.iterdir()) == ["labels.tif"]
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        assert page.dtype == np.uint32
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    back = read_labels(path)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, labels)
    labels[0, 0] = 2**32 - 1  # as high as write_labels goes: read back as written
    back = read_labels(write_labels(tmp_path / "huge.tif", labels))
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, labels)


@pytest.mark.parametrize("shape", [(1, 256), (256, 1), (1, 1)])
def test_one_pixel_strips_of_labels_round_trip(tmp_path, shape):
    """A strip one pixel high or wide keeps both axes: only page and channel axes are dropped."""
    labels = np.arange(1, shape[0] * shape[1] + 1, dtype=np.int32).reshape(shape)
    back = read_labels(write_labels(tmp_path / "strip.tif", labels))
    assert back.shape == shape
    np.testing.assert_array_equal(back, labels)


def test_write_labels_options_and_refusals(tmp_path):
    labels = np.eye(6, dtype=np.uint8)
    path = write_labels(tmp_path / "l.tiff", labels)
    with pytest.raises(FileExistsError):
        write_labels(path, labels, overwrite=False)
    write_labels(path, labels * 3)
    assert read_labels(path).max() == 3
    np.testing.assert_array_equal(read_labels(write_labels(tmp_path / "b.tif", labels.astype(bool))), labels)
    with pytest.raises(ValueError, match=r"\.tif"):
        write_labels(tmp_path / "l.png", labels)
    with pytest.raises(TypeError, match="integer"):
        write_labels(tmp_path / "f.tif", labels.astype(float))
    with pytest.raises(ValueError, match="0.."):
        write_labels(tmp_path / "n.tif", -labels.astype(int))
    with pytest.raises(ValueError, match="2-D"):
        write_labels(tmp_path / "3d.tif", np.zeros((2, 3, 4), int))


def test_read_labels_from_png_and_refusals(tmp_path, rgb):
    labels = (np.arange(30 * 40).reshape(30, 40) % 700).astype(np.uint16)
    Image.fromarray(labels).save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_labels(tmp_path / "l.png"), labels)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(ImageReadError, match="single-channel"):
        read_labels(tmp_path / "rgb.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg")
    with pytest.raises(ImageReadError, match="lossy"):
        read_labels(tmp_path / "rgb.jpg")
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(ImageReadError, match="integers"):
        read_labels(tmp_path / "f.tif")


# ---------------------------------------------------------------------------
# Real files


def test_real_images_and_labels(shared_data):
    monuseg = sorted((shared_data / "monuseg-train" / "Tissue_Images").glob("*.png"))[0]
    image = read_image(monuseg)
    assert image.shape == (1000, 1000, 3) and image.dtype == np.uint8
    cpm = shared_data / "cpm15"
    tile = read_image(cpm / "image01.png")  # RGBA on disk
    labels = read_labels(cpm / "image01_labels.png")  # uint16 on disk
    assert tile.shape[:2] == labels.shape and tile.shape[2] == 3
    assert labels.dtype == np.int32 and labels.max() > 50
    ki67 = read_image(shared_data / "deepliif-ki67-sample" / "Bladder1.png")
    assert ki67.shape == (512, 3072, 3)


def test_read_errors_survive_pickling(tmp_path):
    """A Dask worker sends the error back pickled: it must arrive intact."""
    import pickle

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ImageReadError) as info:
        read_image(bad)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is ImageReadError and str(again) == str(info.value)
    assert again.path == str(bad) and again.reason == info.value.reason


def test_a_partly_transparent_image_says_its_stain_is_paled(tmp_path):
    """Half-transparent pixels are blended onto white, which pales DAB: the reader says so. An opaque RGBA
    file, or one whose surround is fully transparent (an exported annotation), reads without a word."""
    from napari_ihcseg.io import ImageWarning, read_image

    rgb = make_synthetic_ihc((64, 64), seed=3).image
    alpha = np.full((64, 64, 1), 255, np.uint8)
    for name, a in (("opaque", alpha), ("surround", np.where(np.arange(64)[:, None, None] < 8, 0, alpha))):
        Image.fromarray(np.concatenate([rgb, a.astype(np.uint8)], axis=-1), "RGBA").save(tmp_path / f"{name}.png")
        with warnings.catch_warnings():
            warnings.simplefilter("error", ImageWarning)
            read_image(tmp_path / f"{name}.png")
    half = np.concatenate([rgb, alpha // 2], axis=-1)
    Image.fromarray(half, "RGBA").save(tmp_path / "half.png")
    tifffile.imwrite(tmp_path / "half.tif", half, photometric="rgb", extrasamples=["unassalpha"])
    for name in ("half.png", "half.tif"):
        with pytest.warns(ImageWarning, match=rf"{name}: 100 % of the pixels are partly transparent"):
            image = read_image(tmp_path / name)
        assert image.mean() > rgb.mean(), "blended onto white"


def test_the_pixel_size_is_that_of_the_image_read_not_of_a_thumbnail_stored_first(tmp_path):
    from napari_ihcseg.io import file_pixel_size, read_image_and_pixel_size

    img = make_synthetic_ihc((128, 128), seed=2).image
    with tifffile.TiffWriter(tmp_path / "thumb_first.tif") as tw:  # a 4 um overview, then the 1 um image
        tw.write(img[::4, ::4].copy(), photometric="rgb", resolution=(2500, 2500), resolutionunit="CENTIMETER",
                 metadata=None)
        tw.write(img, photometric="rgb", resolution=(1e4, 1e4), resolutionunit="CENTIMETER", metadata=None)
    with tifffile.TiffWriter(tmp_path / "two.ome.tif") as tw:
        tw.write(img[::4, ::4].copy(), photometric="rgb", metadata={"axes": "YXS", "PhysicalSizeX": 4.0,
                                                                   "PhysicalSizeY": 4.0})
        tw.write(img, photometric="rgb", metadata={"axes": "YXS", "PhysicalSizeX": 1.0, "PhysicalSizeY": 1.0})
    for name in ("thumb_first.tif", "two.ome.tif"):
        with pytest.warns(ImageWarning, match="reading the largest"):
            image, pixel_size = read_image_and_pixel_size(tmp_path / name)
        assert image.shape == (128, 128, 3) and pixel_size == pytest.approx(1.0), name
        assert file_pixel_size(tmp_path / name) == pytest.approx(1.0)
        with pytest.warns(ImageWarning), open_image(tmp_path / name) as lazy:
            assert lazy.pixel_size_um == pytest.approx(1.0)


@pytest.mark.parametrize("unit, expected", [("\\u00B5m", 0.5), ("micron", 0.5), ("mm", 500.0 / 1000)])
def test_imagej_units_as_fiji_writes_them(tmp_path, unit, expected):
    from napari_ihcseg.io import read_image_and_pixel_size

    img = make_synthetic_ihc((32, 32), seed=2).image
    per_unit = 2.0 if unit != "mm" else 2000.0  # pixels per unit: 0.5 um either way
    tifffile.imwrite(tmp_path / "ij.tif", img, imagej=True, resolution=(per_unit, per_unit), metadata={"unit": unit})
    assert read_image_and_pixel_size(tmp_path / "ij.tif")[1] == pytest.approx(expected)


@pytest.mark.parametrize("axes, kwargs", [("ZYX", {"imagej": True, "metadata": {"axes": "ZYX"}}),
                                          ("IYX", {"metadata": None}), ("TYX", {"imagej": True,
                                                                             "metadata": {"axes": "TYX"}})])
def test_three_grayscale_planes_are_a_stack_not_a_colour_image(tmp_path, axes, kwargs):
    planes = np.random.default_rng(0).integers(0, 256, (3, 40, 50), np.uint8)
    tifffile.imwrite(tmp_path / "z3.tif", planes, photometric="minisblack", **kwargs)
    with pytest.raises(ImageReadError, match=r"z3.tif: holds a stack of 3 single-channel images"):
        read_image(tmp_path / "z3.tif")
    with pytest.raises(ImageReadError, match="stack"):
        open_image(tmp_path / "z3.tif")


def test_an_opaque_16_bit_alpha_does_not_decide_the_range_of_12_bit_colours(tmp_path):
    rgb8 = make_synthetic_ihc((40, 50), seed=4).image
    rgb12 = np.round(rgb8 * (4095 / 255)).astype(np.uint16)
    rgba = np.dstack([rgb12, np.full((40, 50), 65535, np.uint16)])
    tifffile.imwrite(tmp_path / "rgba12.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    (tmp_path / "rgba12.png").write_bytes(imagecodecs.png_encode(rgba))
    for name in ("rgba12.tif", "rgba12.png"):
        with pytest.warns(ImageWarning, match="12-bit"):
            image = read_image(tmp_path / name)
        assert np.abs(image.astype(int) - rgb8).max() <= 1, name


def test_ycbcr_and_lab_tiffs_are_refused_rather_than_read_as_rgb(tmp_path):
    img = make_synthetic_ihc((16, 16), seed=4).image
    tifffile.imwrite(tmp_path / "ycc.tif", img, photometric="ycbcr", subsampling=(1, 1))
    tifffile.imwrite(tmp_path / "lab.tif", img, photometric="cielab")
    for name, space in (("ycc.tif", "YCbCr"), ("lab.tif", "CIELAB")):
        with pytest.raises(ImageReadError, match=f"{name}: {space} colour is not supported"):
            read_image(tmp_path / name)


def test_a_huge_png_is_refused_before_it_is_decoded_with_a_way_out(tmp_path, monkeypatch):
    from napari_ihcseg.io import lazy

    (tmp_path / "big16.png").write_bytes(imagecodecs.png_encode(np.zeros((600, 600, 3), np.uint16), level=9))
    decoded = []
    monkeypatch.setattr(imagecodecs, "png_decode", lambda data: decoded.append(1))
    with pytest.raises(ImageReadError, match="PNG and JPEG files can only be decoded whole; save it as a tiled"):
        read_image(tmp_path / "big16.png", max_pixels=10**5)
    assert not decoded
    monkeypatch.setattr(lazy, "MAX_READ_PIXELS", 10**5)
    with pytest.raises(ImageReadError, match="save it as a tiled") as caught:
        open_image(tmp_path / "big16.png")
    assert "open_image" not in str(caught.value)


def test_the_napari_reader_closes_a_file_it_cannot_decode(tmp_path):
    import gc

    from napari_ihcseg._reader import read_ihc

    # Larger than the part decoded on opening (UNIFORM_CHECK_PIXELS), smaller than a napari pyramid: read in full.
    image = np.random.default_rng(0).integers(0, 256, (2304, 2304, 3), np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", image, tile=(256, 256), compression="zlib")
    data = (tmp_path / "big.tif").read_bytes()
    (tmp_path / "bad.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception):
        read_ihc(str(tmp_path / "bad.tif"))
    gc.collect()
    fds = [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
    assert str(tmp_path / "bad.tif") not in fds


def test_a_16_bit_alpha_keeps_its_own_range_beside_12_bit_colours(tmp_path):
    rgb8 = make_synthetic_ihc((40, 50), seed=4).image
    rgb12 = np.round(rgb8 * (4095 / 255)).astype(np.uint16)
    rgba = np.dstack([rgb12, np.full((40, 50), 32768, np.uint16)])  # half transparent
    (tmp_path / "half12.png").write_bytes(imagecodecs.png_encode(rgba))
    with pytest.warns(ImageWarning) as caught:
        image = read_image(tmp_path / "half12.png")
    assert any("partly transparent" in str(w.message) for w in caught)
    a = 32768 / 65535
    expected = np.rint(np.rint(rgb12 * (255 / 4095)) * a + 255 * (1 - a))
    assert np.abs(image - expected).max() <= 1


def test_ycbcr_in_any_jpeg_flavour_tifffile_decodes_is_read(tmp_path):
    """tifffile turns YCbCr into RGB for JPEG (7) and its flavours (6, 33007, 34892): those read as RGB."""
    img = make_synthetic_ihc((256, 256), seed=4).image
    path = tmp_path / "ycc.tif"
    tifffile.imwrite(path, img, photometric="rgb", compression="jpeg", tile=(256, 256))  # stored as YCbCr
    with tifffile.TiffFile(path) as tif:
        assert tif.pages.first.photometric == tifffile.PHOTOMETRIC.YCBCR
        offset = tif.pages.first.tags["Compression"].valueoffset
    data = bytearray(path.read_bytes())
    data[offset:offset + 2] = (33007).to_bytes(2, "little")
    (tmp_path / "ycc33007.tif").write_bytes(bytes(data))
    for name in ("ycc.tif", "ycc33007.tif"):
        assert np.abs(read_image(tmp_path / name).astype(int) - img).mean() < 4, name


def test_one_translucent_pixel_probed_at_opening_is_not_taken_for_the_whole_slide(tmp_path):
    from napari_ihcseg.io.lazy import UNIFORM_CHECK_PIXELS

    side = int(np.sqrt(UNIFORM_CHECK_PIXELS)) + 64  # too large to decode at opening: one pixel is probed
    rgba = np.full((side, side, 4), 255, np.uint8)
    rgba[..., :3] = 180
    rgba[0, 0, 3] = 128
    tifffile.imwrite(tmp_path / "big.tif", rgba, photometric="rgb", extrasamples=["unassalpha"], tile=(256, 256))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageWarning)
        open_image(tmp_path / "big.tif").close()


def test_an_ome_image_held_as_metadata_only_does_not_lend_its_pixel_size(tmp_path):
    from napari_ihcseg.io import file_pixel_size

    def image(k, name, size, data):
        body = '<TiffData IFD="0" PlaneCount="1"/>' if data else "<MetadataOnly/>"
        return (f'<Image ID="Image:{k}" Name="{name}"><Pixels ID="Pixels:{k}" DimensionOrder="XYCZT" Type="uint8" '
                f'SizeX="64" SizeY="64" SizeC="3" SizeZ="1" SizeT="1" PhysicalSizeX="{size}" '
                f'PhysicalSizeXUnit="µm"><Channel ID="Channel:{k}:0" SamplesPerPixel="3"/>{body}</Pixels></Image>')

    xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
           f'UUID="urn:uuid:1">{image(0, "macro", 8.0, False)}{image(1, "main", 0.25, True)}</OME>')
    img = make_synthetic_ihc((64, 64), seed=1).image
    tifffile.imwrite(tmp_path / "m.ome.tif", img, photometric="rgb", description=xml.encode(), metadata=None)
    assert file_pixel_size(tmp_path / "m.ome.tif") == pytest.approx(0.25)


def test_a_float_alpha_keeps_the_range_of_its_colours(tmp_path):
    """Float RGBA in 0-255: the alpha is on the colours' scale (127.5 is half), not on 0-1."""
    rgba = np.zeros((16, 16, 4), np.float32)
    rgba[..., :3] = (200, 100, 50)
    rgba[8:, :, :3] = (60, 40, 160)  # not one colour everywhere (that has a warning of its own)
    rgba[..., 3] = 127.5
    tifffile.imwrite(tmp_path / "f.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    with pytest.warns(ImageWarning, match="partly transparent"):
        image = read_image(tmp_path / "f.tif")
    np.testing.assert_allclose(image[0, 0], [227.5, 177.5, 152.5], atol=1)
