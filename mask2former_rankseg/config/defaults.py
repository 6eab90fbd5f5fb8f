"""Default configuration: every key of detectron2, DeepLab, Mask2Former (+video), MaskFormer and RankSeg.

Values are upstream's defaults, so upstream YAML files load unchanged and mean the same thing.
"""

from __future__ import annotations

from ..constants import IGNORE_LABEL
from .config import CfgNode as CN


def _detectron2_defaults() -> CN:
    """The keys and defaults of detectron2's ``config/defaults.py``."""
    C = CN()
    C.VERSION = 2

    C.MODEL = CN()
    C.MODEL.LOAD_PROPOSALS = False
    C.MODEL.MASK_ON = False
    C.MODEL.KEYPOINT_ON = False
    C.MODEL.DEVICE = "cuda"
    C.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    C.MODEL.WEIGHTS = ""
    C.MODEL.PIXEL_MEAN = [103.530, 116.280, 123.675]
    C.MODEL.PIXEL_STD = [1.0, 1.0, 1.0]

    C.INPUT = CN()
    C.INPUT.MIN_SIZE_TRAIN = (800,)
    C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
    C.INPUT.MAX_SIZE_TRAIN = 1333
    C.INPUT.MIN_SIZE_TEST = 800
    C.INPUT.MAX_SIZE_TEST = 1333
    C.INPUT.RANDOM_FLIP = "horizontal"
    C.INPUT.CROP = CN({"ENABLED": False})
    C.INPUT.CROP.TYPE = "relative_range"
    C.INPUT.CROP.SIZE = [0.9, 0.9]
    C.INPUT.FORMAT = "BGR"
    C.INPUT.MASK_FORMAT = "polygon"

    C.DATASETS = CN()
    C.DATASETS.TRAIN = ()
    C.DATASETS.PROPOSAL_FILES_TRAIN = ()
    C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
    C.DATASETS.TEST = ()
    C.DATASETS.PROPOSAL_FILES_TEST = ()
    C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000

    C.DATALOADER = CN()
    C.DATALOADER.NUM_WORKERS = 4
    C.DATALOADER.ASPECT_RATIO_GROUPING = True
    C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
    C.DATALOADER.REPEAT_THRESHOLD = 0.0
    C.DATALOADER.REPEAT_SQRT = True
    C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True

    C.MODEL.BACKBONE = CN()
    C.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    C.MODEL.BACKBONE.FREEZE_AT = 2

    C.MODEL.FPN = CN()
    C.MODEL.FPN.IN_FEATURES = []
    C.MODEL.FPN.OUT_CHANNELS = 256
    C.MODEL.FPN.NORM = ""
    C.MODEL.FPN.FUSE_TYPE = "sum"

    C.MODEL.PROPOSAL_GENERATOR = CN()
    C.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    C.MODEL.PROPOSAL_GENERATOR.MIN_SIZE = 0

    C.MODEL.ANCHOR_GENERATOR = CN()
    C.MODEL.ANCHOR_GENERATOR.NAME = "DefaultAnchorGenerator"
    C.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
    C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]
    C.MODEL.ANCHOR_GENERATOR.ANGLES = [[-90, 0, 90]]
    C.MODEL.ANCHOR_GENERATOR.OFFSET = 0.0

    C.MODEL.RPN = CN()
    C.MODEL.RPN.HEAD_NAME = "StandardRPNHead"
    C.MODEL.RPN.IN_FEATURES = ["res4"]
    C.MODEL.RPN.BOUNDARY_THRESH = -1
    C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
    C.MODEL.RPN.IOU_LABELS = [0, -1, 1]
    C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
    C.MODEL.RPN.POSITIVE_FRACTION = 0.5
    C.MODEL.RPN.BBOX_REG_LOSS_TYPE = "smooth_l1"
    C.MODEL.RPN.BBOX_REG_LOSS_WEIGHT = 1.0
    C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    C.MODEL.RPN.SMOOTH_L1_BETA = 0.0
    C.MODEL.RPN.LOSS_WEIGHT = 1.0
    C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 12000
    C.MODEL.RPN.PRE_NMS_TOPK_TEST = 6000
    C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
    C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
    C.MODEL.RPN.NMS_THRESH = 0.7
    C.MODEL.RPN.CONV_DIMS = [-1]

    C.MODEL.ROI_HEADS = CN()
    C.MODEL.ROI_HEADS.NAME = "Res5ROIHeads"
    C.MODEL.ROI_HEADS.NUM_CLASSES = 80
    C.MODEL.ROI_HEADS.IN_FEATURES = ["res4"]
    C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
    C.MODEL.ROI_HEADS.IOU_LABELS = [0, 1]
    C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
    C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
    C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
    C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5
    C.MODEL.ROI_HEADS.PROPOSAL_APPEND_GT = True

    C.MODEL.ROI_BOX_HEAD = CN()
    C.MODEL.ROI_BOX_HEAD.NAME = ""
    C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "smooth_l1"
    C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
    C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 0.0
    C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14
    C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
    C.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
    C.MODEL.ROI_BOX_HEAD.NUM_FC = 0
    C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024
    C.MODEL.ROI_BOX_HEAD.NUM_CONV = 0
    C.MODEL.ROI_BOX_HEAD.CONV_DIM = 256
    C.MODEL.ROI_BOX_HEAD.NORM = ""
    C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False
    C.MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES = False
    C.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = False
    C.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = False
    C.MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER = 0.5
    C.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 50

    C.MODEL.ROI_BOX_CASCADE_HEAD = CN()
    C.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = (
        (10.0, 10.0, 5.0, 5.0),
        (20.0, 20.0, 10.0, 10.0),
        (30.0, 30.0, 15.0, 15.0),
    )
    C.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = (0.5, 0.6, 0.7)

    C.MODEL.ROI_MASK_HEAD = CN()
    C.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNConvUpsampleHead"
    C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14
    C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 0
    C.MODEL.ROI_MASK_HEAD.NUM_CONV = 0
    C.MODEL.ROI_MASK_HEAD.CONV_DIM = 256
    C.MODEL.ROI_MASK_HEAD.NORM = ""
    C.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False
    C.MODEL.ROI_MASK_HEAD.POOLER_TYPE = "ROIAlignV2"

    C.MODEL.ROI_KEYPOINT_HEAD = CN()
    C.MODEL.ROI_KEYPOINT_HEAD.NAME = "KRCNNConvDeconvUpsampleHead"
    C.MODEL.ROI_KEYPOINT_HEAD.POOLER_RESOLUTION = 14
    C.MODEL.ROI_KEYPOINT_HEAD.POOLER_SAMPLING_RATIO = 0
    C.MODEL.ROI_KEYPOINT_HEAD.CONV_DIMS = (512,) * 8
    C.MODEL.ROI_KEYPOINT_HEAD.NUM_KEYPOINTS = 17
    C.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE = 1
    C.MODEL.ROI_KEYPOINT_HEAD.NORMALIZE_LOSS_BY_VISIBLE_KEYPOINTS = True
    C.MODEL.ROI_KEYPOINT_HEAD.LOSS_WEIGHT = 1.0
    C.MODEL.ROI_KEYPOINT_HEAD.POOLER_TYPE = "ROIAlignV2"

    C.MODEL.SEM_SEG_HEAD = CN()
    C.MODEL.SEM_SEG_HEAD.NAME = "SemSegFPNHead"
    C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = IGNORE_LABEL
    C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 54
    C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 128
    C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
    C.MODEL.SEM_SEG_HEAD.NORM = "GN"
    C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0

    C.MODEL.PANOPTIC_FPN = CN()
    C.MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT = 1.0
    C.MODEL.PANOPTIC_FPN.COMBINE = CN({"ENABLED": True})
    C.MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH = 0.5
    C.MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT = 4096
    C.MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH = 0.5

    C.MODEL.RETINANET = CN()
    C.MODEL.RETINANET.NUM_CLASSES = 80
    C.MODEL.RETINANET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    C.MODEL.RETINANET.NUM_CONVS = 4
    C.MODEL.RETINANET.IOU_THRESHOLDS = [0.4, 0.5]
    C.MODEL.RETINANET.IOU_LABELS = [0, -1, 1]
    C.MODEL.RETINANET.PRIOR_PROB = 0.01
    C.MODEL.RETINANET.SCORE_THRESH_TEST = 0.05
    C.MODEL.RETINANET.TOPK_CANDIDATES_TEST = 1000
    C.MODEL.RETINANET.NMS_THRESH_TEST = 0.5
    C.MODEL.RETINANET.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
    C.MODEL.RETINANET.FOCAL_LOSS_GAMMA = 2.0
    C.MODEL.RETINANET.FOCAL_LOSS_ALPHA = 0.25
    C.MODEL.RETINANET.SMOOTH_L1_LOSS_BETA = 0.1
    C.MODEL.RETINANET.BBOX_REG_LOSS_TYPE = "smooth_l1"
    C.MODEL.RETINANET.NORM = ""

    C.MODEL.RESNETS = CN()
    C.MODEL.RESNETS.DEPTH = 50
    C.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    C.MODEL.RESNETS.NUM_GROUPS = 1
    C.MODEL.RESNETS.NORM = "FrozenBN"
    C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
    C.MODEL.RESNETS.STRIDE_IN_1X1 = True
    C.MODEL.RESNETS.RES5_DILATION = 1
    C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
    C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
    C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
    C.MODEL.RESNETS.DEFORM_MODULATED = False
    C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1

    C.SOLVER = CN()
    C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
    C.SOLVER.MAX_ITER = 40000
    C.SOLVER.BASE_LR = 0.001
    C.SOLVER.BASE_LR_END = 0.0
    C.SOLVER.MOMENTUM = 0.9
    C.SOLVER.NESTEROV = False
    C.SOLVER.WEIGHT_DECAY = 0.0001
    C.SOLVER.WEIGHT_DECAY_NORM = 0.0
    C.SOLVER.GAMMA = 0.1
    C.SOLVER.STEPS = (30000,)
    C.SOLVER.NUM_DECAYS = 3
    C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
    C.SOLVER.WARMUP_ITERS = 1000
    C.SOLVER.WARMUP_METHOD = "linear"
    C.SOLVER.RESCALE_INTERVAL = False
    C.SOLVER.CHECKPOINT_PERIOD = 5000
    C.SOLVER.IMS_PER_BATCH = 16
    C.SOLVER.REFERENCE_WORLD_SIZE = 0
    C.SOLVER.BIAS_LR_FACTOR = 1.0
    C.SOLVER.WEIGHT_DECAY_BIAS = None
    C.SOLVER.CLIP_GRADIENTS = CN({"ENABLED": False})
    C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
    C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 1.0
    C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
    C.SOLVER.AMP = CN({"ENABLED": False})

    C.TEST = CN()
    C.TEST.EXPECTED_RESULTS = []
    C.TEST.EVAL_PERIOD = 0
    C.TEST.KEYPOINT_OKS_SIGMAS = []
    C.TEST.DETECTIONS_PER_IMAGE = 100
    C.TEST.AUG = CN({"ENABLED": False})
    C.TEST.AUG.MIN_SIZES = (400, 500, 600, 700, 800, 900, 1000, 1100, 1200)
    C.TEST.AUG.MAX_SIZE = 4000
    C.TEST.AUG.FLIP = True
    C.TEST.PRECISE_BN = CN({"ENABLED": False})
    C.TEST.PRECISE_BN.NUM_ITER = 200

    C.OUTPUT_DIR = "./output"
    C.SEED = -1
    C.CUDNN_BENCHMARK = False
    C.FLOAT32_PRECISION = ""
    C.VIS_PERIOD = 0
    C.GLOBAL = CN()
    C.GLOBAL.HACK = 1.0
    return C


