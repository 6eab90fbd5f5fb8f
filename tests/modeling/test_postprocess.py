"""Panoptic and instance post-processing on hand-built queries with known answers."""

import math

import torch

from mask2former_rankseg.modeling.meta_arch.postprocess import (
    instance_inference,
    panoptic_inference,
    semantic_inference,
)

BIG = 20.0  # a logit that makes a probability ~1


def _logits(classes, num_classes=3):
    """[Q, K+1] logits putting each query on one class (num_classes = "no object")."""
    out = torch.full((len(classes), num_classes + 1), -BIG)
    for q, c in enumerate(classes):
        out[q, c] = BIG
    return out


def _masks(*regions, size=(4, 6)):
    """[Q, H, W] mask logits: +BIG inside each (row slice, col slice) region, -BIG elsewhere."""
    out = torch.full((len(regions), *size), -BIG)
    for q, (rows, cols) in enumerate(regions):
        out[q, rows, cols] = BIG
    return out


def test_panoptic_segments_merge_stuff_and_drop_weak_queries():
    # classes: 0 = thing "person", 1 = thing "car", 2 = stuff "sky"
    mask_cls = _logits([0, 2, 2, 3, 1])
    mask_cls[4] = torch.tensor([0.0, 0.5, 0.0, 0.0])  # a car query with probability ~0.35 < 0.8: dropped
    mask_pred = _masks((slice(0, 4), slice(0, 2)),   # person: left third
                       (slice(0, 2), slice(2, 6)),   # sky: top right
                       (slice(2, 4), slice(2, 6)),   # sky again: bottom right -> merged into one segment
                       (slice(0, 4), slice(0, 6)),   # "no object" query covering everything: ignored
                       (slice(0, 4), slice(0, 6)))
    seg, info = panoptic_inference(mask_cls, mask_pred, thing_classes={0, 1})
    assert info == [{"id": 1, "isthing": True, "category_id": 0}, {"id": 2, "isthing": False, "category_id": 2}]
    expected = torch.tensor([[1, 1, 2, 2, 2, 2]] * 4, dtype=torch.int32)
    assert torch.equal(seg, expected)


def test_panoptic_overlap_threshold_and_empty_result():
    # query 1 (class 1) wants the whole image but loses 2/3 of it to query 0 (higher score): dropped at 0.8
    mask_cls = _logits([0, 1])
    mask_cls[1, 1] = 3.0  # lower score than query 0
    mask_pred = _masks((slice(0, 4), slice(0, 4)), (slice(0, 4), slice(0, 6)))
    seg, info = panoptic_inference(mask_cls, mask_pred, thing_classes={0, 1}, overlap_threshold=0.8)
    assert [s["category_id"] for s in info] == [0] and int((seg == 0).sum()) == 8  # right third stays void
    seg, info = panoptic_inference(mask_cls, mask_pred, thing_classes={0, 1}, overlap_threshold=0.3)
    assert [s["category_id"] for s in info] == [0, 1] and int((seg == 2).sum()) == 8
    seg, info = panoptic_inference(_logits([3, 3]), mask_pred, thing_classes={0})
    assert info == [] and not seg.any()


def test_instance_inference_top_k_thing_filter_and_scores():
    mask_cls = torch.log(torch.tensor([[0.7, 0.2, 0.05, 0.05],    # query 0: class 0 (p 0.7)
                                       [0.1, 0.1, 0.6, 0.2]]))    # query 1: class 2 (p 0.6)
    mask_pred = torch.tensor([[[2.0, -1.0], [0.0, -3.0]],        # one pixel > 0
                              [[1.0, 1.0], [1.0, -1.0]]])        # three pixels > 0
    result = instance_inference(mask_cls, mask_pred, topk=3)
    assert len(result) == 3 and result.image_size == (2, 2)
    order = result.scores.argsort(descending=True)
    classes = result.pred_classes[order].tolist()
    assert classes[:2] == [0, 2]
    sig = torch.sigmoid
    expected_first = 0.7 * float(sig(torch.tensor(2.0)))
    expected_second = 0.6 * float(sig(torch.tensor(1.0)))
    assert math.isclose(float(result.scores[order[0]]), expected_first, rel_tol=1e-5)
    assert math.isclose(float(result.scores[order[1]]), expected_second, rel_tol=1e-5)
    assert result.pred_masks.dtype == torch.float32 and result.pred_boxes.shape == (3, 4)
    things = instance_inference(mask_cls, mask_pred, topk=3, thing_classes={0, 1})
    assert set(things.pred_classes.tolist()) <= {0, 1} and 0 in things.pred_classes.tolist()
    assert len(instance_inference(mask_cls, mask_pred, topk=100)) == 6  # at most Q x K


def test_semantic_inference_is_a_probability_weighted_sum():
    mask_cls = _logits([1, 3], num_classes=3)
    mask_pred = _masks((slice(0, 1), slice(0, 2)), (slice(0, 2), slice(0, 2)), size=(2, 2))
    scores = semantic_inference(mask_cls, mask_pred)
    assert scores.shape == (3, 2, 2)
    assert torch.allclose(scores[1], torch.tensor([[1.0, 1.0], [0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(scores[0], torch.zeros(2, 2), atol=1e-6)


def test_panoptic_within_own_mask_mask2former_vs_maskformer():
    """A query that wins pixels where its own mask is below 0.5: Mask2Former leaves them void, MaskFormer keeps
    every won pixel in the segment."""
    mask_cls = _logits([0, 1])
    mask_pred = _masks((slice(0, 4), slice(0, 3)), (slice(0, 0), slice(0, 0)))
    mask_pred[0, :, 3:] = -0.4  # p = 0.40 on the right half: below 0.5 but still the best there
    mask_pred[1, :, 3:] = -2.0  # p = 0.12
    seg, info = panoptic_inference(mask_cls, mask_pred, thing_classes={0, 1})
    assert info == [{"id": 1, "isthing": True, "category_id": 0}]
    assert int((seg == 1).sum()) == 12 and int((seg == 0).sum()) == 12
    seg, info = panoptic_inference(mask_cls, mask_pred, thing_classes={0, 1}, within_own_mask=False)
    assert info == [{"id": 1, "isthing": True, "category_id": 0}] and bool((seg == 1).all())
