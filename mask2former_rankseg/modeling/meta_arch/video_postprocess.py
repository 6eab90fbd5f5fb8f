"""Turning clip-level mask classification into video results (Video Mask2Former's inference), frame by frame.

Both functions take one video's per-query class logits ``mask_cls`` [Q, K+1] (the last column is "no object")
and mask logits ``mask_pred`` [Q, T, h, w] on the decoder's grid (1/4 of the padded input). Masks are resized
as upstream does -- bilinearly to the padded input size, cropped to the unpadded ``image_size``, bilinearly
to the output size -- but one frame at a time, so memory is that of one full-resolution frame, not T.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch.nn import functional as F

from ...utils.precision import float32_region
from .postprocess import semantic_inference

VIDEO_TOPK = 10
"""Video instances kept per video (upstream's ``inference_video`` keeps the 10 best (query, class) pairs)."""

Size = Tuple[int, int]


def resize_frame_masks(mask_logits: torch.Tensor, padded_size: Size, image_size: Size, output_size: Size
                       ) -> torch.Tensor:
    """[N, t, h, w] decoder-grid logits -> [N, t, H_out, W_out] logits at the original image size."""
    resized = F.interpolate(mask_logits, size=padded_size, mode="bilinear", align_corners=False)
    resized = resized[..., : image_size[0], : image_size[1]]
    return F.interpolate(resized, size=output_size, mode="bilinear", align_corners=False)


@float32_region
def video_instance_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor, padded_size: Size, image_size: Size,
                             output_size: Size, topk: int = VIDEO_TOPK) -> Dict[str, object]:
    """The ``topk`` best (query, class) pairs of the video as video instances.

    Args:
        padded_size: (H, W) of the padded network input; image_size: (h, w) before padding; output_size:
            (height, width) of the original video.
    Returns:
        ``{"image_size": output_size, "pred_scores": list[float] (class probabilities, best first),
        "pred_labels": list[int] contiguous, "pred_masks": list of bool [T, height, width] (cpu, logit > 0)}``.
    """
    num_classes = mask_cls.shape[-1] - 1
    probs = F.softmax(mask_cls.float(), dim=-1)[:, :-1]  # [Q, K]
    scores, flat_index = probs.flatten().topk(min(topk, probs.numel()))
    labels = flat_index % num_classes
    chosen = mask_pred[flat_index // num_classes]  # [N, T, h, w]
    masks = torch.empty((chosen.shape[0], chosen.shape[1], *output_size), dtype=torch.bool)
    for t in range(chosen.shape[1]):
        masks[:, t] = (resize_frame_masks(chosen[:, t: t + 1], padded_size, image_size, output_size)[:, 0] > 0).cpu()
    return {
        "image_size": tuple(output_size),
        "pred_scores": scores.tolist(),
        "pred_labels": labels.tolist(),
        "pred_masks": list(masks),
    }


@float32_region
def video_semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor, padded_size: Size, image_size: Size,
                             output_size: Size) -> torch.Tensor:
    """Per-frame semantic labels [T, height, width] (int64, cpu): the argmax over K of
    ``sum_q softmax(mask_cls)[q, :K] * sigmoid(mask)[q]`` with the masks at the original size (upstream's VSPW
    inference, where the scores are [K, T, H, W] at once)."""
    labels = torch.empty((mask_pred.shape[1], *output_size), dtype=torch.int64)
    for t in range(mask_pred.shape[1]):
        masks = resize_frame_masks(mask_pred[:, t: t + 1], padded_size, image_size, output_size)[:, 0]
        labels[t] = semantic_inference(mask_cls.to(masks), masks).argmax(0).cpu()
    return labels