def add_deeplab_config(cfg: CN) -> None:
    """Keys of detectron2's DeepLab project (poly schedule, ASPP head, dilated ResNet)."""
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    cfg.SOLVER.POLY_LR_POWER = 0.9
    cfg.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_FEATURES = ["res2"]
    cfg.MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS = [48]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 256
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS = [6, 12, 18]
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DROPOUT = 0.1
    cfg.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV = False
    cfg.MODEL.RESNETS.RES4_DILATION = 1
    cfg.MODEL.RESNETS.RES5_MULTI_GRID = [1, 2, 4]
    cfg.MODEL.RESNETS.STEM_TYPE = "deeplab"


def add_maskformer2_config(cfg: CN) -> None:
    """Keys of Mask2Former (as extended by RankSeg's fork: ``MLHEAD_MULTIPLIER``, ``USE_LAYERNORM``)."""
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"
    cfg.INPUT.COLOR_AUG_SSD = False
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    cfg.INPUT.SIZE_DIVISIBILITY = -1
    cfg.LOG_OUTPUT = None

    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0
    cfg.SOLVER.OPTIMIZER = "ADAMW"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 0.1
    cfg.SOLVER.MLHEAD_MULTIPLIER = 1.0

    mf = cfg.MODEL.MASK_FORMER = CN()
    mf.DEEP_SUPERVISION = True
    mf.NO_OBJECT_WEIGHT = 0.1
    mf.CLASS_WEIGHT = 1.0
    mf.DICE_WEIGHT = 1.0
    mf.MASK_WEIGHT = 20.0
    mf.NHEADS = 8
    mf.DROPOUT = 0.1
    mf.DIM_FEEDFORWARD = 2048
    mf.ENC_LAYERS = 0
    mf.DEC_LAYERS = 6
    mf.PRE_NORM = False
    mf.HIDDEN_DIM = 256
    mf.NUM_OBJECT_QUERIES = 100
    mf.TRANSFORMER_IN_FEATURE = "res5"
    mf.ENFORCE_INPUT_PROJ = False
    mf.TEST = CN()
    mf.TEST.SEMANTIC_ON = True
    mf.TEST.INSTANCE_ON = False
    mf.TEST.PANOPTIC_ON = False
    mf.TEST.OBJECT_MASK_THRESHOLD = 0.0
    mf.TEST.OVERLAP_THRESHOLD = 0.0
    mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False
    mf.SIZE_DIVISIBILITY = 32
    mf.TRANSFORMER_DECODER_NAME = "MultiScaleMaskedTransformerDecoder"
    mf.TRAIN_NUM_POINTS = 112 * 112
    mf.OVERSAMPLE_RATIO = 3.0
    mf.IMPORTANCE_SAMPLE_RATIO = 0.75

    head = cfg.MODEL.SEM_SEG_HEAD
    head.MASK_DIM = 256
    head.TRANSFORMER_ENC_LAYERS = 0
    head.PIXEL_DECODER_NAME = "BasePixelDecoder"
    head.USE_LAYERNORM = False
    head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4
    head.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8

    swin = cfg.MODEL.SWIN = CN()
    swin.PRETRAIN_IMG_SIZE = 224
    swin.PATCH_SIZE = 4
    swin.EMBED_DIM = 96
    swin.DEPTHS = [2, 2, 6, 2]
    swin.NUM_HEADS = [3, 6, 12, 24]
    swin.WINDOW_SIZE = 7
    swin.MLP_RATIO = 4.0
    swin.QKV_BIAS = True
    swin.QK_SCALE = None
    swin.DROP_RATE = 0.0
    swin.ATTN_DROP_RATE = 0.0
    swin.DROP_PATH_RATE = 0.3
    swin.APE = False
    swin.PATCH_NORM = True
    swin.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    swin.USE_CHECKPOINT = False

    # large-scale jitter (LSJ) augmentation of the COCO "new baseline" mappers
    cfg.INPUT.IMAGE_SIZE = 1024
    cfg.INPUT.MIN_SCALE = 0.1
    cfg.INPUT.MAX_SCALE = 2.0


