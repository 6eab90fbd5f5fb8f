"""Semantic post-processing after the decoder: the cheaper path (upsampling the crop only, no identity resize,
one map per group of equal classes) against today's formula (upsample to the padded size, crop, resize,
``einsum`` over every class), on random outputs; with RankSeg's TOPK < K scatter-back and "no object"."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.nn import functional as F

from mask2former_rankseg.modeling.meta_arch.maskformer import MaskFormer
from mask2former_rankseg.modeling.meta_arch.postprocess import semantic_inference, upsample_cropped
from mask2former_rankseg.modeling.rankseg import scatter_back
from mask2former_rankseg.structures import sem_seg_postprocess

ATOL = 1e-5


def _old_semantic_inference(mask_cls, mask_pred):
    probs = F.softmax(mask_cls, dim=-1)[..., :-1]
    return torch.einsum("qc,q...->c...", probs, mask_pred.sigmoid())


def _old_post(mask_cls, low, padded, image_size, out_size, before_inference):
    """MaskFormer._inference's semantic scores as they were computed before (one image)."""
    mask_pred = F.interpolate(low[None], size=padded, mode="bilinear", align_corners=False)[0]
    if before_inference:
        mask_pred = sem_seg_postprocess(mask_pred, image_size, *out_size)
        return _old_semantic_inference(mask_cls, mask_pred)
    return sem_seg_postprocess(_old_semantic_inference(mask_cls, mask_pred), image_size, *out_size)


@pytest.mark.parametrize("low,padded,crop", [
    ((8, 8), (32, 32), (32, 32)),
    ((8, 10), (32, 40), (27, 33)),
    ((8, 10), (32, 40), (1, 2)),
    ((9, 7), (27, 21), (25, 20)),  # scale 3
    ((7, 9), (30, 40), (29, 31)),  # not an integer ratio: upsample to the padded size and crop
])
def test_upsample_cropped_equals_upsample_then_crop(low, padded, crop):
    masks = torch.randn(5, *low, generator=torch.Generator().manual_seed(0)) * 5
    expected = F.interpolate(masks[None], size=padded, mode="bilinear", align_corners=False)[0, :, : crop[0], : crop[1]]
    got = upsample_cropped(masks, padded, crop)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)
    if padded[0] % low[0] == 0 and (padded[0] // low[0]) in (2, 4):
        assert torch.equal(got, expected)  # power-of-two scales: the same arithmetic, bit for bit


def test_upsample_cropped_keeps_extra_axes():
    masks = torch.randn(3, 2, 8, 8)
    expected = F.interpolate(masks.flatten(0, 1)[None], size=(32, 32), mode="bilinear")[0].view(3, 2, 32, 32)
    torch.testing.assert_close(upsample_cropped(masks, (32, 32), (20, 30)), expected[..., :20, :30], rtol=0, atol=0)


def _ranked(mask_cls, keep):
    out = torch.full_like(mask_cls, -1e4)
    out[:, keep] = mask_cls[:, keep]
    return out


def test_grouped_semantic_inference_equals_the_dense_formula():
    g = torch.Generator().manual_seed(1)
    mask_cls, masks = torch.randn(11, 41, generator=g) * 3, torch.randn(11, 6, 7, generator=g) * 4
    torch.testing.assert_close(semantic_inference(mask_cls, masks), _old_semantic_inference(mask_cls, masks),
                               rtol=0, atol=ATOL)
    ranked = _ranked(mask_cls, torch.tensor([2, 9, 33, 40]))  # 3 of 40 classes + "no object"
    torch.testing.assert_close(semantic_inference(ranked, masks), _old_semantic_inference(ranked, masks),
                               rtol=0, atol=ATOL)
    clip = torch.randn(11, 3, 6, 7, generator=g)  # [Q, T, H, W]
    torch.testing.assert_close(semantic_inference(ranked, clip), _old_semantic_inference(ranked, clip),
                               rtol=0, atol=ATOL)


def _stub_model(num_classes, before_inference, output="scores"):
    return SimpleNamespace(num_classes=num_classes, sem_seg_postprocess_before_inference=before_inference,
                           semantic_on=True, panoptic_on=False, instance_on=False, semantic_output=output)


@pytest.mark.parametrize("before_inference", [False, True])
@pytest.mark.parametrize("out_size", [None, (37, 29)])
@pytest.mark.parametrize("topk", [None, 5])
def test_model_semantic_scores_equal_the_old_formula(before_inference, out_size, topk):
    """MaskFormer._inference (scores and labels) against the old formula; RankSeg: TOPK < K logits scattered back
    into the K + 1 columns (the suppressed logit elsewhere, "no object" last)."""
    g = torch.Generator().manual_seed(2)
    num_classes, queries, batch = 30, 9, 2
    padded, sizes = (48, 64), [(48, 61), (35, 40)]
    low = torch.randn(batch, queries, 12, 16, generator=g) * 4
    if topk is None:
        logits, topk_index = torch.randn(batch, queries, num_classes + 1, generator=g) * 3, None
    else:
        logits = torch.randn(batch, queries, topk + 1, generator=g) * 3
        topk_index = torch.stack([torch.cat([torch.randperm(num_classes, generator=g)[:topk],
                                             torch.tensor([num_classes])]) for _ in range(batch)])
    full_logits = logits if topk_index is None else scatter_back(logits, topk_index, num_classes, -1e4)
    inputs = [{} if out_size is None else {"height": out_size[0], "width": out_size[1]} for _ in sizes]
    images = SimpleNamespace(tensor=torch.zeros(batch, 3, *padded), image_sizes=sizes)
    outputs = {"pred_logits": logits, "pred_masks": low}
    for output in ("scores", "labels"):
        model = _stub_model(num_classes, before_inference, output)
        results = MaskFormer._inference(model, dict(outputs), inputs, images, None, topk_index)
        for i, size in enumerate(sizes):
            expected = _old_post(full_logits[i], low[i], padded, size, out_size or size, before_inference)
            if output == "scores":
                torch.testing.assert_close(results[i]["sem_seg"], expected, rtol=0, atol=ATOL)
            else:
                got = results[i]["sem_seg_labels"]
                agree = (got == expected.argmax(0)).float().mean().item()
                assert agree > 0.999, agree  # ties within float rounding may differ; none expected here
