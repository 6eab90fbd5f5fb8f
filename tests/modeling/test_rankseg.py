"""RankSeg: selection, gather/scatter, target remapping, oracle, asymmetric loss, multi-label head."""

import math

import pytest
import torch

from mask2former_rankseg.modeling.rankseg import (
    AsymmetricLoss,
    MultiLabelHead,
    gather_ranked,
    present_classes,
    remap_targets,
    scatter_back,
    select_topk,
    suppress_absent,
)


def test_select_topk_orders_and_appends_no_object():
    logits = torch.tensor([[0.1, 2.0, -1.0, 3.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    idx = select_topk(logits, 3)
    assert idx.tolist() == [[3, 1, 4, 5], [0, 1, 2, 5]]
    with pytest.raises(ValueError):
        select_topk(logits, 6)


def test_gather_then_scatter_back_round_trip():
    torch.manual_seed(0)
    class_logits = torch.randn(2, 4, 6)  # K = 5 (+ no object)
    idx = torch.tensor([[3, 1, 5], [0, 4, 5]])
    ranked = gather_ranked(class_logits, idx)
    assert ranked.shape == (2, 4, 3)
    assert torch.equal(ranked[0, :, 0], class_logits[0, :, 3])
    assert torch.equal(ranked[1, :, 1], class_logits[1, :, 4])
    full = scatter_back(ranked, idx, num_classes=5)
    assert full.shape == (2, 4, 6)
    for b in range(2):
        for c in range(6):
            expected = class_logits[b, :, c] if c in idx[b].tolist() else torch.full((4,), -100.0)
            assert torch.equal(full[b, :, c], expected)


def test_remap_targets_hand_case():
    # K = 5, topk = 2 selecting [3, 1]; labels [1, 3, 4] -> ranks [1, 0], class-4 segment dropped
    masks = torch.stack([torch.full((2, 2), float(v)) for v in (1, 3, 4)])
    targets = [{"labels": torch.tensor([1, 3, 4]), "masks": masks, "extra": "kept"}]
    out = remap_targets(targets, torch.tensor([[3, 1, 5]]), num_classes=5)
    assert out[0]["labels"].tolist() == [1, 0]
    assert out[0]["masks"][:, 0, 0].tolist() == [1.0, 3.0]
    assert out[0]["extra"] == "kept"
    assert targets[0]["labels"].tolist() == [1, 3, 4]  # input untouched


def test_present_classes_and_oracle():
    present = present_classes([torch.tensor([0, 2, 2]), torch.tensor([], dtype=torch.long)], num_classes=4)
    assert present.tolist() == [[True, False, True, False], [False, False, False, False]]
    # labels outside [0, K) (ignore, "no object") are not categories
    others = present_classes([torch.tensor([255, 3, -1, 4]), torch.tensor([[1], [1]])], num_classes=4)
    assert others.tolist() == [[False, False, False, True], [False, True, False, False]]
    logits = torch.zeros(2, 3, 5)
    out = suppress_absent(logits, present)
    assert out[0, :, :4].tolist() == [[0.0, -100.0, 0.0, -100.0]] * 3
    assert (out[1, :, :4] == -100).all()
    assert (out[:, :, 4] == 0).all()  # "no object" untouched
    assert (logits == 0).all()


def test_asymmetric_loss_against_hand_computation():
    x = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 1.5, -2.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    total = 0.0
    for i in range(2):
        for j in range(3):
            p = 1 / (1 + math.exp(-x[i, j].item()))
            if y[i, j] == 1:
                total += math.log(max(p, 1e-5)) * (1 - p) ** 0  # gamma_pos = 0
            else:
                p_m = min(1 - p + 0.05, 1.0)
                total += math.log(max(p_m, 1e-5)) * (1 - p_m) ** 2  # gamma_neg = 2
    expected = -total / 2 / 3
    got = AsymmetricLoss(gamma_neg=2, gamma_pos=0, clip=0.05)(x, y)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_multilabel_head_shapes_names_and_size():
    head = MultiLabelHead(150, d_encoder=256, hidden_dim=512, n_heads=8, d_ff=2048, dropout=0.1,
                          share_embedding=False)
    assert sum(p.numel() for p in head.parameters()) == 3_438_742
    names = {n for n, _ in head.named_parameters()}
    for n in ["proj_dec.weight", "cls_emb", "block.norm1.weight", "block.attn.qkv.weight", "block.attn.proj.bias",
              "block.mlp.fc1.weight", "block.mlp.fc2.weight", "norm.weight", "fc.W", "fc.b"]:
        assert n in names
    small = MultiLabelHead(7, d_encoder=16, hidden_dim=32, n_heads=2, d_ff=64, dropout=0.0, share_embedding=False)
    assert small(torch.randn(3, 16, 5)).shape == (3, 7)  # tokens [B, C, N]
    assert small(torch.randn(3, 16, 4, 4)).shape == (3, 7)  # a feature map


def test_multilabel_head_shared_embedding():
    head = MultiLabelHead(7, d_encoder=16, hidden_dim=32, n_heads=2, d_ff=64, dropout=0.0, share_embedding=True)
    assert not hasattr(head, "cls_emb")
    emb = torch.randn(7, 32, requires_grad=True)
    head(torch.randn(2, 16, 5), emb).sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="class_embedding"):
        head(torch.randn(2, 16, 5))
    with pytest.raises(ValueError, match="class_embedding"):
        head(torch.randn(2, 16, 5), torch.randn(7, 31))


def test_multilabel_head_learns_a_label_set():
    torch.manual_seed(0)
    head = MultiLabelHead(6, d_encoder=8, hidden_dim=32, n_heads=2, d_ff=64, dropout=0.0, share_embedding=False)
    tokens = torch.randn(4, 8, 5)
    target = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1], [0, 0, 0, 1, 1, 0], [1, 1, 0, 0, 0, 0]]).float()
    loss_fn = AsymmetricLoss()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = loss_fn(head(tokens), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    top2 = select_topk(head(tokens), 2)[:, :2]
    for b in range(4):
        assert set(top2[b].tolist()) == set(target[b].nonzero().flatten().tolist())


def test_select_topk_breaks_ties_by_lower_index():
    idx = select_topk(torch.tensor([[1.0, 2.0, 2.0, 0.0, 2.0]]), 2)
    assert idx.tolist() == [[1, 2, 5]]


def test_remap_targets_rejects_labels_outside_the_class_space():
    targets = [{"labels": torch.tensor([0, 6]), "masks": torch.zeros(2, 2, 2)}]
    with pytest.raises(ValueError, match="NUM_CLASSES"):
        remap_targets(targets, torch.tensor([[0, 1, 5]]), num_classes=5)
    # label K is "no object": it goes to the selection's last column
    no_object = [{"labels": torch.tensor([1, 5, 3]), "masks": torch.zeros(3, 2, 2)}]
    assert remap_targets(no_object, torch.tensor([[1, 0, 5]]), num_classes=5)[0]["labels"].tolist() == [0, 2]


def test_asymmetric_loss_focusing_weights_carry_gradient():
    x = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 1.5, -2.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    torch.autograd.gradcheck(lambda t: AsymmetricLoss()(t, y), (x,))
    (grad,) = torch.autograd.grad(AsymmetricLoss()(x, y), x)
    # d/dx of -log(p_m) * (1 - p_m)^2 / 6 for a negative with p_m = 1 - p + clip < 1 (both factors differentiated)
    p = torch.sigmoid(x.detach())
    p_m = 1 - p + 0.05
    dpm = -p * (1 - p)
    hand = -(dpm / p_m * (1 - p_m) ** 2 + torch.log(p_m) * 2 * (1 - p_m) * -dpm) / 6
    torch.testing.assert_close(grad[0, 1], hand[0, 1])
    torch.testing.assert_close(grad[1, 2], hand[1, 2])
    assert x.grad is None  # functional use, inputs untouched


def test_multilabel_head_matches_explicit_attention():
    head = MultiLabelHead(5, d_encoder=6, hidden_dim=16, n_heads=2, d_ff=32, dropout=0.1, share_embedding=False)
    head.eval()
    tokens = torch.randn(2, 6, 3)
    x = head.proj_dec(tokens.transpose(1, 2))
    x = torch.cat((x, head.cls_emb.expand(2, -1, -1)), 1)  # [B, N + K, D]
    blk = head.block
    h = blk.norm1(x)
    q, k, v = blk.attn.qkv(h).reshape(2, 8, 3, 2, 8).permute(2, 0, 3, 1, 4)
    attn = (q @ k.transpose(-2, -1) * 8 ** -0.5).softmax(-1)
    x = x + blk.attn.proj((attn @ v).transpose(1, 2).reshape(2, 8, 16))
    x = x + blk.mlp.fc2(torch.nn.functional.gelu(blk.mlp.fc1(blk.norm2(x))))
    x = head.norm(x)[:, -5:]
    expected = (head.fc.W * x).sum(-1) + head.fc.b
    torch.testing.assert_close(head(tokens), expected)
    assert head.fc.W.abs().max() <= 16 ** -0.5 and head.fc.b.abs().max() <= 16 ** -0.5


def test_multilabel_head_pools_feature_maps_and_checks_tokens():
    head = MultiLabelHead(4, d_encoder=8, hidden_dim=16, n_heads=2, d_ff=32, dropout=0.0, share_embedding=False,
                          downsample=2).eval()
    fmap = torch.randn(1, 8, 6, 6)
    pooled = torch.nn.functional.adaptive_avg_pool2d(fmap, 2).flatten(2)
    torch.testing.assert_close(head(fmap), head(pooled))
    with pytest.raises(ValueError, match=r"\[B, C, Q\]"):
        head(torch.randn(5, 2, 8))  # [Q, B, C] by mistake


def test_multilabel_head_from_config():
    from mask2former_rankseg.config import get_cfg

    cfg = get_cfg()
    cfg.MODEL.RANKSEG.HIDDEN_DIM = 128
    head = MultiLabelHead.from_config(cfg, num_classes=10, d_encoder=32)
    assert head.block.attn.heads == 2 and head.block.mlp.fc1.out_features == 512
    assert head.block.attn.attn_drop.p == 0.1 and head.proj_dec.in_features == 32 and head.fc.W.shape == (1, 10, 128)
    cfg.MODEL.RANKSEG.SHARE_EMBEDDING = True
    assert not hasattr(MultiLabelHead.from_config(cfg, 10, 32), "cls_emb")