def add_maskformer2_video_config(cfg: CN) -> None:
    """Keys of Video Mask2Former (frame sampling of the video mappers)."""
    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    cfg.INPUT.SAMPLING_FRAME_RANGE = 20
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False
    cfg.INPUT.SAMPLING_RANDOM = True
    cfg.INPUT.SAMPLING_INTERVAL = 5
    cfg.INPUT.AUGMENTATIONS = []


def add_rankseg_config(cfg: CN) -> None:
    """RankSeg's keys (upstream's names and defaults; the method is in ``modeling/rankseg/``)."""
    rs = cfg.MODEL.RANKSEG = CN()
    rs.FLAG = False  # multi-label head + top-k selection + rank-adaptive norm
    rs.USE_GT = False  # oracle: suppress categories absent from the ground truth
    rs.LOSS_WEIGHT = 0  # weight of the multi-label (asymmetric) loss
    rs.TOPK = 0  # categories kept per image
    rs.SHARE_EMBEDDING = False  # use the query classifier's rows as category embeddings
    rs.HIDDEN_DIM = 512  # width of the multi-label head


def add_package_config(cfg: CN) -> None:
    """Keys this package adds (no upstream project has them): one config system serves Mask2Former and MaskFormer.

    ``MODEL.MASK_FORMER.MASK_LOSS`` chooses the mask loss and the matcher's mask cost: ``"point_sampled_bce"``
    (Mask2Former: BCE + dice on ``TRAIN_NUM_POINTS`` sampled points; the default, so Mask2Former's configs mean
    what they mean upstream) or ``"full_mask_focal"`` (MaskFormer: sigmoid focal loss + dice on whole masks; set by
    the ``configs/maskformer/`` files).

    ``MODEL.MASK_FORMER.TEST.WINDOW_SIZE``: frames per backbone + pixel-decoder pass when VideoMaskFormer runs
    inference on a whole video (the transformer decoder still sees every frame; <= 0: all frames in one pass,
    as upstream).

    ``MODEL.MASK_FORMER.TRACK_CLASS_FROM_LAST_FRAME``: upstream's video training targets, in which a track absent
    from the clip's last sampled frame is "no object" (False, the default: it keeps its category).

    ``MODEL.RESNETS.CONTRACT_DILATION`` (``build_resnet_deeplab_backbone``): mmseg's ``contract_dilation``, the first
    block of a dilated stage (dilation d > 1) has dilation d // 2 (needs ``RES5_MULTI_GRID`` all ones); with it
    mmseg's ResNetV1c-D8 of RankSeg's per-pixel configs is expressible. False: detectron2 DeepLab's behaviour.

    The semantic training mapper's augmentations (mmsegmentation's pipeline for its per-pixel configs):
    ``INPUT.RESIZE.TYPE`` ``"shortest_edge"`` (detectron2's ``ResizeShortestEdge`` from ``MIN_SIZE_TRAIN``,
    ``MAX_SIZE_TRAIN``, ``MIN_SIZE_TRAIN_SAMPLING``; the default) or ``"ratio_range"`` (mmseg's ``Resize`` with
    ``img_scale=INPUT.RESIZE.SCALE``, ``ratio_range=INPUT.RESIZE.RATIO_RANGE``). ``INPUT.AUGMENTATION_STYLE``
    ``"detectron2"`` (the default: crop, ``ColorAugSSDTransform``, flip) or ``"mmseg"`` (mmseg's ``RandomCrop``
    with ``cat_max_ratio``, flip, then ``PhotoMetricDistortion``), still switched by ``INPUT.CROP.ENABLED`` and
    ``INPUT.COLOR_AUG_SSD``.

    ``MODEL.VIT`` and ``MODEL.BEIT``: the per-pixel family's transformer backbones, Segmenter's ViT and UPerNet's
    BEiT (mmseg backbones, which have no detectron2 keys; :func:`_add_vit_config`, :func:`_add_beit_config`).

    ``MODEL.PRECISION``: ``"fp32"`` (the default) or ``"bf16"``: training and inference under
    ``torch.autocast(device_type, dtype=torch.bfloat16)`` with the backbone in ``channels_last``, on the CPU and on
    CUDA; the losses, the matcher's costs, RankSeg's LayerNorms over ranks, the post-processing after the decoder
    and the deformable attention's sampling offsets, weights and locations stay float32. Where bfloat16 would not
    pay (a CPU without ``amx_bf16`` / ``avx512_bf16``, a GPU without bfloat16) the model runs in float32 and says
    why once in the log (:mod:`mask2former_rankseg.utils.precision`).

    ``MODEL.COMPILE``: ``True`` compiles the model's forward in place with ``torch.compile`` (inductor, mode
    default; parameter names unchanged) for training, evaluation and the predictor; the first call compiles (minutes
    on a small CPU).
    """
    cfg.MODEL.MASK_FORMER.MASK_LOSS = "point_sampled_bce"
    cfg.MODEL.PRECISION = "fp32"
    cfg.MODEL.COMPILE = False
    cfg.MODEL.MASK_FORMER.TEST.WINDOW_SIZE = 32
    cfg.MODEL.MASK_FORMER.TRACK_CLASS_FROM_LAST_FRAME = False
    cfg.MODEL.RESNETS.CONTRACT_DILATION = False
    cfg.INPUT.RESIZE = CN()
    cfg.INPUT.RESIZE.TYPE = "shortest_edge"
    cfg.INPUT.RESIZE.SCALE = (2048, 512)
    cfg.INPUT.RESIZE.RATIO_RANGE = (0.5, 2.0)
    cfg.INPUT.AUGMENTATION_STYLE = "detectron2"
    _add_per_pixel_config(cfg)
    _add_solver_config(cfg)
    _add_vit_config(cfg)
    _add_beit_config(cfg)


