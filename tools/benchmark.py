#!/usr/bin/env python3
"""Speed and memory benchmarks: printed tables and JSON.

    python tools/benchmark.py msda                      # deformable attention, every backend on this machine
    python tools/benchmark.py msda --device cuda --dtypes float32 bfloat16 --sizes 512 1024
    python tools/benchmark.py msda --compile            # the same, each call inside torch.compile
    python tools/benchmark.py ade20k-full               # 847-class inference memory/time, RankSeg on and off
    python tools/benchmark.py semantic-post             # post-processing after the decoder, before/after
    python tools/benchmark.py precision --model         # fp32 vs bf16 (+ channels_last): backbone and model
    python tools/benchmark.py fast-path                 # fp32 vs bf16: R50 inference and training step
    python tools/benchmark.py fast-path --modes fp32 bf16 fp32+compile bf16+compile --models rankseg
    python tools/benchmark.py agreement output/synthetic_rankseg  # fp32 vs bf16 predictions of a trained run

    python tools/benchmark.py video --frames 24 --windows 0 8  # VideoMaskFormer inference memory vs window

``msda`` times multi-scale deformable attention at the shapes a Mask2Former pixel decoder sees for a
square input of each ``--sizes`` (levels at strides 8/16/32, every position a query, 8 heads, 4 points,
dim 256; each query samples a few pixels around its own position): forward alone (no autograd) and
forward + backward (gradients for value, locations and weights), median over ``--repeats`` after
``--warmup`` runs (``--compile``: the call wrapped in ``torch.compile``; the warmup includes compiling; the
kernels are the registered operator either way, so this measures what compilation does around it, and for the
reference backend inductor's fusion of the PyTorch path). Each case runs in a fresh process so its
peak memory is its own: on CUDA the peak allocated beyond the inputs, on CPU the growth of the peak
resident set beyond the inputs.

``video`` runs VideoMaskFormer inference (random weights) on one random video of ``--frames`` frames of
``--size`` pixels for each ``--windows`` value (MODEL.MASK_FORMER.TEST.WINDOW_SIZE; 0 = all frames in one
backbone pass), each in a fresh process: wall time of one run and peak memory beyond the model and the frames.

``semantic-post`` times MaskFormer's semantic post-processing alone (random decoder outputs of the ADE20K-Full
model: 100 queries, 847 classes, masks at 1/4 of the padded input), as it ran before (commit 3c7608e: masks
upsampled to the padded size, scores for every class, crop + resize) and as it runs now (the crop upsampled only,
no same-size resize, one score map per group of equal classes), with RankSeg off/on and both semantic outputs
("scores" + argmax, "labels"); median of ``--repeats``, before and after interleaved (both see the same load),
and the peak of live tensor bytes as ``ade20k-full``.

``precision`` times the ResNet backbone (``--depths``) of upstream's ADE20K Mask2Former config on one random
``--size`` image in float32 and under bfloat16 autocast, with NCHW or channels_last weights and input
(``--modes``), and with ``--model`` the whole model's inference the same way; one process per depth, the modes
interleaved per repeat (every mode sees the same machine load).

``fast-path`` times upstream's ADE20K-150 R50 Mask2Former (``--models``: baseline, RankSeg; random weights) in
each ``--modes`` (MODEL.PRECISION fp32 or bf16, eager or ``torch.compile``d): inference of one ``--size`` image
(post-processing included) and a training step on ``--batch`` images with random ground truth (forward with the
losses, backward, the config's optimizer step). One process per model; every mode's copy starts from the same
weights; modes interleaved per repeat. ``runs_in`` says what bf16 resolved to on this machine (the fallback).

``agreement`` runs a trained semantic model (a training run's directory) over its test set in fp32 and in bf16
(same weights) and reports the argmax agreement over all pixels and over labelled pixels (those the ground truth
does not mark ignore) and both mIoUs.

``ade20k-full`` runs Mask2Former R50 (upstream's ADE20K semantic config with 847 classes, random weights) on
one ``--size`` x ``--size`` image, with RankSeg off and on (``--topk``), through the semantic path as it was
("scores": ``sem_seg`` [K, H, W], then the evaluator's argmax) and as evaluation now runs it ("labels":
``sem_seg_labels`` straight from ``postprocess.semantic_labels``). Each case runs in a fresh process. Peak
memory is the peak of live tensor bytes during one forward (+ argmax) above those live at its start: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the running total of the CPU allocator's allocations and frees
recorded by ``torch.profiler`` (``profile_memory=True``). (Peak RSS would also count the allocator's cached
pages and the model build; tracemalloc does not see tensor storage at all.) Time: median of ``--repeats``
forwards after ``--warmup``, without the profiler.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from mask2former_rankseg.config import get_cfg
from mask2former_rankseg.constants import SUPPRESSED_LOGIT
from mask2former_rankseg.engine import Checkpointer, Trainer
from mask2former_rankseg.evaluation import semantic_output
from mask2former_rankseg.modeling import build_model
from mask2former_rankseg.modeling.meta_arch.maskformer import MaskFormer
from mask2former_rankseg.modeling.meta_arch.postprocess import semantic_labels
from mask2former_rankseg.modeling.rankseg import scatter_back
from mask2former_rankseg.ops import available_backend, ms_deform_attn
from mask2former_rankseg.structures import Instances, sem_seg_postprocess
from mask2former_rankseg.utils.precision import (
    cpu_bf16_flags,
    precision_context,
    prepare_model_for_precision,
    resolve_precision,
)

logger = logging.getLogger("benchmark")

MSDA_STRIDES = (8, 16, 32)
MSDA_HEADS = 8
MSDA_POINTS = 4
MSDA_DIM = 256


def msda_inputs(size: int, batch: int, dtype: torch.dtype, device: str, seed: int = 0):
    """Inputs of ``ms_deform_attn`` for a ``size`` x ``size`` image: (value, shapes, starts, locations, weights)."""
    g = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[-(-size // s), -(-size // s)] for s in MSDA_STRIDES], dtype=torch.long)
    sizes = (shapes[:, 0] * shapes[:, 1]).tolist()
    starts = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype=torch.long)
    positions = sum(sizes)
    head_dim = MSDA_DIM // MSDA_HEADS
    levels = len(MSDA_STRIDES)
    value = torch.randn(batch, positions, MSDA_HEADS, head_dim, generator=g)
    # Queries are all positions (the encoder's self-attention). As in the model, each samples around its own
    # reference point (its pixel centre, normalised) with offsets of a few pixels of every level.
    centres = []
    for h, w in shapes.tolist():
        ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        centres.append(torch.stack([xs.flatten(), ys.flatten()], -1))
    reference = torch.cat(centres)[None, :, None, None, None, :]  # [1, S, 1, 1, 1, 2]
    pixel = 1.0 / shapes.flip(-1).float()[None, None, None, :, None, :]  # (1/W_l, 1/H_l)
    offsets = torch.randn(batch, positions, MSDA_HEADS, levels, MSDA_POINTS, 2, generator=g) * 2.0
    locations = reference + offsets * pixel
    weights = torch.rand(batch, positions, MSDA_HEADS, levels * MSDA_POINTS, generator=g).softmax(-1)
    weights = weights.view(batch, positions, MSDA_HEADS, levels, MSDA_POINTS)
    value = value.to(device=device, dtype=dtype)
    locations = locations.to(device=device, dtype=dtype)
    weights = weights.to(device=device, dtype=dtype)
    return value, shapes.to(device), starts.to(device), locations, weights


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_seconds(fn: Callable[[], None], device: str, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    _synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _memory_mark(device: str) -> float:
    """Start a peak-memory measurement: on CUDA the allocated bytes (peak reset), on CPU the peak RSS (MiB)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    return _peak_rss_mib()


