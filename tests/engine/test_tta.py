"""Test-time augmentation (engine/tta.py) and grouped scores: flip equivariance, a hand-checked average, grouped
sums equal dense sums, and --eval-only reporting single-scale and multi-scale + flip results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO
from PIL import Image
from torch import nn
from torch.nn import functional as F

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.data import DatasetCatalog, MetadataCatalog
from mask2former_rankseg.data.datasets import load_sem_seg
from mask2former_rankseg.engine import Trainer
from mask2former_rankseg.engine.tta import SemanticSegmentorWithTTA
from mask2former_rankseg.evaluation import semantic_output
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.modeling.meta_arch import GroupedScores


class PointwiseModel(nn.Module):
    """``sem_seg`` = a per-pixel linear map of the image (+ ``ramp`` x column), bilinearly resized to the
    input's ``height`` x ``width``. Flip-equivariant when ``ramp`` is 0."""

    def __init__(self, num_classes: int = 4, ramp: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, 3, generator=torch.Generator().manual_seed(0)))
        self.ramp = ramp

    def forward(self, inputs):
        outputs = []
        for x in inputs:
            scores = torch.einsum("kc,chw->khw", self.weight, x["image"].float() / 255)
            scores = scores + self.ramp * torch.arange(scores.shape[-1], dtype=torch.float32)
            scores = F.interpolate(scores[None], size=(x["height"], x["width"]), mode="bilinear", align_corners=False)
            outputs.append({"sem_seg": scores[0]})
        return outputs


def _input(h=6, w=10, seed=0):
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    return {"image": image, "height": 9, "width": 15}  # the model upsamples to the "original" size


def test_flip_only_on_a_flip_equivariant_model_equals_single_scale():
    model, x = PointwiseModel(), _input()
    tta = SemanticSegmentorWithTTA(model, min_sizes=[6], max_size=1000, flip=True)  # 6 = the input's short side
    single = model([x])[0]["sem_seg"]
    augmented = tta([x])[0]["sem_seg"]
    torch.testing.assert_close(augmented, single, rtol=1e-5, atol=1e-5)
    tta.semantic_output = "labels"
    torch.testing.assert_close(tta([x])[0]["sem_seg_labels"], single.argmax(0), rtol=0, atol=0)
    # a model that is not flip-equivariant (a left-to-right ramp) gives a different average: the check can fail
    skewed = PointwiseModel(ramp=1.0)
    flat = SemanticSegmentorWithTTA(skewed, min_sizes=[6], max_size=1000, flip=True)([x])[0]["sem_seg"]
    assert (flat - skewed([x])[0]["sem_seg"]).abs().max() > 1.0


class ProbeModel(nn.Module):
    """Channel 0: (input width) / 100 + 1 if the top-left pixel is bright, everywhere. Channel 1: 1 in the first
    output column, else 0. Output 1 x 4."""

    def forward(self, inputs):
        outputs = []
        for x in inputs:
            scores = torch.zeros(2, x["height"], x["width"])
            scores[0] = x["image"].shape[-1] / 100 + float(x["image"][0, 0, 0] > 100)
            scores[1, :, 0] = 1.0
            outputs.append({"sem_seg": scores})
        return outputs


def test_hand_checked_average_over_scales_and_flips():
    image = torch.zeros(3, 2, 4, dtype=torch.uint8)
    image[:, :, 2:] = 200  # dark left half, bright right half: only the flipped copies start bright
    tta = SemanticSegmentorWithTTA(ProbeModel(), min_sizes=[2, 4], max_size=1000, flip=True)
    inputs = [dict(x) for x, _ in tta.augmented_inputs({"image": image, "height": 1, "width": 4})]
    assert [tuple(x["image"].shape[1:]) for x in inputs] == [(2, 4), (2, 4), (4, 8), (4, 8)]
    scores = tta([{"image": image, "height": 1, "width": 4}])[0]["sem_seg"]
    # widths 4, 4, 8, 8 and bright flag 0, 1, 0, 1: (0.04 + 1.04 + 0.08 + 1.08) / 4 = 0.56
    torch.testing.assert_close(scores[0], torch.full((1, 4), 0.56))
    # the flipped predictions are flipped back: their first column lands last
    torch.testing.assert_close(scores[1], torch.tensor([[0.5, 0.0, 0.0, 0.5]]))
    assert SemanticSegmentorWithTTA(ProbeModel(), min_sizes=[3], max_size=5, flip=False).augmented_inputs(
        {"image": image}).__next__()[0]["image"].shape[1:] == (3, 5)  # 3x6 capped by max_size 5: 2.5x5, rounded
    with pytest.raises(ValueError, match="MIN_SIZES is empty"):
        SemanticSegmentorWithTTA(ProbeModel(), min_sizes=[], max_size=5, flip=False)


