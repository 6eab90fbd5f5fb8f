"""torch.compile of the tiny Mask2Former + RankSeg: graph breaks counted by torch._dynamo.explain, compiled
results equal to eager (backend aot_eager: Dynamo and AOTAutograd tracing without inductor's slow CPU codegen)."""

import pytest
import torch
from helpers import SYNTHETIC_RANKSEG_CONFIG, TINY_LABELS, TINY_MODEL

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.ops import dispatch
from mask2former_rankseg.structures import Instances

pytestmark = pytest.mark.slow

needs_cpu_kernel = pytest.mark.skipif(dispatch._kernels("cpu") is None, reason="compiled CPU kernel not built "
                                      "(the PyTorch path reads spatial_shapes' values: graph breaks)")


def _model_and_inputs(training: bool):
    cfg = get_cfg()
    cfg.merge_from_file(str(SYNTHETIC_RANKSEG_CONFIG))
    # TOPK = all 12 categories, so that every ground-truth segment survives the selection and reaches the matcher
    cfg.merge_from_list([*TINY_MODEL, *TINY_LABELS, "INPUT.MIN_SIZE_TEST", "64", "MODEL.MASK_FORMER.DROPOUT", "0.0",
                         "MODEL.RANKSEG.TOPK", "12"])
    torch.manual_seed(0)
    model = build_model(cfg).train(training)
    g = torch.Generator().manual_seed(1)
    inputs = []
    for _ in range(2):
        x = {"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g), "height": 64, "width": 64}
        if training:
            masks = torch.zeros(2, 64, 64, dtype=torch.bool)
            masks[0, :32], masks[1, 32:] = True, True
            x["instances"] = Instances((64, 64), gt_classes=torch.tensor([0, 3]), gt_masks=masks)
        inputs.append(x)
    return model, inputs


@needs_cpu_kernel
def test_inference_compiles_as_one_graph():
    model, inputs = _model_and_inputs(training=False)
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(inputs)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
        torch._dynamo.reset()
        expected = model(inputs)
        got = torch.compile(model, backend="aot_eager")(inputs)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a["sem_seg"], b["sem_seg"], atol=1e-5, rtol=1e-5)
        assert torch.equal(a["multilabel"]["topk"], b["multilabel"]["topk"])


@needs_cpu_kernel
def test_training_step_graph_breaks_only_in_the_loss():
    """Backbone, pixel decoder, transformer decoder and RankSeg's selection trace as one graph; the breaks are in the
    loss: rankseg.remap_targets (boolean selection of each image's segments) and the Hungarian matcher (scipy on
    the CPU), whose frames then run eagerly. Losses and gradients equal eager's."""
    model, inputs = _model_and_inputs(training=True)
    explained = torch._dynamo.explain(model)(inputs)
    assert explained.graph_break_count > 0
    for reason in explained.break_reasons:
        assert reason.user_stack[-1].filename.endswith(("rankseg/selection.py", "matcher.py", "criterion.py")), reason
    torch._dynamo.reset()
    torch.manual_seed(0)
    expected = model(inputs)
    sum(expected.values()).backward()
    expected_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.manual_seed(0)
    got = torch.compile(model, backend="aot_eager")(inputs)
    sum(got.values()).backward()
    assert got.keys() == expected.keys()
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], atol=1e-5, rtol=1e-5)
    for n, p in model.named_parameters():
        if n in expected_grads:
            torch.testing.assert_close(p.grad, expected_grads[n], atol=1e-5, rtol=1e-4, msg=n)