def _add_per_pixel_config(cfg: CN) -> None:
    """The per-pixel models' keys (``SemanticSegmentor``; mmseg's settings that detectron2 has no key for).

    ``MODEL.SEM_SEG_HEAD.TEST_MODE``: "whole" (one pass over the image) or "slide" (windows of
    ``TEST_CROP_SIZE`` (h, w) every ``TEST_STRIDE`` (h, w) pixels, overlapping logits averaged; mmseg's
    ``test_cfg``). ``MODEL.AUX_HEAD``: the auxiliary head trained beside the main one (``NAME`` "" for none or
    "FCNHead"; its map, width, convolutions, dropout and loss weight). ``MODEL.RANKSEG.IN_FEATURE`` /
    ``POOL_SIZE``: the backbone map the per-pixel multi-label head reads and the size it is pooled to (0: read
    unpooled, as upstream's UPerNet RankSeg configs; Segmenter's head: the size its ranking block pools the map to).
    ``MODEL.SEM_SEG_HEAD.POOL_SCALES`` / ``DROPOUT``: the pyramid pooling scales of ``UPerHead`` and the Dropout2d
    before its classifier (its width is detectron2's head width key ``CONVS_DIM``; ``DeepLabV3Head`` keeps detectron2
    DeepLab's ``ASPP_*`` keys). ``MODEL.SEGMENTER``: Segmenter's mask transformer head (``MaskTransformerHead``):
    blocks, heads, width, FFN width, dropout, stochastic depth, and whether its class tokens are the backbone's (the
    ``backbone-cls-emb`` configs).
    """
    cfg.MODEL.SEM_SEG_HEAD.TEST_MODE = "whole"
    cfg.MODEL.SEM_SEG_HEAD.TEST_CROP_SIZE = (512, 512)
    cfg.MODEL.SEM_SEG_HEAD.TEST_STRIDE = (341, 341)
    cfg.MODEL.AUX_HEAD = CN()
    cfg.MODEL.AUX_HEAD.NAME = ""
    cfg.MODEL.AUX_HEAD.IN_FEATURES = ["res4"]
    cfg.MODEL.AUX_HEAD.CONVS_DIM = 256
    cfg.MODEL.AUX_HEAD.NUM_CONVS = 1
    cfg.MODEL.AUX_HEAD.DROPOUT = 0.1
    cfg.MODEL.AUX_HEAD.LOSS_WEIGHT = 0.4
    cfg.MODEL.RANKSEG.IN_FEATURE = "res5"
    cfg.MODEL.RANKSEG.POOL_SIZE = 16
    cfg.MODEL.RANKSEG.ML_LOSS = "asymmetric"  # the image-level loss: "asymmetric" (2, 0, clip 0.05) or "bce"
    cfg.MODEL.SEGMENTER = CN()
    cfg.MODEL.SEGMENTER.N_LAYERS = 2
    cfg.MODEL.SEGMENTER.N_HEADS = 12
    cfg.MODEL.SEGMENTER.D_MODEL = 768
    cfg.MODEL.SEGMENTER.D_FF = 3072
    cfg.MODEL.SEGMENTER.DROPOUT = 0.1
    cfg.MODEL.SEGMENTER.DROP_PATH_RATE = 0.0
    cfg.MODEL.SEGMENTER.CLS_EMB_FROM_BACKBONE = False
    cfg.MODEL.SEM_SEG_HEAD.POOL_SCALES = [1, 2, 3, 6]
    cfg.MODEL.SEM_SEG_HEAD.DROPOUT = 0.1


