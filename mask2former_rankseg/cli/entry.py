"""The console commands ``mask2former-rankseg-train`` and ``mask2former-rankseg-demo``.

Each parses its command line with the plain-argparse parsers of :mod:`..config.arguments` first, so ``--help`` and
usage errors come at once; only then does it import the program (torch, the model code). These two imports are
function-local on purpose.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..config.arguments import default_argument_parser, demo_argument_parser, require_config_file

__all__ = ["demo", "train"]


def train(argv: Optional[Sequence[str]] = None) -> int:
    """``mask2former-rankseg-train``: ``train_net.py``'s command line."""
    parser = default_argument_parser()
    args = parser.parse_args(argv)
    require_config_file(parser, args)
    from .train import run_cli  # after parsing: --help without importing torch

    return run_cli(parser, args)


def demo(argv: Optional[Sequence[str]] = None) -> int:
    """``mask2former-rankseg-demo``: ``demo/demo.py``'s command line."""
    parser = demo_argument_parser()
    args = parser.parse_args(argv)
    from .demo import run  # after parsing: --help without importing torch

    return run(parser, args)
