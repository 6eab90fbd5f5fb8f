"""Data layer: transforms, mappers, image reading errors, dataset loaders, samplers and loaders."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO
from PIL import Image

from mask2former_rankseg.data import (
    DatasetCatalog,
    InferenceDatasetMapper,
    MaskFormerSemanticDatasetMapper,
    MetadataCatalog,
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
    read_image,
    samplers,
)
from mask2former_rankseg.data import build as data_build
from mask2former_rankseg.data import transforms as T
from mask2former_rankseg.data.datasets import ADE20K_SEM_SEG_CATEGORIES, ADE20K_SEM_SEG_COLORS, load_sem_seg
from mask2former_rankseg.data.detection_utils import ImageReadError, SizeMismatchError

# --------------------------------------------------------------------------------------------- helpers


def _write_pair(folder: Path, stem: str, h: int, w: int, seed: int, classes=(0, 3, 7)):
    """An RGB PNG image and a label PNG with ``classes`` in vertical bands and a 255 border row."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    label = np.zeros((h, w), dtype=np.uint8)
    bands = np.array_split(np.arange(w), len(classes))
    for c, cols in zip(classes, bands):
        label[:, cols] = c
    label[0] = 255
    (folder / "img").mkdir(parents=True, exist_ok=True)
    (folder / "gt").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "img" / f"{stem}.png")
    Image.fromarray(label).save(folder / "gt" / f"{stem}.png")
    return {
        "file_name": str(folder / "img" / f"{stem}.png"),
        "sem_seg_file_name": str(folder / "gt" / f"{stem}.png"),
        "image_id": stem,
    }, image, label


def _semantic_mapper(augs=(), size_divisibility=0, fmt="RGB"):
    return MaskFormerSemanticDatasetMapper(True, augmentations=list(augs), image_format=fmt, ignore_label=255,
                                           size_divisibility=size_divisibility)


def _synthetic_cfg(**overrides):
    from mask2former_rankseg.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/synthetic/maskformer2_R18_synthetic.yaml"))
    cfg.merge_from_list([x for kv in overrides.items() for x in kv])
    return cfg


# ------------------------------------------------------------------------------------------ transforms


def test_resize_shortest_edge_output_shape():
    assert T.ResizeShortestEdge.get_output_shape(480, 640, 512, 10_000) == (512, 683)
    assert T.ResizeShortestEdge.get_output_shape(640, 480, 512, 10_000) == (683, 512)
    assert T.ResizeShortestEdge.get_output_shape(100, 400, 200, 500) == (125, 500)  # capped by max_size
    image = np.zeros((30, 40, 3), np.uint8)
    for _ in range(20):
        tfm = T.ResizeShortestEdge((20, 24), 1000, "range").get_transform(image)
        assert 20 <= tfm.new_h <= 24 and tfm.new_w == int(tfm.new_h * 4 / 3 + 0.5)
    sizes = {T.ResizeShortestEdge((15, 60), 1000, "choice").get_transform(image).new_h for _ in range(40)}
    assert sizes == {15, 60}
    with pytest.raises(ValueError, match="range"):
        T.ResizeShortestEdge((1, 2, 3), 100, "range")


def test_resize_segmentation_is_exact_nearest_and_image_bilinear():
    seg = np.array([[1, 2], [3, 255]], dtype=np.uint8)
    tfm = T.ResizeTransform(2, 2, 6, 4)
    np.testing.assert_array_equal(tfm.apply_segmentation(seg), np.kron(seg, np.ones((3, 2), np.uint8)))
    image = np.full((2, 2, 3), 77, np.uint8)
    out = tfm.apply_image(image)
    assert out.shape == (6, 4, 3) and out.dtype == np.uint8 and np.all(out == 77)
    grey = tfm.apply_image(np.full((2, 2, 1), 9, np.uint8))
    assert grey.shape == (6, 4, 1)
    down = T.ResizeTransform(6, 4, 2, 2).apply_segmentation(np.kron(seg, np.ones((3, 2), np.uint8)))
    np.testing.assert_array_equal(down, seg)


