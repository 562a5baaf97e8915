"""The `profile:` section of the config (read by tools.measure.profiling and scripts.profile),
registered with tools.core.config.

    >>> ProfileConfig().batch_sizes
    [1, 32, 256]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.core.config import Bound, config_section


@config_section("profile")
@dataclass
class ProfileConfig:
    warmup: int = 10  # untimed iterations before timing
    repeats: int = 50  # timed iterations; median and p90 come from these
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32, 256])
    num_threads: int = 0  # CPU threads for timing; 0 = torch's default
    rounds: int = 1  # > 1: models take turns, repeats / rounds runs each per round (fair on a shared machine)

    def check(self, bound: Bound) -> None:
        bound("warmup", ge=0)
        bound("repeats", ge=1)
        bound("batch_sizes", ge=1)
        bound("num_threads", ge=0, le=4096, why="0 = torch's default")
        bound("rounds", ge=1)
