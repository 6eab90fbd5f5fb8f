"""MSDeformAttnPixelDecoder: shapes, upstream names, parameter count, config building."""

import torch

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.layers import ShapeSpec
from mask2former_rankseg.modeling.pixel_decoder import MSDeformAttnPixelDecoder

R50_SHAPES = {f"res{i}": ShapeSpec(channels=c, stride=s)
              for i, c, s in zip([2, 3, 4, 5], [256, 512, 1024, 2048], [4, 8, 16, 32])}


def _upstream_r50_decoder():
    return MSDeformAttnPixelDecoder(
        R50_SHAPES, transformer_dropout=0.0, transformer_nheads=8, transformer_dim_feedforward=1024,
        transformer_enc_layers=6, conv_dim=256, mask_dim=256, norm="GN",
        transformer_in_features=["res3", "res4", "res5"], common_stride=4,
    )


def test_parameter_count_and_names_match_upstream():
    decoder = _upstream_r50_decoder()
    # input_proj: (2048+1024+512)*256 conv weights + 3*256 bias + 3*512 GroupNorm = 919,808
    # encoder layer: sampling_offsets 256*192+192, attention_weights 256*96+96, value/output_proj 2*(256*256+256),
    #   norm1/norm2 2*512, linear1 256*1024+1024, linear2 1024*256+256 = 732,192; x 6 = 4,393,152
    # level_embed 3*256 = 768; mask_features 256*256+256 = 65,792
    # adapter_1 256*256 + 512 (GN, no bias) = 66,048; layer_1 256*256*9 + 512 = 590,336
    expected = 919_808 + 4_393_152 + 768 + 65_792 + 66_048 + 590_336
    assert sum(p.numel() for p in decoder.parameters()) == expected == 6_035_904
    names = {n for n, _ in decoder.named_parameters()}
    for n in ["input_proj.0.0.weight", "input_proj.2.1.bias", "transformer.level_embed",
              "transformer.encoder.layers.5.self_attn.sampling_offsets.weight",
              "transformer.encoder.layers.0.linear2.bias", "transformer.encoder.layers.0.norm2.weight",
              "mask_features.weight", "adapter_1.weight", "adapter_1.norm.weight", "layer_1.norm.bias"]:
        assert n in names, n


def test_output_shapes():
    shapes = {k: ShapeSpec(channels=c, stride=v.stride) for (k, v), c in zip(R50_SHAPES.items(), [8, 16, 32, 64])}
    decoder = MSDeformAttnPixelDecoder(
        shapes, transformer_dropout=0.0, transformer_nheads=4, transformer_dim_feedforward=64,
        transformer_enc_layers=2, conv_dim=32, mask_dim=24, norm="GN",
        transformer_in_features=["res3", "res4", "res5"], common_stride=4,
    )
    feats = {k: torch.randn(2, v.channels, 64 // v.stride, 96 // v.stride) for k, v in shapes.items()}
    mask_features, encoder_features, multi_scale = decoder.forward_features(feats)
    assert mask_features.shape == (2, 24, 16, 24)
    assert encoder_features.shape == (2, 32, 2, 3)
    assert [tuple(m.shape[-2:]) for m in multi_scale] == [(2, 3), (4, 6), (8, 12)]
    mask_features.sum().backward()
    assert decoder.transformer.level_embed.grad is not None


def test_from_config():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.SEM_SEG_HEAD.IN_FEATURES", "['res2', 'res3', 'res4', 'res5']",
                         "MODEL.SEM_SEG_HEAD.CONVS_DIM", 256, "MODEL.SEM_SEG_HEAD.MASK_DIM", 256,
                         "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 6, "MODEL.MASK_FORMER.DROPOUT", 0.0])
    decoder = MSDeformAttnPixelDecoder.from_config(cfg, R50_SHAPES)
    assert sum(p.numel() for p in decoder.parameters()) == 6_035_904
