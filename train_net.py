#!/usr/bin/env python
"""Train and evaluate Mask2Former (+ RankSeg) with detectron2's command line, from a source checkout; the
installed package has the same program as the ``mask2former-rankseg-train`` command.

    python train_net.py --config-file CONFIG [--eval-only] [--resume] [--num-gpus N] [--num-machines M]
                        [--machine-rank R] [--dist-url URL] [KEY VALUE ...]

CONFIG is a path, or the name of a shipped config (its path below ``configs/``).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a source checkout runs without installing

from mask2former_rankseg.cli.entry import train  # noqa: E402
from mask2former_rankseg.config.arguments import default_argument_parser  # noqa: E402,F401

_PROGRAM_NAMES = ("cli", "load_config", "main", "setup")


def __getattr__(name):
    """detectron2's train_net names (``main``, ``setup``, ``load_config``, ``cli``) from the program module, imported
    on first use so that ``--help`` does not import torch."""
    if name in _PROGRAM_NAMES:
        from mask2former_rankseg.cli import train as program

        return getattr(program, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    sys.exit(train())
