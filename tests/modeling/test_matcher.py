"""Hungarian matcher: known assignments, empty targets, cost terms."""

import math

import pytest
import torch
from scipy.optimize import linear_sum_assignment as real_assignment

from mask2former_rankseg.modeling import matcher as matcher_module
from mask2former_rankseg.modeling.matcher import HungarianMatcher, batch_dice_cost, batch_sigmoid_ce_cost


def _masks():
    m = torch.zeros(3, 8, 8)
    m[0, :4, :4] = 1
    m[1, 4:, :] = 1
    m[2, :4, 4:] = 1
    return m


def test_recovers_a_permutation():
    targets_masks = _masks()
    labels = torch.tensor([2, 0, 1])
    perm = [2, 0, 1]  # query q predicts target perm[q]
    pred_masks = torch.stack([(targets_masks[t] * 2 - 1) * 10 for t in perm])[None]
    logits = torch.full((1, 3, 4), -5.0)
    for q, t in enumerate(perm):
        logits[0, q, labels[t]] = 5.0
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    (rows, cols), = matcher({"pred_logits": logits, "pred_masks": pred_masks},
                            [{"labels": labels, "masks": targets_masks}])
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 2, 1: 0, 2: 1}


def test_more_queries_than_targets_and_empty_targets():
    matcher = HungarianMatcher(1, 1, 1, num_points=16)
    out = {"pred_logits": torch.randn(2, 5, 4), "pred_masks": torch.randn(2, 5, 8, 8)}
    targets = [{"labels": torch.tensor([1, 2]), "masks": _masks()[:2]},
               {"labels": torch.tensor([], dtype=torch.long), "masks": torch.zeros(0, 8, 8)}]
    (r0, c0), (r1, c1) = matcher(out, targets)
    assert len(r0) == 2 and sorted(c0.tolist()) == [0, 1] and len(set(r0.tolist())) == 2
    assert len(r1) == 0 and len(c1) == 0


@pytest.mark.parametrize("frames", [None, 2])
def test_random_stream_advances_as_upstreams_for_items_without_targets(frames):
    """Upstream draws each item's points whether or not it has targets (e.g. all its classes fell outside RankSeg's
    top-k) and whatever the cost weights: after a batch with an empty item the generator is where it is after one
    without, for images and clips."""
    shape = (5, 8, 8) if frames is None else (5, frames, 8, 8)
    out = {"pred_logits": torch.randn(2, 5, 4), "pred_masks": torch.randn(2, *shape)}
    full = {"labels": torch.tensor([1, 2]), "masks": torch.rand(2, *shape[1:]).round()}
    empty = {"labels": torch.tensor([], dtype=torch.long), "masks": torch.zeros(0, *shape[1:])}

    def next_draw(matcher, targets):
        torch.manual_seed(0)
        matcher(out, targets)
        return torch.rand(3)

    matcher = HungarianMatcher(1, 1, 1, num_points=16)
    after_full = next_draw(matcher, [full, full])
    assert torch.equal(next_draw(matcher, [empty, full]), after_full)
    assert torch.equal(next_draw(matcher, [full, empty]), after_full)
    torch.manual_seed(0)
    assert not torch.equal(after_full, torch.rand(3))  # the matcher did draw
    assert torch.equal(next_draw(HungarianMatcher(1, 0, 0, num_points=16), [full, full]), after_full)


def test_cost_terms_by_hand():
    inputs = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.sigmoid(inputs)[0]
    dice0 = 1 - (2 * p[0] + 1) / (p.sum() + 1 + 1)
    dice1 = 1 - (2 * p[1] + 1) / (p.sum() + 1 + 1)
    torch.testing.assert_close(batch_dice_cost(inputs, targets)[0], torch.stack([dice0, dice1]))
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    ce0 = (bce(inputs[0, 0], torch.tensor(1.0)) + bce(inputs[0, 1], torch.tensor(0.0))) / 2
    ce1 = (bce(inputs[0, 0], torch.tensor(0.0)) + bce(inputs[0, 1], torch.tensor(1.0))) / 2
    torch.testing.assert_close(batch_sigmoid_ce_cost(inputs, targets)[0], torch.stack([ce0, ce1]))


