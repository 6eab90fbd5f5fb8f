"""The command line shared by the ``datasets/prepare_*.py`` scripts: a ``--root`` folder (default
``$DETECTRON2_DATASETS``, else ``./datasets``), summary lines on stdout and exit status 0 when done, or
``error: <message>`` on stderr and exit status 1 for a missing or invalid input (a script's output, so printed,
not logged).

A script's ``main`` reads::

    parser = prepare_argument_parser(__doc__, "ADEChallengeData2016")
    args = parser.parse_args(argv)
    return run_and_report(lambda: [f"Converted {prepare(Path(args.root))} annotations"])
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Iterable

from .datasets.sem_seg import dataset_root

__all__ = ["PREPARE_ERRORS", "prepare_argument_parser", "run_and_report"]

PREPARE_ERRORS = (OSError, ValueError, RuntimeError)
"""What a missing or invalid input raises (FileNotFoundError is an OSError); reported as ``error: ...``."""


def prepare_argument_parser(doc: str, holds: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of ``doc`` (the script's docstring), with ``--root``.

    Args:
        doc: the script's module docstring.
        holds: what the ``--root`` folder holds, for its help (``"coco/"``, ``"ADEChallengeData2016"``).
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--root", default=str(dataset_root()),
                        help=f"folder holding {holds} (default: $DETECTRON2_DATASETS or ./datasets)")
    return parser


def run_and_report(summary: Callable[[], Iterable[str]]) -> int:
    """Run ``summary()`` (the conversion) and print its lines as they come.

    Returns:
        0 when it finished; 1 when it raised one of :data:`PREPARE_ERRORS`, whose message goes to stderr as
        ``error: <message>`` (lines printed before stay).
    """
    try:
        for line in summary():
            print(line)
    except PREPARE_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
