"""The embedded synthetic semantic dataset: content, determinism, atomic writing, registration."""

import functools
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog, synthetic
from mask2former_rankseg.data.datasets import synthetic as synthetic_registration
from mask2former_rankseg.data.synthetic import drawing
from mask2former_rankseg.data.synthetic.__main__ import main as synthetic_main
from mask2former_rankseg.data.synthetic.categories import COLORS, SHAPES, TEXTURES, semantic_categories

SIZE = 64
NUM_TRAIN, NUM_VAL = 20, 10


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn") / "sem_seg"
    return synthetic.generate_semantic_dataset(out, num_train=NUM_TRAIN, num_val=NUM_VAL, size=SIZE, seed=7)


def _files(root: Path):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_layout_and_categories_json(small_dataset):
    info = json.loads((small_dataset / "categories.json").read_text())
    assert len(info["categories"]) == 108 >= 100
    assert info["image_size"] == [SIZE, SIZE]
    assert [c["id"] for c in info["categories"]] == list(range(108))
    assert info["categories"][1]["name"] == "red-hstriped-disc"
    for split, folder, n in [("train", "training", NUM_TRAIN), ("val", "validation", NUM_VAL)]:
        images = sorted((small_dataset / "images" / folder).glob("*.png"))
        labels = sorted((small_dataset / "annotations_detectron2" / folder).glob("*.png"))
        assert len(images) == len(labels) == n
        assert images[0].name == f"synthetic_{split}_00000.png"
        assert [p.stem for p in images] == [p.stem for p in labels]


def test_every_image_has_2_to_6_visible_categories(small_dataset):
    scale = SIZE / drawing.REFERENCE_SIZE
    min_visible = drawing.MIN_VISIBLE_PX * scale * scale
    for folder in ("training", "validation"):
        for path in sorted((small_dataset / "annotations_detectron2" / folder).glob("*.png")):
            with Image.open(path) as im:
                assert im.mode == "L"
                label = np.asarray(im)
            image = np.asarray(Image.open(small_dataset / "images" / folder / path.name))
            assert label.shape == (SIZE, SIZE) and label.dtype == np.uint8
            assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
            ids, counts = np.unique(label, return_counts=True)
            assert (label == 255).any(), "background must be present and ignored"
            present = ids[ids != 255]
            assert np.all(present < 108)
            assert 2 <= len(present) <= 6, (path, present)
            assert counts[ids != 255].min() >= min_visible


def test_solid_objects_have_their_category_colour(small_dataset):
    """The colour cue is really rendered: a solid object's median colour is its category's colour."""
    cats = semantic_categories()
    checked = 0
    for path in sorted((small_dataset / "annotations_detectron2" / "training").glob("*.png")):
        label = np.asarray(Image.open(path))
        image = np.asarray(Image.open(small_dataset / "images" / "training" / path.name)).astype(float)
        for cat_id in np.unique(label[label != 255]):
            if cats[cat_id].texture == "solid":
                median = np.median(image[label == cat_id], axis=0)
                assert np.abs(median - np.asarray(cats[cat_id].color)).max() <= 16, (path, cats[cat_id].name)
                checked += 1
    assert checked > 0


def test_only_the_combination_of_cues_identifies_a_category():
    cats = semantic_categories()
    triples = {(c.color_name, c.texture, c.shape) for c in cats}
    assert len(triples) == len(cats) == len(COLORS) * len(TEXTURES) * len(SHAPES)
    for cue in ("color_name", "texture", "shape"):
        per_value = Counter(getattr(c, cue) for c in cats)
        assert min(per_value.values()) >= 2, cue
        assert len(per_value) >= 3, cue
    for a, b in (("color_name", "texture"), ("color_name", "shape"), ("texture", "shape")):
        per_pair = Counter((getattr(c, a), getattr(c, b)) for c in cats)
        assert min(per_pair.values()) >= 2, (a, b)


