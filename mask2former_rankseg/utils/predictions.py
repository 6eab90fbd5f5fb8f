"""Model outputs as numpy arrays, and as files (the demo's ``--save-json``).

Image models return, per image, the dict of ARCHITECTURE.md ("Model input and output"): ``sem_seg`` [K, H, W] scores,
``panoptic_seg`` ``(id_map [H, W], segments_info)``, ``instances`` (``pred_masks`` [N, H, W], ``scores`` [N],
``pred_classes`` [N]) and, with RankSeg, ``multilabel`` (``scores`` [K] image logits, ``topk`` [k] ids). Clip
(video) models return one dict per clip: ``pred_scores`` [N], ``pred_labels`` [N], ``pred_masks`` (N bool
[T, H, W] masks, one per track), optional ``sem_seg_labels`` [T, H, W] and ``multilabel``.

:func:`save_predictions` / :func:`save_clip_predictions` write, next to a JSON file:

* ``<stem>_sem_seg.png``: the label map (contiguous class ids; 8-bit PNG, 16-bit with more than 255 classes);
* ``<stem>_panoptic.png``: segment ids in COCO panoptic's RGB encoding (``id = R + 256 G + 256^2 B``, 0 void);
* instances as COCO RLEs (pycocotools) inside the JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .file_io import atomic_write
from .panoptic import id2rgb

__all__ = [
    "ConfidentInstances",
    "clip_tracks",
    "confident_instances",
    "encode_image",
    "image_scores",
    "mask_to_rle",
    "save_clip_predictions",
    "save_predictions",
    "semantic_labels",
    "to_numpy",
    "write_bytes_atomic",
]

MASK_THRESHOLD = 0.5
"""``pred_masks`` values above this are inside the mask (they are {0, 1} floats or probabilities)."""

UINT8_LABELS = 255
"""Label maps with at most this many classes are written as 8-bit PNGs, larger ones as 16-bit."""


def to_numpy(value: Any) -> np.ndarray:
    """A tensor (any device) or array-like as a numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def semantic_labels(sem_seg: Any) -> np.ndarray:
    """Per-pixel class scores [K, H, W] -> label map [H, W] int64 (argmax over K)."""
    scores = to_numpy(sem_seg)
    if scores.ndim != 3:
        raise ValueError(f"sem_seg must be [K, H, W] scores, got shape {scores.shape}.")
    return scores.argmax(0).astype(np.int64)


def image_scores(multilabel: Mapping[str, Any]) -> np.ndarray:
    """RankSeg's image-level scores [K] in [0, 1]: the sigmoid of the multi-label logits."""
    logits = to_numpy(multilabel["scores"]).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-logits))


@dataclass
class ConfidentInstances:
    """Instances kept for display/export: ``masks`` [N, H, W] bool, ``classes`` [N] int64, ``scores`` [N]."""

    masks: np.ndarray
    classes: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)


def confident_instances(instances: Any, threshold: float) -> ConfidentInstances:
    """The instances of an image model's output whose score is >= ``threshold``, best first."""
    scores = to_numpy(instances.scores).astype(np.float64).reshape(-1)
    classes = to_numpy(instances.pred_classes).astype(np.int64).reshape(-1)
    masks = to_numpy(instances.pred_masks)
    keep = np.flatnonzero(scores >= threshold)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    height, width = masks.shape[-2:]
    return ConfidentInstances(masks=(masks[keep] > MASK_THRESHOLD).reshape(len(keep), height, width),
                              classes=classes[keep], scores=scores[keep])


def clip_tracks(clip_output: Mapping[str, Any], threshold: float) -> List[int]:
    """Indices (track ids) of a clip model's tracks whose score is >= ``threshold``."""
    scores = [float(s) for s in clip_output.get("pred_scores", [])]
    return [i for i, s in enumerate(scores) if s >= threshold]


def mask_to_rle(mask: np.ndarray) -> Dict[str, Any]:
    """Binary mask [H, W] -> COCO RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


# --------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------
def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (no half-written file is left)."""
    atomic_write(path, lambda f: f.write(data))


def encode_image(image: np.ndarray, suffix: str) -> bytes:
    """Encode an image for a file with ``suffix`` (``.png``, ``.jpg``, ...): RGB [H, W, 3] or labels [H, W].

    Raises:
        ValueError: OpenCV cannot write that format.
    """
    array = image[:, :, ::-1] if image.ndim == 3 else image  # OpenCV wants BGR
    ok, buffer = cv2.imencode(suffix, np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f"Cannot encode an image as {suffix!r}; use .png or .jpg.")
    return buffer.tobytes()


def _label_png(labels: np.ndarray, num_classes: int) -> bytes:
    dtype = np.uint8 if num_classes <= UINT8_LABELS else np.uint16
    return encode_image(labels.astype(dtype), ".png")


def _category(class_id: int, names: Sequence[str]) -> Dict[str, Any]:
    name = names[class_id] if 0 <= class_id < len(names) else f"class {class_id}"
    return {"category_id": int(class_id), "category_name": name}


def _multilabel_json(multilabel: Mapping[str, Any], names: Sequence[str]) -> Dict[str, Any]:
    topk = [int(c) for c in to_numpy(multilabel["topk"]).reshape(-1)]
    return {
        "image_logits": [float(v) for v in to_numpy(multilabel["scores"]).reshape(-1)],
        "image_scores": [float(v) for v in image_scores(multilabel)],
        "topk": topk,
        "topk_names": [_category(c, names)["category_name"] for c in topk],
    }