def test_random_crop_sizes():
    image = np.zeros((50, 80, 3), np.uint8)
    assert T.RandomCrop("absolute", (30, 100)).get_crop_size((50, 80)) == (30, 80)
    assert T.RandomCrop("relative", (0.5, 0.25)).get_crop_size((50, 80)) == (25, 20)
    for _ in range(20):
        h, w = T.RandomCrop("relative_range", (0.5, 0.5)).get_crop_size((50, 80))
        assert 25 <= h <= 50 and 40 <= w <= 80
        h, w = T.RandomCrop("absolute_range", (10, 60)).get_crop_size((50, 80))
        assert 10 <= h <= 50 and 10 <= w <= 60
        tfm = T.RandomCrop("absolute", (30, 40)).get_transform(image)
        out = tfm.apply_image(image)
        assert out.shape == (30, 40, 3) and 0 <= tfm.x0 <= 40 and 0 <= tfm.y0 <= 20
    with pytest.raises(ValueError, match="crop_type"):
        T.RandomCrop("bogus", (1, 1))


def test_crop_applies_the_same_window_to_image_and_segmentation():
    image = np.arange(20 * 30 * 3, dtype=np.int64).reshape(20, 30, 3).astype(np.uint8)
    seg = np.arange(20 * 30).reshape(20, 30)
    tfm = T.CropTransform(x0=5, y0=3, w=10, h=7)
    np.testing.assert_array_equal(tfm.apply_image(image), image[3:10, 5:15])
    np.testing.assert_array_equal(tfm.apply_segmentation(seg), seg[3:10, 5:15])


def test_flip_equivariance():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    seg = rng.integers(0, 5, (7, 9)).astype(np.uint8)
    img_f, seg_f = T.apply_augmentations([T.RandomFlip(prob=1.0)], image, seg)
    np.testing.assert_array_equal(img_f, image[:, ::-1])
    np.testing.assert_array_equal(seg_f, seg[:, ::-1])
    img_v, seg_v = T.apply_augmentations([T.RandomFlip(prob=1.0, horizontal=False, vertical=True)], image, seg)
    np.testing.assert_array_equal(img_v, image[::-1])
    np.testing.assert_array_equal(seg_v, seg[::-1])
    img_n, seg_n = T.apply_augmentations([T.RandomFlip(prob=0.0)], image, seg)
    np.testing.assert_array_equal(img_n, image)
    # flipping twice is the identity; pixel (y, x) of the label map follows pixel (y, x) of the image
    twice = T.apply_augmentations([T.RandomFlip(prob=1.0)] * 2, image, seg)
    np.testing.assert_array_equal(twice[0], image)
    np.testing.assert_array_equal(twice[1], seg)
    with pytest.raises(ValueError):
        T.RandomFlip(horizontal=True, vertical=True)


def _crop_is_valid(crop: np.ndarray, max_area: float, ignored) -> bool:
    labels, counts = np.unique(crop, return_counts=True)
    if ignored is not None:
        counts = counts[labels != ignored]
    return len(counts) > 1 and counts.max() < counts.sum() * max_area


def test_category_area_constraint_crop():
    # Left 60 columns class 0, right 40 columns class 1, the top 10 rows ignore: a 20x20 window is
    # valid (two classes, none >= 75% of labelled pixels) only for x0 in [46, 54] (9 of 81 positions).
    seg = np.zeros((40, 100), np.uint8)
    seg[:, 60:] = 1
    seg[:10] = 255
    image = np.zeros((40, 100, 3), np.uint8)
    constrained = T.RandomCrop_CategoryAreaConstraint("absolute", (20, 20), 0.75, 255)
    plain = T.RandomCrop("absolute", (20, 20))
    np.random.seed(0)
    valid_constrained = valid_plain = 0
    trials = 300
    for _ in range(trials):
        tfm = constrained.get_transform(image, seg)
        assert (tfm.h, tfm.w) == (20, 20)
        valid_constrained += _crop_is_valid(tfm.apply_segmentation(seg), 0.75, 255)
        valid_plain += _crop_is_valid(plain.get_transform(image).apply_segmentation(seg), 0.75, 255)
    p = 9 / 81
    assert abs(valid_plain / trials - p) < 0.06
    expected = 1 - (1 - p) ** 10  # ~0.69: the first valid one of up to 10 windows
    assert abs(valid_constrained / trials - expected) < 0.08

    # max area 1.0 is a plain RandomCrop: the same random draws give the same window
    np.random.seed(5)
    a = T.RandomCrop_CategoryAreaConstraint("absolute", (20, 20), 1.0, 255).get_transform(image, seg)
    np.random.seed(5)
    b = plain.get_transform(image)
    assert (a.x0, a.y0) == (b.x0, b.y0)


