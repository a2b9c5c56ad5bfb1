"""Mini-batches sliced from tensors already in memory (on the GPU when training there).

A small dataset held as one tensor needs no per-sample ``__getitem__``, workers or
collation: a batch is one index into the tensor. Shuffling uses a seeded
``torch.Generator`` on the tensor's device, and under DDP each process takes a disjoint,
equal-sized share of every epoch's permutation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor

Transform = Callable[[Tensor, torch.Generator | None], Tensor]


class TensorLoader:
    """Iterable of ``(x, y, *extras)`` batches over ``(inputs, labels, *extras)`` tensors.

    Args:
        tensors: ``(inputs (N, ...), labels (N,), *extras (N, ...))``: stored inputs (e.g.
            uint8 images), class indices and any per-sample tensors carried alongside.
        transform: applied to each input batch on its device (decode, augment, normalise).
        shuffle: new permutation every epoch, from ``seed`` + epoch.
        rank / world_size: this process's share under DDP.
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        batch_size: int,
        transform: Transform | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.tensors = tuple(tensors)
        self.labels = self.tensors[1]
        self.batch_size = batch_size
        self.transform = transform
        self.shuffle, self.drop_last = shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    @property
    def sampler(self) -> TensorLoader:
        """Lightning calls ``loader.sampler.set_epoch(epoch)`` each epoch, resumes included."""
        return self

    batch_sampler = None  # what Lightning's dataloader inspection looks for

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def dataset_size(self) -> int:
        return self.labels.shape[0]

    def _share(self) -> int:
        # Equal shares so every DDP process runs the same number of steps.
        return self.dataset_size // self.world_size if self.world_size > 1 else self.dataset_size

    def __len__(self) -> int:
        n = self._share()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.labels.device)
        # One stream per (seed, epoch): a resumed epoch replays the same batches.
        g.manual_seed(self.seed * 100_003 + self.epoch)
        return g

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        device = self.labels.device
        g = self._generator()
        if self.shuffle:
            order = torch.randperm(self.dataset_size, generator=g, device=device)
        else:
            order = torch.arange(self.dataset_size, device=device)
        if self.world_size > 1:
            order = order[self.rank :: self.world_size][: self._share()]
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            x, *rest = (t[idx] for t in self.tensors)
            if self.transform is not None:
                x = self.transform(x, g)
            yield (x, *rest)
