"""Device and process set-up shared by every layer: which device, how many threads, the seeds,
and the one host-device synchronisation helper (timers call it before reading the clock).

    >>> import torch
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> synchronize(torch.device("cpu"))   # a no-op on CPU; waits for queued kernels on CUDA / MPS
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from tools.core.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name} requested but CUDA is not available here; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name} requested but MPS is not available here; use --device cpu or auto")
    return device


def set_num_threads(num_threads: int) -> None:
    """0 keeps torch's default. Fewer threads than cores is often faster on a shared machine:
    OpenMP threads wait for each other at every op, so one descheduled thread stalls them all."""
    if num_threads < 0:
        raise UserError(f"train.num_threads must be >= 0 (0 = torch's default), got {num_threads}")
    if num_threads:
        torch.set_num_threads(num_threads)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass
    if deterministic:
        # cuBLAS needs this workspace setting before its first call to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def synchronize(device: torch.device | str) -> None:
    """Wait until `device` has finished its queued work (kernels run asynchronously on CUDA and
    MPS, so a clock read without this measures the launch, not the work); a no-op on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; elsewhere what platform says), for records that
    must say which CPU a figure was measured on."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"
