"""End to end: ``train_net.py`` trains each synthetic video config (YouTube-VIS-format and VSPW-format, baseline
and RankSeg) for a few steps on a tiny generated dataset, then evaluates video AP or mIoU/VC8/VC16; ``--eval-only``
on the checkpoint it wrote gives the same metrics."""

from __future__ import annotations

import json
import zipfile

import pytest
from helpers import REPO, TINY_MODEL

from mask2former_rankseg.data.synthetic.__main__ import main as synthetic_main

pytestmark = pytest.mark.slow  # whole train_net.py jobs

CONFIGS = REPO / "configs" / "synthetic"
SIZE = 48
SMALL_RUN = [
    *TINY_MODEL, "INPUT.MIN_SIZE_TRAIN", "(32, 40)", "INPUT.MIN_SIZE_TEST", 40,
    "SOLVER.IMS_PER_BATCH", 2, "SOLVER.MAX_ITER", 3, "DATALOADER.NUM_WORKERS", 0,
]


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    """A $DETECTRON2_DATASETS root with 3 + 2 YouTube-VIS-format videos of 5 frames and 3 + 2 VSPW-format videos
    of 22 frames (so each VSPW validation video is two evaluation clips, 20 + 2 frames), 48 px."""
    root = tmp_path_factory.mktemp("video_datasets")
    for task, folder, frames in (("video", "ytvis", 5), ("vspw", "vspw", 22)):
        assert synthetic_main(["--task", task, "--out", str(root / "synthetic" / folder), "--num-train", "3",
                               "--num-val", "2", "--num-frames", str(frames), "--size", str(SIZE), "--seed",
                               "1"]) == 0
    return root


def _run(train_net, *args):
    return train_net.main(train_net.default_argument_parser().parse_args([str(a) for a in args]))


@pytest.mark.parametrize("config", ["video_maskformer2_R18_synthetic.yaml",
                                    "video_maskformer2_R18_synthetic-rankseg.yaml"])
def test_youtube_vis_format_config_trains_and_evaluates(train_net, tiny_videos, tmp_path, monkeypatch, config,
                                                        restore_package_logger):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tiny_videos))
    out = tmp_path / "run"
    results = _run(train_net, "--config-file", CONFIGS / config, *SMALL_RUN, "OUTPUT_DIR", out)

    segm = results["segm"]
    for key in ("AP", "AP50", "AP75", "AR1", "AR10"):
        assert 0.0 <= segm[key] <= 100.0
    assert segm["AP50"] >= segm["AP75"] and segm["AR10"] >= segm["AR1"]
    assert (out / "model_final.pth").is_file()
    inference = out / "inference" / "synthetic_ytvis_val"
    submission = json.loads((inference / "results.json").read_text())  # a list: one entry per instance
    assert len({r["video_id"] for r in submission}) == 2
    assert all(len(r["segmentations"]) == 5 and r["segmentations"][0]["size"] == [SIZE, SIZE] for r in submission)
    with zipfile.ZipFile(inference / "results.zip") as archive:  # the server's file, not overwritten
        assert archive.namelist() == ["results.json"] and json.loads(archive.read("results.json")) == submission
    assert json.loads((inference / "evaluation_results.json").read_text())["segm"]["AP"] == pytest.approx(segm["AP"])
    training = [m for m in map(json.loads, (out / "metrics.json").read_text().splitlines()) if "total_loss" in m]
    assert training[-1]["iteration"] == 2 and ("loss_ml" in training[-1]) == ("rankseg" in config)

    again = _run(train_net, "--config-file", CONFIGS / config, "--eval-only", *SMALL_RUN,
                 "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR", tmp_path / "eval")
    assert again["segm"]["AP"] == pytest.approx(segm["AP"]) and again["segm"]["AR10"] == pytest.approx(segm["AR10"])


@pytest.mark.parametrize("config", ["video_maskformer2_R18_synthetic_vspw.yaml",
                                    "video_maskformer2_R18_synthetic_vspw-rankseg.yaml"])
def test_vspw_format_config_trains_and_evaluates(train_net, tiny_videos, tmp_path, monkeypatch, config,
                                                 restore_package_logger):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tiny_videos))
    out = tmp_path / "run"
    results = _run(train_net, "--config-file", CONFIGS / config, *SMALL_RUN, "OUTPUT_DIR", out)

    sem = results["sem_seg"]
    for key in ("mIoU", "VC8", "VC16"):
        assert 0.0 <= sem[key] <= 100.0
    assert (out / "model_final.pth").is_file()
    again = _run(train_net, "--config-file", CONFIGS / config, "--eval-only", *SMALL_RUN,
                 "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR", tmp_path / "eval")
    assert again["sem_seg"]["mIoU"] == pytest.approx(sem["mIoU"]) and again["sem_seg"]["VC16"] == pytest.approx(
        sem["VC16"])
