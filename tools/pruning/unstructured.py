"""Unstructured and N:M pruning with exact masks: scores, allocation, schedules, reparameterisation.

    uv run python -m scripts.prune_unstructured --checkpoint results/train/quickstart/best_model.pth --method lamp --sparsity 0.8

    from tools.pruning import unstructured as un
    targets = un.prunable_targets(model, keep_classifier_dense=True)
    masks = un.compute_masks(targets, method="global", mode="global", sparsity=0.8)
    un.apply_masks(targets, masks)            # torch.nn.utils.prune reparameterisation
    fit(..., after_step=lambda: un.enforce_masks(model))
    un.remove_pruning_reparameterization(model)   # plain weights with exact zeros
    un.print_layerwise_sparsity(model)

Methods (a score per weight; the lowest scores are pruned):

- `l1`: |w|, allocated layer by layer (every layer at the target sparsity).
- `global`: |w|, allocated globally (one threshold over all layers).
- `random`: uniform random scores (a sanity baseline), layerwise.
- `taylor`: |w * dL/dw| summed over `score_batches` batches (first-order estimate of the loss
  change from removing w; Molchanov et al. 2019), global.
- `movement`: -w * dL/dw summed during fine-tuning (Sanh et al. 2020): weights moving towards
  zero score low. Layerwise, like Sanh et al.'s per-layer top-k: raw -w*g differs by orders of
  magnitude between layers (conv1, the classifier and 1x1 shortcuts carry the largest), so one
  global threshold put even a 0.1% target mostly into those small layers. Asked for globally
  (`mode=global`), each layer's scores are first divided by their mean |score|.
- `lamp`: w_u^2 / sum_{|w_v| >= |w_u|} w_v^2 inside each layer, pruned globally (Lee et al.
  2021): a global threshold without the layer-scale bias of global magnitude.
- `nm`: N:M, in every group of M consecutive weights along the input dimension keep the N
  largest |w| (2:4 by default). Conv weights are grouped along input channels at each kernel
  position (NVIDIA ASP's layout); layers whose input width is not a multiple of M stay dense.

Allocation (`mode`): `layerwise` prunes round(s_l * n_l) weights of each layer, `global` prunes
round(s * total) weights over all layers together; both are exact, ties broken by position.
`auto` is the method's own mode (above). Per-layer sparsities come from a dict (module name or
prefix -> sparsity), e.g. the one scripts.sensitivity writes.

Masks are torch.nn.utils.prune custom masks: the forward computes weight = weight_orig *
weight_mask, so a pruned weight is zero in every forward whatever the optimizer does. The pruned
entries of weight_orig are zeroed too and `enforce_masks` (an after-step hook) keeps them zero,
so momentum and weight decay cannot build anything up there; removing the reparameterisation
is then exact. Masks only grow: once pruned, a weight stays pruned in later iterative steps.
"""

from __future__ import annotations

import difflib
import math
import sys
from dataclasses import dataclass
from typing import Callable, Iterable, TextIO

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import prune

from tools.core.errors import UserError
from tools.measure.metrics import format_layer_table, layer_sparsity_table
from tools.pruning.schedules import SCHEDULES, schedule_point

__all__ = [
    "METHODS",
    "MODES",
    "SCHEDULES",
    "GRADIENT_METHODS",
    "Target",
    "GradientScores",
    "prunable_targets",
    "validate_sparsity",
    "validate_nm",
    "resolve_mode",
    "natural_mode",
    "resolve_layer_sparsities",
    "magnitude_scores",
    "random_scores",
    "taylor_score",
    "movement_score",
    "lamp_scores",
    "layer_normalized",
    "prune_lowest",
    "layerwise_masks",
    "global_masks",
    "nm_mask",
    "nm_ineligibility",
    "is_nm_pattern",
    "compute_masks",
    "schedule_sparsity",
    "sparsity_schedule",
    "apply_masks",
    "current_masks",
    "enforce_masks",
    "is_reparameterized",
    "remove_pruning_reparameterization",
    "target_sparsity_report",
    "print_layerwise_sparsity",
    "accumulate_taylor_scores",
    "prune_step",
]

