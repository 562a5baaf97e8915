"""Loader-only throughput, to tell whether data loading or the model limits training speed.

    from datasets import benchmark_loader, build_data
    data = build_data(cfg.data, device="cuda")
    print(f"{benchmark_loader(data.train, num_batches=100):.0f} images/s")

One batch is drawn before the clock starts (worker start-up and first allocations are not
throughput); the loader is cycled when it has fewer batches than asked; on CUDA the clock
stops only after the device has finished the queued work.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator

from tools.core.device import synchronize


def benchmark_loader(loader: Iterable, num_batches: int) -> float:
    """Images per second delivered by `loader` over `num_batches` batches."""
    if num_batches < 1:
        raise ValueError(f"num_batches={num_batches} must be at least 1")
    batches = _cycle(loader)
    images, _ = next(batches)
    synchronize(images.device)
    num_images = 0
    started = time.perf_counter()
    for images, _ in itertools.islice(batches, num_batches):
        num_images += len(images)
    synchronize(images.device)
    return num_images / (time.perf_counter() - started)


def _cycle(loader: Iterable) -> Iterator:
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the loader yields no batches")
