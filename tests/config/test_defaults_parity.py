"""Defaults parity: our get_cfg() has exactly upstream's config keys, default values and value types, plus the
package's own keys.

``tests/fixtures/upstream_config_defaults.json`` lists every key upstream defines (detectron2's defaults,
DeepLab's, RankSeg's Mask2Former config with the RankSeg keys, and the video config), recorded from upstream's
own config functions; its ``provenance`` field names the commits. ``upstream_maskformer_config_defaults.json``
holds MaskFormer's keys, recorded the same way (all of them are Mask2Former's too). ``package_config_keys.json``
lists the keys this package adds, with why.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from fvcore.common.config import CfgNode
from helpers import FIXTURES

from mask2former_rankseg.config import get_cfg

DATA = FIXTURES / "upstream_config_defaults.json"
MASKFORMER_DATA = FIXTURES / "upstream_maskformer_config_defaults.json"
PACKAGE_KEYS = FIXTURES / "package_config_keys.json"


def _expected() -> Dict[str, Dict[str, Any]]:
    """Upstream's keys and the package's own (which must not collide)."""
    upstream = json.loads(DATA.read_text())["keys"]
    own = json.loads(PACKAGE_KEYS.read_text())["keys"]
    assert not own.keys() & upstream.keys()
    return {**upstream, **own}


def _flatten(node: CfgNode, prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, CfgNode):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (JSON has no tuples; the outer type is compared separately)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _differences(ours: Dict[str, Any], upstream: Dict[str, Dict[str, Any]]) -> List[str]:
    problems = [f"missing key {k} (upstream default {upstream[k]['value']!r})"
                for k in sorted(upstream.keys() - ours.keys())]
    problems += [f"extra key {k} = {ours[k]!r} (not in upstream)" for k in sorted(ours.keys() - upstream.keys())]
    for key in sorted(ours.keys() & upstream.keys()):
        want, kind, got = upstream[key]["value"], upstream[key]["type"], ours[key]
        if type(got).__name__ != kind:
            problems.append(f"{key}: type {type(got).__name__}, upstream {kind}")
        elif _plain(got) != want:
            problems.append(f"{key}: {got!r}, upstream {want!r}")
    return problems


def test_defaults_equal_upstream_key_by_key():
    expected = _expected()
    ours = _flatten(get_cfg())
    assert len(json.loads(DATA.read_text())["keys"]) == 277
    assert len(expected) == 283
    problems = _differences(ours, expected)
    assert not problems, f"{len(problems)} differences from upstream's defaults:\n" + "\n".join(problems)


def test_every_maskformer_key_has_maskformers_default():
    """Upstream MaskFormer's 248 keys are all in get_cfg() with MaskFormer's defaults (so its configs mean the same)."""
    maskformer = json.loads(MASKFORMER_DATA.read_text())["keys"]
    assert len(maskformer) == 248
    ours = _flatten(get_cfg())
    problems = [p for p in _differences(ours, maskformer) if not p.startswith("extra key")]
    assert not problems, "\n".join(problems)
    assert "MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME" not in maskformer  # why configs/maskformer/ sets it


def test_the_comparison_catches_differences():
    upstream = _expected()
    ours = _flatten(get_cfg())
    ours["MODEL.RANKSEG.TOPK"] = 5
    ours["INPUT.MIN_SIZE_TRAIN"] = list(ours["INPUT.MIN_SIZE_TRAIN"])  # tuple in upstream
    ours["MODEL.NEW_KEY"] = 1
    del ours["SOLVER.MLHEAD_MULTIPLIER"]
    problems = _differences(ours, upstream)
    assert any(p.startswith("MODEL.RANKSEG.TOPK: 5, upstream 0") for p in problems)
    assert any(p.startswith("INPUT.MIN_SIZE_TRAIN: type list, upstream tuple") for p in problems)
    assert any(p.startswith("extra key MODEL.NEW_KEY") for p in problems)
    assert any(p.startswith("missing key SOLVER.MLHEAD_MULTIPLIER") for p in problems)
