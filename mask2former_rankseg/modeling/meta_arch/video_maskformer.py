"""``VideoMaskFormer``: Video Mask2Former with RankSeg (video instance and video semantic segmentation)."""

from __future__ import annotations

import logging
from typing import Dict, List, Sequence, Tuple

import torch

from ...constants import SUPPRESSED_LOGIT
from ...structures import ImageList
from ...utils.memory import retry_if_cuda_oom
from ..rankseg import multilabel_result, present_classes, scatter_back
from ..registry import META_ARCH_REGISTRY
from .mask_classification import MaskClassificationModel
from .video_postprocess import VIDEO_TOPK, video_instance_inference, video_semantic_inference

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class VideoMaskFormer(MaskClassificationModel):
    """Backbone and pixel decoder per frame -> video transformer decoder per clip -> (RankSeg) -> video results.

    A clip's frames share one set of queries; each query predicts a class for the clip and a mask per frame
    (``pred_masks`` [B, Q, T, h, w]). RankSeg ranks the categories once per clip from the clip's query
    features (decoder layer 3), exactly as :class:`MaskFormer` does per image (the same steps of
    :mod:`..rankseg.wiring`). Submodule names are upstream's (``backbone``, ``sem_seg_head``,
    ``criterion``, ``ml_head``, ``ml_norm``).

    Inference treats the whole video as one clip (as upstream). The backbone and pixel decoder, whose outputs
    depend on their own frame only, run over windows of ``window_size`` frames, and mask resizing and
    post-processing run one frame at a time, so their activations do not grow with the video's length; the
    transformer decoder then sees the features of all frames at once (the result equals an unwindowed run up
    to float rounding) and keeps only its final layer's masks.

    Args:
        sem_seg_head: must provide ``pixel_features`` and a ``predictor`` taking ``num_frames``.
        num_frames: T of a training clip (``INPUT.SAMPLING_FRAME_NUM``).
        semantic_on: also return per-frame semantic labels (VSPW).
        window_size: frames per backbone/pixel-decoder pass at inference (``MODEL.MASK_FORMER.TEST.WINDOW_SIZE``;
            <= 0: all frames at once).
        test_topk_per_video: video instances returned per video (upstream: 10).
        track_class_from_last_frame: upstream's training targets: a track absent from the clip's last sampled
            frame is trained as "no object" (class K) and left out of the multi-label target, because upstream
            takes the classes from the last frame, where its mapper wrote the "no object" class
            (``MODEL.MASK_FORMER.TRACK_CLASS_FROM_LAST_FRAME``; default False: the track keeps its category).
        common: the keyword arguments of :class:`MaskClassificationModel` (backbone, head, criterion,
            normalisation, RankSeg's ``ml_*``; one ranking per clip).
    """

    def __init__(
        self,
        *,
        num_frames: int,
        semantic_on: bool = False,
        window_size: int = 0,
        test_topk_per_video: int = VIDEO_TOPK,
        track_class_from_last_frame: bool = False,
        **common,
    ):
        super().__init__(**common)
        if not hasattr(self.sem_seg_head, "pixel_features"):
            raise ValueError(f"VideoMaskFormer needs a head with pixel_features() (MaskFormerHead), got "
                             f"{type(self.sem_seg_head).__name__}.")
        self.num_frames = num_frames
        self.semantic_on = semantic_on
        self.window_size = window_size
        self.test_topk_per_video = test_topk_per_video
        self.track_class_from_last_frame = track_class_from_last_frame

    @classmethod
    def from_config(cls, cfg) -> VideoMaskFormer:
        return cls(
            **cls.common_kwargs_from_config(cfg),
            num_frames=cfg.INPUT.SAMPLING_FRAME_NUM,
            semantic_on=cfg.MODEL.MASK_FORMER.TEST.SEMANTIC_ON,
            window_size=cfg.MODEL.MASK_FORMER.TEST.WINDOW_SIZE,
            track_class_from_last_frame=cfg.MODEL.MASK_FORMER.TRACK_CLASS_FROM_LAST_FRAME,
        )

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
            chunk = self.normalized(frames[start: start + window])
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

    # training ----------------------------------------------------------------------------------
    def _losses(self, batched_inputs: List[Dict]) -> Dict[str, torch.Tensor]:
        lengths = {len(video["image"]) for video in batched_inputs}
        if len(lengths) != 1:
            raise ValueError(f"VideoMaskFormer: training clips have different lengths {sorted(lengths)}; the "
                             "video mapper samples INPUT.SAMPLING_FRAME_NUM frames per clip.")
        if any("instances" not in video for video in batched_inputs):
            raise ValueError("Training needs 'instances' (one per frame) in every clip dict (use a video mapper).")
        num_frames = lengths.pop()
        if num_frames == 0:
            name = batched_inputs[0].get("video_id", "?")
            raise ValueError(f"VideoMaskFormer: training clip {name!r} has no frames.")
        frames = [frame for video in batched_inputs for frame in video["image"]]
        outputs, images = self._decode(frames, num_frames, window=0)
        targets = self.prepare_targets(batched_inputs, tuple(images.tensor.shape[-2:]))
        present = present_classes([t["labels"] for t in targets], self.num_classes)
        image_logits, topk_index = self.classify(outputs, present)
        return self.weighted_losses(outputs, targets, image_logits, topk_index, present)

    def prepare_targets(self, batched_inputs: List[Dict], padded_size: Tuple[int, int]
                        ) -> List[Dict[str, torch.Tensor]]:
        """Per clip: ``labels`` [N] and ``masks`` [N, T, Hpad, Wpad] (float, zero where a track is absent) of the
        tracks present in at least one frame (``gt_ids`` != -1 somewhere; all tracks without ``gt_ids``); with
        ``track_class_from_last_frame``, label K ("no object") for those absent from the last frame."""
        targets = []
        for video in batched_inputs:
            labels, valid = clip_tracks(video)
            frames = video["instances"]
            if self.track_class_from_last_frame and frames[-1].has("gt_ids"):
                absent_last = frames[-1].gt_ids.to(labels.device)[valid] == -1
                labels = torch.where(absent_last, torch.full_like(labels, self.num_classes), labels)
            masks = torch.zeros((len(labels), len(frames), *padded_size), dtype=torch.float32, device=self.device)
            for t, inst in enumerate(frames):
                frame_masks = inst.gt_masks.to(self.device)[valid.to(self.device)]
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
        image_logits, topk_index = self.classify(outputs, present)
        mask_cls = outputs["pred_logits"]
        if topk_index is not None:
            mask_cls = scatter_back(mask_cls, topk_index, self.num_classes, SUPPRESSED_LOGIT)
        mask_cls, mask_pred = mask_cls[0], outputs["pred_masks"][0]
        del outputs
        image_size = images.image_sizes[0]
        output_size = (int(video.get("height", image_size[0])), int(video.get("width", image_size[1])))
        sizes = (tuple(images.tensor.shape[-2:]), image_size, output_size)
        result = retry_if_cuda_oom(video_instance_inference)(mask_cls, mask_pred, *sizes, topk=self.test_topk_per_video)
        if self.semantic_on:
            result["sem_seg_labels"] = retry_if_cuda_oom(video_semantic_inference)(mask_cls, mask_pred, *sizes)
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
    if len(frames) == 0:
        raise ValueError(f"Video {name!r} has no frames of instances.")
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
