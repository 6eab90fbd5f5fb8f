"""tools/export_model.py and engine/export.py: tiny random models exported to ONNX (run in onnxruntime) and as
``torch.export`` programs give the eager model's outputs (semantic Mask2Former + RankSeg with TOPK < K, one video
clip), and the command line writes a file and rejects an unknown format."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from helpers import (
    CONFIGS,
    SYNTHETIC_DEEPLAB_RANKSEG_CONFIG,
    SYNTHETIC_RANKSEG_CONFIG,
    TINY_LABELS,
    TINY_MODEL,
    load_script,
)

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.constants import SUPPRESSED_LOGIT
from mask2former_rankseg.engine.export import export_onnx, export_program, export_wrapper, results_from_raw
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.modeling.rankseg import scatter_back
from mask2former_rankseg.ops import FORCE_REFERENCE_ENV, forced_reference

VIDEO_RANKSEG_CONFIG = CONFIGS / "synthetic" / "video_maskformer2_R18_synthetic-rankseg.yaml"
TINY = [*TINY_MODEL, *TINY_LABELS]  # 12 categories, TOPK 5
MAX_DIFF = 1e-4


def _model(config, seed: int = 0, extra=()):
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.merge_from_list([*TINY, *extra])
    torch.manual_seed(seed)
    return build_model(cfg).eval()


def _image(shape, seed: int = 1) -> torch.Tensor:
    """Raw pixel values (what the model's ``image`` holds), as float."""
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).float()


@pytest.fixture(scope="module")
def semantic_model():
    return _model(SYNTHETIC_RANKSEG_CONFIG)


def test_forced_reference_restores_the_environment():
    before = os.environ.get(FORCE_REFERENCE_ENV)
    with forced_reference():
        assert os.environ[FORCE_REFERENCE_ENV] == "1"
    assert os.environ.get(FORCE_REFERENCE_ENV) == before


@pytest.mark.slow
def test_wrapper_gives_the_models_sem_seg(semantic_model):
    image = _image((3, 64, 80))  # 80 is padded to 96 (SIZE_DIVISIBILITY 32)
    wrapper = export_wrapper(semantic_model)
    assert wrapper.output_names() == ["sem_seg", "multilabel_scores", "multilabel_topk"]
    with torch.no_grad():
        expected = semantic_model([{"image": image}])[0]
        sem_seg, scores, topk = wrapper(image[None])
    assert sem_seg.shape == (12, 64, 80)
    torch.testing.assert_close(sem_seg, expected["sem_seg"], rtol=0, atol=1e-6)
    torch.testing.assert_close(scores, expected["multilabel"]["scores"])
    assert torch.equal(topk, expected["multilabel"]["topk"]) and topk.shape == (5,)


@pytest.mark.slow
def test_raw_outputs_give_the_models_instances_and_sem_seg():
    model = _model(SYNTHETIC_RANKSEG_CONFIG, extra=["MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True"])
    image = _image((3, 64, 80))
    wrapper = export_wrapper(model)
    assert wrapper.output_names() == ["pred_logits", "pred_masks", "multilabel_scores", "multilabel_topk"]
    with torch.no_grad():
        expected = model([{"image": image}])[0]
        raw = wrapper(image[None])
    assert raw[0].shape == (8, 13) and raw[1].shape == (8, 16, 24)  # Q, K + 1; the padded 64 x 96 at stride 4
    result = results_from_raw(model, [r.numpy() for r in raw], (64, 80))
    assert sorted(result) == sorted(expected) == ["instances", "multilabel", "sem_seg"]
    torch.testing.assert_close(result["sem_seg"], expected["sem_seg"])
    for key in ("pred_masks", "scores", "pred_classes"):
        torch.testing.assert_close(getattr(result["instances"], key), getattr(expected["instances"], key))
    assert torch.equal(result["multilabel"]["topk"], expected["multilabel"]["topk"])


