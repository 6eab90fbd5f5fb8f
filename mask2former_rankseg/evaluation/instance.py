"""COCO instance segmentation AP (mask IoU) through pycocotools, detectron2's protocol."""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..utils import comm
from ..utils.predictions import mask_to_rle
from .evaluator import DatasetEvaluator, metadata_or_given, write_results_json

logger = logging.getLogger(__name__)

__all__ = ["InstanceSegEvaluator", "ThingPredictionsEvaluator", "COCO_AP_METRICS"]

COCO_AP_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
"""The first six numbers of COCOeval's summary, in this order."""


class ThingPredictionsEvaluator(DatasetEvaluator):
    """Base of the evaluators that score predictions against a JSON of thing annotations (COCO instances,
    YouTube-VIS): the JSON, the contiguous -> dataset category map, and gathering ``_predictions`` / ``_ids``.

    Args:
        dataset_name: its metadata gives ``json_file`` and ``thing_dataset_id_to_contiguous_id`` (unless given).
        output_dir: where subclasses write their result files (None: nowhere).
        distributed: gather predictions from every process (only rank 0 evaluates).
    """

    needs_semantic_scores = False

    def __init__(self, dataset_name: Optional[str] = None, output_dir: Optional[str] = None, distributed: bool = True,
                 *, json_file: Optional[str] = None,
                 thing_dataset_id_to_contiguous_id: Optional[Mapping[int, int]] = None):
        values = metadata_or_given(type(self).__name__, dataset_name, json_file=json_file,
                                   thing_dataset_id_to_contiguous_id=thing_dataset_id_to_contiguous_id)
        self._dataset_name = dataset_name
        self._json_file = str(values["json_file"])
        self._to_dataset_id = {v: k for k, v in dict(values["thing_dataset_id_to_contiguous_id"]).items()}
        self._output_dir = output_dir
        self._distributed = distributed
        self.reset()

    def reset(self) -> None:
        self._predictions: List[Dict] = []
        self._ids: List = []  # the images (videos) processed

    def _gathered(self) -> Optional[Tuple[List[Dict], List]]:
        """(predictions, ids) of every process; None on the non-main processes of a distributed run."""
        predictions, ids = self._predictions, self._ids
        if self._distributed:
            comm.synchronize()
            predictions = [p for part in comm.gather(predictions) for p in part]
            ids = [i for part in comm.gather(ids) for i in part]
            if not comm.is_main_process():
                return None
        return predictions, ids


class InstanceSegEvaluator(ThingPredictionsEvaluator):
    """Mask AP of ``outputs[i]["instances"]`` (``pred_masks`` [N, H, W] at the image's size, ``scores``,
    ``pred_classes`` contiguous) against a COCO instances JSON.

    Args:
        dataset_name: its metadata gives ``json_file`` and ``thing_dataset_id_to_contiguous_id`` (unless given).
        output_dir: if set, ``coco_instances_results.json`` and ``instances_evaluation.json`` are written there.
        distributed: gather predictions from every process (only rank 0 evaluates).
    """

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        """``inputs[i]`` needs ``image_id``; masks are encoded as COCO RLE right away (small to gather)."""
        for inp, out in zip(inputs, outputs):
            self._ids.append(inp["image_id"])
            inst = out["instances"]
            masks = np.asarray(inst.pred_masks.cpu() > 0.5, dtype=np.uint8)
            scores = inst.scores.cpu().tolist()
            classes = inst.pred_classes.cpu().tolist()
            for mask, score, cls in zip(masks, scores, classes):
                if int(cls) not in self._to_dataset_id:
                    raise ValueError(f"Predicted class {cls} is not a thing class of {self._dataset_name!r}.")
                self._predictions.append({"image_id": inp["image_id"], "category_id": self._to_dataset_id[int(cls)],
                                          "segmentation": mask_to_rle(mask), "score": float(score)})

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """``{"segm": {AP, AP50, AP75, APs, APm, APl, AP-<category>...}}`` in percent (NaN: no ground truth)."""
        gathered = self._gathered()
        if gathered is None:
            return None
        predictions, image_ids = gathered
        if self._output_dir:
            write_results_json(predictions, Path(self._output_dir) / "coco_instances_results.json")
        if not predictions:
            logger.warning("InstanceSegEvaluator(%s): no predictions; AP is 0.", self._dataset_name)
            return OrderedDict(segm={m: 0.0 for m in COCO_AP_METRICS})
        results = OrderedDict(segm=self._score(predictions, sorted(set(image_ids))))
        if self._output_dir:
            write_results_json(results, Path(self._output_dir) / "instances_evaluation.json")
        return results

    def _score(self, predictions: List[Dict], image_ids: List[int]) -> Dict[str, float]:
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):  # pycocotools prints; keep it in the log instead
            gt = COCO(self._json_file)
            dt = gt.loadRes(predictions)
            evaluation = COCOeval(gt, dt, iouType="segm")
            evaluation.params.imgIds = image_ids
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
        logger.info("Instance segmentation (mask AP) on %s:\n%s", self._dataset_name, summary.getvalue())
        metrics: Dict[str, float] = OrderedDict(
            (name, 100.0 * float(v) if v >= 0 else math.nan) for name, v in zip(COCO_AP_METRICS, evaluation.stats)
        )
        # per category: precision [T, R, K, A, M] at all areas (A=0) and maxDets=100 (M=-1)
        precision = evaluation.eval["precision"]
        for k, category_id in enumerate(evaluation.params.catIds):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            name = gt.cats[category_id]["name"]
            metrics[f"AP-{name}"] = 100.0 * float(p.mean()) if p.size else math.nan
        return metrics
