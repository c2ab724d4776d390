"""Setting a training run up: the model it starts from, its data, and the check before resuming it."""

from __future__ import annotations

import json
from pathlib import Path

from .augment import AugmentConfig
from .config import TrainConfig
from .points import PointTargetConfig, is_point_sample, pseudo_label_sample

#: The run's record in its output folder: the TrainConfig and the split.
RUN_JSON = "run.json"
#: The best model of a run, a checkpoint folder inside its output folder.
BEST_DIR = "best"
#: What a run leaves in its output folder besides its state: a new run would replace them.
RUN_OUTPUTS = (BEST_DIR, "metrics.csv", RUN_JSON)


def base_checkpoint(spec: str) -> Path | None:
    """The checkpoint folder a training run starts from; ``None`` for a registered architecture.

    Parameters
    ----------
    spec : str
        A registered architecture (train from scratch), the name of a shipped
        checkpoint or a checkpoint folder (fine-tune).

    Raises
    ------
    ValueError
        If ``spec`` is none of these.
    """
    from napari_ihcseg.models import list_models
    from napari_ihcseg.models.shipped import shipped_checkpoints

    if spec in list_models():
        return None
    shipped = shipped_checkpoints()
    path = shipped[spec] if spec in shipped else Path(spec).expanduser()
    if path.is_dir():
        return path
    raise ValueError(f"model {spec!r} is neither a registered architecture ({', '.join(list_models())}), "
                     f"a shipped checkpoint ({', '.join(shipped) or 'none'}) nor a checkpoint folder")


def build_model(spec: str, options: dict, *, resuming: Path | None = None):
    """The model a run starts with (on the CPU) and the checkpoint folder it came from (``None``: new).

    ``resuming``, the folder of a run being continued, words the message
    for a base checkpoint that is no longer where the run recorded it.
    """
    from napari_ihcseg.models import build_model as build_architecture
    from napari_ihcseg.models import load_checkpoint

    try:
        path = base_checkpoint(spec)
    except ValueError:
        if resuming is None or not Path(spec).is_absolute():
            raise
        from napari_ihcseg._json_file import read_json

        recorded = (resuming / RUN_JSON).is_file() and read_json(resuming / RUN_JSON).get("base_sha256")
        how = (f"give its new place as the model to continue with (ihcseg train --resume --out {resuming} "
               "--model NEW_PLACE)" if recorded else "put it back there to continue (this run did not record "
               "its weights' checksum, so another place cannot be checked)")
        raise ValueError(f"{resuming}: the run was started from the checkpoint {spec}, which is no longer "
                         f"there; {how}") from None
    if path is None:
        return build_architecture(spec, **options), None
    return load_checkpoint(path, device="cpu"), str(path.resolve())


def model_detections(model, image, device="cpu", *, amp=True, channels_last=True):
    """The nuclei ``model`` finds on ``image`` with its tuned instance settings (self-training targets).

    ``amp`` and ``channels_last`` as in :class:`~napari_ihcseg.inference.InferenceConfig` (a run passes
    its own, so the model keeps the memory layout it trains in); the model's train/eval mode is kept.
    """
    from napari_ihcseg.inference import InferenceConfig, segment_image

    was_training = model.training
    try:
        config = InferenceConfig(device=str(device), amp=amp, channels_last=channels_last)
        return segment_image(image, model, config).labels
    finally:
        model.train(was_training)


