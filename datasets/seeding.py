"""Seeded index arithmetic: epoch orders, rank shards, held-out splits, subsets.

    from datasets.seeding import derive_seed, epoch_order, shard, split_indices
    order = epoch_order(50_000, seed=0, epoch=3, shuffle=True)   # same tensor every call
    mine = shard(order, rank=1, world_size=4, pad=True)          # DistributedSampler semantics
    train_idx, val_idx = split_indices(50_000, val_fraction=0.1, seed=0)

Every random choice in the data pipeline goes through a private `torch.Generator` seeded by
`derive_seed(...)`, never torch's global RNG: a run resumed at epoch k must see exactly the
batches an uninterrupted run saw, whatever else consumed random numbers in between.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch

_SEED_MASK = (1 << 63) - 1


@dataclass(frozen=True)
class Batching:
    """How a loader cuts its split into batches: size, shuffled per epoch (train) or in order (eval),
    the seed of its order, and this rank's shard of `world_size`."""

    batch_size: int
    shuffle: bool
    seed: int
    rank: int = 0
    world_size: int = 1


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that is a pure function of `parts` (stable across processes and runs,
    unlike Python's salted `hash`), so independent streams never share random numbers."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & _SEED_MASK


def generator_for(*parts: object) -> torch.Generator:
    """A fresh CPU generator seeded by `derive_seed(*parts)`."""
    gen = torch.Generator(device="cpu")
    gen.manual_seed(derive_seed(*parts))
    return gen


def epoch_order(num_items: int, *, seed: int, epoch: int, shuffle: bool) -> torch.Tensor:
    """Positions 0..num_items-1 in this epoch's order: a seeded permutation, or identity."""
    if not shuffle:
        return torch.arange(num_items)
    return torch.randperm(num_items, generator=generator_for(seed, "order", epoch))


def shard(order: torch.Tensor, *, rank: int, world_size: int, pad: bool) -> torch.Tensor:
    """This rank's share of `order`, strided like DistributedSampler.

    pad=True repeats the first items so every rank gets ceil(n / world_size) (equal batch
    counts, which collective training steps need); pad=False gives disjoint shards whose
    union is exactly `order` (exact totals for evaluation, at the cost of uneven lengths).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    if pad and world_size > 1 and len(order) > 0:
        total = math.ceil(len(order) / world_size) * world_size
        repeats = math.ceil(total / len(order))
        order = order.repeat(repeats)[:total]
    return order[rank::world_size]


def split_indices(num_items: int, *, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded disjoint (train, val) index sets; val gets round(num_items * val_fraction)."""
    num_val = round(num_items * val_fraction)
    perm = torch.randperm(num_items, generator=generator_for(seed, "val_split"))
    return perm[num_val:].sort().values, perm[:num_val].sort().values


def subset_indices(indices: torch.Tensor, *, size: int, seed: int, stream: str) -> torch.Tensor:
    """A seeded random subset of `size` entries of `indices` (all of them when size is 0 or
    not smaller), kept in ascending order so eval loaders stay ordered."""
    if size <= 0 or size >= len(indices):
        return indices
    pick = torch.randperm(len(indices), generator=generator_for(seed, "subset", stream))[:size]
    return indices[pick.sort().values]