def test_color_aug_ssd_keeps_labels_and_channel_order():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    seg = rng.integers(0, 4, (16, 16)).astype(np.uint8)
    outs = []
    for seed in range(6):
        np.random.seed(seed)
        out_rgb, out_seg = T.apply_augmentations([T.ColorAugSSDTransform("RGB")], rgb, seg)
        np.random.seed(seed)
        out_bgr = T.ColorAugSSDTransform("BGR").apply_image(np.ascontiguousarray(rgb[:, :, ::-1]))
        np.testing.assert_array_equal(out_rgb, out_bgr[:, :, ::-1])
        np.testing.assert_array_equal(out_seg, seg)
        assert out_rgb.dtype == np.uint8 and out_rgb.shape == rgb.shape
        outs.append(out_rgb)
    assert any(not np.array_equal(o, rgb) for o in outs)
    with pytest.raises(ValueError):
        T.ColorAugSSDTransform("L")


# --------------------------------------------------------------------------------------- read_image


def test_read_image_formats(tmp_path):
    record, image, label = _write_pair(tmp_path, "a", 5, 6, seed=0)
    np.testing.assert_array_equal(read_image(record["file_name"], "RGB"), image)
    np.testing.assert_array_equal(read_image(record["file_name"], "BGR"), image[:, :, ::-1])
    grey = read_image(record["file_name"], "L")
    assert grey.shape == (5, 6, 1) and grey.dtype == np.uint8
    np.testing.assert_array_equal(read_image(record["sem_seg_file_name"]), label)
    with pytest.raises(ValueError, match="Unsupported image format"):
        read_image(record["file_name"], "CMYK")


def test_unreadable_images_raise_one_error_naming_the_file(tmp_path):
    record, _, _ = _write_pair(tmp_path, "a", 32, 32, seed=0)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"definitely not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(record["file_name"]).read_bytes()[:200])
    for path in (garbage, truncated, tmp_path / "missing.png"):
        with pytest.raises(ImageReadError, match=str(path)):
            read_image(path, "RGB")
    # through the mapper and the loader's dataset wrapper, the same error names the file
    mapper = _semantic_mapper()
    bad = dict(record, file_name=str(truncated))
    with pytest.raises(ImageReadError, match=str(truncated)):
        mapper(bad)
    with pytest.raises(ImageReadError, match=str(truncated)):
        data_build.MapDataset([bad], mapper)[0]


def test_size_mismatch_names_the_annotation(tmp_path):
    record, _, _ = _write_pair(tmp_path, "a", 8, 10, seed=0)
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(record["sem_seg_file_name"])
    with pytest.raises(SizeMismatchError, match=record["sem_seg_file_name"]):
        _semantic_mapper()(record)
    record2, _, _ = _write_pair(tmp_path, "b", 8, 10, seed=0)
    with pytest.raises(SizeMismatchError, match=record2["file_name"]):
        _semantic_mapper()(dict(record2, height=9, width=10))


# ------------------------------------------------------------------------------------------- mappers


def _reconstruct(instances, shape, ignore=255):
    recon = torch.full(shape, ignore, dtype=torch.int64)
    for cls, mask in zip(instances.gt_classes, instances.gt_masks):
        assert (recon[mask] == ignore).all(), "masks overlap"
        recon[mask] = cls
    return recon


def test_semantic_mapper_outputs(tmp_path):
    record, image, label = _write_pair(tmp_path, "a", 40, 50, seed=1)
    out = _semantic_mapper()(record)
    assert set(out) == {"file_name", "sem_seg_file_name", "image_id", "height", "width", "image", "sem_seg",
                        "instances"}
    assert "height" not in record  # the input dict is not modified
    assert (out["height"], out["width"]) == (40, 50)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 40, 50)
    np.testing.assert_array_equal(out["image"].permute(1, 2, 0).numpy(), image)
    assert out["sem_seg"].dtype == torch.int64
    np.testing.assert_array_equal(out["sem_seg"].numpy(), label)
    inst = out["instances"]
    assert inst.image_size == (40, 50)
    assert inst.gt_classes.dtype == torch.int64 and inst.gt_classes.tolist() == [0, 3, 7]
    assert inst.gt_masks.dtype == torch.bool and inst.gt_masks.shape == (3, 40, 50)
    assert torch.equal(_reconstruct(inst, (40, 50)), out["sem_seg"])

    bgr = _semantic_mapper(fmt="BGR")(record)
    assert torch.equal(bgr["image"], out["image"].flip(0))