def resolve_data(config: TrainConfig, train_samples, val_samples, model=None, device="cpu"):
    """The training and validation samples of a run: given, or loaded and split as ``config`` says.

    Point-annotated training samples become pseudo-labels and all of them
    train: the split by image holds out only samples with outlines, as
    validation needs them (point-only ``val_data`` is refused). Images named
    in ``config.val_names`` are held out with their group (the other tiles of
    their slide); two images of one name are refused. With ``config.points.self_training``,
    ``model`` (the checkpoint the run starts from; ``None`` for a new
    network, which is refused) first segments each point sample, and its
    nuclei refine the pseudo-labels.
    """
    from napari_ihcseg.data.sample import split_by_image
    from napari_ihcseg.datasets import load_dataset

    if train_samples is None:
        train_samples = [s for spec in config.train_data for s in load_dataset(spec)]
    train_samples = list(train_samples)
    if val_samples is None:
        extra_val = [s for spec in config.val_data for s in load_dataset(spec)]
        _check_unique_names(train_samples + extra_val)
        pointed = sorted(s.name for s in extra_val if is_point_sample(s))
        if pointed:
            raise ValueError(f"val_data: {', '.join(pointed[:5])} annotated by points only; validation needs "
                             "outlines")
        if config.val_names is not None:
            wanted = set(config.val_names)
            missing = wanted - {s.name for s in train_samples}
            if missing:
                names = sorted(s.name for s in train_samples)
                raise ValueError(f"val_names not found in the training data: {', '.join(sorted(missing))} "
                                 f"(names are folder/stem, e.g. {', '.join(names[:3])})")
            pointed = sorted(s.name for s in train_samples if s.name in wanted and is_point_sample(s))
            if pointed:
                raise ValueError(f"val_names: {', '.join(pointed)} annotated by points only; validation needs "
                                 "outlines, so they can only train")
            # A held-out tile takes its group with it (the other tiles of its slide), as the split by image does:
            # neighbouring tiles left to train would leak into validation.
            groups = {s.group for s in train_samples if s.name in wanted}
            val_samples = [s for s in train_samples if s.group in groups and not is_point_sample(s)]
            train_samples = [s for s in train_samples if s.group not in groups]
        else:
            # Point-only images cannot validate (no outlines): all of them train, the others are split.
            pointed = [s for s in train_samples if is_point_sample(s)]
            outlined = [s for s in train_samples if not is_point_sample(s)]
            train_samples, val_samples = split_by_image(outlined, config.val_fraction, config.seed)
            train_samples = list(train_samples) + pointed
        val_samples = list(val_samples) + extra_val
    # Points become pseudo-labels for training; validation needs real outlines.
    if config.points.self_training and model is None:
        raise ValueError("self-training on points needs a trained checkpoint to start from (--model names an "
                         "architecture, whose random weights find no nuclei)")

    def detections(sample):
        if config.points.self_training and is_point_sample(sample):
            return model_detections(model, sample.image, device, amp=config.amp, channels_last=config.channels_last)
        return None

    train_samples = [pseudo_label_sample(s, config.points, detections(s)) for s in train_samples]
    val_samples = [s for s in val_samples if s.labels is not None or s.mask is not None]
    return train_samples, val_samples


def _check_unique_names(samples) -> None:
    """Refuse two images of one name (two data folders of the same name): the split and its record need one each."""
    seen: dict[str, int] = {}
    for sample in samples:
        seen[sample.name] = seen.get(sample.name, 0) + 1
    twice = sorted(name for name, n in seen.items() if n > 1)
    if twice:
        raise ValueError(f"{len(twice)} image name(s) appear more than once in the data, e.g. {twice[0]} (images "
                         "are named folder/stem: two data folders of the same name?); rename one folder")


def check_output_folder(out: str | Path, *, resume: bool, new_folder: str = "choose another output folder",
                        resume_it: str = "resume it") -> None:
    """Refuse a run that would lose work: resuming where nothing was saved, or a new run over an old one.

    Parameters
    ----------
    out : path-like
        The run's output folder (it need not exist).
    resume : bool
        Whether the run continues from the state saved in ``out``.
    new_folder, resume_it : str
        How the message tells the user to pick another folder, or to resume
        (a command line names its options here).

    Raises
    ------
    ValueError
        One line naming ``out``: with ``resume``, when it holds no saved
        state ("nothing to resume"); without, when it holds a run's state or
        any of its outputs (``best/``, ``metrics.csv``, ``run.json``), which a
        new run would overwrite.
    """
    from .state import STATE_DIR, has_state

    out = Path(out).expanduser()
    found = [name + ("/" if (out / name).is_dir() else "") for name in RUN_OUTPUTS if (out / name).exists()]
    if resume:
        if not has_state(out):
            raise ValueError(f"{out}: nothing to resume (no saved training state in {out / STATE_DIR})"
                             + (f"; it holds a previous run's outputs ({', '.join(found)}): {new_folder} "
                                "for a new run" if found else ""))
    elif has_state(out):
        raise ValueError(f"{out}: already holds a training run; {resume_it}, or {new_folder}")
    elif found:
        raise ValueError(f"{out}: already holds a previous run's outputs ({', '.join(found)}); {new_folder} "
                         "so they are not overwritten")


