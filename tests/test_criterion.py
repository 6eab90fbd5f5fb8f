"""SetCriterion: hand-computed classification loss, mask losses, deep supervision, ranked logits."""

import math

import pytest
import torch

from mask2former_rankseg.modeling.criterion import SetCriterion, dice_loss, sigmoid_ce_loss


class FixedMatcher(torch.nn.Module):
    def __init__(self, indices):
        super().__init__()
        self.indices = indices

    def forward(self, outputs, targets):
        return self.indices


def _criterion(matcher, eos=0.1, losses=("labels", "masks")):
    return SetCriterion(3, matcher, weight_dict={}, eos_coef=eos, losses=list(losses), num_points=64,
                        oversample_ratio=3.0, importance_sample_ratio=0.75)


def test_loss_ce_by_hand():
    logits = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])  # B=1, Q=2, K=3 (+ no object)
    matcher = FixedMatcher([(torch.tensor([0]), torch.tensor([0]))])
    targets = [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 4, 4)}]
    outputs = {"pred_logits": logits, "pred_masks": torch.zeros(1, 2, 4, 4)}
    out = _criterion(matcher, losses=["labels"])(outputs, targets)
    # query 0 -> class 0 with weight 1; query 1 -> no object with weight 0.1; weighted mean
    nll0 = -math.log(math.exp(2) / (math.exp(2) + 3))
    nll1 = -math.log(math.e / (math.e + 3))
    expected = (1.0 * nll0 + 0.1 * nll1) / (1.0 + 0.1)
    assert out["loss_ce"].item() == pytest.approx(expected, rel=1e-6)


def test_ranked_logits_use_their_last_column_as_no_object():
    logits = torch.zeros(1, 2, 3)  # ranked: k = 2, + no object
    logits[0, 1, 2] = 5.0
    matcher = FixedMatcher([(torch.tensor([0]), torch.tensor([0]))])
    targets = [{"labels": torch.tensor([1]), "masks": torch.zeros(1, 4, 4)}]
    out = _criterion(matcher, eos=1.0, losses=["labels"])(
        {"pred_logits": logits, "pred_masks": torch.zeros(1, 2, 4, 4)}, targets)
    nll0 = math.log(3)  # uniform logits, target 1
    nll1 = -math.log(math.exp(5) / (math.exp(5) + 2))  # target = last column
    assert out["loss_ce"].item() == pytest.approx((nll0 + nll1) / 2, rel=1e-6)


def test_mask_losses_reward_correct_masks_and_backprop():
    torch.manual_seed(0)
    gt = torch.zeros(2, 16, 16)
    gt[0, :8] = 1
    gt[1, 8:] = 1
    targets = [{"labels": torch.tensor([0, 2]), "masks": gt}]
    matcher = FixedMatcher([(torch.tensor([0, 1]), torch.tensor([0, 1]))])
    crit = _criterion(matcher, losses=["masks"])
    good = ((gt * 2 - 1) * 8)[None, :, ::4, ::4].clone()  # predictions at 1/4 resolution
    bad = torch.randn(1, 2, 4, 4, requires_grad=True)
    good_loss = crit({"pred_logits": torch.zeros(1, 2, 4), "pred_masks": good}, targets)
    bad_loss = crit({"pred_logits": torch.zeros(1, 2, 4), "pred_masks": bad}, targets)
    assert good_loss["loss_mask"] < bad_loss["loss_mask"] and good_loss["loss_dice"] < bad_loss["loss_dice"]
    (bad_loss["loss_mask"] + bad_loss["loss_dice"]).backward()
    assert bad.grad is not None and torch.isfinite(bad.grad).all()


def test_point_loss_formulas():
    logits = torch.tensor([[0.0, 1.0], [2.0, -2.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    p = torch.sigmoid(logits)
    d = (1 - (2 * (p * labels).sum(1) + 1) / (p.sum(1) + labels.sum(1) + 1)).sum() / 2
    assert dice_loss(logits, labels, 2).item() == pytest.approx(d.item())
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum() / 2
    assert sigmoid_ce_loss(logits, labels, 2).item() == pytest.approx(bce.item())


def test_deep_supervision_and_empty_targets():
    from mask2former_rankseg.modeling.matcher import HungarianMatcher

    crit = _criterion(HungarianMatcher(1, 1, 1, num_points=16))
    out = {"pred_logits": torch.randn(2, 4, 4, requires_grad=True), "pred_masks": torch.randn(2, 4, 8, 8),
           "aux_outputs": [{"pred_logits": torch.randn(2, 4, 4), "pred_masks": torch.randn(2, 4, 8, 8)}] * 2}
    targets = [{"labels": torch.tensor([1]), "masks": torch.ones(1, 32, 32)},
               {"labels": torch.tensor([], dtype=torch.long), "masks": torch.zeros(0, 32, 32)}]
    losses = crit(out, targets)
    assert set(losses) == {f"{k}{s}" for k in ("loss_ce", "loss_mask", "loss_dice") for s in ("", "_0", "_1")}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_ce"].backward()
