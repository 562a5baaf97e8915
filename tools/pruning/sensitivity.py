"""Per-layer pruning sensitivity: prune one layer at a time, measure accuracy, derive sparsities.

    uv run python -m scripts.sensitivity --checkpoint results/train/quickstart/best_model.pth --max-drop 1.0

    baseline, rows = sensitivity_scan(model, targets, sparsities=[0.1, 0.5, 0.9], scores=layer_scores(targets, "l1"),
                                      loader=sample_eval_subset(data.val, 1000), device=device)
    per_layer = sparsities_for_drop(rows, max_drop=1.0)              # each layer alone within 1 point
    per_layer = sparsities_for_total(rows, params, target_total=0.8) # meets 80% overall

Each measurement prunes a single layer (others dense) to one sparsity with the layerwise mask of
`method` and evaluates on a fixed seeded random sample of the validation split (held in
memory); the weights are restored afterwards.

Deriving a dict: a layer's drop-vs-sparsity curve starts at (0, 0), is made non-decreasing
(measurement noise can make a sparser layer look better) and strictly so by a negligible slope,
and is read between the scanned points by linear interpolation; it is never extrapolated past
the largest scanned sparsity. With a drop budget, each layer gets the largest sparsity whose
drop, pruned alone, stays within it (Han et al. 2015); drops of several layers add up, so the
whole model loses more. With a total target, all layers get the same tolerated drop, found by
bisection so that the weighted mean sparsity equals the target: robust layers go further,
sensitive ones stay denser.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tools.core.errors import UserError
from tools.pruning.unstructured import Target, layerwise_masks, magnitude_scores, random_scores, validate_sparsity
from tools.training.engine import evaluate

SCAN_METHODS = ("l1", "random", "taylor")
_SLOPE = 1e-6  # top-1 points per unit sparsity: makes flat curve segments strictly increasing


# ----------------------------------------------------------------------------- scanning
class EvalSubset:
    """Evaluation batches held in memory, iterable like a loader (len = number of batches)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.num_samples = labels.shape[0]

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        for start in range(0, self.num_samples, self.batch_size):
            yield self.images[start : start + self.batch_size], self.labels[start : start + self.batch_size]


def sample_eval_subset(loader, num_images: int, seed: int = 0):
    """A seeded random sample of `num_images` images of an evaluation loader, kept in memory so
    the scan's hundreds of evaluations neither decode nor transform again. A random sample,
    not the first N: evaluation loaders run in index order, which is class order for image
    folders. 0 (or more than the split holds) = the loader itself."""
    if num_images < 0:
        raise UserError(f"sensitivity.num_images must be >= 0 (0 = all), got {num_images}")
    if num_images == 0 or num_images >= loader.num_samples:
        return loader
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(loader.num_samples, generator=generator)[:num_images].sort().values
    images, labels, position = [], [], 0
    for batch_images, batch_labels in loader:
        size = batch_labels.shape[0]
        local = chosen[(chosen >= position) & (chosen < position + size)] - position
        images.append(batch_images[local.to(batch_images.device)])
        labels.append(batch_labels[local.to(batch_labels.device)])
        position += size
    return EvalSubset(torch.cat(images), torch.cat(labels), loader.batch_size)


def check_sparsities(values: list[float]) -> list[float]:
    if not values:
        raise UserError("sensitivity.sparsities is empty; give e.g. [0.1, 0.3, 0.5, 0.7, 0.9]")
    return sorted({validate_sparsity(v, "sensitivity sparsity") for v in values})


def check_scan_config(
    *, sparsities: list[float], method: str, num_images: int, max_drop: float, target_sparsity: float
) -> list[float]:
    """Validate a sensitivity section up front (before minutes of scanning); returns the
    sorted sparsities."""
    if method not in SCAN_METHODS:
        raise UserError(f"unknown sensitivity method {method!r}; choose one of: {', '.join(SCAN_METHODS)}")
    if num_images < 0:
        raise UserError(f"sensitivity.num_images must be >= 0 (0 = all), got {num_images}")
    if max_drop < 0:
        raise UserError(f"sensitivity.max_drop must be >= 0 top-1 points, got {max_drop}")
    if target_sparsity:
        validate_sparsity(target_sparsity, "sensitivity.target_sparsity")
    return check_sparsities(sparsities)