def check_resume_config(out: Path, config: TrainConfig) -> None:
    """Refuse to resume the run in ``out`` with a configuration other than the one it recorded."""
    path = out / RUN_JSON
    if not path.is_file():
        return
    from napari_ihcseg._json_file import read_json

    run = read_json(path)
    saved = run.get("config", {})
    if isinstance(saved.get("augment"), dict):
        # Runs recorded before an augmentation existed ran without it.
        saved["augment"] = json.loads(json.dumps(AugmentConfig.from_dict(saved["augment"]).to_dict()))
    # Runs recorded before point targets (or one of their fields) existed ran with the defaults.
    saved["points"] = {**PointTargetConfig().to_dict(), **(saved.get("points") or {})}
    mutable = {"epochs", "checkpoint_minutes", "patience", "device", "num_threads", "out", "tune_instances"}
    if run.get("base_sha256") and _is_checkpoint(str(config.model)):
        mutable.add("model")  # a fine-tune's base moved (or named otherwise): check_resume_base compares its weights
    current = json.loads(json.dumps(config.to_dict()))
    diff = sorted(k for k in current if k not in mutable and saved.get(k) != current[k])
    if diff:
        raise ValueError(f"{path}: cannot resume with a different configuration ({', '.join(diff)} changed)")


def _is_checkpoint(spec: str) -> bool:
    """Whether ``spec`` names a checkpoint (a shipped one, or a folder), not an architecture to build anew."""
    try:
        return base_checkpoint(spec) is not None
    except ValueError:
        return False


def check_resume_base(out: Path, sha256: str | None) -> None:
    """Refuse to continue a fine-tune from a base checkpoint whose weights are not those it started from
    (its ``run.json`` records their sha256; a run from scratch records none)."""
    path = out / RUN_JSON
    if not path.is_file():
        return
    from napari_ihcseg._json_file import read_json

    recorded = read_json(path).get("base_sha256")
    if recorded and sha256 != recorded:
        raise ValueError(f"{path}: the model given is not the checkpoint the run started from (weights sha256 "
                         f"{(sha256 or 'none')[:12]}, the run's {recorded[:12]})")


def check_resume_split(out: Path, split: dict) -> None:
    """Refuse to resume the run in ``out`` on other images than it started with.

    ``split`` holds the ``"train"`` and ``"val"`` image names the data gives
    now; ``run.json`` the ones the run recorded. Images added to a folder, a
    relative path read from another working folder, or another split would
    otherwise train on the old validation images and compare the best epoch
    across two validation sets.
    """
    path = out / RUN_JSON
    if not path.is_file():
        return
    from napari_ihcseg._json_file import read_json

    saved = read_json(path).get("split")
    if not isinstance(saved, dict):
        return
    for part, what in (("val", "validation"), ("train", "training")):
        before, now = set(saved.get(part) or ()), set(split.get(part) or ())
        if before != now:
            gone, new = sorted(before - now), sorted(now - before)
            said = "; ".join(f"{label} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                             for label, names in (("no longer", gone), ("new", new)) if names)
            raise ValueError(f"{path}: cannot resume on other images than the run started with ({what} images: "
                             f"{said}); start a new run in another folder for the new data")


__all__ = ["BEST_DIR", "RUN_JSON", "RUN_OUTPUTS", "base_checkpoint", "build_model", "check_output_folder",
           "check_resume_base", "check_resume_config", "check_resume_split", "model_detections", "resolve_data"]
