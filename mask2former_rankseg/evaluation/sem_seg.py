"""Semantic segmentation metrics from a confusion matrix: mIoU, fwIoU, mACC, pACC, per-class IoU/ACC."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..utils import comm
from .evaluator import DatasetEvaluator, write_results_json
from .ground_truth import load_sem_seg_gt

logger = logging.getLogger(__name__)


class SemSegEvaluator(DatasetEvaluator):
    """detectron2's semantic segmentation protocol.

    The confusion matrix is [K+1, K+1] indexed [prediction, ground truth]; ground-truth ``ignore_label``
    pixels are dropped. Classes with no ground-truth pixel have NaN IoU/ACC and do not enter the means.

    Args:
        dataset_name: reads ``stuff_classes`` and ``ignore_label`` from its metadata (unless given).
        distributed: gather the matrices from every process before evaluating.
        output_dir: if set, ``sem_seg_evaluation.json`` is written there.
        num_classes, ignore_label, class_names: override the metadata.
    """

    def __init__(self, dataset_name: Optional[str] = None, distributed: bool = True,
                 output_dir: Optional[str] = None, *, num_classes: Optional[int] = None,
                 ignore_label: Optional[int] = None, class_names: Optional[Sequence[str]] = None):
        meta = None
        if dataset_name is not None:
            from ..data.catalog import MetadataCatalog

            meta = MetadataCatalog.get(dataset_name)
        if class_names is None and meta is not None:
            class_names = meta.get("stuff_classes")
        if num_classes is None:
            if class_names is None:
                raise ValueError(
                    f"SemSegEvaluator needs num_classes or metadata 'stuff_classes' (dataset {dataset_name!r})."
                )
            num_classes = len(class_names)
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        if ignore_label is None:
            ignore_label = meta.get("ignore_label", 255) if meta is not None else 255
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._num_classes = num_classes
        self._ignore_label = ignore_label
        self._class_names: List[str] = list(class_names)
        self.reset()

    def reset(self) -> None:
        self._conf_matrix = np.zeros((self._num_classes + 1, self._num_classes + 1), dtype=np.int64)

    def process(self, inputs, outputs) -> None:
        for inp, out in zip(inputs, outputs):
            pred = out["sem_seg"].argmax(dim=0).cpu().numpy().astype(np.int64)
            gt = load_sem_seg_gt(inp)
            if gt.shape != pred.shape:
                raise ValueError(
                    f"Prediction {pred.shape} and ground truth {gt.shape} of "
                    f"{inp.get('sem_seg_file_name', inp.get('file_name'))} differ in size; the model must "
                    "resize its output to the input's 'height'/'width'."
                )
            self.add(pred, gt)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Accumulate one [H, W] prediction against its [H, W] ground truth."""
        k = self._num_classes
        gt = gt.copy()
        invalid = (gt == self._ignore_label) | (gt < 0) | (gt >= k)
        if np.any(invalid & (gt != self._ignore_label)):
            bad = np.unique(gt[invalid & (gt != self._ignore_label)])[:5].tolist()
            raise ValueError(f"Ground truth holds labels {bad} outside [0, {k}) and != ignore {self._ignore_label}.")
        gt[invalid] = k
        self._conf_matrix += np.bincount((k + 1) * pred.reshape(-1) + gt.reshape(-1),
                                         minlength=(k + 1) ** 2).reshape(k + 1, k + 1)

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        conf = self._conf_matrix
        if self._distributed:
            comm.synchronize()
            gathered = comm.all_gather(conf)
            if not comm.is_main_process():
                return None
            conf = sum(gathered)
        results = OrderedDict(sem_seg=compute_sem_seg_metrics(conf, self._class_names))
        self._log_per_class(results["sem_seg"])
        if self._output_dir:
            write_results_json(results, Path(self._output_dir) / "sem_seg_evaluation.json")
        return results

    def _log_per_class(self, metrics: Dict[str, float]) -> None:
        lines = [f"{name:>30s}  IoU {metrics[f'IoU-{name}']:6.2f}  ACC {metrics[f'ACC-{name}']:6.2f}"
                 for name in self._class_names if np.isfinite(metrics[f"IoU-{name}"])]
        logger.debug("Per-class results (classes present in the ground truth):\n%s", "\n".join(lines))


def compute_sem_seg_metrics(conf: np.ndarray, class_names: Sequence[str]) -> Dict[str, float]:
    """Metrics (percent) from a [K+1, K+1] confusion matrix indexed [prediction, ground truth]."""
    k = conf.shape[0] - 1
    acc = np.full(k, np.nan)
    iou = np.full(k, np.nan)
    tp = conf.diagonal()[:-1].astype(float)
    pos_gt = conf[:-1, :-1].sum(axis=0).astype(float)
    pos_pred = conf[:-1, :-1].sum(axis=1).astype(float)
    acc_valid = pos_gt > 0
    acc[acc_valid] = tp[acc_valid] / pos_gt[acc_valid]
    union = pos_gt + pos_pred - tp
    iou_valid = acc_valid & (union > 0)
    iou[iou_valid] = tp[iou_valid] / union[iou_valid]
    total_gt = pos_gt.sum()
    class_weights = pos_gt / total_gt if total_gt > 0 else pos_gt
    metrics = OrderedDict()
    metrics["mIoU"] = 100 * float(iou[iou_valid].mean()) if iou_valid.any() else float("nan")
    metrics["fwIoU"] = 100 * float((iou[iou_valid] * class_weights[iou_valid]).sum())
    metrics["mACC"] = 100 * float(acc[acc_valid].mean()) if acc_valid.any() else float("nan")
    metrics["pACC"] = 100 * float(tp.sum() / total_gt) if total_gt > 0 else float("nan")
    for i, name in enumerate(class_names):
        metrics[f"IoU-{name}"] = 100 * float(iou[i])
    for i, name in enumerate(class_names):
        metrics[f"ACC-{name}"] = 100 * float(acc[i])
    return metrics