def test_generation_is_deterministic_and_independent_of_workers(small_dataset, tmp_path):
    again = synthetic.generate_semantic_dataset(tmp_path / "again", num_train=NUM_TRAIN, num_val=NUM_VAL,
                                                size=SIZE, seed=7, num_workers=2)
    assert _files(again) == _files(small_dataset)
    for rel in _files(small_dataset):
        assert (again / rel).read_bytes() == (small_dataset / rel).read_bytes(), rel
    other = synthetic.generate_semantic_dataset(tmp_path / "other", num_train=2, num_val=1, size=SIZE, seed=8)
    name = "images/training/synthetic_train_00000.png"
    assert (other / name).read_bytes() != (small_dataset / name).read_bytes()


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_chunk(job):
        calls.append(job)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.semantic, "_write_chunk", failing_chunk)
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate_semantic_dataset(tmp_path / "out", num_train=4, num_val=2, size=SIZE, num_workers=1)
    assert calls and list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        synthetic.generate_semantic_dataset(out, num_train=2, num_val=1, size=SIZE)
    synthetic.generate_semantic_dataset(out, num_train=2, num_val=1, size=SIZE, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "categories.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert synthetic_main(["--task", "semantic", "--out", str(out), "--num-train", "3", "--num-val", "2",
                           "--size", "48", "--seed", "1"]) == 0
    assert len(list((out / "images" / "training").glob("*.png"))) == 3
    assert np.asarray(Image.open(out / "images" / "validation" / "synthetic_val_00001.png")).shape == (48, 48, 3)
    assert synthetic_main(["--task", "semantic", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_registration_and_generation_on_first_use(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    small = functools.partial(synthetic.generate_semantic_dataset, num_train=6, num_val=3, size=SIZE)
    monkeypatch.setattr(synthetic_registration, "generate_semantic_dataset", small)
    for name in ("synthetic_sem_seg_train", "synthetic_sem_seg_val"):
        meta = MetadataCatalog.get(name)
        assert len(meta.stuff_classes) == len(meta.stuff_colors) == 108
        assert meta.stuff_classes[0] == "red-solid-disc" and meta.stuff_colors[0] == list(COLORS["red"])
        assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"

    root = tmp_path / "synthetic" / "sem_seg"
    assert not root.exists()
    with caplog.at_level(logging.WARNING):
        val = DatasetCatalog.get("synthetic_sem_seg_val")
    assert "generating" in caplog.text
    assert (root / "categories.json").is_file()
    assert [d["image_id"] for d in val] == [f"synthetic_val_{i:05d}" for i in range(3)]
    assert val[0] == {
        "file_name": str(root / "images" / "validation" / "synthetic_val_00000.png"),
        "sem_seg_file_name": str(root / "annotations_detectron2" / "validation" / "synthetic_val_00000.png"),
        "image_id": "synthetic_val_00000",
        "height": SIZE,
        "width": SIZE,
    }
    assert MetadataCatalog.get("synthetic_sem_seg_val").sem_seg_root == str(
        root / "annotations_detectron2" / "validation")

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train = DatasetCatalog.get("synthetic_sem_seg_train")
    assert "generating" not in caplog.text  # second use reads what is there
    assert len(train) == 6


def test_foreign_folder_at_the_synthetic_root_is_not_overwritten(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    root = tmp_path / "synthetic" / "sem_seg"
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="categories.json"):
        DatasetCatalog.get("synthetic_sem_seg_train")
    assert (root / "notes.txt").read_text() == "mine"


def test_many_class_variant(tmp_path, monkeypatch):
    """864 categories (6 shapes x 24 colours x 6 textures), 16-bit label maps with ignore 65535, registered as
    synthetic_sem_seg_864_{train,val} and generated on first use under synthetic/sem_seg_864."""
    cats = semantic_categories(864)
    assert len(cats) == len({c.name for c in cats}) == 864
    assert len({c.shape for c in cats}) == 6 and len({c.color_name for c in cats}) == 24
    assert len({c.texture for c in cats}) == 6
    with pytest.raises(ValueError, match="choose one of"):
        semantic_categories(500)

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    monkeypatch.setitem(synthetic_registration.GENERATION_ARGS, 864,
                        {"num_classes": 864, "num_train": 4, "num_val": 3, "size": SIZE})
    meta = MetadataCatalog.get("synthetic_sem_seg_864_val")
    assert len(meta.stuff_classes) == 864 and meta.ignore_label == 65535
    val = DatasetCatalog.get("synthetic_sem_seg_864_val")
    root = tmp_path / "synthetic" / "sem_seg_864"
    assert len(val) == 3 and val[0]["sem_seg_file_name"].startswith(str(root))
    info = json.loads((root / "categories.json").read_text())
    assert len(info["categories"]) == 864 and info["ignore_label"] == 65535
    seen = set()
    for d in val:
        with Image.open(d["sem_seg_file_name"]) as im:
            assert im.mode == "I;16"
            label = np.asarray(im)
        values = set(np.unique(label).tolist())
        assert 65535 in values and 2 <= len(values - {65535}) <= 6
        seen |= values - {65535}
    assert max(seen) < 864
    # a dataset of the other variant at that path is refused with the fix
    (root / "categories.json").write_text(json.dumps({**info, "categories": info["categories"][:108]}))
    with pytest.raises(ValueError, match="--num-classes 864 --overwrite"):
        DatasetCatalog.get("synthetic_sem_seg_864_train")


def test_cli_num_classes(tmp_path, capsys):
    out = tmp_path / "many"
    assert synthetic_main(["--task", "semantic", "--num-classes", "864", "--out", str(out), "--num-train", "2",
                           "--num-val", "1", "--size", str(SIZE)]) == 0
    assert len(json.loads((out / "categories.json").read_text())["categories"]) == 864
    assert synthetic_main(["--task", "panoptic", "--num-classes", "864", "--out", str(tmp_path / "p")]) == 2
    assert "only available with --task semantic" in capsys.readouterr().err
