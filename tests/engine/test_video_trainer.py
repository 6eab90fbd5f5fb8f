"""Trainer wiring for video datasets: mappers, loaders and evaluators chosen by the dataset (as upstream's
train_net_video.py), end to end on the synthetic video data with ground-truth predictions."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from helpers import REPO
from pycocotools import mask as mask_utils

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.data import DatasetCatalog, synthetic
from mask2former_rankseg.data.datasets import synthetic as synthetic_registration
from mask2former_rankseg.data.datasets.vspw import vspw_labels_to_contiguous
from mask2former_rankseg.data.detection_utils import read_image
from mask2former_rankseg.engine import Trainer
from mask2former_rankseg.evaluation import VSPWEvaluator, YTVISEvaluator

CONFIGS = REPO / "configs"
SIZE = 48


@pytest.fixture
def small_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    monkeypatch.setattr(synthetic_registration, "generate_ytvis_dataset", functools.partial(
        synthetic.generate_ytvis_dataset, num_train=3, num_val=2, num_frames=5, size=SIZE))
    monkeypatch.setattr(synthetic_registration, "generate_vspw_dataset", functools.partial(
        synthetic.generate_vspw_dataset, num_train=3, num_val=2, num_frames=18, size=SIZE))
    return tmp_path


def _cfg(config: str, train: str, test: str, tmp_path):
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / config))
    cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (train,), (test,)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST = (32, 40), 40
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    return cfg


def test_youtube_vis_loaders_and_evaluator(small_datasets):
    cfg = _cfg("youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml", "synthetic_ytvis_train", "synthetic_ytvis_val",
               small_datasets)
    batch = next(iter(Trainer.build_train_loader(cfg)))
    assert len(batch) == 2  # IMS_PER_BATCH clips
    for clip in batch:
        assert len(clip["image"]) == len(clip["instances"]) == cfg.INPUT.SAMPLING_FRAME_NUM == 2
        assert clip["image"][0].shape[-2:] == clip["image"][1].shape[-2:]  # one resize for the clip
        assert min(clip["image"][0].shape[-2:]) in (32, 40)
    loader = Trainer.build_test_loader(cfg, "synthetic_ytvis_val")
    evaluator = Trainer.build_evaluator(cfg, "synthetic_ytvis_val")
    assert [type(e) for e in evaluator] == [YTVISEvaluator]
    videos = {v["video_id"]: v for v in DatasetCatalog.get("synthetic_ytvis_val")}
    evaluator.reset()
    for inputs in loader:
        assert len(inputs) == 1 and len(inputs[0]["image"]) == 5 and "instances" not in inputs[0]
        assert inputs[0]["image"][0].shape[-2:] == (40, 40)
        evaluator.process(inputs, [_ground_truth_output(videos[inputs[0]["video_id"]])])
    metrics = evaluator.evaluate()["segm"]
    assert metrics["AP"] == pytest.approx(100.0) and metrics["AR10"] == pytest.approx(100.0)
    assert (small_datasets / "out" / "inference" / "synthetic_ytvis_val" / "results.zip").is_file()


def _ground_truth_output(video):
    """The model-output dict of a perfect model: each ground-truth track with score 1."""
    tracks = {}
    for t, frame in enumerate(video["annotations"]):
        for ann in frame:
            masks = tracks.setdefault(ann["id"], (ann["category_id"], np.zeros((video["length"], SIZE, SIZE), bool)))[1]
            masks[t] = mask_utils.decode(ann["segmentation"]).astype(bool)
    return {"image_size": (SIZE, SIZE), "pred_scores": [1.0] * len(tracks),
            "pred_labels": [c for c, _ in tracks.values()],
            "pred_masks": [torch.from_numpy(m) for _, m in tracks.values()]}


def test_vspw_loaders_and_evaluator(small_datasets):
    cfg = _cfg("vspw/video_maskformer2_R50_bs16_8ep.yaml", "synthetic_vspw_train", "synthetic_vspw_val",
               small_datasets)
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 48
    batch = next(iter(Trainer.build_train_loader(cfg)))
    assert len(batch) == 2 and all(len(c["sem_seg"]) == len(c["instances"]) == 2 for c in batch)
    evaluator = Trainer.build_evaluator(cfg, "synthetic_vspw_val")
    assert [type(e) for e in evaluator] == [VSPWEvaluator]
    evaluator.reset()
    lengths = []
    for inputs in Trainer.build_test_loader(cfg, "synthetic_vspw_val"):
        (clip,) = inputs
        lengths.append(len(clip["image"]))
        labels = [vspw_labels_to_contiguous(read_image(p), 48) for p in clip["sem_seg_file_names"]]
        labels = torch.as_tensor(np.stack([np.where(lab == 255, 0, lab) for lab in labels]))
        evaluator.process(inputs, [{"sem_seg_labels": labels}])
    assert lengths == [18, 18]  # videos shorter than the 20-frame evaluation clips: one clip each
    metrics = evaluator.evaluate()["sem_seg"]
    assert metrics["mIoU"] == pytest.approx(100.0) and metrics["VC8"] == pytest.approx(100.0)
    assert metrics["VC16"] == pytest.approx(100.0)  # 18 frames > 16: one clip per video


def test_video_dataset_types():
    from mask2former_rankseg.engine.trainer import _video_dataset_type

    assert _video_dataset_type("ytvis_2021_val") == "ytvis" and _video_dataset_type("vspw_train") == "vspw"
    assert _video_dataset_type("synthetic_vspw_val") == "vspw"
    assert _video_dataset_type("synthetic_sem_seg_val") is None
    assert _video_dataset_type("coco_2017_val_panoptic") is None


@pytest.mark.parametrize("name,kind", [("video_maskformer2_R18_synthetic.yaml", "ytvis"),
                                       ("video_maskformer2_R18_synthetic-rankseg.yaml", "ytvis"),
                                       ("video_maskformer2_R18_synthetic_vspw.yaml", "vspw"),
                                       ("video_maskformer2_R18_synthetic_vspw-rankseg.yaml", "vspw")])
def test_synthetic_video_configs_match_their_datasets(name, kind):
    from mask2former_rankseg.data import MetadataCatalog
    from mask2former_rankseg.engine.trainer import _video_dataset_type

    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "synthetic" / name))
    assert cfg.MODEL.META_ARCHITECTURE == "VideoMaskFormer"
    assert {_video_dataset_type(cfg.DATASETS.TRAIN[0]), _video_dataset_type(cfg.DATASETS.TEST[0])} == {kind}
    meta = MetadataCatalog.get(cfg.DATASETS.TEST[0])
    classes = meta.thing_classes if kind == "ytvis" else meta.stuff_classes
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == len(classes) == 48
    test = cfg.MODEL.MASK_FORMER.TEST
    assert ((True, False) if kind == "ytvis" else (False, True)) == (test.INSTANCE_ON, test.SEMANTIC_ON)
    assert ("rankseg" in name) == cfg.MODEL.RANKSEG.FLAG
    if cfg.MODEL.RANKSEG.FLAG:
        assert cfg.MODEL.RANKSEG.TOPK == 48 and cfg.MODEL.SEM_SEG_HEAD.USE_LAYERNORM


@pytest.mark.parametrize("config,train,test,metric", [
    ("synthetic/video_maskformer2_R18_synthetic-rankseg.yaml", "synthetic_ytvis_train", "synthetic_ytvis_val", "segm"),
    ("synthetic/video_maskformer2_R18_synthetic_vspw-rankseg.yaml", "synthetic_vspw_train", "synthetic_vspw_val",
     "sem_seg"),
])
def test_video_model_trains_on_mapper_clips_and_feeds_the_evaluator(small_datasets, tiny_video_model_opts, config,
                                                                     train, test, metric):
    """The mappers' clips are what VideoMaskFormer trains on, and its outputs are what the evaluators read."""
    from mask2former_rankseg.modeling import build_model

    cfg = _cfg(config, train, test, small_datasets)
    cfg.merge_from_list(tiny_video_model_opts)
    model = build_model(cfg).train()
    losses = model(next(iter(Trainer.build_train_loader(cfg))))
    assert "loss_ml" in losses and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    loader = Trainer.build_test_loader(cfg, test)  # first, as Trainer.test: it resolves the dataset's paths
    evaluator = Trainer.build_evaluator(cfg, test)
    evaluator.reset()
    with torch.no_grad():
        for inputs in loader:
            evaluator.process(inputs, model(inputs))
    metrics = evaluator.evaluate()[metric]
    assert all(np.isfinite(metrics[k]) for k in (("AP", "AR10") if metric == "segm" else ("mIoU", "VC8")))
