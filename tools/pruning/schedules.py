"""Iterative pruning schedules: how much is pruned after each of T steps. The one implementation
behind unstructured pruning's `schedule_sparsity` and pruning at initialisation's `schedule_density`.

    >>> from tools.pruning.schedules import schedule_point
    >>> schedule_point(0.8, 0.2, step=2, num_steps=4, schedule="linear")   # (sparsity, density)
    (0.4, 0.6)
    >>> round(schedule_point(0.99, 0.01, step=1, num_steps=2, schedule="exponential")[1], 12)
    0.1

linear: sparsity s*t/T; exponential: density d^(t/T) (the same fraction of the survivors each
step, Synaptic-Flow's prune_loop); cubic: sparsity s*(1-(1-t/T)^3) (Zhu & Gupta 2017: prune fast
early, gently late).
"""

from __future__ import annotations

SCHEDULES = ("linear", "exponential", "cubic")


def schedule_point(
    final_sparsity: float, final_density: float, *, step: int, num_steps: int, schedule: str
) -> tuple[float, float]:
    """(sparsity, density) after step `step` (1..num_steps) of `schedule` ending at the final pair.
    Both ends come from the caller, each as it holds it (1 - (1 - d) is not always d in floating
    point, and a density is rounded to a weight count): linear and cubic scale the sparsity, exponential
    powers the density. The caller has checked `schedule` and the step (with its own message)."""
    progress = step / num_steps
    if schedule == "exponential":
        density = final_density**progress
        return 1.0 - density, density
    sparsity = final_sparsity * (progress if schedule == "linear" else 1.0 - (1.0 - progress) ** 3)
    return sparsity, 1.0 - sparsity
