"""VSPW video semantic segmentation: mIoU and video consistency VC_n.

mIoU (and fwIoU, mACC, pACC) is :class:`SemSegEvaluator`'s, over every frame, on VSPW's labels made contiguous
(PNG value v in 1..124 -> v - 1; 0 "others" and 255 void ignored), as upstream RankSeg's ``VSPWEvaluator``.

Video consistency, as VSPW's official ``VC_perclip.py`` (VSPW-dataset/VSPW_code) defines it: for every clip of n
consecutive frames i..i+n-1 of a video, take the pixels whose ground-truth label is the same in all n frames
(compared on the raw label PNG values, 0 and 255 included), and count the fraction of them whose predicted label
is also the same in all n frames::

    gt_common = AND_{j=1..n-1} (gt[i] == gt[i+j])      pred_common = AND_{j=1..n-1} (pred[i] == pred[i+j])
    acc_i = |pred_common AND gt_common| / |gt_common|

VC_n is the mean of acc_i over all clips of all videos, clips with an empty ``gt_common`` (acc NaN) left out.
As in the official script, a video of L frames gives the clips starting at i = 0 .. L - n - 1 (the clip ending
at the last frame is not counted) and a video of at most n frames gives none. Reported in percent, for n = 8
and 16 (VC8, VC16).

Evaluation dataset dicts hold clips of a video (``frame_offset``, ``video_length``); the frames of a video are
streamed in order, so only the last 15 frames of the open video are kept. Clips of one video split across
processes are stitched when the results are gathered.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..data.datasets.vspw import vspw_labels_to_contiguous
from ..data.detection_utils import read_image
from ..utils import comm
from .evaluator import DatasetEvaluator, write_results_json
from .sem_seg import SemSegEvaluator

logger = logging.getLogger(__name__)

__all__ = ["VSPWEvaluator", "VideoConsistency", "clip_consistency"]

VC_CLIP_LENGTHS = (8, 16)


def clip_consistency(gt: Sequence[np.ndarray], pred: Sequence[np.ndarray]) -> float:
    """acc of one clip (see the module docstring): n [H, W] ground-truth and n prediction maps. NaN when no pixel
    keeps its ground-truth label over the clip."""
    gt_common = np.ones(gt[0].shape, dtype=bool)
    pred_common = np.ones(gt[0].shape, dtype=bool)
    for j in range(1, len(gt)):
        gt_common &= gt[0] == gt[j]
        pred_common &= pred[0] == pred[j]
    total = int(gt_common.sum())
    return float((pred_common & gt_common).sum()) / total if total else float("nan")


@dataclass
class _Part:
    """A run of consecutive frames of one video processed in order by one process."""

    video_id: Any
    video_length: int
    first: int
    next: int
    head: List[Tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # first (window - 1) frames
    tail: List[Tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # last (window - 1) frames

    @property
    def complete(self) -> bool:
        return self.first == 0 and self.next == self.video_length


class VideoConsistency:
    """Streaming VC_n (see the module docstring): ``add`` frames of videos in order, ``merge`` the states of all
    processes.

    Args:
        clip_lengths: the n of VC_n.
    """

    def __init__(self, clip_lengths: Sequence[int] = VC_CLIP_LENGTHS):
        if not clip_lengths or min(clip_lengths) < 2:
            raise ValueError(f"Clip lengths must be >= 2, got {clip_lengths}.")
        self.clip_lengths = tuple(int(n) for n in clip_lengths)
        self.keep = max(self.clip_lengths) - 1
        self.sums = {n: [0.0, 0] for n in self.clip_lengths}  # n -> [sum of acc, number of clips]
        self.parts: List[_Part] = []  # parts that do not cover their whole video (they may need stitching)
        self._open: Optional[_Part] = None

    def add(self, video_id: Any, frame_index: int, video_length: int, gt: np.ndarray, pred: np.ndarray) -> None:
        """Frame ``frame_index`` of a video of ``video_length`` frames: raw ground truth and predicted labels."""
        part = self._open
        if part is None or part.video_id != video_id or part.next != frame_index:
            self._close()
            part = self._open = _Part(video_id, int(video_length), int(frame_index), int(frame_index))
        frames = part.tail + [(gt, pred)]
        self._count_clips(frames, frame_index, part.video_length, first_allowed=part.first)
        if len(part.head) < self.keep:
            part.head.append((gt, pred))
        part.tail = frames[-self.keep:]
        part.next += 1

    def _count_clips(self, frames: Sequence[Tuple[np.ndarray, np.ndarray]], last: int, video_length: int,
                     first_allowed: int, last_allowed: Optional[int] = None) -> None:
        """Count the clips ending at frame ``last`` (= ``frames[-1]``; ``frames`` are consecutive) whose start lies
        in [``first_allowed``, ``last_allowed``] and is one the protocol counts (<= video_length - n - 1)."""
        for n in self.clip_lengths:
            start = last - n + 1
            if len(frames) < n or start < first_allowed or start > video_length - n - 1:
                continue
            if last_allowed is not None and start > last_allowed:
                continue
            acc = clip_consistency([f[0] for f in frames[-n:]], [f[1] for f in frames[-n:]])
            if not np.isnan(acc):
                self.sums[n][0] += acc
                self.sums[n][1] += 1

    def _close(self) -> None:
        if self._open is not None and not self._open.complete:  # a whole video needs no stitching: drop its frames
            self.parts.append(self._open)
        self._open = None

    def state(self) -> Dict[str, Any]:
        """Picklable state: the clip sums and the parts that may need stitching."""
        self._close()
        return {"sums": self.sums, "parts": list(self.parts)}

    def merge(self, states: Sequence[Mapping[str, Any]]) -> Dict[int, float]:
        """VC_n in percent from the states of all processes (in rank order); clips spanning two parts of a video
        (consecutive frame ranges) are counted here."""
        total = {n: [0.0, 0] for n in self.clip_lengths}
        for state in states:
            for n, (s, c) in state["sums"].items():
                total[n][0] += s
                total[n][1] += c
        seams = VideoConsistency(self.clip_lengths)
        parts = sorted((p for state in states for p in state["parts"]), key=lambda p: (str(p.video_id), p.first))
        running: Optional[_Part] = None  # the frames merged so far of the current video (its last ``keep``)
        for part in parts:
            if running is None or running.video_id != part.video_id or running.next != part.first:
                running = _Part(part.video_id, part.video_length, part.first, part.next, tail=list(part.tail))
                continue
            frames = list(running.tail)
            for k, frame in enumerate(part.head):  # clips starting before ``part`` and ending inside it
                frames.append(frame)
                seams._count_clips(frames, part.first + k, part.video_length, first_allowed=running.first,
                                   last_allowed=part.first - 1)
            whole_part_in_head = len(part.head) == part.next - part.first
            running.tail = (frames if whole_part_in_head else list(part.tail))[-self.keep:]
            running.next = part.next
        for n, (s, c) in seams.sums.items():
            total[n][0] += s
            total[n][1] += c
        return {n: 100.0 * s / c if c else float("nan") for n, (s, c) in total.items()}


class VSPWEvaluator(DatasetEvaluator):
    """mIoU and VC8 / VC16 of per-frame predictions on a VSPW-layout dataset (see the module docstring).

    ``process`` takes the inputs (one clip each: ``video_id``, ``sem_seg_file_names``, ``frame_indices`` or all
    frames, ``frame_offset``, ``video_length``) and the outputs (a list with one dict per clip holding
    ``sem_seg_labels`` [T, H, W] at the original size, or ``sem_seg`` [K, T, H, W] scores; a bare dict is accepted).
    ``evaluate`` returns ``{"sem_seg": {mIoU, fwIoU, mACC, pACC, VC8, VC16, IoU-<class>..., ACC-<class>...}}``.

    Args:
        dataset_name: its metadata gives ``stuff_classes`` and ``ignore_label`` (unless given).
        output_dir: if set, ``vspw_evaluation.json`` is written there.
        distributed: gather from every process (only rank 0 returns).
        clip_lengths: the n of the VC_n reported.
    """

    def __init__(self, dataset_name: Optional[str] = None, output_dir: Optional[str] = None, distributed: bool = True,
                 *, num_classes: Optional[int] = None, ignore_label: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None, clip_lengths: Sequence[int] = VC_CLIP_LENGTHS):
        self._sem_seg = SemSegEvaluator(dataset_name, distributed=distributed, num_classes=num_classes,
                                        ignore_label=ignore_label, class_names=class_names)
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._clip_lengths = tuple(clip_lengths)
        self.reset()

    def reset(self) -> None:
        self._sem_seg.reset()
        self._consistency = VideoConsistency(self._clip_lengths)

    def process(self, inputs: List[Dict], outputs: Any) -> None:
        if isinstance(outputs, Mapping):
            outputs = [outputs]
        num_classes = self._sem_seg.confusion_matrix.shape[0] - 1
        for inp, out in zip(inputs, outputs):
            video = inp.get("video_id")
            if "sem_seg_file_names" not in inp:
                raise ValueError(f"VSPW video {video} has no 'sem_seg_file_names': nothing to evaluate against "
                                 "(a split without ground truth cannot be scored here).")
            labels = _predicted_labels(out, video)
            files = inp["sem_seg_file_names"]
            indices = inp.get("frame_indices", range(len(files)))
            if labels.shape[0] != len(files):
                raise ValueError(f"VSPW video {video}: {labels.shape[0]} predicted frames for {len(files)} frames.")
            offset = int(inp.get("frame_offset", 0))
            video_length = int(inp.get("video_length", inp.get("length", len(files))))
            for t, (index, path) in enumerate(zip(indices, files)):
                raw = read_image(path)
                pred = labels[t]
                if raw.shape != pred.shape:
                    raise ValueError(f"VSPW video {video}, frame {index}: prediction {pred.shape} and ground truth "
                                     f"{raw.shape} ({path}) differ in size; predictions must be at the original size.")
                self._sem_seg.add(pred, vspw_labels_to_contiguous(raw, num_classes), source=path)
                self._consistency.add(video, offset + int(index), video_length, raw,
                                      pred.astype(np.uint8 if num_classes < 256 else np.int32))

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        results = self._sem_seg.evaluate()  # gathers the confusion matrices when distributed
        states = [self._consistency.state()]
        if self._distributed:
            states = comm.gather(states[0])
            if not comm.is_main_process():
                return None
        consistency = self._consistency.merge(states)
        metrics: Dict[str, float] = OrderedDict()
        for name, value in results["sem_seg"].items():
            metrics[name] = value
            if name == "pACC":
                metrics.update((f"VC{n}", v) for n, v in consistency.items())
        logger.info("VSPW on %s: mIoU %.2f, %s", self._dataset_name, metrics["mIoU"],
                    ", ".join(f"VC{n} {v:.2f}" for n, v in consistency.items()))
        output = OrderedDict(sem_seg=metrics)
        if self._output_dir:
            write_results_json(output, Path(self._output_dir) / "vspw_evaluation.json")
        return output


def _predicted_labels(output: Mapping[str, Any], video: Any) -> np.ndarray:
    """[T, H, W] int64 labels from ``sem_seg_labels`` [T, H, W] or ``sem_seg`` scores [K, T, H, W]."""
    if "sem_seg_labels" in output:
        labels = output["sem_seg_labels"]
    elif "sem_seg" in output:
        labels = output["sem_seg"].argmax(dim=0)
    else:
        raise KeyError(f"Output for VSPW video {video} has neither 'sem_seg_labels' [T, H, W] nor 'sem_seg' "
                       f"[K, T, H, W]; set MODEL.MASK_FORMER.TEST.SEMANTIC_ON.")
    labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).astype(np.int64)
    if labels.ndim != 3:
        raise ValueError(f"Output for VSPW video {video}: labels of shape {labels.shape}; expected [T, H, W].")
    return labels
