"""Config: defaults, YAML loading with _BASE_ and the restricted eval tag, errors, round trips."""


import pytest
from helpers import REPO

from mask2former_rankseg.config import (
    ConfigError,
    dump_config,
    find_shipped_config,
    get_cfg,
    list_shipped_configs,
    safe_eval,
    validate_config,
)
from mask2former_rankseg.config.safe_eval import UnsafeExpressionError
from mask2former_rankseg.modeling import validate_model_config

CONFIG_ROOT = REPO / "configs"
CONFIGS = sorted(CONFIG_ROOT.rglob("*.yaml"))


def test_upstream_defaults():
    cfg = get_cfg()
    assert cfg.MODEL.MASK_FORMER.TRAIN_NUM_POINTS == 112 * 112
    assert cfg.SOLVER.POLY_LR_POWER == 0.9
    assert cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA == 1.0
    assert cfg.MODEL.RANKSEG.HIDDEN_DIM == 512
    assert cfg.MODEL.RANKSEG.TOPK == 0 and cfg.MODEL.RANKSEG.FLAG is False
    assert cfg.SOLVER.MLHEAD_MULTIPLIER == 1.0
    assert cfg.MODEL.SEM_SEG_HEAD.USE_LAYERNORM is False
    assert cfg.MODEL.RESNETS.NORM == "FrozenBN" and cfg.MODEL.BACKBONE.FREEZE_AT == 2
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 2  # video config
    assert cfg.MODEL.RESNETS.RES5_MULTI_GRID == [1, 2, 4]  # deeplab config
    assert cfg.MODEL.SWIN.DEPTHS == [2, 2, 6, 2]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_ROOT)))
def test_every_shipped_config_loads(path):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    validate_model_config(cfg)


def test_eval_tag_and_base_chain():
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_ROOT / "ade20k/semantic-segmentation/maskformer2_R50_bs16_160k.yaml"))
    # [int(x * 0.1 * 512) for x in range(5, 21)], by hand: 0.5*512=256, 0.6*512=307.2, ..., 2.0*512=1024
    expected = (256, 307, 358, 409, 460, 512, 563, 614, 665, 716, 768, 819, 870, 921, 972, 1024)
    assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == expected
    assert cfg.SOLVER.MAX_ITER == 160000  # from the base file
    assert cfg.MODEL.MASK_FORMER.DEC_LAYERS == 10  # from the child file
    assert cfg.INPUT.CROP.SIZE == [512, 512]  # "(512, 512)" decoded as yacs does