METHODS = ("l1", "global", "random", "taylor", "movement", "lamp", "nm")
MODES = ("auto", "layerwise", "global")
GRADIENT_METHODS = ("taylor", "movement")
_NATURAL_MODE = {
    "l1": "layerwise",
    "global": "global",
    "random": "layerwise",
    "taylor": "global",
    "movement": "layerwise",
    "lamp": "global",
    "nm": "layerwise",
}
_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


# ----------------------------------------------------------------------------- targets
@dataclass(frozen=True, eq=False)
class Target:
    """One prunable tensor: `module.<param>`. `name` is the module name for weights (and BN
    scales), "<module>.bias" for biases; it is the key of masks, scores and sparsity dicts."""

    name: str
    module: nn.Module
    param: str = "weight"

    @property
    def tensor(self) -> torch.Tensor:
        """The effective tensor the forward uses (masked when reparameterised)."""
        return getattr(self.module, self.param)

    @property
    def trainable(self) -> nn.Parameter:
        """The parameter the optimizer updates (`<param>_orig` once reparameterised)."""
        orig = getattr(self.module, self.param + "_orig", None)
        return orig if orig is not None else getattr(self.module, self.param)

    def numel(self) -> int:
        return self.tensor.numel()


def prunable_targets(
    model: nn.Module,
    *,
    keep_first_conv_dense: bool = False,
    keep_classifier_dense: bool = False,
    prune_biases: bool = False,
    prune_bn: bool = False,
) -> list[Target]:
    """Conv and linear weights in registration order; the first conv and the last linear (the
    classifier) can be kept dense; biases and BN scales only when asked."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _PRUNABLE)]
    skip = set()
    convs = [n for n, m in layers if not isinstance(m, nn.Linear)]
    linears = [n for n, m in layers if isinstance(m, nn.Linear)]
    if keep_first_conv_dense and convs:
        skip.add(convs[0])
    if keep_classifier_dense and linears:
        skip.add(linears[-1])
    targets = []
    for name, module in model.named_modules():
        if isinstance(module, _PRUNABLE) and name not in skip:
            targets.append(Target(name, module, "weight"))
            if prune_biases and module.bias is not None:
                targets.append(Target(f"{name}.bias", module, "bias"))
        elif prune_bn and isinstance(module, _BatchNorm) and module.affine:
            targets.append(Target(name, module, "weight"))
    if not targets:
        raise UserError(
            "the model has no prunable conv/linear layer left; unset keep_first_conv_dense/keep_classifier_dense"
        )
    return targets


# ----------------------------------------------------------------------------- checking
def validate_sparsity(value: float, what: str = "sparsity") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise UserError(f"{what} {value!r} must be in [0, 1) (a fraction of weights to prune, e.g. 0.8); fix it")
    return float(value)


def validate_nm(n: int, m: int) -> None:
    if not (isinstance(n, int) and isinstance(m, int)) or m < 1 or not 1 <= n <= m:
        raise UserError(f"N:M needs 1 <= N <= M (N weights kept in every M), got {n}:{m}; use e.g. 2:4")


def _check_method(method: str) -> None:
    if method not in METHODS:
        close = difflib.get_close_matches(method, METHODS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown pruning method {method!r}{hint}; choose one of: {', '.join(METHODS)}")


def natural_mode(method: str) -> str:
    _check_method(method)
    return _NATURAL_MODE[method]


def resolve_mode(method: str, mode: str, has_layer_sparsity: bool = False) -> str:
    """`auto` -> the method's own allocation; rejects combinations that mean nothing."""
    _check_method(method)
    if mode not in MODES:
        raise UserError(f"unknown pruning mode {mode!r}; choose one of: {', '.join(MODES)}")
    if method == "nm" and mode == "global":
        raise UserError(
            "method nm keeps N of every M weights inside each group; it has no global mode, use --mode layerwise"
        )
    if method == "global" and mode == "layerwise":
        raise UserError("method global is global magnitude pruning; for layerwise magnitude use --method l1")
    if has_layer_sparsity:
        if mode == "global" or (mode == "auto" and method == "global"):
            raise UserError(
                "per-layer sparsities need layerwise allocation; use --mode layerwise (with l1, random, taylor, movement or lamp)"
            )
        return "layerwise"
    return natural_mode(method) if mode == "auto" else mode


