"""Predictor / VideoPredictor: documented output keys at the image's own size, MODEL.WEIGHTS, colour order,
clear refusals."""


import numpy as np
import pytest
import torch
from helpers import REPO, SYNTHETIC_DEEPLAB_RANKSEG_CONFIG

from mask2former_rankseg.config import ConfigError, get_cfg
from mask2former_rankseg.engine import (
    ModelUnavailableError,
    Predictor,
    VideoPredictor,
    check_model_available,
    resolve_device,
)
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.structures import Instances

SYNTHETIC_RANKSEG = REPO / "configs/synthetic/maskformer2_R18_synthetic-rankseg.yaml"
SYNTHETIC = REPO / "configs/synthetic/maskformer2_R18_synthetic.yaml"
YTVIS = REPO / "configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml"


def _cfg(path, opts, *extra):
    cfg = get_cfg()
    cfg.merge_from_file(str(path))
    cfg.merge_from_list([*opts, *[str(e) for e in extra]])
    return cfg


def _image(height=70, width=90, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_semantic_rankseg_outputs_documented_keys_at_image_size(tiny_model_opts):
    cfg = _cfg(SYNTHETIC_RANKSEG, tiny_model_opts)
    out = Predictor(cfg)(_image())
    assert set(out) == {"sem_seg", "multilabel"}
    assert out["sem_seg"].shape == (12, 70, 90)                     # resized to 64 px inside, back to 70x90
    assert torch.isfinite(out["sem_seg"]).all()
    assert out["multilabel"]["scores"].shape == (12,)
    topk = out["multilabel"]["topk"]
    assert topk.shape == (5,)
    scores = out["multilabel"]["scores"]
    assert torch.equal(topk, torch.sort(scores, descending=True, stable=True).indices[:5])  # best first


def test_per_pixel_deeplabv3_rankseg_outputs_the_same_keys(tiny_model_opts):
    cfg = _cfg(SYNTHETIC_DEEPLAB_RANKSEG_CONFIG, tiny_model_opts)
    out = Predictor(cfg)(_image())
    assert set(out) == {"sem_seg", "multilabel"} and out["sem_seg"].shape == (12, 70, 90)
    torch.testing.assert_close(out["sem_seg"].sum(0), torch.ones(70, 90))  # probabilities
    topk = out["multilabel"]["topk"]
    assert topk.shape == (5,)
    assert torch.equal(topk, torch.sort(out["multilabel"]["scores"], descending=True, stable=True).indices[:5])
    assert set(out["sem_seg"].argmax(0).unique().tolist()) <= set(topk.tolist())


def test_baseline_has_no_multilabel(tiny_model_opts):
    out = Predictor(_cfg(SYNTHETIC, tiny_model_opts))(_image(50, 40))
    assert set(out) == {"sem_seg"} and out["sem_seg"].shape == (12, 50, 40)


def test_panoptic_and_instance_outputs(tiny_model_opts):
    cfg = _cfg(SYNTHETIC_RANKSEG, tiny_model_opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", 116,
               "DATASETS.TEST", "('synthetic_panoptic_val',)", "MODEL.MASK_FORMER.TEST.PANOPTIC_ON", True,
               "MODEL.MASK_FORMER.TEST.INSTANCE_ON", True, "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", 0.0,
               "TEST.DETECTIONS_PER_IMAGE", 4)
    out = Predictor(cfg)(_image(48, 64))
    assert set(out) == {"sem_seg", "panoptic_seg", "instances", "multilabel"}
    id_map, segments_info = out["panoptic_seg"]
    assert id_map.shape == (48, 64)
    assert segments_info, "threshold 0 keeps every query that is not 'no object'"
    for s in segments_info:
        assert set(s) == {"id", "category_id", "isthing"}
    assert set(np.unique(id_map.numpy())) <= {0} | {s["id"] for s in segments_info}
    inst = out["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (48, 64)
    assert inst.pred_masks.shape[1:] == (48, 64)
    assert len(inst.scores) == len(inst.pred_classes) == len(inst.pred_masks) <= 4


def test_loads_model_weights(tiny_model_opts, tmp_path):
    cfg = _cfg(SYNTHETIC_RANKSEG, tiny_model_opts)
    torch.manual_seed(123)
    reference = build_model(cfg).eval()
    weights = tmp_path / "model.pth"
    torch.save({"model": reference.state_dict()}, weights)
    torch.manual_seed(0)
    fresh = Predictor(cfg)
    loaded = Predictor(_cfg(SYNTHETIC_RANKSEG, tiny_model_opts, "MODEL.WEIGHTS", weights))
    key = "sem_seg_head.predictor.class_embed.weight"
    assert torch.equal(loaded.model.state_dict()[key], reference.state_dict()[key])
    assert not torch.equal(fresh.model.state_dict()[key], reference.state_dict()[key])
    image = _image()
    expected = Predictor(cfg, model=reference)(image)
    got = loaded(image)
    assert torch.allclose(got["multilabel"]["scores"], expected["multilabel"]["scores"])
    assert torch.allclose(got["sem_seg"], expected["sem_seg"])


def test_bgr_input_gives_the_same_result_as_rgb(tiny_model_opts):
    predictor = Predictor(_cfg(SYNTHETIC_RANKSEG, tiny_model_opts))      # INPUT.FORMAT RGB
    image = _image()
    rgb = predictor(image)
    bgr = predictor(np.ascontiguousarray(image[:, :, ::-1]), format="BGR")
    assert torch.equal(rgb["sem_seg"], bgr["sem_seg"])
    flipped = predictor(np.ascontiguousarray(image[:, :, ::-1]))         # BGR passed as RGB: another image
    assert not torch.equal(rgb["sem_seg"], flipped["sem_seg"])


def test_bad_images_and_configs_are_refused(tiny_model_opts):
    predictor = Predictor(_cfg(SYNTHETIC_RANKSEG, tiny_model_opts))
    with pytest.raises(ValueError, match=r"HxWx3 uint8 numpy image, got ndarray \(70, 90, 3\) float32"):
        predictor(_image().astype(np.float32))
    with pytest.raises(ValueError, match=r"\(70, 90\)"):
        predictor(_image()[:, :, 0])
    with pytest.raises(ValueError, match="format='YUV'"):
        predictor(_image(), format="YUV")
    with pytest.raises(ConfigError, match="USE_GT"):
        Predictor(_cfg(SYNTHETIC_RANKSEG, tiny_model_opts, "MODEL.RANKSEG.USE_GT", True))
    with pytest.raises(ConfigError, match="INPUT.FORMAT='L'"):
        Predictor(_cfg(SYNTHETIC_RANKSEG, tiny_model_opts, "INPUT.FORMAT", "L"))
    with pytest.raises(ConfigError, match="is an image model; use Predictor"):
        VideoPredictor(_cfg(SYNTHETIC_RANKSEG, tiny_model_opts))


def test_video_configs_build_the_clip_level_model():
    cfg = get_cfg()
    cfg.merge_from_file(str(YTVIS))
    check_model_available(cfg)  # VideoMaskFormer is registered
    with pytest.raises(ConfigError, match="is a video model; use VideoPredictor"):
        Predictor(cfg)
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "NoSuchNet"])
    with pytest.raises(ModelUnavailableError, match="'NoSuchNet' is not a registered model; registered: .*MaskFormer"):
        check_model_available(cfg)


