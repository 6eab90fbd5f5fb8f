"""--save-json files: semantic label PNG, panoptic PNG + segments, instance RLEs, clip tracks — read back."""

import json

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from mask2former_rankseg.structures import Instances
from mask2former_rankseg.utils.panoptic import rgb2id
from mask2former_rankseg.utils.predictions import (
    confident_instances,
    image_scores,
    mask_to_rle,
    save_clip_predictions,
    save_predictions,
)

NAMES = ["wall", "sky", "person", "car"]


def _read_png(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_semantic_label_map_and_multilabel(tmp_path):
    scores = torch.zeros(4, 6, 8)
    scores[1, :, :4] = 1.0
    scores[3, :, 4:] = 1.0
    multilabel = {"scores": torch.tensor([0.0, 2.0, -2.0, 1.0]), "topk": torch.tensor([1, 3])}
    path = save_predictions({"sem_seg": scores, "multilabel": multilabel}, tmp_path, "img", class_names=NAMES,
                            confidence_threshold=0.5, source="img.jpg")
    record = json.loads(path.read_text())
    labels = _read_png(tmp_path / record["sem_seg"]["file"])
    expected = np.where(np.arange(8)[None] < 4, 1, 3).repeat(6, 0)
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.uint8
    assert record["sem_seg"]["categories"] == [{"category_id": 1, "category_name": "sky", "area": 24},
                                               {"category_id": 3, "category_name": "car", "area": 24}]
    assert record["multilabel"]["topk"] == [1, 3] and record["multilabel"]["topk_names"] == ["sky", "car"]
    assert record["multilabel"]["image_scores"][0] == pytest.approx(0.5)
    assert record["multilabel"]["image_scores"][1] == pytest.approx(1 / (1 + np.exp(-2)))
    assert (record["height"], record["width"], record["source"]) == (6, 8, "img.jpg")


def test_more_than_255_classes_give_a_16_bit_label_map(tmp_path):
    scores = torch.zeros(300, 2, 3)
    scores[299, 0] = 1.0
    save_predictions({"sem_seg": scores}, tmp_path, "big", class_names=[], confidence_threshold=0.5)
    labels = _read_png(tmp_path / "big_sem_seg.png")
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, [[299, 299, 299], [0, 0, 0]])
    record = json.loads((tmp_path / "big.json").read_text())
    assert record["sem_seg"]["categories"][1]["category_name"] == "class 299"


def test_panoptic_png_and_segments_round_trip(tmp_path):
    id_map = torch.zeros(5, 7, dtype=torch.int32)
    id_map[:2] = 1
    id_map[3:, 2:5] = 300                                          # an id above 255 uses the G channel
    segments = [{"id": 1, "category_id": 1, "isthing": False}, {"id": 300, "category_id": 2, "isthing": True}]
    path = save_predictions({"panoptic_seg": (id_map, segments)}, tmp_path, "p", class_names=NAMES,
                            confidence_threshold=0.5)
    record = json.loads(path.read_text())
    rgb = _read_png(tmp_path / record["panoptic_seg"]["file"])[:, :, ::-1]
    np.testing.assert_array_equal(rgb2id(rgb), id_map.numpy())
    assert record["panoptic_seg"]["segments_info"] == [
        {"id": 1, "category_id": 1, "category_name": "sky", "isthing": False, "area": 14},
        {"id": 300, "category_id": 2, "category_name": "person", "isthing": True, "area": 6},
    ]


def test_instances_as_rles_above_the_threshold_best_first(tmp_path):
    masks = torch.zeros(3, 6, 9)
    masks[0, 1:3, 1:4] = 1
    masks[1, 2:6, 5:9] = 1
    masks[2, :, :] = 1
    instances = Instances((6, 9), pred_masks=masks, scores=torch.tensor([0.6, 0.95, 0.1]),
                          pred_classes=torch.tensor([2, 3, 0]))
    kept = confident_instances(instances, 0.5)
    assert kept.classes.tolist() == [3, 2] and kept.masks.dtype == bool
    path = save_predictions({"instances": instances}, tmp_path, "i", class_names=NAMES, confidence_threshold=0.5)
    record = json.loads(path.read_text())
    assert [(r["category_name"], r["score"]) for r in record["instances"]] == [("car", pytest.approx(0.95)),
                                                                              ("person", pytest.approx(0.6))]
    for r, expected in zip(record["instances"], [masks[1], masks[0]]):
        rle = dict(r["segmentation"], counts=r["segmentation"]["counts"].encode("ascii"))
        np.testing.assert_array_equal(mask_utils.decode(rle), expected.numpy().astype(np.uint8))
    assert mask_to_rle(np.ones((2, 2), bool))["size"] == [2, 2]


def test_clip_tracks_and_per_frame_label_maps(tmp_path):
    masks = torch.zeros(2, 3, 4, 5, dtype=torch.bool)
    masks[0, :, :2] = True
    masks[1, 1] = True
    labels = torch.zeros(3, 4, 5, dtype=torch.int64)
    labels[2] = 2
    clip = {"image_size": (4, 5), "pred_scores": [0.3, 0.8], "pred_labels": [1, 3], "pred_masks": list(masks),
            "sem_seg_labels": labels, "multilabel": {"scores": torch.zeros(4), "topk": torch.tensor([3])}}
    path = save_clip_predictions(clip, tmp_path, "video", class_names=NAMES, confidence_threshold=0.5,
                                 frame_names=["f0.jpg", "f1.jpg", "f2.jpg"])
    record = json.loads(path.read_text())
    assert record["frames"] == ["f0.jpg", "f1.jpg", "f2.jpg"]
    (track,) = record["tracks"]
    assert (track["track_id"], track["category_name"]) == (1, "car")
    decoded = [mask_utils.decode(dict(s, counts=s["counts"].encode("ascii"))) for s in track["segmentations"]]
    np.testing.assert_array_equal(np.stack(decoded), masks[1].numpy().astype(np.uint8))
    assert record["sem_seg"]["files"] == ["video_f0_sem_seg.png", "video_f1_sem_seg.png", "video_f2_sem_seg.png"]
    np.testing.assert_array_equal(_read_png(tmp_path / "video_f2_sem_seg.png"), np.full((4, 5), 2))
    with pytest.raises(ValueError, match="sem_seg_labels has 3 frames but the clip has 2"):
        save_clip_predictions(clip, tmp_path, "bad", class_names=NAMES, confidence_threshold=0.5,
                              frame_names=["a", "b"])


def test_image_scores_are_the_sigmoid_of_the_logits():
    np.testing.assert_allclose(image_scores({"scores": torch.tensor([0.0, np.log(3.0)])}), [0.5, 0.75])
