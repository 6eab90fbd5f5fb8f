"""Defaults parity: our get_cfg() has exactly upstream's config keys, default values and value types.

``tests/data/upstream_config_defaults.json`` lists every key upstream defines (detectron2's defaults,
DeepLab's, RankSeg's Mask2Former config with the RankSeg keys, and the video config), recorded from upstream's
own config functions; its ``provenance`` field names the commits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from fvcore.common.config import CfgNode

from mask2former_rankseg.config import get_cfg

DATA = Path(__file__).resolve().parent / "data" / "upstream_config_defaults.json"

# Keys we add beyond upstream's (each documented in README), with their defaults.
OUR_KEYS = {
    "MODEL.MASK_FORMER.TEST.WINDOW_SIZE": 32,  # VideoMaskFormer: frames per backbone pass at inference
}


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
    upstream = json.loads(DATA.read_text())["keys"]
    ours = _flatten(get_cfg())
    assert len(upstream) == 277
    for key, value in OUR_KEYS.items():
        assert ours.pop(key) == value, key
    problems = _differences(ours, upstream)
    assert not problems, f"{len(problems)} differences from upstream's defaults:\n" + "\n".join(problems)


def test_the_comparison_catches_differences():
    upstream = json.loads(DATA.read_text())["keys"]
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