def _memory_peak(device: str, mark: float) -> float:
    """MiB of peak memory beyond ``mark`` (see :func:`_memory_mark`)."""
    _synchronize(device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else _peak_rss_mib()
    return peak - mark


def _msda_case(case: Dict) -> Dict:
    """One (backend, size, dtype) measurement; runs in its own process."""
    torch.set_num_threads(case["threads"])
    device = case["device"]
    dtype = getattr(torch, case["dtype"])
    value, shapes, starts, locations, weights = msda_inputs(case["size"], case["batch"], dtype, device)
    grad_output = torch.randn(value.shape[0], locations.shape[1], MSDA_DIM, device=device, dtype=dtype)
    leaves = [t.clone().requires_grad_(True) for t in (value, locations, weights)]

    def attend(v: torch.Tensor, loc: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return ms_deform_attn(v, shapes, starts, loc, w, backend=case["backend"])

    if case.get("compile"):
        attend = torch.compile(attend)

    def forward() -> None:
        with torch.no_grad():
            attend(value, locations, weights)

    def forward_backward() -> None:
        for t in leaves:
            t.grad = None
        out = attend(*leaves)
        out.backward(grad_output)

    cuda = device.startswith("cuda")
    mark = _memory_mark(device)
    forward_backward()  # the peak is taken over one forward + backward
    peak = _memory_peak(device, mark)
    result = dict(case)
    result.update(
        queries=int(locations.shape[1]),
        forward_ms=1e3 * _median_seconds(forward, device, case["warmup"], case["repeats"]),
        forward_backward_ms=1e3 * _median_seconds(forward_backward, device, case["warmup"], case["repeats"]),
        peak_mib=peak,
        peak_kind="allocated beyond inputs" if cuda else "peak RSS growth beyond inputs",
    )
    return result


def _run_isolated(fn: Callable[[Dict], Dict], case: Dict) -> Dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, (case,))


def _format_table(rows: List[Dict], columns: List[str]) -> str:
    cells = [[str(c) for c in columns]] + [
        [f"{r[c]:.1f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_msda(args: argparse.Namespace) -> Dict:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    backends = args.backends or ["reference"] + ([device] if available_backend(device) == device else [])
    dtypes = args.dtypes or (["float32", "bfloat16"] if device.startswith("cuda") else ["float32"])
    threads = args.threads or torch.get_num_threads()
    rows = []
    for size in args.sizes:
        for dtype in dtypes:
            for backend in backends:
                case = dict(backend=backend, size=size, batch=args.batch, dtype=dtype, device=device,
                            threads=threads, warmup=args.warmup, repeats=args.repeats, compile=args.compile)
                logger.info("msda: %s", case)
                rows.append(_run_isolated(_msda_case, case))
    for row in rows:  # speedup of each backend over the reference at the same size and dtype
        ref = next((r for r in rows if r["backend"] == "reference" and r["size"] == row["size"]
                    and r["dtype"] == row["dtype"]), None)
        row["speedup_fwd_bwd"] = ref["forward_backward_ms"] / row["forward_backward_ms"] if ref else float("nan")
    columns = ["backend", "compile", "size", "batch", "dtype", "queries", "forward_ms", "forward_backward_ms",
               "speedup_fwd_bwd", "peak_mib"]
    print(f"Multi-scale deformable attention on {device} ({threads} threads; strides {MSDA_STRIDES}, "
          f"{MSDA_HEADS} heads, {MSDA_POINTS} points, dim {MSDA_DIM}); peak: {rows[0]['peak_kind']}")
    print(_format_table(rows, columns))
    return {"benchmark": "msda", "environment": _environment(device, threads), "results": rows}


def _video_case(case: Dict) -> Dict:
    """One VideoMaskFormer inference on a random video with one window size; runs in its own process."""
    torch.set_num_threads(case["threads"])
    device = case["device"]
    cfg = get_cfg()
    cfg.merge_from_file(case["config"])
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.MASK_FORMER.TEST.WINDOW_SIZE", case["window"]])
    model = build_model(cfg).to(device).eval()
    height, width = case["size"]
    g = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g) for _ in range(case["frames"])]
    video = {"image": frames, "height": height, "width": width, "video_id": 0}
    cuda = device.startswith("cuda")
    mark = _memory_mark(device)
    start = time.perf_counter()
    with torch.no_grad():
        model([video])
    peak = _memory_peak(device, mark)
    seconds = time.perf_counter() - start
    result = dict(case, size=f"{height}x{width}", seconds=seconds, peak_mib=peak,
                  peak_kind="allocated beyond model and frames" if cuda else "peak RSS growth beyond model and frames")
    return result


def run_video(args: argparse.Namespace) -> Dict:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = args.threads or torch.get_num_threads()
    rows = []
    for window in args.windows:
        case = dict(config=str(args.config), frames=args.frames, size=tuple(args.size), window=window, device=device,
                    threads=threads)
        logger.info("video: %s", case)
        rows.append(_run_isolated(_video_case, case))
    print(f"VideoMaskFormer inference on {device} ({threads} threads), {args.config}, {args.frames} frames of "
          f"{rows[0]['size']}; peak: {rows[0]['peak_kind']}")
    print(_format_table(rows, ["window", "frames", "size", "seconds", "peak_mib"]))
    return {"benchmark": "video", "environment": _environment(device, threads), "results": rows}


ADE20K_FULL_CONFIG = (Path(__file__).resolve().parents[1] / "configs" / "ade20k" / "semantic-segmentation"
                      / "maskformer2_R50_bs16_160k.yaml")
ADE20K_FULL_CLASSES = 847


def _ade20k_full_model(rankseg: bool, topk: int, device: str):
    cfg = get_cfg()
    cfg.merge_from_file(str(ADE20K_FULL_CONFIG))
    cfg.merge_from_list(["MODEL.SEM_SEG_HEAD.NUM_CLASSES", ADE20K_FULL_CLASSES, "MODEL.SEM_SEG_HEAD.IGNORE_VALUE",
                         65535, "MODEL.WEIGHTS", "", "MODEL.RANKSEG.FLAG", rankseg, "MODEL.RANKSEG.TOPK", topk,
                         "MODEL.SEM_SEG_HEAD.USE_LAYERNORM", rankseg])
    return build_model(cfg).to(device).eval()


def _cpu_peak_bytes(fn: Callable[[], None]) -> int:
    """Peak of live CPU tensor bytes during ``fn()`` above the level at its start (profiler memory events)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


ADE20K_FULL_QUERIES = 100
MASK_STRIDE = 4  # Mask2Former predicts masks at 1/4 of the input


def _semantic_post_inputs(rankseg: bool, topk: int, padded: tuple, device: str, batch: int = 1):
    """Random decoder outputs of the ADE20K-Full model's shapes: ranked logits [B, Q, k+1] (or [B, Q, K+1]) with
    their ``topk_index`` [B, k+1] ("no object" last), and masks [B, Q, Hpad/4, Wpad/4]."""
    g = torch.Generator().manual_seed(0)
    if rankseg:
        logits = torch.randn(batch, ADE20K_FULL_QUERIES, topk + 1, generator=g)
        topk_index = torch.stack([torch.cat([torch.randperm(ADE20K_FULL_CLASSES, generator=g)[:topk],
                                             torch.tensor([ADE20K_FULL_CLASSES])]) for _ in range(batch)])
        topk_index = topk_index.to(device)
    else:
        logits, topk_index = torch.randn(batch, ADE20K_FULL_QUERIES, ADE20K_FULL_CLASSES + 1, generator=g), None
    low = torch.randn(batch, ADE20K_FULL_QUERIES, padded[0] // MASK_STRIDE, padded[1] // MASK_STRIDE, generator=g)
    return logits.to(device), topk_index, low.to(device)


def _semantic_post_old(logits, topk_index, low, padded, image_size, path: str):
    """The semantic post-processing as MaskFormer._inference ran it before the crop-only path (commit 3c7608e):
    masks upsampled to the padded size, scores over every class, crop + resize (also at the same size)."""
    if topk_index is not None:
        logits = scatter_back(logits, topk_index, ADE20K_FULL_CLASSES, SUPPRESSED_LOGIT)
    masks = F.interpolate(low, size=padded, mode="bilinear", align_corners=False)
    resize = functools.partial(sem_seg_postprocess, img_size=image_size, output_height=image_size[0],
                               output_width=image_size[1])
    for mask_cls, mask_pred in zip(logits, masks):
        if path == "scores":
            probs = F.softmax(mask_cls, dim=-1)[..., :-1]
            resize(torch.einsum("qc,q...->c...", probs, mask_pred.sigmoid())).argmax(0)
        else:
            semantic_labels(mask_cls, mask_pred, resize)


def _semantic_post_new(logits, topk_index, low, padded, image_size, path: str):
    """MaskFormer._inference's semantic post-processing as it runs now (semantic-only config)."""
    model = SimpleNamespace(num_classes=ADE20K_FULL_CLASSES, sem_seg_postprocess_before_inference=False,
                            semantic_on=True, panoptic_on=False, instance_on=False, semantic_output=path)
    images = SimpleNamespace(tensor=low.new_empty((low.shape[0], 0, *padded)), image_sizes=[image_size] * len(low))
    inputs = [{"height": image_size[0], "width": image_size[1]}] * len(low)
    for out in MaskFormer._inference(model, {"pred_logits": logits, "pred_masks": low}, inputs, images, None,
                                     topk_index):
        out["sem_seg"].argmax(0) if path == "scores" else out["sem_seg_labels"]


def _postprocess_step(rankseg: bool, topk: int, size: int, path: str, device: str,
                      impl: Callable = _semantic_post_new) -> Callable[[], None]:
    """The semantic post-processing of MaskFormer._inference alone (semantic-only config, ``impl``), on random
    outputs of the model's shapes: logits (with RankSeg: top-k scattered back, the suppressed logit elsewhere),
    masks [Q, s/4, s/4] upsampled to the input, scores cropped/resized to the output, argmax."""
    logits, topk_index, low = _semantic_post_inputs(rankseg, topk, (size, size), device)
    return functools.partial(impl, logits, topk_index, low, (size, size), (size, size), path)


def _semantic_post_case(case: Dict) -> Dict:
    """Before/after timings of the semantic post-processing for one (RankSeg, path, size); own process."""
    torch.set_num_threads(case["threads"])
    device = case["device"]
    padded, image_size = tuple(case["padded"]), tuple(case["image"])
    inputs = _semantic_post_inputs(case["rankseg"], case["topk"], padded, device)
    result = dict(case, padded=f"{padded[0]}x{padded[1]}", image=f"{image_size[0]}x{image_size[1]}")
    steps = {name: functools.partial(impl, *inputs, padded, image_size, case["path"])
             for name, impl in (("before", _semantic_post_old), ("after", _semantic_post_new))}
    with torch.no_grad():
        times: Dict[str, List[float]] = {name: [] for name in steps}
        for repeat in range(case["warmup"] + case["repeats"]):  # interleaved: both see the same machine load
            for name, step in steps.items():
                _synchronize(device)
                start = time.perf_counter()
                step()
                _synchronize(device)
                if repeat >= case["warmup"]:
                    times[name].append(time.perf_counter() - start)
        for name, step in steps.items():
            result[f"{name}_ms"] = 1e3 * statistics.median(times[name])
            result[f"{name}_peak_mib"] = _peak_mib(step, device)
    result["speedup"] = result["before_ms"] / result["after_ms"]
    return result


def run_semantic_post(args: argparse.Namespace) -> Dict:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = args.threads or torch.get_num_threads()
    rows = []
    for image in args.images:
        padded = [-(-v // 32) * 32 for v in image]
        for rankseg in (False, True):
            for path in ("scores", "labels"):
                case = dict(rankseg=rankseg, topk=args.topk if rankseg else 0, path=path, padded=padded,
                            image=image, device=device, threads=threads, warmup=args.warmup, repeats=args.repeats)
                logger.info("semantic-post: %s", case)
                rows.append(_run_isolated(_semantic_post_case, case))
    print(f"Semantic post-processing (MaskFormer._inference), {ADE20K_FULL_CLASSES} classes, {ADE20K_FULL_QUERIES} "
          f"queries, on {device} ({threads} threads), median of {args.repeats}; before = commit 3c7608e's formula")
    print(_format_table(rows, ["rankseg", "topk", "path", "padded", "image", "before_ms", "after_ms", "speedup",
                               "before_peak_mib", "after_peak_mib"]))
    return {"benchmark": "semantic-post", "environment": _environment(device, threads), "results": rows}


def _peak_mib(fn: Callable[[], None], device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    return _cpu_peak_bytes(fn) / 2**20


def _ade20k_full_case(case: Dict) -> Dict:
    """One (RankSeg on/off, scores/labels) measurement; runs in its own process."""
    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    device = case["device"]
    model = _ade20k_full_model(case["rankseg"], case["topk"], device)
    size = case["size"]
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    inputs = [{"image": image, "height": size, "width": size}]

    def run() -> None:
        with torch.no_grad(), semantic_output(model, case["path"]):
            out = model(inputs)[0]
            labels = out["sem_seg"].argmax(0) if case["path"] == "scores" else out["sem_seg_labels"]
            assert labels.shape == (size, size)

    run()  # warm-up (lazy initialisations) before the memory measurement
    post = _postprocess_step(case["rankseg"], case["topk"], size, case["path"], device)
    post()
    result = dict(case)
    result.update(
        peak_mib=_peak_mib(run, device),
        postprocess_peak_mib=_peak_mib(post, device),
        peak_kind=("CUDA allocated beyond the start" if device.startswith("cuda")
                   else "CPU tensor bytes beyond the start (profiler)"),
        forward_ms=1e3 * _median_seconds(run, device, case["warmup"], case["repeats"]),
        postprocess_ms=1e3 * _median_seconds(post, device, case["warmup"], case["repeats"]),
        dense_scores_mib=ADE20K_FULL_CLASSES * size * size * 4 / 2**20,
    )
    return result


def run_ade20k_full(args: argparse.Namespace) -> Dict:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = args.threads or torch.get_num_threads()
    rows = []
    for rankseg in (False, True):
        for path in ("scores", "labels"):
            case = dict(rankseg=rankseg, topk=args.topk if rankseg else 0, path=path, size=args.size, device=device,
                        threads=threads, warmup=args.warmup, repeats=args.repeats)
            logger.info("ade20k-full: %s", case)
            rows.append(_run_isolated(_ade20k_full_case, case))
    columns = ["rankseg", "topk", "path", "size", "peak_mib", "forward_ms", "postprocess_peak_mib", "postprocess_ms"]
    print(f"Mask2Former R50, ADE20K-Full ({ADE20K_FULL_CLASSES} classes), {args.size}x{args.size}, on {device} "
          f"({threads} threads); peak: {rows[0]['peak_kind']}; one [K, H, W] float32 score tensor is "
          f"{rows[0]['dense_scores_mib']:.0f} MiB")
    print(_format_table(rows, columns))
    return {"benchmark": "ade20k-full", "environment": _environment(device, threads), "results": rows}


PRECISION_MODES = ("fp32", "fp32+cl", "bf16", "bf16+cl")
"""Backbone precision modes of ``precision``: float32 or bfloat16 autocast, contiguous (NCHW) or channels_last."""


def _precision_case(case: Dict) -> Dict:
    """All ``modes`` of one depth in one process, interleaved per repeat (so every mode sees the same machine
    load): the ResNet backbone alone on a random normalised image, and with ``model`` the whole ADE20K
    Mask2Former (150 classes, random weights)."""
    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    device, size = case["device"], case["size"]
    cfg = get_cfg()
    cfg.merge_from_file(str(ADE20K_FULL_CONFIG))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.RESNETS.DEPTH", case["depth"],
                         "MODEL.RESNETS.RES2_OUT_CHANNELS", 64 if case["depth"] in (18, 34) else 256])
    model = build_model(cfg).to(device).eval()
    device_type = torch.device(device).type
    x = torch.randn(1, 3, size, size, device=device)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    times: Dict[str, Dict[str, List[float]]] = {m: {"backbone": [], "model": []} for m in case["modes"]}
    for repeat in range(case["warmup"] + case["repeats"]):
        for mode in case["modes"]:
            layout = torch.channels_last if mode.endswith("+cl") else torch.contiguous_format
            model.backbone.to(memory_format=layout)
            inp = x.contiguous(memory_format=layout)
            runs = {"backbone": functools.partial(model.backbone, inp)}
            if case["model"]:
                runs["model"] = lambda: model([{"image": image}])
            for part, fn in runs.items():
                with torch.no_grad(), torch.autocast(device_type=device_type, dtype=torch.bfloat16,
                                                     enabled=mode.startswith("bf16")):
                    _synchronize(device)
                    start = time.perf_counter()
                    fn()
                    _synchronize(device)
                if repeat >= case["warmup"]:
                    times[mode][part].append(time.perf_counter() - start)
    rows = []
    for mode in case["modes"]:
        row = dict(depth=case["depth"], mode=mode, size=size,
                   backbone_ms=1e3 * statistics.median(times[mode]["backbone"]))
        if case["model"]:
            row["model_ms"] = 1e3 * statistics.median(times[mode]["model"])
        rows.append(row)
    return {"rows": rows}


def run_precision(args: argparse.Namespace) -> Dict:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = args.threads or torch.get_num_threads()
    rows = []
    for depth in args.depths:
        case = dict(depth=depth, modes=list(args.modes), size=args.size, device=device, threads=threads,
                    warmup=args.warmup, repeats=args.repeats, model=args.model)
        logger.info("precision: %s", case)
        rows.extend(_run_isolated(_precision_case, case)["rows"])
    for row in rows:  # speed-up over fp32 (contiguous) at the same depth
        ref = next(r for r in rows if r["depth"] == row["depth"] and r["mode"] == rows[0]["mode"])
        row["backbone_speedup"] = ref["backbone_ms"] / row["backbone_ms"]
        if args.model:
            row["model_speedup"] = ref["model_ms"] / row["model_ms"]
    columns = ["depth", "mode", "size", "backbone_ms", "backbone_speedup"]
    if args.model:
        columns += ["model_ms", "model_speedup"]
    env = _environment(device, threads)
    what = "ResNet backbone forward" + (" and Mask2Former ADE20K inference" if args.model else "")
    print(f"{what}, {args.size}x{args.size}, "
          f"on {device} ({threads} threads, {env['processor']}; bf16 CPU flags: {env.get('bf16_flags')}), median "
          f"of {args.repeats}; speed-up over {rows[0]['mode']}")
    print(_format_table(rows, columns))
    return {"benchmark": "precision", "environment": env, "results": rows}


ADE20K_R50_CONFIGS = {
    "baseline": ADE20K_FULL_CONFIG,
    "rankseg": ADE20K_FULL_CONFIG.with_name("maskformer2_R50_bs16_160k-rankseg.yaml"),
}
"""Upstream's ADE20K-150 R50 semantic configs timed by ``fast-path``."""

FAST_PATH_MODES = ("fp32", "bf16", "fp32+compile", "bf16+compile")
"""``fast-path`` modes: MODEL.PRECISION, eager or under ``torch.compile`` (inductor, mode default)."""


def _random_training_inputs(batch: int, size: int, num_classes: int, generator: torch.Generator) -> List[Dict]:
    """``batch`` random images with 2-6 ground-truth segments each: a random label map of 8 x 8 blocks."""
    inputs = []
    for _ in range(batch):
        present = torch.randperm(num_classes, generator=generator)[: int(torch.randint(2, 7, (1,),
                                                                                       generator=generator))]
        blocks = present[torch.randint(0, len(present), (8, 8), generator=generator)]
        labels = blocks.repeat_interleave(size // 8, 0).repeat_interleave(size // 8, 1)
        classes = labels.unique()
        inputs.append({"image": torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator),
                       "height": size, "width": size,
                       "instances": Instances((size, size), gt_classes=classes,
                                              gt_masks=labels[None] == classes[:, None, None])})
    return inputs


def _fast_path_case(case: Dict) -> Dict:
    """One config in one process: every mode's model (same initial weights) timed on the same inputs, modes
    interleaved per repeat. Inference: one image, ``model([{"image"}])`` with post-processing. Training step:
    forward with losses, backward, the config's optimizer step (batch ``case["batch"]``)."""
    torch.set_num_threads(case["threads"])
    device, size = case["device"], case["size"]
    cfg = get_cfg()
    cfg.merge_from_file(str(case["config"]))
    cfg.merge_from_list(["MODEL.WEIGHTS", "", "MODEL.DEVICE", device])
    torch.manual_seed(0)
    template = build_model(cfg).to(device)
    state = {k: v.clone() for k, v in template.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)
    train_inputs = _random_training_inputs(case["batch"], size, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, g)
    runners = {}
    for mode in case["modes"]:
        precision = mode.split("+")[0]
        model = build_model(cfg).to(device)
        model.load_state_dict(state)
        prepare_model_for_precision(model, precision, device)
        optimizer = Trainer.build_optimizer(cfg, model)
        run_model = torch.compile(model) if mode.endswith("+compile") else model

        def infer(run_model=run_model, model=model, precision=precision):
            model.eval()
            with torch.no_grad(), precision_context(precision, device):
                run_model([{"image": image}])

        def train_step(run_model=run_model, model=model, precision=precision, optimizer=optimizer):
            model.train()
            with precision_context(precision, device):
                losses = run_model(train_inputs)
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            optimizer.step()

        runners[mode] = {"inference": infer, "train_step": train_step}
    times: Dict[str, Dict[str, List[float]]] = {m: {"inference": [], "train_step": []} for m in case["modes"]}
    first: Dict[str, float] = {}
    for repeat in range(case["warmup"] + case["repeats"]):
        for mode in case["modes"]:
            for part in case["parts"]:
                _synchronize(device)
                start = time.perf_counter()
                runners[mode][part]()
                _synchronize(device)
                elapsed = time.perf_counter() - start
                if repeat == 0:
                    first[f"{mode}/{part}"] = elapsed
                if repeat >= case["warmup"]:
                    times[mode][part].append(elapsed)
    rows = []
    for mode in case["modes"]:
        row = dict(model=case["name"], mode=mode, runs_in=resolve_precision(mode.split("+")[0], device))
        for part in case["parts"]:
            row[f"{part}_ms"] = 1e3 * statistics.median(times[mode][part])
            row[f"{part}_first_ms"] = 1e3 * first[f"{mode}/{part}"]
        rows.append(row)
    return {"rows": rows}


def run_fast_path(args: argparse.Namespace) -> Dict:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    threads = args.threads or torch.get_num_threads()
    parts = [p for p, on in (("inference", not args.no_inference), ("train_step", not args.no_train)) if on]
    rows = []
    for name in args.models:
        case = dict(name=name, config=str(ADE20K_R50_CONFIGS[name]), modes=list(args.modes), parts=parts,
                    size=args.size, batch=args.batch, device=device, threads=threads, warmup=args.warmup,
                    repeats=args.repeats)
        logger.info("fast-path: %s", case)
        rows.extend(_run_isolated(_fast_path_case, case)["rows"])
    for row in rows:  # speed-up over the first mode (fp32 eager) of the same model
        ref = next(r for r in rows if r["model"] == row["model"])
        for part in parts:
            row[f"{part}_speedup"] = ref[f"{part}_ms"] / row[f"{part}_ms"]
    columns = ["model", "mode", "runs_in"]
    for part in parts:
        columns += [f"{part}_ms", f"{part}_speedup", f"{part}_first_ms"]
    env = _environment(device, threads)
    print(f"Mask2Former R50 ADE20K-150 (random weights), {args.size}x{args.size}: inference of one image, training "
          f"step of {args.batch} (forward, losses, backward, optimizer); on {device} ({threads} threads, "
          f"{env['processor']}; bf16 CPU flags: {env.get('bf16_flags')}); median of {args.repeats} after "
          f"{args.warmup} warm-up (first_ms: the first call, compiling included); speed-up over {rows[0]['mode']}")
    print(_format_table(rows, columns))
    return {"benchmark": "fast-path", "environment": env, "results": rows}


def run_agreement(args: argparse.Namespace) -> Dict:
    """fp32 vs bf16 predictions of a trained semantic model on its test set (same weights)."""
    cfg = get_cfg()
    cfg.merge_from_file(str(args.run_dir / "config.yaml"))
    weights = args.weights or args.run_dir / "model_final.pth"
    cfg.merge_from_list(["MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", "cpu"])
    torch.set_num_threads(args.threads or torch.get_num_threads())
    model = Trainer.build_model(cfg).eval()
    Checkpointer(model).load(str(weights))
    loader = Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    num_classes, ignore = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE
    confusion = {p: np.zeros((num_classes, num_classes), np.int64) for p in ("fp32", "bf16")}
    counts = dict(images=0, pixels=0, agree=0, labelled=0, agree_labelled=0)
    for batch in loader:
        if args.images and counts["images"] >= args.images:
            break
        labels = {}
        for precision in ("fp32", "bf16"):
            prepare_model_for_precision(model, precision, "cpu")
            with torch.no_grad(), precision_context(precision, "cpu"):
                labels[precision] = model(batch)[0]["sem_seg"].argmax(0).numpy()
            model.to(memory_format=torch.contiguous_format)
        gt = np.asarray(Image.open(batch[0]["sem_seg_file_name"])).astype(np.int64)
        same, valid = labels["fp32"] == labels["bf16"], gt != ignore
        counts["images"] += 1
        counts["pixels"] += same.size
        counts["agree"] += int(same.sum())
        counts["labelled"] += int(valid.sum())
        counts["agree_labelled"] += int(same[valid].sum())
        for precision, pred in labels.items():
            confusion[precision] += np.bincount(num_classes * gt[valid] + pred[valid],
                                                minlength=num_classes ** 2).reshape(num_classes, num_classes)

    def miou(c):
        tp = c.diagonal()
        union = c.sum(0) + c.sum(1) - tp
        present = c.sum(1) > 0
        return float(100 * np.mean(tp[present] / union[present]))

    result = dict(images=counts["images"],
                  agreement_all_pixels=100 * counts["agree"] / counts["pixels"],
                  agreement_labelled_pixels=100 * counts["agree_labelled"] / counts["labelled"],
                  labelled_fraction=100 * counts["labelled"] / counts["pixels"],
                  miou_fp32=miou(confusion["fp32"]), miou_bf16=miou(confusion["bf16"]))
    print(f"{weights}: fp32 vs bf16 argmax over {result['images']} images of {cfg.DATASETS.TEST[0]}")
    print(_format_table([{k: f"{v:.2f}" if isinstance(v, float) else v for k, v in result.items()}], list(result)))
    return {"benchmark": "agreement", "environment": _environment("cpu", torch.get_num_threads()),
            "results": [result]}


def _environment(device: str, threads: int) -> Dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "processor": _cpu_name(), "threads": threads, "device": device}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    env["bf16_flags"] = list(cpu_bf16_flags())
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _write_json(data: Dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="benchmark", required=True)
    msda = sub.add_parser("msda", help="multi-scale deformable attention backends")
    msda.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="square input sizes in pixels")
    msda.add_argument("--batch", type=int, default=1)
    msda.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    msda.add_argument("--backends", nargs="+", choices=["reference", "cpu", "cuda"], default=None,
                      help="default: the reference and the device's kernel when built")
    msda.add_argument("--dtypes", nargs="+", choices=["float32", "float64", "float16", "bfloat16"], default=None,
                      help="default: float32 on CPU, float32 and bfloat16 on CUDA")
    msda.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    msda.add_argument("--warmup", type=int, default=2)
    msda.add_argument("--compile", action="store_true", help="run each call inside torch.compile (default backend)")
    msda.add_argument("--repeats", type=int, default=5)
    msda.add_argument("--json", type=Path, default=Path("output/benchmarks/msda.json"), help="where to write results")
    video = sub.add_parser("video", help="VideoMaskFormer inference memory and time against the window size")
    video.add_argument("--config", type=Path,
                       default=Path("configs/youtubevis_2019/video_maskformer2_R50_bs16_8ep.yaml"))
    video.add_argument("--frames", type=int, default=24)
    video.add_argument("--size", type=int, nargs=2, default=[360, 640], metavar=("H", "W"))
    video.add_argument("--windows", type=int, nargs="+", default=[0, 8], help="WINDOW_SIZE values (0: one pass)")
    video.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    video.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    video.add_argument("--json", type=Path, default=Path("output/benchmarks/video.json"), help="where to write results")
    full = sub.add_parser("ade20k-full", help="847-class Mask2Former inference memory and time, RankSeg on/off")
    full.add_argument("--size", type=int, default=512, help="square input size in pixels")
    full.add_argument("--topk", type=int, default=50, help="RankSeg's TOPK for the RankSeg cases")
    full.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    full.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    full.add_argument("--warmup", type=int, default=1)
    full.add_argument("--repeats", type=int, default=3)
    full.add_argument("--json", type=Path, default=Path("output/benchmarks/ade20k_full.json"),
                      help="where to write results")
    post = sub.add_parser("semantic-post", help="semantic post-processing after the decoder, before/after")
    post.add_argument("--images", type=int, nargs=2, action="append", default=None, metavar=("H", "W"),
                      help="image sizes (padded to multiples of 32); default 512x512 and 512x683")
    post.add_argument("--topk", type=int, default=50, help="RankSeg's TOPK for the RankSeg cases")
    post.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    post.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    post.add_argument("--warmup", type=int, default=1)
    post.add_argument("--repeats", type=int, default=5)
    post.add_argument("--json", type=Path, default=Path("output/benchmarks/semantic_post.json"),
                      help="where to write results")
    prec = sub.add_parser("precision", help="backbone (and model) forward: fp32 vs bf16, NCHW vs channels_last")
    prec.add_argument("--depths", type=int, nargs="+", default=[18, 50], help="ResNet depths")
    prec.add_argument("--modes", nargs="+", choices=PRECISION_MODES, default=list(PRECISION_MODES))
    prec.add_argument("--size", type=int, default=512, help="square input size in pixels")
    prec.add_argument("--model", action="store_true", help="also time the whole model's inference")
    prec.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    prec.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    prec.add_argument("--warmup", type=int, default=1)
    prec.add_argument("--repeats", type=int, default=5)
    prec.add_argument("--json", type=Path, default=Path("output/benchmarks/precision.json"),
                      help="where to write results")
    fast = sub.add_parser("fast-path", help="fp32 vs bf16 (vs torch.compile): R50 inference and training step")
    fast.add_argument("--models", nargs="+", choices=sorted(ADE20K_R50_CONFIGS), default=["baseline", "rankseg"])
    fast.add_argument("--modes", nargs="+", choices=FAST_PATH_MODES, default=["fp32", "bf16"])
    fast.add_argument("--size", type=int, default=512, help="square image size in pixels")
    fast.add_argument("--batch", type=int, default=2, help="images per training step")
    fast.add_argument("--no-inference", action="store_true", help="time the training step only")
    fast.add_argument("--no-train", action="store_true", help="time inference only")
    fast.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    fast.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    fast.add_argument("--warmup", type=int, default=1)
    fast.add_argument("--repeats", type=int, default=3)
    fast.add_argument("--json", type=Path, default=Path("output/benchmarks/fast_path.json"),
                      help="where to write results")
    agree = sub.add_parser("agreement", help="fp32 vs bf16 argmax agreement and mIoU of a trained semantic run")
    agree.add_argument("run_dir", type=Path, help="a training run's OUTPUT_DIR (config.yaml, model_final.pth)")
    agree.add_argument("--weights", type=Path, default=None, help="default: RUN_DIR/model_final.pth")
    agree.add_argument("--images", type=int, default=0, help="first N test images (0: all)")
    agree.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    agree.add_argument("--json", type=Path, default=Path("output/benchmarks/agreement.json"),
                       help="where to write results")
    args = parser.parse_args(argv)
    if args.benchmark == "semantic-post" and args.images is None:
        args.images = [[512, 512], [512, 683]]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runners = {"msda": run_msda, "video": run_video, "ade20k-full": run_ade20k_full,
               "semantic-post": run_semantic_post, "precision": run_precision, "fast-path": run_fast_path,
               "agreement": run_agreement}
    data = runners[args.benchmark](args)
    _write_json(data, args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
