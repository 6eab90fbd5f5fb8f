"""Semantic segmentation metrics from a confusion matrix: mIoU, fwIoU, mACC, pACC, per-class IoU/ACC."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..constants import IGNORE_LABEL
from ..data.catalog import MetadataCatalog
from ..utils import comm
from .evaluator import DatasetEvaluator, write_results_json
from .ground_truth import gt_source, load_sem_seg_gt

logger = logging.getLogger(__name__)


class SemSegEvaluator(DatasetEvaluator):
    """detectron2's semantic segmentation protocol (http://cocodataset.org/#stuff-eval).

    The confusion matrix is [K+1, K+1], indexed [prediction, ground truth]; ground-truth
    ``ignore_label`` pixels go to the extra column K and are left out of every metric. A class with no
    ground-truth pixel gets NaN IoU/ACC and does not enter the means (as in detectron2), whether or not
    it was predicted; pixels wrongly predicted as it still lower the IoU of their true class.

    Args:
        dataset_name: its metadata gives ``stuff_classes`` and ``ignore_label`` (unless given here).
        distributed: gather the matrices from every process before evaluating (only rank 0 returns).
        output_dir: if set, ``sem_seg_evaluation.json`` is written there (atomically).
        num_classes, ignore_label, class_names: override the metadata.
    """

    needs_semantic_scores = False  # labels suffice: ``sem_seg_labels``, or the argmax of ``sem_seg``

    def __init__(self, dataset_name: Optional[str] = None, distributed: bool = True,
                 output_dir: Optional[str] = None, *, num_classes: Optional[int] = None,
                 ignore_label: Optional[int] = None, class_names: Optional[Sequence[str]] = None):
        meta = None
        if dataset_name is not None:
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
        if len(class_names) != num_classes:
            raise ValueError(
                f"SemSegEvaluator: num_classes={num_classes} but {len(class_names)} class names "
                f"(metadata 'stuff_classes' of {dataset_name!r}); they must agree."
            )
        if ignore_label is None:
            ignore_label = meta.get("ignore_label", IGNORE_LABEL) if meta is not None else IGNORE_LABEL
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._num_classes = int(num_classes)
        self._ignore_label = int(ignore_label)
        self._class_names: List[str] = [str(n) for n in class_names]
        self.reset()

    @property
    def confusion_matrix(self) -> np.ndarray:
        """This process's [K+1, K+1] int64 matrix, indexed [prediction, ground truth]."""
        return self._conf_matrix

    def reset(self) -> None:
        self._conf_matrix = np.zeros((self._num_classes + 1, self._num_classes + 1), dtype=np.int64)

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        """``outputs[i]["sem_seg_labels"]`` ([H, W] labels) or else ``outputs[i]["sem_seg"]`` ([K, H, W] scores,
        argmax taken here), at the original size of ``inputs[i]``."""
        for inp, out in zip(inputs, outputs):
            pred = self._predicted_labels(out, gt_source(inp))
            gt = load_sem_seg_gt(inp)
            if gt.shape != pred.shape:
                raise ValueError(
                    f"Prediction {pred.shape} and ground truth {gt.shape} of {gt_source(inp)} differ in size; "
                    "the model must resize its output to the input's original 'height'/'width'."
                )
            self.add(pred, gt, source=gt_source(inp))

    def _predicted_labels(self, output: Dict, source: str) -> np.ndarray:
        if "sem_seg_labels" in output:
            labels = output["sem_seg_labels"]
            if labels.dim() != 2:
                raise ValueError(f"Output 'sem_seg_labels' for {source} has shape {tuple(labels.shape)}; expected "
                                 "[H, W] class indices.")
            pred = labels.cpu().numpy().astype(np.int64)
            if pred.size and (pred.min() < 0 or pred.max() >= self._num_classes):
                raise ValueError(f"Output 'sem_seg_labels' for {source} holds labels outside [0, {self._num_classes}) "
                                 f"of {self._dataset_name!r}.")
            return pred
        if "sem_seg" not in output:
            raise KeyError(f"The model output for {source} has neither 'sem_seg' nor 'sem_seg_labels' (keys: "
                           f"{sorted(output)}); is MODEL.MASK_FORMER.TEST.SEMANTIC_ON off?")
        scores = output["sem_seg"]
        if scores.dim() != 3 or scores.shape[0] != self._num_classes:
            raise ValueError(
                f"Output 'sem_seg' for {source} has shape {tuple(scores.shape)}; expected "
                f"[{self._num_classes}, H, W] (one score map per class of {self._dataset_name!r})."
            )
        return scores.argmax(dim=0).cpu().numpy().astype(np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray, source: str = "ground truth") -> None:
        """Accumulate one [H, W] prediction (labels in [0, K)) against its [H, W] ground truth."""
        k = self._num_classes
        ignored = gt == self._ignore_label
        bad = ~ignored & ((gt < 0) | (gt >= k))
        if bad.any():
            labels = np.unique(gt[bad])[:5].tolist()
            raise ValueError(
                f"{source} holds labels {labels} outside [0, {k}) that are not the ignore label "
                f"{self._ignore_label}; check num_classes / ignore_label of {self._dataset_name!r}."
            )
        gt = np.where(ignored, k, gt)
        self._conf_matrix += np.bincount(
            (k + 1) * pred.reshape(-1) + gt.reshape(-1), minlength=(k + 1) ** 2
        ).reshape(k + 1, k + 1)

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """``{"sem_seg": {mIoU, fwIoU, mACC, pACC, IoU-<name>..., ACC-<name>...}}`` in percent."""
        conf = self._conf_matrix
        if self._distributed:
            comm.synchronize()
            gathered = comm.all_gather(conf)
            if not comm.is_main_process():
                return None
            conf = np.sum(gathered, axis=0)
        if conf[:-1, :-1].sum() == 0:
            logger.warning("SemSegEvaluator(%s): no labelled pixel was evaluated.", self._dataset_name)
        results = OrderedDict(sem_seg=compute_sem_seg_metrics(conf, self._class_names))
        logger.info("Semantic segmentation results on %s:\n%s", self._dataset_name,
                    per_class_table(results["sem_seg"], self._class_names))
        if self._output_dir:
            write_results_json(results, Path(self._output_dir) / "sem_seg_evaluation.json")
        return results


