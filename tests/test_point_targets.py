"""Learning from points: pseudo-instances, the trusted region, and the trainer on point samples."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_ihcseg.data.sample import Sample
from napari_ihcseg.data.synthetic import make_synthetic_ihc
from napari_ihcseg.metrics import evaluate_instances
from napari_ihcseg.stain import compose
from napari_ihcseg.training.points import PointTargetConfig, adopt_detections, point_targets, pseudo_label_sample


def _field(seed=3, shape=(128, 128)):
    f = make_synthetic_ihc(shape, seed=seed, positive_fraction=0.3)
    ids = np.unique(f.labels[f.labels > 0])
    centres = np.asarray(ndi.center_of_mass(np.ones_like(f.labels), f.labels, ids))
    return f, ids, centres


def _diameter(labels):
    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(np.sqrt(4 * areas[areas > 0] / np.pi)))


@pytest.mark.parametrize("method", ["watershed", "disk"])
def test_each_point_grows_a_pseudo_nucleus_on_its_own_nucleus(method):
    f, ids, centres = _field()
    config = PointTargetConfig(method=method, nucleus_diameter=_diameter(f.labels))
    labels, trusted = point_targets(f.image, centres, config=config)
    assert labels.dtype == np.int32 and labels.shape == f.labels.shape
    m = evaluate_instances(labels, f.labels)
    assert m["dice"] > 0.6 and m["aji"] > 0.35, m
    # Pseudo-nucleus i comes from point i and lies mostly on nucleus ids[i] (synthetic nuclei may overlap).
    on_own = [np.mean(f.labels[labels == i + 1] == truth_id) > 0.5 for i, truth_id in enumerate(ids)
              if (labels == i + 1).any()]
    assert len(on_own) >= 0.9 * len(ids) and np.mean(on_own) > 0.8
    # Trusted background is truly background (a point never teaches a nucleus as background).
    background = trusted & (labels == 0)
    assert background.sum() > 0.2 * labels.size
    assert np.mean(f.labels[background] > 0) < 0.03


def test_the_watershed_follows_the_nucleus_outline_better_than_the_disk():
    f, _, centres = _field(seed=5)
    d = _diameter(f.labels)
    scores = {m: evaluate_instances(point_targets(f.image, centres, config=PointTargetConfig(
        method=m, nucleus_diameter=d))[0], f.labels)["dice"] for m in ("watershed", "disk")}
    assert scores["watershed"] > scores["disk"], scores


def test_touching_nuclei_are_separated_along_voronoi_edges():
    image = np.full((40, 60, 3), 235, np.uint8)
    image[12:28, 10:50] = (80, 60, 150)                 # one dark bar: two touching nuclei
    points = np.array([[20.0, 20.0], [20.0, 40.0]])
    labels, _ = point_targets(image, points, config=PointTargetConfig(method="disk", nucleus_diameter=30))
    assert set(np.unique(labels)) == {0, 1, 2}
    cols1, cols2 = np.nonzero(labels == 1)[1], np.nonzero(labels == 2)[1]
    assert cols1.max() <= 30 <= cols2.min(), "each pixel goes to its nearer point (column 30 is a tie)"
    assert not np.isin(cols1, cols2[cols2 != 30]).any()


def test_outside_the_region_and_unannotated_dark_nuclei_are_ignored_brown_cytoplasm_is_background():
    f, ids, centres = _field(seed=7)
    d = _diameter(f.labels)
    region = np.zeros(f.labels.shape, bool)
    region[:, :96] = True
    dropped = 0                                          # a nucleus inside the region that nobody marked
    while centres[dropped, 1] > 80:
        dropped += 1
    keep = np.arange(len(ids)) != dropped
    labels, trusted = point_targets(f.image, centres[keep], region, PointTargetConfig(nucleus_diameter=d))
    assert not trusted[:, 96:].any(), "nothing outside the region is trusted"
    unmarked = f.labels == ids[dropped]
    assert np.mean(trusted[unmarked] & (labels[unmarked] == 0)) < 0.2, \
        "an unannotated nucleus is ignored, not taught as background"
    # A brown smear without hematoxylin far from every point stays trusted background.
    conc = np.zeros((*f.labels.shape, 3), np.float32)
    conc[..., 1] = 0.02
    conc[100:120, 10:40, 1] = 0.8
    brown = compose(conc)
    labels, trusted = point_targets(brown, np.array([[20.0, 100.0]]), config=PointTargetConfig(nucleus_diameter=d))
    assert trusted[105:115, 15:35].all() and not labels[100:120, 10:40].any()


def test_pseudo_label_sample_turns_points_into_labels_and_a_trusted_region():
    f, _, centres = _field()
    region = np.ones(f.labels.shape, bool)
    region[:10] = False
    s = Sample(f.image, None, name="p", source="pts", stain="Ki-67", points=centres,
               point_classes=np.zeros(len(centres), np.int8), region=region)
    out = pseudo_label_sample(s, PointTargetConfig(nucleus_diameter=_diameter(f.labels)))
    assert out.labels is not None and out.labels.max() > 0
    np.testing.assert_array_equal(out.points, s.points)
    assert out.region.shape == region.shape and not out.region[:10].any() and out.region.mean() < region.mean()
    labelled = Sample(f.image, f.labels, name="l")
    assert pseudo_label_sample(labelled) is labelled, "outlined samples keep their own labels"


def test_point_target_config_refuses_bad_values():
    with pytest.raises(ValueError, match="method must be one of watershed, disk"):
        PointTargetConfig(method="voronoi")
    with pytest.raises(ValueError, match="nucleus_diameter must be positive"):
        PointTargetConfig(nucleus_diameter=0)


# ---------------------------------------------------------------- self-training


def test_a_detection_holding_one_point_replaces_that_points_grown_nucleus():
    f, ids, centres = _field(seed=4)
    config = PointTargetConfig(nucleus_diameter=_diameter(f.labels))
    grown, _ = point_targets(f.image, centres, config=config)
    adopted = adopt_detections(grown, f.labels, centres)
    # Every truth nucleus that holds exactly one point becomes that point's pseudo-nucleus, outline and all.
    under = f.labels[np.rint(centres[:, 0]).astype(int), np.rint(centres[:, 1]).astype(int)]
    alone = [i for i, u in enumerate(under) if u > 0 and np.sum(under == u) == 1]
    assert len(alone) >= 0.8 * len(ids)
    for i in alone:
        np.testing.assert_array_equal(adopted == i + 1, f.labels == under[i])
    assert evaluate_instances(adopted, f.labels)["aji"] > evaluate_instances(grown, f.labels)["aji"]


def test_merged_and_pointless_detections_change_no_pseudo_nucleus():
    image = np.full((40, 60, 3), 235, np.uint8)
    image[12:28, 10:50] = (80, 60, 150)
    points = np.array([[20.0, 20.0], [20.0, 40.0]])
    config = PointTargetConfig(nucleus_diameter=16, self_training=True)
    grown, _ = point_targets(image, points, config=PointTargetConfig(nucleus_diameter=16))
    merged = np.zeros((40, 60), np.int32)
    merged[12:28, 10:50] = 1                           # one detection over both points: a merge
    merged[30:38, 2:8] = 2                             # a detection without a point
    labels, trusted = point_targets(image, points, config=config, detections=merged)
    np.testing.assert_array_equal(labels, grown)
    assert not (labels[30:38, 2:8] > 0).any()
    with pytest.raises(ValueError, match="needs the model's detections"):
        point_targets(image, points, config=config)
    with pytest.raises(ValueError, match="shape"):
        adopt_detections(grown, merged[:, :10], points)
    with pytest.raises(TypeError, match="self_training must be True or False"):
        PointTargetConfig(self_training="yes")


def test_self_training_segments_each_point_sample_with_the_starting_model(monkeypatch):
    from napari_ihcseg.training import prepare
    from napari_ihcseg.training.config import TrainConfig

    f, _, centres = _field(seed=6, shape=(96, 96))
    points = Sample(f.image, None, name="p", points=centres)
    outlined = Sample(f.image, f.labels, name="o")
    seen = []

    def fake_detections(model, image, device="cpu", **options):
        seen.append(model)
        return f.labels

    monkeypatch.setattr(prepare, "model_detections", fake_detections)
    config = TrainConfig(out="unused", model="r2unet-lite",
                         points=PointTargetConfig(nucleus_diameter=_diameter(f.labels), self_training=True))
    train, _ = prepare.resolve_data(config, [points, outlined], [], model="the model")
    assert seen == ["the model"], "only the point sample is segmented, by the given model"
    assert evaluate_instances(train[0].labels, f.labels)["aji"] > 0.8
    assert train[1] is outlined
    with pytest.raises(ValueError, match="needs a trained checkpoint"):
        prepare.resolve_data(config, [points], [])


# ---------------------------------------------------------------- the trainer

torch = pytest.importorskip("torch")


def test_training_crops_of_a_point_sample_count_loss_only_where_targets_are_trusted(tmp_path):
    from napari_ihcseg.training.augment import NO_AUGMENT
    from napari_ihcseg.training.batches import BatchSampler

    f, _, centres = _field(shape=(96, 96))
    region = np.zeros((96, 96), bool)
    region[:, :48] = True
    s = pseudo_label_sample(Sample(f.image, None, name="p", points=centres, region=region),
                            PointTargetConfig(nucleus_diameter=_diameter(f.labels)))
    sampler = BatchSampler([s], tile=96, stride=96, batch_size=1, seed=0, augment=NO_AUGMENT)
    batch = sampler.batch(0, 0)
    valid = batch.valid[0, 0] > 0
    assert not valid[:, 48:].any() and valid[:, :48].any()
    np.testing.assert_array_equal(valid, s.region)
    assert batch.mask[0, 0][s.labels > 0].all() and batch.contour_weight[0] == 1.0


def test_the_trainer_learns_from_points_and_validates_on_outlines_only(tmp_path):
    from napari_ihcseg.training.augment import NO_AUGMENT
    from napari_ihcseg.training.trainer import TrainConfig, train

    samples = []
    for seed in (0, 1):
        f, _, centres = _field(seed=seed, shape=(96, 96))
        samples.append(Sample(f.image, None, name=f"p{seed}", source="pts", stain="Ki-67", points=centres))
    outlined = Sample(f.image, f.labels, name="o1", source="synthetic", stain="Ki-67")
    config = TrainConfig(out=str(tmp_path), model="r2unet-lite",
                         model_options={"filters": (8, 16, 32, 64, 64, 64), "recur_num": 1}, batch_size=4, tile=64,
                         stride=32, warmup_steps=5, synthetic_fraction=0.0, augment=NO_AUGMENT, patience=None,
                         num_threads=1, lr=1e-2, epochs=3, max_steps_per_epoch=6, min_steps_per_epoch=6,
                         tune_instances=False, points=PointTargetConfig(nucleus_diameter=12))
    result = train(config, train_samples=samples, val_samples=[outlined, samples[1]])
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.75 * losses[0], "the pseudo-labels are learnable"
    assert "val_synthetic_dice" in result.history[-1] and "val_pts_dice" not in result.history[-1], \
        "point samples are left out of the validation, which needs outlines"
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_self_training_with_the_shipped_model_outlines_nuclei_better_than_the_watershed():
    from napari_ihcseg.models import load_model
    from napari_ihcseg.training import prepare
    from napari_ihcseg.training.config import TrainConfig

    f, _, centres = _field(seed=8, shape=(128, 128))
    d = _diameter(f.labels)
    sample = Sample(f.image, None, name="p", points=centres)
    model = load_model("r2unet-lite-ihc", device="cpu").train()
    grown, = prepare.resolve_data(TrainConfig(out="unused", model="r2unet-lite-ihc",
                                              points=PointTargetConfig(nucleus_diameter=d)), [sample], [])[0]
    config = TrainConfig(out="unused", model="r2unet-lite-ihc", amp=False, channels_last=False,
                         points=PointTargetConfig(nucleus_diameter=d, self_training=True))
    refined, = prepare.resolve_data(config, [sample], [], model=model)[0]
    assert model.training, "the run's model keeps its training mode"
    assert next(model.parameters()).is_contiguous(), "and the memory layout it trains in"
    aji = {name: evaluate_instances(s.labels, f.labels)["aji"] for name, s in (("grown", grown), ("refined", refined))}
    assert aji["refined"] > aji["grown"] + 0.05, aji


def test_a_self_training_run_starts_from_a_checkpoint_and_resumes_only_with_the_same_setting(tmp_path):
    import dataclasses
    import json

    from napari_ihcseg.training.augment import NO_AUGMENT
    from napari_ihcseg.training.prepare import RUN_JSON, check_resume_config
    from napari_ihcseg.training.trainer import TrainConfig, train

    f, _, centres = _field(seed=2, shape=(96, 96))
    samples = [Sample(f.image, None, name="p", source="pts", stain="Ki-67", points=centres)]
    outlined = Sample(f.image, f.labels, name="o", source="synthetic", stain="Ki-67")
    common = dict(model_options={"filters": (8, 16, 32, 64, 64, 64), "recur_num": 1}, batch_size=2, tile=64,
                  warmup_steps=1, synthetic_fraction=0.0, augment=NO_AUGMENT, patience=None, num_threads=1,
                  epochs=1, max_steps_per_epoch=2, min_steps_per_epoch=2, tune_instances=False)
    points = PointTargetConfig(nucleus_diameter=12, self_training=True)
    with pytest.raises(ValueError, match="needs a trained checkpoint"):
        train(TrainConfig(out=str(tmp_path / "new"), model="r2unet-lite", points=points, **common),
              train_samples=samples, val_samples=[outlined])
    base = train(TrainConfig(out=str(tmp_path / "base"), model="r2unet-lite", **common),
                 train_samples=[outlined], val_samples=[outlined])
    config = TrainConfig(out=str(tmp_path / "round"), model=str(base.best_checkpoint),
                         **{**common, "model_options": {}}, points=points)
    result = train(config, train_samples=samples, val_samples=[outlined])
    assert result.history and np.isfinite(result.history[-1]["train_loss"])
    assert TrainConfig.from_dict(config.to_dict()).points.self_training
    check_resume_config(tmp_path / "round", config)
    with pytest.raises(ValueError, match="points changed"):
        check_resume_config(tmp_path / "round", dataclasses.replace(config, points=PointTargetConfig(nucleus_diameter=12)))
    # A run recorded before the setting existed resumes without it.
    recorded = json.loads((tmp_path / "round" / RUN_JSON).read_text())
    del recorded["config"]["points"]["self_training"]
    (tmp_path / "round" / RUN_JSON).write_text(json.dumps(recorded))
    check_resume_config(tmp_path / "round", dataclasses.replace(config, points=PointTargetConfig(nucleus_diameter=12)))


def test_training_recipe_adds_the_ki67_training_cases_only_when_asked(tmp_path, train_recipe):
    _, config = train_recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path)])
    assert not any(s.startswith(("immunoratio:", "glioma:")) for s in config.train_data)
    assert config.points.method == "watershed" and config.amp
    _, config = train_recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path), "--immunoratio-repeat",
                                         "2", "--glioma-repeat", "1", "--point-method", "disk", "--no-amp"])
    assert config.train_data.count(f"immunoratio:{tmp_path / 'ki67-immunoratio'}") == 2
    assert config.train_data.count(f"glioma:{tmp_path / 'ki67-glioma-polygons'}") == 1
    assert train_recipe.GLIOMA_VAL in config.val_names, "a training glioma frame, not a held-out one, validates"
    assert config.points.method == "disk" and not config.amp and not config.points.self_training
    _, config = train_recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path), "--immunoratio-repeat",
                                         "1", "--self-training"])
    assert config.points.self_training


def test_training_recipe_repeats_the_he_sources_beside_the_point_sets(tmp_path, train_recipe):
    _, config = train_recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path), "--he-repeat", "3",
                                         "--immunoratio-repeat", "1"])
    for source in ("monuseg-train", "cpm15", "gbm-tcga-contours"):
        assert sum(s.endswith(str(tmp_path / source)) for s in config.train_data) == 3, source
    assert sum(s.startswith("immunoratio:") for s in config.train_data) == 1
    with pytest.raises(SystemExit):
        train_recipe.parse_args([str(tmp_path / "out"), "--data-root", str(tmp_path), "--he-repeat", "0"])


def test_the_split_by_image_holds_out_outlined_images_only_every_point_image_trains(tmp_path):
    """A held-out point image could neither validate (no outlines) nor train: it was dropped without a word."""
    from napari_ihcseg.training.prepare import resolve_data
    from napari_ihcseg.training.trainer import TrainConfig

    points, outlined = [], []
    for seed in range(5):
        f, _, centres = _field(seed=seed, shape=(64, 64))
        points.append(Sample(f.image, None, name=f"pts/p{seed}", source="pts", points=centres))
        outlined.append(Sample(f.image, f.labels, name=f"lab/o{seed}", source="lab"))
    config = TrainConfig(out=str(tmp_path), model="r2unet-lite", val_fraction=0.4,
                         points=PointTargetConfig(nucleus_diameter=12))
    train_samples, val_samples = resolve_data(config, points + outlined, None)
    assert sorted(s.name for s in train_samples if s.name.startswith("pts/")) == [s.name for s in points]
    assert len(val_samples) == 2 and all(s.name.startswith("lab/") for s in val_samples)
    assert len(train_samples) == 5 + 3
    with pytest.raises(ValueError, match="pts/p1 annotated by points only"):
        resolve_data(TrainConfig.from_dict({**config.to_dict(), "val_names": ["pts/p1"]}), points + outlined, None)
    with pytest.raises(ValueError, match=r"not found in the training data: p1 \(names are folder/stem, e\.g\. lab/o0"):
        resolve_data(TrainConfig.from_dict({**config.to_dict(), "val_names": ["p1"]}), points + outlined, None)


def test_a_held_out_tile_takes_its_slide_with_it_and_names_and_point_validation_are_checked(tmp_path):
    """--val-names left a held-out tile's neighbours in training; point-only --val-data vanished without a word."""
    from napari_ihcseg.training.prepare import resolve_data
    from napari_ihcseg.training.trainer import TrainConfig

    tiles = []
    for seed in range(4):
        f, _, _ = _field(seed=seed, shape=(64, 64))
        tiles.append(Sample(f.image, f.labels, name=f"tiles/slide{seed // 2}_t{seed % 2}", source="pairs",
                            group=f"tiles:slide{seed // 2}"))
    config = TrainConfig(out=str(tmp_path), model="r2unet-lite", val_names=("tiles/slide0_t0",))
    train_samples, val_samples = resolve_data(config, tiles, None)
    assert sorted(s.name for s in val_samples) == ["tiles/slide0_t0", "tiles/slide0_t1"]
    assert sorted(s.name for s in train_samples) == ["tiles/slide1_t0", "tiles/slide1_t1"]

    twin = Sample(tiles[0].image, tiles[0].labels, name="tiles/slide1_t0", source="pairs")
    with pytest.raises(ValueError, match=r"1 image name\(s\) appear more than once in the data, e\.g\. tiles/slide1_t0"):
        resolve_data(TrainConfig(out=str(tmp_path), model="r2unet-lite"), tiles + [twin], None)

    from PIL import Image

    pts = tmp_path / "pts"
    pts.mkdir()
    f, _, centres = _field(seed=9, shape=(64, 64))
    Image.fromarray(f.image).save(pts / "x.png")
    (pts / "x.csv").write_text("type,x,y\n" + "".join(f"2,{c:.1f},{r:.1f}\n" for r, c in centres))
    config = TrainConfig(out=str(tmp_path), model="r2unet-lite", val_data=(str(pts),), val_fraction=0.0)
    with pytest.raises(ValueError, match="val_data: pts/x annotated by points only; validation needs outlines"):
        resolve_data(config, tiles, None)