def test_child_overrides_base(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.5\n  MAX_ITER: 7\n")
    (tmp_path / "mid").mkdir()
    (tmp_path / "mid/child.yaml").write_text("_BASE_: ../base.yaml\nSOLVER:\n  BASE_LR: 0.25\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "mid/child.yaml"))
    assert cfg.SOLVER.BASE_LR == 0.25 and cfg.SOLVER.MAX_ITER == 7


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("MODEL:\n  RANKSEG:\n    TOPKK: 3\n")
    with pytest.raises(ConfigError, match=r"MODEL\.RANKSEG\.TOPKK.*bad\.yaml"):
        get_cfg().merge_from_file(str(path))


def test_unknown_key_suggests_the_closest_valid_keys(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(ConfigError, match=r"'SOLVER\.BASE_LRR' in .*typo\.yaml\. Did you mean 'SOLVER\.BASE_LR'"):
        get_cfg().merge_from_file(str(path))
    with pytest.raises(ConfigError, match=r"Did you mean 'MODEL\.RANKSEG\.TOPK'"):
        get_cfg().merge_from_list(["MODEL.RANKSEG.TOPKK", "3"])
    with pytest.raises(ConfigError, match=r"get_cfg\(\)"):  # nothing close: where to look instead
        get_cfg().merge_from_file(_write(tmp_path / "far.yaml", "XYZZY_QUUX: 3\n"))


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_mlseg_is_a_deprecated_alias_of_rankseg(tmp_path, caplog):
    """RankSeg's old name: upstream's VSPW Swin-B -gt file writes MODEL.MLSEG.USE_GT; files and overrides read
    MODEL.MLSEG.* as MODEL.RANKSEG.*, with one warning per source."""
    path = _write(tmp_path / "old.yaml", "MODEL:\n  MLSEG:\n    FLAG: True\n    TOPK: 7\n")
    cfg = get_cfg()
    with caplog.at_level("WARNING", logger="mask2former_rankseg.config"):
        cfg.merge_from_file(path)
        cfg.merge_from_list(["MODEL.MLSEG.USE_GT", "True", "MODEL.MLSEG.LOSS_WEIGHT", "3.0"])
    assert (cfg.MODEL.RANKSEG.FLAG, cfg.MODEL.RANKSEG.TOPK, cfg.MODEL.RANKSEG.USE_GT) == (True, 7, True)
    assert cfg.MODEL.RANKSEG.LOSS_WEIGHT == 3.0 and "MLSEG" not in cfg.MODEL
    warnings = [r.getMessage() for r in caplog.records if "MODEL.MLSEG" in r.getMessage()]
    assert len(warnings) == 2 and "old.yaml" in warnings[0] and "command-line" in warnings[1]
    vspw = get_cfg()
    vspw.merge_from_file(str(CONFIG_ROOT / "vspw/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep-gt.yaml"))
    assert vspw.MODEL.RANKSEG.USE_GT
    assert "MLSEG:" in (CONFIG_ROOT / "vspw/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep-gt.yaml").read_text()


def test_type_mismatch_is_reported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("SOLVER:\n  MAX_ITER: [1, 2]\n")
    with pytest.raises(ConfigError, match="SOLVER.MAX_ITER"):
        get_cfg().merge_from_file(str(path))


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('echo hi')", "().__class__", "open('/etc/passwd')", "(lambda: 1)()",
     "[x for x in ().__class__.__bases__]", "10 ** 10 ** 10", "'a' * 10**9"],
)
def test_malicious_eval_expressions_are_refused(tmp_path, expression):
    with pytest.raises(UnsafeExpressionError):
        safe_eval(expression)
    path = tmp_path / "evil.yaml"
    path.write_text(f'INPUT:\n  MIN_SIZE_TRAIN: !!python/object/apply:eval ["{expression}"]\n')
    with pytest.raises(ConfigError, match="evil.yaml"):
        get_cfg().merge_from_file(str(path))


def test_safe_eval_grammar():
    assert safe_eval("[x * 2 for x in range(4) if x % 2 == 1]") == [2, 6]
    assert safe_eval("(1 + 2) * -3 / 2") == -4.5
    assert safe_eval("[int(x) for x in [1.5, 2.7]]") == [1, 2]


def test_merge_from_list_and_errors():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.RANKSEG.TOPK", "5", "SOLVER.BASE_LR", 0.5, "INPUT.CROP.SIZE", "(64, 64)"])
    assert cfg.MODEL.RANKSEG.TOPK == 5 and cfg.SOLVER.BASE_LR == 0.5 and cfg.INPUT.CROP.SIZE == [64, 64]
    with pytest.raises(ConfigError, match="MODEL.NOPE"):
        cfg.merge_from_list(["MODEL.NOPE", 1])
    with pytest.raises(ConfigError, match="pairs"):
        cfg.merge_from_list(["MODEL.RANKSEG.TOPK"])


def test_dump_round_trip(tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_ROOT / "synthetic/maskformer2_R18_synthetic-rankseg.yaml"))
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_config(cfg))
    again = get_cfg()
    again.merge_from_file(str(path))
    assert again == cfg
    assert cfg.dump() == again.dump()


def test_topk_larger_than_num_classes():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.RANKSEG.FLAG", True, "MODEL.RANKSEG.TOPK", 200, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 150])
    with pytest.raises(ConfigError, match="TOPK=200"):
        validate_model_config(cfg)
    cfg.merge_from_list(["MODEL.RANKSEG.TOPK", 150, "MODEL.RANKSEG.SHARE_EMBEDDING", True,
                         "MODEL.META_ARCHITECTURE", "MaskFormer",
                         "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE", "multi_scale_pixel_decoder"])
    with pytest.raises(ConfigError, match="SHARE_EMBEDDING"):
        validate_model_config(cfg)



