"""Logging set-up: console on the main process, ``log.txt`` in the output directory."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

_FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"


def setup_logger(output: Optional[str] = None, distributed_rank: int = 0, name: str = "mask2former_rankseg",
                 level: int = logging.INFO) -> logging.Logger:
    """Configure the package logger once (idempotent): stdout on rank 0, and ``output/log.txt``
    (``log.txt.rank{r}`` on other ranks) when ``output`` is a directory (or a ``.txt``/``.log`` file)."""
    logger = logging.getLogger(name)
    logger.setLevel(level)
    logger.propagate = False
    formatter = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
    have = {(type(h), getattr(h, "baseFilename", None)) for h in logger.handlers}
    if distributed_rank == 0 and (logging.StreamHandler, None) not in have:
        handler = logging.StreamHandler(stream=sys.stdout)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    if output:
        path = Path(output)
        if path.suffix not in (".txt", ".log"):
            path = path / "log.txt"
        if distributed_rank > 0:
            path = path.with_name(f"{path.name}.rank{distributed_rank}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if (logging.FileHandler, str(path.resolve())) not in have:
            fh = logging.FileHandler(path)
            fh.setFormatter(formatter)
            logger.addHandler(fh)
    return logger
