"""Samplers sharded across torch.distributed ranks: an infinite shuffled one for training, an exact one
for inference."""

from __future__ import annotations

import itertools
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from ..utils.comm import shared_random_seed

__all__ = [
    "TrainingSampler",
    "SeededTrainingSampler",
    "InferenceSampler",
    "sample_seed",
    "shared_random_seed",
    "get_rank_and_world_size",
]


def get_rank_and_world_size() -> Tuple[int, int]:
    """(rank, world size) of torch.distributed, or (0, 1) when it is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sample_seed(stream_seed: int, position: int) -> int:
    """The seed in [0, 2**31) of element ``position`` of the training stream seeded by ``stream_seed``."""
    return int(np.random.SeedSequence([int(stream_seed), int(position)]).generate_state(1)[0] % 2**31)


class TrainingSampler(Sampler):
    """Infinite stream of indices: ``perm_0 + perm_1 + ...`` (or ``range(size)`` repeated), rank ``r``
    of ``n`` taking elements ``r, r + n, r + 2n, ...``.

    Args:
        size: number of dataset elements.
        shuffle: shuffle each pass with a generator seeded by ``seed``.
        seed: must be equal on all ranks; None draws one shared across ranks.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None):
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"TrainingSampler needs a positive int size, got {size!r}.")
        self._size = size
        self._shuffle = shuffle
        self._seed = int(shared_random_seed() if seed is None else seed)
        self._rank, self._world_size = get_rank_and_world_size()

    @property
    def seed(self) -> int:
        return self._seed

    def __iter__(self) -> Iterator[int]:
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=generator).tolist()
            else:
                yield from range(self._size)


class SeededTrainingSampler(TrainingSampler):
    """:class:`TrainingSampler` whose elements are ``(index, seed)`` pairs, ``seed`` being
    :func:`sample_seed` of the element's position in the stream over *all* ranks.

    A mapper run under that seed (:class:`~mask2former_rankseg.data.build.MapDataset` does so) augments
    the ``p``-th image of the stream in the same way whatever the number of processes or loader workers:
    ``n`` processes with batch ``B / n`` see exactly the images, crops and flips of one process with batch ``B``.
    """

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        numbered = itertools.islice(enumerate(self._infinite_indices()), self._rank, None, self._world_size)
        for position, index in numbered:
            yield index, sample_seed(self._seed, position)


class InferenceSampler(Sampler):
    """Every index exactly once over all ranks: rank ``r`` gets a contiguous shard, the first
    ``size % world_size`` ranks one element more."""

    def __init__(self, size: int):
        if size <= 0:
            raise ValueError(f"InferenceSampler needs a positive size, got {size!r}.")
        self._size = size
        rank, world_size = get_rank_and_world_size()
        self._local_indices = self.shard(size, world_size, rank)

    @staticmethod
    def shard(size: int, world_size: int, rank: int) -> range:
        base, extra = divmod(size, world_size)
        begin = rank * base + min(rank, extra)
        return range(begin, begin + base + int(rank < extra))

    def __iter__(self) -> Iterator[int]:
        yield from self._local_indices

    def __len__(self) -> int:
        return len(self._local_indices)
