"""Data loaders: dataset dicts -> mapper -> batches (lists of mapped dicts), as detectron2's.

Training: an infinite :class:`SeededTrainingSampler` (seeded by ``cfg.SEED``) sharded across ranks,
``SOLVER.IMS_PER_BATCH / world_size`` images per batch, every image augmented under a seed of its own
position in the stream, so the augmentations are reproducible and independent of the number of
processes and workers. Test: :class:`InferenceSampler`, one image per batch.
"""

from __future__ import annotations

import contextlib
import logging
import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .catalog import DatasetCatalog
from .mappers import TRAIN_MAPPERS, InferenceDatasetMapper
from .samplers import InferenceSampler, SeededTrainingSampler, get_rank_and_world_size, shared_random_seed

__all__ = [
    "get_detection_dataset_dicts",
    "build_detection_train_loader",
    "build_detection_test_loader",
    "build_batch_data_loader",
    "per_process_batch_size",
    "seeded_global_rngs",
    "MapDataset",
    "trivial_batch_collator",
]

logger = logging.getLogger(__name__)

Mapper = Callable[[Dict[str, Any]], Dict[str, Any]]


def get_detection_dataset_dicts(names: Union[str, Sequence[str]]) -> List[Dict[str, Any]]:
    """Concatenate the dataset dicts of the registered datasets ``names`` (in order).

    Raises:
        ValueError: no names given, or a dataset has no images.
        KeyError: a name is not registered (listing the registered ones).
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("get_detection_dataset_dicts needs at least one dataset name (cfg.DATASETS.*).")
    all_dicts: List[Dict[str, Any]] = []
    for name in names:
        dicts = DatasetCatalog.get(name)
        if len(dicts) == 0:
            raise ValueError(f"Dataset {name!r} is empty.")
        all_dicts.extend(dicts)
    return all_dicts


class MapDataset(Dataset):
    """``dicts[i]`` mapped by ``mapper``; a mapping failure is re-raised naming the image file (the video, for
    video dicts).

    An element may also be fetched as ``dataset[(i, seed)]`` (what :class:`SeededTrainingSampler` yields):
    the mapper then runs with Python's, numpy's and torch's global RNGs seeded by ``seed``, and the states
    they had before are restored afterwards, so its random augmentations depend on that seed only.
    """

    def __init__(self, dicts: Sequence[Dict[str, Any]], mapper: Mapper):
        self._dicts = list(dicts)
        self._mapper = mapper

    def __len__(self) -> int:
        return len(self._dicts)

    def __getitem__(self, key: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        if isinstance(key, tuple):
            index, seed = key
            with seeded_global_rngs(seed):
                return self._map(index)
        return self._map(key)

    def _map(self, index: int) -> Dict[str, Any]:
        record = self._dicts[index]
        try:
            return self._mapper(record)
        except Exception as e:
            if "file_name" in record:
                name = str(record["file_name"])
            elif "video_id" in record:
                name = f"video {record['video_id']}"
            else:
                name = f"dataset element {index}"
            if name.lower() in str(e).lower():
                raise  # the message already names the file (or video)
            raise RuntimeError(f"Failed to load {name}: {type(e).__name__}: {e}") from e


def trivial_batch_collator(batch: List[Any]) -> List[Any]:
    """Batches stay lists of dicts (images of different sizes are padded by the model)."""
    return batch


@contextlib.contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed ``random``, ``numpy.random`` and torch's CPU generator with ``seed`` for the block, then put back
    the states they had (CUDA generators are not touched)."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class TrainDataLoader:
    """Infinite iterable of batches wrapping a :class:`DataLoader` whose sampler seeds every element."""

    def __init__(self, loader: DataLoader, seed: int, rank: int):
        self.loader = loader
        self.seed = seed
        self.rank = rank

    @property
    def batch_size(self) -> int:
        return self.loader.batch_size

    def __iter__(self) -> Iterator[List[Dict[str, Any]]]:
        yield from self.loader


def build_batch_data_loader(dataset: Sequence[Dict[str, Any]], *, mapper: Mapper, total_batch_size: int,
                            num_workers: int = 0, seed: Optional[int] = None) -> TrainDataLoader:
    """Infinite training loader over ``dataset`` (a list of dataset dicts).

    Args:
        dataset: dataset dicts.
        mapper: dataset dict -> model input dict.
        total_batch_size: images per iteration over all ranks; must be divisible by the world size.
        num_workers: DataLoader worker processes.
        seed: shuffling and augmentation seed (same on all ranks); None draws a shared random one.
    Returns:
        An infinite iterable of lists of ``total_batch_size / world_size`` mapped dicts. Element ``p`` of
        the stream over all ranks is augmented under its own seed (:class:`SeededTrainingSampler`), so the
        batches of an iteration, taken together, do not depend on the number of processes or workers.
    """
    rank, world_size = get_rank_and_world_size()
    batch_size = per_process_batch_size(total_batch_size, world_size)
    seed = shared_random_seed() if seed is None else int(seed)
    sampler = SeededTrainingSampler(len(dataset), shuffle=True, seed=seed)
    logger.info("Training loader: %d images, batch size %d per process, seed %d, %d workers",
                len(dataset), batch_size, seed, num_workers)
    loader = DataLoader(
        MapDataset(dataset, mapper),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
    )
    return TrainDataLoader(loader, seed, rank)


def per_process_batch_size(total_batch_size: int, world_size: int) -> int:
    """``SOLVER.IMS_PER_BATCH`` (the batch of one iteration over all processes) divided by the number of
    processes; a clear error when it does not divide."""
    if total_batch_size <= 0 or total_batch_size % world_size != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH ({total_batch_size}) is the global batch of one iteration over all processes "
            f"and must be a positive multiple of the number of processes ({world_size} = --num-gpus x "
            f"--num-machines); set SOLVER.IMS_PER_BATCH to a multiple of {world_size}."
        )
    return total_batch_size // world_size


def build_detection_train_loader(cfg, mapper: Optional[Mapper] = None, *,
                                 dataset: Optional[Sequence[Dict[str, Any]]] = None) -> TrainDataLoader:
    """Training loader from ``cfg``: ``DATASETS.TRAIN``, ``SOLVER.IMS_PER_BATCH``,
    ``DATALOADER.NUM_WORKERS``, ``SEED`` (< 0: random, shared across ranks).

    ``mapper`` defaults to the one named by ``INPUT.DATASET_MAPPER_NAME`` (``mask_former_semantic``).
    """
    if dataset is None:
        dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN)
    if mapper is None:
        mapper = _default_train_mapper(cfg)
    seed = cfg.SEED if cfg.SEED >= 0 else None
    return build_batch_data_loader(
        dataset, mapper=mapper, total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        num_workers=cfg.DATALOADER.NUM_WORKERS, seed=seed,
    )


def build_detection_test_loader(cfg, dataset_name: Union[str, Sequence[str]],
                                mapper: Optional[Mapper] = None) -> DataLoader:
    """Test loader over ``dataset_name``: one image (or video) per batch, every image once across ranks,
    ``DATALOADER.NUM_WORKERS`` workers; ``mapper`` defaults to :class:`InferenceDatasetMapper`."""
    dataset = get_detection_dataset_dicts(dataset_name)
    if mapper is None:
        first = dataset_name if isinstance(dataset_name, str) else dataset_name[0]
        mapper = InferenceDatasetMapper.from_config(cfg, first)
    return DataLoader(
        MapDataset(dataset, mapper),
        batch_size=1,
        sampler=InferenceSampler(len(dataset)),
        drop_last=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
    )


def _default_train_mapper(cfg) -> Mapper:
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name not in TRAIN_MAPPERS:
        raise ValueError(
            f"INPUT.DATASET_MAPPER_NAME={name!r} is not a known mapper; set it to one of "
            f"{', '.join(sorted(TRAIN_MAPPERS))} (upstream Mask2Former's names)."
        )
    return TRAIN_MAPPERS[name].from_config(cfg, True)
