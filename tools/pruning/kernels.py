"""Finer structured granularities, applied as masks: whole k x k kernels, and fixed patterns
inside each kernel.

    uv run python -m scripts.prune_structured --checkpoint results/train/quickstart/best_model.pth \
        --granularity kernel --method l1 --sparsity 0.5

    masks = prune_kernels(model, KernelPruning("intra_kernel", "l2", pattern_size=4, num_patterns=8), ratio=0.2,
                          ignored_layers=["fc"])
    apply_kernel_masks(masks)   # again after every optimizer step while fine-tuning

- kernel: removes whole (output, input) connections of k x k convolutions (Mao et al. 2017,
  "Exploring the granularity of sparsity"), ranked by the kernel's L1/L2 norm, per layer or
  globally (norms divided by the layer's mean norm), never more than max_pruning_ratio of a
  layer's kernels.
- intra_kernel: every 3x3 kernel keeps `pattern_size` entries (the centre included) in one of
  `num_patterns` shapes, the shapes that most often preserve the most weight energy across
  the model (PatDNN, Niu et al. 2020), plus kernel ("connectivity") pruning at the ratio.

Tensor shapes do not change, so dense MACs do not either: these are reported with non-zero
MACs (tools.measure.metrics.count_nonzero_macs_params), what sparse or pattern kernels can exploit.
1x1 convolutions have no inside and are left alone; so are other than 3x3 kernels by patterns.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn

from tools.core.errors import UserError

__all__ = [
    "KERNEL_METHODS",
    "kernel_layers",
    "kernel_scores",
    "kernel_masks",
    "pattern_library",
    "pattern_masks",
    "KernelPruning",
    "prune_kernels",
    "apply_kernel_masks",
    "masks_from_zeros",
]

KERNEL_METHODS = ("l1", "l2", "random")
PATTERN_KERNEL = (3, 3)

Masks = dict[nn.Conv2d, torch.Tensor]


def kernel_layers(model: nn.Module, ignored_layers: list[str] = ()) -> list[nn.Conv2d]:
    """Convolutions with kernels larger than 1x1, outside the named modules."""
    modules = dict(model.named_modules())
    skip = {sub for name in ignored_layers if name in modules for sub in modules[name].modules()}
    return [m for m in model.modules() if isinstance(m, nn.Conv2d) and math.prod(m.kernel_size) > 1 and m not in skip]


def kernel_scores(conv: nn.Conv2d, method: str, seed: int = 0) -> torch.Tensor:
    """(out, in / groups) scores of each kernel: its L1 or L2 norm, or seeded noise."""
    w = conv.weight.detach().float()
    if method == "l1":
        return w.abs().sum((2, 3))
    if method == "l2":
        return w.pow(2).sum((2, 3)).sqrt()
    if method == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.rand(w.shape[:2], generator=gen).to(w.device) * (w.abs().sum((2, 3)) > 0)
    raise UserError(
        f"structured.method {method!r} has no kernel-level score; "
        f"kernel and intra_kernel granularities use one of: {', '.join(KERNEL_METHODS)}"
    )


def kernel_masks(
    layers: list[nn.Conv2d],
    *,
    ratio: float,
    method: str,
    global_pruning: bool = True,
    max_pruning_ratio: float = 1.0,
    seed: int = 0,
) -> Masks:
    """(out, in, 1, 1) keep-masks removing `ratio` of all kernels (global ranking of
    mean-normalised scores) or of each layer's kernels; a layer loses at most
    max_pruning_ratio of its kernels. Already-zero kernels score 0 and count as removed."""
    scores = [kernel_scores(conv, method, seed + i) for i, conv in enumerate(layers)]
    if global_pruning:
        counts = _global_counts([s / s.mean().clamp_min(1e-12) for s in scores], ratio)
    else:
        counts = [int(ratio * s.numel()) for s in scores]
    masks = {}
    for conv, s, n in zip(layers, scores, counts):
        n = min(n, int(max_pruning_ratio * s.numel()))
        keep = torch.ones(s.numel(), dtype=torch.bool, device=s.device)
        keep[torch.argsort(s.flatten(), stable=True)[:n]] = False
        masks[conv] = keep.view(*s.shape, 1, 1)
    return masks


def _global_counts(normalised: list[torch.Tensor], ratio: float) -> list[int]:
    """How many kernels of each layer fall among the `ratio` lowest of all layers together."""
    flat = torch.cat([s.flatten().cpu() for s in normalised])
    n = int(ratio * flat.numel())
    owner = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(normalised)])
    chosen = owner[torch.argsort(flat, stable=True)[:n]]
    return torch.bincount(chosen, minlength=len(normalised)).tolist()


def _candidate_patterns(pattern_size: int) -> torch.Tensor:
    """All 3x3 patterns of `pattern_size` entries that keep the centre, as (P, 9) bools."""
    others = [i for i in range(9) if i != 4]
    rows = []
    for combo in itertools.combinations(others, pattern_size - 1):
        row = torch.zeros(9, dtype=torch.bool)
        row[[4, *combo]] = True
        rows.append(row)
    return torch.stack(rows)


def _energies(conv: nn.Conv2d, patterns: torch.Tensor) -> torch.Tensor:
    """(kernels, P) weight energy each pattern would keep."""
    w2 = conv.weight.detach().float().pow(2).flatten(0, 1).flatten(1)  # (kernels, 9)
    return w2 @ patterns.to(w2).T


def pattern_library(layers: list[nn.Conv2d], *, pattern_size: int, num_patterns: int) -> torch.Tensor:
    """The `num_patterns` candidate patterns that are most often the best fit of a kernel."""
    if not 1 <= pattern_size <= 9:
        raise UserError(f"structured.pattern_size must be 1-9 (entries kept per 3x3 kernel), got {pattern_size}")
    if num_patterns < 1:
        raise UserError(f"structured.num_patterns must be at least 1, got {num_patterns}")
    candidates = _candidate_patterns(pattern_size)
    votes = torch.zeros(len(candidates))
    for conv in layers:
        if conv.kernel_size == PATTERN_KERNEL:
            best = _energies(conv, candidates).argmax(1).cpu()
            votes += torch.bincount(best, minlength=len(candidates)).float()
    order = torch.argsort(votes, descending=True, stable=True)
    return candidates[order[:num_patterns]]


def pattern_masks(layers: list[nn.Conv2d], library: torch.Tensor) -> Masks:
    """(out, in, 3, 3) keep-masks: each 3x3 kernel keeps the library pattern preserving the most
    of its energy. Other kernel sizes are left out."""
    masks = {}
    for conv in layers:
        if conv.kernel_size != PATTERN_KERNEL:
            continue
        best = _energies(conv, library).argmax(1)
        masks[conv] = library.to(best.device)[best].view_as(conv.weight)
    return masks


@dataclass(frozen=True)
class KernelPruning:
    """How prune_kernels ranks and zeroes kernels (the structured.* keys of the same names)."""

    granularity: str  # kernel | intra_kernel (kernels, then a pattern inside each kept one)
    method: str  # see KERNEL_METHODS
    global_pruning: bool = True  # rank all layers' kernels together, else each layer alone
    max_pruning_ratio: float = 1.0  # no layer loses more than this share of its kernels
    pattern_size: int = 4  # intra_kernel: entries kept in each 3x3 kernel
    num_patterns: int = 8  # intra_kernel: patterns in the library
    seed: int = 0  # the random method


def prune_kernels(model: nn.Module, spec: KernelPruning, *, ratio: float, ignored_layers: list[str] = ()) -> Masks:
    """Zero kernels (and, for intra_kernel, entries outside each kernel's pattern) in place.
    Returns the combined element masks, to re-apply after each fine-tuning step."""
    layers = kernel_layers(model, ignored_layers)
    if not layers:
        raise UserError(
            "the model has no k x k convolutions (k > 1) outside ignored_layers; "
            "kernel and intra_kernel granularities need some"
        )
    if spec.granularity == "intra_kernel":
        library = pattern_library(layers, pattern_size=spec.pattern_size, num_patterns=spec.num_patterns)
        apply_kernel_masks(pattern_masks(layers, library))
    apply_kernel_masks(
        kernel_masks(
            layers,
            ratio=ratio,
            method=spec.method,
            global_pruning=spec.global_pruning,
            max_pruning_ratio=spec.max_pruning_ratio,
            seed=spec.seed,
        )
    )
    return masks_from_zeros(layers)


@torch.no_grad()
def apply_kernel_masks(masks: Masks) -> None:
    for conv, mask in masks.items():
        conv.weight.mul_(mask.to(conv.weight.device, conv.weight.dtype))


def masks_from_zeros(layers: list[nn.Conv2d]) -> Masks:
    """Element masks of the weights that are non-zero now: what pruning left."""
    return {conv: conv.weight.detach() != 0 for conv in layers}
