"""End to end: ``train_net.py`` trains the synthetic DeepLabV3 and Segmenter (+ RankSeg) configs for a few steps on
a tiny generated dataset and evaluates mIoU (and the ranking); ``--eval-only`` on the checkpoint gives the same, and
with test-time augmentation, slide inference and the ``-gt``-style oracle it runs through the same evaluators."""

from __future__ import annotations

import pytest
from helpers import (
    SYNTHETIC_DEEPLAB_CONFIG,
    SYNTHETIC_DEEPLAB_RANKSEG_CONFIG,
    SYNTHETIC_SEGMENTER_CONFIG,
    SYNTHETIC_SEGMENTER_RANKSEG_CONFIG,
    TINY_MASK2FORMER,
    make_tiny_synthetic,
)

pytestmark = pytest.mark.slow  # whole train_net.py jobs

TINY_RUN = [*TINY_MASK2FORMER, "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "MODEL.RANKSEG.TOPK", "20"]
TINY_SEGMENTER = ["MODEL.VIT.EMBED_DIM", "32", "MODEL.VIT.DEPTH", "2", "MODEL.VIT.NUM_HEADS", "2",
                  "MODEL.SEM_SEG_HEAD.IN_FEATURES", "['vit1']", "MODEL.SEGMENTER.D_MODEL", "32",
                  "MODEL.SEGMENTER.N_HEADS", "2", "MODEL.SEGMENTER.D_FF", "64"]


def _run(train_net, *args):
    return train_net.main(train_net.default_argument_parser().parse_args([str(a) for a in args]))


@pytest.fixture()
def dataset_root(tmp_path, monkeypatch):
    root = make_tiny_synthetic(tmp_path / "datasets", num_train=4, num_val=3)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return root


@pytest.mark.parametrize("config", [SYNTHETIC_DEEPLAB_CONFIG, SYNTHETIC_DEEPLAB_RANKSEG_CONFIG,
                                    SYNTHETIC_SEGMENTER_CONFIG, SYNTHETIC_SEGMENTER_RANKSEG_CONFIG])
def test_train_evaluate_and_eval_only(train_net, dataset_root, tmp_path, config, restore_package_logger):
    out = tmp_path / "run"
    tiny_run = [*TINY_RUN, *TINY_SEGMENTER] if "segmenter" in config.name else TINY_RUN
    results = _run(train_net, "--config-file", config, *tiny_run, "OUTPUT_DIR", out)
    assert 0.0 <= results["sem_seg"]["mIoU"] <= 100.0
    rankseg = "rankseg" in config.name
    assert ("rankseg" in results) == rankseg
    if rankseg:
        assert results["rankseg"]["num_images"] == 3 and 0.0 <= results["rankseg"]["recall"] <= 100.0
    again = _run(train_net, "--config-file", config, "--eval-only", *tiny_run, "OUTPUT_DIR", tmp_path / "eval",
                 "MODEL.WEIGHTS", out / "model_final.pth")
    assert again["sem_seg"]["mIoU"] == pytest.approx(results["sem_seg"]["mIoU"])
    slide = _run(train_net, "--config-file", config, "--eval-only", *tiny_run, "OUTPUT_DIR", tmp_path / "slide",
                 "MODEL.WEIGHTS", out / "model_final.pth", "MODEL.SEM_SEG_HEAD.TEST_MODE", "slide",
                 "MODEL.SEM_SEG_HEAD.TEST_CROP_SIZE", "(48, 48)", "MODEL.SEM_SEG_HEAD.TEST_STRIDE", "(32, 32)",
                 "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(48, 64)", "TEST.AUG.MAX_SIZE", "256")
    assert 0.0 <= slide["sem_seg"]["mIoU"] <= 100.0


def test_oracle_eval_only(train_net, dataset_root, tmp_path, restore_package_logger):
    results = _run(train_net, "--config-file", SYNTHETIC_DEEPLAB_RANKSEG_CONFIG, "--eval-only", *TINY_RUN,
                   "OUTPUT_DIR", tmp_path, "MODEL.RANKSEG.USE_GT", "True")
    assert 0.0 <= results["sem_seg"]["mIoU"] <= 100.0 and "rankseg" not in results
