"""Single-process or DistributedDataParallel, decided by how the script was launched.

    torchrun --nproc_per_node=2 -m scripts.train --config cfgs/cifar10_resnet18.yaml

torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; with WORLD_SIZE > 1 each process takes one GPU
(cuda:LOCAL_RANK, NCCL) or, on CPU, the gloo backend. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn

from tools.core.device import resolve_device


@dataclass
class Dist:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> Dist:
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(device=device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch_dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(device=device, rank=torch_dist.get_rank(), world_size=world_size)


def wrap_ddp(model: nn.Module, dist: Dist) -> nn.Module:
    if dist.world_size <= 1:
        return model
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def cleanup_distributed(dist: Dist) -> None:
    if dist.world_size > 1 and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
