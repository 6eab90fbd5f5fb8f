"""Panoptic quality (PQ, SQ, RQ) with panopticapi's protocol, through ``hotcoco.panoptic``
(panopticapi itself is not on the package index; hotcoco implements the same protocol and signature).

Predictions are written in COCO panoptic format -- one PNG per image with segment ids encoded as RGB
(``id = R + 256 G + 256^2 B``, 0 = void) and a JSON whose ``annotations`` carry ``segments_info`` with
dataset category ids -- and scored against the dataset's ``panoptic_json`` / ``panoptic_root``.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import numpy as np
from hotcoco.panoptic import PanopticEval
from PIL import Image

from ..data.catalog import MetadataCatalog
from ..utils import comm
from ..utils.panoptic import id2rgb, rgb2id
from .evaluator import DatasetEvaluator, write_results_json, write_text_atomic

logger = logging.getLogger(__name__)

__all__ = ["COCOPanopticEvaluator", "id2rgb", "rgb2id"]

PQ_GROUPS = (("All", ""), ("Things", "_th"), ("Stuff", "_st"))


class COCOPanopticEvaluator(DatasetEvaluator):
    """Panoptic quality of ``outputs[i]["panoptic_seg"] = (seg [H, W], segments_info)``.

    ``segments_info`` entries have ``id``, ``category_id`` (contiguous) and ``isthing``; ids missing from it
    are void. Contiguous ids are mapped back to dataset ids with the metadata's
    ``thing_dataset_id_to_contiguous_id`` / ``stuff_dataset_id_to_contiguous_id`` (upstream's names).

    Args:
        dataset_name: its metadata gives ``panoptic_json``, ``panoptic_root`` and the id maps (unless given).
        output_dir: if set, predictions (``panoptic_predictions.json`` + ``panoptic_predictions/*.png``) and
            ``panoptic_evaluation.json`` are written there; otherwise predictions go to a temporary folder.
        distributed: gather predictions from every process (only rank 0 evaluates).
    """

    needs_semantic_scores = False

    def __init__(self, dataset_name: Optional[str] = None, output_dir: Optional[str] = None, distributed: bool = True,
                 *, panoptic_json: Optional[str] = None, panoptic_root: Optional[str] = None,
                 thing_dataset_id_to_contiguous_id: Optional[Mapping[int, int]] = None,
                 stuff_dataset_id_to_contiguous_id: Optional[Mapping[int, int]] = None):
        meta = None
        if dataset_name is not None:
            meta = MetadataCatalog.get(dataset_name)

        def pick(value, key):
            if value is None and meta is not None:
                value = meta.get(key)
            if value is None:
                raise ValueError(f"COCOPanopticEvaluator needs {key} (argument, or metadata of {dataset_name!r}).")
            return value

        self._dataset_name = dataset_name
        self._gt_json = str(pick(panoptic_json, "panoptic_json"))
        self._gt_folder = str(pick(panoptic_root, "panoptic_root"))
        things = dict(pick(thing_dataset_id_to_contiguous_id, "thing_dataset_id_to_contiguous_id"))
        stuff = dict(pick(stuff_dataset_id_to_contiguous_id, "stuff_dataset_id_to_contiguous_id"))
        self._thing_to_dataset = {v: k for k, v in things.items()}
        self._stuff_to_dataset = {v: k for k, v in stuff.items()}
        self._output_dir = output_dir
        self._distributed = distributed
        self.reset()

    def reset(self) -> None:
        self._predictions: List[Dict] = []

    def _dataset_category(self, segment: Mapping) -> int:
        contiguous = int(segment["category_id"])
        table = self._thing_to_dataset if segment.get("isthing", False) else self._stuff_to_dataset
        if contiguous not in table:
            kind = "thing" if segment.get("isthing", False) else "stuff"
            raise ValueError(f"Predicted {kind} category {contiguous} has no dataset id in the metadata of "
                             f"{self._dataset_name!r}.")
        return table[contiguous]

    def process(self, inputs: List[Dict], outputs: List[Dict]) -> None:
        """``inputs[i]`` needs ``image_id`` and ``file_name``."""
        for inp, out in zip(inputs, outputs):
            seg, segments_info = out["panoptic_seg"]
            seg = np.asarray(seg.cpu() if hasattr(seg, "cpu") else seg, dtype=np.int64)
            segments = []
            for s in segments_info:
                segments.append({"id": int(s["id"]), "category_id": self._dataset_category(s),
                                 "iscrowd": 0, "area": int((seg == int(s["id"])).sum())})
            listed = {s["id"] for s in segments}
            present = set(np.unique(seg).tolist()) - {0}
            if present - listed:  # ids without an entry are void, as in detectron2's evaluator
                seg = np.where(np.isin(seg, sorted(present - listed)), 0, seg)
            with io.BytesIO() as buffer:
                Image.fromarray(id2rgb(seg)).save(buffer, format="PNG")
                png = buffer.getvalue()
            self._predictions.append({"image_id": inp["image_id"],
                                      "file_name": Path(inp["file_name"]).stem + ".png",
                                      "segments_info": segments, "png": png})

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        """``{"panoptic_seg": {PQ, SQ, RQ, PQ_th, SQ_th, RQ_th, PQ_st, SQ_st, RQ_st, PQ-<category>...}}``, percent."""
        predictions = self._predictions
        if self._distributed:
            comm.synchronize()
            predictions = [p for part in comm.gather(predictions) for p in part]
            if not comm.is_main_process():
                return None
        if not predictions:
            logger.warning("COCOPanopticEvaluator(%s): no predictions; PQ is 0.", self._dataset_name)
            zeros = {f"{m}{suffix}": 0.0 for _, suffix in PQ_GROUPS for m in ("PQ", "SQ", "RQ")}
            return OrderedDict(panoptic_seg=zeros)
        with tempfile.TemporaryDirectory(prefix="panoptic_eval_") as tmp:
            base = Path(self._output_dir) if self._output_dir else Path(tmp)
            results = self._score(predictions, base, Path(tmp))
        if self._output_dir:
            write_results_json(results, Path(self._output_dir) / "panoptic_evaluation.json")
        return results

    def _score(self, predictions: List[Dict], out_dir: Path, tmp: Path) -> Dict[str, Dict[str, float]]:
        gt = json.loads(Path(self._gt_json).read_text())
        predicted_ids = {p["image_id"] for p in predictions}
        gt_annotations = [a for a in gt["annotations"] if a["image_id"] in predicted_ids]
        if len(gt_annotations) < len(gt["annotations"]):
            logger.warning("Panoptic evaluation on %d of the %d images of %s (those with predictions).",
                           len(gt_annotations), len(gt["annotations"]), self._gt_json)
        unknown = predicted_ids - {a["image_id"] for a in gt["annotations"]}
        if unknown:
            raise ValueError(f"Predictions for image ids {sorted(unknown)[:5]} that {self._gt_json} does not annotate.")
        # hotcoco wants integer image ids; ADE20K's (and our synthetic) ids are file stems: number them
        gt_ids = sorted({a["image_id"] for a in gt["annotations"]}, key=str)
        numbers = {image_id: i for i, image_id in enumerate(gt_ids)}
        renumbered_gt = {**gt, "annotations": [{**a, "image_id": numbers[a["image_id"]]} for a in gt_annotations],
                         "images": [{**im, "id": numbers[im["id"]]} for im in gt.get("images", [])
                                    if im["id"] in predicted_ids]}
        gt_subset = tmp / "gt_subset.json"
        gt_subset.write_text(json.dumps(renumbered_gt))

        pred_folder = out_dir / "panoptic_predictions"
        pred_folder.mkdir(parents=True, exist_ok=True)
        for p in predictions:
            (pred_folder / p["file_name"]).write_bytes(p["png"])
        annotations = [{k: v for k, v in p.items() if k != "png"} for p in predictions]
        write_text_atomic(out_dir / "panoptic_predictions.json", json.dumps({**gt, "annotations": annotations}))
        pred_json = tmp / "predictions_renumbered.json"
        pred_json.write_text(json.dumps({**renumbered_gt, "annotations": [
            {**a, "image_id": numbers[a["image_id"]]} for a in annotations]}))

        evaluation = PanopticEval(str(gt_subset), str(pred_json), gt_folder=self._gt_folder,
                                  pred_folder=str(pred_folder))
        evaluation.evaluate()
        raw = evaluation.results()
        metrics: Dict[str, float] = OrderedDict()
        for group, suffix in PQ_GROUPS:
            for m in ("PQ", "SQ", "RQ"):
                metrics[f"{m}{suffix}"] = 100.0 * float(raw[group][m.lower()])
        names = {c["id"]: c["name"] for c in gt.get("categories", [])}
        for category, scores in raw.get("per_class", {}).items():
            if float(scores["pq"]) >= 0:  # -1: the category has no segment on either side
                metrics[f"PQ-{names.get(int(category), category)}"] = 100.0 * float(scores["pq"])
        logger.info("Panoptic results on %s: PQ %.2f (things %.2f, stuff %.2f), SQ %.2f, RQ %.2f",
                    self._dataset_name, metrics["PQ"], metrics["PQ_th"], metrics["PQ_st"], metrics["SQ"], metrics["RQ"])
        return OrderedDict(panoptic_seg=metrics)
