"""MaskFormer's pixel decoders: ``BasePixelDecoder`` (FPN) and ``TransformerEncoderPixelDecoder``."""

import torch
from torch.nn import functional as F

from mask2former_rankseg.layers import ShapeSpec
from mask2former_rankseg.modeling.pixel_decoder import BasePixelDecoder, TransformerEncoderPixelDecoder

SHAPES = {"res2": ShapeSpec(channels=8, stride=4), "res3": ShapeSpec(channels=12, stride=8),
          "res4": ShapeSpec(channels=16, stride=16), "res5": ShapeSpec(channels=20, stride=32)}


def _features(batch=2, size=64):
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(batch, v.channels, size // v.stride, size // v.stride, generator=g)
            for k, v in SHAPES.items()}


def test_fpn_names_and_top_down_pass():
    torch.manual_seed(0)
    decoder = BasePixelDecoder(SHAPES, conv_dim=32, mask_dim=16, norm="GN").eval()
    names = {n.split(".")[0] for n in decoder.state_dict()}
    assert names == {"adapter_1", "adapter_2", "adapter_3", "layer_1", "layer_2", "layer_3", "layer_4",
                     "mask_features"}
    assert decoder.layer_4.weight.shape == (32, 20, 3, 3) and decoder.layer_4.bias is None  # GN: no bias
    assert decoder.mask_features.weight.shape == (16, 32, 3, 3)
    f = _features()
    mask_features, encoder_features, multi_scale = decoder.forward_features(f)
    # the FPN written out: coarsest level through its 3x3 conv, then lateral + nearest-upsampled top-down
    y = decoder.layer_4(f["res5"])
    expected = [y]
    for level, adapter, layer in (("res4", decoder.adapter_3, decoder.layer_3),
                                  ("res3", decoder.adapter_2, decoder.layer_2),
                                  ("res2", decoder.adapter_1, decoder.layer_1)):
        lateral = adapter(f[level])
        y = layer(lateral + F.interpolate(y, size=lateral.shape[-2:], mode="nearest"))
        expected.append(y)
    torch.testing.assert_close(mask_features, decoder.mask_features(y))
    assert encoder_features is None
    assert [t.shape[-1] for t in multi_scale] == [2, 4, 8]
    for got, want in zip(multi_scale, expected[:3]):
        torch.testing.assert_close(got, want)


def test_transformer_encoder_pixel_decoder():
    torch.manual_seed(0)
    decoder = TransformerEncoderPixelDecoder(
        SHAPES, transformer_dropout=0.0, transformer_nheads=4, transformer_dim_feedforward=64,
        transformer_enc_layers=2, transformer_pre_norm=False, conv_dim=32, mask_dim=16, norm="GN",
    ).eval()
    assert decoder.layer_4.weight.shape == (32, 32, 3, 3)  # reads the encoder's conv_dim channels
    assert decoder.input_proj.weight.shape == (32, 20, 1, 1)
    names = set(decoder.state_dict())
    assert "transformer.encoder.layers.1.self_attn.in_proj_weight" in names
    assert not any(n.startswith("transformer.encoder.norm") for n in names)  # post-norm: no final LayerNorm
    f = _features()
    mask_features, encoder_features, multi_scale = decoder.forward_features(f)
    assert mask_features.shape == (2, 16, 16, 16)
    assert encoder_features.shape == (2, 32, 2, 2)
    expected = decoder.transformer(decoder.input_proj(f["res5"]), None, decoder.pe_layer(f["res5"]))
    torch.testing.assert_close(encoder_features, expected)
    torch.testing.assert_close(multi_scale[0], decoder.layer_4(expected))
    # zero encoder layers: the encoder is the identity on the projected map
    plain = TransformerEncoderPixelDecoder(
        SHAPES, transformer_dropout=0.0, transformer_nheads=4, transformer_dim_feedforward=64,
        transformer_enc_layers=0, transformer_pre_norm=False, conv_dim=32, mask_dim=16, norm="GN",
    ).eval()
    torch.testing.assert_close(plain.forward_features(f)[1], plain.input_proj(f["res5"]))
