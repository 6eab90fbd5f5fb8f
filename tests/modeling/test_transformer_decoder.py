"""MultiScaleMaskedTransformerDecoder and MaskFormerHead: shapes, masked attention, cosine classifier, names."""

import pytest
import torch
import torch.nn.functional as F

from mask2former_rankseg.modeling.transformer_decoder import VideoMultiScaleMaskedTransformerDecoder
from mask2former_rankseg.modeling.transformer_decoder import mask2former_transformer_decoder as decoder_module
from mask2former_rankseg.modeling.transformer_decoder.mask2former_transformer_decoder import (
    MultiScaleMaskedTransformerDecoder,
    _attn_mask_from_logits,
    _make_attn_mask,
    _resize,
)


def _tiny(norm=False, pre_norm=False, in_channels=32):
    torch.manual_seed(0)
    return MultiScaleMaskedTransformerDecoder(
        in_channels, num_classes=7, hidden_dim=32, num_queries=5, nheads=2, dim_feedforward=64, dec_layers=3,
        pre_norm=pre_norm, mask_dim=16, enforce_input_project=False, norm=norm,
    )


def _inputs(channels=32):
    feats = [torch.randn(2, channels, 2, 3), torch.randn(2, channels, 4, 6), torch.randn(2, channels, 8, 12)]
    return feats, torch.randn(2, 16, 16, 24)


def test_output_structure():
    out = _tiny()(*_inputs())
    assert out["pred_logits"].shape == (2, 5, 8)
    assert out["pred_masks"].shape == (2, 5, 16, 24)
    assert len(out["aux_outputs"]) == 3  # learnable queries + the first two layers
    assert len(out["query_feature"]) == 3 and out["query_feature"][0].shape == (5, 2, 32)


def test_query_feature_is_the_raw_layer_output():
    model = _tiny()
    seen = []
    for ffn in model.transformer_ffn_layers:
        ffn.register_forward_hook(lambda m, i, o: seen.append(o))
    out = model(*_inputs())
    for a, b in zip(out["query_feature"], seen):
        assert torch.equal(a, b)


def test_cosine_classifier_by_hand():
    model = _tiny(norm=True)
    assert model.class_embed.bias is None
    out = model(*_inputs())
    logits = out["pred_logits"]
    assert logits.abs().max() <= 1.0 + 1e-6
    decoded = model.decoder_norm(out["query_feature"][-1]).transpose(0, 1)
    expected = F.normalize(decoded, dim=-1) @ F.normalize(model.class_embed.weight, dim=-1).T
    torch.testing.assert_close(logits, expected)


def test_attention_mask_rule():
    logits = torch.full((1, 2, 4, 4), -1.0)
    logits[0, 0, :2, :2] = 1.0  # query 0 keeps its top-left quarter; query 1 predicts nothing
    mask = _make_attn_mask(logits, (2, 2), num_heads=3)
    assert mask.shape == (3, 2, 4)
    assert mask[0, 0].tolist() == [False, True, True, True]  # attends to the top-left cell only
    assert mask[0, 1].tolist() == [False, False, False, False]  # a fully blocked row attends everywhere
    assert torch.equal(mask[0], mask[2])