def _matching_key(name: str, keys: Iterable[str]) -> str | None:
    """The most specific key equal to `name` or a module prefix of it."""
    hits = [k for k in keys if name == k or name.startswith(k + ".")]
    return max(hits, key=len) if hits else None


def resolve_layer_sparsities(
    targets: list[Target], default: float, layer_sparsity: dict[str, float] | None
) -> dict[str, float]:
    """Target name -> sparsity: `default`, overridden by the most specific matching key of
    `layer_sparsity` (a module name or a prefix such as "layer3")."""
    layer_sparsity = dict(layer_sparsity or {})
    names = [t.name for t in targets]
    for key, value in layer_sparsity.items():
        validate_sparsity(value, f"sparsity of layer {key!r}")
        if not any(n == key or n.startswith(key + ".") for n in names):
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; prunable layers: {', '.join(names[:6])}, ..."
            raise UserError(f"layer {key!r} in the per-layer sparsities is not a prunable layer of this model{hint}")
    out = {}
    for name in names:
        key = _matching_key(name, layer_sparsity)
        out[name] = layer_sparsity[key] if key is not None else default
    return out


# ----------------------------------------------------------------------------- scores
def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().abs()


def random_scores(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(weight.shape, generator=generator).to(weight.device)


def taylor_score(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """|w * dL/dw|: first-order estimate of the loss change when w is set to zero."""
    return (weight.detach() * grad.detach()).abs()


def movement_score(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """-w * dL/dw: positive when an SGD step moves w away from zero (Sanh et al. 2020)."""
    return -(weight.detach() * grad.detach())


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of each entry: w_u^2 divided by the sum of w_v^2 over all entries at least as
    large (in sorted order, so ties are ranked by position). The largest entry scores 1."""
    squared = weight.detach().flatten().double() ** 2
    order = torch.sort(squared, stable=True).indices
    sorted_sq = squared[order]
    suffix = sorted_sq.flip(0).cumsum(0).flip(0)
    ranked = torch.where(suffix > 0, sorted_sq / suffix.clamp_min(1e-300), torch.zeros_like(sorted_sq))
    scores = torch.empty_like(squared)
    scores[order] = ranked
    return scores.view_as(weight).float()


def layer_normalized(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each layer's scores divided by their mean |score|: raw movement scores -w*g scale with
    the layer's weight and gradient sizes, so a global threshold over them would rank layers, not
    weights."""
    return {n: s / s.detach().abs().mean().clamp_min(torch.finfo(torch.float32).tiny) for n, s in scores.items()}


# ----------------------------------------------------------------------------- allocation
def _round_count(fraction: float, total: int) -> int:
    return int(math.floor(fraction * total + 0.5))


def _pin(scores: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Already-pruned entries get -inf, so they are pruned first and masks only grow."""
    scores = scores.detach().float()
    return scores if keep is None else scores.masked_fill(~keep.bool(), float("-inf"))


def prune_lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Keep-mask (1 kept, 0 pruned) pruning exactly `count` lowest scores; ties by position."""
    flat = scores.flatten()
    mask = torch.ones_like(flat)
    if count > 0:
        mask[torch.sort(flat, stable=True).indices[:count]] = 0
    return mask.view_as(scores)


def _pinned_count(keep: torch.Tensor | None) -> int:
    return 0 if keep is None else int((keep == 0).sum())


def layerwise_masks(
    scores: dict[str, torch.Tensor], sparsities: dict[str, float], previous: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Each layer loses round(s_l * n_l) weights (never fewer than it has already lost)."""
    previous = previous or {}
    masks = {}
    for name, s in scores.items():
        keep = previous.get(name)
        count = max(_round_count(sparsities[name], s.numel()), _pinned_count(keep))
        masks[name] = prune_lowest(_pin(s, keep), count)
    return masks


def global_masks(
    scores: dict[str, torch.Tensor], sparsity: float, previous: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """round(sparsity * total) weights are pruned over all layers together."""
    previous = previous or {}
    names = list(scores)
    pinned = [_pin(scores[n], previous.get(n)).flatten().cpu() for n in names]
    total = sum(p.numel() for p in pinned)
    count = max(_round_count(sparsity, total), sum(_pinned_count(previous.get(n)) for n in names))
    flat_mask = prune_lowest(torch.cat(pinned), count)
    masks, start = {}, 0
    for name in names:
        size = scores[name].numel()
        masks[name] = flat_mask[start : start + size].view_as(scores[name]).to(scores[name].device)
        start += size
    return masks


def _input_last(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, *kernel) -> (out, *kernel, in): the input dimension last."""
    return weight.movedim(1, -1) if weight.dim() > 2 else weight


def _input_first(weight: torch.Tensor) -> torch.Tensor:
    return weight.movedim(-1, 1) if weight.dim() > 2 else weight


def nm_ineligibility(module: nn.Module, param: str, m: int) -> str | None:
    """Why `module.<param>` cannot take an N:M mask along its input dimension (None if it can)."""
    if param != "weight" or not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return "N:M applies to conv and linear weights only"
    width = module.in_features if isinstance(module, nn.Linear) else module.in_channels // module.groups
    if width % m:
        return f"input width {width} is not a multiple of M={m}"
    return None


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask with the N highest scores of every M consecutive entries along the input
    dimension (dim 1; for convs at each kernel position). Ties keep the earlier entry."""
    validate_nm(n, m)
    grouped = _input_last(scores.detach().float())
    if grouped.shape[-1] % m:
        raise ValueError(f"input dimension {grouped.shape[-1]} is not a multiple of {m}")
    groups = grouped.reshape(-1, m)
    # sort descending & stable: the first N in each group are kept
    keep_idx = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]
    mask = torch.zeros_like(groups).scatter_(1, keep_idx, 1.0)
    return _input_first(mask.view_as(grouped)).contiguous()


def is_nm_pattern(tensor: torch.Tensor, n: int, m: int) -> bool:
    """True when every group of M along the input dimension has at most N non-zeros."""
    grouped = _input_last(tensor.detach())
    if grouped.shape[-1] % m:
        return False
    return bool(((grouped.reshape(-1, m) != 0).sum(1) <= n).all())


def compute_masks(
    targets: list[Target],
    *,
    method: str,
    mode: str,
    sparsity: float = 0.5,
    layer_sparsity: dict[str, float] | None = None,
    gradient_scores: dict[str, torch.Tensor] | None = None,
    nm: tuple[int, int] = (2, 4),
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Keep-masks (target name -> 0/1 tensor) for `method` under `mode` ("layerwise"/"global",
    already resolved). `gradient_scores` are required for taylor and movement; `nm` = (N, M) keeps
    N of every M weights for method nm. Targets that are already reparameterised keep their
    pruned entries pruned."""
    _check_method(method)
    if method == "nm":
        return _nm_masks(targets, *nm)
    validate_sparsity(sparsity)
    scores = _scores(targets, method, gradient_scores, generator)
    previous = current_masks(targets)
    if mode == "global":
        if layer_sparsity:
            raise UserError("per-layer sparsities need layerwise allocation; use mode layerwise")
        if method == "movement":
            scores = layer_normalized(scores)
        return global_masks(scores, sparsity, previous)
    if mode != "layerwise":
        raise UserError(f"mode must be resolved to layerwise or global here, got {mode!r}; see resolve_mode")
    return layerwise_masks(scores, resolve_layer_sparsities(targets, sparsity, layer_sparsity), previous)


def _nm_masks(targets: list[Target], n: int, m: int) -> dict[str, torch.Tensor]:
    validate_nm(n, m)
    return {
        t.name: nm_mask(magnitude_scores(t.tensor), n, m)
        for t in targets
        if nm_ineligibility(t.module, t.param, m) is None
    }


def _scores(
    targets: list[Target], method: str, gradient_scores: dict | None, generator: torch.Generator | None
) -> dict[str, torch.Tensor]:
    if method in GRADIENT_METHODS:
        missing = [t.name for t in targets if t.name not in (gradient_scores or {})]
        if missing:
            raise ValueError(f"{method} needs gradient scores for every target; missing {missing[:3]}")
        return {t.name: gradient_scores[t.name] for t in targets}
    if method == "random":
        generator = generator or torch.Generator().manual_seed(0)
        return {t.name: random_scores(t.tensor, generator) for t in targets}
    if method == "lamp":
        return {t.name: lamp_scores(t.tensor) for t in targets}
    return {t.name: magnitude_scores(t.tensor) for t in targets}


# ----------------------------------------------------------------------------- schedules
def schedule_sparsity(final: float, step: int, num_steps: int, schedule: str) -> float:
    """Sparsity after step `step` (1..num_steps) of a schedule ending at `final` (tools.pruning.schedules):
    linear s*t/T; exponential 1-(1-s)^(t/T); cubic s*(1-(1-t/T)^3)."""
    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    if num_steps < 1 or not 1 <= step <= num_steps:
        raise UserError(f"num_iterations must be >= 1, got {num_steps}")
    return schedule_point(final, 1.0 - final, step=step, num_steps=num_steps, schedule=schedule)[0]


def sparsity_schedule(final: float, num_steps: int, schedule: str) -> list[float]:
    return [schedule_sparsity(final, t, num_steps, schedule) for t in range(1, num_steps + 1)]


# ----------------------------------------------------------------------------- masks on modules
def is_reparameterized(module: nn.Module, param: str = "weight") -> bool:
    return hasattr(module, param + "_mask") and hasattr(module, param + "_orig")


@torch.no_grad()
def apply_masks(targets: list[Target], masks: dict[str, torch.Tensor]) -> None:
    """Install (or replace) the keep-masks as torch.nn.utils.prune custom masks and zero the
    pruned entries of the trained parameter, so nothing is left there for an optimizer to move."""
    for t in targets:
        if t.name not in masks:
            continue
        mask = masks[t.name].to(device=t.tensor.device, dtype=t.tensor.dtype)
        if is_reparameterized(t.module, t.param):
            getattr(t.module, t.param + "_mask").copy_(mask)
        else:
            prune.custom_from_mask(t.module, t.param, mask)
        orig = getattr(t.module, t.param + "_orig")
        orig.mul_(mask)
        # A detached product (not a graph node) keeps the module deepcopy-able; every forward
        # recomputes it through the pruning pre-hook anyway.
        setattr(t.module, t.param, orig.detach() * mask)


def current_masks(targets: list[Target]) -> dict[str, torch.Tensor]:
    """Keep-masks already installed on `targets` (reparameterised ones only)."""
    return {
        t.name: getattr(t.module, t.param + "_mask").detach().clone()
        for t in targets
        if is_reparameterized(t.module, t.param)
    }


def _pruned_params(model: nn.Module) -> Iterable[tuple[nn.Module, str]]:
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                yield module, hook._tensor_name


@torch.no_grad()
def enforce_masks(model: nn.Module) -> None:
    """After an optimizer step: re-zero the pruned entries of every `<param>_orig`."""
    for module, name in _pruned_params(model):
        getattr(module, name + "_orig").mul_(getattr(module, name + "_mask"))


def remove_pruning_reparameterization(model: nn.Module) -> nn.Module:
    """Make the masks permanent: plain `weight` parameters holding exact zeros, the state dict
    of the unpruned architecture (loads into a freshly built model)."""
    for module, name in list(_pruned_params(model)):
        prune.remove(module, name)
    return model


# ----------------------------------------------------------------------------- reporting
def target_sparsity_report(targets: list[Target]) -> dict:
    """Actual sparsity over the targets: {total, pruned, params, layers: {name: sparsity}}."""
    layers, pruned, params = {}, 0, 0
    for t in targets:
        zeros = t.numel() - int(torch.count_nonzero(t.tensor))
        layers[t.name] = zeros / t.numel() if t.numel() else 0.0
        pruned += zeros
        params += t.numel()
    return {"total": pruned / params if params else 0.0, "pruned": pruned, "params": params, "layers": layers}


def print_layerwise_sparsity(model: nn.Module, file: TextIO | None = None) -> str:
    """Print (and return) the per-layer table of conv/linear weight sparsity."""
    text = format_layer_table(layer_sparsity_table(model))
    print(text, file=file or sys.stdout)
    return text


# ----------------------------------------------------------------------------- gradient scores
class GradientScores:
    """Context manager summing per-weight gradient scores over every backward pass while it is
    active: `taylor` |w * g| per batch, `movement` -w * g. Hooks sit on the trained parameters,
    so w is the value before the optimizer step that g will drive."""

    def __init__(self, targets: list[Target], kind: str) -> None:
        if kind not in GRADIENT_METHODS:
            raise ValueError(f"kind must be one of {GRADIENT_METHODS}, got {kind!r}")
        self.targets, self.kind = targets, kind
        self.scores: dict[str, torch.Tensor] = {}
        self.halves: tuple[dict, dict] = ({}, {})  # even and odd backward passes, for `agreement`
        self.num_backwards = 0
        self._handles: list = []

    def __enter__(self) -> "GradientScores":
        score = taylor_score if self.kind == "taylor" else movement_score
        for i, t in enumerate(self.targets):
            param = t.trainable
            self._handles.append(param.register_hook(self._hook(t.name, param, score, first=i == 0)))
        return self

    def _hook(self, name: str, param: torch.Tensor, score: Callable, first: bool):
        def hook(grad: torch.Tensor) -> None:
            value = score(param, grad)
            half = self.halves[self.num_backwards % 2]  # the first target's grad comes last in a pass
            for sums in (self.scores, half):
                sums[name] = sums[name] + value if name in sums else value.clone()
            self.num_backwards += int(first)

        return hook

    def agreement(self) -> float | None:
        """Split-half reliability of the summed scores: the correlation, inside each layer, of the
        sums over even and over odd backward passes, averaged weighted by the layer's size. Near 1
        the ranking is a signal the passes share; near 0 it is gradient noise, as -w*g is on a
        model already trained on this task (its weights barely move). None before two passes."""
        even, odd = self.halves
        pairs = [(even[n].flatten(), odd[n].flatten()) for n in even if n in odd]
        pairs = [(a, b) for a, b in pairs if a.numel() > 1 and a.std() > 0 and b.std() > 0]
        if self.num_backwards < 2 or not pairs:
            return None
        sizes = torch.tensor([float(a.numel()) for a, _ in pairs])
        correlations = torch.stack([torch.corrcoef(torch.stack([a, b]))[0, 1] for a, b in pairs])
        return float((correlations * sizes).sum() / sizes.sum())

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def accumulate_taylor_scores(
    model: nn.Module,
    targets: list[Target],
    loader,
    *,
    num_batches: int,
    device: torch.device,
    loss_fn: Callable | None = None,
) -> dict[str, torch.Tensor]:
    """|w * dL/dw| summed over the first `num_batches` batches of `loader`. BN runs in eval
    mode and no step is taken, so the model is left exactly as it was."""
    import torch.nn.functional as F

    loss_fn = loss_fn or (lambda logits, y, x: F.cross_entropy(logits, y))
    was_training = model.training
    model.eval()
    with GradientScores(targets, "taylor") as acc:
        for i, (images, labels) in enumerate(loader):
            if i >= num_batches:
                break
            images, labels = images.to(device), labels.to(device)
            model.zero_grad(set_to_none=True)
            loss_fn(model(images), labels, images).backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    if not acc.scores:
        raise UserError("the training loader yielded no batch for the taylor scores; check data.train_subset")
    return acc.scores


def prune_step(
    targets: list[Target],
    *,
    method: str,
    mode: str,
    sparsity: float,
    layer_sparsity: dict[str, float] | None = None,
    gradient_scores: dict | None = None,
    nm: tuple[int, int] = (2, 4),
    generator: torch.Generator | None = None,
) -> dict:
    """compute_masks + apply_masks; returns the actual sparsity report of the targets."""
    masks = compute_masks(
        targets,
        method=method,
        mode=mode,
        sparsity=sparsity,
        layer_sparsity=layer_sparsity,
        gradient_scores=gradient_scores,
        nm=nm,
        generator=generator,
    )
    apply_masks(targets, masks)
    return target_sparsity_report(targets)
