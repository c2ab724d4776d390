"""The npe2 manifest and its reader, writer and sample-data hooks, without a viewer."""

import socket
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_ihcseg._reader import get_reader, read_ihc
from napari_ihcseg._sample_data import ihc_sample, ki67_sample, synthetic_sample
from napari_ihcseg._writer import write_labels
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.data.synthetic_slide import make_synthetic_slide
from napari_ihcseg.io import ImageReadError, read_labels


@pytest.fixture
def opened(monkeypatch):
    """The images the reader opens, closed after the test (a napari layer would keep them open)."""
    import napari_ihcseg._reader as reader

    images = []

    def open_and_keep(path):
        images.append(original(path))
        return images[-1]

    original = reader.open_image
    monkeypatch.setattr(reader, "open_image", open_and_keep)
    yield images
    for image in images:
        image.close()


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return make_synthetic_ihc((64, 80), seed=9).image


def test_npe2_validate_passes():
    done = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-ihcseg", "--imports"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout


def test_manifest_declares_reader_writer_and_samples():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-ihcseg")
    contributions = manifest.contributions
    commands = {c.id: c.python_name for c in contributions.commands}
    [reader] = contributions.readers
    assert commands[reader.command] == "napari_ihcseg._reader:get_reader"
    assert {"*.svs", "*.tif", "*.png", "*.jpg"} <= set(reader.filename_patterns)
    [writer] = contributions.writers
    assert commands[writer.command] == "napari_ihcseg._writer:write_labels"
    assert [t.value if hasattr(t, "value") else t for t in writer.layer_types] == ["labels"]
    assert {s.key for s in contributions.sample_data} == {"ki67", "ihc", "synthetic"}
    manifest.validate_imports()


@pytest.mark.parametrize("name", ["a.png", "a.JPG", "a.jpeg", "a.tif", "a.tiff", "a.svs", "a.ome.tif", "a.btf"])
def test_get_reader_accepts_image_files(tmp_path, name):
    assert get_reader(str(tmp_path / name)) is read_ihc


@pytest.mark.parametrize("name", ["a.csv", "a.zarr", "a.nd2", "noext"])
def test_get_reader_declines_other_files(tmp_path, name):
    assert get_reader(str(tmp_path / name)) is None


def test_get_reader_declines_folders_and_mixed_lists(tmp_path):
    (tmp_path / "images.tif").mkdir()
    assert get_reader(str(tmp_path / "images.tif")) is None
    assert get_reader([str(tmp_path / "a.png"), str(tmp_path / "b.csv")]) is None
    assert get_reader([]) is None


def test_reader_returns_plain_rgb_layers(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "field.png")
    tifffile.imwrite(tmp_path / "case 7.ome.tif", rgb, photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    paths = [str(tmp_path / "field.png"), str(tmp_path / "case 7.ome.tif")]
    assert get_reader(paths) is read_ihc
    layers = [layer for p in paths for layer in get_reader(p)(p)]  # napari calls the reader once per file
    assert [layer[2] for layer in layers] == ["image", "image"]
    (png, png_meta, _), (ome, ome_meta, _) = layers
    assert isinstance(png, np.ndarray) and png.dtype == np.uint8
    np.testing.assert_array_equal(png, rgb)
    assert png_meta["name"] == "field" and png_meta["rgb"] is True
    assert "scale" not in png_meta and png_meta["metadata"]["pixel_size_um"] is None
    assert ome_meta["name"] == "case 7"
    assert ome_meta["scale"] == (0.5, 0.5) and ome_meta["metadata"]["pixel_size_um"] == 0.5
    assert ome_meta["metadata"]["path"].endswith("case 7.ome.tif")
    np.testing.assert_array_equal(ome, rgb)


def test_reader_returns_a_lazy_multiscale_for_pyramids(tmp_path, opened):
    path = str(make_synthetic_slide(tmp_path / "slide.tif", (2048, 1536), tile=256, pixel_size_um=0.25))
    [(data, meta, kind)] = read_ihc(path)
    assert kind == "image" and meta["multiscale"] is True and meta["rgb"] is True
    assert all(isinstance(level, da.Array) for level in data)
    assert [level.shape for level in data][:3] == [(2048, 1536, 3), (1024, 768, 3), (512, 384, 3)]
    assert meta["scale"] == (0.25, 0.25)
    assert data[-1].compute().dtype == np.uint8
    import napari.layers

    layer = napari.layers.Image(data, **meta)  # valid layer arguments, and nothing is read at full size
    assert layer.multiscale and layer.rgb and tuple(layer.scale) == (0.25, 0.25)


def test_reader_builds_a_pyramid_for_large_single_level_files(tmp_path, monkeypatch, opened):
    import napari_ihcseg._reader as reader

    monkeypatch.setattr(reader, "LARGE_PIXELS", 100 * 100)
    monkeypatch.setattr(reader, "SMALLEST_LEVEL_SIDE", 64)
    image = make_synthetic_ihc((300, 260), seed=1).image
    tifffile.imwrite(tmp_path / "flat.tif", image, photometric="rgb", tile=(64, 64))
    [(data, meta, _)] = read_ihc(str(tmp_path / "flat.tif"))
    assert meta["multiscale"] is True
    assert [level.shape[:2] for level in data] == [(300, 260), (150, 130), (75, 65), (38, 33)]
    np.testing.assert_array_equal(data[2].compute(), image[::4, ::4])


def test_reader_reports_bad_files_in_one_line(tmp_path, rgb):
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    with pytest.raises(ImageReadError, match="gray.png: grayscale"):
        read_ihc(str(tmp_path / "gray.png"))


def test_writer_saves_labels(tmp_path):
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 3:9] = 4
    [out] = write_labels(str(tmp_path / "nuclei"), labels, {"name": "nuclei"})
    assert out == str(tmp_path / "nuclei.tif")
    np.testing.assert_array_equal(read_labels(out), labels)
    [out] = write_labels(str(tmp_path / "lazy.tiff"), [da.from_array(labels, chunks=10), labels[::2, ::2]], {})
    assert out.endswith("lazy.tiff")
    np.testing.assert_array_equal(read_labels(out), labels)


