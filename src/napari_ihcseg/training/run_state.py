"""Where a training run is, and what it reports.

- :class:`RunState`: the counters, the loss sums of the current epoch, the
  best epoch so far and the history; saved with the weights in
  ``<out>/state/state.json`` (:mod:`~napari_ihcseg.training.state`), so a run
  resumes where it stopped.
- :class:`TrainProgress`: one report to the ``progress`` callable.
- :class:`TrainResult`: what a finished (or cancelled) run produced.
- :class:`TrainingInterrupted`: Ctrl-C once the state is saved.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from .state import STATE_DIR, STATE_JSON, load_state
from .validate import VAL_METRICS


@dataclass
class RunState:
    """The counters and history of a run, saved with its weights.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    step : int
        Steps done in the current epoch.
    global_step : int
        Steps done in all.
    best_score, best_epoch : float or None, int or None
        The best monitored validation value and its epoch (1-based).
    bad_epochs : int
        Epochs since the best one (early stopping counts them).
    history : list of dict
        One row per completed epoch (``metrics.csv``).
    loss_sum, loss_parts, loss_count : float, dict, int
        The losses of the current epoch's steps so far.
    train_seconds : float
        Time spent in training steps.

    Examples
    --------
    >>> state = RunState()
    >>> state.add_step(0.5, {"bce": 0.25}, seconds=0.1); state.add_step(0.3, {"bce": 0.15}, seconds=0.1)
    >>> row = state.epoch_row(lr=1e-3, val_seconds=0.0, metrics=None)
    >>> round(row["train_loss"], 3), round(row["train_bce"], 3), row["epoch"], row["global_step"]
    (0.4, 0.2, 1, 2)
    >>> state.close_epoch(row, "aji"), state.epoch, state.step, state.best_epoch
    (True, 1, 0, 1)
    >>> RunState.from_dict(state.to_dict()) == state
    True
    """

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    history: list = field(default_factory=list)
    loss_sum: float = 0.0
    loss_parts: dict = field(default_factory=dict)
    loss_count: int = 0
    train_seconds: float = 0.0

    def to_dict(self) -> dict:
        """The state as JSON-serialisable values (the keys of ``state.json``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunState:
        """Rebuild from :meth:`to_dict` output, e.g. a saved state; other keys are left out.

        Raises
        ------
        ValueError
            If a value is of the wrong kind (a counter that is not a whole
            number of 0 or more, a history that is not a list of rows...),
            naming the key.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key, value in values.items():
            check, rule = _FIELDS[key]
            if not check(value):
                raise ValueError(f"{key!r} must be {rule}, got {value!r}")
        return cls(**values)

    @classmethod
    def restore(cls, out: str | Path, *, model, optimizer) -> RunState:
        """The state saved in ``<out>/state``, with the model's and optimizer's tensors restored into them.

        Raises
        ------
        ValueError
            If the state is damaged, naming its file and the problem.
        """
        info = load_state(out, model=model, optimizer=optimizer)
        try:
            return cls.from_dict(info)
        except ValueError as exc:
            raise ValueError(f"{Path(out) / STATE_DIR / STATE_JSON}: {exc}; the training state is damaged") from None

    @property
    def best_row(self) -> dict | None:
        """The history row of the best epoch, if any."""
        return next((h for h in self.history if h["epoch"] == self.best_epoch), None)

    def patience_spent(self, patience: int | None) -> bool:
        """True when ``patience`` epochs have passed without a better value."""
        return patience is not None and self.bad_epochs >= patience

    def add_step(self, loss: float, parts: dict, *, seconds: float) -> None:
        """Count one training step and its loss (``parts``: the loss's terms)."""
        self.step += 1
        self.global_step += 1
        self.loss_sum += loss
        self.loss_count += 1
        for key, value in parts.items():
            self.loss_parts[key] = self.loss_parts.get(key, 0.0) + value
        self.train_seconds += seconds

    def epoch_row(self, *, lr: float, val_seconds: float, metrics: dict | None) -> dict:
        """The ``metrics.csv`` row of the epoch now ending: mean losses, times and validation figures."""
        count = max(1, self.loss_count)
        row = {"epoch": self.epoch + 1, "global_step": self.global_step, "lr": lr,
               "train_loss": self.loss_sum / count,
               **{f"train_{k}": v / count for k, v in self.loss_parts.items()},
               "train_seconds": self.train_seconds, "val_seconds": val_seconds}
        if metrics is not None:
            row.update({f"val_{k}": metrics[k] for k in VAL_METRICS})
            for source, figures in sorted(metrics["per_source"].items()):
                row.update({f"val_{source}_{k}": v for k, v in figures.items()})
        return row

    def close_epoch(self, row: dict, monitor: str) -> bool:
        """Record the epoch's ``row``, start the next epoch; return whether it is the best so far.

        Without validation figures every epoch is the best (the last one is kept).
        """
        self.history.append(row)
        validated = f"val_{monitor}" in row
        score = row.get(f"val_{monitor}", float("nan"))
        improved = not validated or (score == score and (self.best_score is None or score > self.best_score))
        if improved:
            self.best_score = score if validated else None
            self.best_epoch = self.epoch + 1
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        self.epoch += 1
        self.step = 0
        self.loss_sum, self.loss_parts, self.loss_count = 0.0, {}, 0
        return improved


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_COUNT = (_count, "a whole number, 0 or more")
_NUMBER = (_number, "a number")
#: What each saved field must be, and how a message says it.
_FIELDS = {**dict.fromkeys(("epoch", "step", "global_step", "bad_epochs", "loss_count"), _COUNT),
           "loss_sum": _NUMBER, "train_seconds": _NUMBER,
           "best_score": (lambda v: v is None or _number(v), "a number or null"),
           "best_epoch": (lambda v: v is None or _count(v), "a whole number or null"),
           "history": (lambda v: isinstance(v, list) and all(isinstance(r, dict) and "epoch" in r for r in v),
                       "a list of rows, each with its 'epoch'"),
           "loss_parts": (lambda v: isinstance(v, dict) and all(_number(x) for x in v.values()),
                          "an object of numbers")}


@dataclass(frozen=True)
class TrainProgress:
    """One progress report: ``phase`` is ``"train"``, ``"validate"``, ``"tune"`` or ``"done"``.

    ``"tune"`` comes once, when the run starts tuning the best checkpoint's
    instance settings (see :attr:`TrainConfig.tune_instances
    <napari_ihcseg.training.TrainConfig.tune_instances>`).
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


__all__ = ["RunState", "TrainProgress", "TrainResult", "TrainingInterrupted"]
