"""MSDeformAttnPixelDecoder: shapes, upstream names and init, parameter count, config building, errors."""


import pytest
import torch
from helpers import REPO

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.layers import ShapeSpec
from mask2former_rankseg.modeling.pixel_decoder import MSDeformAttnPixelDecoder
from mask2former_rankseg.modeling.registry import PIXEL_DECODER_REGISTRY

R50_SHAPES = {f"res{i}": ShapeSpec(channels=c, stride=s)
              for i, c, s in zip([2, 3, 4, 5], [256, 512, 1024, 2048], [4, 8, 16, 32])}
R50_ARGS = dict(transformer_dropout=0.0, transformer_nheads=8, transformer_dim_feedforward=1024,
                transformer_enc_layers=6, conv_dim=256, mask_dim=256, norm="GN",
                transformer_in_features=["res3", "res4", "res5"], common_stride=4)

# Upstream's pixel decoder for the R50 ADE20K config, counted from its definition:
#   input_proj (res5, res4, res3): 1x1 conv (2048+1024+512)*256 + 3*256 bias, GroupNorm 3*(256+256)  =   919,808
#   one encoder layer: sampling_offsets 256*(8*3*4*2) + 192 = 49,344; attention_weights 256*96 + 96 = 24,672;
#     value_proj, output_proj 2*(256*256 + 256) = 131,584; linear1 256*1024 + 1024 = 263,168;
#     linear2 1024*256 + 256 = 262,400; norm1, norm2 2*(256+256) = 1,024                  -> 732,192
#   six encoder layers 6 * 732,192                                                               = 4,393,152
#   transformer.level_embed 3*256                                                                =       768
#   mask_features 1x1 conv 256*256 + 256                                                         =    65,792
#   one FPN level (log2(8) - log2(4) = 1), GN so no conv bias:
#     adapter_1 1x1 conv 256*256 + GN 512 = 66,048; layer_1 3x3 conv 256*256*9 + GN 512 = 590,336 =   656,384
#   pe_layer (sine) has no parameters.                                             total           = 6,035,904
R50_PIXEL_DECODER_PARAMS = 919_808 + 6 * 732_192 + 768 + 65_792 + 66_048 + 590_336


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_names_and_init_match_upstream():
    decoder = MSDeformAttnPixelDecoder(R50_SHAPES, **R50_ARGS)
    assert _num_params(decoder) == R50_PIXEL_DECODER_PARAMS == 6_035_904
    names = {n for n, _ in decoder.named_parameters()}
    assert len(names) == 117
    for n in ["input_proj.0.0.weight", "input_proj.0.0.bias", "input_proj.2.1.weight", "input_proj.2.1.bias",
              "transformer.level_embed",
              "transformer.encoder.layers.0.self_attn.sampling_offsets.weight",
              "transformer.encoder.layers.5.self_attn.attention_weights.bias",
              "transformer.encoder.layers.3.self_attn.value_proj.weight",
              "transformer.encoder.layers.3.self_attn.output_proj.bias",
              "transformer.encoder.layers.0.norm1.weight", "transformer.encoder.layers.0.linear1.weight",
              "transformer.encoder.layers.0.linear2.bias", "transformer.encoder.layers.0.norm2.weight",
              "mask_features.weight", "mask_features.bias", "adapter_1.weight", "adapter_1.norm.weight",
              "layer_1.weight", "layer_1.norm.bias"]:
        assert n in names, n
    assert "adapter_1.bias" not in names and "layer_1.bias" not in names  # GN -> no conv bias
    assert not [n for n in names if n.startswith(("lateral_convs", "output_convs", "pe_layer"))]
    # input_proj order: coarsest (res5, 2048 channels) first
    assert [p[0].in_channels for p in decoder.input_proj] == [2048, 1024, 512]
    assert decoder.transformer.level_embed.shape == (3, 256)
    # init: zero biases of input_proj / mask_features, zero attention-weight layers, level_embed ~ N(0, 1)
    assert all(not p[0].bias.any() for p in decoder.input_proj)
    assert not decoder.mask_features.bias.any()
    layer = decoder.transformer.encoder.layers[2]
    assert not layer.self_attn.attention_weights.weight.any()
    assert not layer.self_attn.sampling_offsets.weight.any()
    assert layer.self_attn.sampling_offsets.bias.abs().max() == 4.0  # n_points = 4
    assert 0.8 < decoder.transformer.level_embed.std() < 1.2


def _tiny_decoder(**over):
    shapes = {k: ShapeSpec(channels=c, stride=v.stride) for (k, v), c in zip(R50_SHAPES.items(), [8, 16, 32, 64])}
    args = dict(transformer_dropout=0.0, transformer_nheads=4, transformer_dim_feedforward=64,
                transformer_enc_layers=2, conv_dim=32, mask_dim=24, norm="GN",
                transformer_in_features=["res3", "res4", "res5"], common_stride=4)
    args.update(over)
    return shapes, MSDeformAttnPixelDecoder(shapes, **args)


