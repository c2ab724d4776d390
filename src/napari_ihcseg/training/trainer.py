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

The run is laid out by concept: :mod:`~napari_ihcseg.training.config` (what
defines it), :mod:`~napari_ihcseg.training.prepare` (its model and data),
:mod:`~napari_ihcseg.training.run_state` (where it is and what it reports)
and this module, the loop: an epoch of steps, then the end of the epoch
(validation, the metrics row, the best checkpoint, early stopping).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_ihcseg._atomic import write_json_atomic
from napari_ihcseg.inference.config import tuned_instance_params

from .batches import BatchSampler
from .config import TrainConfig, lr_at
from .losses import SegmentationLoss
from .prepare import (BEST_DIR, RUN_JSON, base_checkpoint, build_model, check_output_folder, check_resume_base,
                      check_resume_config, check_resume_split, resolve_data)
from .report import model_card, training_metadata, write_metrics_csv
from .run_state import RunState, TrainingInterrupted, TrainProgress, TrainResult
from .state import save_state
from .validate import autocast, evaluate_samples, tune_checkpoint

#: Steps whose mean time estimates the time left.
ETA_WINDOW = 50


def _as_cancel(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


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
        Continue from the state saved in ``<out>/state`` (the configuration
        must be the same, except for ``epochs``, ``patience``, the device,
        and the place of a fine-tune's base checkpoint, which may have moved:
        its weights must be the same); a folder without one is refused
        ("nothing to resume").
        Without it, a folder that holds a run's state or outputs
        (``best/``, ``metrics.csv``, ``run.json``) is refused, so nothing is
        overwritten (see :func:`~napari_ihcseg.training.prepare.check_output_folder`).
    progress : callable, optional
        Receives a :class:`TrainProgress` after each step and validation.
    cancel : callable or threading.Event, optional
        When it returns true the run saves its state and stops.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        For an output folder refused as above, a configuration other than
        the one recorded when resuming, a damaged saved state (naming its
        file) or unusable data.
    TrainingInterrupted
        On Ctrl-C (:class:`KeyboardInterrupt`) once training has started: the
        state is saved first, so ``resume=True`` continues from there.
    """
    threads = torch.get_num_threads()
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    run = None
    try:
        run = _Run(config, train_samples, val_samples, resume, progress, _as_cancel(cancel))
        return run.run()
    except KeyboardInterrupt as exc:
        if run is None or isinstance(exc, TrainingInterrupted):
            raise
        # Ctrl-C takes the cancel path: the state is saved as it is, and the run can resume.
        run.checkpoint()
        raise TrainingInterrupted(run.out, run.state.global_step) from None
    finally:
        torch.set_num_threads(threads)


class _Run:
    """One training run: what it was set up with, and its :class:`RunState`."""

    def __init__(self, config: TrainConfig, train_samples, val_samples, resume: bool, progress,
                 is_cancelled: Callable[[], bool]) -> None:
        from napari_ihcseg.device import describe_device, resolve_device

        self.config = config
        self.progress = progress
        self.is_cancelled = is_cancelled
        self.out = out = Path(config.out).expanduser()
        check_output_folder(out, resume=resume)
        out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(config.device)
        if resume:
            check_resume_config(out, config)
        torch.manual_seed(config.seed)

        model, self.base_checkpoint = build_model(config.model, config.model_options, resuming=out if resume else None)
        self.base_sha256 = model.checkpoint_info.sha256 if self.base_checkpoint else None
        if resume:
            check_resume_base(out, self.base_sha256)
        # A fine-tuned model keeps the settings tuned for its base until its own are tuned.
        self.base_instances = tuned_instance_params(model)
        model = model.to(self.device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.train_set, self.val_set = resolve_data(config, train_samples, val_samples,
                                                    model if self.base_checkpoint else None, self.device)
        self.sampler = BatchSampler(self.train_set, tile=config.tile, stride=config.stride or config.tile,
                                    batch_size=config.batch_size, seed=config.seed, augment=config.augment,
                                    synthetic_fraction=config.synthetic_fraction,
                                    min_steps=config.min_steps_per_epoch)
        steps = self.sampler.steps_per_epoch
        if config.max_steps_per_epoch:
            steps = min(steps, int(config.max_steps_per_epoch))
        self.steps = steps
        self.total_steps = steps * config.epochs
        self.split = {"train": sorted({s.name for s in self.train_set}),
                      "val": sorted({s.name for s in self.val_set})}
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.loss_fn = SegmentationLoss(config.loss)
        self.state = RunState.restore(out, model=model, optimizer=self.optimizer) if resume else RunState()
        if resume:  # the run goes on as it started: its images and split, and epochs still to train
            check_resume_split(out, self.split)
            if self.state.epoch >= config.epochs:
                raise ValueError(f"{out}: the run has trained {self.state.epoch} epoch(s) already; give more "
                                 "epochs to continue it")
        write_json_atomic(out / RUN_JSON, {"config": config.to_dict(), "split": self.split, "steps_per_epoch": steps,
                                           "tiles": len(self.sampler.windows),
                                           "base_checkpoint": self.base_checkpoint, "base_sha256": self.base_sha256})
        self.hardware = describe_device(self.device)
        self.step_times: list[float] = []
        self.val_seconds: list[float] = []
        self.last_save = time.monotonic()
        self.lr = self.lr_now()

    # ------------------------------------------------------------ helpers

    def lr_now(self) -> float:
        c = self.config
        return lr_at(self.state.global_step, total=self.total_steps, base=c.lr, warmup=c.warmup_steps,
                     min_ratio=c.min_lr_ratio)

    def checkpoint(self) -> None:
        """Save the resumable state as it is now."""
        save_state(self.out, model=self.model, optimizer=self.optimizer, info=self.state.to_dict())
        self.last_save = time.monotonic()

    def emit(self, phase: str, loss: float, lr: float, eta: float, metrics: dict | None = None,
             step: int | None = None) -> None:
        """Report to ``progress``: the state's epoch and step (or ``step``), with these figures."""
        if self.progress is not None:
            s = self.state
            self.progress(TrainProgress(phase, s.epoch, self.config.epochs, s.step if step is None else step,
                                        self.steps, s.global_step, self.total_steps, loss, lr, eta, metrics=metrics))

    def eta(self, epoch: int) -> float:
        """Seconds left: the remaining steps at the recent step time, plus a validation per epoch left."""
        remaining = self.total_steps - self.state.global_step
        eta = remaining * float(np.mean(self.step_times[-ETA_WINDOW:]))
        if self.val_seconds:
            eta += float(np.mean(self.val_seconds)) * (self.config.epochs - epoch)
        return eta

    # ------------------------------------------------------------ the loop

    def run(self) -> TrainResult:
        config, state = self.config, self.state
        cancelled = False
        stopped_early = state.patience_spent(config.patience)
        self.model.train()
        while state.epoch < config.epochs and not (cancelled or stopped_early):
            cancelled = not self.train_epoch() or not self.end_epoch()
            stopped_early = not cancelled and state.patience_spent(config.patience)
        if cancelled:
            self.checkpoint()
        return self.finish(cancelled, stopped_early)

    def train_epoch(self) -> bool:
        """Run the rest of the current epoch's steps; ``False`` when cancelled."""
        config, state = self.config, self.state
        epoch = state.epoch
        while state.step < self.steps:
            if self.is_cancelled():
                return False
            t0 = time.perf_counter()
            self.lr = lr = self.lr_now()
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, parts = _step(self.model, self.optimizer, self.loss_fn, self.sampler.batch(epoch, state.step),
                                device=self.device, amp=config.amp, channels_last=config.channels_last,
                                clip=config.grad_clip)
            elapsed = time.perf_counter() - t0
            state.add_step(loss, parts, seconds=elapsed)
            self.step_times.append(elapsed)
            self.emit("train", loss, lr, self.eta(epoch))
            if time.monotonic() - self.last_save >= config.checkpoint_minutes * 60:
                self.checkpoint()
        return True

    def end_epoch(self) -> bool:
        """Validate, write the metrics row, keep the best checkpoint, save the state; ``False`` when cancelled."""
        config, state = self.config, self.state
        t0 = time.perf_counter()
        metrics = None
        if self.val_set:
            metrics = evaluate_samples(self.model, self.val_set, device=self.device, amp=config.amp,
                                       channels_last=config.channels_last, min_size=config.val_min_size,
                                       cancel=self.is_cancelled)
            if self.is_cancelled():
                return False
        self.val_seconds.append(time.perf_counter() - t0)
        row = state.epoch_row(lr=self.lr, val_seconds=self.val_seconds[-1], metrics=metrics)
        if state.close_epoch(row, config.monitor):
            _save_best(self.out, self.model, config, row, self.split, self.hardware, self.base_checkpoint, metrics,
                       self.base_instances)
        write_metrics_csv(self.out / "metrics.csv", state.history)
        self.checkpoint()
        self.emit("validate", row["train_loss"], self.lr, 0.0, metrics=row, step=self.steps)
        return True

    def finish(self, cancelled: bool, stopped_early: bool) -> TrainResult:
        """Tune the best checkpoint's instance settings (unless cancelled) and report."""
        best = self.out / BEST_DIR
        tuned = None
        if (not cancelled and self.config.tune_instances and best.is_dir()
                and any(s.labels is not None for s in self.val_set)):
            self.emit("tune", float("nan"), 0.0, 0.0)
            result = tune_checkpoint(best, self.val_set, device=self.device, amp=self.config.amp,
                                     channels_last=self.config.channels_last, cancel=self.is_cancelled)
            tuned = result.params if result is not None else None
            cancelled = self.is_cancelled()  # a cancel while tuning leaves the settings as they were
        state = self.state
        self.emit("done", float("nan"), 0.0, 0.0, metrics=state.best_row)
        return TrainResult(out=self.out, best_checkpoint=best if best.is_dir() else None,
                           best_metrics=state.best_row, epochs_completed=state.epoch,
                           global_step=state.global_step, history=state.history, cancelled=cancelled,
                           stopped_early=stopped_early, instance_params=tuned)


def _step(model, optimizer, loss_fn, batch, *, device, amp, channels_last, clip) -> tuple[float, dict]:
    """One optimiser step on ``batch``; the loss and its terms."""
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


__all__ = ["TrainConfig", "TrainProgress", "TrainResult", "TrainingInterrupted", "base_checkpoint", "lr_at",
           "train"]
