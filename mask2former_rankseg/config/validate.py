"""Cross-key checks that single key types cannot express. RankSeg's own checks live with its config mapping
(``modeling.rankseg.check_rankseg_config``); ``modeling.validate_model_config`` runs both."""

from __future__ import annotations

from .config import ConfigError

PRECISIONS = ("fp32", "bf16")
"""``MODEL.PRECISION`` values (``mask2former_rankseg.utils.precision``)."""

VIDEO_DECODER = "VideoMultiScaleMaskedTransformerDecoder"
_MASK_FORMER_INPUTS = {
    "MultiScaleMaskedTransformerDecoder": ("multi_scale_pixel_decoder",),
    "StandardTransformerDecoder": ("transformer_encoder", "pixel_embedding"),  # or a backbone feature name
}


def validate_config(cfg) -> None:
    """Raise one :class:`ConfigError` naming the keys and the fix when ``cfg`` is inconsistent (RankSeg's keys
    are checked by ``modeling.rankseg.check_rankseg_config``)."""
    video_arch = cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer"
    video_decoder = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == VIDEO_DECODER
    if video_arch != video_decoder and cfg.MODEL.META_ARCHITECTURE in ("MaskFormer", "VideoMaskFormer"):
        raise ConfigError(
            f"MODEL.META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE!r} with MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME="
            f"{cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME!r}: the video meta-architecture and the video decoder "
            f"({VIDEO_DECODER!r}) go together; use both (video configs) or neither."
        )
    if cfg.MODEL.META_ARCHITECTURE == "MaskFormer":
        _check_decoder_input(cfg.MODEL.MASK_FORMER)
    if cfg.SOLVER.IMS_PER_BATCH <= 0:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} must be positive.")
    check_precision(cfg.MODEL.PRECISION)
    if not isinstance(cfg.MODEL.COMPILE, bool):
        raise ConfigError(f"MODEL.COMPILE={cfg.MODEL.COMPILE!r}: use True (torch.compile the model) or False.")
    if not isinstance(cfg.SOLVER.FUSED_OPTIMIZER, bool):
        raise ConfigError(f"SOLVER.FUSED_OPTIMIZER={cfg.SOLVER.FUSED_OPTIMIZER!r}: use True (torch's fused optimizer "
                          "step) or False (its per-parameter loops).")
    if len(cfg.MODEL.PIXEL_MEAN) != len(cfg.MODEL.PIXEL_STD):
        raise ConfigError("MODEL.PIXEL_MEAN and MODEL.PIXEL_STD must have the same length.")


def check_precision(value) -> str:
    """``MODEL.PRECISION`` or a ``ConfigError`` naming the key."""
    if value not in PRECISIONS:
        raise ConfigError(f"MODEL.PRECISION={value!r}: use one of {list(PRECISIONS)} ('fp32' the default, 'bf16' "
                          "bfloat16 autocast with losses, matcher, rank LayerNorms and post-processing in float32).")
    return value


def _check_decoder_input(mf) -> None:
    """The masked decoder reads the pixel decoder's 3 scales; the standard decoder reads one map."""
    in_feature, name = mf.TRANSFORMER_IN_FEATURE, mf.TRANSFORMER_DECODER_NAME
    multi_scale = in_feature == "multi_scale_pixel_decoder"
    if name == "MultiScaleMaskedTransformerDecoder" and not multi_scale:
        raise ConfigError(
            f"MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE={in_feature!r} names one feature map, but "
            f"TRANSFORMER_DECODER_NAME={name!r} reads the pixel decoder's 3 scales ('multi_scale_pixel_decoder'). "
            "For a MaskFormer config (upstream MaskFormer's files set no decoder name) set "
            "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME 'StandardTransformerDecoder' and MODEL.MASK_FORMER.MASK_LOSS "
            "'full_mask_focal', as configs/maskformer/ does."
        )
    if name == "StandardTransformerDecoder" and multi_scale:
        raise ConfigError(
            f"MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME={name!r} reads one feature map; set "
            f"TRANSFORMER_IN_FEATURE to one of {list(_MASK_FORMER_INPUTS[name])} or a backbone feature (e.g. 'res5'), "
            "not 'multi_scale_pixel_decoder'."
        )
