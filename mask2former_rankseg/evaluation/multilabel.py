"""RankSeg's ranking metrics: image-level recall and precision of the selected top-k, and ranking mAP.

Images whose ground truth holds no category (all pixels ignored) are left out of every mean. Upstream
averages per test batch, counts such images as recall 1 and precision 0 and reads the present
categories off the resized test image; here they are read at the original resolution.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ..constants import IGNORE_LABEL
from ..data.catalog import MetadataCatalog
from ..utils import comm
from .evaluator import DatasetEvaluator, write_results_json
from .ground_truth import gt_source, load_sem_seg_gt

logger = logging.getLogger(__name__)


def _check(present: torch.Tensor, index: torch.Tensor, what: str) -> None:
    if present.dim() != 2 or index.dim() != 2 or index.shape[0] != present.shape[0]:
        raise ValueError(
            f"present must be [B, K] and {what} [B, *]; got {tuple(present.shape)} and {tuple(index.shape)}."
        )


def _mean_over_valid(per_image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return per_image[valid].mean() if valid.any() else per_image.new_tensor(float("nan"))


def _hits(present: torch.Tensor, topk_index: torch.Tensor) -> torch.Tensor:
    """[B] number of selected categories that are present."""
    _check(present, topk_index, "topk_index")
    k = present.shape[1]
    if topk_index.numel() and (topk_index.min() < 0 or topk_index.max() >= k):
        raise ValueError(f"topk_index holds categories outside [0, {k}) (drop the 'no object' index {k}).")
    return torch.gather(present.bool(), 1, topk_index.long()).sum(1).float()


def image_recall(present: torch.Tensor, topk_index: torch.Tensor) -> torch.Tensor:
    """Mean over images with >= 1 present category of |present ∩ selected| / |present|.

    Args:
        present: [B, K] bool, categories in each image's ground truth.
        topk_index: [B, k] long, the selected categories (distinct, "no object" excluded).
    Returns a scalar tensor in [0, 1] (NaN when no image has a present category).
    """
    hits = _hits(present, topk_index)
    count = present.sum(1).float()
    valid = count > 0
    return _mean_over_valid(hits / count.clamp(min=1), valid)


def image_precision(present: torch.Tensor, topk_index: torch.Tensor) -> torch.Tensor:
    """Mean over images with >= 1 present category of |present ∩ selected| / k.

    Args as :func:`image_recall`; returns a scalar tensor in [0, 1].
    """
    hits = _hits(present, topk_index)
    valid = present.sum(1) > 0
    return _mean_over_valid(hits / max(topk_index.shape[1], 1), valid)


def image_average_precision(present: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Mean over images of the average precision of ranking all categories by ``scores``.

    Per image, rank the K categories by score (descending, 1-based ranks); with the present categories
    at ranks r_1 < r_2 < ... < r_n, AP = (1/n) * sum_j j / r_j, i.e. the mean over present categories of
    (present categories ranked at or above it) / (its rank). Images with n = 0 are skipped.

    Args:
        present: [B, K] bool.
        scores: [B, K] float image-level scores (logits or probabilities).
    Returns a scalar tensor in [0, 1].
    """
    _check(present, scores, "scores")
    if scores.shape != present.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and present {tuple(present.shape)} differ in shape.")
    order = torch.argsort(scores.float(), dim=1, descending=True)
    ranked_present = torch.gather(present.bool(), 1, order).float()  # [B, K]: 1 where a present category sits
    hits = ranked_present.cumsum(1)
    ranks = torch.arange(1, scores.shape[1] + 1, device=scores.device, dtype=torch.float32)
    count = ranked_present.sum(1)
    valid = count > 0
    ap = (ranked_present * hits / ranks).sum(1) / count.clamp(min=1)
    return _mean_over_valid(ap, valid)