def test_semantic_mapper_pads_with_ignore(tmp_path):
    record, image, label = _write_pair(tmp_path, "a", 40, 50, seed=2)
    out = _semantic_mapper(size_divisibility=32)(record)
    assert out["image"].shape == (3, 64, 64) and out["sem_seg"].shape == (64, 64)
    np.testing.assert_array_equal(out["image"][:, :40, :50].permute(1, 2, 0).numpy(), image)
    assert (out["image"][:, 40:] == 128).all() and (out["image"][:, :, 50:] == 128).all()
    np.testing.assert_array_equal(out["sem_seg"][:40, :50].numpy(), label)
    assert (out["sem_seg"][40:] == 255).all() and (out["sem_seg"][:, 50:] == 255).all()
    assert out["instances"].gt_masks.shape == (3, 64, 64)
    assert torch.equal(_reconstruct(out["instances"], (64, 64)), out["sem_seg"])
    assert (out["height"], out["width"]) == (40, 50)


def test_semantic_mapper_augments_image_and_labels_together(tmp_path):
    record, image, label = _write_pair(tmp_path, "a", 40, 50, seed=3)
    out = _semantic_mapper([T.RandomFlip(prob=1.0), T.ResizeShortestEdge(80, 1000, "choice")])(record)
    assert out["image"].shape == (3, 80, 100)
    expected = np.kron(label[:, ::-1], np.ones((2, 2), np.uint8))
    np.testing.assert_array_equal(out["sem_seg"].numpy(), expected)
    assert torch.equal(_reconstruct(out["instances"], (80, 100)), out["sem_seg"])


def test_semantic_mapper_all_ignore_gives_empty_instances(tmp_path):
    record, _, _ = _write_pair(tmp_path, "a", 6, 6, seed=0)
    Image.fromarray(np.full((6, 6), 255, np.uint8)).save(record["sem_seg_file_name"])
    inst = _semantic_mapper()(record)["instances"]
    assert len(inst) == 0 and inst.gt_masks.shape == (0, 6, 6) and inst.gt_classes.dtype == torch.int64


def test_semantic_mapper_requires_labels(tmp_path):
    record, _, _ = _write_pair(tmp_path, "a", 6, 6, seed=0)
    del record["sem_seg_file_name"]
    with pytest.raises(ValueError, match=f"{record['file_name']}.*sem_seg_file_name"):
        _semantic_mapper()(record)
    with pytest.raises(ValueError, match="InferenceDatasetMapper"):
        MaskFormerSemanticDatasetMapper(False, augmentations=[], image_format="RGB", ignore_label=255,
                                        size_divisibility=0)


def test_inference_mapper_keeps_original_size(tmp_path):
    record, image, _ = _write_pair(tmp_path, "a", 40, 50, seed=4)
    out = InferenceDatasetMapper(min_size=80, max_size=1000, image_format="RGB")(record)
    assert set(out) == set(record) | {"image", "height", "width"}
    assert (out["height"], out["width"]) == (40, 50)
    assert out["image"].shape == (3, 80, 100) and out["image"].dtype == torch.uint8
    assert out["file_name"] == record["file_name"] and out["sem_seg_file_name"] == record["sem_seg_file_name"]
    capped = InferenceDatasetMapper(min_size=80, max_size=60, image_format="RGB")(record)
    assert capped["image"].shape == (3, 48, 60)


def test_oracle_classes_from_panoptic_segments_or_the_label_map(tmp_path):
    """The -gt oracle at inference: for panoptic data the categories of the non-crowd segments (upstream's test
    mapper), not those of the semantic file; for semantic data those of the label map."""
    record, _, labels = _write_pair(tmp_path, "a", 40, 50, seed=4)
    mapper = InferenceDatasetMapper(min_size=80, max_size=1000, image_format="RGB", load_gt=True)
    from_map = mapper(record)["instances"].gt_classes.tolist()
    assert from_map == sorted(set(np.unique(labels).tolist()) - {255})
    panoptic = dict(record, segments_info=[{"id": 1, "category_id": 7, "iscrowd": 0},
                                           {"id": 2, "category_id": 3, "iscrowd": 1},
                                           {"id": 3, "category_id": 2}, {"id": 4, "category_id": 7, "iscrowd": 0}])
    out = mapper(panoptic)
    assert out["instances"].gt_classes.tolist() == [2, 7] and out["instances"].image_size == (80, 100)
    assert out["image"].shape == (3, 80, 100)
    del record["sem_seg_file_name"]
    with pytest.raises(ValueError, match="sem_seg_file_name.*segments_info"):
        mapper(record)


