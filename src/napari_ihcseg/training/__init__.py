"""Training and fine-tuning: tiles, augmentation, losses and the trainer.

``train(TrainConfig(...))`` trains or fine-tunes a registered model on
training-pair folders and the real data sets, with validation Dice / AJI / PQ
each epoch, resumable state and a model card. See ``docs/training.md``.

A run by concept: ``config`` (:class:`TrainConfig`, the schedule),
``prepare`` (the model it starts from, its data), ``run_state`` (the saved
counters and history, the progress reports, the result) and ``trainer`` (the
loop: an epoch of steps, then the end of the epoch).

torch loads with this package; the numpy parts (``tiles``, ``augment``) do
not need it and can be imported on their own.
"""

from __future__ import annotations

__all__ = ["AugmentConfig", "LossConfig", "TrainConfig", "TrainProgress", "TrainResult", "train"]


def __getattr__(name: str):
    if name == "AugmentConfig":
        from .augment import AugmentConfig

        return AugmentConfig
    if name == "LossConfig":
        from .losses import LossConfig

        return LossConfig
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    if name in ("TrainProgress", "TrainResult"):
        from . import run_state

        return getattr(run_state, name)
    if name == "train":
        from .trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
