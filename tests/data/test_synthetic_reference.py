"""The synthetic generators write exactly what they wrote before they became the ``data/synthetic`` package: same
command line and seed, same files, same contents (digests recorded in
tests/fixtures/synthetic_reference_digests.json)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import FIXTURES
from PIL import Image

from mask2former_rankseg.data.synthetic.__main__ import main as synthetic_main

REFERENCE = json.loads((FIXTURES / "synthetic_reference_digests.json").read_text())["runs"]


def _digest(path: Path) -> str:
    """Images: SHA-256 of dtype, shape and pixels (independent of the PNG/JPEG encoder's build); else of the bytes."""
    if path.suffix in (".png", ".jpg"):
        with Image.open(path) as image:
            pixels = np.asarray(image)
        data = f"{pixels.dtype}{pixels.shape}".encode() + pixels.tobytes()
    else:
        data = path.read_bytes()
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("run", sorted(REFERENCE))
def test_generated_files_equal_the_recorded_reference(run, tmp_path):
    out = tmp_path / run
    assert synthetic_main([*REFERENCE[run]["args"], "--out", str(out)]) == 0
    written = {str(p.relative_to(out)): _digest(p) for p in sorted(out.rglob("*")) if p.is_file()}
    expected = REFERENCE[run]["digests"]
    assert sorted(written) == sorted(expected)
    differing = [name for name in expected if written[name] != expected[name]]
    assert not differing, f"{run}: files differ from the reference: {differing}"
