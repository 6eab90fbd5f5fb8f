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


def test_empty_weight_buffer_matches_upstream_checkpoints():
    crit = _criterion(FixedMatcher([]), eos=0.1)
    assert "empty_weight" in crit.state_dict()
    torch.testing.assert_close(crit.empty_weight, torch.tensor([1.0, 1.0, 1.0, 0.1]))


def test_labels_outside_the_logit_columns_are_a_clear_error():
    crit = _criterion(FixedMatcher([(torch.tensor([0]), torch.tensor([0]))]), losses=["labels"])
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": torch.zeros(1, 2, 4, 4)}  # ranked: k = 2
    with pytest.raises(ValueError, match="remap_targets"):
        crit(outputs, [{"labels": torch.tensor([3]), "masks": torch.zeros(1, 4, 4)}])
    # the last column itself is a valid target: a segment trained as "no object" (upstream's video targets)
    assert torch.isfinite(crit(outputs, [{"labels": torch.tensor([2]), "masks": torch.zeros(1, 4, 4)}])["loss_ce"])


def test_target_masks_of_different_sizes_are_padded():
    matcher = FixedMatcher([(torch.tensor([0]), torch.tensor([0])), (torch.tensor([1]), torch.tensor([0]))])
    crit = _criterion(matcher, losses=["masks"])
    pred = torch.randn(2, 2, 4, 4)
    small = torch.ones(1, 8, 12, dtype=torch.bool)
    padded = torch.zeros(1, 16, 16, dtype=torch.bool)
    padded[:, :8, :12] = True
    big = torch.rand(1, 16, 16) > 0.5
    outputs = {"pred_logits": torch.zeros(2, 2, 4), "pred_masks": pred}
    torch.manual_seed(1)
    got = crit(outputs, [{"labels": torch.tensor([0]), "masks": small}, {"labels": torch.tensor([1]), "masks": big}])
    torch.manual_seed(1)
    ref = crit(outputs, [{"labels": torch.tensor([0]), "masks": padded}, {"labels": torch.tensor([1]), "masks": big}])
    assert got["loss_mask"].item() == ref["loss_mask"].item() and got["loss_dice"].item() == ref["loss_dice"].item()


def test_perfect_predictions_beat_random_ones_end_to_end():
    from mask2former_rankseg.modeling.matcher import HungarianMatcher

    gt = torch.zeros(3, 16, 16)
    gt[0, :8, :8] = 1
    gt[1, 8:] = 1
    gt[2, :8, 8:] = 1
    targets = [{"labels": torch.tensor([2, 0, 1]), "masks": gt}]
    perfect_logits = torch.full((1, 4, 4), -8.0)
    for q in range(3):  # query q predicts target (q + 1) % 3
        perfect_logits[0, q, targets[0]["labels"][(q + 1) % 3]] = 8.0
    perfect_logits[0, 3, 3] = 8.0  # the spare query says "no object"
    perfect_masks = torch.stack([(gt[(q + 1) % 3] * 2 - 1) * 8 for q in range(3)] + [torch.full((16, 16), -8.0)])
    perfect = {"pred_logits": perfect_logits, "pred_masks": perfect_masks[None]}
    random = {"pred_logits": torch.randn(1, 4, 4), "pred_masks": torch.randn(1, 4, 16, 16)}
    crit = _criterion(HungarianMatcher(2.0, 5.0, 5.0, num_points=64), eos=0.1)
    good, bad = crit(perfect, targets), crit(random, targets)
    # point sampling favours the (interpolated, uncertain) boundaries, so perfect masks keep some loss
    assert good["loss_ce"] < 0.01 * bad["loss_ce"]
    assert good["loss_mask"] < 0.75 * bad["loss_mask"] and good["loss_dice"] < 0.5 * bad["loss_dice"]


def test_point_sample_reads_pixel_centres_and_interpolates():
    from mask2former_rankseg.modeling.point_sample import point_sample

    img = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    coords = torch.tensor([[[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]])  # (x, y)
    assert point_sample(img, coords).tolist() == [[[1.0, 2.0, 3.0, 2.5]]]


def test_uncertain_points_are_the_most_uncertain_candidates():
    from mask2former_rankseg.modeling.point_sample import (
        calculate_uncertainty,
        get_uncertain_point_coords_with_randomness,
        point_sample,
    )

    logits = torch.randn(2, 1, 8, 8)
    torch.manual_seed(3)
    coords = get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 10, 3, 0.6)
    torch.manual_seed(3)
    candidates = torch.rand(2, 30, 2)
    unc = calculate_uncertainty(point_sample(logits, candidates))[:, 0]
    assert coords.shape == (2, 10, 2) and coords.min() >= 0 and coords.max() <= 1
    for r in range(2):
        best = candidates[r, unc[r].topk(6).indices]
        torch.testing.assert_close(coords[r, :6], best)  # 6 importance points, then 4 uniform ones
    assert torch.equal(calculate_uncertainty(torch.tensor([-2.0, 0.5])), torch.tensor([-2.0, -0.5]))
    with pytest.raises(ValueError):
        get_uncertain_point_coords_with_randomness(logits, calculate_uncertainty, 10, 0.5, 0.6)


