"""Checkpointer: bitwise round trips, atomic saves, official .pkl loading with suffix matching, pretrained
backbone files under ``backbone.``, .safetensors files, refusal of pickles that carry code, reports of missing /
unexpected / mis-shaped keys."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from mask2former_rankseg.engine import Checkpointer, CheckpointError, build_lr_scheduler
from mask2former_rankseg.engine.checkpoint import align_by_suffix
from mask2former_rankseg.modeling.backbone import Backbone

PWNED = Path("/tmp/m2f_rankseg_checkpoint_test_pwned")


class Tiny(nn.Module):
    """Names like detectron2's: ``backbone.res2.0.conv1.weight``, ``sem_seg_head...``, a config buffer."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.res2 = nn.Sequential(nn.Module())
        self.backbone.res2[0].conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.backbone.res2[0].norm = nn.BatchNorm2d(4)
        self.sem_seg_head = nn.Module()
        self.sem_seg_head.norm = nn.LayerNorm(4)
        self.sem_seg_head.predictor = nn.Linear(4, 2)
        self.register_buffer("pixel_mean", torch.zeros(3, 1, 1))


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {PWNED}",))


def _trained(seed=0):
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    out = model.sem_seg_head.predictor(model.sem_seg_head.norm(model.backbone.res2[0].conv1(
        torch.randn(2, 3, 5, 5)).mean((2, 3))))
    out.sum().backward()
    opt.step()
    return model, opt


def test_save_load_round_trip_is_bitwise(tmp_path):
    model, opt = _trained()
    ckpt = Checkpointer(model, str(tmp_path), optimizer=opt)
    rng = torch.get_rng_state()
    path = ckpt.save("model_0000001", iteration=1, rng={"torch": rng})
    assert path == tmp_path / "model_0000001.pth"
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000001.pth"]  # no temp file

    other, other_opt = _trained(seed=1)
    data = Checkpointer(other, str(tmp_path), optimizer=other_opt).resume_or_load("", resume=True)
    assert data["iteration"] == 1 and not data["incompatible"]
    assert torch.equal(data["rng"]["torch"], rng)
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), k
    for k, state in opt.state_dict()["state"].items():
        assert torch.equal(state["momentum_buffer"], other_opt.state_dict()["state"][k]["momentum_buffer"])

    # resume=False: weights only from the given path, the optimizer is left alone
    third, third_opt = _trained(seed=2)
    before = {k: v["momentum_buffer"].clone() for k, v in third_opt.state_dict()["state"].items()}
    Checkpointer(third, str(tmp_path), optimizer=third_opt).resume_or_load(str(path), resume=False)
    assert torch.equal(third.sem_seg_head.predictor.weight, model.sem_seg_head.predictor.weight)
    assert all(torch.equal(before[k], v["momentum_buffer"]) for k, v in third_opt.state_dict()["state"].items())


def test_scheduler_state_round_trip(tmp_path):
    from mask2former_rankseg.config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_list(["SOLVER.MAX_ITER", 10, "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR", "SOLVER.WARMUP_ITERS", 2])
    model, opt = _trained()
    sched = build_lr_scheduler(cfg, opt)
    for _ in range(4):
        opt.step()
        sched.step()
    Checkpointer(model, str(tmp_path), optimizer=opt, scheduler=sched).save("m")
    model2, opt2 = _trained(seed=1)
    sched2 = build_lr_scheduler(cfg, opt2)
    Checkpointer(model2, str(tmp_path), optimizer=opt2, scheduler=sched2).load(str(tmp_path / "m.pth"))
    assert sched2.last_epoch == 4 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    opt.step(), sched.step(), opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt = Checkpointer(Tiny(), str(tmp_path))
    ckpt.save("model_final")
    before = (tmp_path / "model_final.pth").read_bytes()

    def broken_save(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_final")
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]


