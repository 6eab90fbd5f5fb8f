"""ADE20K-Full (847 classes, 16-bit labels, ignore 65535): categories, datasets/prepare_ade20k_full_sem_seg.py on a
tiny ADE20K-2021 release, and its labels through the registered loader, the semantic mapper and the evaluator."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.data import DatasetCatalog, InferenceDatasetMapper, MetadataCatalog
from mask2former_rankseg.data.datasets.ade20k_full import ADE20K_FULL_CATEGORIES
from mask2former_rankseg.data.mappers import MaskFormerSemanticDatasetMapper
from mask2former_rankseg.evaluation import SemSegEvaluator

WALL, ADDING_MACHINE = 2978, 3148  # labels 0 and 846


def test_categories_and_metadata():
    ids = [cid for cid, _ in ADE20K_FULL_CATEGORIES]
    assert len(ids) == 847 and len(set(ids)) == 847
    assert ADE20K_FULL_CATEGORIES[0] == (WALL, "wall")
    assert ADE20K_FULL_CATEGORIES[846] == (ADDING_MACHINE, "adding machine, totalizer, totaliser")
    meta = MetadataCatalog.get("ade20k_full_sem_seg_train")
    assert meta.ignore_label == 65535 and len(meta.stuff_classes) == len(set(map(tuple, meta.stuff_colors))) == 847
    assert meta.stuff_dataset_id_to_contiguous_id[ADDING_MACHINE] == 846


def _seg_png(object_ids):
    """RGB ``*_seg.png`` content for [H, W] object ids (R = id // 256 * 10, G = id % 256)."""
    rgb = np.zeros(object_ids.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = (object_ids // 256) * 10
    rgb[..., 1] = object_ids % 256
    return rgb


def _write_release(root):
    """Two 4x6 images: one training (wall | adding machine | unlabelled | an object outside the 847), one val."""
    release = root / "ADE20K_2021_17_01"
    objects = np.zeros((4, 6), dtype=np.int64)
    objects[:, :2], objects[:, 2:4], objects[0, 5] = WALL, ADDING_MACHINE, 5  # id 5 is no ADE20K-Full class
    entries = []
    for split, name in (("training", "ADE_train_00000001"), ("validation", "ADE_val_00000001")):
        folder = release / "images" / "ADE" / split / "cultural" / "apse__indoor"
        folder.mkdir(parents=True)
        Image.fromarray(np.full((4, 6, 3), 100, dtype=np.uint8)).save(folder / f"{name}.jpg")
        Image.fromarray(_seg_png(objects)).save(folder / f"{name}_seg.png")
        entries.append((str(folder.relative_to(root)), f"{name}.jpg"))
    with open(release / "index_ade20k.pkl", "wb") as f:
        pickle.dump({"folder": [e[0] for e in entries], "filename": [e[1] for e in entries],
                     "objectPresence": np.zeros((3, 2), dtype=np.int32)}, f)
    expected = np.full((4, 6), 65535, dtype=np.int64)
    expected[:, :2], expected[:, 2:4] = 0, 846
    return expected


@pytest.mark.parametrize("scan", [False, True])
def test_prepare_then_load_map_and_evaluate(tmp_path, monkeypatch, prepare_script, scan):
    expected = _write_release(tmp_path)
    args = ["--root", str(tmp_path)] + (["--scan"] if scan else [])
    assert prepare_script("prepare_ade20k_full_sem_seg").main(args) == 0
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    (record,) = DatasetCatalog.get("ade20k_full_sem_seg_train")
    assert record["sem_seg_file_name"].endswith("annotations_detectron2/training/ADE_train_00000001.tif")
    with Image.open(record["sem_seg_file_name"]) as label_file:
        assert label_file.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(label_file), expected)
    (val_record,) = DatasetCatalog.get("ade20k_full_sem_seg_val")
    assert val_record["image_id"] == "ADE_val_00000001"

    # the training mapper reads the 16-bit map: one mask per class present, the 65535 pixels in none
    mapper = MaskFormerSemanticDatasetMapper(True, augmentations=[], image_format="RGB", ignore_label=65535,
                                             size_divisibility=8)
    mapped = mapper(record)
    assert mapped["instances"].gt_classes.tolist() == [0, 846]
    assert mapped["sem_seg"].shape == (8, 8) and int(mapped["sem_seg"][7, 7]) == 65535  # padded with ignore
    assert int(mapped["instances"].gt_masks.sum()) == 16

    # the test mapper of the RankSeg oracle takes the ignore label from the dataset (the config says 255)
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.RANKSEG.USE_GT", True, "INPUT.MIN_SIZE_TEST", 4])
    oracle = InferenceDatasetMapper.from_config(cfg, "ade20k_full_sem_seg_train")(record)
    assert oracle["instances"].gt_classes.tolist() == [0, 846]

    # evaluation: a prediction wrong only where the ground truth is ignored scores 100; then one wall pixel wrong
    evaluator = SemSegEvaluator("ade20k_full_sem_seg_train", distributed=False)
    inputs = [InferenceDatasetMapper(min_size=4, image_format="RGB")(record)]
    pred = np.where(expected == 65535, 5, expected)
    scores = torch.nn.functional.one_hot(torch.as_tensor(pred), 847).permute(2, 0, 1).float()
    evaluator.process(inputs, [{"sem_seg": scores}])
    assert evaluator.evaluate()["sem_seg"]["mIoU"] == pytest.approx(100.0)
    evaluator.reset()
    pred[0, 0] = 846
    evaluator.process(inputs, [{"sem_seg_labels": torch.as_tensor(pred)}])
    result = evaluator.evaluate()["sem_seg"]
    assert result["IoU-wall"] == pytest.approx(100 * 7 / 8)
    assert result["mIoU"] == pytest.approx(100 * (7 / 8 + 8 / 9) / 2)


def test_resize_rule_and_object_ids(prepare_script):
    script = prepare_script("prepare_ade20k_full_sem_seg")
    assert script.resized_size(512, 700) is None and script.resized_size(600, 400) is None
    assert script.resized_size(600, 900) == (512, 768) and script.resized_size(1000, 700) == (731, 512)
    objects = np.array([[WALL, 5, 0]])
    np.testing.assert_array_equal(script.object_classes(_seg_png(objects)), objects)


def test_prepare_refuses_a_pickle_that_runs_code(tmp_path, prepare_script):
    release = tmp_path / "ADE20K_2021_17_01"
    release.mkdir()
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(release / "index_ade20k.pkl", "wb") as f:
        pickle.dump({"folder": Evil(), "filename": []}, f)
    with pytest.raises(ValueError, match="Refusing to unpickle the global .*system.*--scan"):
        prepare_script("prepare_ade20k_full_sem_seg").prepare(tmp_path)
