"""demo/demo.py end to end with a tiny randomly initialised model: images, a folder, globs, a video, a webcam
(stood in for by a video file), clip-level video models (a stub), bad inputs and exit statuses."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from helpers import REPO, SYNTHETIC_DEEPLAB_RANKSEG_CONFIG

from mask2former_rankseg.cli import demo as demo_program
from mask2former_rankseg.utils.visualizer import rankseg_panel_width

SYNTHETIC_RANKSEG = REPO / "configs/synthetic/maskformer2_R18_synthetic-rankseg.yaml"
SYNTHETIC = REPO / "configs/synthetic/maskformer2_R18_synthetic.yaml"
SYNTHETIC_PANOPTIC = REPO / "configs/synthetic/maskformer2_R18_synthetic_panoptic-rankseg.yaml"
YTVIS = REPO / "configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml"


@pytest.fixture(autouse=True)
def _restore_logger(restore_package_logger):
    """demo.main sets up the package logger; other tests' caplog needs it as it was."""


@pytest.fixture(scope="module")
def demo():
    """The demo program (``demo/demo.py`` and ``mask2former-rankseg-demo`` run it)."""
    return demo_program


def _write_image(path, height, width, seed=0):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


def _write_video(path, num_frames, height=48, width=64, fps=5.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), True)
    rng = np.random.default_rng(0)
    for _ in range(num_frames):
        writer.write(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    writer.release()
    return path


def _video_frames(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def _run(demo, config, tiny_model_opts, *args):
    return demo.main(["--config-file", str(config), *[str(a) for a in args], "--opts", *tiny_model_opts])


def test_folder_of_images_with_json(demo, tiny_model_opts, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    _write_image(folder / "a.png", 48, 64, seed=1)
    _write_image(folder / "b.jpg", 70, 50, seed=2)
    (folder / "notes.txt").write_text("not an image; skipped with a warning")
    out = tmp_path / "deep" / "missing" / "out"                       # created
    assert _run(demo, SYNTHETIC_RANKSEG, tiny_model_opts, "--input", folder, "--output", out, "--save-json") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.png", "a_sem_seg.png", "b.jpg", "b.json",
                                                     "b_sem_seg.png"]
    for name, (height, width) in {"a": (48, 64), "b": (70, 50)}.items():
        overlay = cv2.imread(str(next(out.glob(f"{name}.[pj]*g"))))
        assert overlay.shape == (height, width + rankseg_panel_width(height, width), 3)
        labels = cv2.imread(str(out / f"{name}_sem_seg.png"), cv2.IMREAD_UNCHANGED)
        assert labels.shape == (height, width) and labels.dtype == np.uint8
        record = json.loads((out / f"{name}.json").read_text())
        assert (record["height"], record["width"]) == (height, width)
        ids, areas = np.unique(labels, return_counts=True)
        assert [(c["category_id"], c["area"]) for c in record["sem_seg"]["categories"]] == list(zip(ids.tolist(),
                                                                                                 areas.tolist()))
        assert len(record["multilabel"]["image_scores"]) == 12 and len(record["multilabel"]["topk"]) == 5
        assert record["sem_seg"]["categories"][0]["category_name"].endswith("disc")  # synthetic metadata names


def test_per_pixel_config_draws_and_saves_like_the_mask_classification_ones(demo, tiny_model_opts, tmp_path):
    image = _write_image(tmp_path / "y.png", 40, 56, seed=4)
    out = tmp_path / "out"
    assert _run(demo, SYNTHETIC_DEEPLAB_RANKSEG_CONFIG, tiny_model_opts, "--input", image, "--output", out,
                "--save-json") == 0
    overlay = cv2.imread(str(out / "y.png"))
    assert overlay.shape == (40, 56 + rankseg_panel_width(40, 56), 3)  # the ranking panel beside the image
    labels = cv2.imread(str(out / "y_sem_seg.png"), cv2.IMREAD_UNCHANGED)
    record = json.loads((out / "y.json").read_text())
    assert labels.shape == (40, 56) and len(record["multilabel"]["topk"]) == 5
    assert set(np.unique(labels).tolist()) <= set(record["multilabel"]["topk"])


def test_panoptic_and_instance_json(demo, tiny_model_opts, tmp_path):
    from pycocotools import mask as mask_utils

    from mask2former_rankseg.utils.panoptic import rgb2id

    image = _write_image(tmp_path / "p.png", 48, 64)
    out = tmp_path / "out"
    opts = [*tiny_model_opts, "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "116", "MODEL.MASK_FORMER.TEST.INSTANCE_ON", "True",
            "MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD", "0.0", "TEST.DETECTIONS_PER_IMAGE", "5"]
    assert _run(demo, SYNTHETIC_PANOPTIC, opts, "--input", image, "--output", out, "--save-json",
                "--confidence-threshold", "0") == 0
    record = json.loads((out / "p.json").read_text())
    assert set(record) >= {"sem_seg", "panoptic_seg", "instances", "multilabel"}
    ids = rgb2id(cv2.imread(str(out / record["panoptic_seg"]["file"]))[:, :, ::-1])
    segments = record["panoptic_seg"]["segments_info"]
    assert ids.shape == (48, 64) and segments
    for s in segments:
        assert s["area"] == int((ids == s["id"]).sum()) > 0
        assert s["isthing"] == (s["category_id"] < 108)               # synthetic: 108 things, then 8 stuff
    assert set(np.unique(ids)) <= {0} | {s["id"] for s in segments}
    assert len(record["instances"]) == 5                              # threshold 0 keeps every detection
    for inst in record["instances"]:
        rle = dict(inst["segmentation"], counts=inst["segmentation"]["counts"].encode("ascii"))
        assert mask_utils.decode(rle).shape == (48, 64)
    assert cv2.imread(str(out / "p.png")).shape == (48, 64 + rankseg_panel_width(48, 64), 3)


def test_json_labels_are_the_predictors_argmax(demo, tiny_model_opts, tmp_path):
    from mask2former_rankseg.config import get_cfg
    from mask2former_rankseg.data.detection_utils import read_image
    from mask2former_rankseg.engine import Predictor

    image_path = _write_image(tmp_path / "x.png", 40, 56, seed=3)
    out = tmp_path / "out"
    torch.manual_seed(0)
    assert _run(demo, SYNTHETIC_RANKSEG, tiny_model_opts, "--input", image_path, "--output", out, "--save-json") == 0
    cfg = get_cfg()
    cfg.merge_from_file(str(SYNTHETIC_RANKSEG))
    cfg.merge_from_list(tiny_model_opts)
    torch.manual_seed(0)
    expected = Predictor(cfg)(read_image(image_path, format="RGB"))["sem_seg"].argmax(0).numpy()
    np.testing.assert_array_equal(cv2.imread(str(out / "x_sem_seg.png"), cv2.IMREAD_UNCHANGED), expected)


def test_bad_inputs_are_skipped_reported_and_fail_the_run(demo, tiny_model_opts, tmp_path, capsys):
    good = _write_image(tmp_path / "good.png", 40, 40)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "text.jpg").write_text("hello")
    out = tmp_path / "out"
    status = _run(demo, SYNTHETIC, tiny_model_opts, "--input", good, tmp_path / "broken.png", tmp_path / "text.jpg",
                  tmp_path / "nothing.png", str(tmp_path / "*.bmp"), "--output", out)
    assert status == demo.EXIT_INPUT_FAILED
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    assert cv2.imread(str(out / "good.png")).shape == (40, 40, 3)      # baseline: no RankSeg panel
    failures = capsys.readouterr().err
    assert "error: 4 input(s) failed" in failures
    for name in ["broken.png", "text.jpg", "nothing.png: no such file", "*.bmp: no file matches"]:
        assert name in failures
    assert "good.png" not in failures


def test_glob_and_single_output_file(demo, tiny_model_opts, tmp_path):
    for i in range(2):
        _write_image(tmp_path / f"frame{i}.png", 36, 48, seed=i)
    out = tmp_path / "globbed"
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--input", str(tmp_path / "frame*.png"), "--output", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["frame0.png", "frame1.png"]
    single = tmp_path / "sub" / "result.jpg"
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--input", tmp_path / "frame0.png", "--output", single,
                "--save-json") == 0
    assert cv2.imread(str(single)).shape == (36, 48, 3)
    assert (single.parent / "result.json").is_file() and (single.parent / "result_sem_seg.png").is_file()
    # a file name for several inputs is a usage error
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--input", str(tmp_path / "frame*.png"), "--output",
                tmp_path / "one.png") == demo.EXIT_USAGE


