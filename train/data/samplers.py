"""The P x K batch sampler: every batch holds P classes x K images, so every anchor has positives.

The paper shuffles and draws plain batches of 16; with 5 classes and 16 images a batch
always holds at least one positive pair (pigeonhole), so plain shuffling is the
default. P x K (``--sampler pk``) guarantees K positives per anchor, which batch-hard
mining prefers, and is the usual choice with more classes or smaller batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    def __init__(self, labels: Sequence[int], p: int, k: int, *, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.labels = np.asarray(labels)
        self.classes = np.unique(self.labels)
        if p < 2 or k < 2:
            raise ValueError(f"P x K sampling needs P >= 2 classes and K >= 2 images, got P={p} K={k}")
        if p > len(self.classes):
            raise ValueError(f"P={p} classes per batch but the data has only {len(self.classes)}")
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.by_class = {c: np.flatnonzero(self.labels == c) for c in self.classes}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, len(self.labels) // (self.p * self.k * self.world_size))

    def __iter__(self) -> Iterator[list[int]]:
        # One stream of batches per (seed, epoch); each rank takes every world_size-th batch.
        rng = np.random.default_rng([self.seed, self.epoch])
        for b in range(len(self) * self.world_size):
            classes = rng.choice(self.classes, size=self.p, replace=False)
            batch: list[int] = []
            for c in classes:
                pool = self.by_class[c]
                batch.extend(rng.choice(pool, size=self.k, replace=len(pool) < self.k).tolist())
            if b % self.world_size == self.rank:
                yield batch