def test_parameter_names_and_upstream_count():
    model = MultiScaleMaskedTransformerDecoder(
        256, num_classes=150, hidden_dim=256, num_queries=100, nheads=8, dim_feedforward=2048, dec_layers=9,
        pre_norm=False, mask_dim=256, enforce_input_project=False, norm=False,
    )
    # self/cross attention: in_proj 3*256*256+3*256, out_proj 256*256+256, norm 512 = 263,680 each, x 9 x 2
    # ffn: 256*2048+2048 + 2048*256+256 + 512 = 1,051,392, x 9; decoder_norm 512; query_feat/embed 2*100*256;
    # level_embed 3*256; class_embed 256*151+151; mask_embed 3*(256*256+256)
    expected = 2 * 9 * 263_680 + 9 * 1_051_392 + 512 + 51_200 + 768 + 38_807 + 197_376
    assert sum(p.numel() for p in model.parameters()) == expected == 14_497_431
    cosine = MultiScaleMaskedTransformerDecoder(
        256, num_classes=150, hidden_dim=256, num_queries=100, nheads=8, dim_feedforward=2048, dec_layers=9,
        pre_norm=False, mask_dim=256, enforce_input_project=False, norm=True,
    )
    assert sum(p.numel() for p in cosine.parameters()) == expected - 151
    names = {n for n, _ in model.named_parameters()}
    for n in ["transformer_cross_attention_layers.0.multihead_attn.in_proj_weight",
              "transformer_self_attention_layers.0.self_attn.in_proj_weight", "transformer_ffn_layers.0.linear1.weight",
              "mask_embed.layers.2.weight", "query_feat.weight", "query_embed.weight", "level_embed.weight",
              "class_embed.weight", "decoder_norm.weight"]:
        assert n in names, n


def test_old_static_query_checkpoints_load():
    model = _tiny()
    state = dict(model.state_dict())  # no version metadata, like an old checkpoint
    state["static_query.weight"] = state.pop("query_feat.weight") * 0 + 3.0
    model.load_state_dict(state)
    assert torch.all(model.query_feat.weight == 3.0)


def test_pre_norm_input_projection_and_gradients():
    model = _tiny(pre_norm=True, in_channels=12)
    assert len(model.input_proj[0].weight.shape) == 4
    out = model(*_inputs(12))
    (out["pred_logits"].sum() + out["pred_masks"].sum()).backward()
    assert model.query_feat.weight.grad is not None and model.query_feat.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("frames", [None, 3])
def test_mask_features_resized_first_give_the_same_attention_masks(frames):
    """bf16 inference makes the attention masks from mask features resized to the attended level: resizing and
    the product are both linear, so the logits equal the full-resolution ones resized (float64 rounding), for
    images [B, D, H, W] and clips [B, T, D, H, W], and so do the masks."""
    g = torch.Generator().manual_seed(0)
    embed = torch.randn(2, 5, 16, dtype=torch.float64, generator=g)
    shape = (2, 16, 16, 24) if frames is None else (2, frames, 16, 16, 24)
    feats = torch.randn(*shape, dtype=torch.float64, generator=g)
    logits_of = (MultiScaleMaskedTransformerDecoder if frames is None else VideoMultiScaleMaskedTransformerDecoder
                 )._mask_logits
    for size in [(2, 3), (4, 6), (8, 12), (5, 7)]:
        low = logits_of(embed, _resize(feats, size))
        torch.testing.assert_close(low, _resize(logits_of(embed, feats), size), rtol=1e-12, atol=1e-12)
        assert torch.equal(_attn_mask_from_logits(low, 2), _make_attn_mask(logits_of(embed, feats), size, 2))


def test_bf16_inference_skips_the_full_resolution_intermediate_masks(monkeypatch):
    """Under bfloat16 autocast in eval the intermediate predictions carry no masks and the final ones match the
    full-resolution path's (same bf16 arithmetic otherwise); training and float32 inference keep every mask."""
    model = _tiny().eval()
    feats, mask_features = _inputs()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(feats, mask_features)
        monkeypatch.setattr(decoder_module, "autocast_dtype", lambda device_type: None)  # the full-res path
        full = model(feats, mask_features)
    assert all(set(a) == {"pred_logits"} for a in low["aux_outputs"])
    assert all(a["pred_masks"].shape == (2, 5, 16, 24) for a in full["aux_outputs"])
    torch.testing.assert_close(low["pred_masks"], full["pred_masks"], rtol=0.02, atol=0.05)
    torch.testing.assert_close(low["pred_logits"], full["pred_logits"], rtol=0.02, atol=0.05)
    monkeypatch.undo()
    with torch.no_grad():
        assert all("pred_masks" in a for a in model(feats, mask_features)["aux_outputs"])  # float32 eval
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert all("pred_masks" in a for a in model.train()(feats, mask_features)["aux_outputs"])  # bf16 training
