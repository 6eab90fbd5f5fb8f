"""Surviving faults: SIGKILL and --resume, unwritable or full OUTPUT_DIR, a disk that fills up during
training, NaN/inf losses, CUDA out-of-memory in inference post-processing."""

from __future__ import annotations

import errno
import io
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import REPO, SYNTHETIC_CONFIG, TINY_MASK2FORMER, tiny_mask2former_cfg
from test_engine import ToyModel, ToyTrainer, _cfg

from mask2former_rankseg.engine import CheckpointError, HookBase, OutputDirError, Trainer
from mask2former_rankseg.engine import defaults as engine_defaults
from mask2former_rankseg.utils import file_io
from mask2former_rankseg.utils.memory import retry_if_cuda_oom, to_cpu

# --------------------------------------------------------------------------------------------------
# SIGKILL mid-run, then --resume
# --------------------------------------------------------------------------------------------------
KILL_MAX_ITER, KILL_PERIOD = 12, 4


def _train_net(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, str(REPO / "train_net.py"), "--config-file", str(SYNTHETIC_CONFIG), *extra,
           *TINY_MASK2FORMER, "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(KILL_MAX_ITER),
           "SOLVER.CHECKPOINT_PERIOD", str(KILL_PERIOD), "DATASETS.TEST", "()", "SEED", "1", "OUTPUT_DIR", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every run: bitwise-equal results
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output[-4000:]
    return output


def _stream_restarts(log: str):
    return [line.split("] ", 1)[1] for line in log.splitlines() if "Training data stream (re)started" in line]


@pytest.mark.slow
def test_sigkill_then_resume_continues_exactly_like_an_uninterrupted_run(dataset_root, tmp_path):
    full = _train_net(tmp_path / "full")
    killed = _train_net(tmp_path / "killed")
    pointer = tmp_path / "killed" / "last_checkpoint"
    deadline = time.monotonic() + 600
    while not (pointer.is_file() and pointer.read_text() == "model_0000007.pth"):  # iterations 0-7 done
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0][-4000:]
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)  # somewhere in iteration 8 or 9: mid-run, between checkpoints
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model_final.pth").exists()

    _finish(_train_net(tmp_path / "killed", "--resume"))
    _finish(full)
    a = torch.load(tmp_path / "full" / "model_final.pth", weights_only=True)
    b = torch.load(tmp_path / "killed" / "model_final.pth", weights_only=True)
    assert a["iteration"] == b["iteration"] == KILL_MAX_ITER - 1
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]  # learning rates included
    for p, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][p][name])), (p, name)
    assert a["scheduler"] == b["scheduler"]
    assert a["data_seed"] == b["data_seed"]

    log_full = (tmp_path / "full" / "log.txt").read_text()
    log_killed = (tmp_path / "killed" / "log.txt").read_text()  # both runs of that folder append to it
    assert log_killed.count("Resuming from iteration 8") == 1
    resumed_part = log_killed.split("Resuming from iteration 8", 1)[1]
    # the same data order: the stream restarts at iteration 8 with the seed of the uninterrupted run (and the
    # one at 4 that preceded the kill matches too); no batch is replayed
    restarts = _stream_restarts(log_full)
    assert len(restarts) == 2 and "at iteration 4 " in restarts[0] and "at iteration 8 " in restarts[1]
    assert _stream_restarts(resumed_part) == restarts[1:]
    assert _stream_restarts(log_killed.split("Resuming from iteration 8", 1)[0])[0] == restarts[0]
    assert "Replaying" not in log_killed