def test_video_meta_architecture_needs_the_video_decoder():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "VideoMaskFormer"])
    with pytest.raises(ConfigError, match="VideoMultiScaleMaskedTransformerDecoder"):
        validate_config(cfg)
    cfg.merge_from_list(["MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME", "VideoMultiScaleMaskedTransformerDecoder"])
    validate_config(cfg)
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "MaskFormer"])
    with pytest.raises(ConfigError, match="go together"):
        validate_config(cfg)


# Upstream RankSeg's Mask2Former config tree (openseg-group/RankSeg, mask2former/configs): every file must be here.
UPSTREAM_CONFIGS = [
    "ade20k/panoptic-segmentation/Base-ADE20K-PanopticSegmentation.yaml",
    "ade20k/panoptic-segmentation/maskformer2_R50_bs16_160k.yaml",
    "ade20k/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k-gt.yaml",
    "ade20k/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k-rankseg.yaml",
    "ade20k/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k.yaml",
    "ade20k/semantic-segmentation/Base-ADE20K-SemanticSegmentation.yaml",
    "ade20k/semantic-segmentation/maskformer2_R50_bs16_160k.yaml",
    "ade20k/semantic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_160k_res640-gt.yaml",
    "ade20k/semantic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_160k_res640-rankseg.yaml",
    "ade20k/semantic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_160k_res640.yaml",
    "ade20k/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k_res640-gt.yaml",
    "ade20k/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k_res640-rankseg.yaml",
    "ade20k/semantic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k_res640.yaml",
    "ade20k/semantic-segmentation/swin/maskformer2_swin_small_bs16_160k.yaml",
    "ade20k/semantic-segmentation/swin/maskformer2_swin_tiny_bs16_160k.yaml",
    "coco/panoptic-segmentation/Base-COCO-PanopticSegmentation.yaml",
    "coco/panoptic-segmentation/maskformer2_R50_bs16_50ep.yaml",
    "coco/panoptic-segmentation/swin/maskformer2_swin_base_384_bs16_50ep.yaml",
    "coco/panoptic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_50ep-gt.yaml",
    "coco/panoptic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_50ep-rankseg.yaml",
    "coco/panoptic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_50ep.yaml",
    "coco/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_100ep-gt.yaml",
    "coco/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_100ep.yaml",
    "vspw/Base-VSPW-VideoSemanticSegmentation.yaml",
    "vspw/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep-gt.yaml",
    "vspw/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep-rankseg.yaml",
    "vspw/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep.yaml",
    "vspw/video_maskformer2_R101_bs16_8ep-gt.yaml",
    "vspw/video_maskformer2_R101_bs16_8ep-rankseg.yaml",
    "vspw/video_maskformer2_R101_bs16_8ep.yaml",
    "vspw/video_maskformer2_R50_bs16_8ep.yaml",
    "youtubevis_2019/Base-YouTubeVIS-VideoInstanceSegmentation.yaml",
    "youtubevis_2019/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep-rankseg.yaml",
    "youtubevis_2019/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep.yaml",
    "youtubevis_2019/swin/video_maskformer2_swin_large_IN21k_384_bs16_8ep-rankseg.yaml",
    "youtubevis_2019/swin/video_maskformer2_swin_large_IN21k_384_bs16_8ep.yaml",
    "youtubevis_2019/swin/video_maskformer2_swin_small_bs16_8ep.yaml",
    "youtubevis_2019/swin/video_maskformer2_swin_tiny_bs16_8ep.yaml",
    "youtubevis_2019/video_maskformer2_R101_bs16_8ep-rankseg.yaml",
    "youtubevis_2019/video_maskformer2_R101_bs16_8ep.yaml",
    "youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml",
]


def test_configs_tree_mirrors_upstream():
    missing = [p for p in UPSTREAM_CONFIGS if not (CONFIG_ROOT / p).is_file()]
    assert not missing, f"upstream configs missing from configs/: {missing}"
    assert len(UPSTREAM_CONFIGS) == 41


