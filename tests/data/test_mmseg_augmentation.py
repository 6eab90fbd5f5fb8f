"""mmsegmentation's training augmentations (data/transforms/mmseg_augmentation.py) and the semantic mapper's
config switch to them: exact resize sizes, the cat_max_ratio crop, the photometric distortion against a
reference written from mmseg's code, and the whole pipeline on a tiny image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.data import transforms as T
from mask2former_rankseg.data.mappers import MaskFormerSemanticDatasetMapper
from mask2former_rankseg.data.mappers.semantic import semantic_training_augmentations

# ------------------------------------------------------------------------------------------------- resize


@pytest.mark.parametrize("h, w, ratio, expected", [
    (480, 640, 1.0, (512, 683)),    # target (2048, 512): short side binds, 640 * 512 / 480 = 682.67 -> 683
    (480, 640, 0.5, (256, 341)),    # target (1024, 256)
    (480, 640, 2.0, (1024, 1365)),  # target (4096, 1024)
    (480, 640, 0.75, (384, 512)),   # target (1536, 384)
    (480, 640, 0.7, (358, 477)),    # target int(1433.6), int(358.4) = (1433, 358): 640 * 358 / 480 = 477.33
    (640, 480, 0.7, (477, 358)),    # portrait: the same with h and w swapped
    (100, 1000, 1.0, (205, 2048)),  # long side binds: factor 2048 / 1000, 100 * 2.048 = 204.8 -> 205
])
def test_ratio_range_resize_output_sizes(h, w, ratio, expected):
    resize = T.RatioRangeResize((2048, 512), (0.5, 2.0))
    assert resize.output_size(h, w, ratio) == expected
    assert T.RatioRangeResize((512, 2048), (0.5, 2.0)).output_size(h, w, ratio) == expected  # either order


def test_ratio_range_resize_draws_the_ratio_as_mmseg():
    image = np.zeros((480, 640, 3), np.uint8)
    resize = T.RatioRangeResize((2048, 512), (0.5, 2.0))
    np.random.seed(3)
    ratio = np.random.random_sample() * 1.5 + 0.5  # mmseg's random_sample_ratio
    np.random.seed(3)
    tfm = resize.get_transform(image)
    assert isinstance(tfm, T.CV2ResizeTransform)
    assert (tfm.new_h, tfm.new_w) == resize.output_size(480, 640, ratio)
    assert tfm.apply_image(image).shape == (tfm.new_h, tfm.new_w, 3)
    with pytest.raises(ValueError, match="ratio_range"):
        T.RatioRangeResize((2048, 512), (2.0, 0.5))


def test_cv2_resize_transform_is_mmcvs():
    labels = np.array([[0, 1, 2, 3]], dtype=np.uint8)
    # cv2's nearest takes source pixel floor(x * 2): 0 and 2 (detectron2's pixel-centre rule takes 1 and 3)
    assert T.CV2ResizeTransform(1, 4, 1, 2).apply_segmentation(labels).tolist() == [[0, 2]]
    assert T.ResizeTransform(1, 4, 1, 2).apply_segmentation(labels).tolist() == [[1, 3]]
    wide = np.array([[0, 1, 2, 3]], dtype=np.int64) * 1000
    out = T.CV2ResizeTransform(1, 4, 2, 8).apply_segmentation(wide)
    assert out.dtype == np.int64 and out.tolist() == [[0, 0, 1000, 1000, 2000, 2000, 3000, 3000]] * 2
    image = np.array([[[0], [100]]], dtype=np.uint8)  # [1, 2, 1]: bilinear, half-pixel centres
    assert T.CV2ResizeTransform(1, 2, 1, 4).apply_image(image)[0, :, 0].tolist() == [0, 25, 75, 100]


# --------------------------------------------------------------------------------------------------- crop


def _two_class_labels():
    """[10, 40]: class 1 in columns 0..29, class 2 in 30..39. A 10x10 window at x0 holds max(0, x0 - 20) columns
    of class 2, so only x0 in 23..27 keeps both classes under 75 %."""
    seg = np.ones((10, 40), dtype=np.uint8)
    seg[:, 30:] = 2
    return seg


def _mmseg_window(seed, seg, crop=(10, 10), ratio=0.75):
    """x0 that mmseg's RandomCrop chooses under ``seed`` (written from its __call__), and the windows it drew."""
    np.random.seed(seed)
    h, w = seg.shape

    def bbox():
        return np.random.randint(0, max(h - crop[0], 0) + 1), np.random.randint(0, max(w - crop[1], 0) + 1)

    drawn = [bbox()]
    for _ in range(10):
        y0, x0 = drawn[-1]
        labels, cnt = np.unique(seg[y0 : y0 + crop[0], x0 : x0 + crop[1]], return_counts=True)
        cnt = cnt[labels != 255]
        if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < ratio:
            break
        drawn.append(bbox())
    return drawn[-1][1], drawn


