"""YouTube-VIS video instance segmentation: submission files and video AP with the YouTube-VIS protocol.

The protocol (youtubevos/cocoapi's ``ytvoseval``, which upstream's ``YTVISEvaluator`` runs):

* A prediction and a ground-truth track are compared by their **spatio-temporal mask IoU**: the sum over the
  video's frames of the intersection areas divided by the sum over frames of the union areas (a frame where only
  one of them has a mask adds that mask's area to the union).
* The area of a track is the mean of its non-empty per-frame areas; area ranges are small [0, 128²],
  medium [128², 256²] and large [256², 1e10] pixels (not COCO's 32² / 96²).
* Everything else is COCO's: matching per (video, category) by descending score at IoU thresholds 0.50:0.05:0.95,
  crowd tracks ignored, 101-point interpolated precision, at most 1 / 10 / 100 predictions per video.

The matching and accumulation are pycocotools' ``COCOeval``, fed with the spatio-temporal IoUs (videos play the
role of images); only the IoU and the areas are computed here.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..utils.file_io import AtomicPath
from .evaluator import write_results_json
from .instance import ThingPredictionsEvaluator

logger = logging.getLogger(__name__)

__all__ = [
    "YTVISEvaluator",
    "YTVIS_AREA_RANGES",
    "YTVIS_METRICS",
    "spatio_temporal_iou",
    "video_predictions_to_results",
    "write_submission",
    "ytvis_evaluate",
]

YTVIS_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10")
"""The first eight numbers of the COCO summary (upstream's list), in percent."""

YTVIS_AREA_RANGES = ([0, 1e5 ** 2], [0, 128 ** 2], [128 ** 2, 256 ** 2], [256 ** 2, 1e5 ** 2])
"""all, small, medium, large (pixels), as youtubevos/cocoapi."""

Rle = Dict[str, Any]


def spatio_temporal_iou(prediction: Sequence[Optional[Rle]], ground_truth: Sequence[Optional[Rle]]) -> float:
    """sum_t |P_t ∩ G_t| / sum_t |P_t ∪ G_t| over per-frame compressed RLEs (None where a track has no mask).

    Returns 0 when the union is empty everywhere (the protocol's convention).
    """
    if len(prediction) != len(ground_truth):
        raise ValueError(f"Tracks of {len(prediction)} and {len(ground_truth)} frames cannot be compared.")
    inter = union = 0.0
    for p, g in zip(prediction, ground_truth):
        if p and g:
            inter += float(mask_utils.area(mask_utils.merge([p, g], intersect=True)))
            union += float(mask_utils.area(mask_utils.merge([p, g], intersect=False)))
        elif p or g:
            union += float(mask_utils.area(p or g))
    return inter / union if union > 0 else 0.0


def _mean_area(rles: Sequence[Optional[Rle]], areas: Optional[Sequence[Optional[float]]] = None) -> float:
    """Mean of the non-empty per-frame areas (0 if none)."""
    if areas is None:
        areas = [float(mask_utils.area(r)) if r else None for r in rles]
    present = [a for a in areas if a]
    return float(np.mean(present)) if present else 0.0


def _to_rles(segmentations: Sequence[Any], height: int, width: int) -> List[Optional[Rle]]:
    """Per-frame polygons / uncompressed / compressed RLE -> compressed RLE (None stays None)."""
    out: List[Optional[Rle]] = []
    for segm in segmentations:
        if not segm:
            out.append(None)
        elif isinstance(segm, dict):
            rle = mask_utils.frPyObjects(segm, *segm["size"]) if isinstance(segm["counts"], list) else dict(segm)
            if isinstance(rle["counts"], str):
                rle["counts"] = rle["counts"].encode("ascii")
            out.append(rle)
        else:
            out.append(mask_utils.merge(mask_utils.frPyObjects(segm, height, width)))
    return out


def ytvis_evaluate(ground_truth: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                   video_ids: Optional[Iterable[int]] = None,
                   return_eval: bool = False) -> Dict[str, float] | Tuple[Dict[str, float], Any]:
    """Video AP of ``results`` against a YouTube-VIS JSON (see the module docstring).

    Args:
        ground_truth: the parsed JSON (``videos``, ``annotations``, ``categories``).
        results: submission entries ``{"video_id", "category_id" (dataset id), "score", "segmentations"}``.
        video_ids: the videos evaluated (default: every video of ``ground_truth``); a video without predictions
            counts its tracks as missed.
        return_eval: also return the pycocotools ``COCOeval`` object.
    Returns:
        ``{AP, AP50, AP75, APs, APm, APl, AR1, AR10, AP-<category>...}`` in percent (NaN where no ground truth
        falls in the area range / category).
    Raises:
        ValueError: a result names an unknown video or category, or has the wrong number of frames.
    """
    videos = {v["id"]: v for v in ground_truth["videos"]}
    video_ids = sorted(videos) if video_ids is None else sorted(set(video_ids))
    unknown = [v for v in video_ids if v not in videos]
    if unknown:
        raise ValueError(f"Videos {unknown[:5]} are not in the ground truth.")
    categories = list(ground_truth["categories"])
    cat_ids = {c["id"] for c in categories}
    gt_anns = []
    for i, ann in enumerate(ground_truth.get("annotations") or []):
        video = videos.get(ann["video_id"])
        if video is None:
            continue
        rles = _to_rles(ann["segmentations"], video["height"], video["width"])
        gt_anns.append({"id": i + 1, "image_id": ann["video_id"], "category_id": ann["category_id"],
                        "iscrowd": int(ann.get("iscrowd", 0)), "area": _mean_area(rles, ann.get("areas")),
                        "bbox": [0, 0, 0, 0], "segmentations": rles})
    dt_anns = []
    for i, res in enumerate(results):
        video = videos.get(res["video_id"])
        if video is None:
            raise ValueError(f"Result {i} is for video {res['video_id']}, which is not in the ground truth.")
        if res["category_id"] not in cat_ids:
            raise ValueError(f"Result {i} (video {res['video_id']}) has category id {res['category_id']}, not one of "
                             f"the ground truth's {len(cat_ids)} categories.")
        if len(res["segmentations"]) != video["length"]:
            raise ValueError(f"Result {i} for video {res['video_id']} has {len(res['segmentations'])} frames; the "
                             f"video has {video['length']}.")
        rles = _to_rles(res["segmentations"], video["height"], video["width"])
        dt_anns.append({"id": i + 1, "image_id": res["video_id"], "category_id": res["category_id"], "iscrowd": 0,
                        "score": float(res["score"]), "area": _mean_area(rles), "bbox": [0, 0, 0, 0],
                        "segmentations": rles})

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints
        gt, dt = COCO(), COCO()
        gt.dataset = {"images": [{"id": v} for v in sorted(videos)], "annotations": gt_anns, "categories": categories}
        dt.dataset = {"images": [{"id": v} for v in sorted(videos)], "annotations": dt_anns, "categories": categories}
        gt.createIndex()
        dt.createIndex()
    evaluation = _VideoCOCOeval(gt, dt)
    evaluation.params.imgIds = video_ids
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    logger.info("YouTube-VIS video AP:\n%s", summary.getvalue())
    metrics: Dict[str, float] = OrderedDict(
        (name, 100.0 * float(v) if v >= 0 else math.nan) for name, v in zip(YTVIS_METRICS, evaluation.stats))
    precision = evaluation.eval["precision"]  # [T, R, K, A, M]
    names = {c["id"]: c["name"] for c in categories}
    for k, category_id in enumerate(evaluation.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        metrics[f"AP-{names[category_id]}"] = 100.0 * float(p.mean()) if p.size else math.nan
    return (metrics, evaluation) if return_eval else metrics


class _VideoCOCOeval(COCOeval):
    """``COCOeval`` over videos: IoUs are spatio-temporal, the annotations' ``area`` is the track's mean area."""

    def __init__(self, gt: COCO, dt: COCO):
        super().__init__(gt, dt, iouType="bbox")  # 'bbox': no per-image mask conversion in _prepare
        self.params.areaRng = [list(r) for r in YTVIS_AREA_RANGES]
        self.params.areaRngLbl = ["all", "small", "medium", "large"]

    def computeIoU(self, imgId, catId):  # noqa: N802, N803 (pycocotools' names)
        """[D, G] spatio-temporal IoUs, predictions in the order ``evaluateImg`` sorts them (score, stable)."""
        gts, dts = self._gts[imgId, catId], self._dts[imgId, catId]
        if not gts and not dts:
            return []
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")
        dts = [dts[i] for i in order][: self.params.maxDets[-1]]
        ious = np.zeros((len(dts), len(gts)))
        for i, d in enumerate(dts):
            for j, g in enumerate(gts):
                ious[i, j] = spatio_temporal_iou(d["segmentations"], g["segmentations"])
        return ious


def video_predictions_to_results(video_id: Any, output: Mapping[str, Any], to_dataset_id: Mapping[int, int],
                                 num_frames: Optional[int] = None, image_size: Optional[Tuple[int, int]] = None
                                 ) -> List[Dict[str, Any]]:
    """The submission entries of one video from the model's output (the video contract).

    Args:
        output: ``pred_scores`` [N], ``pred_labels`` [N] (contiguous), ``pred_masks`` N BoolTensors [T, H, W].
        to_dataset_id: contiguous id -> dataset category id.
        num_frames, image_size: when given, every mask must have T = ``num_frames`` and (H, W) = ``image_size``.
    Returns:
        ``{"video_id", "score", "category_id", "segmentations": T compressed RLEs (counts as str)}`` per instance.
    """
    entries = []
    for score, label, masks in zip(output["pred_scores"], output["pred_labels"], output["pred_masks"]):
        label = int(label)
        if label not in to_dataset_id:
            raise ValueError(f"Video {video_id}: predicted class {label} is not one of the dataset's "
                             f"{len(to_dataset_id)} classes.")
        masks = np.asarray(masks.cpu() if hasattr(masks, "cpu") else masks).astype(bool)
        if masks.ndim != 3 or (num_frames is not None and masks.shape[0] != num_frames) or (
                image_size is not None and tuple(masks.shape[1:]) != tuple(image_size)):
            raise ValueError(f"Video {video_id}: predicted masks of shape {masks.shape}; expected [T, H, W] with "
                             f"T={num_frames} and (H, W)={image_size} (the video's frames at their original size).")
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
        segmentations = []
        for rle in rles:
            rle["counts"] = rle["counts"].decode("ascii")
            segmentations.append(rle)
        entries.append({"video_id": video_id, "score": float(score), "category_id": to_dataset_id[label],
                        "segmentations": segmentations})
    return entries


def write_submission(results: Sequence[Mapping[str, Any]], output_dir: str | os.PathLike) -> Tuple[Path, Path]:
    """Write ``results.json`` and ``results.zip`` (holding ``results.json`` at its top level, the file the
    YouTube-VIS evaluation server takes) into ``output_dir``, each atomically."""
    output_dir = Path(output_dir)
    json_path = output_dir / "results.json"
    write_results_json(list(results), json_path)
    zip_path = output_dir / "results.zip"
    with AtomicPath(zip_path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(json_path, arcname="results.json")
    return json_path, zip_path


class YTVISEvaluator(ThingPredictionsEvaluator):
    """Video AP of the model's per-video outputs against a YouTube-VIS JSON, and the server submission.

    ``process`` takes the inputs (one video each: ``video_id``, ``length``, ``height``, ``width``) and the outputs
    (a list with one dict per video: ``pred_scores``, ``pred_labels``, ``pred_masks``; a bare dict is accepted).
    ``evaluate`` writes ``results.json`` and ``results.zip`` to ``output_dir`` and, when the JSON has annotations,
    returns ``{"segm": {AP, AP50, AP75, APs, APm, APl, AR1, AR10, AP-<category>...}}`` over the processed videos
    (``{}`` for a split without annotations, e.g. the official ``valid``/``test``).

    Args:
        dataset_name: its metadata gives ``json_file`` and ``thing_dataset_id_to_contiguous_id`` (unless given).
        output_dir: where the submission (and ``ytvis_evaluation.json``) go.
        distributed: gather predictions from every process (only rank 0 evaluates).
    """

    def process(self, inputs: List[Dict], outputs: Any) -> None:
        if isinstance(outputs, Mapping):
            outputs = [outputs]
        if len(outputs) != len(inputs):
            raise ValueError(f"{len(inputs)} videos but {len(outputs)} outputs; the model returns one dict per video.")
        for inp, out in zip(inputs, outputs):
            video_id = inp["video_id"]
            self._ids.append(video_id)
            self._predictions.extend(video_predictions_to_results(
                video_id, out, self._to_dataset_id, num_frames=int(inp["length"]),
                image_size=(int(inp["height"]), int(inp["width"]))))

    def evaluate(self) -> Optional[Dict[str, Dict[str, float]]]:
        gathered = self._gathered()
        if gathered is None:
            return None
        results, video_ids = gathered
        if self._output_dir:
            json_path, zip_path = write_submission(results, self._output_dir)
            logger.info("YouTube-VIS results of %d videos written to %s and %s (upload the zip to the server).",
                        len(set(video_ids)), json_path, zip_path)
        try:
            ground_truth = json.loads(Path(self._json_file).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise OSError(f"Cannot read the YouTube-VIS ground truth {self._json_file}: {e}") from e
        if "annotations" not in ground_truth:
            logger.info("%s has no annotations: no video AP (submit results.zip to the evaluation server).",
                        self._json_file)
            return OrderedDict()
        if not results:
            logger.warning("YTVISEvaluator(%s): no predictions; every track is missed.", self._dataset_name)
        metrics = ytvis_evaluate(ground_truth, results, video_ids)
        output = OrderedDict(segm=metrics)
        if self._output_dir:
            write_results_json(output, Path(self._output_dir) / "ytvis_evaluation.json")
        return output