def _official_pkl(path, protocol=pickle.HIGHEST_PROTOCOL):
    weights = {
        "res2.0.conv1.weight": np.full((4, 3, 3, 3), 0.5, dtype=np.float32),
        "res2.0.norm.weight": np.arange(4, dtype=np.float32),
        "res2.0.norm.running_var": np.full(4, 2.0, dtype=np.float32),
        "sem_seg_head.predictor.weight": np.zeros((3, 4), dtype=np.float32),  # 3 classes: mis-shaped
        "fc.weight": np.zeros((10, 4), dtype=np.float32),  # ImageNet classifier: unexpected
    }
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "torchvision", "matching_heuristics": True}, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_official_pkl_loads_with_suffix_matching_and_reports_keys(tmp_path, protocol, caplog):
    path = tmp_path / "R-50.pkl"
    _official_pkl(path, protocol)
    model = Tiny()
    with caplog.at_level("INFO"):
        data = Checkpointer(model).load(str(path))
    block = model.backbone.res2[0]
    assert torch.all(block.conv1.weight == 0.5)
    assert block.norm.weight.tolist() == [0, 1, 2, 3] and block.norm.running_var.tolist() == [2, 2, 2, 2]
    inc = data["incompatible"]
    assert data["__author__"] == "torchvision"
    assert inc.unexpected == ["fc.weight"]
    assert inc.shape_mismatch == [("sem_seg_head.predictor.weight", (3, 4), (2, 4))]
    # pixel_mean (set from the config) and num_batches_tracked are not reported, as in detectron2
    assert sorted(inc.missing) == ["backbone.res2.0.norm.bias", "backbone.res2.0.norm.running_mean",
                                   "sem_seg_head.norm.bias", "sem_seg_head.norm.weight",
                                   "sem_seg_head.predictor.bias"]
    report = caplog.text
    assert "backbone.res2.0.norm.{bias, running_mean}" in report and "fc.weight" in report
    assert "5 missing (kept as initialised), 1 unexpected (ignored), 1 shape mismatches (skipped)" in report
    row = next(line for line in report.splitlines() if line.startswith("shape mismatch"))
    assert row.split()[2:] == ["sem_seg_head.predictor.weight", "(3,", "4)", "(2,", "4)"]
    # the heuristic says what it did: which prefix it added to how many keys
    assert "Matched 3 of 5 keys" in report and "'backbone.': 3" in report

    with pytest.raises(CheckpointError) as err:
        Checkpointer(Tiny()).load(str(path), strict=True)
    assert all(s in str(err.value) for s in ("fc.weight", "sem_seg_head.predictor.weight", "sem_seg_head.norm"))


def test_exact_names_and_ddp_prefix_without_heuristics(tmp_path):
    model, _ = _trained()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "ddp.pth")
    other = Tiny()
    inc = Checkpointer(other).load(str(tmp_path / "ddp.pth"))["incompatible"]
    assert inc.unexpected == ["extra.weight"] and not inc.missing and not inc.shape_mismatch
    assert torch.equal(other.backbone.res2[0].conv1.weight, model.backbone.res2[0].conv1.weight)
    # names are not suffix-matched unless the file asks for it
    torch.save({"model": {"res2.0.conv1.weight": torch.ones(4, 3, 3, 3)}}, tmp_path / "short.pth")
    inc = Checkpointer(Tiny()).load(str(tmp_path / "short.pth"))["incompatible"]
    assert inc.unexpected == ["res2.0.conv1.weight"]


def test_numpy_arrays_inside_pth_load(tmp_path):
    torch.save({"model": {"sem_seg_head.predictor.bias": np.array([1.0, 2.0], dtype=np.float32)}}, tmp_path / "n.pth")
    model = Tiny()
    Checkpointer(model).load(str(tmp_path / "n.pth"))
    assert model.sem_seg_head.predictor.bias.tolist() == [1.0, 2.0]


def test_suffix_alignment_prefers_the_same_shape_and_refuses_ambiguity():
    model = {"a.norm.weight": (4,), "b.norm.weight": (8,), "c.conv.weight": (2,)}
    mapping, mismatched = align_by_suffix(model, {"norm.weight": (8,), "conv.weight": (3,)})
    assert mapping == {"norm.weight": "b.norm.weight"}
    assert mismatched == [("conv.weight", "c.conv.weight")]
    with pytest.raises(CheckpointError, match="a.norm.weight, b.norm.weight"):
        align_by_suffix({"a.norm.weight": (4,), "b.norm.weight": (4,)}, {"norm.weight": (4,)})


def test_pickle_with_code_is_refused_without_running_it(tmp_path):
    PWNED.unlink(missing_ok=True)
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"x": Evil()}, "__author__": "x"}, f)
    with pytest.raises(CheckpointError, match=r"(posix|os)\.system"):
        Checkpointer(Tiny()).load(str(path))
    pth = tmp_path / "evil.pth"
    torch.save({"model": {"x": Evil()}}, pth)
    with pytest.raises(CheckpointError, match=r"\((posix|os)\.system\); it is refused"):
        Checkpointer(Tiny()).load(str(pth))
    assert not PWNED.exists()


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        Checkpointer(Tiny()).load(str(tmp_path / "nope.pth"))
    c2 = tmp_path / "MSRA-R-50.pkl"
    with open(c2, "wb") as f:
        pickle.dump({"res2_0_branch2a_w": np.zeros(1), "conv1_w": np.zeros(1)}, f)
    with pytest.raises(CheckpointError, match="Caffe2"):
        Checkpointer(Tiny()).load(str(c2))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        Checkpointer(Tiny()).load(str(junk))
    (tmp_path / "last_checkpoint").write_text("model_gone.pth")
    with pytest.raises(CheckpointError, match="model_gone.pth"):
        Checkpointer(Tiny(), str(tmp_path)).resume_or_load("", resume=True)


