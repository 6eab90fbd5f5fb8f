"""VideoMaskFormer end to end: upstream's video configs (parameter counts, names, inference), clip-level RankSeg
targets, training on synthetic clips of moving squares, windowed inference, the oracle, the output format."""

from pathlib import Path
from typing import Dict, List, Sequence

import pytest
import torch
from helpers import REPO

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.modeling.meta_arch.video_maskformer import clip_tracks
from mask2former_rankseg.structures import Instances

YTVIS_R50 = REPO / "configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml"
YTVIS_RANKSEG = REPO / "configs/youtubevis_2019/video_maskformer2_R101_bs16_8ep-rankseg.yaml"
VSPW_RANKSEG = REPO / "configs/vspw/video_maskformer2_R101_bs16_8ep-rankseg.yaml"
VSPW_GT = REPO / "configs/vspw/video_maskformer2_R101_bs16_8ep-gt.yaml"
VIDEO_CONFIGS = sorted(p for tree in ("youtubevis_2019", "vspw") for p in (REPO / "configs" / tree).glob("**/*.yaml")
                       if not p.name.startswith("Base"))

def _cfg(path: Path, tiny_opts: List[str], *extra):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list([*tiny_opts, *[str(e) for e in extra]])
    return cfg


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def moving_squares(num_frames: int, classes: Sequence[int] = (3, 7), size: int = 48, absent: Dict = None,
                   video_id: int = 1, with_gt: bool = True) -> Dict:
    """A clip in the video mapper's output format: squares of ``classes`` moving across a dark frame.

    Track n has colour channel n % 3 and moves right (even n) or left (odd n). ``absent`` maps a track to the
    frames where it is not annotated (gt_ids -1, all-zero mask).
    """
    absent = absent or {}
    frames, instances = [], []
    side = size // 3
    for t in range(num_frames):
        image = torch.full((3, size, size), 20, dtype=torch.uint8)
        masks = torch.zeros(len(classes), size, size, dtype=torch.bool)
        ids = torch.arange(len(classes))
        for n in range(len(classes)):
            if t in absent.get(n, ()):
                ids[n] = -1
                continue
            x = (2 + 3 * t) % (size - side) if n % 2 == 0 else (size - side - 2 - 3 * t) % (size - side)
            y = (n * side) % (size - side)
            masks[n, y: y + side, x: x + side] = True
            image[n % 3][masks[n]] = 230
        frames.append(image)
        instances.append(Instances((size, size), gt_ids=ids, gt_classes=torch.tensor(list(classes)), gt_masks=masks))
    clip = {"image": frames, "height": size, "width": size, "video_id": video_id, "length": num_frames,
            "file_names": [f"{video_id}/{t:05d}.jpg" for t in range(num_frames)]}
    if with_gt:
        clip["instances"] = instances
    return clip


# -- upstream's configs ----------------------------------------------------------------------------------------

def test_parameter_counts_and_names_match_upstream():
    expected = {YTVIS_RANKSEG: 66_225_914, VSPW_RANKSEG: 66_333_686}  # upstream's R101 RankSeg video models
    for path, count in expected.items():
        cfg = get_cfg()
        cfg.merge_from_file(str(path))
        with torch.device("meta"):  # shapes only
            model = build_model(cfg)
        assert _num_params(model) == count, path
        names = model.state_dict()
        for name in ("backbone.res5.2.conv3.weight", "backbone.res4.22.conv2.norm.running_var",  # R101: 23 blocks
                     "sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight",
                     "sem_seg_head.pixel_decoder.mask_features.weight",
                     "sem_seg_head.predictor.query_feat.weight",
                     "sem_seg_head.predictor.transformer_cross_attention_layers.8.multihead_attn.in_proj_weight",
                     "sem_seg_head.predictor.class_embed.weight", "ml_head.cls_emb", "ml_head.fc.W",
                     "ml_head.block.attn.qkv.weight", "ml_norm.weight", "ml_norm.bias"):
            assert name in names, name
        assert "sem_seg_head.predictor.class_embed.bias" not in names  # USE_LAYERNORM: cosine classifier
        assert names["ml_norm.weight"].shape == (cfg.MODEL.RANKSEG.TOPK + 1,)
        assert "criterion.empty_weight" in names


