"""RankSeg's per-pixel pieces on hand-made tensors: top-k without "no object" and the oracle's present-first
ranking, label remapping to rank positions, scatter-back, present categories, the selected-label classifier, and the
per-pixel multi-label head."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from mask2former_rankseg.config import ConfigError
from mask2former_rankseg.constants import SUPPRESSED_LOGIT
from mask2former_rankseg.modeling.rankseg import (
    MultiLabelHead,
    SelectedLabelClassifier,
    present_in_label_maps,
    remap_pixel_labels,
    scatter_back_maps,
    select_topk,
    suppress_absent_maps,
)


def test_select_topk_without_no_object_and_present_first():
    logits = torch.tensor([[0.1, 0.9, 0.5, 0.3], [0.4, 0.2, 0.0, 0.8]])
    assert select_topk(logits, 3, no_object=False).tolist() == [[1, 2, 3], [3, 0, 1]]
    assert select_topk(logits, 3).tolist() == [[1, 2, 3, 4], [3, 0, 1, 4]]  # "no object" column K = 4
    present = torch.tensor([[True, False, False, True], [False, False, True, False]])
    # present categories first (by score), then the others (by score)
    assert select_topk(logits, 3, no_object=False, present=present).tolist() == [[3, 0, 1], [2, 3, 0]]
    with pytest.raises(ConfigError, match="TOPK=5"):
        select_topk(logits, 5, no_object=False)


def test_remap_pixel_labels_by_hand():
    labels = torch.tensor([[[1, 3, 4, 255], [3, 3, 0, 1]]])  # [1, 2, 4]
    topk = torch.tensor([[3, 1]])  # rank 0 = category 3, rank 1 = category 1
    assert remap_pixel_labels(labels, topk, 5, 255).tolist() == [[[1, 0, 255, 255], [0, 0, 255, 1]]]
    with pytest.raises(ValueError, match=r"labels span \[0, 7\]"):
        remap_pixel_labels(torch.tensor([[[0, 7]]]), topk, 5, 255)


def test_scatter_back_maps_by_hand():
    ranked = torch.tensor([[[[7.0]], [[8.0]]]])  # [1, 2, 1, 1]
    full = scatter_back_maps(ranked, torch.tensor([[3, 1]]), 5)
    assert full[0, :, 0, 0].tolist() == [SUPPRESSED_LOGIT, 8.0, SUPPRESSED_LOGIT, 7.0, SUPPRESSED_LOGIT]


def test_present_categories_and_suppression():
    labels = torch.tensor([[[0, 255], [2, 2]], [[255, 255], [255, 255]]])
    present = present_in_label_maps(labels, 4)
    assert present.tolist() == [[True, False, True, False], [False, False, False, False]]
    logits = torch.zeros(2, 4, 1, 1)
    assert suppress_absent_maps(logits, present)[0, :, 0, 0].tolist() == [0.0, SUPPRESSED_LOGIT, 0.0,
                                                                          SUPPRESSED_LOGIT]


def test_selected_label_classifier_on_a_known_case():
    clf = SelectedLabelClassifier(num_classes=3, channels=2, topk=2)
    with torch.no_grad():
        clf.cls_emb.copy_(torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]))
        clf.cls_bias_emb.copy_(torch.tensor([[0.5, 0.0, -1.0]]))
        clf.norm.weight.copy_(torch.tensor([2.0, 3.0]))
        clf.norm.bias.copy_(torch.tensor([0.5, -1.0]))
    feat = torch.tensor([[3.0, 1.0], [0.0, 2.0]]).reshape(1, 2, 1, 2)  # pixel 0: (3, 0), pixel 1: (1, 2)
    out = clf(feat, torch.tensor([[2, 0]]))  # rank 0: category 2, rank 1: category 0
    # raw logits: pixel 0: cat 2 = 3 + 0 - 1 = 2, cat 0 = 3 + 0.5 = 3.5; pixel 1: cat 2 = 1 + 2 - 1 = 2, cat 0 = 1.5
    for pixel, (a, b) in enumerate([(2.0, 3.5), (2.0, 1.5)]):
        z = F.layer_norm(torch.tensor([a, b]), (2,))
        expected = z * torch.tensor([2.0, 3.0]) + torch.tensor([0.5, -1.0])
        torch.testing.assert_close(out[0, :, 0, pixel], expected)
    assert clf.class_embedding.shape == (3, 2)
    with pytest.raises(ValueError, match="TOPK=2"):
        clf(feat, torch.tensor([[2, 0, 1]]))


def test_per_pixel_multilabel_head_pools_projects_and_shares_the_classifier_rows():
    head = MultiLabelHead(num_classes=6, d_encoder=8, hidden_dim=16, n_heads=2, d_ff=32, dropout=0.0,
                          share_embedding=True, downsample=4, projection="separable_conv").eval()
    names = sorted(n for n, _ in head.named_parameters() if n.startswith("proj_dec"))
    assert names == ["proj_dec.depthwise_conv.conv.bias", "proj_dec.depthwise_conv.conv.weight",
                     "proj_dec.pointwise_conv.conv.bias", "proj_dec.pointwise_conv.conv.weight"]
    assert head.proj_dec.depthwise_conv.conv.groups == 8
    x = torch.randn(2, 8, 20, 12)
    emb = torch.randn(6, 16)
    out = head(x, emb)
    assert out.shape == (2, 6)
    # the same as pooling first: the head reads the 4 x 4 average-pooled map
    pooled = F.adaptive_avg_pool2d(x, 4)
    torch.testing.assert_close(head(pooled, emb), out)
    with pytest.raises(ValueError, match="feature maps"):
        head(torch.randn(2, 8, 5), emb)