def compute_sem_seg_metrics(conf: np.ndarray, class_names: Sequence[str]) -> Dict[str, float]:
    """Metrics (percent) from a [K+1, K+1] confusion matrix indexed [prediction, ground truth].

    Row/column K holds ignored ground truth and is dropped. With tp_c the diagonal, gt_c the column
    sums and pred_c the row sums over the K classes:
    IoU_c = tp_c / (gt_c + pred_c - tp_c), ACC_c = tp_c / gt_c (NaN where gt_c = 0),
    mIoU / mACC = mean over non-NaN classes, fwIoU = sum_c gt_c / sum(gt) * IoU_c, pACC = sum(tp) / sum(gt).
    """
    k = conf.shape[0] - 1
    if conf.shape != (k + 1, k + 1) or len(class_names) != k:
        raise ValueError(f"Confusion matrix {conf.shape} does not match {len(class_names)} class names (+1).")
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
    nan = float("nan")
    metrics: Dict[str, float] = OrderedDict()
    metrics["mIoU"] = 100 * float(iou[iou_valid].mean()) if iou_valid.any() else nan
    metrics["fwIoU"] = 100 * float((iou[iou_valid] * pos_gt[iou_valid]).sum() / total_gt) if total_gt else nan
    metrics["mACC"] = 100 * float(acc[acc_valid].mean()) if acc_valid.any() else nan
    metrics["pACC"] = 100 * float(tp.sum() / total_gt) if total_gt else nan
    for i, name in enumerate(class_names):
        metrics[f"IoU-{name}"] = 100 * float(iou[i])
    for i, name in enumerate(class_names):
        metrics[f"ACC-{name}"] = 100 * float(acc[i])
    return metrics


def per_class_table(metrics: Dict[str, float], class_names: Sequence[str]) -> str:
    """Summary line plus a ``class | IoU | ACC`` table of the classes present in the ground truth."""
    summary = "  ".join(f"{m} {metrics[m]:.2f}" for m in ("mIoU", "fwIoU", "mACC", "pACC"))
    width = max([len("class")] + [len(n) for n in class_names])
    lines = [summary, f"{'class':<{width}} | {'IoU':>6} | {'ACC':>6}", f"{'-' * width}-+-{'-' * 6}-+-{'-' * 6}"]
    shown = 0
    for name in class_names:
        iou, acc = metrics[f"IoU-{name}"], metrics[f"ACC-{name}"]
        if np.isnan(iou) and np.isnan(acc):
            continue
        lines.append(f"{name:<{width}} | {iou:6.2f} | {acc:6.2f}")
        shown += 1
    lines.append(f"({shown} of {len(class_names)} classes present in the ground truth)")
    return "\n".join(lines)