@pytest.mark.parametrize("path, expected", [
    ("coco/panoptic-segmentation/swin/maskformer2_swin_base_IN21k_384_bs16_50ep-rankseg.yaml",
     {"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 133, "MODEL.RANKSEG.TOPK": 133, "MODEL.MASK_FORMER.TEST.PANOPTIC_ON": True,
      "MODEL.RANKSEG.LOSS_WEIGHT": 100, "MODEL.SWIN.EMBED_DIM": 128}),
    ("ade20k/panoptic-segmentation/swin/maskformer2_swin_large_IN21k_384_bs16_160k-rankseg.yaml",
     {"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 150, "MODEL.RANKSEG.TOPK": 150, "MODEL.SWIN.EMBED_DIM": 192}),
    ("youtubevis_2019/video_maskformer2_R101_bs16_8ep-rankseg.yaml",
     {"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 40, "MODEL.RANKSEG.TOPK": 40, "MODEL.RESNETS.DEPTH": 101,
      "MODEL.META_ARCHITECTURE": "VideoMaskFormer"}),
    ("vspw/video_maskformer2_R101_bs16_8ep-rankseg.yaml",
     {"MODEL.SEM_SEG_HEAD.NUM_CLASSES": 124, "MODEL.RANKSEG.TOPK": 124}),
    ("vspw/swin/video_maskformer2_swin_base_IN21k_384_bs16_8ep-gt.yaml", {"MODEL.RANKSEG.USE_GT": True}),
])
def test_resolved_values_of_each_family(path, expected):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_ROOT / path))
    for key, value in expected.items():
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        assert node == value, (key, node, value)


MASKFORMER_UPSTREAM_CONFIGS = [  # MaskFormer's released ADE20K-150 tree (facebookresearch/MaskFormer configs/)
    "ade20k-150/Base-ADE20K-150.yaml",
    "ade20k-150/maskformer_R50_bs16_160k.yaml",
    "ade20k-150/maskformer_R101_bs16_160k.yaml",
    "ade20k-150/swin/maskformer_swin_tiny_bs16_160k.yaml",
    "ade20k-150/swin/maskformer_swin_small_bs16_160k.yaml",
    "ade20k-150/swin/maskformer_swin_base_IN21k_384_bs16_160k_res640.yaml",
    "ade20k-150/swin/maskformer_swin_large_IN21k_384_bs16_160k_res640.yaml",
    "ade20k-150-panoptic/maskformer_panoptic_R50_bs16_720k.yaml",
    "ade20k-150-panoptic/maskformer_panoptic_R101_bs16_720k.yaml",
]


def test_maskformer_tree_and_published_hyper_parameters():
    """configs/maskformer/ keeps MaskFormer's file names and _BASE_ chains; resolved values are MaskFormer's."""
    root = CONFIG_ROOT / "maskformer"
    assert all((root / p).is_file() for p in MASKFORMER_UPSTREAM_CONFIGS)
    expected = {
        "ade20k-150/maskformer_R50_bs16_160k.yaml": {
            "SOLVER.BASE_LR": 0.0001, "SOLVER.MAX_ITER": 160000, "SOLVER.IMS_PER_BATCH": 16,
            "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 0.01, "INPUT.CROP.SIZE": [512, 512],
            "MODEL.MASK_FORMER.MASK_WEIGHT": 20.0, "MODEL.MASK_FORMER.DICE_WEIGHT": 1.0,
            "MODEL.MASK_FORMER.NO_OBJECT_WEIGHT": 0.1, "MODEL.MASK_FORMER.CLASS_WEIGHT": 1.0,
            "MODEL.MASK_FORMER.DEC_LAYERS": 6, "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE": "res5",
            "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME": "StandardTransformerDecoder",
            "MODEL.MASK_FORMER.MASK_LOSS": "full_mask_focal",
            "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME": "BasePixelDecoder",
            "MODEL.RANKSEG.FLAG": False},
        "ade20k-150/swin/maskformer_swin_base_IN21k_384_bs16_160k_res640-rankseg.yaml": {
            "SOLVER.BASE_LR": 0.00006, "SOLVER.WEIGHT_DECAY": 0.01, "SOLVER.WARMUP_ITERS": 1500,
            "INPUT.CROP.SIZE": [640, 640], "MODEL.SWIN.EMBED_DIM": 128, "MODEL.SWIN.WINDOW_SIZE": 12,
            "MODEL.RANKSEG.FLAG": True, "MODEL.RANKSEG.TOPK": 150, "MODEL.RANKSEG.LOSS_WEIGHT": 10,
            "MODEL.SEM_SEG_HEAD.USE_LAYERNORM": True, "SOLVER.MLHEAD_MULTIPLIER": 0.1},
        "ade20k-150-panoptic/maskformer_panoptic_R50_bs16_720k-gt.yaml": {
            "SOLVER.MAX_ITER": 720000, "INPUT.CROP.SIZE": [640, 640], "MODEL.MASK_FORMER.TEST.PANOPTIC_ON": True,
            "MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD": 0.8, "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD": 0.7,
            "MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME": "TransformerEncoderPixelDecoder",
            "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS": 6,
            "MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE": "transformer_encoder", "MODEL.RANKSEG.USE_GT": True,
            "INPUT.DATASET_MAPPER_NAME": "mask_former_panoptic", "DATASETS.TEST": ("ade20k_panoptic_val",)},
    }
    for path, values in expected.items():
        cfg = get_cfg()
        cfg.merge_from_file(str(root / path))
        for key, value in values.items():
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            assert (list(node) if isinstance(node, tuple) and isinstance(value, list) else node) == value, (path, key)