def _permuted_case(dtype=torch.float32):
    targets_masks = _masks()
    labels = torch.tensor([2, 0, 1])
    perm = [1, 2, 0]
    pred_masks = torch.stack([(targets_masks[t] * 2 - 1) * 10 for t in perm])[None].to(dtype)
    logits = torch.full((1, 3, 4), -5.0)
    for q, t in enumerate(perm):
        logits[0, q, labels[t]] = 5.0
    return {"pred_logits": logits.to(dtype), "pred_masks": pred_masks}, [{"labels": labels, "masks": targets_masks}]


def test_low_precision_inputs_are_matched_in_float32():
    outputs, targets = _permuted_case(torch.bfloat16)
    (rows, cols), = HungarianMatcher(1.0, 1.0, 1.0, num_points=64)(outputs, targets)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 2, 2: 0}
    assert rows.dtype == cols.dtype == torch.int64


def test_class_cost_alone_decides_on_ranked_logits():
    # RankSeg: logits over k + 1 = 3 ranked columns, labels are rank positions; masks carry no signal.
    logits = torch.tensor([[[0.0, 4.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 4.0]]])
    outputs = {"pred_logits": logits, "pred_masks": torch.zeros(1, 3, 4, 4)}
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.ones(2, 8, 8)}]
    (rows, cols), = HungarianMatcher(1.0, 1.0, 1.0, num_points=16)(outputs, targets)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 0}


def test_non_finite_predictions_and_missing_points_are_clear_errors():
    outputs, targets = _permuted_case()
    outputs["pred_masks"][0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="not finite"):
        HungarianMatcher(1.0, 1.0, 1.0, num_points=16)(outputs, targets)
    with pytest.raises(ValueError, match="TRAIN_NUM_POINTS"):
        HungarianMatcher(1.0, 1.0, 1.0)(*_permuted_case())
    (rows, cols), = HungarianMatcher(1.0, 0.0, 0.0)(*_permuted_case())  # class cost only needs no points
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 2, 2: 0}


def test_clip_matching_uses_every_frame():
    """Target A is the left half in frame 0 and the right half in frame 1; B the other way round. Query 0 is
    exactly A in frame 0 but wrong in frame 1; query 2 is A in frame 1 and nearly A in frame 0; query 1 is B.
    Frame 0 alone matches A to query 0; the clip (both frames) matches A to query 2."""
    left = torch.zeros(8, 8)
    left[:, :4] = 1
    right = 1 - left
    targets = [{"labels": torch.tensor([0, 1]), "masks": torch.stack([torch.stack([left, right]),
                                                                      torch.stack([right, left])])}]  # [M, T, H, W]
    nearly_left = left.clone()
    nearly_left[:, 3] = 0
    pred = torch.stack([torch.stack([left, left]), torch.stack([right, left]), torch.stack([nearly_left, right])])
    outputs = {"pred_logits": torch.zeros(1, 3, 3), "pred_masks": ((pred * 2 - 1) * 10)[None]}  # [B, Q, T, H, W]
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=5.0, cost_dice=5.0, num_points=500)
    (rows, cols), = matcher(outputs, targets)
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 2, 1: 1}
    frame0 = {"pred_logits": outputs["pred_logits"], "pred_masks": outputs["pred_masks"][:, :, 0]}
    (rows, cols), = matcher(frame0, [{"labels": targets[0]["labels"], "masks": targets[0]["masks"][:, 0]}])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 0, 1: 1}


