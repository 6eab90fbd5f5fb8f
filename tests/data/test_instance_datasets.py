"""COCO-instance-format datasets (ADE20K instance) and the mask_former_instance mapper on tiny fixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.data.datasets.instance import (
    ADE20K_INSTANCE_CATEGORIES,
    COCO_INSTANCE_CATEGORIES,
    load_coco_instances_json,
    register_instance_dataset,
)
from mask2former_rankseg.data.mappers import MaskFormerInstanceDatasetMapper, segmentation_to_mask

H, W = 6, 8


def _fixture(tmp_path, category=7):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((H, W, 3), 100, dtype=np.uint8)).save(images / "a.jpg")
    square = np.zeros((H, W), dtype=np.uint8)
    square[1:4, 5:8] = 1
    rle = mask_utils.encode(np.asfortranarray(square))
    rle["counts"] = rle["counts"].decode("ascii")
    annotations = [
        # a polygon: the 2x4 rectangle of pixels rows 0-1, cols 0-3 (pixel edges 0..4 x 0..2)
        {"id": 1, "image_id": 5, "category_id": 12, "segmentation": [[0, 0, 4, 0, 4, 2, 0, 2]], "iscrowd": 0,
         "bbox": [0, 0, 4, 2]},
        {"id": 2, "image_id": 5, "category_id": category, "segmentation": rle, "iscrowd": 0, "bbox": [5, 1, 3, 3]},
        {"id": 3, "image_id": 5, "category_id": 12, "segmentation": rle, "iscrowd": 1, "bbox": [5, 1, 3, 3]},
    ]
    json_file = tmp_path / "instances.json"
    json_file.write_text(json.dumps({"images": [{"id": 5, "file_name": "a.jpg", "height": H, "width": W}],
                                     "annotations": annotations, "categories": []}))
    return json_file, images, square


def test_builtin_ade20k_instance_metadata():
    meta = MetadataCatalog.get("ade20k_instance_val")
    assert len(ADE20K_INSTANCE_CATEGORIES) == 100 and len(meta.thing_classes) == 100
    assert meta.thing_dataset_id_to_contiguous_id[7] == 0 and meta.thing_classes[3] == "person"
    assert meta.json_file.endswith("ADEChallengeData2016/ade20k_instance_val.json") and meta.evaluator_type == "coco"
    assert "ade20k_instance_train" in DatasetCatalog


def test_builtin_coco_instance_metadata(tmp_path, monkeypatch):
    meta = MetadataCatalog.get("coco_2017_val")
    assert len(COCO_INSTANCE_CATEGORIES) == 80 and len(meta.thing_classes) == len(meta.thing_colors) == 80
    # COCO's dataset ids have gaps (1..90): detectron2's contiguous ids are the positions
    assert meta.thing_dataset_id_to_contiguous_id[1] == 0 and meta.thing_dataset_id_to_contiguous_id[90] == 79
    assert meta.thing_classes[79] == "toothbrush" and meta.thing_colors[0] == [220, 20, 60]
    assert meta.evaluator_type == "coco" and meta.json_file.endswith("coco/annotations/instances_val2017.json")
    # the paths follow $DETECTRON2_DATASETS when the dataset is loaded
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "coco" / "annotations" / "instances_train2017.json")):
        DatasetCatalog.get("coco_2017_train")


def test_load_and_map(tmp_path):
    json_file, images, square = _fixture(tmp_path)
    register_instance_dataset("_test_instances", ((7, "bed"), (12, "person")), lambda: (images, json_file))
    (record,) = DatasetCatalog.get("_test_instances")
    assert record["image_id"] == 5 and (record["height"], record["width"]) == (H, W)
    assert [a["category_id"] for a in record["annotations"]] == [1, 0, 1]

    mapper = MaskFormerInstanceDatasetMapper(True, augmentations=[], image_format="RGB", ignore_label=255,
                                             size_divisibility=4)
    out = mapper(record)
    inst = out["instances"]
    assert out["image"].shape == (3, 8, 8) and "annotations" not in out
    assert inst.gt_classes.tolist() == [1, 0]  # the crowd object is left out
    assert inst.gt_masks.dtype == torch.bool and inst.gt_masks.shape == (2, 8, 8)
    assert inst.gt_masks[0, :2, :4].all() and int(inst.gt_masks[0].sum()) == 8
    assert torch.equal(inst.gt_masks[1, :H, :W], torch.from_numpy(square).bool()) and not inst.gt_masks[:, H:].any()


def test_segmentation_formats_and_errors(tmp_path):
    square = np.zeros((H, W), dtype=np.uint8)
    square[2:5, 1:3] = 1
    flat = square.flatten(order="F")  # uncompressed RLE: run lengths in column-major order, zeros first
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    uncompressed = {"size": [H, W], "counts": counts}
    assert sum(counts) == H * W
    assert np.array_equal(segmentation_to_mask(uncompressed, H, W), square)
    compressed = mask_utils.encode(np.asfortranarray(square))
    assert np.array_equal(segmentation_to_mask(compressed, H, W), square)
    assert np.array_equal(segmentation_to_mask(square, H, W), square)
    assert not segmentation_to_mask([[1, 1, 2, 2]], H, W).any()  # degenerate polygon
    with pytest.raises(ValueError, match="neither polygons, RLE"):
        segmentation_to_mask("bad", H, W, source="x.jpg")
    with pytest.raises(ValueError, match="RLE of size"):
        segmentation_to_mask(compressed, H + 1, W)
    json_file, images, _ = _fixture(tmp_path, category=99)
    with pytest.raises(ValueError, match="category id 99"):
        load_coco_instances_json(json_file, images, {7: 0, 12: 1})
    with pytest.raises(FileNotFoundError, match="a.jpg"):
        load_coco_instances_json(json_file, tmp_path / "nowhere", {7: 0, 12: 1, 99: 2})


def test_coco_instance_lsj_mapper_drops_objects_cropped_away(tmp_path):
    from mask2former_rankseg.config import get_cfg
    from mask2former_rankseg.data.mappers import TRAIN_MAPPERS
    from mask2former_rankseg.data.transforms import CropTransform

    json_file, images, _ = _fixture(tmp_path)
    (record,) = load_coco_instances_json(json_file, images, {7: 0, 12: 1})
    cfg = get_cfg()
    cfg.INPUT.IMAGE_SIZE = 8
    mapper = TRAIN_MAPPERS["coco_instance_lsj"].from_config(cfg, True)
    mapper.augmentations = [CropTransform(0, 0, 4, 2)]  # keeps only the polygon object (rows 0-1, cols 0-3)
    out = mapper(record)
    assert out["image"].shape == (3, 8, 8) and out["instances"].gt_classes.tolist() == [1]
    assert int(out["instances"].gt_masks.sum()) == 8