def test_grouped_scores_sum_like_dense_scores():
    g = torch.Generator().manual_seed(0)
    # 6 classes: a has groups {0, 2, 5} {1} {3, 4}; b has {0, 5} {1, 2, 3} {4}: the sum's groups are the
    # distinct pairs, {0, 5} {1} {2} {3} {4}
    a = GroupedScores(torch.randn(3, 2, 3, generator=g), torch.tensor([0, 1, 0, 2, 2, 0]))
    b = GroupedScores(torch.randn(3, 2, 3, generator=g), torch.tensor([2, 0, 0, 0, 1, 2]))
    total = a + b
    torch.testing.assert_close(total.dense(), a.dense() + b.dense())
    assert total.maps.shape[0] == 5 and total.first_class.tolist() == [0, 1, 2, 3, 4]
    assert total.class_group.tolist() == [0, 1, 2, 3, 4, 0]
    torch.testing.assert_close(total.labels(), total.dense().argmax(0), rtol=0, atol=0)
    torch.testing.assert_close(a.flip([-1]).dense(), a.dense().flip(-1))
    dense = GroupedScores.from_dense(torch.randn(4, 2, 2, generator=g))
    expected = dense.dense() * 2
    kept = dense.maps
    doubled = dense.add_(GroupedScores.from_dense(dense.maps.clone()))
    assert doubled.maps.data_ptr() == kept.data_ptr()  # one group per class: summed in place
    torch.testing.assert_close(doubled.dense(), expected)
    tie = GroupedScores(torch.ones(2, 1, 1), torch.tensor([1, 0, 1]))
    assert tie.labels().item() == 0  # equal maps: the smallest class wins, as argmax


def _tiny_maskformer(rankseg: bool, tiny_model_opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/synthetic/maskformer2_R18_synthetic.yaml"))
    cfg.merge_from_list([*tiny_model_opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 30, "MODEL.RANKSEG.FLAG", rankseg,
                         "MODEL.RANKSEG.TOPK", 4])
    return build_model(cfg).eval()


class _HideMode(nn.Module):
    """The same model without ``semantic_output``: the TTA wrapper then sums dense ``sem_seg``."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, inputs):
        return self.inner(inputs)


@pytest.mark.parametrize("rankseg", [False, True])
def test_grouped_tta_of_maskformer_equals_dense_tta(rankseg, tiny_model_opts):
    model = _tiny_maskformer(rankseg, tiny_model_opts)
    x = _input(64, 80, seed=3)
    kwargs = dict(min_sizes=[48], max_size=200, flip=True)
    grouped = SemanticSegmentorWithTTA(model, **kwargs)
    with torch.no_grad():
        dense = SemanticSegmentorWithTTA(_HideMode(model), **kwargs)([x])[0]["sem_seg"]
        scores = grouped([x])[0]["sem_seg"]
        with semantic_output(grouped, "labels"):
            labels = grouped([x])[0]["sem_seg_labels"]
    assert model.semantic_output == "scores" and grouped.semantic_output == "scores"
    torch.testing.assert_close(scores, dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(labels, dense.argmax(0), rtol=0, atol=0)


def _register_tiny_dataset(root: Path, name: str, num_classes: int) -> None:
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
        Image.fromarray(rng.integers(0, num_classes, (32, 40), dtype=np.uint8)).save(labels / f"{i}.png")
    if name in DatasetCatalog:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_sem_seg(labels, images, image_ext="png"))
    MetadataCatalog.get(name).set(stuff_classes=[str(i) for i in range(num_classes)], ignore_label=255,
                                  evaluator_type="sem_seg")


@pytest.mark.slow
def test_eval_only_reports_single_scale_and_tta(tmp_path, restore_package_logger, tiny_model_opts):
    import train_net

    _register_tiny_dataset(tmp_path / "data", "tta_tiny_sem_seg", 108)
    config = REPO / "configs/synthetic/maskformer2_R18_synthetic.yaml"
    args = train_net.default_argument_parser().parse_args([
        "--config-file", str(config), "--eval-only", *tiny_model_opts, "DATASETS.TEST", "('tta_tiny_sem_seg',)",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "108", "TEST.AUG.ENABLED", "True",
        "TEST.AUG.MIN_SIZES", "(48,)", "TEST.AUG.FLIP", "True", "OUTPUT_DIR", str(tmp_path / "out"),
        "MODEL.WEIGHTS", "", "DATALOADER.NUM_WORKERS", "0",
    ])
    results = train_net.main(args)
    assert set(results) == {"sem_seg", "sem_seg_TTA"}
    assert 0 <= results["sem_seg"]["mIoU"] <= 100 and 0 <= results["sem_seg_TTA"]["mIoU"] <= 100
    assert (tmp_path / "out" / "inference" / "tta_tiny_sem_seg" / "evaluation_results.json").is_file()
    assert (tmp_path / "out" / "inference_TTA" / "tta_tiny_sem_seg" / "evaluation_results.json").is_file()
    DatasetCatalog.remove("tta_tiny_sem_seg")
    MetadataCatalog.remove("tta_tiny_sem_seg")


def test_test_with_tta_on_several_datasets_suffixes_dataset_names(tmp_path):
    _register_tiny_dataset(tmp_path / "a", "tta_tiny_a", 4)
    _register_tiny_dataset(tmp_path / "b", "tta_tiny_b", 4)
    cfg = get_cfg()
    cfg.merge_from_list(["DATASETS.TEST", ("tta_tiny_a", "tta_tiny_b"), "OUTPUT_DIR", "", "INPUT.MIN_SIZE_TEST", 32,
                         "TEST.AUG.MIN_SIZES", (32,), "TEST.AUG.FLIP", False, "DATALOADER.NUM_WORKERS", 0])
    results = Trainer.test_with_TTA(cfg, PointwiseModel())
    assert list(results) == ["tta_tiny_a_TTA", "tta_tiny_b_TTA"] and "mIoU" in results["tta_tiny_a_TTA"]["sem_seg"]
    for name in ("tta_tiny_a", "tta_tiny_b"):
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
