"""The training loop: AdamW, cosine schedule, bf16 autocast, resumable state,
validation each epoch and early stopping on AJI.

:func:`train` is plain Python driven by two callables, so the same loop runs
from the command line, from a widget's worker thread and from scripts:

* ``progress(event)`` receives a :class:`TrainProgress` after every step and
  after every validation;
* ``cancel()`` (or a :class:`threading.Event`) is checked before every step
  and during validation; a cancelled run saves its state and returns.

Output folder layout::

    <out>/run.json          the TrainConfig and the split (image names)
    <out>/metrics.csv       one row per epoch
    <out>/state/            resumable state (see napari_ihcseg.training.state)
    <out>/best/             the best model so far, a models checkpoint folder
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from napari_ihcseg._atomic import write_json_atomic
from napari_ihcseg.inference.config import tuned_instance_params

from .augment import AugmentConfig
from .batches import BatchSampler
from .losses import LossConfig, SegmentationLoss
from .points import PointTargetConfig, pseudo_label_sample
from .report import model_card, training_metadata, write_metrics_csv
from .state import STATE_DIR, has_state, load_state, save_state
from .validate import autocast, evaluate_samples, tune_checkpoint

RUN_JSON = "run.json"
BEST_DIR = "best"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved in ``run.json``).

    Parameters
    ----------
    out : str
        Output folder (checkpoints, metrics, state).
    model : str
        A registered architecture name, or a checkpoint folder to fine-tune.
    model_options : dict
        Config overrides for a registered architecture (e.g. narrower
        ``filters``); ignored when fine-tuning a checkpoint.
    train_data, val_data : tuple of str
        Data specs for :func:`napari_ihcseg.data.datasets.load_dataset`
        (``"kind:path"``). ``val_data`` is used for validation only.
    val_fraction : float
        Fraction of training images moved to validation (by image), unless
        ``val_names`` is given.
    val_names : tuple of str or None
        Exact image names to validate on (taken out of ``train_data``).
    epochs, batch_size, tile, stride : int
        ``stride`` defaults to ``tile``.
    lr, weight_decay, warmup_steps, min_lr_ratio, grad_clip : float
        AdamW with linear warm-up then cosine decay to ``lr * min_lr_ratio``.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    amp, channels_last : bool
        bf16 autocast and channels-last memory (CPU with AMX, and GPU).
    num_threads : int or None
        torch CPU threads.
    seed : int
    synthetic_fraction : float
        Fraction of crops replaced by synthetic IHC fields.
    checkpoint_minutes : float
        Save resumable state at least this often (and after every epoch).
    patience : int or None
        Stop after this many epochs without a better ``monitor`` value.
    monitor : str
        ``"aji"``, ``"pq"`` or ``"dice"`` on the validation set.
    min_steps_per_epoch, max_steps_per_epoch : int or None
        Bounds on the steps of an epoch.
    val_min_size : int
        ``min_size`` of the instance step in validation.
    tune_instances : bool
        When the run ends, choose the instance-step thresholds and
        ``min_size`` for the best checkpoint on the labelled validation
        images and store them in it (see
        :func:`~napari_ihcseg.training.validate.tune_checkpoint`). Until
        then (or without tuning) a fine-tuned checkpoint carries those of
        the checkpoint it started from.
    augment : AugmentConfig
    loss : LossConfig
    points : PointTargetConfig
        How training samples annotated with points become targets (see
        :mod:`napari_ihcseg.training.points`). Point samples train only:
        they are left out of the validation, which needs outlines.
    """

    out: str
    model: str = "harunet-lite"
    model_options: dict = field(default_factory=dict)
    train_data: tuple[str, ...] = ()
    val_data: tuple[str, ...] = ()
    val_fraction: float = 0.2
    val_names: tuple[str, ...] | None = None
    epochs: int = 50
    batch_size: int = 8
    tile: int = 256
    stride: int | None = None
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    num_threads: int | None = None
    seed: int = 0
    synthetic_fraction: float = 0.1
    checkpoint_minutes: float = 10.0
    patience: int | None = 10
    monitor: str = "aji"
    min_steps_per_epoch: int = 1
    max_steps_per_epoch: int | None = None
    val_min_size: int = 16
    tune_instances: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    points: PointTargetConfig = field(default_factory=PointTargetConfig)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "tile"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.tile % 32:
            raise ValueError(f"TrainConfig.tile must be a multiple of 32, got {self.tile}")
        if self.monitor not in ("aji", "pq", "dice"):
            raise ValueError(f"TrainConfig.monitor must be 'aji', 'pq' or 'dice', got {self.monitor!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        object.__setattr__(self, "model_options", {k: tuple(v) if isinstance(v, list) else v
                                                   for k, v in dict(self.model_options).items()})
        object.__setattr__(self, "train_data", tuple(self.train_data))
        object.__setattr__(self, "val_data", tuple(self.val_data))
        if self.val_names is not None:
            object.__setattr__(self, "val_names", tuple(self.val_names))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (e.g. ``run.json``)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["augment"] = AugmentConfig.from_dict(data.get("augment", {}))
        data["loss"] = LossConfig(**data.get("loss", {}))
        data["points"] = PointTargetConfig(**data.get("points", {}))
        return cls(**data)


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: ``phase`` is ``"train"``, ``"validate"``, ``"tune"`` or ``"done"``.

    ``"tune"`` comes once, when the run starts tuning the best checkpoint's
    instance settings (see :attr:`TrainConfig.tune_instances`).
    """

    phase: str
    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    global_step: int
    total_steps: int
    loss: float
    lr: float
    eta_seconds: float
    metrics: dict | None = None


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    out: Path
    best_checkpoint: Path | None
    best_metrics: dict | None
    epochs_completed: int
    global_step: int
    history: list
    cancelled: bool
    stopped_early: bool
    instance_params: dict | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or another :class:`KeyboardInterrupt`) stopped a run after its state was saved.

    Attributes
    ----------
    out : Path
        The run's folder; ``train(..., resume=True)`` (``ihcseg train
        --resume``) continues from ``<out>/state``.
    global_step : int
        The last step the saved state holds.
    """

    def __init__(self, out: Path, global_step: int) -> None:
        super().__init__(f"training interrupted at step {global_step}; its state is saved in {out / STATE_DIR}")
        self.out = out
        self.global_step = global_step


