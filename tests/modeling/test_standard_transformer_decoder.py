"""MaskFormer's DETR transformer and ``StandardTransformerDecoder``."""

import pytest
import torch
from torch import nn

from mask2former_rankseg.modeling.transformer_decoder import StandardTransformerDecoder
from mask2former_rankseg.modeling.transformer_decoder.transformer import (
    Transformer,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_layers_equal_torch_layers_without_positions(pre_norm):
    """With no positional encodings our layers compute what torch's own layers compute (same parameter names)."""
    torch.manual_seed(0)
    d, heads, ff = 16, 4, 32
    ours_dec = TransformerDecoderLayer(d, heads, ff, dropout=0.0, normalize_before=pre_norm).eval()
    ref_dec = nn.TransformerDecoderLayer(d, heads, ff, dropout=0.0, norm_first=pre_norm).eval()
    ours_dec.load_state_dict(ref_dec.state_dict())
    tgt, memory = torch.randn(5, 2, d), torch.randn(7, 2, d)
    torch.testing.assert_close(ours_dec(tgt, memory), ref_dec(tgt, memory))

    ours_enc = TransformerEncoderLayer(d, heads, ff, dropout=0.0, normalize_before=pre_norm).eval()
    ref_enc = nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, norm_first=pre_norm).eval()
    ours_enc.load_state_dict(ref_enc.state_dict())
    torch.testing.assert_close(ours_enc(memory), ref_enc(memory))


def test_positions_enter_queries_and_keys_only():
    """The cross-attention's query is the self-attention sub-layer's output plus query_pos (DETR's layout)."""
    torch.manual_seed(1)
    d = 8
    layer = TransformerDecoderLayer(d, 2, 16, dropout=0.0).eval()
    tgt, query_pos = torch.randn(3, 1, d), torch.randn(3, 1, d)
    q = tgt + query_pos
    expected_first = layer.norm1(tgt + layer.self_attn(q, q, value=tgt)[0])
    captured = {}
    original = layer.multihead_attn.forward

    def spy(*args, **kwargs):
        captured.update(kwargs)
        return original(*args, **kwargs)

    layer.multihead_attn.forward = spy
    memory, pos = torch.randn(4, 1, d), torch.randn(4, 1, d)
    layer(tgt, memory, pos=pos, query_pos=query_pos)
    torch.testing.assert_close(captured["query"], expected_first + query_pos)
    torch.testing.assert_close(captured["key"], memory + pos)
    torch.testing.assert_close(captured["value"], memory)


def _decoder(deep_supervision=True, norm=False, dec_layers=3, in_channels=24):
    torch.manual_seed(0)
    return StandardTransformerDecoder(
        in_channels, num_classes=5, hidden_dim=16, num_queries=4, nheads=2, dropout=0.0, dim_feedforward=32,
        enc_layers=0, dec_layers=dec_layers, pre_norm=False, deep_supervision=deep_supervision, mask_dim=8,
        enforce_input_project=False, norm=norm,
    ).eval()


def test_outputs_deep_supervision_and_query_features():
    decoder = _decoder()
    x, mask_features = torch.randn(2, 24, 3, 5), torch.randn(2, 8, 12, 20)
    out = decoder(x, mask_features)
    assert out["pred_logits"].shape == (2, 4, 6)
    assert out["pred_masks"].shape == (2, 4, 12, 20)
    assert len(out["aux_outputs"]) == 2 and len(out["query_feature"]) == 3
    assert all(q.shape == (4, 2, 16) for q in out["query_feature"])
    # every prediction is the heads applied to the shared decoder norm of that layer's raw output
    for raw, pred in zip(out["query_feature"], [*out["aux_outputs"], out]):
        normed = decoder.transformer.decoder.norm(raw).transpose(0, 1)  # [B, Q, C]
        torch.testing.assert_close(pred["pred_logits"], decoder.class_embed(normed))
        expected_masks = torch.einsum("bqc,bchw->bqhw", decoder.mask_embed(normed), mask_features)
        torch.testing.assert_close(pred["pred_masks"], expected_masks)


def test_without_deep_supervision_only_the_last_layer_predicts():
    decoder = _decoder(deep_supervision=False)
    out = decoder(torch.randn(1, 24, 2, 2), torch.randn(1, 8, 4, 4))
    assert out["aux_outputs"] == [] and len(out["query_feature"]) == 3
    with_aux = _decoder(deep_supervision=True)
    with_aux.load_state_dict(decoder.state_dict())
    x, mf = torch.randn(1, 24, 2, 2), torch.randn(1, 8, 4, 4)
    torch.testing.assert_close(decoder(x, mf)["pred_logits"], with_aux(x, mf)["pred_logits"])


def test_cosine_classifier_has_no_bias_and_bounded_logits():
    decoder = _decoder(norm=True)
    assert decoder.class_embed.bias is None
    logits = decoder(torch.randn(2, 24, 3, 3), torch.randn(2, 8, 6, 6))["pred_logits"]
    assert logits.abs().max() <= 1.0 + 1e-6


def test_upstream_names_and_input_projection():
    names = set(_decoder().state_dict())
    for name in ["query_embed.weight", "input_proj.weight", "class_embed.bias", "mask_embed.layers.2.weight",
                 "transformer.decoder.layers.2.multihead_attn.in_proj_weight", "transformer.decoder.norm.weight",
                 "transformer.decoder.layers.0.norm3.bias"]:
        assert name in names, name
    assert not any(n.startswith("transformer.encoder.layers") for n in names)  # ENC_LAYERS 0
    same_width = _decoder(in_channels=16)
    assert isinstance(same_width.input_proj, nn.Sequential) and len(same_width.input_proj) == 0


def test_padding_mask_hides_padded_memory():
    """Memory positions marked as padding do not influence the queries."""
    decoder = _decoder()
    x = torch.randn(1, 24, 2, 4)
    mask = torch.zeros(1, 2, 4, dtype=torch.bool)
    mask[..., 2:] = True
    changed = x.clone()
    changed[..., 2:] += 5.0
    mf = torch.randn(1, 8, 2, 4)
    a = decoder(x, mf, mask)["pred_logits"]
    b = decoder(changed, mf, mask)["pred_logits"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(decoder(x, mf)["pred_logits"], decoder(changed, mf)["pred_logits"])


def test_transformer_returns_every_layer_and_the_memory():
    t = Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=16,
                    return_intermediate_dec=True).eval()
    hs, memory, raw = t(torch.randn(2, 8, 3, 3), None, torch.randn(5, 8), torch.randn(2, 8, 3, 3))
    assert hs.shape == (2, 2, 5, 8) and memory.shape == (2, 8, 3, 3) and len(raw) == 2


def test_a_multi_scale_input_is_refused():
    with pytest.raises(ValueError, match="TRANSFORMER_IN_FEATURE"):
        _decoder()(torch.randn(2, 24, 9), torch.randn(2, 8, 4, 4))
