"""Reproducible data for the training loop: every item draws from its own random stream seeded with (seed, epoch,
index), and one sampler yields the ``(epoch, index)`` keys of the rest of a run, so a resumed run sees exactly the
samples and augmentations of the uninterrupted run.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler


class SeededItems(Dataset):
    """Gives every item its own random stream, seeded from (seed, epoch, index).

    Augmentations then depend on neither the worker count nor the items fetched before, so skipping the
    consumed part of an epoch on resume reproduces the rest exactly. The host's streams (Python's, NumPy's
    global one, torch's CPU generator) are seeded per item and the caller's are put back after each batch
    (:meth:`__getitems__`, what the DataLoader calls): saving and restoring them per item cost more than the
    items of a cheap dataset. Device generators are left alone: ``torch.manual_seed`` would also reseed the
    CUDA generator that the masks of the next step draw from (with ``data.num_workers=0`` the items are made
    in the training process), and it formats a stack trace for every device kind not yet initialised.
    Keys are ``(epoch, index)`` pairs (:class:`RunIndices`).
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:  # expose the wrapped dataset's attributes
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Any]:
        """The items of ``keys``, each from its own streams; the caller's streams are restored once at the end."""
        saved = random.getstate(), np.random.get_state(), torch.default_generator.get_state()
        try:
            return [self._seeded(epoch, index) for epoch, index in keys]
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.default_generator.set_state(saved[2])

    def _seeded(self, epoch: int, index: int) -> Any:
        item_seed = zlib.crc32(f"{self.seed}/{epoch}/{index}".encode())
        torch.default_generator.manual_seed(item_seed)
        random.seed(item_seed)
        np.random.seed(item_seed)
        return self.dataset[index]


class RunIndices(Sampler[tuple[int, int]]):
    """The ``(epoch, index)`` keys of the rest of a run, for one DataLoader that lives as long as the run (its
    workers are started once, and they fetch the next epoch's first batches while an epoch ends).

    Epoch ``e`` gives the first ``per_epoch`` indices of ``sampler`` set to epoch ``e`` (whole batches, so no
    batch spans two epochs); the run starts at ``start_epoch`` after its first ``skip`` indices (a resume).
    """

    def __init__(self, sampler: DistributedSampler, start_epoch: int, skip: int, epochs: int, per_epoch: int):
        self.sampler, self.start_epoch, self.skip = sampler, start_epoch, skip
        self.epochs, self.per_epoch = epochs, per_epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for epoch in range(self.start_epoch, self.epochs):
            self.sampler.set_epoch(epoch)
            first = self.skip if epoch == self.start_epoch else 0
            for index in itertools.islice(self.sampler, first, self.per_epoch):
                yield epoch, index

    def __len__(self) -> int:
        return max(0, (self.epochs - self.start_epoch) * self.per_epoch - self.skip)