def test_mappers_from_config():
    cfg = _synthetic_cfg(**{"INPUT.COLOR_AUG_SSD": True, "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA": 0.5})
    mapper = MaskFormerSemanticDatasetMapper.from_config(cfg)
    kinds = [type(a) for a in mapper.augmentations]
    assert kinds == [T.ResizeShortestEdge, T.RandomCrop_CategoryAreaConstraint, T.ColorAugSSDTransform,
                     T.RandomFlip]
    resize, crop = mapper.augmentations[:2]
    assert resize.short_edge_length == (112, 128, 144) and resize.sample_style == "choice"
    assert crop.crop_aug.crop_size == (128, 128) and crop.single_category_max_area == 0.5
    assert crop.ignored_category == 255
    assert mapper.ignore_label == 255 and mapper.size_divisibility == 128 and mapper.image_format == "RGB"
    no_crop = MaskFormerSemanticDatasetMapper.from_config(_synthetic_cfg(**{"INPUT.CROP.ENABLED": False}))
    assert [type(a) for a in no_crop.augmentations] == [T.ResizeShortestEdge, T.RandomFlip]
    test_mapper = InferenceDatasetMapper.from_config(cfg)
    assert test_mapper.resize.short_edge_length == (128, 128) and test_mapper.resize.max_size == 512


# ------------------------------------------------------------------------------------------ datasets


def test_ade20k_metadata():
    for name in ("ade20k_sem_seg_train", "ade20k_sem_seg_val"):
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert len(meta.stuff_classes) == len(meta.stuff_colors) == 150
        assert meta.stuff_classes[:3] == ["wall", "building", "sky"] and meta.stuff_classes[-1] == "flag"
        assert meta.stuff_colors[0] == [120, 120, 120] and meta.stuff_colors[149] == [92, 0, 255]
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
    assert len(set(ADE20K_SEM_SEG_CATEGORIES)) == 150
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in ADE20K_SEM_SEG_COLORS)


def test_missing_ade20k_names_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    expected = tmp_path / "ADEChallengeData2016" / "images" / "validation"
    with pytest.raises(FileNotFoundError) as err:
        DatasetCatalog.get("ade20k_sem_seg_val")
    assert str(expected) in str(err.value) and "prepare_ade20k_sem_seg.py" in str(err.value)
    assert "datasets/README.md" in str(err.value)
    expected.mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as err:
        DatasetCatalog.get("ade20k_sem_seg_val")
    assert str(tmp_path / "ADEChallengeData2016" / "annotations_detectron2" / "validation") in str(err.value)
    assert "prepare_ade20k_sem_seg.py" in str(err.value)


def test_ade20k_loader_pairs_by_stem(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    root = tmp_path / "ADEChallengeData2016"
    images, gts = root / "images" / "validation", root / "annotations_detectron2" / "validation"
    images.mkdir(parents=True)
    gts.mkdir(parents=True)
    for stem in ("ADE_val_00000002", "ADE_val_00000001"):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / f"{stem}.jpg")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(gts / f"{stem}.png")
    dicts = DatasetCatalog.get("ade20k_sem_seg_val")
    assert dicts == [
        {"file_name": str(images / f"{s}.jpg"), "sem_seg_file_name": str(gts / f"{s}.png"), "image_id": s}
        for s in ("ADE_val_00000001", "ADE_val_00000002")
    ]
    assert MetadataCatalog.get("ade20k_sem_seg_val").image_root == str(images)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / "ADE_val_00000003.jpg")
    with pytest.raises(FileNotFoundError, match="ADE_val_00000003"):
        DatasetCatalog.get("ade20k_sem_seg_val")


