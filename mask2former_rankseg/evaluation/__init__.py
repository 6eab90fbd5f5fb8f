"""Evaluators: semantic segmentation metrics, panoptic quality, mask AP and RankSeg's ranking metrics."""

from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    format_results_table,
    inference_context,
    inference_on_dataset,
    semantic_output,
    write_results_json,
    write_text_atomic,
)
from .instance import InstanceSegEvaluator
from .multilabel import RankSegEvaluator, image_average_precision, image_precision, image_recall
from .panoptic import COCOPanopticEvaluator
from .sem_seg import SemSegEvaluator, compute_sem_seg_metrics
from .vspw import VideoConsistency, VSPWEvaluator, clip_consistency
from .ytvis import YTVISEvaluator, spatio_temporal_iou, ytvis_evaluate

__all__ = [
    "COCOPanopticEvaluator",
    "InstanceSegEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "RankSegEvaluator",
    "SemSegEvaluator",
    "VSPWEvaluator",
    "VideoConsistency",
    "YTVISEvaluator",
    "clip_consistency",
    "spatio_temporal_iou",
    "ytvis_evaluate",
    "compute_sem_seg_metrics",
    "format_results_table",
    "image_average_precision",
    "image_precision",
    "image_recall",
    "inference_context",
    "inference_on_dataset",
    "semantic_output",
    "write_results_json",
    "write_text_atomic",
]