def test_decoder_and_its_input_must_agree():
    from mask2former_rankseg.config import ConfigError

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_ROOT / "maskformer/ade20k-150/maskformer_R50_bs16_160k.yaml"))
    cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"  # an upstream MaskFormer
    with pytest.raises(ConfigError, match="StandardTransformerDecoder.*full_mask_focal"):  # file as it is upstream
        validate_config(cfg)
    cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME = "StandardTransformerDecoder"
    cfg.MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE = "multi_scale_pixel_decoder"
    with pytest.raises(ConfigError, match="reads one feature map"):
        validate_config(cfg)


def test_rankseg_decoder_depth_depends_on_the_decoder():
    """The head reads the 3rd decoder layer: DEC_LAYERS >= 3 for MaskFormer's decoder, >= 4 for Mask2Former's
    (whose DEC_LAYERS also counts the prediction on the learnable queries)."""
    from mask2former_rankseg.config import ConfigError

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_ROOT / "maskformer/ade20k-150/maskformer_R50_bs16_160k-rankseg.yaml"))
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 3
    validate_model_config(cfg)
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 2
    with pytest.raises(ConfigError, match="DEC_LAYERS >= 3"):
        validate_model_config(cfg)
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_ROOT / "ade20k/semantic-segmentation/maskformer2_R50_bs16_160k-rankseg.yaml"))
    cfg.MODEL.MASK_FORMER.DEC_LAYERS = 3
    with pytest.raises(ConfigError, match="DEC_LAYERS >= 4"):
        validate_model_config(cfg)


def test_shipped_configs_resolve_by_name(tmp_path, monkeypatch):
    """--config-file / merge_from_file take a shipped config's name (its path below configs/, with or without
    "configs/" and ".yaml") as well as a path; a name that is neither is one clear error."""
    monkeypatch.chdir(tmp_path)  # not the repository: names must not depend on the working directory
    names = list_shipped_configs()
    assert "synthetic/maskformer2_R18_synthetic-rankseg.yaml" in names and len(names) == len(CONFIGS)
    expected = CONFIG_ROOT / "synthetic" / "maskformer2_R18_synthetic-rankseg.yaml"
    for name in ("synthetic/maskformer2_R18_synthetic-rankseg.yaml", "synthetic/maskformer2_R18_synthetic-rankseg",
                 "configs/synthetic/maskformer2_R18_synthetic-rankseg.yaml"):
        assert find_shipped_config(name) == expected
    cfg = get_cfg()
    cfg.merge_from_file("ade20k/semantic-segmentation/maskformer2_R50_bs16_160k-rankseg")  # with its _BASE_ chain
    assert cfg.MODEL.RANKSEG.FLAG and cfg.MODEL.RANKSEG.TOPK == 150 and cfg.DATASETS.TRAIN == ("ade20k_sem_seg_train",)
    with pytest.raises(ConfigError, match="nor is it the name of a config shipped"):
        get_cfg().merge_from_file("ade20k/no-such-config.yaml")

