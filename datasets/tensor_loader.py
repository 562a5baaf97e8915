"""Fast-path loader: a whole split as one uint8 tensor in memory (on the GPU when training there).

    from datasets.tensor_loader import TensorLoader
    loader = TensorLoader(images_u8, labels, indices, Batching(batch_size=128, shuffle=True, seed=0),
                          augment=AugmentSpec(4, True), mean=mean, std=std)
    for epoch in range(start_epoch, epochs):
        loader.set_epoch(epoch)               # order and augmentation = f(seed, epoch)
        for images, labels in loader: ...     # float32 NCHW normalized, int64, on images_u8.device

Batches are made by indexing the resident tensor, then augmented and normalized with a few
vectorized tensor ops. Nothing is copied per sample and no worker processes are needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from datasets.augment import AugmentParams, AugmentSpec, crop_flip, draw_params
from datasets.pixels import Normalizer
from datasets.seeding import Batching, epoch_order, generator_for, shard


class TensorLoader:
    """Batches of `images_u8[indices]` (N x C x H x W uint8) with `labels[indices]`.

    Train loaders (shuffle=True) reshuffle and redraw augmentation per epoch, keep the last
    partial batch, and pad rank shards to equal length; eval loaders keep dataset order and
    give each rank a disjoint unpadded shard. Call `set_epoch` before each epoch: like
    DistributedSampler, iterating twice without it repeats the same epoch.
    """

    def __init__(
        self,
        images_u8: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
        batching: Batching,
        *,
        augment: AugmentSpec | None,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ):
        batch_size, shuffle, seed = batching.batch_size, batching.shuffle, batching.seed
        rank, world_size = batching.rank, batching.world_size
        self.images_u8 = images_u8
        self.labels = labels
        self.indices = indices.to(images_u8.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.normalizer = Normalizer(mean, std, images_u8.device)
        self.num_samples = len(self._positions())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.images_u8.device
        positions = self._positions().to(device)
        sample_ids = self.indices[positions]
        params = self._augment_params(positions, device)
        for start in range(0, len(sample_ids), self.batch_size):
            ids = sample_ids[start : start + self.batch_size]
            batch = self.images_u8[ids]
            if params is not None:
                batch = crop_flip(batch, self.augment.pad_px, params.take(slice(start, start + len(ids))))
            yield self.normalizer.apply(batch), self.labels[ids]

    def _positions(self) -> torch.Tensor:
        """This rank's positions into `indices` for the current epoch."""
        order = epoch_order(len(self.indices), seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        return shard(order, rank=self.rank, world_size=self.world_size, pad=self.shuffle)

    def _augment_params(self, positions: torch.Tensor, device: torch.device) -> AugmentParams | None:
        """Per-item draws for the epoch, indexed by position in `indices`, so an image's
        augmentation depends on (seed, epoch, image) only, not on batch size or world size."""
        if self.augment is None:
            return None
        gen = generator_for(self.seed, "augment", self.epoch)
        params = draw_params(self.augment, num_items=len(self.indices), generator=gen)
        return params.to(device).take(positions)
