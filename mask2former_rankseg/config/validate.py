"""Cross-key checks that single key types cannot express."""

from __future__ import annotations

from .config import ConfigError

VIDEO_DECODER = "VideoMultiScaleMaskedTransformerDecoder"

RANKSEG_MIN_DEC_LAYERS = 4
"""The multi-label head reads the queries of the 3rd decoder layer: DEC_LAYERS - 1 >= 3."""


def validate_config(cfg) -> None:
    """Raise one :class:`ConfigError` naming the keys and the fix when ``cfg`` is inconsistent."""
    rs = cfg.MODEL.RANKSEG
    num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    if rs.FLAG:
        if not 0 < rs.TOPK <= num_classes:
            raise ConfigError(
                f"MODEL.RANKSEG.TOPK={rs.TOPK} must lie in [1, MODEL.SEM_SEG_HEAD.NUM_CLASSES={num_classes}]; "
                f"set TOPK <= {num_classes}."
            )
        if rs.HIDDEN_DIM <= 0:
            raise ConfigError(f"MODEL.RANKSEG.HIDDEN_DIM={rs.HIDDEN_DIM} must be positive.")
        if rs.SHARE_EMBEDDING and rs.HIDDEN_DIM != cfg.MODEL.MASK_FORMER.HIDDEN_DIM:
            raise ConfigError(
                f"MODEL.RANKSEG.SHARE_EMBEDDING needs MODEL.RANKSEG.HIDDEN_DIM ({rs.HIDDEN_DIM}) equal to "
                f"MODEL.MASK_FORMER.HIDDEN_DIM ({cfg.MODEL.MASK_FORMER.HIDDEN_DIM}): the class embeddings are "
                "shared."
            )
        if (cfg.MODEL.META_ARCHITECTURE in ("MaskFormer", "VideoMaskFormer")
                and cfg.MODEL.MASK_FORMER.DEC_LAYERS < RANKSEG_MIN_DEC_LAYERS):
            raise ConfigError(
                f"MODEL.MASK_FORMER.DEC_LAYERS={cfg.MODEL.MASK_FORMER.DEC_LAYERS} is too small for RankSeg: the "
                f"multi-label head reads the 3rd decoder layer; use DEC_LAYERS >= {RANKSEG_MIN_DEC_LAYERS}."
            )
    video_arch = cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer"
    video_decoder = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME == VIDEO_DECODER
    if video_arch != video_decoder and cfg.MODEL.META_ARCHITECTURE in ("MaskFormer", "VideoMaskFormer"):
        raise ConfigError(
            f"MODEL.META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE!r} with MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME="
            f"{cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME!r}: the video meta-architecture and the video decoder "
            f"({VIDEO_DECODER!r}) go together; use both (video configs) or neither."
        )
    if cfg.SOLVER.IMS_PER_BATCH <= 0:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} must be positive.")
    if len(cfg.MODEL.PIXEL_MEAN) != len(cfg.MODEL.PIXEL_STD):
        raise ConfigError("MODEL.PIXEL_MEAN and MODEL.PIXEL_STD must have the same length.")