def _add_solver_config(cfg: CN) -> None:
    """Per-parameter optimiser settings of mmcv's optimiser constructors (``engine/param_rules.py``).

    ``SOLVER.PARAM_RULES``: ``[substring, lr_mult, decay_mult]`` entries (mmcv's ``paramwise_cfg.custom_keys``); a
    parameter whose full name contains a substring gets lr ``BASE_LR * lr_mult`` and weight decay
    ``WEIGHT_DECAY * decay_mult`` in place of the built-in rules, the longest matching substring deciding (equal
    lengths: the alphabetically first). ``SOLVER.LAYER_DECAY_RATE``: BEiT's layer-wise lr decay, each parameter's lr
    times ``rate ** (num_layers + 1 - layer_id)`` with the backbone's ``layer_id(name)`` / ``num_layers`` (1.0: off).
    The defaults change nothing.

    ``SOLVER.FUSED_OPTIMIZER``: ``True`` (the default) takes torch's fused AdamW / SGD step where every parameter is
    a float tensor on one CPU or CUDA device (one kernel per group instead of about ten per parameter; the same
    formulas, float32 rounding differs); ``False``: torch's per-parameter loops, as upstream (and as this package
    trained before December 2026).
    """
    cfg.SOLVER.PARAM_RULES = []
    cfg.SOLVER.LAYER_DECAY_RATE = 1.0
    cfg.SOLVER.FUSED_OPTIMIZER = True