def test_load_sem_seg_errors(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    with pytest.raises(FileNotFoundError, match="No \\*.jpg images"):
        load_sem_seg(tmp_path / "gt", tmp_path / "img")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_sem_seg(tmp_path / "gt", tmp_path / "nowhere")


def test_get_detection_dataset_dicts_concatenates_and_rejects_empty():
    DatasetCatalog.register("_test_a", lambda: [{"file_name": "a"}])
    DatasetCatalog.register("_test_empty", lambda: [])
    try:
        assert get_detection_dataset_dicts(["_test_a", "_test_a"]) == [{"file_name": "a"}] * 2
        with pytest.raises(ValueError, match="_test_empty"):
            get_detection_dataset_dicts("_test_empty")
        with pytest.raises(ValueError):
            get_detection_dataset_dicts([])
        with pytest.raises(KeyError, match="not registered"):
            get_detection_dataset_dicts("_test_nope")
    finally:
        DatasetCatalog.remove("_test_a")
        DatasetCatalog.remove("_test_empty")


def test_prepare_ade20k_converts_labels(tmp_path):
    spec = importlib.util.spec_from_file_location("prepare_ade", REPO / "datasets" / "prepare_ade20k_sem_seg.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    raw = np.array([[0, 1, 2], [150, 75, 0]], dtype=np.uint8)
    for split in ("training", "validation"):
        folder = tmp_path / "ADEChallengeData2016" / "annotations" / split
        folder.mkdir(parents=True)
        Image.fromarray(raw).save(folder / f"ADE_{split}_1.png")
    assert prepare.main(["--root", str(tmp_path)]) == 0
    for split in ("training", "validation"):
        out_path = tmp_path / "ADEChallengeData2016" / "annotations_detectron2" / split / f"ADE_{split}_1.png"
        out = np.asarray(Image.open(out_path))
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, [[255, 0, 1], [149, 74, 255]])
        assert sorted(p.name for p in out_path.parent.iterdir()) == [out_path.name]  # no temp files
    bad = tmp_path / "bad.png"
    Image.fromarray(np.array([[151]], np.uint8)).save(bad)
    with pytest.raises(ValueError, match="bad.png"):
        prepare.convert_file(bad, tmp_path / "out.png")
    assert prepare.main(["--root", str(tmp_path / "nothing")]) == 1


# --------------------------------------------------------------------------------- samplers, loaders


def test_training_sampler_is_seeded_and_sharded(monkeypatch):
    from itertools import islice

    stream = list(islice(iter(samplers.TrainingSampler(5, seed=3)), 10))
    assert sorted(stream[:5]) == list(range(5)) and sorted(stream[5:]) == list(range(5))
    assert stream == list(islice(iter(samplers.TrainingSampler(5, seed=3)), 10))
    assert stream != list(islice(iter(samplers.TrainingSampler(5, seed=4)), 10))
    shards = []
    for rank in range(2):
        monkeypatch.setattr(samplers, "get_rank_and_world_size", lambda rank=rank: (rank, 2))
        shards.append(list(islice(iter(samplers.TrainingSampler(5, seed=3)), 5)))
    assert shards[0] == stream[0::2] and shards[1] == stream[1::2]


def test_inference_sampler_covers_everything_once():
    parts = [list(samplers.InferenceSampler.shard(10, 3, r)) for r in range(3)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert list(samplers.InferenceSampler(4)) == [0, 1, 2, 3]


@pytest.fixture
def tiny_dicts(tmp_path):
    return [_write_pair(tmp_path, f"im{i}", 30 + i, 40, seed=i)[0] for i in range(6)]


def _random_mapper():
    return _semantic_mapper([T.ResizeShortestEdge((20, 40), 100, "range"),
                             T.RandomCrop_CategoryAreaConstraint("absolute", (16, 16), 0.9, 255),
                             T.RandomFlip()], size_divisibility=16)


def _first_batches(loader, n=2):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def _same_batches(a, b):
    return all(
        x["file_name"] == y["file_name"]
        and torch.equal(x["image"], y["image"])
        and torch.equal(x["sem_seg"], y["sem_seg"])
        for ba, bb in zip(a, b)
        for x, y in zip(ba, bb)
    )


def _instances_pickle():
    import pickle

    from mask2former_rankseg.structures import Instances

    try:
        pickle.loads(pickle.dumps(Instances((1, 1), gt_classes=torch.zeros(1))))
    except RecursionError:
        return False
    return True


# DataLoader workers send mapped dicts (holding Instances) through pickle.
_NEEDS_PICKLE = pytest.mark.skipif(
    not _instances_pickle(),
    reason="structures.Instances cannot be unpickled (its __getattr__ reads self._fields before it exists)",
)


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=_NEEDS_PICKLE)])
def test_train_loader_is_deterministic_for_a_seed(tiny_dicts, num_workers):
    def make(seed):
        return data_build.build_batch_data_loader(tiny_dicts, mapper=_random_mapper(), total_batch_size=2,
                                                  num_workers=num_workers, seed=seed)

    a, b, c = _first_batches(make(1)), _first_batches(make(1)), _first_batches(make(2))
    assert all(len(batch) == 2 for batch in a)
    assert all(x["image"].shape == (3, 16, 16) for batch in a for x in batch)
    assert _same_batches(a, b)
    assert not _same_batches(a, c)


