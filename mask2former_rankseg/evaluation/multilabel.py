"""RankSeg's ranking metrics: image-level recall and precision of the selected top-k, and ranking mAP."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ..utils import comm
from .evaluator import DatasetEvaluator, write_results_json
from .ground_truth import load_sem_seg_gt


def image_recall(present: torch.Tensor, topk_index: torch.Tensor) -> torch.Tensor:
    """Mean over images with >= 1 present category of |present ∩ selected| / |present|.

    Args: present [B, K] bool; topk_index [B, k] selected categories.
    """
    hits = torch.gather(present, 1, topk_index).sum(1).float()
    count = present.sum(1).float()
    valid = count > 0
    return (hits[valid] / count[valid]).mean() if valid.any() else torch.tensor(float("nan"))


def image_precision(present: torch.Tensor, topk_index: torch.Tensor) -> torch.Tensor:
    """Mean over images with >= 1 present category of |present ∩ selected| / k."""
    hits = torch.gather(present, 1, topk_index).sum(1).float()
    valid = present.sum(1) > 0
    return (hits[valid] / topk_index.shape[1]).mean() if valid.any() else torch.tensor(float("nan"))


def image_average_precision(present: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Mean over images of the average precision of ranking categories by ``scores``.

    Per image, with the present categories at 1-based ranks r_1 < r_2 < ... (in the full ranking):
    AP = mean_j (j / r_j). Images without a present category are skipped.
    """
    order = torch.argsort(scores, dim=1, descending=True)
    ranked_present = torch.gather(present, 1, order).float()  # [B, K], 1 where a present category sits
    hits = ranked_present.cumsum(1)
    ranks = torch.arange(1, scores.shape[1] + 1, device=scores.device, dtype=torch.float32)
    count = present.sum(1).float()
    valid = count > 0
    ap = (ranked_present * hits / ranks).sum(1)[valid] / count[valid]
    return ap.mean() if valid.any() else torch.tensor(float("nan"))


class RankSegEvaluator(DatasetEvaluator):
    """Recall, precision (of the selected top-k) and mAP (of the full ranking), in percent.

    Reads ``outputs[i]["multilabel"] = {"scores": [K], "topk": [k]}`` and the categories present in the
    ground truth (``ignore_label`` excluded).
    """

    def __init__(self, dataset_name: Optional[str] = None, distributed: bool = True,
                 output_dir: Optional[str] = None, *, num_classes: Optional[int] = None,
                 ignore_label: Optional[int] = None):
        meta = None
        if dataset_name is not None:
            from ..data.catalog import MetadataCatalog

            meta = MetadataCatalog.get(dataset_name)
        if num_classes is None:
            classes = meta.get("stuff_classes") if meta is not None else None
            if classes is None:
                raise ValueError("RankSegEvaluator needs num_classes or dataset metadata 'stuff_classes'.")
            num_classes = len(classes)
        if ignore_label is None:
            ignore_label = meta.get("ignore_label", 255) if meta is not None else 255
        self._num_classes = num_classes
        self._ignore_label = ignore_label
        self._distributed = distributed
        self._output_dir = output_dir
        self.reset()

    def reset(self) -> None:
        self._present: List[np.ndarray] = []
        self._scores: List[np.ndarray] = []
        self._topk: List[np.ndarray] = []

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            if "multilabel" not in out:
                raise KeyError(
                    "RankSegEvaluator needs the model's 'multilabel' output: build the model with "
                    "MODEL.RANKSEG.FLAG True."
                )
            gt = load_sem_seg_gt(inp)
            labels = np.unique(gt)
            labels = labels[(labels != self._ignore_label) & (labels >= 0) & (labels < self._num_classes)]
            present = np.zeros(self._num_classes, dtype=bool)
            present[labels] = True
            self._present.append(present)
            self._scores.append(out["multilabel"]["scores"].detach().float().cpu().numpy())
            self._topk.append(out["multilabel"]["topk"].detach().cpu().numpy())

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        present, scores, topk = self._present, self._scores, self._topk
        if self._distributed:
            comm.synchronize()
            gathered = comm.all_gather((present, scores, topk))
            if not comm.is_main_process():
                return None
            present = [p for g in gathered for p in g[0]]
            scores = [s for g in gathered for s in g[1]]
            topk = [t for g in gathered for t in g[2]]
        if not present:
            return OrderedDict(rankseg=OrderedDict(recall=float("nan"), precision=float("nan"),
                                                   mAP=float("nan"), num_images=0))
        p = torch.from_numpy(np.stack(present))
        s = torch.from_numpy(np.stack(scores))
        t = torch.from_numpy(np.stack(topk)).long()
        metrics = OrderedDict(
            recall=100 * float(image_recall(p, t)),
            precision=100 * float(image_precision(p, t)),
            mAP=100 * float(image_average_precision(p, s)),
            num_images=len(present),
        )
        results = OrderedDict(rankseg=metrics)
        if self._output_dir:
            write_results_json(results, Path(self._output_dir) / "rankseg_evaluation.json")
        return results