def _add_vit_config(cfg: CN) -> None:
    """``MODEL.VIT`` (``build_vit_backbone``): Segmenter's ViT, mmseg's ``VisionTransformer`` settings; the
    defaults are RankSeg's Segmenter ViT-B/16 at 512 px (drop path 0.1, final norm, the last block's map).

    ``IMG_SIZE``: the image side the position embedding is stored for (mmseg's ``img_size``, the training crop;
    resized to each input's grid at run time). ``OUT_INDICES``: blocks whose maps are returned as ``vit{i}``
    (-1: the last). ``CLS_EMB_START_LAYER``: the block before which ``MODEL.SEM_SEG_HEAD.NUM_CLASSES`` learned
    class tokens join the sequence (returned as ``cls_emb``; -1: none).
    """
    v = cfg.MODEL.VIT = CN()
    v.IMG_SIZE = 512
    v.PATCH_SIZE = 16
    v.EMBED_DIM = 768
    v.DEPTH = 12
    v.NUM_HEADS = 12
    v.MLP_RATIO = 4.0
    v.QKV_BIAS = True
    v.DROP_PATH_RATE = 0.1
    v.FINAL_NORM = True
    v.OUT_INDICES = [-1]
    v.CLS_EMB_START_LAYER = -1
    v.USE_CHECKPOINT = False