def test_clip_mask_losses_sum_frames_and_divide_by_tracks(monkeypatch):
    """Constant masks sampled away from the borders (where bilinear sampling reads the zero padding) make the
    point losses exact: each (track, frame) is one mask, and the sums are divided by the number of tracks (2),
    not of masks (4), as upstream's video criterion does."""
    import mask2former_rankseg.modeling.criterion as criterion_module

    def interior_points(logits, uncertainty, num_points, *ratios):
        assert logits.shape[:2] == (4, 1)  # one [1, h, w] mask per (track, frame)
        return 0.2 + 0.6 * torch.rand(logits.shape[0], num_points, 2)

    monkeypatch.setattr(criterion_module, "get_uncertain_point_coords_with_randomness", interior_points)
    logit = {(0, 0): 2.0, (0, 1): -1.0, (1, 0): 0.5, (1, 1): -3.0}  # (track, frame) -> predicted logit
    target = {(0, 0): 1.0, (0, 1): 0.0, (1, 0): 0.0, (1, 1): 1.0}
    pred_masks = torch.zeros(1, 3, 2, 4, 4)  # [B, Q, T, h, w]; track n is predicted by query n + 1
    target_masks = torch.zeros(2, 2, 16, 16)  # [N, T, H, W]
    for (n, t), value in logit.items():
        pred_masks[0, n + 1, t] = value
        target_masks[n, t] = target[(n, t)]
    matcher = FixedMatcher([(torch.tensor([1, 2]), torch.tensor([0, 1]))])
    criterion = _criterion(matcher, losses=("masks",))
    losses = criterion({"pred_logits": torch.zeros(1, 3, 4), "pred_masks": pred_masks},
                       [{"labels": torch.tensor([0, 2]), "masks": target_masks}])
    points = 64
    bce = dice = 0.0
    for key, x in logit.items():
        y, p = target[key], 1 / (1 + math.exp(-x))
        bce += -(y * math.log(p) + (1 - y) * math.log(1 - p))
        dice += 1 - (2 * p * y * points + 1) / (p * points + y * points + 1)
    assert losses["loss_mask"].item() == pytest.approx(bce / 2, rel=1e-5)
    assert losses["loss_dice"].item() == pytest.approx(dice / 2, rel=1e-5)
def test_sigmoid_focal_loss_by_hand():
    from mask2former_rankseg.modeling.criterion import sigmoid_focal_loss

    # logit 0 (p = 0.5): BCE ln 2, modulation 0.5**2; alpha 0.25 on the positive, 0.75 on the negative pixel
    loss = sigmoid_focal_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), num_masks=1)
    assert loss.item() == pytest.approx((0.25 + 0.75) * 0.25 * math.log(2) / 2)
    # a confident correct pixel contributes ~nothing; two masks summed then divided by num_masks
    two = sigmoid_focal_loss(torch.tensor([[8.0, 0.0], [0.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 1.0]]),
                             num_masks=2)
    assert two.item() == pytest.approx((0.25 * 0.25 * math.log(2) / 2 + 0.25 * 0.25 * math.log(2)) / 2, rel=1e-3)


def test_full_mask_focal_losses_upsample_predictions_to_the_targets():
    """MaskFormer's mask loss: focal + dice between bilinearly upsampled predictions and whole target masks."""
    from mask2former_rankseg.modeling.criterion import sigmoid_focal_loss

    g = torch.Generator().manual_seed(0)
    pred = torch.randn(1, 2, 4, 4, generator=g)
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 1:7] = 1
    matcher = FixedMatcher([(torch.tensor([1]), torch.tensor([0]))])
    criterion = SetCriterion(3, matcher, weight_dict={}, eos_coef=0.1, losses=["masks"], mask_loss="full_mask_focal")
    out = criterion({"pred_logits": torch.zeros(1, 2, 4), "pred_masks": pred},
                    [{"labels": torch.tensor([0]), "masks": target}])
    up = torch.nn.functional.interpolate(pred[:, 1:2], size=(8, 8), mode="bilinear", align_corners=False).flatten(1)
    torch.testing.assert_close(out["loss_mask"], sigmoid_focal_loss(up, target.flatten(1), 1))
    torch.testing.assert_close(out["loss_dice"], dice_loss(up, target.flatten(1), 1))
    # deterministic: no point sampling
    again = criterion({"pred_logits": torch.zeros(1, 2, 4), "pred_masks": pred},
                      [{"labels": torch.tensor([0]), "masks": target}])
    assert torch.equal(out["loss_mask"], again["loss_mask"])