def lr_at(step: int, *, total: int, base: float, warmup: int, min_ratio: float) -> float:
    """Learning rate at ``step``: linear warm-up, then cosine decay.

    Examples
    --------
    >>> lr_at(0, total=100, base=1.0, warmup=10, min_ratio=0.0)
    0.1
    >>> round(lr_at(99, total=100, base=1.0, warmup=10, min_ratio=0.0), 4)
    0.0003
    """
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _as_cancel(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


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


def _build_model(spec: str, options: dict):
    from napari_ihcseg.models import build_model, load_checkpoint

    path = base_checkpoint(spec)
    if path is None:
        return build_model(spec, **options), None
    return load_checkpoint(path, device="cpu"), str(path.resolve())


def _resolve_data(config: TrainConfig, train_samples, val_samples):
    from napari_ihcseg.data.datasets import load_dataset, split_by_image

    if train_samples is None:
        train_samples = [s for spec in config.train_data for s in load_dataset(spec)]
    train_samples = list(train_samples)
    if val_samples is None:
        if config.val_names is not None:
            wanted = set(config.val_names)
            missing = wanted - {s.name for s in train_samples}
            if missing:
                raise ValueError(f"val_names not found in the training data: {', '.join(sorted(missing))}")
            val_samples = [s for s in train_samples if s.name in wanted]
            train_samples = [s for s in train_samples if s.name not in wanted]
        else:
            train_samples, val_samples = split_by_image(train_samples, config.val_fraction, config.seed)
        val_samples = list(val_samples) + [s for spec in config.val_data for s in load_dataset(spec)]
    # Points become pseudo-labels for training; validation needs real outlines.
    train_samples = [pseudo_label_sample(s, config.points) for s in train_samples]
    val_samples = [s for s in val_samples if s.labels is not None or s.mask is not None]
    return train_samples, val_samples


def _check_resume_config(out: Path, config: TrainConfig) -> None:
    path = out / RUN_JSON
    if not path.is_file():
        return
    saved = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    if isinstance(saved.get("augment"), dict):
        # Runs recorded before an augmentation existed ran without it.
        saved["augment"] = json.loads(json.dumps(AugmentConfig.from_dict(saved["augment"]).to_dict()))
    # Runs recorded before point targets existed had no point samples.
    saved.setdefault("points", PointTargetConfig().to_dict())
    mutable = {"epochs", "checkpoint_minutes", "patience", "device", "num_threads", "out", "tune_instances"}
    current = json.loads(json.dumps(config.to_dict()))
    diff = sorted(k for k in current if k not in mutable and saved.get(k) != current[k])
    if diff:
        raise ValueError(f"{path}: cannot resume with a different configuration ({', '.join(diff)} changed)")


def train(config: TrainConfig, *, train_samples: Sequence | None = None, val_samples: Sequence | None = None,
          resume: bool = False, progress: Callable[[TrainProgress], None] | None = None,
          cancel=None) -> TrainResult:
    """Train (or fine-tune) a model.

    Parameters
    ----------
    config : TrainConfig
    train_samples, val_samples : sequences of Sample, optional
        In-memory data instead of ``config.train_data`` / the split. Pass
        ``val_samples=[]`` to train without validation (the last epoch is
        then the one kept).
    resume : bool
        Continue from ``<out>/state`` if it exists (the configuration must be
        the same, except for ``epochs``, ``patience`` and the device).
        Without it, a folder that already holds a run is refused.
    progress : callable, optional
        Receives a :class:`TrainProgress` after each step and validation.
    cancel : callable or threading.Event, optional
        When it returns true the run saves its state and stops.

    Returns
    -------
    TrainResult

    Raises
    ------
    TrainingInterrupted
        On Ctrl-C (:class:`KeyboardInterrupt`) once training has started: the
        state is saved first, so ``resume=True`` continues from there.
    """
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    on_interrupt: list[Callable[[], None]] = []
    try:
        return _train(config, train_samples, val_samples, resume, progress, _as_cancel(cancel), on_interrupt)
    except KeyboardInterrupt as exc:
        if not on_interrupt or isinstance(exc, TrainingInterrupted):
            raise
        save = on_interrupt[0]
        raise TrainingInterrupted(Path(config.out).expanduser(), save()) from None
    finally:
        torch.set_num_threads(threads)


def _train(config: TrainConfig, train_samples, val_samples, resume: bool, progress, is_cancelled,
           on_interrupt: list) -> TrainResult:
    from napari_ihcseg.device import describe_device, resolve_device

    out = Path(config.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    resuming = resume and has_state(out)
    if resuming:
        _check_resume_config(out, config)
    elif has_state(out):
        raise ValueError(f"{out}: already holds a training run; resume it or choose another output folder")
    torch.manual_seed(config.seed)

    model, base_checkpoint = _build_model(config.model, config.model_options)
    # A fine-tuned model keeps the settings tuned for its base until its own are tuned.
    base_instances = tuned_instance_params(model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_set, val_set = _resolve_data(config, train_samples, val_samples)
    stride = config.stride or config.tile
    sampler = BatchSampler(train_set, tile=config.tile, stride=stride, batch_size=config.batch_size,
                           seed=config.seed, augment=config.augment, synthetic_fraction=config.synthetic_fraction,
                           min_steps=config.min_steps_per_epoch)
    steps = sampler.steps_per_epoch
    if config.max_steps_per_epoch:
        steps = min(steps, int(config.max_steps_per_epoch))
    total_steps = steps * config.epochs
    split = {"train": sorted({s.name for s in train_set}), "val": sorted({s.name for s in val_set})}
    write_json_atomic(out / RUN_JSON, {"config": config.to_dict(), "split": split, "steps_per_epoch": steps,
                                        "tiles": len(sampler.windows), "base_checkpoint": base_checkpoint})

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = SegmentationLoss(config.loss)
    info = {"epoch": 0, "step": 0, "global_step": 0, "best_score": None, "best_epoch": None,
            "bad_epochs": 0, "history": [], "loss_sum": 0.0, "loss_parts": {}, "loss_count": 0,
            "train_seconds": 0.0}
    if resuming:
        info.update(load_state(out, model=model, optimizer=optimizer))
    hardware = describe_device(device)

    def checkpoint() -> None:
        save_state(out, model=model, optimizer=optimizer, info=info)

    def save_on_interrupt() -> int:
        # Ctrl-C takes the cancel path: the state is saved as it is, and the run can resume.
        checkpoint()
        return int(info["global_step"])

    on_interrupt.append(save_on_interrupt)

    def emit(event: TrainProgress) -> None:
        if progress is not None:
            progress(event)

    step_times: list[float] = []
    val_seconds: list[float] = []
    last_save = time.monotonic()
    cancelled = False
    stopped_early = config.patience is not None and info["bad_epochs"] >= config.patience
    best_metrics = next((h for h in info["history"] if h["epoch"] == info["best_epoch"]), None)
    lr = lr_at(info["global_step"], total=total_steps, base=config.lr, warmup=config.warmup_steps,
               min_ratio=config.min_lr_ratio)
    model.train()
    while info["epoch"] < config.epochs and not (cancelled or stopped_early):
        epoch = info["epoch"]
        while info["step"] < steps:
            if is_cancelled():
                cancelled = True
                break
            t0 = time.perf_counter()
            lr = lr_at(info["global_step"], total=total_steps, base=config.lr, warmup=config.warmup_steps,
                       min_ratio=config.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_value, parts = _step(model, optimizer, loss_fn, sampler.batch(epoch, info["step"]), device=device,
                                      amp=config.amp, channels_last=config.channels_last, clip=config.grad_clip)
            info["step"] += 1
            info["global_step"] += 1
            info["loss_sum"] += loss_value
            info["loss_count"] += 1
            for k, v in parts.items():
                info["loss_parts"][k] = info["loss_parts"].get(k, 0.0) + v
            elapsed = time.perf_counter() - t0
            info["train_seconds"] += elapsed
            step_times.append(elapsed)
            remaining = total_steps - info["global_step"]
            eta = remaining * float(np.mean(step_times[-50:]))
            if val_seconds:
                eta += float(np.mean(val_seconds)) * (config.epochs - epoch)
            emit(TrainProgress("train", epoch, config.epochs, info["step"], steps, info["global_step"], total_steps,
                               loss_value, lr, eta))
            if time.monotonic() - last_save >= config.checkpoint_minutes * 60:
                checkpoint()
                last_save = time.monotonic()
        if cancelled:
            break

        # End of epoch: validation, metrics, best checkpoint, early stopping.
        t0 = time.perf_counter()
        metrics = None
        if val_set:
            metrics = evaluate_samples(model, val_set, device=device, amp=config.amp,
                                       channels_last=config.channels_last, min_size=config.val_min_size,
                                       cancel=is_cancelled)
            if is_cancelled():
                cancelled = True
                break
        val_seconds.append(time.perf_counter() - t0)
        count = max(1, info["loss_count"])
        row = {"epoch": epoch + 1, "global_step": info["global_step"], "lr": lr,
               "train_loss": info["loss_sum"] / count,
               **{f"train_{k}": v / count for k, v in info["loss_parts"].items()},
               "train_seconds": info["train_seconds"], "val_seconds": val_seconds[-1]}
        if metrics is not None:
            row.update({f"val_{k}": metrics[k] for k in ("dice", "aji", "pq")})
            for src, m in sorted(metrics["per_source"].items()):
                row.update({f"val_{src}_{k}": v for k, v in m.items()})
        info["history"].append(row)
        score = row.get(f"val_{config.monitor}", float("nan"))
        improved = (metrics is None) or (score == score and (info["best_score"] is None or score > info["best_score"]))
        if improved:
            info["best_score"] = score if metrics is not None else None
            info["best_epoch"] = epoch + 1
            info["bad_epochs"] = 0
            best_metrics = row
            _save_best(out, model, config, row, split, hardware, base_checkpoint, metrics, base_instances)
        else:
            info["bad_epochs"] += 1
        info.update(epoch=epoch + 1, step=0, loss_sum=0.0, loss_parts={}, loss_count=0)
        write_metrics_csv(out / "metrics.csv", info["history"])
        checkpoint()
        last_save = time.monotonic()
        emit(TrainProgress("validate", epoch + 1, config.epochs, steps, steps, info["global_step"], total_steps,
                           row["train_loss"], lr, 0.0, metrics=row))
        if config.patience is not None and info["bad_epochs"] >= config.patience:
            stopped_early = True

    if cancelled:
        checkpoint()
    best = out / BEST_DIR
    tuned = None
    if (not cancelled and config.tune_instances and best.is_dir()
            and any(s.labels is not None for s in val_set)):
        emit(TrainProgress("tune", info["epoch"], config.epochs, info["step"], steps, info["global_step"],
                           total_steps, float("nan"), 0.0, 0.0))
        result = tune_checkpoint(best, val_set, device=device, amp=config.amp,
                                 channels_last=config.channels_last, cancel=is_cancelled)
        tuned = result.params if result is not None else None
        cancelled = is_cancelled()  # a cancel while tuning leaves the settings as they were
    emit(TrainProgress("done", info["epoch"], config.epochs, info["step"], steps, info["global_step"], total_steps,
                       float("nan"), 0.0, 0.0, metrics=best_metrics))
    return TrainResult(out=out, best_checkpoint=best if best.is_dir() else None, best_metrics=best_metrics,
                       epochs_completed=info["epoch"], global_step=info["global_step"], history=info["history"],
                       cancelled=cancelled, stopped_early=stopped_early, instance_params=tuned)


def _step(model, optimizer, loss_fn, batch, *, device, amp, channels_last, clip) -> tuple[float, dict]:
    def tensor(a):
        return torch.from_numpy(a).to(device, non_blocking=True)

    x = tensor(batch.image)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    targets = {"mask": tensor(batch.mask), "contour": tensor(batch.contour), "valid": tensor(batch.valid),
               "contour_weight": tensor(batch.contour_weight)}
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, amp):
        outputs = model(x)
    loss, parts = loss_fn(outputs, targets)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    return float(loss.detach()), parts


def _save_best(out: Path, model, config: TrainConfig, row: dict, split: dict, hardware: str,
               base_checkpoint: str | None, metrics: dict | None, instances: dict | None = None) -> None:
    from napari_ihcseg.models import save_checkpoint

    was_cl = config.channels_last
    if was_cl:
        model = model.to(memory_format=torch.contiguous_format)
    try:
        save_checkpoint(model, out / BEST_DIR, overwrite=True,
                        training=training_metadata(config, row, split, hardware, base_checkpoint),
                        card=model_card(config, row, split, hardware, metrics), instances=instances)
    finally:
        if was_cl:
            model.to(memory_format=torch.channels_last)


__all__ = ["TrainConfig", "TrainProgress", "TrainResult", "TrainingInterrupted", "lr_at", "train"]
