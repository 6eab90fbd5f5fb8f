"""RankSeg wired into a segmenter: its modules and cross-key checks from the config, the ground-truth oracle and
the ranking of the decoder's outputs, target remapping, the multi-label loss and the ``multilabel`` output.

The mask-classification models (``MaskFormer``, ``VideoMaskFormer``) use :func:`rankseg_kwargs_from_config` and
:func:`apply_oracle_and_ranking`; the per-pixel ``SemanticSegmentor`` uses :func:`pixel_rankseg_kwargs_from_config`
and :func:`rank_categories` (its rank-adaptive ``LayerNorm(TOPK)`` sits in the pixel classifier,
:class:`~.pixel_classifier.SelectedLabelClassifier`). Both share :func:`check_rankseg_config`, the asymmetric loss
(:func:`multilabel_loss`) and the ``multilabel`` output (:func:`multilabel_result`).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ...config import ConfigError
from ...constants import SUPPRESSED_LOGIT
from ...utils.precision import Float32LayerNorm, float32_region
from .losses import AsymmetricLoss
from .multilabel_head import MultiLabelHead
from .selection import check_topk, gather_ranked, remap_targets, select_topk, suppress_absent

QUERY_LAYER = 2
"""The multi-label head reads the queries of this decoder layer: ``query_feature[2]``, the 3rd layer's output."""

QUERY_ARCHITECTURES = ("MaskFormer", "VideoMaskFormer")
"""Meta-architectures whose multi-label head reads decoder queries (the decoder-depth check applies to them)."""


def _decoder_layers(mf) -> int:
    """Transformer layers of the decoder (entries of ``query_feature``): DEC_LAYERS also counts the prediction on
    the learnable queries in Mask2Former's masked decoders (image and video), not in MaskFormer's standard one."""
    return mf.DEC_LAYERS if mf.TRANSFORMER_DECODER_NAME == "StandardTransformerDecoder" else mf.DEC_LAYERS - 1


