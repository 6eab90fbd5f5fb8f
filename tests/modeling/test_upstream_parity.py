"""Name and shape parity with upstream: our models have exactly the state-dict keys and shapes of the models
upstream's code (RankSeg's Mask2Former, and MaskFormer) builds from the same configs, so official checkpoints load
without renaming.

The data files in ``tests/fixtures/upstream_state_dict_*.json`` are facts recorded from upstream's own model
construction (their ``provenance`` field names the commits, the config and the overrides).
"""

from __future__ import annotations

import json
from typing import Dict, List, Tuple

import pytest
import torch
from helpers import FIXTURES, REPO

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.modeling import build_model

# Parameters only, never inference: panoptic/instance post-processing flags do not change the model's
# parameters, and the instance and panoptic paths arrive with the panoptic issue.
INFERENCE_OFF = ["MODEL.MASK_FORMER.TEST.PANOPTIC_ON", "False", "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "False",
                 "MODEL.MASK_FORMER.TEST.SEMANTIC_ON", "True"]


def _upstream(name: str) -> Dict:
    return json.loads((FIXTURES / name).read_text())


def _build(config: str, overrides: List[str], device: str = "cpu") -> torch.nn.Module:
    """The model of ``config``; on the "meta" device when only names and shapes matter (fast, no memory)."""
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / config))
    cfg.merge_from_list(list(overrides) + INFERENCE_OFF + ["MODEL.WEIGHTS", ""])
    with torch.device(device):
        return build_model(cfg)


def _compare(ours: Dict[str, Tuple[int, ...]], theirs: Dict[str, Tuple[int, ...]]) -> List[str]:
    problems = [f"missing (upstream has, we lack): {k} {theirs[k]}" for k in sorted(theirs.keys() - ours.keys())]
    problems += [f"unexpected (we have, upstream lacks): {k} {ours[k]}" for k in sorted(ours.keys() - theirs.keys())]
    problems += [f"shape: {k} ours {ours[k]} upstream {theirs[k]}" for k in sorted(ours.keys() & theirs.keys())
                 if ours[k] != theirs[k]]
    return problems


@pytest.mark.parametrize("data_file", [
    "upstream_state_dict_ade20k_semantic_r50_rankseg.json",
    "upstream_state_dict_coco_panoptic_swin_base_rankseg.json",
    "upstream_state_dict_maskformer_ade20k_semantic_r50.json",
    "upstream_state_dict_maskformer_ade20k_semantic_swin_base.json",
    "upstream_state_dict_maskformer_ade20k_panoptic_r50.json",
])
def test_state_dict_keys_and_shapes_equal_upstream(data_file):
    upstream = _upstream(data_file)
    model = _build(upstream["config"], upstream["overrides"], device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v) for k, v in upstream["state_dict"].items()}
    problems = _compare(ours, theirs)
    assert not problems, f"{len(problems)} differences from upstream:\n" + "\n".join(problems[:50])
    assert sum(p.numel() for p in model.parameters()) == upstream["num_parameters"]


@pytest.mark.slow
def test_upstream_checkpoint_layout_loads_strictly(tmp_path):
    """A checkpoint with upstream's exact keys and shapes (as an official model_final.pth has) loads with
    strict=True: nothing missing, unexpected or mis-shaped."""
    from mask2former_rankseg.engine import Checkpointer

    upstream = _upstream("upstream_state_dict_ade20k_semantic_r50_rankseg.json")
    model = _build(upstream["config"], upstream["overrides"])
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(*shape, generator=g) if shape else torch.randn((), generator=g)
             for k, shape in upstream["state_dict"].items()}
    state = {k: (v.abs().long() if k.endswith("num_batches_tracked") else v) for k, v in state.items()}
    path = tmp_path / "model_final.pth"
    torch.save({"model": state, "iteration": 159999}, path)
    extra = Checkpointer(model).load(str(path), strict=True)
    assert not extra["incompatible"] and extra["iteration"] == 159999
    loaded = model.state_dict()
    for k in ("backbone.res5.2.conv3.weight", "sem_seg_head.predictor.class_embed.weight", "ml_norm.weight"):
        torch.testing.assert_close(loaded[k], state[k])


# Parameter counts of the models upstream's code builds from its panoptic configs (recorded facts).
PANOPTIC_CONFIGS = {
    "configs/ade20k/panoptic-segmentation/maskformer2_R50_bs16_160k.yaml": 43_988_247,
    "configs/coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml": 43_983_878,
    "configs/coco/panoptic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_50ep-rankseg.yaml": 110_339_273,
    "configs/ade20k/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k-rankseg.yaml": 218_978_872,
}


@pytest.mark.slow
def test_every_panoptic_config_builds_with_panoptic_inference():
    """Upstream's ADE20K and COCO panoptic trees (R50, Swin; baseline, -rankseg, -gt) build as they are, with
    panoptic (and for COCO instance) inference on and the thing classes from the test dataset's metadata."""
    paths = sorted(p for p in REPO.glob("configs/*/panoptic-segmentation/**/*.yaml") if not p.name.startswith("Base"))
    assert len(paths) == 11
    for path in paths:
        cfg = get_cfg()
        cfg.merge_from_file(str(path))
        with torch.device("meta"):  # shapes only: no memory, no initialisation time
            model = build_model(cfg)
        assert model.panoptic_on and model.semantic_on, path
        assert len(model.thing_classes) == (80 if "coco" in str(path) else 100), path
        assert model.instance_on == ("coco" in str(path)), path
        assert (model.ml_head is not None) == ("-rankseg" in path.name), path
        assert model.ml_use_gt == ("-gt" in path.name), path
        expected = PANOPTIC_CONFIGS.get(str(path.relative_to(REPO)))
        if expected is not None:
            assert sum(p.numel() for p in model.parameters()) == expected, path


@pytest.mark.parametrize("baseline_file, rankseg_config", [
    ("upstream_state_dict_maskformer_ade20k_semantic_r50.json",
     "configs/maskformer/ade20k-150/maskformer_R50_bs16_160k-rankseg.yaml"),
    ("upstream_state_dict_maskformer_ade20k_panoptic_r50.json",
     "configs/maskformer/ade20k-150-panoptic/maskformer_panoptic_R50_bs16_720k-rankseg.yaml"),
])
def test_maskformer_rankseg_is_upstream_maskformer_plus_upstream_rankseg_parts(baseline_file, rankseg_config):
    """Upstream has no MaskFormer + RankSeg code. Ours is MaskFormer's recorded model with RankSeg's parts as
    upstream RankSeg builds them for Mask2Former (same CONVS_DIM 256, HIDDEN_DIM 512, 150 classes, TOPK 150):
    ``ml_head.*`` and ``ml_norm.*`` added, and the cosine classifier's ``class_embed`` without bias."""
    baseline = _upstream(baseline_file)
    rankseg_m2f = _upstream("upstream_state_dict_ade20k_semantic_r50_rankseg.json")["state_dict"]
    rankseg_parts = {k: tuple(v) for k, v in rankseg_m2f.items() if k.startswith(("ml_head.", "ml_norm."))}
    assert len(rankseg_parts) == 21
    expected = {k: tuple(v) for k, v in baseline["state_dict"].items()
                if k != "sem_seg_head.predictor.class_embed.bias"}
    expected.update(rankseg_parts)
    model = _build(rankseg_config, [], device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = _compare(ours, expected)
    assert not problems, "\n".join(problems[:50])
    added = sum(torch.Size(v).numel() for v in rankseg_parts.values()) - 151  # 151: the dropped bias
    assert sum(p.numel() for p in model.parameters()) == baseline["num_parameters"] + added