def _features(shapes, batch, h=64, w=64):
    return {k: torch.randn(batch, v.channels, h // v.stride, w // v.stride) for k, v in shapes.items()}


def test_output_shapes_and_gradients():
    shapes, decoder = _tiny_decoder()
    feats = _features(shapes, batch=2, h=64, w=96)
    mask_features, encoder_features, multi_scale = decoder.forward_features(feats)
    assert mask_features.shape == (2, 24, 16, 24)
    assert encoder_features.shape == (2, 32, 2, 3)
    assert [tuple(m.shape) for m in multi_scale] == [(2, 32, 2, 3), (2, 32, 4, 6), (2, 32, 8, 12)]
    assert multi_scale[0] is encoder_features
    mask_features.sum().backward()
    # at init the query (src + pos + level_embed) reaches the output only through the zero-initialised
    # sampling_offsets / attention_weights weights, so level_embed's gradient is exactly zero, theirs is not
    assert decoder.transformer.level_embed.grad is not None and not decoder.transformer.level_embed.grad.any()
    for layer in decoder.transformer.encoder.layers:
        assert layer.self_attn.sampling_offsets.weight.grad.abs().sum() > 0
        assert layer.self_attn.attention_weights.weight.grad.abs().sum() > 0
    assert decoder.adapter_1.weight.grad.abs().sum() > 0


def test_samples_are_independent_within_a_batch():
    shapes, decoder = _tiny_decoder()
    decoder.eval()
    feats = _features(shapes, batch=3)
    with torch.no_grad():
        batched = decoder(feats)
        single = decoder({k: v[1:2] for k, v in feats.items()})
    torch.testing.assert_close(batched[0][1:2], single[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(batched[2], single[2]):
        torch.testing.assert_close(a[1:2], b, atol=1e-5, rtol=1e-5)


def test_from_config_with_upstream_ade20k_r50_yaml():
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/ade20k/semantic-segmentation/maskformer2_R50_bs16_160k.yaml"))
    assert cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME == "MSDeformAttnPixelDecoder"
    cls = PIXEL_DECODER_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME)
    assert cls is MSDeformAttnPixelDecoder
    decoder = cls.from_config(cfg, R50_SHAPES)
    assert _num_params(decoder) == R50_PIXEL_DECODER_PARAMS
    layer = decoder.transformer.encoder.layers[0]
    assert len(decoder.transformer.encoder.layers) == 6
    assert layer.linear1.out_features == 1024 and layer.dropout1.p == 0.0 and layer.self_attn.n_heads == 8
    assert decoder.transformer_in_features == ["res3", "res4", "res5"] and decoder.common_stride == 4

    # IN_FEATURES restricts the decoder's inputs; the keys map one to one
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.SEM_SEG_HEAD.IN_FEATURES", "['res2', 'res3', 'res4', 'res5']",
                         "MODEL.SEM_SEG_HEAD.CONVS_DIM", 64, "MODEL.SEM_SEG_HEAD.MASK_DIM", 48,
                         "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1, "MODEL.MASK_FORMER.NHEADS", 4,
                         "MODEL.MASK_FORMER.DROPOUT", 0.2, "MODEL.SEM_SEG_HEAD.NORM", "",
                         "MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES", "['res4', 'res5']"])
    extra = dict(R50_SHAPES, res6=ShapeSpec(channels=8, stride=64))
    decoder = MSDeformAttnPixelDecoder.from_config(cfg, extra)
    assert decoder.in_features == ["res2", "res3", "res4", "res5"]
    assert decoder.transformer_in_features == ["res4", "res5"] and decoder.num_fpn_levels == 2
    assert decoder.mask_features.out_channels == 48 and decoder.adapter_2.bias is not None  # norm "" -> bias
    assert decoder.transformer.encoder.layers[0].dropout1.p == 0.2


def test_errors():
    with pytest.raises(ValueError, match="CONVS_DIM=40 must be a multiple of 32"):
        _tiny_decoder(conv_dim=40)
    with pytest.raises(ValueError, match=r"\['res6'\] are not among"):
        _tiny_decoder(transformer_in_features=["res5", "res6"])
    with pytest.raises(ValueError, match="divisible"):
        _tiny_decoder(transformer_nheads=5)
    shapes, decoder = _tiny_decoder()
    feats = _features(shapes, batch=1)
    del feats["res2"]
    with pytest.raises(KeyError, match="res2"):
        decoder.forward_features(feats)
