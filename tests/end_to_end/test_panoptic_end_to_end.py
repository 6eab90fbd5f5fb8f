"""End to end: ``train_net.py`` trains Mask2Former + RankSeg on the synthetic panoptic dataset and evaluates PQ,
mIoU and the ranking; ``--eval-only`` with the ``-gt`` oracle on the checkpoint it wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import REPO, TINY_MASK2FORMER
from PIL import Image

from mask2former_rankseg.data.synthetic.__main__ import main as synthetic_main
from mask2former_rankseg.utils.panoptic import rgb2id

pytestmark = pytest.mark.slow  # whole train_net.py jobs

CONFIG = REPO / "configs" / "synthetic" / "maskformer2_R18_synthetic_panoptic-rankseg.yaml"
SMALL_MODEL = [*TINY_MASK2FORMER, "SOLVER.IMS_PER_BATCH", 2]


@pytest.fixture()
def tiny_panoptic(tmp_path, monkeypatch):
    """$DETECTRON2_DATASETS with a 6 + 3 image, 64 px synthetic panoptic dataset in place."""
    root = tmp_path / "datasets"
    assert synthetic_main(["--task", "panoptic", "--out", str(root / "synthetic" / "panoptic"), "--num-train", "6",
                           "--num-val", "3", "--size", "64", "--seed", "1"]) == 0
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return root


def test_train_then_evaluate_pq_and_oracle(train_net, tiny_panoptic, tmp_path, restore_package_logger):
    out = tmp_path / "run"
    results = train_net.main(train_net.default_argument_parser().parse_args(
        ["--config-file", str(CONFIG), *map(str, SMALL_MODEL), "SOLVER.MAX_ITER", "4", "OUTPUT_DIR", str(out)]))

    pan, sem, rank = results["panoptic_seg"], results["sem_seg"], results["rankseg"]
    for key in ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"):
        assert 0.0 <= pan[key] <= 100.0
    assert 0.0 <= sem["mIoU"] <= 100.0
    assert rank["recall"] == pytest.approx(100.0)  # TOPK covers all 116 categories
    assert rank["num_images"] == 3

    # predictions in COCO panoptic format: one PNG per image, every id listed in its segments_info
    inference = out / "inference" / "synthetic_panoptic_val"
    predictions = json.loads((inference / "panoptic_predictions.json").read_text())
    assert len(predictions["annotations"]) == 3
    for ann in predictions["annotations"]:
        ids = rgb2id(np.asarray(Image.open(inference / "panoptic_predictions" / ann["file_name"])))
        assert ids.shape == (64, 64)
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in ann["segments_info"]}
    saved = json.loads((inference / "evaluation_results.json").read_text())
    assert saved["panoptic_seg"]["PQ"] == pytest.approx(pan["PQ"])
    assert (out / "model_final.pth").is_file()

    # the "+ GT" oracle evaluates the trained weights with absent categories suppressed
    oracle = train_net.main(train_net.default_argument_parser().parse_args(
        ["--config-file", str(CONFIG), "--eval-only", *map(str, SMALL_MODEL), "MODEL.RANKSEG.USE_GT", "True",
         "MODEL.WEIGHTS", str(out / "model_final.pth"), "OUTPUT_DIR", str(tmp_path / "oracle")]))
    assert "rankseg" not in oracle  # the ranking metrics of an oracle say nothing
    assert oracle["panoptic_seg"]["PQ"] >= 0.0 and oracle["sem_seg"]["mIoU"] >= 0.0
    # with the oracle every predicted segment has a category that is present in the ground truth
    truth = json.loads((tiny_panoptic / "synthetic" / "panoptic" / "panoptic_val.json").read_text())
    present = {a["image_id"]: {s["category_id"] for s in a["segments_info"]} for a in truth["annotations"]}
    oracle_predictions = json.loads((tmp_path / "oracle" / "inference" / "synthetic_panoptic_val" /
                                     "panoptic_predictions.json").read_text())
    for ann in oracle_predictions["annotations"]:
        assert {s["category_id"] for s in ann["segments_info"]} <= present[ann["image_id"]]
