"""Video mappers: upstream's frame sampling, clip-consistent augmentation, YouTube-VIS and VSPW clips, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO
from PIL import Image
from pycocotools import mask as mask_utils

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.data.build import MapDataset
from mask2former_rankseg.data.detection_utils import ImageReadError, SizeMismatchError
from mask2former_rankseg.data.mappers import (
    VSPWDatasetMapper,
    YTVISDatasetMapper,
    apply_clip_augmentations,
    build_clip_augmentations,
    sample_clip_frames,
)
from mask2former_rankseg.data.mappers.video_clip import ClipAugmentation
from mask2former_rankseg.data.transforms import (
    CropTransform,
    RandomBrightness,
    RandomCrop,
    RandomFlip,
    ResizeShortestEdge,
)

CONFIGS = REPO / "configs"
H, W = 6, 8


def test_random_sampling_stays_within_range_and_keeps_the_reference():
    gaps = set()
    for _ in range(200):
        a, b = sample_clip_frames(50, 2, frame_range=3)
        gaps.add(b - a)
    assert gaps == {1, 2, 3}  # the second frame is another frame within 3 of the reference
    assert sample_clip_frames(1, 3, frame_range=20) == [0, 0, 0]  # a one-frame video repeats its frame
    three = [sample_clip_frames(6, 3, frame_range=20) for _ in range(100)]
    assert all(c == sorted(c) and c[0] >= 0 and c[-1] < 6 for c in three)
    assert any(len(set(c)) < 3 for c in three)  # drawn with replacement, as upstream
    shuffled = [sample_clip_frames(50, 4, frame_range=20, shuffle=True) for _ in range(50)]
    assert any(c != sorted(c) for c in shuffled)


def test_interval_sampling():
    for _ in range(50):
        clip = sample_clip_frames(20, 3, frame_range=0, random_sampling=False, interval=5)
        assert len(clip) == 3 and len({i % 5 for i in clip}) == 1  # one phase, 5 frames apart (wrapping)
    with pytest.raises(ValueError, match="Cannot sample"):
        sample_clip_frames(0, 2, 5)


def test_per_clip_augmentations_are_the_same_on_every_frame():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    mask = (image[:, :, 0] > 128).astype(np.uint8)
    augs = [ClipAugmentation(RandomCrop("absolute_range", (8, 16)), True),
            ClipAugmentation(RandomFlip(), True)]
    for _ in range(20):
        frames, maps = apply_clip_augmentations(augs, [image, image.copy(), image.copy()], [[mask]] * 3)
        assert all(np.array_equal(f, frames[0]) for f in frames)
        assert np.array_equal(maps[0][0], (frames[0][:, :, 0] > 128).astype(np.uint8))  # masks move with frames
    per_frame = [ClipAugmentation(RandomFlip(), False)]
    outcomes = {np.array_equal(*apply_clip_augmentations(per_frame, [image, image])[0]) for _ in range(30)}
    assert outcomes == {True, False}
    resize = [ClipAugmentation(ResizeShortestEdge((8, 16), 1000, "range"), True)]
    shapes = [{f.shape for f in apply_clip_augmentations(resize, [image, image])[0]} for _ in range(20)]
    assert all(len(s) == 1 for s in shapes) and len(set.union(*shapes)) > 1


def test_augmentations_from_upstream_configs():
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml"))
    resize, flip = build_clip_augmentations(cfg, True)
    assert isinstance(resize.augmentation, ResizeShortestEdge) and resize.per_clip  # choice_by_clip
    assert resize.augmentation.short_edge_length == (360, 480) and resize.augmentation.sample_style == "choice"
    assert isinstance(flip.augmentation, RandomFlip) and flip.per_clip and flip.augmentation.horizontal
    (test,) = build_clip_augmentations(cfg, False)
    assert test.augmentation.short_edge_length == (360, 360)
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
    cfg.INPUT.RANDOM_FLIP = "horizontal"
    cfg.INPUT.AUGMENTATIONS = ["brightness"]
    crop, resize, flip, bright = build_clip_augmentations(cfg, True)
    assert isinstance(crop.augmentation, RandomCrop) and crop.per_clip and crop.augmentation.crop_size == (600, 720)
    assert not resize.per_clip and not flip.per_clip
    assert isinstance(bright.augmentation, RandomBrightness) and not bright.per_clip
    cfg.INPUT.AUGMENTATIONS = ["rotation"]
    with pytest.raises(ValueError, match="rotation"):
        build_clip_augmentations(cfg, True)


def _write_frames(folder: Path, count: int, sizes=None) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for t in range(count):
        size = sizes[t] if sizes else (H, W)
        Image.fromarray(np.full((*size, 3), 10 * t, dtype=np.uint8)).save(folder / f"{t:05d}.png")
        paths.append(str(folder / f"{t:05d}.png"))
    return paths


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _video_dict(tmp_path, count=4):
    a = np.zeros((H, W), dtype=np.uint8)
    a[0:2, 0:3] = 1
    b = np.zeros((H, W), dtype=np.uint8)
    b[3:6, 5:8] = 1
    track_a = {"id": 5, "category_id": 0, "iscrowd": 0, "segmentation": _rle(a)}
    track_b = {"id": 9, "category_id": 2, "iscrowd": 0, "segmentation": _rle(b)}
    crowd = {"id": 1, "category_id": 1, "iscrowd": 1, "segmentation": _rle(b)}
    annotations = [[track_a, crowd], [track_a], [track_a, track_b], [track_b]]
    return {"file_names": _write_frames(tmp_path / "v", count), "length": count, "video_id": 7, "height": H,
            "width": W, "annotations": annotations[:count]}, a, b


def _ytvis_mapper(is_train=True, **kw):
    return YTVISDatasetMapper(is_train, augmentations=[], image_format="RGB", sampling_frame_num=2, **kw)


def test_ytvis_training_clip(tmp_path):
    record, a, b = _video_dict(tmp_path)
    mapper = _ytvis_mapper()
    mapper.frame_indices = lambda length: [0, 2]
    out = mapper(record)
    assert "annotations" not in out and out["frame_indices"] == [0, 2] and out["video_id"] == 7
    assert out["file_names"] == [record["file_names"][0], record["file_names"][2]]
    assert [tuple(i.shape) for i in out["image"]] == [(3, H, W)] * 2 and out["image"][1][0, 0, 0] == 20
    f0, f2 = out["instances"]
    assert f0.gt_ids.tolist() == [5, -1] and f2.gt_ids.tolist() == [5, 9]  # the crowd track is left out
    assert f0.gt_classes.tolist() == f2.gt_classes.tolist() == [0, 2]  # same tracks, same order in every frame
    assert f0.gt_masks.dtype == torch.bool and f0.gt_masks.shape == (2, H, W)
    assert torch.equal(f0.gt_masks[0], torch.from_numpy(a).bool()) and not f0.gt_masks[1].any()
    assert torch.equal(f2.gt_masks[1], torch.from_numpy(b).bool())


def test_ytvis_track_cropped_away_becomes_absent(tmp_path):
    record, a, _ = _video_dict(tmp_path)
    mapper = YTVISDatasetMapper(True, augmentations=[ClipAugmentation(CropTransform(0, 0, 4, 3), True)],
                                image_format="RGB")
    mapper.frame_indices = lambda length: [2, 3]
    f2, f3 = mapper(record)["instances"]
    assert f2.gt_masks.shape == (2, 3, 4) and f2.gt_ids.tolist() == [5, -1] and f3.gt_ids.tolist() == [-1, -1]
    assert int(f2.gt_masks[0].sum()) == int(a[:3, :4].sum()) == 6


def test_ytvis_inference_and_oracle(tmp_path):
    record, _, _ = _video_dict(tmp_path)
    resize = [ClipAugmentation(ResizeShortestEdge(12, 100, "choice"), True)]
    out = YTVISDatasetMapper(False, augmentations=resize, image_format="RGB")(record)
    assert out["frame_indices"] == [0, 1, 2, 3] and "instances" not in out
    assert [tuple(i.shape) for i in out["image"]] == [(3, 12, 16)] * 4 and (out["height"], out["width"]) == (H, W)
    oracle = YTVISDatasetMapper(False, augmentations=resize, image_format="RGB", with_gt=True)(record)
    assert [i.gt_ids.tolist() for i in oracle["instances"]] == [[5, -1], [5, -1], [5, 9], [-1, 9]]
    assert oracle["instances"][0].gt_masks.shape == (2, 12, 16)


def test_ytvis_category_change_is_an_error(tmp_path):
    record, _, _ = _video_dict(tmp_path)
    record["annotations"][1][0] = dict(record["annotations"][1][0], category_id=3)
    mapper = _ytvis_mapper()
    mapper.frame_indices = lambda length: [0, 1]
    with pytest.raises(ValueError, match="Video 7: track 5 has categories 0 and 3"):
        mapper(record)


def test_bad_frames_name_the_video_and_frame(tmp_path):
    record, _, _ = _video_dict(tmp_path)
    record["file_names"] = _write_frames(tmp_path / "sizes", 4, sizes=[(H, W), (H, W + 2), (H, W), (H, W)])
    mapper = _ytvis_mapper(is_train=False)
    with pytest.raises(SizeMismatchError, match=r"Video 7, frame 1 \(.*00001\.png\) has size \(h, w\)=\(6, 10\) but "
                                                r"the video is \(6, 8\)"):
        mapper(record)
    record["file_names"] = _write_frames(tmp_path / "broken", 4)
    Path(record["file_names"][2]).write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"Video 7, frame 2: Cannot read image .*00002\.png"):
        MapDataset([record], mapper)[0]  # the loader passes the message on unchanged
    Path(record["file_names"][3]).unlink()
    with pytest.raises(ImageReadError, match=r"Video 7, frame 3: .*does not exist"):
        mapper(dict(record, file_names=record["file_names"][:2] + [record["file_names"][0], record["file_names"][3]]))


def test_vspw_clip(tmp_path):
    frames = _write_frames(tmp_path / "origin", 3)
    labels = []
    for t, values in enumerate(([[0, 3], [3, 3]], [[3, 5], [255, 5]], [[3, 3], [3, 3]])):
        label = np.kron(np.array(values, dtype=np.uint8), np.ones((3, 4), dtype=np.uint8))  # 2x2 blocks -> 6x8
        (tmp_path / "mask").mkdir(exist_ok=True)
        Image.fromarray(label).save(tmp_path / "mask" / f"{t}.png")
        labels.append(str(tmp_path / "mask" / f"{t}.png"))
    record = {"file_names": frames, "sem_seg_file_names": labels, "length": 3, "video_id": "vid", "height": H,
              "width": W, "frame_offset": 0, "video_length": 3}
    mapper = VSPWDatasetMapper(True, augmentations=[], image_format="RGB", num_classes=124)
    mapper.frame_indices = lambda length: [0, 2]
    out = mapper(record)
    assert out["sem_seg_file_names"] == [labels[0], labels[2]] and len(out["sem_seg"]) == 2
    assert out["sem_seg"][0].dtype == torch.int64 and out["sem_seg"][0][0, 0] == 255 and out["sem_seg"][0][0, 4] == 2
    f0, f2 = out["instances"]
    assert f0.gt_classes.tolist() == f2.gt_classes.tolist() == [2] and f0.gt_ids.tolist() == [2]
    assert int(f0.gt_masks[0].sum()) == 36 and int(f2.gt_masks[0].sum()) == 48
    mapper.frame_indices = lambda length: [0, 1]
    f0, f1 = mapper(record)["instances"]
    assert f0.gt_classes.tolist() == [2, 4] and f0.gt_ids.tolist() == [2, -1] and f1.gt_ids.tolist() == [2, 4]
    assert not f0.gt_masks[1].any() and int(f1.gt_masks[1].sum()) == 24
    test = VSPWDatasetMapper(False, augmentations=[], image_format="RGB")(record)
    assert len(test["image"]) == 3 and "sem_seg" not in test and test["sem_seg_file_names"] == labels
    no_labels = {k: v for k, v in record.items() if k != "sem_seg_file_names"}
    with pytest.raises(ValueError, match="VSPW video vid has no label maps"):
        mapper(no_labels)