def test_cat_max_ratio_crop_rejects_a_dominated_window_for_a_better_one():
    seg = _two_class_labels()
    image = np.zeros((10, 40, 3), np.uint8)
    crop = T.RandomCropCatMaxRatio((10, 10), 0.75, 255)
    seed = next(s for s in range(100) if not 23 <= _mmseg_window(s, seg)[1][0][1] <= 27
                and 23 <= _mmseg_window(s, seg)[0] <= 27)
    first_x0 = _mmseg_window(seed, seg)[1][0][1]
    np.random.seed(seed)
    tfm = crop.get_transform(image, seg)
    assert not 23 <= first_x0 <= 27  # the first window is dominated by one class (or holds only one) ...
    assert 23 <= tfm.x0 <= 27 and (tfm.y0, tfm.w, tfm.h) == (0, 10, 10)  # ... and a balanced one is kept
    window = tfm.apply_segmentation(seg)
    assert np.bincount(window.ravel()).max() / window.size < 0.75


def test_cat_max_ratio_crop_follows_mmsegs_draws_including_the_11th_window():
    seg = _two_class_labels()
    image = np.zeros((10, 40, 3), np.uint8)
    crop = T.RandomCropCatMaxRatio((10, 10), 0.75, 255)
    eleventh = 0
    for seed in range(60):
        expected, drawn = _mmseg_window(seed, seg)
        eleventh += len(drawn) == 11
        np.random.seed(seed)
        assert crop.get_transform(image, seg).x0 == expected, seed
    assert eleventh > 0  # some seeds reject 10 windows and keep the 11th, unchecked
    hopeless = np.ones((10, 40), np.uint8)  # one class everywhere: every window is rejected
    np.random.seed(0)
    crop.get_transform(image, hopeless)
    after_crop = np.random.randint(1 << 30)
    np.random.seed(0)
    for _ in range(11):
        np.random.randint(0, 1)  # y0 (the margin is 0), then x0
        np.random.randint(0, 31)
    assert np.random.randint(1 << 30) == after_crop  # exactly 11 windows were drawn


def test_cat_max_ratio_excludes_the_ignore_label():
    crop = T.RandomCropCatMaxRatio((4, 5), 0.75, 255)
    one_class = np.array([[1] * 12 + [255] * 8])
    assert not crop._accepts(one_class)  # 60 % class 1 but no second class
    dominated = np.array([[1] * 14 + [2] * 2 + [255] * 4])
    assert not crop._accepts(dominated)  # 14 / 16 = 87.5 % of the labelled pixels (70 % of all)
    assert crop._accepts(np.array([[1] * 11 + [2] * 5 + [255] * 4]))  # 11 / 16 = 68.75 %
    assert not crop._accepts(np.array([[1] * 12 + [2] * 4]))  # exactly 75 %: not below


def test_cat_max_ratio_crop_clips_to_small_images():
    image = np.zeros((6, 20, 3), np.uint8)
    np.random.seed(0)
    tfm = T.RandomCropCatMaxRatio((10, 10), 1.0).get_transform(image)
    assert tfm.y0 == 0 and (tfm.h, tfm.w) == (6, 10) and tfm.apply_image(image).shape == (6, 10, 3)


# ------------------------------------------------------------------------------------- photometric distortion


def _mmseg_photometric(img, seed, brightness_delta=32, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue_delta=18):
    """mmseg's PhotoMetricDistortion.__call__ on a BGR image, written from its code (numpy's random)."""
    np.random.seed(seed)
    rnd = np.random

    def convert(x, alpha=1, beta=0):
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def do_contrast(x):
        return convert(x, alpha=rnd.uniform(*contrast)) if rnd.randint(2) else x

    if rnd.randint(2):
        img = convert(img, beta=rnd.uniform(-brightness_delta, brightness_delta))
    mode = rnd.randint(2)
    if mode == 1:
        img = do_contrast(img)
    if rnd.randint(2):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 1] = convert(img[:, :, 1], alpha=rnd.uniform(*saturation))
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if rnd.randint(2):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        img[:, :, 0] = (img[:, :, 0].astype(int) + rnd.randint(-hue_delta, hue_delta)) % 180
        img = cv2.cvtColor(img, cv2.COLOR_HSV2BGR)
    if mode == 0:
        img = do_contrast(img)
    return img