def test_same_names_from_two_folders_do_not_overwrite(demo, tiny_model_opts, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        _write_image(tmp_path / folder / "img.png", 32, 32)
    out = tmp_path / "out"
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--input", tmp_path / "x", tmp_path / "y", "--output", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["img-1.png", "img.png"]


def test_video_frame_by_frame_writes_an_mp4_with_every_frame(demo, tiny_model_opts, tmp_path):
    video = _write_video(tmp_path / "clip.mp4", num_frames=5)
    out = tmp_path / "out"
    assert _run(demo, SYNTHETIC_RANKSEG, tiny_model_opts, "--video-input", video, "--output", out,
                "--save-json") == 0
    frames = _video_frames(out / "clip.mp4")
    assert len(frames) == 5
    assert frames[0].shape == (48, 64 + rankseg_panel_width(48, 64), 3)
    predictions = sorted(p.name for p in (out / "clip_predictions").glob("*.json"))
    assert predictions == [f"clip_{t:06d}.json" for t in range(5)]
    assert not list(out.glob(".*partial*"))                          # the temporary file was renamed
    file_out = tmp_path / "named.mp4"
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--video-input", video, "--output", file_out) == 0
    assert len(_video_frames(file_out)) == 5 and _video_frames(file_out)[0].shape == (48, 64, 3)


def test_unreadable_video_fails_without_output(demo, tiny_model_opts, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    out = tmp_path / "out"
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--video-input", bad, "--output", out) == demo.EXIT_INPUT_FAILED
    assert not list(out.glob("*.mp4")) and not list(out.glob(".*"))
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--video-input", tmp_path / "none.mp4", "--output", out) == 1


def test_webcam_stream_is_written_frame_by_frame(demo, tiny_model_opts, tmp_path, monkeypatch):
    video = _write_video(tmp_path / "camera.mp4", num_frames=3)
    monkeypatch.setattr(demo, "open_webcam", lambda: cv2.VideoCapture(str(video)))
    out = tmp_path / "out"
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--webcam", "--output", out) == 0
    assert len(_video_frames(out / "webcam.mp4")) == 3


def test_no_output_and_no_gui_is_a_clear_usage_error(demo, tiny_model_opts, tmp_path, capsys):
    if "GUI:                           NONE" not in cv2.getBuildInformation():
        pytest.skip("this OpenCV can open windows")
    image = _write_image(tmp_path / "a.png", 32, 32)
    assert _run(demo, SYNTHETIC, tiny_model_opts, "--input", image) == demo.EXIT_USAGE
    assert "give --output" in capsys.readouterr().err


def test_video_config_runs_the_clip_level_model(demo, tiny_video_model_opts, tmp_path):
    video = _write_video(tmp_path / "v.mp4", num_frames=3)
    out = tmp_path / "out"
    opts = [*tiny_video_model_opts, "INPUT.MIN_SIZE_TEST", "64"]
    assert _run(demo, YTVIS, opts, "--video-input", video, "--output", out) == 0
    frames = _video_frames(out / "v.mp4")
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)


def _write_moving_square_video(path, num_frames, height=48, width=64):
    """A red square moving right over grey: something for a random model's tracks to follow."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (width, height), True)
    for t in range(num_frames):
        frame = np.full((height, width, 3), 120, np.uint8)
        frame[10:30, 5 + 4 * t:25 + 4 * t] = (40, 40, 200)  # BGR
        writer.write(frame)
    writer.release()
    return path


def test_video_rankseg_config_keeps_track_colours_and_draws_the_clip_ranking(demo, tiny_video_model_opts, tmp_path,
                                                                              monkeypatch):
    """A synthetic video RankSeg config (tiny random model, saved and loaded as MODEL.WEIGHTS) on an mp4: every frame
    is written with the clip's ranking panel, and every frame draws the same tracks with the same identities (so the
    same colours: instance_color(class colour, identity))."""
    from mask2former_rankseg.config import get_cfg
    from mask2former_rankseg.engine import VideoPredictor
    from mask2former_rankseg.modeling import build_model
    from mask2former_rankseg.utils.visualizer import Visualizer

    config = REPO / "configs/synthetic/video_maskformer2_R18_synthetic-rankseg.yaml"
    opts = [*tiny_video_model_opts, "INPUT.MIN_SIZE_TEST", "48"]
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(opts)
    weights = tmp_path / "model_final.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    opts += ["MODEL.WEIGHTS", str(weights)]
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights)])
    video = _write_moving_square_video(tmp_path / "clip.mp4", num_frames=5)
    clip = VideoPredictor(cfg)(_video_frames(video), format="BGR")
    threshold = sorted(clip["pred_scores"])[-3]  # the three best tracks

    drawn = []
    real_draw_instances = Visualizer.draw_instances

    def record(self, masks, classes, scores=None, identities=None):
        drawn.append((list(classes), list(identities)))
        return real_draw_instances(self, masks, classes, scores, identities)

    monkeypatch.setattr(Visualizer, "draw_instances", record)
    out = tmp_path / "out.mp4"
    assert demo.main(["--config-file", str(config), "--video-input", str(video), "--output", str(out),
                      "--confidence-threshold", repr(threshold), "--opts", *opts]) == 0

    written = _video_frames(out)
    assert len(written) == 5 and all(f.shape == (48, 64 + rankseg_panel_width(48, 64), 3) for f in written)
    tracks = [i for i, s in enumerate(clip["pred_scores"]) if s >= threshold]   # the demo loaded the saved weights
    expected = ([int(clip["pred_labels"][i]) for i in tracks], tracks)
    assert len(tracks) >= 3 and drawn == [expected] * 5
    for frame in written:                                                     # the ranking panel is drawn
        assert frame[:, 64:].std() > 5


class _StubVideoPredictor:
    """Stands in for VideoPredictor(cfg): two tracks, one moving right, and a label map per frame, in the
    documented clip-output form."""

    calls = []

    def __init__(self, cfg, allow_random_weights=False):
        self.cfg = cfg

    def __call__(self, frames, format=None):
        type(self).calls.append((len(frames), format))
        t, (h, w) = len(frames), frames[0].shape[:2]
        masks = torch.zeros(2, t, h, w, dtype=torch.bool)
        for i in range(t):
            masks[0, i, 4:20, 4 + i:20 + i] = True
            masks[1, i, 24:40, 30:60] = True
        labels = torch.zeros(t, h, w, dtype=torch.int64)
        labels[:, :, w // 2:] = 7
        return {"image_size": (h, w), "pred_scores": [0.9, 0.2], "pred_labels": [3, 4], "pred_masks": list(masks),
                "sem_seg_labels": labels,
                "multilabel": {"scores": torch.linspace(2, -2, 12), "topk": torch.arange(5)}}


def test_clip_level_video_model_hook(demo, tiny_model_opts, tmp_path, monkeypatch):
    """The path a VideoMaskFormer config takes: one forward pass over the clip, then per-frame drawing."""
    monkeypatch.setattr(demo, "VideoPredictor", _StubVideoPredictor)
    _StubVideoPredictor.calls = []
    video = _write_video(tmp_path / "v.mp4", num_frames=4)
    out = tmp_path / "out"
    opts = [*tiny_model_opts, "MODEL.META_ARCHITECTURE", "VideoMaskFormer",
            "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME", "VideoMultiScaleMaskedTransformerDecoder"]
    assert _run(demo, SYNTHETIC_RANKSEG, opts, "--video-input", video, "--output", out, "--save-json") == 0
    assert _StubVideoPredictor.calls == [(4, "RGB")]                   # the whole clip at once
    frames = _video_frames(out / "v.mp4")
    assert len(frames) == 4 and frames[0].shape == (48, 64 + rankseg_panel_width(48, 64), 3)
    record = json.loads((out / "v.json").read_text())
    assert [t["track_id"] for t in record["tracks"]] == [0]              # track 1 is below the 0.5 threshold
    assert len(record["tracks"][0]["segmentations"]) == 4
    assert record["sem_seg"]["files"] == [f"v_v_{t:06d}_sem_seg.png" for t in range(4)]
    labels = cv2.imread(str(out / record["sem_seg"]["files"][2]), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (48, 64) and set(np.unique(labels)) == {0, 7}

    frame_dir = tmp_path / "frames"
    frame_dir.mkdir()
    for t in range(3):
        _write_image(frame_dir / f"{t:05d}.jpg", 48, 64, seed=t)
    out = tmp_path / "frames_out"
    assert _run(demo, SYNTHETIC_RANKSEG, opts, "--input", frame_dir, "--output", out, "--save-json") == 0
    assert _StubVideoPredictor.calls[-1] == (3, "RGB")
    assert sorted(p.name for p in out.glob("*.jpg")) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert json.loads((out / "clip.json").read_text())["frames"] == ["00000.jpg", "00001.jpg", "00002.jpg"]


@pytest.mark.slow
def test_command_line_runs_as_a_script(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "demo" / "demo.py"), "--help"], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 0
    for flag in ["--config-file", "--input", "--video-input", "--webcam", "--output", "--confidence-threshold",
                 "--save-json", "--opts"]:
        assert flag in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["--config-file", "x.yaml"], "one of the arguments --webcam --video-input --input is required"),
    (["--config-file", "x.yaml", "--webcam", "--save-json"], "--save-json writes files next to the visualizations: "
                                                              "give --output"),
    (["--config-file", "x.yaml", "--input", "a.png", "--webcam"], "not allowed with argument"),
])
def test_bad_command_lines_exit_with_status_2(demo, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    assert exit_info.value.code == demo.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_missing_config_file_is_a_usage_error(demo, capsys, tmp_path):
    assert demo.main(["--config-file", str(tmp_path / "nope.yaml"), "--webcam"]) == demo.EXIT_USAGE
    assert "nope.yaml does not exist" in capsys.readouterr().err


def test_no_ranking_panel_keeps_the_input_size(demo, tiny_model_opts, tmp_path):
    image = _write_image(tmp_path / "a.png", 40, 56)
    out = tmp_path / "out"
    assert _run(demo, SYNTHETIC_RANKSEG, tiny_model_opts, "--input", image, "--output", out) == 0
    assert cv2.imread(str(out / "a.png")).shape == (40, 56 + rankseg_panel_width(40, 56), 3)
    bare = tmp_path / "bare"
    assert _run(demo, SYNTHETIC_RANKSEG, tiny_model_opts, "--input", image, "--output", bare,
                "--no-ranking-panel") == 0
    assert cv2.imread(str(bare / "a.png")).shape == (40, 56, 3)


def test_inputs_are_checked_before_the_model_is_loaded(demo, tiny_model_opts, tmp_path, monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(demo, "Predictor", no_model)
    status = _run(demo, SYNTHETIC_RANKSEG, tiny_model_opts, "--input", tmp_path / "missing.png", "--output",
                  tmp_path / "out")
    assert status == demo.EXIT_INPUT_FAILED and "missing.png: no such file" in capsys.readouterr().err
    status = _run(demo, SYNTHETIC_RANKSEG, tiny_model_opts, "--video-input", tmp_path / "none.mp4", "--output",
                  tmp_path / "out")
    assert status == demo.EXIT_INPUT_FAILED and "none.mp4: no such file" in capsys.readouterr().err


def test_random_weights_warn_loudly_unless_asked_for(demo, tiny_model_opts, tmp_path, capfd):
    image = _write_image(tmp_path / "a.png", 32, 32)
    opts = [*tiny_model_opts, "MODEL.WEIGHTS", ""]
    assert _run(demo, SYNTHETIC_RANKSEG, opts, "--input", image, "--output", tmp_path / "a") == 0
    captured = capfd.readouterr()
    logged = captured.out + captured.err
    assert "RANDOMLY INITIALISED" in logged and "--random-weights" in logged
    assert _run(demo, SYNTHETIC_RANKSEG, opts, "--input", image, "--output", tmp_path / "b", "--random-weights") == 0
    captured = capfd.readouterr()
    assert "RANDOMLY INITIALISED" not in captured.out + captured.err