def test_optimizer_state_of_another_model_is_a_clear_error(tmp_path):
    model, opt = _trained()
    Checkpointer(model, str(tmp_path), optimizer=opt).save("m")
    other = nn.Linear(2, 2)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="Cannot restore optimizer"):
        Checkpointer(other, str(tmp_path), optimizer=other_opt).load(str(tmp_path / "m.pth"))


def test_unreachable_url_is_a_clear_error(monkeypatch):
    import urllib.error

    from mask2former_rankseg.engine.checkpoint import urls as ckpt_urls

    class Offline:
        def get_local_path(self, url):
            raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(ckpt_urls, "_path_manager", lambda: Offline())
    with pytest.raises(CheckpointError, match="Cannot download checkpoint https://.*MODEL.WEIGHTS"):
        Checkpointer(Tiny()).load("detectron2://ImageNetPretrained/torchvision/R-50.pkl")


def test_urls_are_resolved_and_cached_through_the_path_manager(tmp_path, monkeypatch):
    """detectron2:// names map to detectron2's model zoo; the download goes through iopath's cache once per
    URL; ``?matching_heuristics=True`` turns suffix matching on for files that do not ask for it."""
    from mask2former_rankseg.engine.checkpoint import urls as ckpt_urls

    _official_pkl(tmp_path / "R-50.pkl")
    torch.save({"model": {"res2.0.conv1.weight": torch.full((4, 3, 3, 3), 2.0)}}, tmp_path / "plain.pth")
    fetched = []

    class Cache:  # stands in for iopath's HTTPURLHandler: URL -> a local file in its cache
        def get_local_path(self, url):
            fetched.append(url)
            return str(tmp_path / Path(url).name)

    monkeypatch.setattr(ckpt_urls, "_path_manager", lambda: Cache())
    model = Tiny()
    Checkpointer(model).load("detectron2://ImageNetPretrained/torchvision/R-50.pkl")
    assert fetched == ["https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/torchvision/R-50.pkl"]
    assert torch.all(model.backbone.res2[0].conv1.weight == 0.5)
    Checkpointer(model).load("https://example.com/weights/plain.pth?matching_heuristics=True")
    assert fetched[-1] == "https://example.com/weights/plain.pth"  # the query is ours, not the server's
    assert torch.all(model.backbone.res2[0].conv1.weight == 2.0)
    with pytest.raises(ValueError, match="Unsupported query"):
        Checkpointer(model).load("https://example.com/weights/plain.pth?token=1")


class _TinyBackbone(Backbone):
    """A Backbone whose ``adapt_state_dict`` renames an old layout (``old_conv.*`` -> ``conv.*``)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return {"res2": self.conv(x)}

    def adapt_state_dict(self, state):
        return {k.replace("old_conv.", "conv."): v for k, v in state.items()}


class _WithTinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = _TinyBackbone()
        self.head = nn.Linear(4, 2)


def test_pretrained_backbone_file_loads_under_backbone_through_its_adaptation(tmp_path, caplog):
    """A file naming no model tensor but the backbone's own (after ``adapt_state_dict``) loads under
    ``backbone.``; its other keys are reported unexpected, never matched elsewhere."""
    torch.save({"old_conv.weight": torch.full((4, 3, 1, 1), 3.0), "conv.bias": torch.ones(4),
                "fc.weight": torch.zeros(10, 4)}, tmp_path / "pretrained.pth")
    model = _WithTinyBackbone()
    with caplog.at_level("INFO"):
        inc = Checkpointer(model).load(str(tmp_path / "pretrained.pth"))["incompatible"]
    assert torch.all(model.backbone.conv.weight == 3.0) and torch.all(model.backbone.conv.bias == 1.0)
    assert inc.unexpected == ["fc.weight"] and sorted(inc.missing) == ["head.bias", "head.weight"]
    assert "2 of its 3 keys name tensors of the backbone (_TinyBackbone)" in caplog.text

    # a whole-model file: its backbone.* part goes through the same adaptation
    torch.save({"model": {"backbone.old_conv.weight": torch.full((4, 3, 1, 1), 5.0), "head.bias": torch.ones(2)}},
               tmp_path / "model.pth")
    inc = Checkpointer(model).load(str(tmp_path / "model.pth"))["incompatible"]
    assert torch.all(model.backbone.conv.weight == 5.0) and torch.all(model.head.bias == 1.0)
    assert not inc.unexpected and sorted(inc.missing) == ["backbone.conv.bias", "head.weight"]


def test_safetensors_files_load(tmp_path):
    from safetensors.torch import save_file

    save_file({"conv.weight": torch.full((4, 3, 1, 1), 7.0)}, str(tmp_path / "w.safetensors"))
    model = _WithTinyBackbone()
    Checkpointer(model).load(str(tmp_path / "w.safetensors"))
    assert torch.all(model.backbone.conv.weight == 7.0)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.safetensors is not a readable .safetensors file"):
        Checkpointer(model).load(str(tmp_path / "junk.safetensors"))