def test_photometric_distortion_equals_mmsegs_under_a_seed():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, size=(8, 9, 3), dtype=np.uint8)
    rgb = np.ascontiguousarray(bgr[:, :, ::-1])
    changed = 0
    for seed in range(40):
        expected = _mmseg_photometric(bgr.copy(), seed)
        np.random.seed(seed)
        out_bgr = T.PhotoMetricDistortion("BGR").get_transform(bgr).apply_image(bgr)
        np.random.seed(seed)
        out_rgb = T.PhotoMetricDistortion("RGB").get_transform(rgb).apply_image(rgb)
        np.testing.assert_array_equal(out_bgr, expected)
        np.testing.assert_array_equal(out_rgb, expected[:, :, ::-1])  # RGB input: the same, in RGB
        changed += not np.array_equal(out_bgr, bgr)
    assert changed > 30


def test_photometric_distortion_hue_shift_range_and_labels():
    aug = T.PhotoMetricDistortion("RGB", hue_delta=2)
    hues = set()
    for seed in range(200):
        np.random.seed(seed)
        hues.add(aug.get_transform(np.zeros((2, 2, 3), np.uint8)).hue)
    assert hues == {None, -2, -1, 0, 1}  # numpy's randint(-2, 2): 2 is never drawn (ColorAugSSD draws it)
    seg = np.array([[0, 255], [3, 4]])
    tfm = T.PhotoMetricDistortionTransform("RGB", brightness=10.0, contrast=None, contrast_first=False,
                                           saturation=None, hue=None)
    assert tfm.apply_segmentation(seg) is seg
    assert tfm.apply_image(np.full((1, 1, 3), 250, np.uint8)).tolist() == [[[255, 255, 255]]]  # clipped
    with pytest.raises(ValueError, match="'RGB' or 'BGR'"):
        T.PhotoMetricDistortion("L")


def test_flip_draws_as_mmsegs():
    flips = []
    for seed in range(20):
        np.random.seed(seed)
        expected = np.random.rand() < 0.5  # mmseg's RandomFlip(prob=0.5)
        np.random.seed(seed)
        flipped = isinstance(T.RandomFlip(0.5).get_transform(np.zeros((2, 2, 3), np.uint8)), T.HFlipTransform)
        assert flipped == expected
        flips.append(flipped)
    assert any(flips) and not all(flips)


# ------------------------------------------------------------------------------------ config and the mapper


def _mmseg_cfg(**overrides):
    cfg = get_cfg()
    cfg.merge_from_list([
        "DATASETS.TRAIN", "('coco_stuff_10k_train_sem_seg',)", "INPUT.FORMAT", "RGB",
        "INPUT.RESIZE.TYPE", "ratio_range", "INPUT.RESIZE.SCALE", "(2048, 512)",
        "INPUT.RESIZE.RATIO_RANGE", "(0.5, 2.0)", "INPUT.AUGMENTATION_STYLE", "mmseg",
        "INPUT.CROP.ENABLED", "True", "INPUT.CROP.TYPE", "absolute", "INPUT.CROP.SIZE", "(512, 512)",
        "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA", "0.75", "INPUT.COLOR_AUG_SSD", "True",
        "INPUT.SIZE_DIVISIBILITY", "512", "MODEL.SEM_SEG_HEAD.IGNORE_VALUE", "255",
    ])
    cfg.merge_from_list([x for kv in overrides.items() for x in kv])
    return cfg


def test_config_selects_mmsegs_pipeline():
    augs = semantic_training_augmentations(_mmseg_cfg())
    assert [type(a) for a in augs] == [T.RatioRangeResize, T.RandomCropCatMaxRatio, T.RandomFlip,
                                       T.PhotoMetricDistortion]
    resize, crop, flip, photo = augs
    assert resize.scale == (2048, 512) and resize.ratio_range == (0.5, 2.0)
    assert crop.crop_size == (512, 512) and crop.cat_max_ratio == 0.75 and crop.ignore_index == 255
    assert flip.prob == 0.5 and flip.horizontal
    assert photo.img_format == "RGB" and photo.hue_delta == 18 and photo.brightness_delta == 32
    assert photo.contrast_range == photo.saturation_range == (0.5, 1.5)
    # ratio_range resize with detectron2's crop and colour augmentation
    hybrid = semantic_training_augmentations(_mmseg_cfg(**{"INPUT.AUGMENTATION_STYLE": "detectron2"}))
    assert [type(a) for a in hybrid] == [T.RatioRangeResize, T.RandomCrop_CategoryAreaConstraint,
                                         T.ColorAugSSDTransform, T.RandomFlip]
    bare = semantic_training_augmentations(
        _mmseg_cfg(**{"INPUT.CROP.ENABLED": "False", "INPUT.COLOR_AUG_SSD": "False"}))
    assert [type(a) for a in bare] == [T.RatioRangeResize, T.RandomFlip]


