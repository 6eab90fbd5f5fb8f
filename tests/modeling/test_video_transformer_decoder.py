"""VideoMultiScaleMaskedTransformerDecoder and the 3-D sine position encoding: shapes, queries shared by a
clip's frames, masked attention over all frames, clips independent of each other, names equal the image's."""

import math

import pytest
import torch

from mask2former_rankseg.modeling.transformer_decoder import (
    MultiScaleMaskedTransformerDecoder,
    PositionEmbeddingSine3D,
    VideoMultiScaleMaskedTransformerDecoder,
)
from mask2former_rankseg.modeling.transformer_decoder.mask2former_transformer_decoder import _make_attn_mask

SIZES = dict(num_classes=7, hidden_dim=32, num_queries=5, nheads=2, dim_feedforward=64, dec_layers=3,
             pre_norm=False, mask_dim=16, enforce_input_project=False)


def _tiny(num_frames=3, **kwargs):
    torch.manual_seed(0)
    return VideoMultiScaleMaskedTransformerDecoder(32, num_frames=num_frames, **{**SIZES, **kwargs})


def _inputs(frames, channels=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(frames, channels, h, w, generator=g) for h, w in ((2, 3), (4, 6), (8, 12))]
    return feats, torch.randn(frames, 16, 16, 24, generator=g)


def test_output_shapes_for_a_batch_of_clips():
    model = _tiny().train()
    out = model(*_inputs(2 * 3))  # 2 clips of SAMPLING_FRAME_NUM = 3 frames
    assert out["pred_logits"].shape == (2, 5, 8)
    assert out["pred_masks"].shape == (2, 5, 3, 16, 24)
    assert len(out["aux_outputs"]) == 3
    assert all(a["pred_masks"].shape == (2, 5, 3, 16, 24) for a in out["aux_outputs"])
    assert len(out["query_feature"]) == 3 and out["query_feature"][2].shape == (5, 2, 32)
    # explicit clip length; in eval the default is one clip of all frames (upstream's inference)
    assert model(*_inputs(6), num_frames=2)["pred_masks"].shape == (3, 5, 2, 16, 24)
    evaluated = model.eval()(*_inputs(7))
    assert evaluated["pred_masks"].shape == (1, 5, 7, 16, 24)
    # inference keeps the auxiliary logits (RankSeg rescales them) but not the auxiliary masks [Q, T, H, W]
    assert len(evaluated["aux_outputs"]) == 3 and all(set(a) == {"pred_logits"} for a in evaluated["aux_outputs"])
    with pytest.raises(ValueError, match="7 frames do not form clips of 3"):
        model.train()(*_inputs(7))


def test_one_embedding_per_query_predicts_every_frame():
    model = _tiny().eval()
    feats, mask_features = _inputs(3)
    out = model(feats, mask_features)
    embed = model.mask_embed(model.decoder_norm(out["query_feature"][-1]).transpose(0, 1))  # [1, Q, D]
    for t in range(3):
        expected = torch.einsum("qc,chw->qhw", embed[0], mask_features[t])
        torch.testing.assert_close(out["pred_masks"][0, :, t], expected)


def test_queries_attend_over_all_frames_of_their_clip_only():
    model = _tiny(num_frames=2).train()
    feats, mask_features = _inputs(4)
    out = model(feats, mask_features)  # clips (0, 1) and (2, 3)
    changed = [f.clone() for f in feats]
    for f in changed:
        f[1] += 1.0  # frame 1 of clip 0 only
    moved = model(changed, mask_features)
    # frame 0 of clip 0 is predicted from queries that read frame 1 ...
    assert not torch.allclose(moved["pred_masks"][0, :, 0], out["pred_masks"][0, :, 0])
    assert not torch.allclose(moved["pred_logits"][0], out["pred_logits"][0])
    # ... and clip 1 is untouched: clips do not see each other
    torch.testing.assert_close(moved["pred_masks"][1], out["pred_masks"][1])
    torch.testing.assert_close(moved["pred_logits"][1], out["pred_logits"][1])
    # a clip decoded alone gives the same result as inside the batch
    alone = model([f[2:] for f in feats], mask_features[2:])
    torch.testing.assert_close(alone["pred_masks"][0], out["pred_masks"][1], atol=1e-5, rtol=1e-5)


def test_attention_mask_covers_every_frame_frame_major():
    logits = torch.full((1, 2, 2, 4, 4), -1.0)  # [B, Q, T, H, W]
    logits[0, 0, 1, :2, :2] = 1.0  # query 0: top-left quarter of frame 1 only; query 1: nothing anywhere
    mask = _make_attn_mask(logits, (2, 2), num_heads=3)
    assert mask.shape == (3, 2, 2 * 4)  # [B*heads, Q, T*h*w]
    assert mask[0, 0].tolist() == [True] * 4 + [False, True, True, True]
    assert mask[0, 1].tolist() == [False] * 8  # fully blocked over the whole clip -> attends everywhere


def test_parameters_equal_the_image_decoder():
    video = _tiny()
    image = MultiScaleMaskedTransformerDecoder(32, **SIZES)
    assert {k: v.shape for k, v in video.state_dict().items()} == {k: v.shape for k, v in image.state_dict().items()}
    # upstream's names, e.g. for checkpoints of Video Mask2Former
    for name in ("query_feat.weight", "query_embed.weight", "level_embed.weight", "class_embed.weight",
                 "transformer_cross_attention_layers.2.multihead_attn.in_proj_weight",
                 "transformer_self_attention_layers.0.norm.weight", "transformer_ffn_layers.1.linear2.bias",
                 "mask_embed.layers.2.weight", "decoder_norm.bias"):
        assert name in dict(video.named_parameters()), name
    assert _tiny(norm=True).class_embed.bias is None  # cosine classifier (USE_LAYERNORM)


def test_position_encoding_3d_by_hand():
    pe = PositionEmbeddingSine3D(num_pos_feats=2)  # 2 features per spatial axis, 4 for time
    pos = pe(torch.zeros(1, 3, 8, 1, 1))  # [B, T, C, H, W] -> [B, T, 4, H, W]
    assert pos.shape == (1, 3, 4, 1, 1)
    for t in range(3):
        z = t + 1.0  # 1-based frame index; y = x = 1; wavelengths 1, 1 (space) and 1, 1, 100, 100 (time)
        expected = [math.sin(1) + math.sin(z), math.cos(1) + math.cos(z),
                    math.sin(1) + math.sin(z / 100), math.cos(1) + math.cos(z / 100)]
        torch.testing.assert_close(pos[0, t, :, 0, 0], torch.tensor(expected))
    normalized = PositionEmbeddingSine3D(num_pos_feats=2, normalize=True)(torch.zeros(1, 4, 8, 1, 1))
    z_last = 2 * math.pi * 4 / (4 + 1e-6)  # the last frame is scaled to 2 pi
    y = 2 * math.pi / (1 + 1e-6)
    torch.testing.assert_close(normalized[0, 3, 1, 0, 0], torch.tensor(math.cos(y) + math.cos(z_last)))
    with pytest.raises(ValueError, match=r"\[B, T, C, H, W\]"):
        pe(torch.zeros(1, 8, 2, 2))
