"""Training and fine-tuning: tiles, augmentation, losses and the trainer.

``train(TrainConfig(...))`` trains or fine-tunes a registered model on
training-pair folders and the real data sets, with validation Dice / AJI / PQ
each epoch, resumable state and a model card. See ``docs/training.md``.

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
    if name in ("TrainConfig", "TrainProgress", "TrainResult", "train"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