# --------------------------------------------------------------------------------------------------
# OUTPUT_DIR checks before training, a full disk during training
# --------------------------------------------------------------------------------------------------
def test_unwritable_output_dir_is_a_clear_error_before_anything_runs(tmp_path, capsys):
    import train_net

    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = train_net.cli(["--config-file", str(SYNTHETIC_CONFIG), "OUTPUT_DIR", str(blocker / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"OUTPUT_DIR {str(blocker / 'out')!r} is not writable" in err and "Not a directory" in err


def test_output_dir_write_failure_names_the_folder(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(engine_defaults.tempfile, "NamedTemporaryFile", refuse)
    with pytest.raises(OutputDirError, match=r"is not writable: Permission denied\. Set OUTPUT_DIR to a folder"):
        engine_defaults.check_output_dir(tmp_path)


def test_full_disk_at_start_stops_before_training(tmp_path, monkeypatch):
    free = {"bytes": 1000}
    monkeypatch.setattr(engine_defaults.shutil, "disk_usage",
                        lambda path: SimpleNamespace(total=10**12, used=10**12 - free["bytes"], free=free["bytes"]))
    with pytest.raises(OutputDirError, match=r"has 1000 B free on its file system, .* takes about 1\.0 MiB"):
        ToyTrainer(_cfg(tmp_path, max_iter=2))
    assert not (tmp_path / "last_checkpoint").exists()

    free["bytes"] = 10**9
    trainer = ToyTrainer(_cfg(tmp_path, max_iter=2))
    estimate = trainer.checkpointer.estimated_size_bytes()
    trainer.train()  # with room it trains
    size = (tmp_path / "model_final.pth").stat().st_size
    assert size <= estimate <= size + 2**20  # an upper bound that is not far off


class _FullDiskFile(io.RawIOBase):
    """A raw file that accepts ``budget`` bytes, then fails like a full disk."""

    def __init__(self, fd: int, budget: int):
        self._file = io.FileIO(fd, "wb", closefd=True)
        self._budget = budget

    def writable(self):
        return True

    def write(self, data):
        if len(data) > self._budget:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._budget -= len(data)
        return self._file.write(data)

    def fileno(self):
        return self._file.fileno()

    def close(self):
        self._file.close()
        super().close()


class _FillDisk(HookBase):
    """From iteration ``at`` on, files opened by atomic_write fail after 1000 bytes with ENOSPC."""

    def __init__(self, at: int, monkeypatch):
        self.at, self.monkeypatch = at, monkeypatch

    def before_step(self):
        if self.trainer.iter == self.at:
            self.monkeypatch.setattr(file_io.os, "fdopen", _full_disk_fdopen)


def _full_disk_fdopen(fd, mode="wb", **kwargs):
    binary = io.BufferedWriter(_FullDiskFile(fd, 1000))
    return binary if "b" in mode else io.TextIOWrapper(binary, encoding=kwargs.get("encoding", "utf-8"))


def test_checkpoint_failing_on_a_full_disk_keeps_the_previous_one(tmp_path, monkeypatch):
    trainer = ToyTrainer(_cfg(tmp_path, max_iter=6, **{"SOLVER.CHECKPOINT_PERIOD": 2}))
    trainer.register_hooks([_FillDisk(2, monkeypatch)])
    with pytest.raises(CheckpointError) as info:
        trainer.train()
    message = str(info.value)
    assert "Could not write checkpoint" in message and "model_0000003.pth" in message
    assert "No space left on device" in message
    assert "still points at the previous checkpoint model_0000001.pth, which is intact" in message
    assert "--resume" in message
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".pth", ".tmp") or p.name == "last_checkpoint"
                  ) == ["last_checkpoint", "model_0000001.pth"]  # no partial file, no temporary file left
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    resumed = ToyTrainer(_cfg(tmp_path, max_iter=6, **{"SOLVER.CHECKPOINT_PERIOD": 2}))
    resumed.resume_or_load(resume=True)  # the previous checkpoint is readable and complete
    assert resumed.start_iter == 2


def test_atomic_write_fsyncs_file_and_directory_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(file_io.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(file_io.os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b))[1])
    file_io.atomic_write(tmp_path / "x.bin", lambda f: f.write(b"data"))
    assert events == ["fsync", "rename", "fsync"]  # file contents, rename, directory entry
    assert (tmp_path / "x.bin").read_bytes() == b"data"
    assert oct((tmp_path / "x.bin").stat().st_mode & 0o777) == "0o644"


# --------------------------------------------------------------------------------------------------
# non-finite losses
# --------------------------------------------------------------------------------------------------
class _InfModel(ToyModel):
    def forward(self, batch):
        losses = super().forward(batch)
        if self.training and self.calls == 2:  # the second iteration (index 1)
            losses["loss_aux"] = losses["loss_aux"] + float("inf")
        return losses


class _InfTrainer(ToyTrainer):
    @classmethod
    def build_model(cls, cfg):
        return _InfModel()


def test_inf_loss_stops_with_the_iteration_and_every_loss_term(tmp_path):
    with pytest.raises(FloatingPointError, match=r"at iteration 1: loss_aux=inf, loss_x=[0-9.]+\. Training stopped"):
        _InfTrainer(_cfg(tmp_path, max_iter=4)).train()


# --------------------------------------------------------------------------------------------------
# CUDA out-of-memory in inference post-processing
# --------------------------------------------------------------------------------------------------
class _Flaky:
    """Raises CUDA OOM on its first ``failures`` calls, then returns ``a * 2 + b`` (and records its calls)."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = []

    def __call__(self, a, b=0):
        self.calls.append((a, b))
        if len(self.calls) <= self.failures:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return a * 2 + b


def test_retry_if_cuda_oom_retries_after_emptying_the_cache(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    flaky = _Flaky(failures=1)
    x = torch.arange(3.0)
    assert torch.equal(retry_if_cuda_oom(flaky)(x, b=1), torch.tensor([1.0, 3.0, 5.0]))
    assert len(flaky.calls) == 2 and emptied == [True]
    assert flaky.calls[1][0] is x  # the retry runs on the same inputs


def test_retry_if_cuda_oom_falls_back_to_the_cpu_after_a_second_failure(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    flaky = _Flaky(failures=2)
    with caplog.at_level(logging.INFO, logger="mask2former_rankseg"):
        assert torch.equal(retry_if_cuda_oom(flaky)(torch.ones(2), b=torch.ones(2)), torch.full((2,), 3.0))
    assert len(flaky.calls) == 3 and "running it on the CPU" in caplog.text
    with pytest.raises(torch.cuda.OutOfMemoryError):  # a third failure is not hidden
        retry_if_cuda_oom(_Flaky(failures=3))(torch.ones(1))

    def broken(a):
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError, match="not a memory problem"):
        retry_if_cuda_oom(broken)(torch.ones(1))


def test_to_cpu_keeps_structure_and_cpu_tensors():
    a, b = torch.ones(1), torch.zeros(2)
    out = to_cpu({"x": [a, (b, 3)], "y": "text"})
    assert out == {"x": [a, (b, 3)], "y": "text"} and out["x"][0] is a and out["x"][1][0] is b


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_retry_if_cuda_oom_moves_cuda_inputs_to_the_cpu():
    seen = []

    def gpu_hungry(x):
        seen.append(x.device.type)
        if x.is_cuda:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return x + 1

    out = retry_if_cuda_oom(gpu_hungry)(torch.zeros(2, device="cuda"))
    assert seen == ["cuda", "cuda", "cpu"] and out.device.type == "cpu" and torch.equal(out, torch.ones(2))


def test_maskformer_post_processing_survives_cuda_oom(dataset_root, tmp_path, monkeypatch):
    """Semantic inference raising CUDA OOM (twice: cache emptied, then CPU) still gives the same output."""
    from mask2former_rankseg.data import build_detection_test_loader
    from mask2former_rankseg.modeling.meta_arch import maskformer

    cfg = tiny_mask2former_cfg(tmp_path)
    model = Trainer.build_model(cfg).eval()
    batch = next(iter(build_detection_test_loader(cfg, "synthetic_sem_seg_val")))
    with torch.no_grad():
        expected = model(batch)[0]["sem_seg"]
    real = maskformer.semantic_inference
    failures = []

    def out_of_memory_twice(*args):
        if len(failures) < 2:
            failures.append(True)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return real(*args)

    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(maskformer, "semantic_inference", out_of_memory_twice)
    with torch.no_grad():
        got = model(batch)[0]["sem_seg"]
    assert len(failures) == 2 and torch.equal(got, expected)