def test_video_predictor_runs_video_maskformer_at_the_clip_size(tiny_video_model_opts):
    cfg = _cfg(YTVIS, tiny_video_model_opts, "INPUT.MIN_SIZE_TEST", 64)
    frames = [_image(48, 96, seed=t) for t in range(3)]
    out = VideoPredictor(cfg)(frames)
    assert out["image_size"] == (48, 96)
    assert len(out["pred_scores"]) == len(out["pred_labels"]) == len(out["pred_masks"]) == 10
    assert all(m.shape == (3, 48, 96) and m.dtype == torch.bool for m in out["pred_masks"])


class _StubClipModel(torch.nn.Module):
    """Stands in for VideoMaskFormer: records its input, returns a clip output of the documented form."""

    def __init__(self):
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))
        self.inputs = None

    def forward(self, batched_inputs):
        self.inputs = batched_inputs
        video = batched_inputs[0]
        t, h, w = len(video["image"]), video["height"], video["width"]
        return {"image_size": (h, w), "pred_scores": [0.9], "pred_labels": [3],
                "pred_masks": [torch.ones(t, h, w, dtype=torch.bool)],
                "multilabel": {"scores": torch.zeros(12), "topk": torch.arange(5)}}


def test_video_predictor_feeds_the_clip_as_one_input(tiny_model_opts):
    cfg = _cfg(SYNTHETIC_RANKSEG, tiny_model_opts, "MODEL.META_ARCHITECTURE", "VideoMaskFormer")
    stub = _StubClipModel()
    predictor = VideoPredictor(cfg, model=stub)
    frames = [_image(48, 96, seed=t) for t in range(3)]
    out = predictor([np.ascontiguousarray(f[:, :, ::-1]) for f in frames], format="BGR")
    assert out["pred_masks"][0].shape == (3, 48, 96) and out["image_size"] == (48, 96)
    (video,) = stub.inputs
    assert (video["height"], video["width"]) == (48, 96)
    assert len(video["image"]) == 3
    for t, tensor in enumerate(video["image"]):
        assert tensor.dtype == torch.uint8 and tensor.shape == (3, 64, 128)  # shorter side -> MIN_SIZE_TEST 64
        assert torch.equal(tensor[:, 0, 0], torch.as_tensor(frames[t][0, 0]))  # back in RGB order
    assert not stub.training
    with pytest.raises(ValueError, match=r"Frame 1 is \(40, 96\) but frame 0 is \(48, 96\)"):
        predictor([frames[0], frames[1][:40]])
    with pytest.raises(ValueError, match="at least one frame"):
        predictor([])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_cuda_device_falls_back_to_cpu_without_a_gpu(tiny_model_opts):
    assert resolve_device("cuda") == "cpu" and resolve_device("cpu") == "cpu"
    predictor = Predictor(_cfg(SYNTHETIC_RANKSEG, tiny_model_opts, "MODEL.DEVICE", "cuda"))
    assert predictor.device == "cpu"
    assert predictor(_image())["sem_seg"].device.type == "cpu"