def test_keys_from_yaml(tmp_path):
    (tmp_path / "c.yaml").write_text("INPUT:\n  RESIZE:\n    TYPE: ratio_range\n    SCALE: (1024, 256)\n"
                                     "    RATIO_RANGE: [0.75, 1.5]\n  AUGMENTATION_STYLE: mmseg\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "c.yaml"))
    assert cfg.INPUT.RESIZE.SCALE == (1024, 256) and cfg.INPUT.RESIZE.RATIO_RANGE == (0.75, 1.5)
    assert semantic_training_augmentations(cfg)[0].ratio_range == (0.75, 1.5)


def test_default_config_keeps_detectron2s_pipeline():
    cfg = get_cfg()
    assert cfg.INPUT.RESIZE.TYPE == "shortest_edge" and cfg.INPUT.AUGMENTATION_STYLE == "detectron2"
    assert cfg.INPUT.RESIZE.SCALE == (2048, 512) and cfg.INPUT.RESIZE.RATIO_RANGE == (0.5, 2.0)
    cfg.merge_from_list(["INPUT.CROP.ENABLED", "True", "INPUT.COLOR_AUG_SSD", "True", "INPUT.FORMAT", "RGB"])
    assert [type(a) for a in semantic_training_augmentations(cfg)] == [
        T.ResizeShortestEdge, T.RandomCrop_CategoryAreaConstraint, T.ColorAugSSDTransform, T.RandomFlip]


@pytest.mark.parametrize("key, value, message", [
    ("INPUT.RESIZE.TYPE", "ratio", r"INPUT.RESIZE.TYPE is 'ratio'; use one of \('shortest_edge', 'ratio_range'\)"),
    ("INPUT.AUGMENTATION_STYLE", "mmcv", "INPUT.AUGMENTATION_STYLE is 'mmcv'"),
    ("INPUT.CROP.TYPE", "relative_range", "set INPUT.CROP.TYPE to 'absolute' \\(it is 'relative_range'\\)"),
])
def test_config_errors_name_the_key(key, value, message):
    with pytest.raises(ValueError, match=message):
        semantic_training_augmentations(_mmseg_cfg(**{key: value}))


def _write_pair(folder, h=24, w=32):
    """A random RGB image and labels 3 (left half), 7 (right half, first 4 rows), 255 (right half, below)."""
    image = np.random.default_rng(1).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    label = np.full((h, w), 3, dtype=np.uint8)
    label[:4, w // 2 :] = 7
    label[4:, w // 2 :] = 255
    Image.fromarray(image).save(folder / "image.png")
    Image.fromarray(label).save(folder / "label.png")
    return {"file_name": str(folder / "image.png"), "sem_seg_file_name": str(folder / "label.png"), "image_id": "a"}


def test_mmseg_pipeline_through_the_mapper(tmp_path):
    record = _write_pair(tmp_path)
    cfg = _mmseg_cfg(**{"INPUT.RESIZE.SCALE": "(64, 16)", "INPUT.CROP.SIZE": "(16, 16)",
                        "INPUT.SIZE_DIVISIBILITY": "16"})
    mapper = MaskFormerSemanticDatasetMapper.from_config(cfg)
    outputs = []
    for seed in (0, 1, 2, 0):
        np.random.seed(seed)
        out = mapper(record)
        assert out["image"].shape == (3, 16, 16) and out["sem_seg"].shape == (16, 16)
        assert set(out["sem_seg"].unique().tolist()) <= {3, 7, 255}
        outputs.append(out)
    assert torch.equal(outputs[0]["image"], outputs[3]["image"])  # deterministic under a seed
    assert torch.equal(outputs[0]["sem_seg"], outputs[3]["sem_seg"])
    assert not all(torch.equal(outputs[0]["image"], o["image"]) for o in outputs[1:3])

    # the mapper = the augmentations in order (resize, crop, flip, photometric), then padding to 16 with 128 / 255
    np.random.seed(0)
    image, label = np.asarray(Image.open(record["file_name"])), np.asarray(Image.open(record["sem_seg_file_name"]))
    for aug in semantic_training_augmentations(cfg):
        tfm = aug.get_transform(image, label)
        image, label = tfm.apply_image(image), tfm.apply_segmentation(label)
    h, w = label.shape
    padded = np.full((16, 16), 255)
    padded[:h, :w] = label
    np.testing.assert_array_equal(outputs[0]["sem_seg"].numpy(), padded)
    assert (outputs[0]["image"][:, h:, :] == 128).all() and (outputs[0]["image"][:, :, w:] == 128).all()
