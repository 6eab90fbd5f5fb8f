"""The command lines of ``train_net.py`` / ``mask2former-rankseg-train`` and ``demo/demo.py`` /
``mask2former-rankseg-demo``: plain ``argparse``, importing nothing heavy, so that ``--help`` and usage errors come
at once, before torch is imported."""

from __future__ import annotations

import argparse
from typing import Optional

__all__ = ["default_argument_parser", "demo_argument_parser", "require_config_file"]

_EPILOG = """Examples:

Train on the embedded synthetic dataset (CPU, minutes):
  $ mask2former-rankseg-train --config-file synthetic/maskformer2_R18_synthetic-rankseg.yaml

Continue an interrupted run from OUTPUT_DIR/last_checkpoint:
  $ mask2former-rankseg-train --config-file CONFIG --resume

Evaluate weights:
  $ mask2former-rankseg-train --config-file CONFIG --eval-only MODEL.WEIGHTS /path/to/model_final.pth

Several GPUs (or, without CUDA, CPU worker processes), or two machines:
  $ mask2former-rankseg-train --config-file CONFIG --num-gpus 8
  (machine 0) $ mask2former-rankseg-train --config-file CONFIG --num-gpus 8 --num-machines 2 --machine-rank 0 \\
                  --dist-url tcp://IP_OF_MACHINE0:PORT
  (machine 1) $ mask2former-rankseg-train --config-file CONFIG --num-gpus 8 --num-machines 2 --machine-rank 1 \\
                  --dist-url tcp://IP_OF_MACHINE0:PORT
  (CPU only)  $ mask2former-rankseg-train --config-file CONFIG --num-gpus 4 MODEL.DEVICE cpu
  (torchrun)  $ torchrun --nproc-per-node 8 train_net.py --config-file CONFIG
SOLVER.IMS_PER_BATCH is the batch of one iteration over all processes.
"""


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """detectron2's training command line: ``--config-file``, ``--eval-only``, ``--resume``,
    ``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url`` and trailing ``KEY VALUE``
    config overrides (``opts``)."""
    parser = argparse.ArgumentParser(epilog=epilog or _EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to the config file")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUTPUT_DIR/last_checkpoint if it exists (else start from MODEL.WEIGHTS)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate the model (MODEL.WEIGHTS)")
    parser.add_argument("--random-weights", action="store_true",
                        help="with --eval-only and no MODEL.WEIGHTS: evaluate the randomly initialised model "
                             "without the warning that its results are meaningless (for testing the pipeline)")
    parser.add_argument("--num-gpus", type=int, default=1,
                        help="processes per machine: one per GPU, or CPU worker processes without CUDA")
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine (unique per machine)")
    parser.add_argument("--dist-url", default="auto",
                        help="initialisation URL of the process group, e.g. tcp://127.0.0.1:50152; 'auto' picks a "
                             "free port on this machine (one machine only)")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs at the end, e.g. SOLVER.BASE_LR 0.001 OUTPUT_DIR out")
    return parser


_DEMO_EPILOG = """Examples:

Images, folders and glob patterns (quote them), overlays written into output/demo/:
  $ mask2former-rankseg-demo --config-file synthetic/maskformer2_R18_synthetic-rankseg.yaml \\
        --input photo.jpg "more/*.jpg" --output output/demo --opts MODEL.WEIGHTS model_final.pth
A video, frame by frame; the webcam:
  $ mask2former-rankseg-demo --config-file CONFIG --video-input clip.mp4 --output output/demo --opts MODEL.WEIGHTS W
  $ mask2former-rankseg-demo --config-file CONFIG --webcam --output output/demo --opts MODEL.WEIGHTS W
(from a source checkout: python demo/demo.py with the same arguments; CONFIG is a path or a shipped config's name)
"""


def demo_argument_parser() -> argparse.ArgumentParser:
    """The demo's command line (upstream Mask2Former's demo flags and this package's own)."""
    parser = argparse.ArgumentParser(description="mask2former_rankseg demo: look at RankSeg's predictions.",
                                     epilog=_DEMO_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to config file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--webcam", action="store_true", help="Take inputs from webcam.")
    source.add_argument("--video-input", help="Path to video file.")
    source.add_argument("--input", nargs="+", help="Images, directories of images, or glob patterns such as "
                        "'directory/*.jpg' (quote them); with a video model, the frames of one clip.")
    parser.add_argument("--output", help="A file or directory to save output visualizations (created if missing). "
                        "If not given, will show output in an OpenCV window.")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="Minimum score for instance predictions to be shown")
    parser.add_argument("--save-json", action="store_true",
                        help="Also write the predictions in machine-readable form next to the visualizations: "
                        "<name>.json, the semantic label map <name>_sem_seg.png, the panoptic PNG "
                        "<name>_panoptic.png; instances as COCO RLEs in the JSON.")
    parser.add_argument("--no-ranking-panel", action="store_true",
                        help="Do not append RankSeg's ranking panel: overlays keep the input's size.")
    parser.add_argument("--random-weights", action="store_true",
                        help="Run without MODEL.WEIGHTS (a randomly initialised model) without the warning that "
                        "its predictions are meaningless, e.g. to test the pipeline.")
    parser.add_argument("--opts", help="Modify config options using the command-line 'KEY VALUE' pairs",
                        default=[], nargs=argparse.REMAINDER)
    return parser


def require_config_file(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A training command line without ``--config-file`` is a usage error (exit status 2), as in detectron2's
    tools; the parser keeps the option optional so that library users can build ``args`` without one."""
    if not args.config_file:
        parser.error("the following arguments are required: --config-file (e.g. --config-file "
                     "configs/synthetic/maskformer2_R18_synthetic-rankseg.yaml)")

