"""``VideoMaskFormer``: Video Mask2Former with RankSeg (video instance and video semantic segmentation)."""

from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ...constants import SUPPRESSED_LOGIT
from ...structures import ImageList
from ..rankseg import present_classes, scatter_back
from ..registry import META_ARCH_REGISTRY
from .mask_classification import (
    apply_oracle_and_ranking,
    build_set_criterion,
    check_rankseg_args,
    mask_classification_losses,
    multilabel_result,
    normalized,
    rankseg_kwargs_from_config,
)
from .video_postprocess import VIDEO_TOPK, video_instance_inference, video_semantic_inference

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class VideoMaskFormer(nn.Module):
    """Backbone and pixel decoder per frame -> video transformer decoder per clip -> (RankSeg) -> video results.

    A clip's frames share one set of queries; each query predicts a class for the clip and a mask per frame
    (``pred_masks`` [B, Q, T, h, w]). RankSeg ranks the categories once per clip from the clip's query
    features (decoder layer 3), exactly as :class:`MaskFormer` does per image (the same steps of
    :mod:`.mask_classification`). Submodule names are upstream's (``backbone``, ``sem_seg_head``,
    ``criterion``, ``ml_head``, ``ml_norm``).

    Inference treats the whole video as one clip (as upstream). The backbone and pixel decoder, whose outputs
    depend on their own frame only, run over windows of ``window_size`` frames, and mask resizing and
    post-processing run one frame at a time, so their memory does not grow with the video's length; the
    transformer decoder then sees the features of all frames at once (the result equals an unwindowed run up
    to float rounding).

    Args:
        backbone, sem_seg_head, criterion: as :class:`MaskFormer`; ``sem_seg_head`` must provide
            ``pixel_features`` and a ``predictor`` taking ``num_frames``.
        num_classes: K. num_queries: Q. num_frames: T of a training clip (``INPUT.SAMPLING_FRAME_NUM``).
        size_divisibility: pad frames to a multiple of this (-1: the backbone's).
        pixel_mean, pixel_std: per-channel normalisation in the input's pixel units.
        semantic_on: also return per-frame semantic labels (VSPW).
        window_size: frames per backbone/pixel-decoder pass at inference (``MODEL.MASK_FORMER.TEST.WINDOW_SIZE``;
            <= 0: all frames at once).
        test_topk_per_video: video instances returned per video (upstream: 10).
        ml_*: RankSeg, as :class:`MaskFormer` (``ml_use_gt``: the ground-truth oracle).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        num_classes: int,
        num_queries: int,
        num_frames: int,
        size_divisibility: int,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        semantic_on: bool = False,
        window_size: int = 0,
        test_topk_per_video: int = VIDEO_TOPK,
        ml_head: Optional[nn.Module] = None,
        ml_norm: Optional[nn.Module] = None,
        ml_loss: Optional[nn.Module] = None,
        ml_loss_weight: float = 0.0,
        ml_topk: int = 0,
        ml_use_gt: bool = False,
        ml_share_embedding: bool = False,
    ):
        super().__init__()
        check_rankseg_args(ml_head, ml_norm, ml_topk, num_classes)
        if not hasattr(sem_seg_head, "pixel_features"):
            raise ValueError(f"VideoMaskFormer needs a head with pixel_features() (MaskFormerHead), got "
                             f"{type(sem_seg_head).__name__}.")
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_frames = num_frames
        if size_divisibility < 0:
            size_divisibility = backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.semantic_on = semantic_on
        self.window_size = window_size
        self.test_topk_per_video = test_topk_per_video

        self.ml_head = ml_head
        self.ml_norm = ml_norm
        self.ml_loss = ml_loss
        self.ml_loss_weight = ml_loss_weight
        self.ml_topk = ml_topk
        self.ml_use_gt = ml_use_gt
        self.ml_share_embedding = ml_share_embedding

    @classmethod
    def from_config(cls, cfg) -> VideoMaskFormer:
        from ..build import build_backbone, build_sem_seg_head

        backbone = build_backbone(cfg)
        mf = cfg.MODEL.MASK_FORMER
        return cls(
            backbone=backbone,
            sem_seg_head=build_sem_seg_head(cfg, backbone.output_shape()),
            criterion=build_set_criterion(cfg),
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            num_queries=mf.NUM_OBJECT_QUERIES,
            num_frames=cfg.INPUT.SAMPLING_FRAME_NUM,
            size_divisibility=mf.SIZE_DIVISIBILITY,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            semantic_on=mf.TEST.SEMANTIC_ON,
            window_size=mf.TEST.WINDOW_SIZE,
            ml_use_gt=cfg.MODEL.RANKSEG.USE_GT,
            **rankseg_kwargs_from_config(cfg),
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def forward(self, batched_inputs: List[Dict]) -> List[Dict] | Dict[str, torch.Tensor]:
        """Train: dict of weighted losses. Eval: one dict per video (see ``inference_video``).

        Args:
            batched_inputs: one dict per clip/video: ``image`` (list of T uint8 [3, H, W] frames), optional
                ``height``/``width`` (output size), ``video_id``; for training or the oracle ``instances``
                (list of T per-frame instances with ``gt_ids`` [N] (-1 where the track is absent),
                ``gt_classes`` [N], ``gt_masks`` [N, H, W]; the same N tracks in the same order in every frame).
        """
        if self.training:
            return self._losses(batched_inputs)
        return [self.inference_video(video) for video in batched_inputs]

    # shared ------------------------------------------------------------------------------------
    def _decode(self, frames: Sequence[torch.Tensor], num_frames: int, window: int) -> Tuple[Dict, ImageList]:
        """Decoder outputs for clips of ``num_frames`` consecutive frames; backbone and pixel decoder run on
        ``window`` frames at a time (all at once when ``window <= 0``).

        Returns the outputs and the ImageList of the first window (all frames of a video share its padding).
        """
        window = len(frames) if window <= 0 else window
        predictor_inputs, mask_features, first = [], [], None
        for start in range(0, len(frames), window):
            chunk = normalized(frames[start: start + window], self.pixel_mean, self.pixel_std, self.device)
            images = ImageList.from_tensors(chunk, self.size_divisibility)
            if first is None:
                first = images
            elif images.tensor.shape[-2:] != first.tensor.shape[-2:]:
                raise ValueError("VideoMaskFormer: frames of one batch pad to different sizes "
                                 f"{tuple(first.tensor.shape[-2:])} and {tuple(images.tensor.shape[-2:])}.")
            x, features = self.sem_seg_head.pixel_features(self.backbone(images.tensor))
            predictor_inputs.append(x)
            mask_features.append(features)
        if isinstance(predictor_inputs[0], (list, tuple)):
            x = [torch.cat(level) for level in zip(*predictor_inputs)]
        else:
            x = torch.cat(predictor_inputs)
        outputs = self.sem_seg_head.predictor(x, torch.cat(mask_features), None, num_frames=num_frames)
        return outputs, first

    def _rankseg(self, outputs: Dict, present: Optional[torch.Tensor]
                 ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        class_embedding = None
        if self.ml_head is not None and self.ml_share_embedding:
            class_embedding = self.sem_seg_head.predictor.class_embed.weight[:-1]
        return apply_oracle_and_ranking(
            outputs, present=present, use_gt=self.ml_use_gt, ml_head=self.ml_head, ml_norm=self.ml_norm,
            topk=self.ml_topk, class_embedding=class_embedding,
        )

    # training ----------------------------------------------------------------------------------
    def _losses(self, batched_inputs: List[Dict]) -> Dict[str, torch.Tensor]:
        lengths = {len(video["image"]) for video in batched_inputs}
        if len(lengths) != 1:
            raise ValueError(f"VideoMaskFormer: training clips have different lengths {sorted(lengths)}; the "
                             "video mapper samples INPUT.SAMPLING_FRAME_NUM frames per clip.")
        if any("instances" not in video for video in batched_inputs):
            raise ValueError("Training needs 'instances' (one per frame) in every clip dict (use a video mapper).")
        num_frames = lengths.pop()
        frames = [frame for video in batched_inputs for frame in video["image"]]
        outputs, images = self._decode(frames, num_frames, window=0)
        targets = self.prepare_targets(batched_inputs, tuple(images.tensor.shape[-2:]))
        present = present_classes([t["labels"] for t in targets], self.num_classes)
        image_logits, topk_index = self._rankseg(outputs, present)
        return mask_classification_losses(
            self.criterion, outputs, targets, num_classes=self.num_classes, image_logits=image_logits,
            topk_index=topk_index, present=present, ml_loss=self.ml_loss, ml_loss_weight=self.ml_loss_weight,
        )

    def prepare_targets(self, batched_inputs: List[Dict], padded_size: Tuple[int, int]
                        ) -> List[Dict[str, torch.Tensor]]:
        """Per clip: ``labels`` [N] and ``masks`` [N, T, Hpad, Wpad] (float, zero where a track is absent) of the
        tracks present in at least one frame (``gt_ids`` != -1 somewhere; all tracks without ``gt_ids``)."""
        targets = []
        for video in batched_inputs:
            labels, valid = clip_tracks(video)
            frames = video["instances"]
            masks = torch.zeros((len(labels), len(frames), *padded_size), dtype=torch.float32, device=self.device)
            for t, inst in enumerate(frames):
                frame_masks = inst.gt_masks.to(self.device)[valid]
                masks[:, t, : frame_masks.shape[-2], : frame_masks.shape[-1]] = frame_masks
            targets.append({"labels": labels.to(self.device), "masks": masks})
        return targets

    # inference ---------------------------------------------------------------------------------
    @torch.no_grad()
    def inference_video(self, video: Dict) -> Dict:
        """Clip-level inference over a whole video.

        Returns:
            ``{"image_size": (H, W), "pred_scores": list[float] (<= test_topk_per_video), "pred_labels":
            list[int], "pred_masks": list of bool [T, H, W] (cpu)}``, plus ``"multilabel": {"scores": [K]
            clip logits, "topk": [k]}`` with RankSeg and ``"sem_seg_labels"`` [T, H, W] int64 (cpu) with
            ``semantic_on``; (H, W) is the input's ``height``/``width``, else the frames' size.
        """
        frames = video["image"]
        name = video.get("video_id", "?")
        if len(frames) == 0:
            raise ValueError(f"Video {name!r} has no frames.")
        for t, frame in enumerate(frames):
            if frame.shape != frames[0].shape:
                raise ValueError(f"Video {name!r}: frame {t} has shape {tuple(frame.shape)}, frame 0 has "
                                 f"{tuple(frames[0].shape)}; all frames of a video must have one size.")
        outputs, images = self._decode(frames, len(frames), self.window_size)
        present = None
        if "instances" in video:
            present = present_classes([clip_tracks(video)[0].to(self.device)], self.num_classes)
        image_logits, topk_index = self._rankseg(outputs, present)
        mask_cls = outputs["pred_logits"]
        if topk_index is not None:
            mask_cls = scatter_back(mask_cls, topk_index, self.num_classes, SUPPRESSED_LOGIT)
        mask_cls, mask_pred = mask_cls[0], outputs["pred_masks"][0]
        del outputs
        image_size = images.image_sizes[0]
        output_size = (int(video.get("height", image_size[0])), int(video.get("width", image_size[1])))
        sizes = (tuple(images.tensor.shape[-2:]), image_size, output_size)
        result = video_instance_inference(mask_cls, mask_pred, *sizes, topk=self.test_topk_per_video)
        if self.semantic_on:
            result["sem_seg_labels"] = video_semantic_inference(mask_cls, mask_pred, *sizes)
        if image_logits is not None:
            result["multilabel"] = multilabel_result(image_logits[0], topk_index[0])
        return result


def clip_tracks(video: Dict) -> Tuple[torch.Tensor, torch.Tensor]:
    """The tracks of a clip present in at least one of its frames.

    Args:
        video: a clip dict whose ``instances`` is a list of T per-frame instances with the same N tracks in the
            same order (``gt_classes`` [N], optional ``gt_ids`` [N], -1 where the track is absent in a frame).
    Returns:
        ``(labels [M], valid [N] bool)``: the categories of the M present tracks and which of the N they are.
    """
    frames = video["instances"]
    name = video.get("video_id", "?")
    if len(frames) != len(video["image"]):
        raise ValueError(f"Video {name!r}: {len(frames)} frames of instances for {len(video['image'])} images.")
    sizes = {len(inst) for inst in frames}
    if len(sizes) != 1:
        raise ValueError(f"Video {name!r}: the frames list different numbers of tracks {sorted(sizes)}; the video "
                         "mapper must list the same tracks, in the same order, in every frame.")
    labels = frames[0].gt_classes
    if not all(frame.has("gt_ids") for frame in frames):
        return labels, torch.ones(len(labels), dtype=torch.bool, device=labels.device)
    valid = torch.stack([frame.gt_ids.to(labels.device) != -1 for frame in frames]).any(0)
    return labels[valid], valid