def test_train_loader_batch_size_must_divide(tiny_dicts, monkeypatch):
    monkeypatch.setattr(data_build, "get_rank_and_world_size", lambda: (0, 3))
    with pytest.raises(ValueError, match="IMS_PER_BATCH \\(4\\).*3"):
        data_build.build_batch_data_loader(tiny_dicts, mapper=_random_mapper(), total_batch_size=4, seed=0)


def test_loaders_from_config_on_synthetic(tmp_path, monkeypatch):
    from mask2former_rankseg.data import synthetic

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    synthetic.generate_semantic_dataset(tmp_path / "synthetic" / "sem_seg", num_train=6, num_val=3, size=96)
    cfg = _synthetic_cfg(**{"DATALOADER.NUM_WORKERS": 0, "SOLVER.IMS_PER_BATCH": 3, "SEED": 5})
    train = build_detection_train_loader(cfg)
    batch = next(iter(train))
    assert len(batch) == 3
    for x in batch:
        assert x["image"].shape == (3, 128, 128) and x["sem_seg"].shape == (128, 128)
        assert torch.equal(_reconstruct(x["instances"], (128, 128)), x["sem_seg"])
        assert (x["height"], x["width"]) == (96, 96)
    assert _same_batches([batch], [next(iter(build_detection_train_loader(cfg)))])

    test = build_detection_test_loader(cfg, "synthetic_sem_seg_val")
    outs = [b for b in test]
    assert [len(b) for b in outs] == [1, 1, 1]
    first = outs[0][0]
    assert first["image_id"] == "synthetic_val_00000" and (first["height"], first["width"]) == (96, 96)
    assert first["image"].shape == (3, 128, 128)  # MIN_SIZE_TEST 128


def test_inference_mapper_loads_ground_truth_for_the_oracle(tmp_path):
    from mask2former_rankseg.data import InferenceDatasetMapper

    image = np.zeros((20, 30, 3), np.uint8)
    label = np.full((20, 30), 255, np.uint8)
    label[:10, :15] = 4
    label[10:, 15:] = 7
    Image.fromarray(image).save(tmp_path / "img.png")
    Image.fromarray(label).save(tmp_path / "lbl.png")
    d = {"file_name": str(tmp_path / "img.png"), "sem_seg_file_name": str(tmp_path / "lbl.png")}
    plain = InferenceDatasetMapper(min_size=40, max_size=1000, image_format="RGB")(d)
    assert "instances" not in plain and plain["image"].shape == (3, 40, 60)
    out = InferenceDatasetMapper(min_size=40, max_size=1000, image_format="RGB", load_gt=True)(d)
    inst = out["instances"]
    assert inst.gt_classes.tolist() == [4, 7]
    assert inst.gt_masks.shape == (2, 40, 60) and inst.gt_masks[0, :20, :30].all() and not inst.gt_masks[0, 20:].any()
    assert (out["height"], out["width"]) == (20, 30)


def test_unknown_train_mapper_name_is_a_clear_error():
    from mask2former_rankseg.config import get_cfg
    from mask2former_rankseg.data.build import _default_train_mapper

    cfg = get_cfg()
    cfg.INPUT.DATASET_MAPPER_NAME = "detr_semantic"
    with pytest.raises(ValueError, match=r"INPUT.DATASET_MAPPER_NAME='detr_semantic'.*mask_former_semantic"):
        _default_train_mapper(cfg)