def layer_scores(
    targets: list[Target], method: str, gradient_scores: dict | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Each target's importance under `method` (taylor takes `gradient_scores`, random `seed`)."""
    if method not in SCAN_METHODS:
        raise UserError(f"unknown sensitivity method {method!r}; choose one of: {', '.join(SCAN_METHODS)}")
    if method == "taylor":
        return {t.name: gradient_scores[t.name] for t in targets}
    if method == "random":
        generator = torch.Generator().manual_seed(seed)
        return {t.name: random_scores(t.tensor, generator) for t in targets}
    return {t.name: magnitude_scores(t.tensor) for t in targets}


@torch.no_grad()
def _evaluate_with_mask(model: nn.Module, target: Target, mask: torch.Tensor, loader, device) -> dict:
    tensor = target.tensor
    saved = tensor.detach().clone()
    tensor.mul_(mask.to(tensor.device, tensor.dtype))
    try:
        return evaluate(model, loader, device=device)
    finally:
        tensor.copy_(saved)


def sensitivity_scan(
    model: nn.Module,
    targets: list[Target],
    *,
    sparsities: list[float],
    scores: dict,
    loader,
    device: torch.device,
    progress=None,
) -> tuple[dict, list[dict]]:
    """(baseline evaluate() dict, rows {layer, params, sparsity, top1, top5, loss, drop}); `scores`
    from layer_scores."""
    sparsities = check_sparsities(sparsities)
    baseline = evaluate(model, loader, device=device)
    rows = []
    for t in targets:
        for s in sparsities:
            mask = layerwise_masks({t.name: scores[t.name]}, {t.name: s})[t.name]
            result = _evaluate_with_mask(model, t, mask, loader, device)
            row = {
                "layer": t.name,
                "params": t.numel(),
                "sparsity": s,
                "top1": result["top1"],
                "top5": result["top5"],
                "loss": result["loss"],
                "drop": baseline["top1"] - result["top1"],
            }
            rows.append(row)
            if progress is not None:
                progress(row)
    return baseline, rows


# ----------------------------------------------------------------------------- deriving
def _curves(rows: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """Layer -> [(sparsity, drop)] from (0, 0), non-decreasing and strictly increasing."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for layer in dict.fromkeys(r["layer"] for r in rows):
        points = sorted((r["sparsity"], r["drop"]) for r in rows if r["layer"] == layer)
        curve = [(0.0, 0.0)]
        for s, drop in points:
            if s <= curve[-1][0]:
                continue
            curve.append((s, max(drop, curve[-1][1] + _SLOPE * (s - curve[-1][0]))))
        curves[layer] = curve
    return curves


def _sparsity_at(curve: list[tuple[float, float]], tolerance: float) -> float:
    """The largest sparsity whose interpolated drop is <= tolerance (capped at the last point)."""
    if tolerance >= curve[-1][1]:
        return curve[-1][0]
    for (s0, d0), (s1, d1) in zip(curve, curve[1:]):
        if d1 > tolerance:
            return s0 + (s1 - s0) * max(0.0, tolerance - d0) / (d1 - d0)
    return curve[-1][0]


def sparsities_for_drop(rows: list[dict], max_drop: float) -> dict[str, float]:
    """Per layer, the largest sparsity costing at most `max_drop` top-1 points when pruned alone."""
    if max_drop < 0:
        raise UserError(f"sensitivity.max_drop must be >= 0 top-1 points, got {max_drop}")
    return {layer: _sparsity_at(curve, max_drop) for layer, curve in _curves(rows).items()}


def total_sparsity(per_layer: dict[str, float], params: dict[str, int]) -> float:
    total = sum(params[k] for k in per_layer)
    return sum(per_layer[k] * params[k] for k in per_layer) / total if total else 0.0


def sparsities_for_total(rows: list[dict], params: dict[str, int], target_total: float) -> dict[str, float]:
    """Per-layer sparsities at one common tolerated drop, the one at which the weighted mean
    sparsity equals `target_total` (bisection; exact to ~1e-9)."""
    validate_sparsity(target_total, "sensitivity.target_sparsity")
    curves = _curves(rows)
    reachable = total_sparsity({k: c[-1][0] for k, c in curves.items()}, params)
    if target_total > reachable + 1e-12:
        raise UserError(
            f"target sparsity {target_total:g} is above the {reachable:.4f} reachable with the scanned "
            f"sparsities; add higher values to sensitivity.sparsities"
        )
    low, high = 0.0, max(c[-1][1] for c in curves.values())
    for _ in range(200):
        mid = (low + high) / 2
        if total_sparsity({k: _sparsity_at(c, mid) for k, c in curves.items()}, params) < target_total:
            low = mid
        else:
            high = mid
    return {k: _sparsity_at(c, high) for k, c in curves.items()}


def derive_layer_sparsity(
    rows: list[dict], params: dict[str, int], *, max_drop: float, target_sparsity: float
) -> tuple[dict[str, float], str]:
    """The dict (rounded to 6 decimals) and a one-line description of the rule used."""
    if target_sparsity > 0:
        per_layer = sparsities_for_total(rows, params, target_sparsity)
        rule = f"total sparsity {target_sparsity:g} at an equal per-layer drop"
    else:
        per_layer = sparsities_for_drop(rows, max_drop)
        rule = f"each layer alone within {max_drop:g} top-1 points"
    return {k: round(v, 6) for k, v in per_layer.items()}, rule
