"""Training folders as labs have them: each layout is found, read, and trains; bad pairs are named and skipped."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.io import imsave

from napari_ihcseg.datasets import Sample, load_dataset
from napari_ihcseg.datasets.layouts import LAYOUTS, detect_layout, load_folder
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.io.points import write_points, write_points_geojson


def _fields(n=3, size=96):
    return [make_synthetic_ihc((size, size), seed=s, positive_fraction=0.3) for s in range(n)]


def _centroids(labels):
    ids = np.unique(labels)[1:]
    return np.array(ndi.center_of_mass(labels > 0, labels, ids))


def _polygon_geojson(labels):
    from skimage.measure import find_contours

    features = []
    for i in np.unique(labels)[1:]:
        contour = max(find_contours(np.pad(labels == i, 1).astype(float), 0.5), key=len) - 1
        ring = [[float(c), float(r)] for r, c in contour]
        features.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                         "properties": {"objectType": "detection"}})
    return {"type": "FeatureCollection", "features": features}


def make_layout(root, layout, fields):
    root.mkdir(parents=True)
    if layout == "pairs":
        from napari_ihcseg.pairs import save_pairs

        for k, f in enumerate(fields):
            save_pairs(root, f.image, f.labels, name=f"f{k}")
        return root
    if layout == "images-masks":
        (root / "images").mkdir()
        (root / "masks").mkdir()
        for k, f in enumerate(fields):
            imsave(root / "images" / f"f{k}.png", f.image, check_contrast=False)
            tifffile.imwrite(root / "masks" / f"f{k}.tif", f.labels.astype(np.uint16))
        return root
    for k, f in enumerate(fields):
        imsave(root / f"f{k}.png", f.image, check_contrast=False)
        if layout == "cellpose":
            imsave(root / f"f{k}_masks.png", f.labels.astype(np.uint16), check_contrast=False)
        elif layout == "qupath":
            (root / f"f{k}.geojson").write_text(json.dumps(_polygon_geojson(f.labels)))
        elif layout == "qupath-points":
            write_points_geojson(root / f"f{k}.geojson", _centroids(f.labels), np.arange(f.labels.max()) % 3 == 0)
        elif layout == "points-csv":
            write_points(root / f"f{k}.csv", _centroids(f.labels), np.arange(f.labels.max()) % 3 == 0)
    return root


@pytest.mark.parametrize("layout", ["pairs", "images-masks", "cellpose", "qupath"])
def test_each_mask_layout_is_found_and_read_as_instances(tmp_path, layout):
    fields = _fields()
    root = make_layout(tmp_path / layout, layout, fields)
    assert detect_layout(root) == layout
    data = load_folder(root)
    assert data.layout == layout and not data.skipped and len(data.samples) == 3
    assert LAYOUTS[layout] in data.summary()
    for sample, f in zip(sorted(data.samples, key=lambda s: s.name), fields):
        np.testing.assert_array_equal(sample.image, f.image)
        n = len(np.unique(f.labels)) - 1
        assert len(np.unique(sample.labels)) - 1 == pytest.approx(n, abs=0 if layout != "qupath" else 1)
    assert [s.name for s in load_dataset(str(root))] == [s.name for s in data.samples]  # a bare path


@pytest.mark.parametrize("layout", ["qupath-points", "points-csv"])
def test_point_layouts_give_point_samples(tmp_path, layout):
    fields = _fields()
    root = make_layout(tmp_path / layout, layout, fields)
    data = load_folder(root)
    assert data.layout == ("qupath" if layout == "qupath-points" else "points-csv")
    assert len(data.samples) == 3 and all(s.points_only for s in data.samples)
    sample = data.samples[0]
    truth = _centroids(fields[0].labels)
    np.testing.assert_allclose(np.sort(sample.points, axis=0), np.sort(truth, axis=0), atol=1e-6)
    assert sample.point_classes.sum() == (np.arange(len(truth)) % 3 == 0).sum()
    assert "with points only" in data.summary()


def test_binary_masks_are_split_with_a_warning(tmp_path):
    f = _fields(1)[0]
    root = make_layout(tmp_path / "cp", "cellpose", [f])
    separate = ndi.binary_erosion(f.labels > 0, iterations=1) & (ndi.grey_dilation(f.labels, 3) == f.labels)
    imsave(root / "f0_masks.png", (separate * 255).astype(np.uint8), check_contrast=False)
    data = load_folder(root)
    assert data.warnings and "split into connected components" in data.warnings[0]
    assert data.samples[0].labels.max() > 3


def test_a_class_mask_is_split_into_its_nuclei_and_an_instance_mask_is_not(tmp_path):
    """0 background, 1 positive, 2 negative: sixteen separate nuclei, not two."""
    f = _fields(1)[0]
    root = make_layout(tmp_path / "cm", "cellpose", [f])
    classes = np.zeros(f.labels.shape, np.uint8)
    for k, (y, x) in enumerate([(y, x) for y in (5, 25, 45, 65) for x in (10, 30, 50, 70)]):
        classes[y:y + 8, x:x + 8] = 1 + k % 2
    imsave(root / "f0_masks.png", classes, check_contrast=False)
    data = load_folder(root)
    assert data.samples[0].labels.max() == 16
    assert any("binary or class mask" in w for w in data.warnings)
    instances = np.where(classes > 0, ndi.label(classes > 0)[0], 0).astype(np.uint8)
    instances[instances == 16] = 15  # a nucleus in two pieces stays one in an instance mask
    imsave(root / "f0_masks.png", instances, check_contrast=False)
    data = load_folder(root)
    assert data.samples[0].labels.max() == 15 and not data.warnings
    few = np.zeros_like(classes)  # two nuclei, each with a pixel touching it at a corner only
    few[10:20, 10:20], few[20, 20] = 1, 1
    few[40:50, 40:50], few[50, 50] = 2, 2
    imsave(root / "f0_masks.png", few, check_contrast=False)
    data = load_folder(root)
    assert data.samples[0].labels.max() == 2 and not data.warnings


def test_bad_pairs_are_named_and_skipped_and_the_good_ones_kept(tmp_path):
    fields = _fields(6)
    root = make_layout(tmp_path / "im", "images-masks", fields)
    tifffile.imwrite(root / "masks" / "f1.tif", fields[1].labels.astype(np.float32))  # float mask
    tifffile.imwrite(root / "masks" / "f2.tif", fields[2].labels[:50].astype(np.uint16))  # wrong shape
    (root / "masks" / "f3.tif").unlink()  # missing partner
    (root / "images" / "f4.png").write_bytes(b"not a png")  # unreadable
    tifffile.imwrite(root / "masks" / "extra.tif", fields[0].labels.astype(np.uint16))  # mask without image
    data = load_folder(root)
    assert [s.name for s in data.samples] == ["im/f0", "im/f5"]
    text = "\n".join(data.skipped)
    assert len(data.skipped) == 5
    assert "f1.tif: a floating-point mask" in text
    assert "f2.tif: shape (50, 96) differs from its image f2.png" in text
    assert "f3.png: no mask of the same name" in text
    assert "f4.png: cannot read the image" in text
    assert "extra.tif: a mask without an image" in text
    assert "5 skipped" in data.summary()


@pytest.mark.parametrize("kind", ["pairs", "folder"])
def test_a_data_spec_skips_a_bad_pair_with_a_warning_naming_it(tmp_path, kind):
    """`pairs:` and `folder:` read a pair folder alike: the good pairs train, the bad one is named, not fatal."""
    root = make_layout(tmp_path / "saved", "pairs", _fields(3))
    tifffile.imwrite(root / "masks" / "f1.tif", np.zeros((50, 50), np.uint32))  # wrong shape
    with pytest.warns(UserWarning, match=r"skipped: .*masks/f1\.tif: shape \(50, 50\) differs"):
        samples = load_dataset(f"{kind}:{root}")
    assert [s.name for s in samples] == ["saved/f0", "saved/f2"]


def test_a_pairs_spec_on_a_folder_of_another_layout_is_refused_naming_it(tmp_path):
    root = make_layout(tmp_path / "lab", "images-masks", _fields(1))
    with pytest.raises(ValueError, match=rf"{root}: not a training-pair folder \(no dataset.json\); it holds "
                                         + re.escape(LAYOUTS["images-masks"])):
        load_dataset(f"pairs:{root}")
    assert len(load_dataset(f"folder:{root}")) == 1


def test_an_unknown_folder_lists_the_layouts_and_what_it_holds(tmp_path):
    root = tmp_path / "odd"
    (root / "raw").mkdir(parents=True)
    (root / "notes.txt").write_text("x")
    imsave(root / "a.png", np.zeros((8, 8, 3), np.uint8), check_contrast=False)
    with pytest.raises(ValueError) as info:
        detect_layout(root)
    message = str(info.value)
    assert "no known training layout" in message and "2 file(s) (1 .png, 1 .txt)" in message and "raw/" in message
    for description in LAYOUTS.values():
        assert description in message


def test_qupath_polygons_outside_their_image_are_noted_and_an_annotation_of_another_image_skipped(tmp_path):
    fields = _fields(2)
    root = make_layout(tmp_path / "qp", "qupath", fields)
    ring = [[500.0, 500.0], [510.0, 500.0], [510.0, 510.0], [500.0, 500.0]]
    far = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}}
    some = _polygon_geojson(fields[0].labels)
    n = len(some["features"])
    some["features"].append(far)
    (root / "f0.geojson").write_text(json.dumps(some))
    (root / "f1.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [far, far]}))
    data = load_folder(root)
    assert [s.name for s in data.samples] == ["qp/f0"]
    assert data.samples[0].labels.max() == n
    assert data.warnings == [f"{root / 'f0.geojson'}: 1 of {n + 1} polygons lie outside the 96x96 image "
                             "and are left out"]
    assert len(data.skipped) == 1
    assert data.skipped[0].startswith(f"{root / 'f1.geojson'}: all 2 polygon(s) lie outside the 96x96 image")


def test_an_empty_images_masks_folder_says_it_holds_nothing(tmp_path):
    root = tmp_path / "empty"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    with pytest.raises(ValueError, match=r"but no pair could be read \(images/ holds nothing, masks/ nothing\)$"):
        load_folder(root)
    imsave(root / "images" / "a.png", np.zeros((8, 8, 3), np.uint8), check_contrast=False)
    with pytest.raises(ValueError, match=r"\(.*a\.png: no mask of the same name in masks/\)$"):
        load_folder(root)


def test_samples_check_their_points():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"labels or a mask \(or points\)"):
        Sample(image, None, name="x")
    with pytest.raises(ValueError, match="one 0 or 1 per point"):
        Sample(image, None, name="x", points=[[1, 2]], point_classes=[1, 0])
    with pytest.raises(ValueError, match="region shape"):
        Sample(image, None, name="x", points=[[1, 2]], region=np.ones((4, 4), bool))


# --------------------------------------------------------------------------- training

TINY = {"filters": (8, 16, 32, 64, 64, 64), "recur_num": 1}


def _tiny_config(out, root, **extra):
    from napari_ihcseg.training.augment import NO_AUGMENT
    from napari_ihcseg.training.trainer import TrainConfig

    return TrainConfig(out=str(out), model="r2unet-lite", model_options=TINY, train_data=(str(root),), epochs=1,
                       batch_size=2, tile=64, stride=64, warmup_steps=1, synthetic_fraction=0.0, augment=NO_AUGMENT,
                       patience=None, num_threads=1, max_steps_per_epoch=1, val_fraction=0.34,
                       tune_instances=False, **extra)


@pytest.mark.parametrize("layout", ["pairs", "images-masks", "cellpose", "qupath"])
def test_each_mask_layout_trains(tmp_path, layout):
    pytest.importorskip("torch")
    from napari_ihcseg.training.trainer import train

    root = make_layout(tmp_path / layout, layout, _fields())
    result = train(_tiny_config(tmp_path / "run", root))
    assert result.best_checkpoint is not None and (tmp_path / "run" / "metrics.csv").is_file()


@pytest.mark.parametrize("layout", ["qupath-points", "points-csv"])
def test_point_only_layouts_train_from_pseudo_instances_grown_from_their_points(tmp_path, layout):
    pytest.importorskip("torch")
    from napari_ihcseg.training.trainer import train

    root = make_layout(tmp_path / layout, layout, _fields())
    result = train(_tiny_config(tmp_path / "run", root))
    assert result.global_step >= 1 and result.best_checkpoint is not None


def test_cli_trains_from_images_and_masks_without_dataset_json_and_names_the_layout(tmp_path, capsys):
    pytest.importorskip("torch")
    from napari_ihcseg.cli import main

    fields = _fields(4)
    root = make_layout(tmp_path / "lab", "images-masks", fields)
    tifffile.imwrite(root / "masks" / "f3.tif", fields[3].labels.astype(np.float64))
    code = main(["train", str(root), "--model", "r2unet-lite", "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--tile", "64", "--batch-size", "2", "--max-steps-per-epoch", "1", "--threads", "1",
                 "--val-split", "0.34", "--synthetic-fraction", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"found {root}: {LAYOUTS['images-masks']}; 3 sample(s); 1 skipped" in captured.out
    assert "skipped: " in captured.err and "f3.tif: a floating-point mask" in captured.err
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "readme.txt").write_text("x")
    assert main(["train", str(odd), "--model", "r2unet-lite", "--epochs", "1", "--out", str(tmp_path / "r2")]) == 2
    assert "no known training layout" in capsys.readouterr().err


def test_a_qupath_point_on_the_first_half_pixel_is_inside_its_image(tmp_path):
    """QuPath's frame has its origin at the image's corner: x = 0.2 lies on column 0, not outside."""
    f = _fields(1)[0]
    root = tmp_path / "qp"
    root.mkdir()
    imsave(root / "f0.png", f.image, check_contrast=False)
    feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0.2, 0.2]},
               "properties": {"classification": {"name": "Positive"}}}
    (root / "f0.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    data = load_folder(root)
    assert not data.skipped, data.skipped
    np.testing.assert_allclose(data.samples[0].points, [[-0.3, -0.3]])


def test_a_cmyk_training_image_is_read_in_its_colours_not_as_rgba(tmp_path):
    from PIL import Image

    from napari_ihcseg.data.sample import read_sample_image

    rgb = np.full((16, 16, 3), (200, 60, 40), np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tif")
    for name in ("c.jpg", "c.tif"):
        assert np.abs(read_sample_image(tmp_path / name).astype(int) - rgb).max() <= 3, name


def _feature(geometry, name=None, **extra):
    props = {"objectType": "annotation", **({"classification": {"name": name}} if name else {})}
    return {"type": "Feature", "geometry": geometry, "properties": props, **extra}


def _square(x0, y0, side):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + side, y0], [x0 + side, y0 + side],
                                                [x0, y0 + side], [x0, y0]]]}


def test_a_qupath_counting_export_gives_its_points_in_its_region(tmp_path):
    """A tumour outline with the points counted in it: points to learn from, inside the outline; not one
    giant nucleus with the points thrown away."""
    from PIL import Image

    root = tmp_path / "qp"
    root.mkdir()
    Image.fromarray(np.full((100, 120, 3), 220, np.uint8)).save(root / "s.png")
    features = [_feature(_square(10, 10, 80), "Tumor"),
                _feature({"type": "MultiPoint", "coordinates": [[30.5, 40.5], [60.5, 50.5]]}, "Positive")]
    (root / "s.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    data = load_folder(root)
    [sample] = data.samples
    assert sample.labels is None and sample.points.tolist() == [[40, 30], [50, 60]]
    assert sample.region.sum() == 80 * 80 and sample.region[50, 50] and not sample.region[5, 5]
    assert any("the outlines the region they were counted in" in w for w in data.warnings)


def test_a_qupath_cell_export_trains_the_nucleus_not_the_cell(tmp_path):
    from PIL import Image

    root = tmp_path / "cells"
    root.mkdir()
    Image.fromarray(np.full((64, 64, 3), 220, np.uint8)).save(root / "c.png")
    cell = _feature(_square(10, 10, 40), nucleusGeometry=_square(20, 20, 20))
    cell["properties"]["objectType"] = "cell"
    (root / "c.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [cell]}))
    [sample] = load_folder(root).samples
    assert (sample.labels > 0).sum() == 400


def test_a_palette_mask_gives_its_indices_as_the_pairs_reader_does(tmp_path):
    """labelme and VOC save instance masks as palette PNGs: index k is nucleus k, whatever its colour."""
    from PIL import Image

    f = _fields(1)[0]
    root = make_layout(tmp_path / "pal", "cellpose", [f])
    labels = f.labels.astype(np.uint8)
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette(list(np.random.default_rng(0).integers(0, 256, 768)))
    palette.save(root / "f0_masks.png")
    [sample] = load_folder(root).samples
    np.testing.assert_array_equal(sample.labels, labels)


@pytest.mark.parametrize("layout", ["images-masks", "cellpose"])
def test_two_images_of_one_name_are_skipped_naming_each_other(tmp_path, layout):
    from PIL import Image

    fields = _fields(2)
    root = make_layout(tmp_path / "dup", layout, fields)
    first = (root / "images" if layout == "images-masks" else root) / "f0.png"
    Image.fromarray(fields[0].image).save(first.with_suffix(".jpg"))
    data = load_folder(root)
    assert [s.name.split("/")[-1] for s in data.samples] == ["f1"]
    assert any("f0.png: shares its name with f0.jpg" in m for m in data.skipped)


@pytest.mark.parametrize("point_class", ["Positive", None])
def test_nucleus_outlines_with_a_stray_point_are_still_nuclei(tmp_path, point_class):
    from PIL import Image

    root = tmp_path / "stray"
    root.mkdir()
    Image.fromarray(np.full((100, 120, 3), 220, np.uint8)).save(root / "s.png")
    features = [_feature(_square(5 + 20 * k, 10, 12)) for k in range(5)]
    features.append(_feature({"type": "Point", "coordinates": [60.5, 80.5]}, point_class))
    (root / "s.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    data = load_folder(root)
    [sample] = data.samples
    assert sample.labels.max() == 5 and sample.points is None
    assert any("1 point(s) beside 5 nucleus outline(s) are not used" in w for w in data.warnings)


def test_one_outline_and_one_point_is_a_count_and_qupath_detections_stay_nuclei(tmp_path):
    from PIL import Image

    root = tmp_path / "qp1"
    root.mkdir()
    Image.fromarray(np.full((100, 120, 3), 220, np.uint8)).save(root / "s.png")
    point = _feature({"type": "MultiPoint", "coordinates": [[30.5, 40.5], [50.5, 40.5], [70.5, 40.5]]}, "Negative")
    (root / "s.geojson").write_text(json.dumps([_feature(_square(10, 10, 80), "Tumor"),
                                                _feature({"type": "Point", "coordinates": [30.5, 40.5]}, "Positive")]))
    [sample] = load_folder(root).samples
    assert sample.labels is None and len(sample.points) == 1 and sample.region.sum() == 80 * 80
    detections = [_feature(_square(5 + 20 * k, 10, 12)) for k in range(2)]
    for d in detections:
        d["properties"]["objectType"] = "detection"
    (root / "s.geojson").write_text(json.dumps(detections + [point]))
    [sample] = load_folder(root).samples
    assert sample.labels.max() == 2 and sample.points is None


def test_a_small_class_mask_of_ten_nuclei_is_split(tmp_path):
    f = _fields(1)[0]
    root = make_layout(tmp_path / "cm10", "cellpose", [f])
    classes = np.zeros(f.labels.shape, np.uint8)
    for k, x in enumerate(range(5, 85, 16)):
        classes[10:18, x:x + 8] = 1
        classes[40:48, x:x + 8] = 2
    imsave(root / "f0_masks.png", classes, check_contrast=False)
    assert load_folder(root).samples[0].labels.max() == 10
