"""Losses: BCE + Dice (or Tversky) on the mask and contour branches, with
deep supervision over every side output.

Each branch's loss is ``bce_weight * BCE + dice_weight * (1 - Dice)``; with
``tversky=True`` the Dice term becomes a Tversky term with weights ``alpha``
on false positives and ``beta`` on false negatives. Pixels where ``valid`` is
false (padding) do not count. A per-sample ``contour_weight`` switches the
contour loss off for samples whose instance boundaries are unknown (binary
masks where touching nuclei merge).

The total is ``fused_weight * L(fused) + side_weight * mean(L(side_i))``,
as in HARU-Net's deep supervision of its side outputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

#: Added to numerator and denominator of the soft Dice / Tversky index.
SMOOTH = 1.0


@dataclass(frozen=True)
class LossConfig:
    """Weights of the loss terms.

    Parameters
    ----------
    bce_weight, dice_weight : float
        Weights of binary cross-entropy and of the (1 - Dice) term.
    mask_weight, contour_weight : float
        Weights of the mask and contour branches.
    fused_weight, side_weight : float
        Weight of the final (fused) outputs and of the mean over side outputs.
    tversky : bool
        Use the Tversky index instead of Dice.
    alpha, beta : float
        Tversky weights of false positives and false negatives.
    """

    bce_weight: float = 1.0
    dice_weight: float = 1.0
    mask_weight: float = 1.0
    contour_weight: float = 1.0
    fused_weight: float = 1.0
    side_weight: float = 0.5
    tversky: bool = False
    alpha: float = 0.3
    beta: float = 0.7

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, float) and value < 0:
                raise ValueError(f"LossConfig.{name} must be non-negative, got {value}")

    def to_dict(self) -> dict:
        return asdict(self)


def soft_overlap(prob: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, *, alpha: float = 0.5,
                 beta: float = 0.5) -> torch.Tensor:
    """Per-sample soft Tversky index (Dice when alpha = beta = 0.5).

    Parameters
    ----------
    prob, target, weight : (N, 1, H, W) tensors
        Probabilities, binary targets and pixel weights (0 = ignore).

    Returns
    -------
    (N,) tensor
    """
    dims = (1, 2, 3)
    tp = (prob * target * weight).sum(dims)
    fp = (prob * (1 - target) * weight).sum(dims)
    fn = ((1 - prob) * target * weight).sum(dims)
    return (tp + SMOOTH) / (tp + alpha * fp + beta * fn + SMOOTH)


def branch_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, sample_weight: torch.Tensor,
                config: LossConfig) -> torch.Tensor:
    """BCE + Dice (or Tversky) of one output against one target, averaged over samples.

    ``sample_weight`` (N,) scales each sample's loss; samples of weight 0
    contribute nothing, and the mean is over the weights' sum.
    """
    logits = logits.float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    bce = (bce * valid).sum((1, 2, 3)) / valid.sum((1, 2, 3)).clamp_min(1.0)
    prob = torch.sigmoid(logits)
    if config.tversky:
        overlap = soft_overlap(prob, target, valid, alpha=config.alpha, beta=config.beta)
    else:
        overlap = soft_overlap(prob, target, valid)
    per_sample = config.bce_weight * bce + config.dice_weight * (1.0 - overlap)
    total = sample_weight.sum()
    if float(total) == 0.0:
        return per_sample.sum() * 0.0
    return (per_sample * sample_weight).sum() / total


class SegmentationLoss:
    """The training loss of a two-branch (mask + contour) model.

    Parameters
    ----------
    config : LossConfig

    Examples
    --------
    >>> import torch
    >>> loss = SegmentationLoss(LossConfig())
    >>> x = torch.zeros(2, 1, 8, 8)
    >>> t = {"mask": x, "contour": x, "valid": torch.ones_like(x), "contour_weight": torch.ones(2)}
    >>> total, parts = loss((x, x, []), t)
    >>> sorted(parts)
    ['contour', 'mask', 'side']
    """

    def __init__(self, config: LossConfig = LossConfig()) -> None:
        self.config = config

    def _pair(self, mask_logits, contour_logits, targets) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        valid = targets["valid"]
        ones = torch.ones(mask_logits.shape[0], device=mask_logits.device)
        mask = branch_loss(mask_logits, targets["mask"], valid, ones, c)
        contour = branch_loss(contour_logits, targets["contour"], valid, targets["contour_weight"], c)
        return mask, contour

    def __call__(self, outputs, targets: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the total loss and its parts (as floats) for logging.

        ``outputs`` is the train-mode model output ``(mask, contour, sides)``
        (a 2-tuple is accepted as having no sides); ``targets`` holds
        ``mask``, ``contour``, ``valid`` (N, 1, H, W) and ``contour_weight`` (N,).
        """
        mask_logits, contour_logits = outputs[0], outputs[1]
        sides = outputs[2] if len(outputs) > 2 else []
        c = self.config
        mask, contour = self._pair(mask_logits, contour_logits, targets)
        total = c.fused_weight * (c.mask_weight * mask + c.contour_weight * contour)
        side_total = torch.zeros((), device=mask_logits.device)
        for side_mask, side_contour in sides:
            m, k = self._pair(side_mask, side_contour, targets)
            side_total = side_total + c.mask_weight * m + c.contour_weight * k
        if sides:
            side_total = side_total / len(sides)
            total = total + c.side_weight * side_total
        parts = {"mask": float(mask.detach()), "contour": float(contour.detach()),
                 "side": float(side_total.detach())}
        return total, parts
