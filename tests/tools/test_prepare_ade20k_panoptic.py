"""datasets/prepare_ade20k_pan_seg.py and prepare_ade20k_ins_seg.py on a one-image ADE20K fixture; the outputs
load through the registered loaders."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from helpers import REPO
from PIL import Image

from mask2former_rankseg.data.datasets.ade20k_instances import THING_SEMANTIC_IDS, ade20k_panoptic
from mask2former_rankseg.data.datasets.instance import ADE20K_INSTANCE_CATEGORIES, load_coco_instances_json
from mask2former_rankseg.data.datasets.panoptic import (
    ADE20K_PANOPTIC_CATEGORIES,
    load_coco_panoptic_json,
    panoptic_metadata,
)
from mask2former_rankseg.utils.panoptic import rgb2id


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _maps():
    """6x8: wall (label 1) cols 0-3, sky (label 3) cols 4-7; a bed (label 8 = instance class 1) rows 0-1 cols
    0-1 (instance 1); a person (label 13 = instance class 4) rows 4-5 cols 6-7 (instance 2)."""
    semantic = np.zeros((6, 8), dtype=np.uint8)
    semantic[:, :4], semantic[:, 4:] = 1, 3
    semantic[:2, :2], semantic[4:, 6:] = 8, 13
    instance = np.zeros((6, 8, 3), dtype=np.uint8)
    instance[:2, :2] = (1, 1, 0)
    instance[4:, 6:] = (4, 2, 0)
    return semantic, instance


def test_thing_classes_agree_with_panoptic_metadata():
    assert {cid for cid, _, isthing, _ in ADE20K_PANOPTIC_CATEGORIES if isthing} == THING_SEMANTIC_IDS
    assert len(THING_SEMANTIC_IDS) == 100


def test_panoptic_segments_of_one_image():
    semantic, instance = _maps()
    segments, info = ade20k_panoptic(semantic, instance)
    assert [(s["id"], s["category_id"]) for s in info] == [(1, 0), (2, 2), (3, 7), (4, 12)]
    assert [s["area"] for s in info] == [20, 20, 4, 4] and info[2]["bbox"] == [0, 0, 2, 2]
    assert int(segments[0, 0]) == 3 and int(segments[5, 7]) == 4 and int(segments[0, 5]) == 2
    bad = instance.copy()
    bad[0, 0, 0] = 2  # instance 1 spread over two classes
    with pytest.raises(ValueError, match="instance 1 has classes"):
        ade20k_panoptic(semantic, bad, source="ADE_val_1")


def test_scripts_write_loadable_annotations(tmp_path):
    ade = tmp_path / "ADEChallengeData2016"
    for sub in ("images/validation", "annotations/validation", "annotations_instance/validation",
                "annotations_detectron2/validation"):
        (ade / sub).mkdir(parents=True)
    semantic, instance = _maps()
    Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(ade / "images/validation/ADE_val_00000001.jpg")
    Image.fromarray(semantic).save(ade / "annotations/validation/ADE_val_00000001.png")
    Image.fromarray(instance).save(ade / "annotations_instance/validation/ADE_val_00000001.png")
    Image.fromarray(semantic).save(ade / "annotations_detectron2/validation/ADE_val_00000001.png")

    assert _tool("prepare_ade20k_pan_seg").main(["--root", str(tmp_path), "--splits", "val"]) == 0
    assert _tool("prepare_ade20k_ins_seg").main(["--root", str(tmp_path), "--splits", "val"]) == 0

    (record,) = load_coco_panoptic_json(ade / "ade20k_panoptic_val.json", ade / "images/validation",
                                        ade / "ade20k_panoptic_val", ade / "annotations_detectron2/validation",
                                        panoptic_metadata(ADE20K_PANOPTIC_CATEGORIES))
    assert [(s["category_id"], s["isthing"]) for s in record["segments_info"]] == [
        (0, False), (2, False), (7, True), (12, True)]
    ids = rgb2id(np.array(Image.open(record["pan_seg_file_name"])))
    assert int(ids[0, 0]) == 3 and int(ids[5, 7]) == 4
    (inst,) = load_coco_instances_json(ade / "ade20k_instance_val.json", ade / "images/validation",
                                       {cid: i for i, (cid, _) in enumerate(ADE20K_INSTANCE_CATEGORIES)})
    assert [a["category_id"] for a in inst["annotations"]] == [0, 3]  # bed, person (contiguous thing ids)
    data = json.loads((ade / "ade20k_instance_val.json").read_text())
    assert data["annotations"][1]["area"] == 4 and data["annotations"][1]["bbox"] == [6, 4, 2, 2]
    assert _tool("prepare_ade20k_pan_seg").main(["--root", str(tmp_path / "none"), "--splits", "val"]) == 1
