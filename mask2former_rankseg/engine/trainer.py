"""``Trainer``: iteration-based training of the model of a config, with periodic checkpoints, evaluation,
metric writers and exact resume."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..data import MetadataCatalog, build_detection_test_loader, build_detection_train_loader
from ..data.build import per_process_batch_size
from ..data.mappers import TRAIN_MAPPERS, VIDEO_MAPPERS
from ..evaluation import (
    COCOPanopticEvaluator,
    DatasetEvaluators,
    InstanceSegEvaluator,
    RankSegEvaluator,
    SemSegEvaluator,
    VSPWEvaluator,
    YTVISEvaluator,
    format_results_table,
    inference_on_dataset,
    write_results_json,
)
from ..modeling import build_model
from ..utils import comm
from ..utils.events import EventStorage, EventWriter
from ..utils.precision import compile_model, precision_context, prepare_model_for_precision, resolve_precision
from . import hooks as hooks_module
from .checkpoint import Checkpointer, CheckpointError
from .defaults import OutputDirError, capture_rng_state, check_output_dir, resolve_device, restore_rng_state
from .optim import build_gradient_clipper, build_lr_scheduler, build_optimizer
from .tta import SemanticSegmentorWithTTA

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)

SUPPORTED_EVALUATOR_TYPES = ("sem_seg", "coco_panoptic_seg", "ade20k_panoptic_seg", "coco", "ytvis", "vspw")


class Trainer:
    """Trains ``cfg``'s model on ``DATASETS.TRAIN`` for ``SOLVER.MAX_ITER`` iterations (detectron2's
    ``DefaultTrainer`` contract: ``Trainer(cfg)``, ``.resume_or_load(resume)``, ``.train()``, classmethod
    ``.test(cfg, model)``).

    Each iteration: next batch; loss dict from the model in train mode (under ``torch.autocast`` +
    ``GradScaler`` on CUDA with ``SOLVER.AMP.ENABLED``; under bfloat16 autocast, without a scaler, with
    ``MODEL.PRECISION`` "bf16", see :mod:`~mask2former_rankseg.utils.precision`); a NaN/inf loss on any process
    stops training with ``FloatingPointError``; backward; ``SOLVER.CLIP_GRADIENTS`` on the unscaled gradients;
    optimizer step; then the hooks (LR schedule, checkpoints, evaluation, writers).

    The ``build_*`` classmethods are the extension points (override them in a subclass). With several
    processes the model is wrapped in ``DistributedDataParallel``.

    Exact resume: a checkpoint holds the model, optimizer, LR scheduler, GradScaler, the iteration, the
    RNG states of every process and the data seed. The training data stream is restarted at every
    multiple of ``SOLVER.CHECKPOINT_PERIOD`` with a seed derived from (data seed, iteration), so resuming
    from a periodic checkpoint rebuilds exactly the batches an uninterrupted run sees, without replaying
    the images already trained on (a checkpoint off that grid replays at most one period of batches).
    """

    def __init__(self, cfg):
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        per_process_batch_size(cfg.SOLVER.IMS_PER_BATCH, comm.get_world_size())  # fail before building anything
        self.cfg = cfg
        model = self.build_model(cfg)
        self.optimizer = self.build_optimizer(cfg, model)
        self.scheduler = self.build_lr_scheduler(cfg, self.optimizer)
        self.grad_clipper = build_gradient_clipper(cfg)
        self.device = _model_device(model)
        if comm.get_world_size() > 1:
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False, find_unused_parameters=False,
            )
        self.model = model
        self.precision = resolve_precision(cfg.MODEL.PRECISION, self.device)
        self.amp = bool(cfg.SOLVER.AMP.ENABLED) and self.device.type == "cuda" and self.precision == "fp32"
        if cfg.SOLVER.AMP.ENABLED and self.precision == "bf16":
            logger.info("SOLVER.AMP.ENABLED is set with MODEL.PRECISION 'bf16': training under bfloat16 autocast "
                        "(no float16 AMP, no gradient scaling).")
        elif cfg.SOLVER.AMP.ENABLED and not self.amp:
            logger.info("SOLVER.AMP.ENABLED is set but the model runs on %s: training in float32 (AMP is for "
                        "CUDA only).", self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.checkpointer = Checkpointer(
            model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(),
            optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
        )
        self.check_output_dir()
        self.start_iter = 0
        self.iter = 0
        self.max_iter = int(cfg.SOLVER.MAX_ITER)
        self.storage: Optional[EventStorage] = None
        self.data_seed = int(cfg.SEED) if cfg.SEED >= 0 else int(comm.shared_random_seed())
        self._stream_period = max(int(cfg.SOLVER.CHECKPOINT_PERIOD), 0)
        self._data_iter: Optional[Iterator] = None
        self._data_start = -1
        self._pending_rng: Optional[Mapping[str, Any]] = None
        self._hooks: List[hooks_module.HookBase] = []
        self.register_hooks(self.build_hooks())

    # builders (extension points) -----------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg) -> nn.Module:
        """``build_model(cfg)`` on ``MODEL.DEVICE`` (the CPU, with a warning, when CUDA is missing; the
        process's own GPU in multi-GPU runs)."""
        model = build_model(cfg)
        device = resolve_device(cfg.MODEL.DEVICE)
        if device.startswith("cuda") and comm.get_world_size() > 1:
            device = f"cuda:{comm.get_local_rank()}"
        model = prepare_model_for_precision(model.to(device), cfg.MODEL.PRECISION, device)
        compile_model(model, cfg.MODEL.COMPILE)
        n_params = sum(p.numel() for p in model.parameters())
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        logger.info("Model %s on %s: %.2fM parameters (%.2fM trainable)", type(model).__name__, device,
                    n_params / 1e6, n_train / 1e6)
        logger.debug("Model:\n%s", model)
        return model

    @classmethod
    def build_optimizer(cls, cfg, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        """Infinite iterable of batches (lists of mapped dicts) over ``DATASETS.TRAIN``, seeded by
        ``cfg.SEED`` (the trainer passes a config whose ``SEED`` is the data stream's seed).

        The mapper is ``INPUT.DATASET_MAPPER_NAME``'s, except for video datasets (``evaluator_type`` "ytvis" or
        "vspw" of the first training dataset), which get the video mapper of their type, as upstream's
        train_net_video.py chooses it (one clip per video dict, ``SOLVER.IMS_PER_BATCH`` clips per batch).
        """
        video_type = _video_dataset_type(cfg.DATASETS.TRAIN[0]) if len(cfg.DATASETS.TRAIN) else None
        if video_type is not None:
            return build_detection_train_loader(cfg, VIDEO_MAPPERS[video_type].from_config(cfg, True))
        name = cfg.INPUT.DATASET_MAPPER_NAME
        if name not in TRAIN_MAPPERS:
            raise ValueError(f"INPUT.DATASET_MAPPER_NAME={name!r} is not supported; supported: "
                             f"{', '.join(sorted(TRAIN_MAPPERS))}.")
        return build_detection_train_loader(cfg, TRAIN_MAPPERS[name].from_config(cfg, True))

    @classmethod
    def build_test_loader(cls, cfg, dataset_name: str):
        """One image (video datasets: one video, or one evaluation clip of it) per batch."""
        video_type = _video_dataset_type(dataset_name)
        mapper = VIDEO_MAPPERS[video_type].from_config(cfg, False) if video_type is not None else None
        return build_detection_test_loader(cfg, dataset_name, mapper)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name: str, output_folder: Optional[str] = None):
        """Evaluators for the dataset's metadata ``evaluator_type``, as upstream's train_net chooses them:

        * ``sem_seg``, ``ade20k_panoptic_seg``, and ``coco_panoptic_seg`` with SEMANTIC_ON: ``SemSegEvaluator``;
        * ``*_panoptic_seg`` with PANOPTIC_ON: ``COCOPanopticEvaluator``;
        * ``coco`` (instance datasets), and ``*_panoptic_seg`` with INSTANCE_ON: ``InstanceSegEvaluator`` (mask AP);
        * with ``MODEL.RANKSEG.FLAG`` and not ``USE_GT``: ``RankSegEvaluator`` (image-level ranking);
        * video datasets, as upstream's train_net_video.py: ``ytvis``: ``YTVISEvaluator`` (video AP and the server
          submission), ``vspw``: ``VSPWEvaluator`` (mIoU, VC8, VC16); no image-level ranking metrics.
        """
        if output_folder is None:
            output_folder = str(Path(cfg.OUTPUT_DIR) / "inference" / dataset_name) if cfg.OUTPUT_DIR else None
        evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
        if evaluator_type not in SUPPORTED_EVALUATOR_TYPES:
            raise ValueError(
                f"No evaluator for dataset {dataset_name!r} with evaluator_type={evaluator_type!r}; supported "
                f"evaluator types: {', '.join(SUPPORTED_EVALUATOR_TYPES)}. Set the dataset's metadata "
                "(MetadataCatalog.get(name).set(evaluator_type=...)) or override Trainer.build_evaluator."
            )
        if evaluator_type == "ytvis":
            return DatasetEvaluators([YTVISEvaluator(dataset_name, output_dir=output_folder, distributed=True)])
        if evaluator_type == "vspw":
            return DatasetEvaluators([VSPWEvaluator(dataset_name, output_dir=output_folder, distributed=True)])
        test = cfg.MODEL.MASK_FORMER.TEST
        panoptic = evaluator_type.endswith("_panoptic_seg")
        evaluators = []
        if evaluator_type in ("sem_seg", "ade20k_panoptic_seg") or (panoptic and test.SEMANTIC_ON):
            evaluators.append(SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder))
        if panoptic and test.PANOPTIC_ON:
            evaluators.append(COCOPanopticEvaluator(dataset_name, output_dir=output_folder, distributed=True))
        if evaluator_type == "coco" or (panoptic and test.INSTANCE_ON):
            evaluators.append(InstanceSegEvaluator(dataset_name, output_dir=output_folder, distributed=True))
        if cfg.MODEL.RANKSEG.FLAG and not cfg.MODEL.RANKSEG.USE_GT:
            evaluators.append(RankSegEvaluator(dataset_name, distributed=True, output_dir=output_folder))
        return DatasetEvaluators(evaluators)

    def build_writers(self) -> List[EventWriter]:
        """Console line, ``OUTPUT_DIR/metrics.json`` and TensorBoard events in ``OUTPUT_DIR``."""
        return hooks_module.default_writers(self.cfg.OUTPUT_DIR, self.max_iter)

    def build_hooks(self) -> List[hooks_module.HookBase]:
        cfg = self.cfg
        out: List[hooks_module.HookBase] = [
            hooks_module.IterationTimer(),
            hooks_module.LRScheduler(),
            hooks_module.PeriodicCheckpointer(cfg.SOLVER.CHECKPOINT_PERIOD, self.max_iter),
            hooks_module.EvalHook(cfg.TEST.EVAL_PERIOD, lambda: self.test(self.cfg, self.model), self.max_iter),
        ]
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            out.append(hooks_module.PeriodicWriter(self.build_writers(), period=20))
        return out

    def register_hooks(self, new_hooks: Sequence[Optional[hooks_module.HookBase]]) -> None:
        """Append hooks (None entries are skipped); they run in registration order."""
        for h in new_hooks:
            if h is None:
                continue
            h.trainer = self
            self._hooks.append(h)

    @classmethod
    def auto_scale_workers(cls, cfg, num_workers: int):
        """detectron2's linear scaling for ``SOLVER.REFERENCE_WORLD_SIZE`` > 0: when training on
        ``num_workers`` processes instead, scale the batch size and LR by ``num_workers / reference`` and
        the iteration counts (MAX_ITER, WARMUP_ITERS, STEPS, EVAL_PERIOD, CHECKPOINT_PERIOD) inversely."""
        reference = int(cfg.SOLVER.REFERENCE_WORLD_SIZE)
        if reference == 0 or reference == num_workers:
            return cfg
        if cfg.SOLVER.IMS_PER_BATCH % reference != 0:
            raise ValueError(f"SOLVER.IMS_PER_BATCH={cfg.SOLVER.IMS_PER_BATCH} is not divisible by "
                             f"SOLVER.REFERENCE_WORLD_SIZE={reference}.")
        scale = num_workers / reference
        frozen = cfg.is_frozen()
        cfg = cfg.clone()
        cfg.defrost()
        s = cfg.SOLVER
        s.IMS_PER_BATCH = int(round(s.IMS_PER_BATCH * scale))
        s.BASE_LR = s.BASE_LR * scale
        s.MAX_ITER = int(round(s.MAX_ITER / scale))
        s.WARMUP_ITERS = int(round(s.WARMUP_ITERS / scale))
        s.STEPS = tuple(int(round(x / scale)) for x in s.STEPS)
        cfg.TEST.EVAL_PERIOD = int(round(cfg.TEST.EVAL_PERIOD / scale))
        s.CHECKPOINT_PERIOD = int(round(s.CHECKPOINT_PERIOD / scale))
        s.REFERENCE_WORLD_SIZE = num_workers
        logger.info("Auto-scaling the config to %d processes (reference %d): IMS_PER_BATCH=%d, BASE_LR=%g, "
                    "MAX_ITER=%d, WARMUP_ITERS=%d, STEPS=%s.", num_workers, reference, s.IMS_PER_BATCH, s.BASE_LR,
                    s.MAX_ITER, s.WARMUP_ITERS, s.STEPS)
        if frozen:
            cfg.freeze()
        return cfg

    # checkpoints ---------------------------------------------------------------------------------
    def check_output_dir(self) -> None:
        """Before training: ``OUTPUT_DIR`` must be writable with room for one checkpoint (estimated from the
        model and optimizer); checked on the main process, raised as ``OutputDirError`` on every process."""
        if not self.cfg.OUTPUT_DIR:
            return
        required = self.checkpointer.estimated_size_bytes()
        comm.call_on_main_process(lambda: check_output_dir(self.cfg.OUTPUT_DIR, required), OutputDirError)

    def save_checkpoint(self, name: str) -> None:
        """Save ``OUTPUT_DIR/<name>.pth`` with everything an exact resume needs; ``iteration`` is the last
        completed iteration. Every process must call it (the RNG states of all ranks are gathered); the
        main process writes. A failed write (e.g. a full disk) raises ``CheckpointError`` on every process
        and leaves the previous checkpoint in place."""
        rng = comm.gather(capture_rng_state(), dst=0)
        last_done = min(self.iter, self.max_iter - 1)  # after the loop self.iter == max_iter
        comm.call_on_main_process(
            lambda: self.checkpointer.save(name, iteration=last_done, rng=rng, data_seed=self.data_seed),
            CheckpointError,
        )

    def resume_or_load(self, resume: bool = True) -> None:
        """With ``resume`` and ``OUTPUT_DIR/last_checkpoint``: continue exactly where that checkpoint
        stopped. Otherwise load the weights of ``MODEL.WEIGHTS`` (if set) and start at iteration 0."""
        resuming = resume and self.checkpointer.has_checkpoint()
        data = self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if not resuming:
            return
        self.start_iter = int(data.get("iteration", -1)) + 1
        if "data_seed" in data:
            self.data_seed = int(data["data_seed"])
        states = data.get("rng")
        if isinstance(states, (list, tuple)) and states:
            rank, world = comm.get_rank(), comm.get_world_size()
            if len(states) != world:
                logger.warning("The checkpoint was written by %d processes, this run has %d: every process takes "
                               "the RNG state of rank 0, so the resumed run is not an exact continuation.",
                               len(states), world)
            self._pending_rng = states[rank] if len(states) == world else states[0]
        elif isinstance(states, Mapping):
            self._pending_rng = states
        logger.info("Resuming from iteration %d", self.start_iter)

    # training ------------------------------------------------------------------------------------
    def train(self) -> Optional[Dict]:
        """Run iterations ``start_iter .. MAX_ITER - 1``; returns the last evaluation's results (or None)."""
        logger.info("Starting training from iteration %d to %d", self.start_iter, self.max_iter)
        self.iter = self.start_iter
        self.model.train()
        with EventStorage(self.start_iter) as self.storage:
            try:
                for h in self._hooks:
                    h.before_train()
                for iteration in range(self.start_iter, self.max_iter):
                    self.iter = self.storage.iter = iteration
                    for h in self._hooks:
                        h.before_step()
                    self.run_step()
                    for h in self._hooks:
                        h.after_step()
                self.iter = max(self.max_iter, self.start_iter)  # >= max_iter: finished (hooks check this)
            except Exception:
                logger.exception("Exception during training at iteration %d:", self.iter)
                raise
            finally:
                try:
                    for h in self._hooks:
                        h.after_train()
                finally:
                    self._data_iter = None  # shuts down data loader workers
        return self.latest_eval_results

    @property
    def latest_eval_results(self) -> Optional[Dict]:
        eval_hook = next((h for h in self._hooks if isinstance(h, hooks_module.EvalHook)), None)
        return eval_hook.latest_results if eval_hook is not None else None

    def run_step(self) -> None:
        """One iteration: batch, losses, finiteness check, backward, clipping, optimizer step, metrics."""
        start = time.perf_counter()
        batch = self._next_batch()
        data_time = time.perf_counter() - start

        with torch.autocast(device_type=self.device.type, dtype=torch.float16, enabled=self.amp), \
                precision_context(self.precision, self.device):
            loss_dict = self.model(batch)
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        names = sorted(loss_dict)
        reduced = self._reduce_losses([loss_dict[k] for k in names])
        if not bool(torch.isfinite(reduced).all()):
            raise FloatingPointError(self._nonfinite_message(dict(zip(names, reduced.tolist())), batch))
        losses = sum(loss_dict[k] for k in names)

        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses).backward()
        grad_norm = None
        if self.grad_clipper is not None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = self.grad_clipper(self.model.parameters())
        self.scaler.step(self.optimizer)
        self.scaler.update()

        if comm.is_main_process():
            values = dict(zip(names, reduced.tolist()))
            if "total_loss" not in values:
                self.storage.put_scalar("total_loss", sum(values.values()))
            self.storage.put_scalars(**values)
            self.storage.put_scalar("data_time", data_time, smoothing_hint=False)
            if grad_norm is not None:
                self.storage.put_scalar("grad_norm", grad_norm)

    def _reduce_losses(self, values: List[torch.Tensor]) -> torch.Tensor:
        """The losses averaged over processes, on the CPU (every process gets the same numbers, so a
        NaN on one process stops all of them together)."""
        stacked = torch.stack([v.detach().float().reshape(()) for v in values])
        if comm.get_world_size() > 1:
            dist.all_reduce(stacked)
            stacked = stacked / comm.get_world_size()
        return stacked.cpu()

    def _nonfinite_message(self, values: Dict[str, float], batch: Any) -> str:
        files = []
        if isinstance(batch, (list, tuple)):
            for d in batch:
                if isinstance(d, Mapping) and "file_name" in d:
                    files.append(str(d["file_name"]))
                elif isinstance(d, Mapping) and "file_names" in d:  # a video clip
                    files.append(f"video {d.get('video_id')} ({', '.join(str(f) for f in d['file_names'])})")
        msg = (f"Loss became infinite or NaN at iteration {self.iter}: "
               + ", ".join(f"{k}={v:.4g}" for k, v in values.items())
               + ". Training stopped. Lower SOLVER.BASE_LR, enable SOLVER.CLIP_GRADIENTS, or resume from the "
               "last checkpoint with --resume.")
        if files:
            msg += f" Images of this batch on this process: {', '.join(files[:8])}"
        return msg

    # data stream -----------------------------------------------------------------------------------
    def _stream_seed(self, start: int) -> int:
        if start == 0:
            return self.data_seed
        return int(np.random.SeedSequence([self.data_seed, start]).generate_state(1)[0] % 2**31)

    def _cfg_with_seed(self, seed: int):
        if int(self.cfg.SEED) == seed:
            return self.cfg
        frozen = self.cfg.is_frozen()
        cfg = self.cfg.clone()
        cfg.defrost()
        cfg.SEED = seed
        if frozen:
            cfg.freeze()
        return cfg

    def _next_batch(self) -> Any:
        """The batch of iteration ``self.iter`` (see the class docstring on the data stream)."""
        it, period = self.iter, self._stream_period
        if self._data_iter is None or (period > 0 and it % period == 0 and it != self._data_start):
            self._data_iter = None
            start = (it // period) * period if period > 0 else it
            skip = it - start
            if self._pending_rng is not None and skip == 0:
                restore_rng_state(self._pending_rng)  # before the loader is built, as in an uninterrupted run
                self._pending_rng = None
            seed = self._stream_seed(start)
            if it > 0:
                logger.info("Training data stream (re)started at iteration %d with seed %d", start, seed)
            self._data_iter = iter(self.build_train_loader(self._cfg_with_seed(seed)))
            self._data_start = start
            if skip:
                logger.info("Replaying %d batches to resume the data stream exactly", skip)
                for _ in range(skip):
                    next(self._data_iter)
        if self._pending_rng is not None:
            restore_rng_state(self._pending_rng)
            self._pending_rng = None
        return next(self._data_iter)

    # evaluation ----------------------------------------------------------------------------------
    @classmethod
    def test(cls, cfg, model: nn.Module, evaluators: Optional[Any] = None, results_dir: str = "inference") -> Dict:
        """Evaluate ``model`` on every ``DATASETS.TEST`` dataset.

        Args:
            evaluators: None (use :meth:`build_evaluator`), or one evaluator per test dataset (a single
                evaluator is accepted for a single dataset).
            results_dir: folder under ``OUTPUT_DIR`` for the results files.
        Returns:
            ``{task: {metric: value}}`` for one dataset, ``{dataset: {task: {metric: value}}}`` for several
            (``{}`` on non-main processes and without test datasets). Each dataset's results are also
            written to ``OUTPUT_DIR/<results_dir>/<dataset>/evaluation_results.json`` (``results.json`` there is a
            YouTube-VIS submission, as upstream's).
        """
        if isinstance(model, nn.parallel.DistributedDataParallel):
            # every rank evaluates rank 0's model (what its checkpoints hold), BatchNorm statistics included
            comm.broadcast_buffers(model.module, src=0)
            model = model.module  # ranks see different numbers of images: no DDP collectives in inference
        names = list(cfg.DATASETS.TEST)
        if evaluators is not None:
            if hasattr(evaluators, "process"):
                evaluators = [evaluators]
            if len(evaluators) != len(names):
                raise ValueError(f"{len(evaluators)} evaluators given for {len(names)} test datasets {names}.")
        results: Dict[str, Any] = OrderedDict()
        for idx, name in enumerate(names):
            out_dir = Path(cfg.OUTPUT_DIR) / results_dir / name if cfg.OUTPUT_DIR else None
            # the loader first, as detectron2 does: loading a dataset refreshes the paths in its metadata
            # ($DETECTRON2_DATASETS is read then), which the evaluator reads
            loader = cls.build_test_loader(cfg, name)
            evaluator = (evaluators[idx] if evaluators is not None
                         else cls.build_evaluator(cfg, name, str(out_dir) if out_dir else None))
            res = inference_on_dataset(model, loader, evaluator, precision=cfg.MODEL.PRECISION)
            results[name] = res
            if comm.is_main_process() and res:
                if out_dir is not None:
                    write_results_json(res, out_dir / "evaluation_results.json")
                logger.info("Evaluation results for %s:\n%s", name, format_results_table(res))
        if len(results) == 1:
            return next(iter(results.values()))
        return results

    @classmethod
    def test_with_TTA(cls, cfg, model: nn.Module) -> Dict:  # noqa: N802 (upstream's name)
        """Evaluate with test-time augmentation (``TEST.AUG``): mIoU of the semantic scores averaged over scales
        and flips (:class:`SemanticSegmentorWithTTA`), results under ``OUTPUT_DIR/inference_TTA``; task names
        get a ``_TTA`` suffix as in Mask2Former. Only semantic segmentation is evaluated (no panoptic/instance TTA).
        """
        logger.info("Running inference with test-time augmentation (scales %s, max size %d, flip %s)",
                    list(cfg.TEST.AUG.MIN_SIZES), cfg.TEST.AUG.MAX_SIZE, cfg.TEST.AUG.FLIP)
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        out_root = Path(cfg.OUTPUT_DIR) / "inference_TTA" if cfg.OUTPUT_DIR else None
        evaluators = [SemSegEvaluator(name, distributed=True, output_dir=str(out_root / name) if out_root else None)
                      for name in cfg.DATASETS.TEST]
        results = cls.test(cfg, SemanticSegmentorWithTTA.from_config(cfg, model), evaluators,
                           results_dir="inference_TTA")
        if len(cfg.DATASETS.TEST) == 1:
            return OrderedDict((f"{task}_TTA", v) for task, v in results.items())
        return OrderedDict((f"{name}_TTA", v) for name, v in results.items())


def _video_dataset_type(dataset_name: str) -> Optional[str]:
    """The video mapper type ("ytvis", "vspw") of a dataset, from its metadata ``evaluator_type`` (None for image
    datasets)."""
    evaluator_type = MetadataCatalog.get(dataset_name).get("evaluator_type")
    return evaluator_type if evaluator_type in VIDEO_MAPPERS else None


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