def test_clip_masks_with_image_targets_are_a_clear_error():
    matcher = HungarianMatcher(1, 1, 1, num_points=16)
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_masks": torch.zeros(1, 2, 3, 8, 8)}
    with pytest.raises(ValueError, match="frame axes"):
        matcher(outputs, [{"labels": torch.tensor([0]), "masks": torch.zeros(1, 8, 8)}])
def test_full_mask_focal_cost_by_hand_and_recovers_a_permutation():
    """MaskFormer's cost: mean pixel focal loss on whole masks, targets resized (nearest) to the predictions."""
    from mask2former_rankseg.modeling.criterion import sigmoid_focal_loss
    from mask2former_rankseg.modeling.matcher import batch_sigmoid_focal_cost

    g = torch.Generator().manual_seed(0)
    inputs, targets = torch.randn(3, 10, generator=g), (torch.rand(2, 10, generator=g) > 0.5).float()
    cost = batch_sigmoid_focal_cost(inputs, targets)
    for i in range(3):
        for j in range(2):
            pair = sigmoid_focal_loss(inputs[i:i + 1], targets[j:j + 1], num_masks=1)
            torch.testing.assert_close(cost[i, j], pair)
    # logit 0 on a positive pixel: 0.25 * 0.5**2 * ln 2; on a negative: 0.75 * 0.5**2 * ln 2
    by_hand = batch_sigmoid_focal_cost(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]))
    assert by_hand.item() == pytest.approx((0.25 + 0.75) * 0.25 * math.log(2) / 2)

    targets_masks = _masks()  # 8x8 targets, predictions at 4x4
    labels = torch.tensor([2, 0, 1])
    perm = [1, 2, 0]
    small = torch.nn.functional.interpolate(targets_masks[None], size=(4, 4), mode="nearest")[0]
    pred_masks = torch.stack([(small[t] * 2 - 1) * 10 for t in perm])[None]
    logits = torch.zeros(1, 3, 4)
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=20.0, cost_dice=1.0, mask_loss="full_mask_focal")
    (rows, cols), = matcher({"pred_logits": logits, "pred_masks": pred_masks},
                            [{"labels": labels, "masks": targets_masks}])
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 1, 1: 2, 2: 0}


def test_unknown_mask_loss_names_the_key():
    with pytest.raises(ValueError, match="MODEL.MASK_FORMER.MASK_LOSS='focal'"):
        HungarianMatcher(mask_loss="focal")


@pytest.mark.parametrize("target_sizes", [((12, 12), (12, 12), (12, 12)), ((12, 12), (12, 12), (10, 14))])
def test_a_batch_matches_as_its_items_alone_with_their_draws(target_sizes, monkeypatch):
    """The batched point sampling (one grid sample for every prediction; one for every target when their sizes
    agree, else one per item) gives each item the cost matrix it gets alone after the earlier items' draws."""
    torch.manual_seed(1)
    outputs = {"pred_logits": torch.randn(3, 6, 5), "pred_masks": torch.randn(3, 6, 8, 8) * 3}
    targets = [{"labels": torch.randint(0, 4, (m,)), "masks": torch.rand(m, *size).round().bool()}
               for m, size in zip((2, 0, 4), target_sizes)]
    matcher = HungarianMatcher(2.0, 5.0, 5.0, num_points=40)
    costs = []
    monkeypatch.setattr(matcher_module, "linear_sum_assignment",
                        lambda c: (costs.append(torch.as_tensor(c).clone()), real_assignment(c))[1])
    torch.manual_seed(7)
    batched = matcher(outputs, targets)
    batch_costs, costs[:] = list(costs), []
    torch.manual_seed(7)
    for b in range(3):
        alone = matcher({k: v[b:b + 1] for k, v in outputs.items()}, [targets[b]])
        assert all(torch.equal(x, y) for x, y in zip(alone[0], batched[b]))
    assert len(costs) == len(batch_costs) == 2
    for alone_cost, batch_cost in zip(costs, batch_costs):
        assert torch.equal(alone_cost, batch_cost)
