#!/usr/bin/env python3
"""Export a model's inference path as ONNX or a ``torch.export`` program (README, "Export").

    python tools/export_model.py --config-file configs/synthetic/maskformer2_R18_synthetic-rankseg.yaml \\
        --format onnx --output output/export/model.onnx MODEL.WEIGHTS output/synthetic_rankseg/model_final.pth
    python tools/export_model.py --config-file CONFIG --format exported-program --output model.pt2 --size 512 512

The graph takes ``image`` float [1, 3, H, W] (video models: [T, 3, H, W], one clip of ``--frames`` frames) of raw
pixel values in ``INPUT.FORMAT`` channel order (normalisation is inside), for the one size ``--size H W`` it was
traced at (default ``INPUT.MIN_SIZE_TEST`` square). Its outputs are those of
``mask2former_rankseg.engine.export`` (``sem_seg`` for semantic models; ``pred_logits`` and ``pred_masks`` for
panoptic, instance and video models; ``multilabel_scores`` and ``multilabel_topk`` with RankSeg). Multi-scale
deformable attention is traced on its pure-PyTorch path (``grid_sample``). The model is built on the CPU with
``MODEL.WEIGHTS`` loaded. After writing the file the tool runs it once on a random input (onnxruntime, or
``torch.export.load``) and prints the largest difference from the eager model (``--no-check`` skips it).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import torch

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.engine import Checkpointer, is_video_config
from mask2former_rankseg.engine.export import EXPORT_FORMATS, export_onnx, export_program, export_wrapper
from mask2former_rankseg.modeling import build_model

logger = logging.getLogger("export_model")

ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
INSTALL_HINT = "pip install onnx onnxruntime onnxscript"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="path to the config file")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                        help="onnx (an .onnx file) or exported-program (a torch.export .pt2 file)")
    parser.add_argument("--output", required=True, metavar="PATH", help="file to write (folders are created)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="input size the graph is traced for (default: INPUT.MIN_SIZE_TEST square)")
    parser.add_argument("--frames", type=int, default=None,
                        help="video models: frames of the clip (default: INPUT.SAMPLING_FRAME_NUM)")
    parser.add_argument("--no-check", action="store_true",
                        help="do not run the written file against the eager model")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides as KEY VALUE pairs at the end")
    return parser.parse_args(argv)


def missing_onnx_packages(check: bool) -> List[str]:
    """The packages the ONNX export (and, with ``check``, the check) needs that are not installed."""
    needed = ONNX_PACKAGES if check else ONNX_PACKAGES[:2]
    return [name for name in needed if importlib.util.find_spec(name) is None]


def example_input(cfg, size: Optional[Sequence[int]], frames: Optional[int], seed: int = 0) -> torch.Tensor:
    """A random raw-pixel input [1 or T, 3, H, W] of the export size."""
    height, width = size if size is not None else (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST)
    batch = 1
    if is_video_config(cfg):
        batch = frames if frames is not None else cfg.INPUT.SAMPLING_FRAME_NUM
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, int(height), int(width)), generator=generator).float()


def run_exported(fmt: str, path: Path, example: torch.Tensor) -> List[torch.Tensor]:
    """The outputs of the written file on ``example``."""
    if fmt == "onnx":
        import onnxruntime  # checked by missing_onnx_packages

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [torch.as_tensor(o) for o in session.run(None, {"image": example.numpy()})]
    with torch.no_grad():
        return list(torch.export.load(str(path)).module()(example))


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.format == "onnx":
        missing = missing_onnx_packages(not args.no_check)
        if missing:
            raise SystemExit(f"export_model: ONNX export needs {', '.join(missing)}: {INSTALL_HINT}")
    cfg = get_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(list(args.opts or []) + ["MODEL.DEVICE", "cpu"])
    cfg.freeze()

    model = build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        Checkpointer(model).load(cfg.MODEL.WEIGHTS, checkpointables=[])
    wrapper = export_wrapper(model.eval())
    example = example_input(cfg, args.size, args.frames)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Exporting %s (%s) for input %s to %s ...", cfg.MODEL.META_ARCHITECTURE, args.format,
                tuple(example.shape), output)
    if args.format == "onnx":
        export_onnx(wrapper, example, str(output))
    else:
        export_program(wrapper, example, str(output))
    names = wrapper.output_names()
    logger.info("Wrote %s: input image %s float, outputs %s", output, tuple(example.shape), ", ".join(names))
    if args.no_check:
        return 0
    with torch.no_grad():
        expected = wrapper(example)
    got = run_exported(args.format, output, example)
    for name, e, g in zip(names, expected, got):
        if e.is_floating_point():
            logger.info("check %s %s: max abs difference %.3g", name, tuple(e.shape), (e - g).abs().max().item())
        else:
            logger.info("check %s %s: %s", name, tuple(e.shape), "equal" if torch.equal(e, g.to(e)) else "DIFFERENT")
    return 0


if __name__ == "__main__":
    sys.exit(main())