@pytest.mark.slow
def test_semantic_rankseg_onnx_matches_pytorch(semantic_model, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    image = _image((3, 64, 80))
    path = tmp_path / "model.onnx"
    export_onnx(export_wrapper(semantic_model), image[None], str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["sem_seg", "multilabel_scores", "multilabel_topk"]
    sem_seg, scores, topk = session.run(None, {"image": image[None].numpy()})
    with torch.no_grad():
        expected = semantic_model([{"image": image}])[0]
    reference = expected["sem_seg"].numpy()
    diff = np.abs(sem_seg - reference).max()
    agreement = (sem_seg.argmax(0) == reference.argmax(0)).mean()
    print(f"semantic ONNX: max abs difference {diff:.3g}, argmax agreement {agreement:.4%}")
    assert sem_seg.shape == reference.shape
    assert diff < MAX_DIFF
    assert agreement >= 0.999
    np.testing.assert_allclose(scores, expected["multilabel"]["scores"].numpy(), rtol=0, atol=MAX_DIFF)
    np.testing.assert_array_equal(topk, expected["multilabel"]["topk"].numpy())


@pytest.mark.slow
def test_per_pixel_rankseg_onnx_matches_pytorch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model(SYNTHETIC_DEEPLAB_RANKSEG_CONFIG)  # DeepLabV3 + RankSeg, TOPK 5 of 12
    image = _image((3, 64, 80))
    path = tmp_path / "deeplab.onnx"
    export_onnx(export_wrapper(model), image[None], str(path))
    sem_seg, _, topk = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": image[None].numpy()})
    with torch.no_grad():
        expected = model([{"image": image}])[0]
    reference = expected["sem_seg"].numpy()
    diff = np.abs(sem_seg - reference).max()
    agreement = (sem_seg.argmax(0) == reference.argmax(0)).mean()
    print(f"per-pixel ONNX: max abs difference {diff:.3g}, argmax agreement {agreement:.4%}")
    assert diff < MAX_DIFF and agreement >= 0.999
    np.testing.assert_array_equal(topk, expected["multilabel"]["topk"].numpy())


@pytest.mark.slow
def test_video_clip_onnx_matches_pytorch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model(VIDEO_RANKSEG_CONFIG)
    clip = _image((2, 3, 64, 64))
    path = tmp_path / "video.onnx"
    wrapper = export_wrapper(model)
    assert wrapper.output_names() == ["pred_logits", "pred_masks", "multilabel_scores", "multilabel_topk"]
    export_onnx(wrapper, clip, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": clip.numpy()})
    with torch.no_grad():  # the model's own per-clip steps (VideoMaskFormer.inference_video)
        outputs, _ = model._decode(list(clip), 2, 0)
        image_logits, topk_index = model.classify(outputs, None)
        logits = scatter_back(outputs["pred_logits"], topk_index, model.num_classes, SUPPRESSED_LOGIT)[0]
    expected = [logits, outputs["pred_masks"][0], image_logits[0], topk_index[0, :-1]]
    assert got[1].shape == (8, 2, 16, 16)
    diffs = [float(np.abs(g - e.numpy()).max()) for g, e in zip(got[:3], expected[:3])]
    print("video ONNX: max abs difference pred_logits {:.3g}, pred_masks {:.3g}, multilabel_scores {:.3g}".format(
        *diffs))
    assert max(diffs) < MAX_DIFF
    np.testing.assert_array_equal(got[3], expected[3].numpy())


@pytest.mark.slow
def test_exported_program_round_trip(semantic_model, tmp_path):
    image = _image((1, 3, 64, 64), seed=2)
    wrapper = export_wrapper(semantic_model)
    path = tmp_path / "model.pt2"
    export_program(wrapper, image, str(path))
    loaded = torch.export.load(str(path)).module()
    with torch.no_grad():
        got = loaded(image)
        eager = wrapper(image)
        expected = semantic_model([{"image": image[0]}])[0]["sem_seg"]
    diff = (got[0] - expected).abs().max().item()
    print(f"exported program: max abs difference {diff:.3g}")
    assert diff < MAX_DIFF
    for g, e in zip(got, eager):
        torch.testing.assert_close(g, e, rtol=0, atol=MAX_DIFF)


@pytest.mark.slow
def test_cli_writes_an_onnx_file(tmp_path, caplog):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    tool = load_script("tools/export_model.py")
    output = tmp_path / "out" / "model.onnx"
    with caplog.at_level("INFO"):
        assert tool.main(["--config-file", str(SYNTHETIC_RANKSEG_CONFIG), "--format", "onnx", "--output",
                          str(output), "--size", "64", "64", *TINY]) == 0
    graph = onnx.load(str(output)).graph
    assert [o.name for o in graph.output] == ["sem_seg", "multilabel_scores", "multilabel_topk"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 64]
    assert "check sem_seg (12, 64, 64): max abs difference" in caplog.text
    assert "check multilabel_topk (5,): equal" in caplog.text


def test_cli_rejects_an_unknown_format(tmp_path, capsys):
    tool = load_script("tools/export_model.py")
    with pytest.raises(SystemExit):
        tool.main(["--config-file", str(SYNTHETIC_RANKSEG_CONFIG), "--format", "tflite", "--output",
                   str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert "--format" in err and "invalid choice: 'tflite'" in err and "exported-program" in err
    assert not (tmp_path / "m").exists()


def test_cli_names_the_missing_onnx_packages(tmp_path, monkeypatch):
    tool = load_script("tools/export_model.py")
    real = tool.importlib.util.find_spec
    monkeypatch.setattr(tool.importlib.util, "find_spec", lambda name: None if name == "onnxscript" else real(name))
    with pytest.raises(SystemExit, match="needs onnxscript: pip install onnx onnxruntime onnxscript"):
        tool.main(["--config-file", str(SYNTHETIC_RANKSEG_CONFIG), "--format", "onnx", "--output",
                   str(tmp_path / "m.onnx")])
