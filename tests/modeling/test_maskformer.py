"""End-to-end tests of the MaskFormer meta-architecture with and without RankSeg."""

from pathlib import Path

import pytest
import torch
from helpers import REPO

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.structures import Instances

ADE_R50 = REPO / "configs/ade20k/semantic-segmentation/maskformer2_R50_bs16_160k.yaml"
SYNTHETIC = REPO / "configs/synthetic/maskformer2_R18_synthetic.yaml"
SYNTHETIC_RANKSEG = REPO / "configs/synthetic/maskformer2_R18_synthetic-rankseg.yaml"
MASKFORMER = REPO / "configs/synthetic/maskformer_R18_synthetic_864.yaml"  # MaskFormer: DETR decoder, focal loss
MASKFORMER_RANKSEG = REPO / "configs/synthetic/maskformer_R18_synthetic_864-rankseg.yaml"


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _tiny_cfg(path: Path, *opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(
        ["MODEL.SEM_SEG_HEAD.NUM_CLASSES", 12, "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 64,
         "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", 6, "MODEL.RANKSEG.TOPK", 5, *opts]
    )
    return cfg


def _batch(num_classes: int, size: int = 64, with_gt: bool = True):
    g = torch.Generator().manual_seed(0)
    inputs = []
    for classes in ([1, 4], [7, 2, 9]):
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
        item = {"image": image, "height": size, "width": size}
        if with_gt:
            masks = torch.zeros(len(classes), size, size, dtype=torch.bool)
            for i in range(len(classes)):
                masks[i, :, i * size // len(classes): (i + 1) * size // len(classes)] = True
            item["instances"] = Instances((size, size), gt_classes=torch.tensor(classes), gt_masks=masks)
        inputs.append(item)
    return inputs


@pytest.mark.slow
def test_parameter_count_matches_upstream_r50():
    cfg = get_cfg()
    cfg.merge_from_file(str(ADE_R50))
    assert _num_params(build_model(cfg)) == 43_988_247
    cfg.merge_from_list(["MODEL.RANKSEG.FLAG", True, "MODEL.RANKSEG.TOPK", 150,
                         "MODEL.SEM_SEG_HEAD.USE_LAYERNORM", True])
    model = build_model(cfg)
    assert _num_params(model) == 47_427_140
    names = {n for n, _ in model.named_parameters()}
    for name in [
        "backbone.res2.0.conv1.weight",
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.sampling_offsets.weight",
        "sem_seg_head.pixel_decoder.mask_features.weight",
        "sem_seg_head.predictor.class_embed.weight",
        "sem_seg_head.predictor.transformer_cross_attention_layers.8.multihead_attn.in_proj_weight",
        "ml_head.fc.W",
        "ml_head.cls_emb",
        "ml_norm.weight",
    ]:
        assert name in names, name
    assert "sem_seg_head.predictor.class_embed.bias" not in names


@pytest.mark.parametrize("config", [SYNTHETIC, SYNTHETIC_RANKSEG, MASKFORMER, MASKFORMER_RANKSEG])
def test_inference_without_ground_truth(config):
    cfg = _tiny_cfg(config)
    model = build_model(cfg).eval()
    with torch.no_grad():
        outputs = model(_batch(12, size=48, with_gt=False))
    assert len(outputs) == 2
    for out in outputs:
        assert out["sem_seg"].shape == (12, 48, 48)
        assert torch.isfinite(out["sem_seg"]).all()
        if cfg.MODEL.RANKSEG.FLAG:
            assert out["multilabel"]["scores"].shape == (12,)
            topk = out["multilabel"]["topk"]
            assert topk.shape == (cfg.MODEL.RANKSEG.TOPK,)
            # the selected categories are the best-scored ones, in order
            expected = out["multilabel"]["scores"].argsort(descending=True)[: cfg.MODEL.RANKSEG.TOPK]
            assert set(topk.tolist()) == set(expected.tolist())
        else:
            assert "multilabel" not in out


def test_rankseg_inference_scores_only_selected_categories():
    cfg = _tiny_cfg(SYNTHETIC_RANKSEG, "MODEL.RANKSEG.TOPK", 3)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model(_batch(12, size=32, with_gt=False))[0]
    per_class_max = out["sem_seg"].flatten(1).max(dim=1).values
    selected = set(out["multilabel"]["topk"].tolist())
    for c in range(12):
        if c not in selected:
            # softmax weight of a category at -100 logit is ~e^-100: nothing survives
            assert per_class_max[c] < 1e-30
    assert set(out["sem_seg"].argmax(0).unique().tolist()) <= selected


def test_oracle_suppresses_absent_categories():
    cfg = _tiny_cfg(SYNTHETIC, "MODEL.RANKSEG.USE_GT", True)
    model = build_model(cfg).eval()
    with torch.no_grad():
        outputs = model(_batch(12, size=32, with_gt=True))
        predicted = [set(o["sem_seg"].argmax(0).unique().tolist()) for o in outputs]
    assert predicted[0] <= {1, 4}
    assert predicted[1] <= {7, 2, 9}
    with pytest.raises(ValueError, match="USE_GT"), torch.no_grad():
        model(_batch(12, size=32, with_gt=False))


@pytest.mark.slow
@pytest.mark.parametrize("config", [SYNTHETIC, SYNTHETIC_RANKSEG, MASKFORMER, MASKFORMER_RANKSEG])
def test_training_steps_lower_the_loss(config):
    cfg = _tiny_cfg(config)
    model = build_model(cfg).train()
    batch = _batch(12, size=64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    totals = []
    for _ in range(8):
        losses = model(batch)
        if cfg.MODEL.RANKSEG.FLAG:
            assert "loss_ml" in losses
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(torch.isfinite(torch.tensor(totals)))
    assert totals[-1] < 0.8 * totals[0], totals


def test_topk_larger_than_num_classes_is_a_config_error():
    cfg = _tiny_cfg(SYNTHETIC_RANKSEG, "MODEL.RANKSEG.TOPK", 13)
    with pytest.raises(ValueError, match="TOPK"):
        build_model(cfg)


@pytest.mark.parametrize("rankseg, maskformer", [(False, False), (True, False), (False, True), (True, True)])
def test_panoptic_and_instance_outputs(rankseg, maskformer):
    """With PANOPTIC_ON and INSTANCE_ON the model returns all three results; things come from the metadata."""
    from mask2former_rankseg.data.catalog import MetadataCatalog

    name = "_test_panoptic_things"
    MetadataCatalog.get(name).set(thing_dataset_id_to_contiguous_id={1: 0, 3: 2, 5: 4})
    config = {(False, False): SYNTHETIC, (True, False): SYNTHETIC_RANKSEG, (False, True): MASKFORMER,
              (True, True): MASKFORMER_RANKSEG}[rankseg, maskformer]
    cfg = _tiny_cfg(config, "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True,
                    "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True, "DATASETS.TEST", (name,),
                    "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0, "TEST.DETECTIONS_PER_IMAGE", 7)
    model = build_model(cfg).eval()
    assert model.thing_classes == [0, 2, 4]
    assert model.panoptic_within_own_mask == (not maskformer)  # MaskFormer's panoptic post-processing
    with torch.no_grad():
        outputs = model(_batch(12, size=64, with_gt=False))
    for out in outputs:
        assert out["sem_seg"].shape == (12, 64, 64)
        seg, segments = out["panoptic_seg"]
        assert seg.shape == (64, 64) and seg.dtype == torch.int32
        assert set(seg.unique().tolist()) - {0} == {s["id"] for s in segments}
        for s in segments:
            assert s["isthing"] == (s["category_id"] in (0, 2, 4))
        inst = out["instances"]
        assert inst.image_size == (64, 64) and inst.pred_masks.shape[1:] == (64, 64)
        assert len(inst) <= 7 and set(inst.pred_classes.tolist()) <= {0, 2, 4}  # panoptic models: things only
        assert ("multilabel" in out) == rankseg


def test_panoptic_needs_thing_metadata():
    cfg = _tiny_cfg(SYNTHETIC, "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True, "DATASETS.TEST", ("_no_such_dataset",))
    with pytest.raises(ValueError, match="'_no_such_dataset'.*thing_dataset_id_to_contiguous_id"):
        build_model(cfg)
    cfg = _tiny_cfg(SYNTHETIC, "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", False)
    with pytest.raises(ValueError, match="all False"):
        build_model(cfg)


def test_maskformer_rankseg_reads_the_third_standard_decoder_layer():
    """RankSeg on MaskFormer: the multi-label head reads query_feature[2], the raw output of the 3rd DETR layer."""
    cfg = _tiny_cfg(MASKFORMER_RANKSEG)
    model = build_model(cfg).eval()
    seen = {}
    model.ml_head.register_forward_hook(lambda m, args, out: seen.update(tokens=args[0]))
    model.sem_seg_head.predictor.register_forward_hook(lambda m, args, out: seen.update(out=out))
    with torch.no_grad():
        model(_batch(12, size=32, with_gt=False))
    assert len(seen["out"]["query_feature"]) == cfg.MODEL.MASK_FORMER.DEC_LAYERS == 6
    torch.testing.assert_close(seen["tokens"], seen["out"]["query_feature"][2].permute(1, 2, 0))


def test_maskformer_uses_full_mask_focal_criterion_and_matcher():
    model = build_model(_tiny_cfg(MASKFORMER))
    assert model.criterion.mask_loss == model.criterion.matcher.mask_loss == "full_mask_focal"
    assert type(model.sem_seg_head.predictor).__name__ == "StandardTransformerDecoder"
    assert type(model.sem_seg_head.pixel_decoder).__name__ == "BasePixelDecoder"
    assert len([k for k in model.criterion.weight_dict if k.startswith("loss_mask")]) == 6  # deep supervision


def test_semantic_masks_are_resized_before_they_are_combined_as_upstream_rankseg():
    """Upstream RankSeg's MaskFormer always resizes the mask logits to the output size before combining them with
    the class scores; so does the Mask2Former family here, whatever SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE says.
    With an output size unlike the input's (a test-time resize) the order changes the scores; MaskFormer's configs
    keep upstream MaskFormer's key."""
    cfg = _tiny_cfg(SYNTHETIC_RANKSEG, "MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE", False)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    assert model.sem_seg_postprocess_before_inference
    inputs = [dict(item, height=75, width=61) for item in _batch(12, size=48, with_gt=False)]
    with torch.no_grad():
        before = model(inputs)[0]["sem_seg"]
        model.sem_seg_postprocess_before_inference = False  # the other order, for comparison
        after = model(inputs)[0]["sem_seg"]
    assert before.shape == after.shape == (12, 75, 61)
    assert (before - after).abs().max() > 1e-4  # the order matters at another output size
    focal = _tiny_cfg(MASKFORMER, "MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE", False)
    assert not build_model(focal).sem_seg_postprocess_before_inference
    focal.MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = True
    assert build_model(focal).sem_seg_postprocess_before_inference