def check_rankseg_config(cfg) -> None:
    """RankSeg's cross-key checks, with ``MODEL.RANKSEG.FLAG``: TOPK within the label set, a positive HIDDEN_DIM,
    POOL_SIZE >= 0, and for the query-reading meta-architectures SHARE_EMBEDDING's width (that of the query
    classifier's rows) and a decoder deep enough for :data:`QUERY_LAYER` (the per-pixel model checks its
    classifier's width when built).

    Raises:
        ConfigError: naming the keys and the fix.
    """
    rs = cfg.MODEL.RANKSEG
    if not rs.FLAG:
        return
    check_topk(rs.TOPK, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
    if rs.ML_LOSS not in ML_LOSSES:
        raise ConfigError(f"MODEL.RANKSEG.ML_LOSS={rs.ML_LOSS!r}: use one of {', '.join(ML_LOSSES)}.")
    if rs.HIDDEN_DIM <= 0:
        raise ConfigError(f"MODEL.RANKSEG.HIDDEN_DIM={rs.HIDDEN_DIM} must be positive.")
    if rs.POOL_SIZE < 0:
        raise ConfigError(f"MODEL.RANKSEG.POOL_SIZE={rs.POOL_SIZE}: the per-pixel multi-label head pools its map to "
                          "POOL_SIZE x POOL_SIZE; use a positive size, or 0 to read the map unpooled.")
    if cfg.MODEL.META_ARCHITECTURE not in QUERY_ARCHITECTURES:
        return
    mf = cfg.MODEL.MASK_FORMER
    if rs.SHARE_EMBEDDING and rs.HIDDEN_DIM != mf.HIDDEN_DIM:
        raise ConfigError(
            f"MODEL.RANKSEG.SHARE_EMBEDDING needs MODEL.RANKSEG.HIDDEN_DIM ({rs.HIDDEN_DIM}) equal to "
            f"MODEL.MASK_FORMER.HIDDEN_DIM ({mf.HIDDEN_DIM}): the class embeddings are shared."
        )
    layers = _decoder_layers(mf)
    if layers <= QUERY_LAYER:
        raise ConfigError(
            f"MODEL.MASK_FORMER.DEC_LAYERS={mf.DEC_LAYERS} is too small for RankSeg with "
            f"{mf.TRANSFORMER_DECODER_NAME}: the multi-label head reads the queries of decoder layer "
            f"{QUERY_LAYER + 1}; use DEC_LAYERS >= {mf.DEC_LAYERS - layers + QUERY_LAYER + 1}."
        )


def rankseg_kwargs_from_config(cfg, d_encoder: int) -> Dict[str, object]:
    """RankSeg's modules and settings from MODEL.RANKSEG for a mask-classification model, as its constructor
    arguments; empty without ``FLAG``. ``ml_use_gt`` is not included (the oracle also runs without RankSeg).

    Args:
        cfg: a config passing :func:`check_rankseg_config`.
        d_encoder: channels of the decoder queries the multi-label head reads.
    Returns:
        ``ml_head`` (:class:`MultiLabelHead`), ``ml_norm`` (the rank-adaptive ``LayerNorm(TOPK + 1)`` over the
        ranked class axis and its "no object" column), ``ml_loss`` (:func:`build_multilabel_loss` of
        ``ML_LOSS``), ``ml_loss_weight``, ``ml_topk``, ``ml_share_embedding``.
    """
    rs = cfg.MODEL.RANKSEG
    if not rs.FLAG:
        return {}
    return {
        "ml_head": MultiLabelHead.from_config(cfg, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, d_encoder),
        "ml_norm": Float32LayerNorm(rs.TOPK + 1),
        **rankseg_settings_from_config(cfg),
    }


def pixel_rankseg_kwargs_from_config(cfg, d_encoder: int) -> Dict[str, object]:
    """RankSeg's modules and settings from MODEL.RANKSEG for a per-pixel model; empty without ``FLAG``.

    The multi-label head is the per-pixel family's: the backbone map ``MODEL.RANKSEG.IN_FEATURE`` average-pooled to
    ``POOL_SIZE`` x ``POOL_SIZE`` (0: unpooled) and projected by a depthwise-separable 1x1 convolution (upstream's
    ``RankSegEncoderHead``); the rank-adaptive ``LayerNorm(TOPK)`` is part of the pixel classifier.

    Args:
        d_encoder: channels of that backbone map.
    Returns:
        ``ml_head``, ``ml_loss``, ``ml_loss_weight``, ``ml_topk``, ``ml_share_embedding``, ``ml_in_feature``.
    """
    rs = cfg.MODEL.RANKSEG
    if not rs.FLAG:
        return {}
    head = MultiLabelHead.from_config(cfg, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, d_encoder, downsample=rs.POOL_SIZE,
                                      projection="separable_conv")
    return {"ml_head": head, "ml_in_feature": rs.IN_FEATURE, **rankseg_settings_from_config(cfg)}


def rankseg_settings_from_config(cfg) -> Dict[str, object]:
    """RankSeg's loss and settings without a multi-label head (for heads that rank the categories themselves, as
    Segmenter's): ``ml_loss``, ``ml_loss_weight``, ``ml_topk``, ``ml_share_embedding``; empty without ``FLAG``."""
    rs = cfg.MODEL.RANKSEG
    if not rs.FLAG:
        return {}
    return {
        "ml_loss": build_multilabel_loss(rs.ML_LOSS),
        "ml_loss_weight": rs.LOSS_WEIGHT,
        "ml_topk": rs.TOPK,
        "ml_share_embedding": rs.SHARE_EMBEDDING,
    }


ML_LOSSES = ("asymmetric", "bce")
"""The values of ``MODEL.RANKSEG.ML_LOSS``."""


def build_multilabel_loss(name: str) -> nn.Module:
    """The image-level loss of ``MODEL.RANKSEG.ML_LOSS``: ``"asymmetric"`` (:class:`AsymmetricLoss`, gamma_neg 2,
    gamma_pos 0, clip 0.05; RankSeg's Mask2Former and most per-pixel configs) or ``"bce"`` (``BCEWithLogitsLoss``,
    the mean over [B, K]; the default of upstream's Segmenter RankSeg head, which its COCO-Stuff-10k files keep)."""
    if name == "asymmetric":
        return AsymmetricLoss(gamma_neg=2, gamma_pos=0, clip=0.05)
    if name == "bce":
        return nn.BCEWithLogitsLoss()
    raise ConfigError(f"MODEL.RANKSEG.ML_LOSS={name!r}: use one of {', '.join(ML_LOSSES)}.")


def check_rankseg_args(ml_head: Optional[nn.Module], ml_norm: Optional[nn.Module], ml_topk: int,
                       num_classes: int) -> None:
    """The checks of a segmenter built with explicit RankSeg arguments: ``ml_head`` and ``ml_norm`` together, and
    :func:`check_topk`."""
    if (ml_head is None) != (ml_norm is None):
        raise ValueError("RankSeg needs both ml_head and ml_norm (or neither).")
    if ml_head is not None:
        check_topk(ml_topk, num_classes)


def rank_categories(ml_head: nn.Module, tokens: torch.Tensor, topk: int,
                    class_embedding: Optional[torch.Tensor] = None, *, no_object: bool = True,
                    present: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Image-level category scores and the selection of the ``topk`` best.

    Args:
        tokens: [B, C, N] (or [B, C, H, W]) what ``ml_head`` reads.
        class_embedding: [K, D] category embeddings (with ``SHARE_EMBEDDING``).
        no_object, present: as :func:`select_topk` (``present``: the oracle's ranking, present categories first).
    Returns:
        ``(image_logits [B, K], topk_index [B, topk + 1])`` (last column "no object"), or [B, topk] without.
    """
    image_logits = ml_head(tokens, class_embedding)
    return image_logits, select_topk(image_logits, topk, no_object=no_object, present=present)


def apply_oracle_and_ranking(
    outputs: Dict,
    *,
    present: Optional[torch.Tensor],
    use_gt: bool,
    ml_head: Optional[nn.Module],
    ml_norm: Optional[nn.Module],
    topk: int,
    class_embedding: Optional[torch.Tensor] = None,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The ground-truth oracle and RankSeg on a mask-classification decoder's outputs, in place.

    With ``use_gt`` the class logits of categories absent from ``present`` are suppressed. With ``ml_head``
    the queries of decoder layer :data:`QUERY_LAYER` are scored per category, the top-``topk`` are
    selected, and every layer's logits (final and auxiliary) become the rank-ordered k+1 columns through
    ``ml_norm``.

    Args:
        outputs: the decoder's dict: ``pred_logits`` [B, Q, K+1], ``aux_outputs``, ``query_feature`` ([Q, B, C]
            per layer). For clips B counts clips: one ranking per clip from the clip's queries.
        present: [B, K] bool categories in the ground truth, or None without annotations.
        class_embedding: [K, C] the query classifier's rows (with ``SHARE_EMBEDDING``).
    Returns:
        ``(image_logits [B, K], topk_index [B, topk + 1])``, or ``(None, None)`` without ``ml_head``.
    """
    if use_gt:
        if present is None:
            raise ValueError(
                "MODEL.RANKSEG.USE_GT (the ground-truth oracle) needs 'instances' in the inputs at inference "
                "too; it cannot run on images or videos without annotations."
            )
        outputs["pred_logits"] = suppress_absent(outputs["pred_logits"], present, SUPPRESSED_LOGIT)
    if ml_head is None:
        return None, None
    tokens = outputs["query_feature"][QUERY_LAYER].permute(1, 2, 0)  # [Q, B, C] -> [B, C, Q]
    image_logits, topk_index = rank_categories(ml_head, tokens, topk, class_embedding)
    for out in [outputs, *outputs["aux_outputs"]]:
        out["pred_logits"] = ml_norm(gather_ranked(out["pred_logits"], topk_index))
    return image_logits, topk_index


def ranked_targets(targets: List[Dict[str, torch.Tensor]], topk_index: Optional[torch.Tensor],
                   num_classes: int) -> List[Dict[str, torch.Tensor]]:
    """Targets for the ranked class axis: labels as rank positions, unselected segments dropped
    (:func:`remap_targets`); unchanged without a selection (``topk_index`` None)."""
    if topk_index is None:
        return targets
    return remap_targets(targets, topk_index, num_classes)


@float32_region
def multilabel_loss(ml_loss: nn.Module, image_logits: torch.Tensor, present: torch.Tensor,
                    weight: float) -> torch.Tensor:
    """``loss_ml``: ``ml_loss`` of the image logits [B, K] against the categories present [B, K] bool, times
    ``weight``."""
    return ml_loss(image_logits, present.to(image_logits.dtype)) * weight


def multilabel_result(image_logits: torch.Tensor, topk_index: torch.Tensor, *,
                      no_object: bool = True) -> Dict[str, torch.Tensor]:
    """The ``multilabel`` output of one image or clip: ``scores`` its logits [K] and ``topk`` the selected
    categories [k] (``topk_index`` [k + 1] without its "no object" column, or [k] as it is with ``no_object``
    False)."""
    return {"scores": image_logits, "topk": topk_index[:-1] if no_object else topk_index}

