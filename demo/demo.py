#!/usr/bin/env python
"""Look at a model's predictions on images, folders, a video or a webcam, from a source checkout; the installed
package has the same program as the ``mask2former-rankseg-demo`` command (``--help`` lists the flags).

    python demo/demo.py --config-file CONFIG (--input PATH|GLOB|DIR ... | --video-input FILE | --webcam)
                        [--output FILE_OR_DIR] [--confidence-threshold T] [--save-json] [--no-ranking-panel]
                        [--random-weights] [--opts KEY VALUE ...]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # a source checkout runs without installing

from mask2former_rankseg.cli.entry import demo  # noqa: E402

if __name__ == "__main__":
    sys.exit(demo())