def test_saved_labels_reopen_through_the_plugin_where_they_were_drawn(tmp_path):
    """The writer's TIFF opens with the plugin's reader as labels, with the layer's scale and translate."""
    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 3:9] = 70000
    [out] = write_labels(str(tmp_path / "nuclei.tif"), labels, {"scale": (0.5, 0.5), "translate": (100.0, 50.0)})
    [(data, meta, kind)] = read_ihc(out)
    assert kind == "labels" and meta["name"] == "nuclei"
    np.testing.assert_array_equal(data, labels)
    assert meta["scale"] == (0.5, 0.5) and meta["translate"] == (100.0, 50.0)
    grey = tmp_path / "grey.tif"  # a grey image is not taken for labels
    tifffile.imwrite(grey, np.zeros((20, 30), np.uint16))
    with pytest.raises(ImageReadError, match="grey.tif"):
        read_ihc(str(grey))


@pytest.mark.parametrize("labels", [np.arange(3 * 16 * 16, dtype=np.int32).reshape(3, 16, 16),
                                    np.full((16, 16), -1, np.int32)], ids=["stack", "negative ids"])
def test_labels_napari_holds_but_nuclei_do_not_are_still_saved(tmp_path, labels):
    """napari takes this writer first for labels saved as TIFF: a refusal would save nothing, silently."""
    [out] = write_labels(str(tmp_path / "odd.tif"), labels, {})
    np.testing.assert_array_equal(tifffile.imread(out), labels)


def test_ihc_sample_loads_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    [(image, meta, kind)] = ihc_sample()
    assert kind == "image" and meta == {"name": "IHC sample", "rgb": True}
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert image.std() > 10


def test_synthetic_sample_has_image_and_truth():
    import napari.layers

    (image, image_meta, image_kind), (labels, labels_meta, labels_kind) = synthetic_sample()
    assert (image_kind, labels_kind) == ("image", "labels")
    assert image.shape == (512, 512, 3) and labels.shape == (512, 512)
    n = int(labels.max())
    features = labels_meta["features"]
    assert len(features["intensity_class"]) == n + 1 and features["intensity_class"][0] == -1
    napari.layers.Image(image, **image_meta)  # the metadata is valid layer keyword arguments
    layer = napari.layers.Labels(labels, **labels_meta)
    assert list(layer.features["index"])[:3] == [0, 1, 2]


def test_ki67_sample_is_a_nuclear_stain_with_its_truth():
    import napari.layers

    from napari_ihcseg.scoring import score_image

    (image, image_meta, image_kind), (labels, labels_meta, labels_kind) = ki67_sample()
    assert (image_kind, labels_kind) == ("image", "labels")
    truth = image_meta["metadata"]["ihcseg_truth"]
    assert truth["n_nuclei"] == int(labels.max()) > 400
    napari.layers.Image(image, **image_meta)
    assert napari.layers.Labels(labels, **labels_meta).visible is False
    # Scored on its own truth, the field gives back the true index and reads as a nuclear stain.
    summary = score_image(image, labels, stain="ki67").summary
    assert summary["ki67_index"] == pytest.approx(truth["ki67_index"], abs=0.01)
    assert summary["stain_pattern"] == "nuclear" and not summary["warnings"]
    assert truth["hotspot_ki67_index"] > truth["ki67_index"] + 10


def test_open_as_stack_gives_one_layer_of_same_sized_images(tmp_path, rgb):
    """napari passes the list only for viewer.open(paths, stack=True); each path alone otherwise."""
    paths = []
    for k in range(3):
        Image.fromarray(np.roll(rgb, k, axis=0)).save(tmp_path / f"f{k}.png")
        paths.append(str(tmp_path / f"f{k}.png"))
    [(data, meta, kind)] = read_ihc(paths)
    assert kind == "image" and data.shape == (3, *rgb.shape) and meta["name"] == "f0" and meta["rgb"]
    np.testing.assert_array_equal(data[2], np.roll(rgb, 2, axis=0))
    assert len(read_ihc(paths[0])) == 1
    Image.fromarray(rgb[:32]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match=r"different sizes or kinds: f0.png \(image 64x80\), small.png \(image 32x80\)"):
        read_ihc([paths[0], str(tmp_path / "small.png")])
