"""Checkpointer: atomic round trips, official .pkl loading with suffix matching, unsafe pickles, key reports."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mask2former_rankseg.engine import Checkpointer, CheckpointError


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.res2 = nn.Sequential(nn.Conv2d(3, 4, 3))
        self.head = nn.Linear(4, 2)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/m2f_rankseg_pwned",))


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.head(torch.randn(2, 4)).sum().backward()
    opt.step()
    ckpt = Checkpointer(model, str(tmp_path), optimizer=opt)
    path = ckpt.save("model_0000001", iteration=1)
    assert path.is_file() and (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left

    other = Tiny()
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    data = Checkpointer(other, str(tmp_path), optimizer=other_opt).resume_or_load("", resume=True)
    assert data["iteration"] == 1 and not data["incompatible"]
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert other_opt.state_dict()["state"][2]["momentum_buffer"].equal(opt.state_dict()["state"][2]["momentum_buffer"])


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = Tiny()
    ckpt = Checkpointer(model, str(tmp_path))
    ckpt.save("model_final")
    before = (tmp_path / "model_final.pth").read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_final")
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_pkl_with_suffix_matching_and_report(tmp_path, caplog):
    model = Tiny()
    weights = {
        "res2.0.weight": np.full((4, 3, 3, 3), 0.5, dtype=np.float32),
        "res2.0.bias": np.arange(4, dtype=np.float32),
        "head.weight": np.zeros((3, 4), dtype=np.float32),  # mis-shaped
        "unused.weight": np.zeros(1, dtype=np.float32),
    }
    path = tmp_path / "official.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "test", "matching_heuristics": True}, f)
    data = Checkpointer(model).load(str(path))
    assert torch.all(model.backbone.res2[0].weight == 0.5)
    assert model.backbone.res2[0].bias.tolist() == [0, 1, 2, 3]
    inc = data["incompatible"]
    assert inc.unexpected == ["unused.weight"]
    assert inc.shape_mismatch == [("head.weight", (3, 4), (2, 4))]
    assert inc.missing == ["head.bias"]
    assert "head.weight" in inc.report()
    with pytest.raises(CheckpointError, match="unused.weight"):
        Checkpointer(Tiny()).load(str(path), strict=True)


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"x": Evil()}}, f)
    Path("/tmp/m2f_rankseg_pwned").unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="system"):
        Checkpointer(Tiny()).load(str(path))
    assert not Path("/tmp/m2f_rankseg_pwned").exists()
    pth = tmp_path / "evil.pth"
    torch.save({"model": {"x": Evil()}}, pth)
    with pytest.raises(CheckpointError, match="refused"):
        Checkpointer(Tiny()).load(str(pth))
    assert not Path("/tmp/m2f_rankseg_pwned").exists()


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(Tiny()).load(str(tmp_path / "nope.pth"))