class RankSegEvaluator(DatasetEvaluator):
    """Recall, precision (of the selected top-k) and mAP (of the full ranking), in percent.

    Reads ``outputs[i]["multilabel"] = {"scores": [K] float, "topk": [k] long}`` and the categories
    present in the ground truth (``sem_seg_file_name`` or ``sem_seg``; ``ignore_label`` excluded).

    Args:
        dataset_name: its metadata gives the number of classes (``stuff_classes``) and ``ignore_label``.
        distributed: gather per-image results from every process (only rank 0 returns).
        output_dir: if set, ``rankseg_evaluation.json`` is written there (atomically).
        num_classes, ignore_label: override the metadata.
    """

    needs_semantic_scores = False

    def __init__(self, dataset_name: Optional[str] = None, distributed: bool = True,
                 output_dir: Optional[str] = None, *, num_classes: Optional[int] = None,
                 ignore_label: Optional[int] = None):
        meta = None
        if dataset_name is not None:
            meta = MetadataCatalog.get(dataset_name)
        if num_classes is None:
            classes = meta.get("stuff_classes") if meta is not None else None
            if classes is None:
                raise ValueError(
                    f"RankSegEvaluator needs num_classes or metadata 'stuff_classes' (dataset {dataset_name!r})."
                )
            num_classes = len(classes)
        if ignore_label is None:
            ignore_label = meta.get("ignore_label", IGNORE_LABEL) if meta is not None else IGNORE_LABEL
        self._dataset_name = dataset_name
        self._num_classes = int(num_classes)
        self._ignore_label = int(ignore_label)
        self._distributed = distributed
        self._output_dir = output_dir
        self.reset()

    def reset(self) -> None:
        self._present: List[np.ndarray] = []
        self._scores: List[np.ndarray] = []
        self._topk: List[np.ndarray] = []

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        for inp, out in zip(inputs, outputs):
            ml = out.get("multilabel")
            if ml is None:
                raise KeyError(
                    "RankSegEvaluator needs the model output 'multilabel' ({'scores', 'topk'}); the model was "
                    "not built with RankSeg: set MODEL.RANKSEG.FLAG True or drop this evaluator."
                )
            scores = ml["scores"].detach().float().cpu().reshape(-1).numpy()
            topk = ml["topk"].detach().cpu().reshape(-1).numpy().astype(np.int64)
            if scores.shape[0] != self._num_classes:
                raise ValueError(
                    f"'multilabel' scores for {gt_source(inp)} have {scores.shape[0]} entries; "
                    f"expected {self._num_classes} (one per class of {self._dataset_name!r})."
                )
            labels = np.unique(load_sem_seg_gt(inp))
            labels = labels[labels != self._ignore_label]
            if labels.size and (labels.min() < 0 or labels.max() >= self._num_classes):
                raise ValueError(
                    f"{gt_source(inp)} holds labels {labels.tolist()[:5]}... outside [0, {self._num_classes}) "
                    f"that are not the ignore label {self._ignore_label}."
                )
            present = np.zeros(self._num_classes, dtype=bool)
            present[labels] = True
            self._present.append(present)
            self._scores.append(scores)
            self._topk.append(topk)

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """``{"rankseg": {"recall", "precision", "mAP" (percent), "num_images"}}``."""
        present, scores, topk = self._present, self._scores, self._topk
        if self._distributed:
            comm.synchronize()
            gathered = comm.all_gather((present, scores, topk))
            if not comm.is_main_process():
                return None
            present = [p for g in gathered for p in g[0]]
            scores = [s for g in gathered for s in g[1]]
            topk = [t for g in gathered for t in g[2]]
        nan = float("nan")
        if not present:
            logger.warning("RankSegEvaluator(%s): no image was processed.", self._dataset_name)
            metrics = OrderedDict(recall=nan, precision=nan, mAP=nan, num_images=0)
        else:
            if len({t.shape[0] for t in topk}) != 1:
                raise ValueError(f"'multilabel' topk sizes differ across images: {sorted({len(t) for t in topk})}.")
            p = torch.from_numpy(np.stack(present))
            s = torch.from_numpy(np.stack(scores))
            t = torch.from_numpy(np.stack(topk))
            metrics = OrderedDict(
                recall=100 * float(image_recall(p, t)),
                precision=100 * float(image_precision(p, t)),
                mAP=100 * float(image_average_precision(p, s)),
                num_images=len(present),
            )
            logger.info("RankSeg ranking on %s (%d images, top-%d): recall %.2f  precision %.2f  mAP %.2f",
                        self._dataset_name, len(present), t.shape[1], metrics["recall"], metrics["precision"],
                        metrics["mAP"])
        results = OrderedDict(rankseg=metrics)
        if self._output_dir:
            write_results_json(results, Path(self._output_dir) / "rankseg_evaluation.json")
        return results
