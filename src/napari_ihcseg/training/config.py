"""What defines a training run: :class:`TrainConfig`, saved in ``run.json``, and its learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from ..inference.planning import SIZE_MULTIPLE
from .augment import AugmentConfig
from .learning_rates import SCRATCH_LR
from .losses import LossConfig
from .points import PointTargetConfig

#: The largest learning rate a run accepts: AdamW moves each weight by about
#: ``lr`` a step, so beyond 1 a model is destroyed in its first steps.
MAX_LR = 1.0


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
        Data specs for :func:`napari_ihcseg.datasets.load_dataset`
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

    Raises
    ------
    ValueError
        For a value a run cannot use, naming the field and the value: ``lr``
        outside (0, :data:`MAX_LR`], ``stride`` outside 1..``tile``,
        ``max_steps_per_epoch``, ``num_threads`` or ``patience`` below 1,
        a fraction outside its range, a negative count...
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
    lr: float = SCRATCH_LR
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
        if self.tile % SIZE_MULTIPLE:
            raise ValueError(f"TrainConfig.tile must be a multiple of {SIZE_MULTIPLE}, got {self.tile}")
        if self.monitor not in ("aji", "pq", "dice"):
            raise ValueError(f"TrainConfig.monitor must be 'aji', 'pq' or 'dice', got {self.monitor!r}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        self._check_ranges()
        object.__setattr__(self, "model_options", {k: tuple(v) if isinstance(v, list) else v
                                                   for k, v in dict(self.model_options).items()})
        object.__setattr__(self, "train_data", tuple(self.train_data))
        object.__setattr__(self, "val_data", tuple(self.val_data))
        if self.val_names is not None:
            object.__setattr__(self, "val_names", tuple(self.val_names))

    def _check_ranges(self) -> None:
        """Refuse values a run cannot use, naming the field and the value (``ValueError``)."""
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"TrainConfig.{name} must be {rule}, got {getattr(self, name)!r}")

        if not (math.isfinite(self.lr) and 0 < self.lr <= MAX_LR):
            fail("lr", f"in (0, {MAX_LR:g}] (AdamW's step size: fine-tuning uses about 1e-4)")
        for name in ("weight_decay", "grad_clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                fail(name, "a finite number, 0 or more")
        if not 0 <= self.min_lr_ratio <= 1:
            fail("min_lr_ratio", "in [0, 1]")
        if not 0 <= self.synthetic_fraction <= 1:
            fail("synthetic_fraction", "in [0, 1]")
        if not self.checkpoint_minutes >= 0:  # also refuses NaN; inf saves only at the end of epochs
            fail("checkpoint_minutes", "0 or more")
        for name in ("warmup_steps", "seed"):
            if int(getattr(self, name)) < 0:
                fail(name, "0 or more")
        if int(self.min_steps_per_epoch) < 1:
            fail("min_steps_per_epoch", "at least 1")
        for name in ("max_steps_per_epoch", "num_threads", "patience"):  # None: no cap, torch's threads, no stop
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                fail(name, "at least 1")
        if self.stride is not None and not 1 <= int(self.stride) <= self.tile:  # None: the tile size
            fail("stride", f"between 1 and the tile size ({self.tile})")
        if int(self.val_min_size) < 0:
            fail("val_min_size", "0 or more")

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


__all__ = ["MAX_LR", "TrainConfig", "lr_at"]
