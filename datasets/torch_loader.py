"""DataLoader path: a map-style dataset + per-sample transforms in worker processes.

    from datasets.torch_loader import TorchLoader
    loader = TorchLoader(base_dataset, train_transform, indices, Batching(batch_size=128, shuffle=True, seed=0),
                         num_workers=2, device="cuda")
    loader.set_epoch(epoch)                   # order AND random transforms = f(seed, epoch)
    for images, labels in loader: ...         # moved to `device` (pinned + non_blocking on CUDA)

Determinism with workers: the sampler (main process) yields `(index, sample_seed)` pairs, and
the worker seeds torch's RNG with `sample_seed` just for that sample's transform (restoring it
afterwards). Persistent workers seed their RNG only once, at start-up, so per-epoch seeding of
the DataLoader generator alone would make epoch k depend on every epoch before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from datasets.seeding import Batching, derive_seed, epoch_order, generator_for, shard
from tools.core.errors import UserError


class EpochSampler(Sampler):
    """Yields `(index into base dataset, sample_seed)` for this rank and epoch."""

    def __init__(self, indices: torch.Tensor, *, shuffle: bool, seed: int, rank: int, world_size: int):
        self.indices = indices
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def positions(self) -> torch.Tensor:
        order = epoch_order(len(self.indices), seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        return shard(order, rank=self.rank, world_size=self.world_size, pad=self.shuffle)

    def __len__(self) -> int:
        return len(self.positions())

    def __iter__(self) -> Iterator[tuple[int, int]]:
        positions = self.positions()
        # One seed per item (not per position) so an image's augmentation in an epoch does not
        # depend on batch size or world size.
        gen = generator_for(self.seed, "augment", self.epoch)
        item_seeds = torch.randint(0, 2**62, (len(self.indices),), generator=gen)
        yield from zip(self.indices[positions].tolist(), item_seeds[positions].tolist())


class SeededTransformDataset(Dataset):
    """`base[index]` -> (image, label) with `transform(image)` run under `sample_seed`."""

    def __init__(self, base: Any, transform: Callable):
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, sample_seed = item
        image, label = self.base[index]
        # torchvision's random transforms draw from the CPU default generator. Its state is
        # restored afterwards: with num_workers=0 this runs in the trainer's own process, whose
        # RNG we must not disturb. (The generator directly, not torch.manual_seed/fork_rng:
        # those also visit every accelerator backend and cost ~150 us per sample.)
        generator = torch.default_generator
        saved_state = generator.get_state()
        generator.manual_seed(sample_seed)
        try:
            image = self.transform(image)
        finally:
            generator.set_state(saved_state)
        return image, int(label)


class TensorImages(Dataset):
    """(C x H x W uint8 tensor, label) items from in-memory tensors (synthetic data on the
    DataLoader path); the transforms accept tensors as they accept PIL images."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor):
        self.images_u8 = images_u8
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images_u8[index], int(self.labels[index])


class TorchLoader:
    """Loader protocol over a torch DataLoader: `set_epoch`, `len`, `batch_size`, `num_samples`.

    Same batching rules as TensorLoader: train keeps the last partial batch and pads rank
    shards; eval is ordered with disjoint unpadded shards.
    """

    def __init__(
        self,
        base: Any,
        transform: Callable,
        indices: torch.Tensor,
        batching: Batching,
        *,
        num_workers: int,
        device: torch.device | str = "cpu",
    ):
        batch_size, shuffle, seed = batching.batch_size, batching.shuffle, batching.seed
        rank, world_size = batching.rank, batching.world_size
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.seed = seed
        self.sampler = EpochSampler(indices, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size)
        self.num_samples = len(self.sampler)
        self.generator = generator_for(seed, "dataloader", 0)
        self.loader = DataLoader(
            SeededTransformDataset(base, transform),
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0,
            generator=self.generator,
        )

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(derive_seed(self.seed, "dataloader", epoch))

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        try:
            for images, labels in self.loader:
                yield (
                    images.to(self.device, non_blocking=non_blocking),
                    labels.to(self.device, non_blocking=non_blocking),
                )
        except UserError as e:  # from a worker it arrives wrapped in the worker's traceback: keep its last line
            raise UserError(
                str(e).strip().splitlines()[-1].removeprefix(f"{UserError.__module__}.UserError: ")
            ) from None