def _add_beit_config(cfg: CN) -> None:
    """``MODEL.BEIT`` (``build_beit_backbone``): BEiT with its four-scale pyramid, mmseg's ``BEiT`` settings;
    the defaults are RankSeg's UPerNet-BEiT-L/16 at 640 px.

    ``LAYER_SCALE_INIT``: initial layer scale (BEiT's ``init_values``; 0: none). ``OUT_INDICES``: the four blocks
    feeding res2..res5. ``FPN_NORM``: the normalisation inside the stride-4 branch ``fpn1``.
    """
    b = cfg.MODEL.BEIT = CN()
    b.IMG_SIZE = 640
    b.PATCH_SIZE = 16
    b.EMBED_DIM = 1024
    b.DEPTH = 24
    b.NUM_HEADS = 16
    b.MLP_RATIO = 4.0
    b.QKV_BIAS = True
    b.LAYER_SCALE_INIT = 1e-6
    b.DROP_PATH_RATE = 0.2
    b.OUT_INDICES = [7, 11, 15, 23]
    b.FPN_NORM = "SyncBN"
    b.USE_CHECKPOINT = False


def get_cfg() -> CN:
    """A fresh config holding every key with its upstream default (and this package's own keys)."""
    cfg = _detectron2_defaults()
    add_deeplab_config(cfg)
    add_maskformer2_config(cfg)
    add_maskformer2_video_config(cfg)
    add_rankseg_config(cfg)
    add_package_config(cfg)
    return cfg