@pytest.mark.parametrize("path", VIDEO_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_upstream_video_config_builds_and_runs_inference(path, tiny_video_model_opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    with torch.device("meta"):
        full = build_model(cfg)
    assert type(full).__name__ == "VideoMaskFormer"
    assert type(full.sem_seg_head.predictor).__name__ == "VideoMultiScaleMaskedTransformerDecoder"
    assert (full.ml_head is not None) == ("-rankseg" in path.name)
    assert full.ml_use_gt == ("-gt" in path.name)
    assert full.semantic_on == ("vspw" in str(path))
    num_classes = 124 if "vspw" in str(path) else 40
    assert full.num_classes == num_classes and full.num_frames == 2

    model = build_model(_cfg(path, tiny_video_model_opts)).eval()
    with torch.no_grad():
        out, = model([moving_squares(2, classes=(5, 30), size=32, with_gt=full.ml_use_gt)])
    assert len(out["pred_scores"]) == 10 and all(0 <= c < num_classes for c in out["pred_labels"])
    assert all(m.shape == (2, 32, 32) for m in out["pred_masks"])
    assert ("multilabel" in out) == (full.ml_head is not None)
    assert ("sem_seg_labels" in out) == full.semantic_on


# -- RankSeg on clips ------------------------------------------------------------------------------------------

def test_clip_level_targets_and_present_categories(tiny_video_model_opts):
    """Track 0 (class 5) is in frames 0-1, track 1 (class 2) only in frame 2, track 2 (class 7) in none: the
    clip's targets are tracks 0 and 1 with masks over all 3 frames, and its categories {2, 5}."""
    clip = moving_squares(3, classes=(5, 2, 7), absent={0: {2}, 1: {0, 1}, 2: {0, 1, 2}})
    labels, valid = clip_tracks(clip)
    assert labels.tolist() == [5, 2] and valid.tolist() == [True, True, False]

    model = build_model(_cfg(YTVIS_RANKSEG, tiny_video_model_opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 12,
                             "MODEL.RANKSEG.TOPK", 12)).train()
    targets = model.prepare_targets([clip], (64, 64))[0]
    assert targets["labels"].tolist() == [5, 2]
    assert targets["masks"].shape == (2, 3, 64, 64)  # [N, T, Hpad, Wpad]
    assert targets["masks"][0, :2].sum((1, 2)).tolist() == [256, 256] and targets["masks"][0, 2].sum() == 0
    assert targets["masks"][1, :2].sum() == 0 and targets["masks"][1, 2].sum() == 256
    assert targets["masks"][:, :, 48:].sum() == 0 and targets["masks"][:, :, :, 48:].sum() == 0  # padding

    seen = []
    model.ml_loss.register_forward_hook(lambda module, inputs, output: seen.append(inputs[1]))
    losses = model([clip, moving_squares(3, classes=(1,))])
    present = seen[0]
    assert present.shape == (2, 12)  # one multi-label target per clip
    assert present[0].nonzero().flatten().tolist() == [2, 5] and present[1].nonzero().flatten().tolist() == [1]
    assert torch.isfinite(losses["loss_ml"]) and losses["loss_ml"] > 0


def test_upstreams_last_frame_track_classes_behind_a_key(tiny_video_model_opts):
    """MODEL.MASK_FORMER.TRACK_CLASS_FROM_LAST_FRAME: a track absent from the clip's last frame is trained as "no
    object" (label K, the ranked axis' last column) and left out of the multi-label target, as upstream's
    prepare_targets does; by default it keeps its category."""
    clip = moving_squares(3, classes=(5, 2, 7), absent={0: {2}, 2: {0, 1, 2}})  # track 0 absent from frame 2
    k = 12
    default = build_model(_cfg(YTVIS_RANKSEG, tiny_video_model_opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", k,
                               "MODEL.RANKSEG.TOPK", k)).train()
    assert default.prepare_targets([clip], (64, 64))[0]["labels"].tolist() == [5, 2]
    upstream = build_model(_cfg(YTVIS_RANKSEG, tiny_video_model_opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", k,
                                "MODEL.RANKSEG.TOPK", 4, "MODEL.MASK_FORMER.TRACK_CLASS_FROM_LAST_FRAME", True)).train()
    targets = upstream.prepare_targets([clip], (64, 64))[0]
    assert targets["labels"].tolist() == [k, 2]  # track 0 is "no object"; its masks are still trained
    assert targets["masks"][0, :2].sum((1, 2)).tolist() == [256, 256]
    seen = {}
    upstream.ml_loss.register_forward_hook(lambda module, inputs, output: seen.setdefault("present", inputs[1]))
    forward = upstream.criterion.forward
    upstream.criterion.forward = lambda outputs, targets: (seen.setdefault("targets", targets), forward(outputs,
                                                                                                       targets))[1]
    losses = upstream([clip])
    assert seen["present"][0].nonzero().flatten().tolist() == [2]  # not 5: left out of the multi-label target
    ranked = seen["targets"][0]["labels"].tolist()
    assert 4 in ranked  # "no object" is the ranked axis' last column (TOPK 4)
    assert all(bool(torch.isfinite(v).all()) for v in losses.values())


def test_rankseg_selects_per_clip_and_remaps_clip_targets(tiny_video_model_opts):
    model = build_model(_cfg(YTVIS_RANKSEG, tiny_video_model_opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 12,
                             "MODEL.RANKSEG.TOPK", 3)).train()
    seen = {}
    forward = model.criterion.forward

    def recording(outputs, targets):
        seen["logits"], seen["targets"] = outputs["pred_logits"], targets
        return forward(outputs, targets)

    model.criterion.forward = recording
    ranked = {}
    head = model.ml_head.forward
    model.ml_head.forward = lambda *a: ranked.setdefault("logits", head(*a))
    model([moving_squares(2, classes=(0, 4, 9, 11)), moving_squares(2, classes=(6,))])
    assert seen["logits"].shape[-1] == 4  # top-3 + no object
    order = ranked["logits"].argsort(dim=1, descending=True, stable=True)[:, :3]
    for clip, classes, target in zip(range(2), ((0, 4, 9, 11), (6,)), seen["targets"]):
        rank = {int(c): r for r, c in enumerate(order[clip])}
        expected = [rank[c] for c in classes if c in rank]  # ground truth outside the clip's top-3 is dropped
        assert target["labels"].tolist() == expected
        assert target["masks"].shape == (len(expected), 2, 64, 64)


def test_oracle_keeps_only_the_clips_categories(tiny_video_model_opts):
    model = build_model(_cfg(VSPW_GT, tiny_video_model_opts)).eval()
    clip = moving_squares(3, classes=(17, 90), absent={1: {0, 1, 2}})  # class 90 is never in the clip
    with torch.no_grad():
        out, = model([clip])
    # the top-10 always holds 10 (query, class) pairs; all but class 17 have probability ~e^-100
    assert {c for c, s in zip(out["pred_labels"], out["pred_scores"]) if s > 1e-20} == {17}
    assert sum(c == 17 for c in out["pred_labels"]) == model.num_queries  # one per query
    assert set(out["sem_seg_labels"].unique().tolist()) == {17}
    with pytest.raises(ValueError, match="USE_GT"), torch.no_grad():
        model([moving_squares(3, with_gt=False)])


# -- training --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [YTVIS_R50, YTVIS_RANKSEG])
def test_training_steps_on_moving_squares_lower_the_loss(path, tiny_video_model_opts):
    model = build_model(_cfg(path, tiny_video_model_opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 12,
                             "MODEL.RANKSEG.TOPK", 12)).train()
    batch = [moving_squares(2, classes=(3, 7), size=32), moving_squares(2, classes=(1,), size=32, video_id=2)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals: List[float] = []
    for _ in range(6):
        losses = model(batch)
        assert ("loss_ml" in losses) == (model.ml_head is not None)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(torch.isfinite(torch.tensor(totals)))
    assert totals[-1] < 0.85 * totals[0], totals


# -- inference -------------------------------------------------------------------------------------------------

def test_windowed_inference_equals_one_pass_and_bounds_the_backbone_batch(tiny_video_model_opts):
    """A 7-frame video in windows of 3 frames: the backbone never sees more than 3 frames, and the results equal
    those of one pass over all frames (the transformer decoder sees all 7 in both)."""
    model = build_model(_cfg(VSPW_RANKSEG, tiny_video_model_opts, "MODEL.MASK_FORMER.TEST.WINDOW_SIZE", 3)).eval()
    assert model.window_size == 3
    video = moving_squares(7, classes=(4, 50, 101), with_gt=False)
    batches = []
    model.backbone.register_forward_hook(lambda module, inputs, output: batches.append(inputs[0].shape[0]))
    with torch.no_grad():
        windowed, = model([video])
        assert batches == [3, 3, 1]
        model.window_size = 0
        whole, = model([video])
        assert batches[3:] == [7]
        out_windowed, _ = model._decode(video["image"], 7, window=3)
        out_whole, _ = model._decode(video["image"], 7, window=0)
    torch.testing.assert_close(out_windowed["pred_masks"], out_whole["pred_masks"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out_windowed["pred_logits"], out_whole["pred_logits"], atol=1e-4, rtol=1e-4)
    assert windowed["pred_labels"] == whole["pred_labels"]
    torch.testing.assert_close(torch.tensor(windowed["pred_scores"]), torch.tensor(whole["pred_scores"]))
    torch.testing.assert_close(windowed["multilabel"]["scores"], whole["multilabel"]["scores"])
    for a, b in zip(windowed["pred_masks"], whole["pred_masks"]):
        assert (a != b).float().mean() < 1e-3  # equal up to pixels whose logit is within rounding of 0
    assert (windowed["sem_seg_labels"] != whole["sem_seg_labels"]).float().mean() < 1e-3


def test_output_format_of_the_video_contract(tiny_video_model_opts):
    """Frames are 48x48 network input of a 96x72 video: results come at the video's size, on the CPU."""
    model = build_model(_cfg(VSPW_RANKSEG, tiny_video_model_opts, "MODEL.RANKSEG.TOPK", 20)).eval()
    video = moving_squares(4, with_gt=False)
    video["height"], video["width"] = 96, 72
    with torch.no_grad():
        outputs = model([video, moving_squares(2, with_gt=False, video_id=2)])
    assert len(outputs) == 2
    out = outputs[0]
    assert out["image_size"] == (96, 72)
    assert len(out["pred_scores"]) == len(out["pred_labels"]) == len(out["pred_masks"]) == 10
    assert all(isinstance(s, float) for s in out["pred_scores"]) and out["pred_scores"] == sorted(
        out["pred_scores"], reverse=True)
    assert all(isinstance(c, int) for c in out["pred_labels"])
    assert all(m.dtype == torch.bool and m.shape == (4, 96, 72) and m.device.type == "cpu" for m in out["pred_masks"])
    assert out["multilabel"]["scores"].shape == (124,) and out["multilabel"]["topk"].shape == (20,)
    assert set(out["pred_labels"]) <= set(out["multilabel"]["topk"].tolist())  # RankSeg scores only the top-20
    assert out["sem_seg_labels"].shape == (4, 96, 72) and out["sem_seg_labels"].dtype == torch.int64
    assert outputs[1]["pred_masks"][0].shape == (2, 48, 48)


def test_bad_videos_are_clear_errors(tiny_video_model_opts):
    model = build_model(_cfg(YTVIS_R50, tiny_video_model_opts))
    video = moving_squares(3, with_gt=False, video_id=12)
    video["image"][2] = video["image"][2][:, :40]
    with pytest.raises(ValueError, match=r"Video 12: frame 2 has shape \(3, 40, 48\)"), torch.no_grad():
        model.eval()([video])
    with pytest.raises(ValueError, match="Video 5 has no frames"), torch.no_grad():
        model([{"image": [], "video_id": 5}])
    with pytest.raises(ValueError, match="different lengths"):
        model.train()([moving_squares(2), moving_squares(3)])
    with pytest.raises(ValueError, match="clip 1 has no frames"):
        model([moving_squares(0)])
    clip = moving_squares(2)
    clip["instances"] = clip["instances"][:1]
    with pytest.raises(ValueError, match="1 frames of instances for 2 images"):
        model([clip])