def _write_json(path: Path, record: Dict[str, Any]) -> None:
    write_bytes_atomic(path, (json.dumps(record, indent=1) + "\n").encode("utf-8"))


def save_predictions(predictions: Mapping[str, Any], out_dir: str | Path, stem: str, *, class_names: Sequence[str],
                     confidence_threshold: float, source: Optional[str] = None) -> Path:
    """Write an image model's output for one image as ``<stem>.json`` (+ PNGs) in ``out_dir``.

    JSON keys (those the model produced): ``sem_seg`` ``{"file", "categories": [{category_id,
    category_name, area}]}``; ``panoptic_seg`` ``{"file", "segments_info": [{id, category_id, category_name,
    isthing, area}]}``; ``instances`` ``[{category_id, category_name, score, segmentation: RLE}]`` (score >=
    ``confidence_threshold``); ``multilabel`` ``{image_logits [K], image_scores [K], topk, topk_names}``.
    Category ids are the model's contiguous ids; ``class_names[i]`` names id ``i``.

    Returns:
        the path of the JSON file.
    """
    out_dir = Path(out_dir)
    record: Dict[str, Any] = {"source": source, "confidence_threshold": confidence_threshold}
    if "sem_seg" in predictions:
        labels = semantic_labels(predictions["sem_seg"])
        record["height"], record["width"] = labels.shape
        png = f"{stem}_sem_seg.png"
        write_bytes_atomic(out_dir / png, _label_png(labels, len(predictions["sem_seg"])))
        ids, areas = np.unique(labels, return_counts=True)
        record["sem_seg"] = {"file": png, "categories": [{**_category(int(c), class_names), "area": int(a)}
                                                         for c, a in zip(ids, areas)]}
    if "panoptic_seg" in predictions:
        id_map, segments_info = predictions["panoptic_seg"]
        id_map = to_numpy(id_map).astype(np.int64)
        record["height"], record["width"] = id_map.shape
        png = f"{stem}_panoptic.png"
        write_bytes_atomic(out_dir / png, encode_image(id2rgb(id_map), ".png"))
        record["panoptic_seg"] = {"file": png, "segments_info": [
            {"id": int(s["id"]), **_category(int(s["category_id"]), class_names), "isthing": bool(s["isthing"]),
             "area": int((id_map == int(s["id"])).sum())} for s in segments_info]}
    if "instances" in predictions:
        kept = confident_instances(predictions["instances"], confidence_threshold)
        record["height"], record["width"] = predictions["instances"].image_size
        record["instances"] = [{**_category(int(c), class_names), "score": float(s), "segmentation": mask_to_rle(m)}
                               for m, c, s in zip(kept.masks, kept.classes, kept.scores)]
    if "multilabel" in predictions:
        record["multilabel"] = _multilabel_json(predictions["multilabel"], class_names)
    path = out_dir / f"{stem}.json"
    _write_json(path, record)
    return path


def save_clip_predictions(clip_output: Mapping[str, Any], out_dir: str | Path, stem: str, *,
                          class_names: Sequence[str], confidence_threshold: float,
                          frame_names: Sequence[str]) -> Path:
    """Write a clip (video) model's output as ``<stem>.json`` (+ one label PNG per frame) in ``out_dir``.

    JSON keys: ``frames`` (the frame names, in order); ``tracks`` ``[{track_id, category_id, category_name,
    score, segmentations: [RLE per frame]}]`` (score >= ``confidence_threshold``); ``sem_seg`` ``{"files":
    [<stem>_<frame>_sem_seg.png per frame]}`` when the model gives ``sem_seg_labels``; ``multilabel``.

    Returns:
        the path of the JSON file.
    """
    out_dir = Path(out_dir)
    height, width = (int(v) for v in clip_output["image_size"])
    record: Dict[str, Any] = {"frames": list(frame_names), "height": height, "width": width,
                              "confidence_threshold": confidence_threshold}
    masks = clip_output.get("pred_masks", [])
    record["tracks"] = [
        {"track_id": i, **_category(int(clip_output["pred_labels"][i]), class_names),
         "score": float(clip_output["pred_scores"][i]),
         "segmentations": [mask_to_rle(frame_mask) for frame_mask in to_numpy(masks[i]).astype(bool)]}
        for i in clip_tracks(clip_output, confidence_threshold)
    ]
    if "sem_seg_labels" in clip_output:
        labels = to_numpy(clip_output["sem_seg_labels"]).astype(np.int64)
        if len(labels) != len(frame_names):
            raise ValueError(f"sem_seg_labels has {len(labels)} frames but the clip has {len(frame_names)}.")
        files = []
        for frame_labels, frame in zip(labels, frame_names):
            png = f"{stem}_{Path(frame).stem}_sem_seg.png"
            write_bytes_atomic(out_dir / png, _label_png(frame_labels, len(class_names)))
            files.append(png)
        record["sem_seg"] = {"files": files}
    if "multilabel" in clip_output:
        record["multilabel"] = _multilabel_json(clip_output["multilabel"], class_names)
    path = out_dir / f"{stem}.json"
    _write_json(path, record)
    return path
