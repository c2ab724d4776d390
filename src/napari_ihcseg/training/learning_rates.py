"""The default peak learning rates, one pair for every way of starting a run.

Fine-tuning moves weights that already work, so it starts five times lower
than training from scratch: the command line and the Train panel both take
their default from :func:`default_lr`, so a run started in one resumes in
the other.
"""

from __future__ import annotations

#: Peak learning rate when training from scratch (also ``TrainConfig.lr``'s default).
SCRATCH_LR = 1e-3
#: Peak learning rate when fine-tuning a checkpoint.
FINETUNE_LR = 2e-4


def default_lr(finetune: bool) -> float:
    """The peak learning rate of a run that fine-tunes a checkpoint (``True``) or starts from scratch.

    >>> default_lr(True), default_lr(False)
    (0.0002, 0.001)
    """
    return FINETUNE_LR if finetune else SCRATCH_LR


__all__ = ["FINETUNE_LR", "SCRATCH_LR", "default_lr"]
