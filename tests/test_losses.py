"""The training loss: BCE + Dice / Tversky, padding, contour weights, deep supervision."""

from __future__ import annotations

import pytest
import torch

from napari_ihcseg.training.losses import LossConfig, SegmentationLoss, branch_loss, soft_overlap


def _targets(n=2, size=16, contour_weight=None):
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 4:12, 4:12] = 1
    contour = torch.zeros_like(mask)
    contour[:, :, 4:12, 4] = 1
    contour[:, :, 4:12, 11] = 1
    return {"mask": mask, "contour": contour, "valid": torch.ones_like(mask),
            "contour_weight": torch.ones(n) if contour_weight is None else contour_weight}


def _logits(target, sharp=8.0):
    return (target * 2 - 1) * sharp


def test_perfect_prediction_beats_wrong_prediction():
    t = _targets()
    loss = SegmentationLoss()
    good, _ = loss((_logits(t["mask"]), _logits(t["contour"]), []), t)
    bad, _ = loss((-_logits(t["mask"]), -_logits(t["contour"]), []), t)
    zero, _ = loss((torch.zeros_like(t["mask"]), torch.zeros_like(t["mask"]), []), t)
    assert good < 0.05 < zero < bad


def test_contour_weight_zero_ignores_the_contour():
    t = _targets(contour_weight=torch.tensor([0.0, 0.0]))
    loss = SegmentationLoss()
    right, parts = loss((_logits(t["mask"]), _logits(t["contour"]), []), t)
    wrong, parts_wrong = loss((_logits(t["mask"]), -_logits(t["contour"]), []), t)
    assert torch.isclose(right, wrong)
    assert parts["contour"] == parts_wrong["contour"] == 0.0
    # With one sample weighted, only its contour counts.
    t["contour_weight"] = torch.tensor([1.0, 0.0])
    pred_contour = _logits(t["contour"]).clone()
    pred_contour[1] = -pred_contour[1]          # wrong only on the unweighted sample
    _, p = loss((_logits(t["mask"]), pred_contour, []), t)
    assert p["contour"] < 0.05


def test_invalid_pixels_do_not_count():
    t = _targets()
    t["valid"][:, :, :, 8:] = 0
    wrong_right_half = _logits(t["mask"]).clone()
    wrong_right_half[..., 8:] = -wrong_right_half[..., 8:]
    a = branch_loss(_logits(t["mask"]), t["mask"], t["valid"], torch.ones(2), LossConfig())
    b = branch_loss(wrong_right_half, t["mask"], t["valid"], torch.ones(2), LossConfig())
    assert torch.isclose(a, b)


def test_side_outputs_are_supervised_with_their_weight():
    t = _targets()
    fused = (_logits(t["mask"]), _logits(t["contour"]))
    bad_side = (-_logits(t["mask"]), -_logits(t["contour"]))
    no_sides, _ = SegmentationLoss(LossConfig(side_weight=0.5))((*fused, []), t)
    with_bad, parts = SegmentationLoss(LossConfig(side_weight=0.5))((*fused, [bad_side, fused]), t)
    off, _ = SegmentationLoss(LossConfig(side_weight=0.0))((*fused, [bad_side]), t)
    assert with_bad > no_sides + 0.5
    assert parts["side"] > 0
    assert torch.isclose(off, no_sides)


def test_tversky_weights_false_negatives_more_with_high_beta():
    target = torch.zeros(1, 1, 8, 8)
    target[..., :4] = 1
    weight = torch.ones_like(target)
    under = target.clone()
    under[..., 2:4] = 0        # only false negatives
    over = target.clone()
    over[..., 4:6] = 1         # only false positives
    fn_heavy, fp_heavy = dict(alpha=0.3, beta=0.7), dict(alpha=0.7, beta=0.3)
    assert soft_overlap(under, target, weight, **fn_heavy) < soft_overlap(under, target, weight)
    assert soft_overlap(under, target, weight) < soft_overlap(under, target, weight, **fp_heavy)
    assert soft_overlap(over, target, weight, **fp_heavy) < soft_overlap(over, target, weight, **fn_heavy)
    assert torch.isclose(soft_overlap(target, target, weight, **fn_heavy), torch.ones(1))


def test_loss_has_gradients_and_rejects_negative_weights():
    t = _targets()
    logits = torch.zeros_like(t["mask"], requires_grad=True)
    total, _ = SegmentationLoss(LossConfig(tversky=True))((logits, logits, [(logits, logits)]), t)
    total.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="side_weight"):
        LossConfig(side_weight=-1.0)
