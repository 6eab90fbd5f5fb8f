"""Large label spaces: semantic labels without the [K, H, W] score tensor (postprocess.semantic_labels), the
model's ``semantic_output="labels"`` mode, and evaluation switching to it when no evaluator needs scores."""

from __future__ import annotations

import functools

import pytest
import torch
from helpers import REPO

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.constants import SUPPRESSED_LOGIT
from mask2former_rankseg.evaluation import (
    COCOPanopticEvaluator,
    DatasetEvaluator,
    DatasetEvaluators,
    SemSegEvaluator,
    inference_on_dataset,
    semantic_output,
)
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.modeling.meta_arch.postprocess import class_groups, semantic_inference, semantic_labels
from mask2former_rankseg.structures import sem_seg_postprocess


def _random_outputs(queries=7, classes=23, size=(10, 12), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(queries, classes + 1, generator=g) * 3, torch.randn(queries, *size, generator=g) * 4


@pytest.mark.parametrize("chunk_size", [1, 4, 23, 100])
def test_labels_equal_the_argmax_of_the_dense_scores(chunk_size):
    mask_cls, mask_pred = _random_outputs()
    resize = functools.partial(sem_seg_postprocess, img_size=(9, 11), output_height=17, output_width=15)
    seen = []

    def recording_resize(scores):
        seen.append(scores.shape[0])
        return resize(scores)

    labels = semantic_labels(mask_cls, mask_pred, recording_resize, chunk_size=chunk_size)
    dense = resize(semantic_inference(mask_cls, mask_pred))
    assert labels.shape == (17, 15) and labels.dtype == torch.int64
    torch.testing.assert_close(labels, dense.argmax(0), rtol=0, atol=0)
    assert max(seen) == min(chunk_size, 23) and sum(seen) == 23  # never more than chunk_size maps at once


def test_rankseg_scores_collapse_to_topk_plus_one_maps():
    """Outside the top-k every class has the suppressed logit: one shared map, and the smallest such class
    wins where that map is the largest (as argmax breaks ties)."""
    mask_cls, mask_pred = _random_outputs(classes=30)
    selected = torch.tensor([3, 17, 25, 30])  # 3 categories + "no object"
    ranked = torch.full_like(mask_cls, SUPPRESSED_LOGIT)
    ranked[:, selected] = mask_cls[:, selected]
    group_probs, class_group, first_class = class_groups(torch.softmax(ranked, -1)[:, :-1])
    assert group_probs.shape == (4, 7) and first_class.tolist() == [0, 3, 17, 25]
    assert class_group[[0, 1, 3, 17, 25, 29]].tolist() == [0, 0, 1, 2, 3, 0]
    labels = semantic_labels(ranked, mask_pred, chunk_size=2)
    torch.testing.assert_close(labels, semantic_inference(ranked, mask_pred).argmax(0), rtol=0, atol=0)
    # when the selected classes' scores are pushed down, the shared map wins: label 0, the first unselected
    ranked[:, selected[:-1]] = -200.0
    assert (semantic_labels(ranked, mask_pred) == 0).all()


def test_hand_made_case_and_ties():
    """2 queries, 3 classes, 1x3 pixels. Probabilities p = softmax rows; class 1 and 2 identical -> tie -> 1."""
    mask_cls = torch.log(torch.tensor([[0.6, 0.2, 0.2, 1e-9], [0.1, 0.45, 0.45, 1e-9]]))
    mask_pred = torch.logit(torch.tensor([[[1.0 - 1e-6, 0.5, 1e-6]], [[1e-6, 0.5, 1.0 - 1e-6]]]))
    # scores: pixel 0 ~ (0.6, 0.2, 0.2); pixel 1 = 0.5 * (0.7, 0.65, 0.65); pixel 2 ~ (0.1, 0.45, 0.45)
    assert semantic_labels(mask_cls, mask_pred, chunk_size=1).tolist() == [[0, 0, 1]]
    with pytest.raises(ValueError, match="chunk_size"):
        semantic_labels(mask_cls, mask_pred, chunk_size=0)


def _tiny_model(rankseg: bool, opts):
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / "configs/synthetic/maskformer2_R18_synthetic.yaml"))
    cfg.merge_from_list([*opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 40, "MODEL.RANKSEG.FLAG", rankseg])
    return build_model(cfg).eval()


@pytest.mark.parametrize("rankseg", [False, True])
def test_model_labels_mode_matches_scores_mode(rankseg, tiny_model_opts):
    model = _tiny_model(rankseg, tiny_model_opts)
    g = torch.Generator().manual_seed(1)
    inputs = [{"image": torch.randint(0, 256, (3, 64, 72), dtype=torch.uint8, generator=g), "height": 70,
               "width": 81}]
    with torch.no_grad():
        scores = model(inputs)[0]
        with semantic_output(model, "labels"):
            labels = model(inputs)[0]
    assert model.semantic_output == "scores"  # restored
    assert "sem_seg" not in labels and labels["sem_seg_labels"].shape == (70, 81)
    torch.testing.assert_close(labels["sem_seg_labels"], scores["sem_seg"].argmax(0), rtol=0, atol=0)
    if rankseg:
        torch.testing.assert_close(labels["multilabel"]["topk"], scores["multilabel"]["topk"])
    with pytest.raises(ValueError, match="semantic_output"):
        type(model)(**{**_constructor_args(model), "semantic_output": "probabilities"})


def _constructor_args(model):
    return dict(backbone=model.backbone, sem_seg_head=model.sem_seg_head, criterion=model.criterion,
                num_classes=model.num_classes, num_queries=model.num_queries, size_divisibility=32,
                pixel_mean=[0, 0, 0], pixel_std=[1, 1, 1])


class _Recorder(DatasetEvaluator):
    def __init__(self, needs):
        self.needs_semantic_scores = needs
        self.keys = []

    def process(self, inputs, outputs):
        self.keys.append(sorted(outputs[0]))


def test_inference_on_dataset_asks_for_labels_only_when_no_evaluator_needs_scores(tiny_model_opts):
    model = _tiny_model(False, tiny_model_opts)
    loader = [[{"image": torch.zeros(3, 64, 64, dtype=torch.uint8), "height": 64, "width": 64}]]
    for needs, key in ((True, "sem_seg"), (False, "sem_seg_labels")):
        recorder = _Recorder(needs)
        inference_on_dataset(model, loader, DatasetEvaluators([recorder, _Recorder(False)]))
        assert recorder.keys == [[key]]
    assert model.semantic_output == "scores"
    assert not SemSegEvaluator(num_classes=3).needs_semantic_scores
    assert not COCOPanopticEvaluator.needs_semantic_scores and DatasetEvaluator.needs_semantic_scores


def test_evaluator_checks_label_outputs():
    evaluator = SemSegEvaluator(num_classes=3, distributed=False)
    gt = {"sem_seg": torch.tensor([[0, 1], [2, 255]]), "file_name": "x.jpg"}
    evaluator.process([gt], [{"sem_seg_labels": torch.tensor([[0, 1], [1, 0]])}])
    assert evaluator.evaluate()["sem_seg"]["mIoU"] == pytest.approx(100 * (1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match=r"outside \[0, 3\)"):
        evaluator.process([gt], [{"sem_seg_labels": torch.tensor([[0, 3], [1, 0]])}])
    with pytest.raises(KeyError, match="neither 'sem_seg' nor 'sem_seg_labels'"):
        evaluator.process([gt], [{"panoptic_seg": None}])
