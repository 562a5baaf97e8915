"""Structured (channel/filter) pruning on torch-pruning's DependencyGraph, with MACs targets.

    uv run python -m scripts.prune_structured --checkpoint results/train/quickstart/best_model.pth \
        --method taylor --target-macs-reduction 0.5

    from tools import pruning_utils as pu
    example = torch.zeros(1, 3, 32, 32)
    table = pu.importance_table(model, example, method="l2", ignored_layers=pu.output_layer_names(model, example))
    pu.prune_channels(model, example, ratio=0.3, table=table, round_to=8)       # in place, physically smaller
    found = pu.search_ratio(model, target=0.5, tolerance=0.01, prune=..., reduction_of=...)  # MACs target

Importance (`STRUCTURED_METHODS`), each a torch-pruning group importance, so coupled layers (a residual
sum, a depthwise conv and its BN, a concatenation) are scored and removed together:

- l1 / l2: group L1 / L2 norm of every weight the channel touches (GroupMagnitudeImportance).
- bn_scale: |gamma| of the group's BatchNorms, un-normalised, ranked globally as in Network
  Slimming (Liu et al. 2017); pair it with the L1 sparsity phase (`bn_l1_loss`).
- taylor: |w * dL/dw| summed over the group (Molchanov et al. 2019), gradients accumulated over
  calibration batches by `accumulate_gradients`.
- lamp: LAMP scores (Lee et al. 2021), layer-adaptive, so meaningful with global ranking.
- fpgm: distance to the geometric median of the layer's filters (He et al. 2019).
- random: a control; seeded.

Importance is computed once per pruning (`importance_table`) and looked up by layer name, so
the MACs-target search can prune many copies of a model cheaply and consistently: reductions
then grow monotonically with the ratio, and bisection between two ratios is well defined.

Allocation follows torch-pruning (global ranking or one ratio per layer, `layer_ratios` per
module, `round_to`), plus a per-layer cap that torch-pruning applies only between iterative
steps: no layer keeps fewer than (1 - max_pruning_ratio) of its original channels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch_pruning as tp
from torch import nn

from tools import kernel_pruning
from tools.engine import LossFn
from tools.errors import UserError
from tools.kernel_pruning import *  # noqa: F401,F403  (the mask granularities, re-exported for pruning_utils)

__all__ = [
    "STRUCTURED_METHODS", "GRANULARITIES", "build_importance", "check_traceable", "output_layer_names",
    "resolve_names", "importance_table", "accumulate_gradients", "prune_channels", "round_ratio",
    "SearchResult", "search_ratio", "verify_forward", "channel_counts", "channel_changes",
    "batchnorm_layers", "bn_l1_loss", "goal_met", "goal_line",
    *kernel_pruning.__all__,
]

STRUCTURED_METHODS = ("l1", "l2", "bn_scale", "taylor", "lamp", "fpgm", "random")
GRANULARITIES = ("channel", "kernel", "intra_kernel")
# torch-pruning's own default roots: every group starts at the output channels of one of these.
ROOT_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM)


# ----------------------------------------------------------------------------- importance
def build_importance(method: str) -> tp.importance.Importance:
    """The torch-pruning importance object behind `method` (see the module docstring)."""
    imp = tp.importance
    builders = {
        "l1": lambda: imp.GroupMagnitudeImportance(p=1),
        "l2": lambda: imp.GroupMagnitudeImportance(p=2),
        # normalizer=None: Network Slimming ranks raw scales across the whole network.
        "bn_scale": lambda: imp.BNScaleImportance(normalizer=None),
        "taylor": lambda: imp.GroupTaylorImportance(),
        "lamp": lambda: imp.LAMPImportance(p=2),
        "fpgm": lambda: imp.FPGMImportance(p=2),
        "random": lambda: imp.RandomImportance(),
    }
    if method not in builders:
        raise UserError(f"unknown structured.method {method!r}; choose one of: {', '.join(STRUCTURED_METHODS)}")
    return builders[method]()


class _TableImportance(tp.importance.Importance):
    """Serves precomputed scores by the group's root layer name (the same names in any copy)."""

    def __init__(self, table: dict[str, torch.Tensor | None], names: dict[nn.Module, str]):
        self.table, self.names = table, names

    def __call__(self, group) -> torch.Tensor | None:
        scores = self.table.get(self.names[group[0].dep.target.module])
        return None if scores is None else scores.clone()


# ----------------------------------------------------------------------------- tracing
def check_traceable(model: nn.Module, example_inputs: torch.Tensor) -> None:
    """One line of UserError unless every conv/linear that runs reaches the output through
    autograd: torch-pruning's graph is traced from autograd, and a layer cut off from it (a
    numpy round trip, a .detach()) would be pruned without its neighbours."""
    ran: list[nn.Module] = []
    handles = [m.register_forward_hook(lambda m, i, o: ran.append(m))
               for m in model.modules() if isinstance(m, ROOT_TYPES)]
    try:
        with torch.enable_grad():
            out = _forward(model, example_inputs)
            weights = [m.weight for m in dict.fromkeys(ran)]
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                raise UserError(f"cannot trace {_model_name(model)}: its forward returns {type(out).__name__} without an "
                                "autograd graph; structured pruning needs a model whose output tensor is computed by torch ops")
            grads = torch.autograd.grad(out.float().sum(), weights, allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    names = {m: n for n, m in model.named_modules()}
    cut = [names[m] for m, g in zip(dict.fromkeys(ran), grads) if g is None]
    if cut:
        raise UserError(f"cannot trace {_model_name(model)}: the output does not depend through autograd on "
                        f"{', '.join(cut[:3])} (non-torch code such as numpy or .detach() in forward); "
                        "structured pruning needs an end-to-end differentiable forward")


def _forward(model: nn.Module, example_inputs: torch.Tensor):
    try:
        return model(example_inputs)
    except Exception as e:  # any failure here is about the user's model, not our code
        raise UserError(f"{_model_name(model)} fails on an input of shape {tuple(example_inputs.shape)} "
                        f"({type(e).__name__}: {_first_line(e)}); check data.image_size and the model") from None


def _build_graph(model: nn.Module, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    except Exception as e:
        raise UserError(f"torch-pruning cannot trace {_model_name(model)} ({type(e).__name__}: {_first_line(e)}); "
                        "add the offending layers to structured.ignored_layers or use unstructured pruning") from None


def output_layer_names(model: nn.Module, example_inputs: torch.Tensor) -> list[str]:
    """The layer(s) producing the logits: pruning their outputs would change the class count.
    The module whose output tensor is the model output, else the last conv/linear that ran."""
    outputs: dict[nn.Module, int] = {}
    order: list[nn.Module] = []

    def hook(m, inputs, out):
        outputs[m] = id(out)
        order.append(m)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ROOT_TYPES)]
    try:
        with torch.no_grad():
            out = _forward(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    names = {m: n for n, m in model.named_modules()}
    exact = [names[m] for m, ident in outputs.items() if ident == id(out)]
    return exact or ([names[order[-1]]] if order else [])


def resolve_names(model: nn.Module, names: list[str] | dict, key: str) -> dict[str, nn.Module]:
    """name -> module for config entries naming modules; an unknown name is a UserError."""
    import difflib

    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in modules or name == "":
            close = difflib.get_close_matches(str(name), [n for n in modules if n], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; names are those of model.named_modules()"
            raise UserError(f"{key} names {name!r}, which is not a layer of {_model_name(model)}{hint}")
        out[name] = modules[name]
    return out


def importance_table(model: nn.Module, example_inputs: torch.Tensor, *, method: str,
                     ignored_layers: list[str]) -> dict[str, torch.Tensor | None]:
    """Per-channel importance of every prunable group, keyed by the group's root layer name.
    `taylor` needs gradients in `.grad` (see accumulate_gradients)."""
    importance = build_importance(method)
    if method == "taylor" and not any(p.grad is not None for p in model.parameters()):
        raise ValueError("taylor importance needs gradients; call accumulate_gradients first")
    graph = _build_graph(model, example_inputs)
    ignored = _expand(resolve_names(model, ignored_layers, "structured.ignored_layers").values())
    names = {m: n for n, m in model.named_modules()}
    table = {}
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES):
        scores = importance(group)
        table[names[group[0].dep.target.module]] = None if scores is None else scores.detach().float().cpu()
    if not any(s is not None for s in table.values()):
        what = "BatchNorm layers" if method == "bn_scale" else "prunable conv/linear layers outside ignored_layers"
        raise UserError(f"{_model_name(model)} has no channel group method {method} can score (it needs {what}); "
                        "pick another structured.method or ignore fewer layers")
    return table


def accumulate_gradients(model: nn.Module, loader, *, batches: int, device: torch.device,
                         loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> int:
    """Sum loss gradients over the first `batches` batches into `.grad` (taylor's calibration).
    Eval mode, so BatchNorm statistics stay as trained. Returns the number of images used."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    model.eval()
    model.zero_grad(set_to_none=True)
    seen = 0
    with torch.enable_grad():
        for i, (images, targets) in enumerate(loader):
            if i >= batches:
                break
            images, targets = images.to(device), targets.to(device)
            loss_fn(model(images), targets).backward()
            seen += targets.size(0)
    return seen


# ----------------------------------------------------------------------------- pruning
def prune_channels(model: nn.Module, example_inputs: torch.Tensor, *, ratio: float,
                   table: dict[str, torch.Tensor | None], global_pruning: bool = True,
                   max_pruning_ratio: float = 1.0, round_to: int = 1, ignored_layers: list[str] = (),
                   layer_ratios: dict[str, float] | None = None,
                   original_channels: dict[str, int] | None = None) -> int:
    """Remove channels in place, one shot: `ratio` of the prunable channels (globally ranked,
    or per layer), `layer_ratios` overriding it for the named modules. `original_channels`
    (name -> out channels before any pruning) anchors max_pruning_ratio across iterative
    rounds; default: the current counts. Returns the number of groups pruned."""
    modules = dict(model.named_modules())
    names = {m: n for n, m in modules.items()}
    ignored = _expand(resolve_names(model, list(ignored_layers), "structured.ignored_layers").values())
    per_layer = {m: r for m, r in zip(resolve_names(model, list(layer_ratios or {}), "structured.layer_ratios").values(),
                                     (layer_ratios or {}).values())}
    pruner = tp.pruner.BasePruner(
        model, example_inputs, importance=_TableImportance(table, names), global_pruning=global_pruning,
        pruning_ratio=ratio, pruning_ratio_dict=per_layer or None, max_pruning_ratio=max_pruning_ratio,
        ignored_layers=ignored, round_to=round_to if round_to > 1 else None, root_module_types=list(ROOT_TYPES),
    )
    original = original_channels or channel_counts(model)
    pruned = 0
    for group in pruner.step(interactive=True):
        group = _capped(group, pruner, names, table, original, max_pruning_ratio, round_to)
        if group is not None:
            group.prune()
            pruned += 1
    return pruned


def _capped(group, pruner, names, table, original, max_pruning_ratio: float, round_to: int):
    """`group` with its pruned channels cut back so its root layer keeps at least
    (1 - max_pruning_ratio) of its original channels (rounded up to round_to); None if it
    may lose none. The least important channels are the ones still pruned."""
    graph = pruner.DG
    root, handler, idxs = group[0].dep.target.module, group[0].dep.handler, list(group[0].idxs)
    if not graph.is_out_channel_pruning_fn(handler) or pruner._get_channel_groups(group) > 1:
        return group
    current = graph.get_out_channels(root)
    name = names[root]
    keep = max(1, math.ceil(original.get(name, current) * (1 - max_pruning_ratio) - 1e-9))
    keep = min(current, _round_up(keep, round_to))
    allowed = current - keep
    if len(idxs) <= allowed:
        return group
    if allowed <= 0:
        return None
    scores = table[name]
    kept = sorted(idxs, key=lambda i: float(scores[i]))[:allowed]
    return graph.get_pruning_group(root, handler, kept)


def _round_up(n: int, multiple: int) -> int:
    return n if multiple <= 1 else -(-n // multiple) * multiple


def round_ratio(final_ratio: float, step: int, steps: int) -> float:
    """The ratio to apply to the current model in round `step` (1-based) of `steps`, so that
    after it (1 - final_ratio * step / steps) of the original channels remain."""
    before = 1 - final_ratio * (step - 1) / steps
    after = 1 - final_ratio * step / steps
    return 1 - after / before


# ----------------------------------------------------------------------------- target search
@dataclass
class SearchResult:
    model: nn.Module  # the pruned copy that was kept
    ratio: float  # the ratio that produced it
    reduction: float  # its MACs reduction, a fraction of the reference MACs
    probes: int  # pruned copies tried


def search_ratio(model: nn.Module, *, target: float, tolerance: float,
                 prune: Callable[[nn.Module, float], None], reduction_of: Callable[[nn.Module], float],
                 max_ratio: float = 1.0, max_probes: int = 40, what: str = "channel") -> SearchResult:
    """Find a ratio whose pruned copy of `model` reaches `target` reduction (a fraction):
    preferably in [target, target + tolerance], else in [target - tolerance, target). `prune`
    prunes a copy in place; `reduction_of` measures it. `model` itself is left untouched.
    Interpolation guesses, safeguarded by bisection, on a reduction that grows with the ratio.
    Unreachable targets and targets that fall between two coarse steps are UserErrors."""
    def probe(ratio: float) -> tuple[float, nn.Module, float]:
        pruned = copy.deepcopy(model)
        prune(pruned, ratio)
        return ratio, pruned, reduction_of(pruned)

    lo, hi = probe(0.0), probe(max_ratio)
    probes = 2
    if lo[2] > target + tolerance:
        raise UserError(f"the fixed part of {what} pruning already removes {100 * lo[2]:.1f}% of MACs, beyond the "
                        f"target {100 * target:.1f}% + {100 * tolerance:.1f} pts; lower the fixed part or raise the target")
    if hi[2] < target - tolerance:
        raise UserError(f"target MACs reduction {100 * target:.1f}% is unreachable: pruning every {what} group as far as "
                        f"max_pruning_ratio={max_ratio:g} allows removes only {100 * hi[2]:.1f}%; "
                        "lower the target or raise structured.max_pruning_ratio")
    if hi[2] < target:  # the most that can be removed is just short of the target, within tolerance
        return SearchResult(hi[1], hi[0], hi[2], probes)
    goal = target + tolerance / 2
    for i in range(max_probes):
        if target <= lo[2] <= target + tolerance:
            return SearchResult(lo[1], lo[0], lo[2], probes)
        if target <= hi[2] <= target + tolerance:
            return SearchResult(hi[1], hi[0], hi[2], probes)
        if hi[0] - lo[0] < 1e-4:
            break
        ratio = _next_guess(lo, hi, goal, bisect=i % 3 == 2)
        mid = probe(ratio)
        probes += 1
        if mid[2] < target:
            lo = mid
        else:
            hi = mid
    if target - tolerance <= lo[2] < target:
        return SearchResult(lo[1], lo[0], lo[2], probes)
    raise UserError(f"cannot land within {100 * tolerance:.1f} pts of the target MACs reduction {100 * target:.1f}%: the "
                    f"nearest reachable are {100 * lo[2]:.1f}% and {100 * hi[2]:.1f}% ({what} steps are coarse on this "
                    "model); lower structured.round_to, raise structured.target_tolerance or move the target")


def _next_guess(lo: tuple, hi: tuple, goal: float, bisect: bool) -> float:
    """Linear interpolation of ratio vs reduction inside the bracket, kept off its ends;
    plain bisection every third probe guarantees the bracket keeps shrinking."""
    (r0, _, f0), (r1, _, f1) = lo, hi
    if bisect or f1 <= f0:
        return (r0 + r1) / 2
    guess = r0 + (goal - f0) * (r1 - r0) / (f1 - f0)
    margin = 0.02 * (r1 - r0)
    return min(max(guess, r0 + margin), r1 - margin)


# ----------------------------------------------------------------------------- checks and tables
def verify_forward(model: nn.Module, example_inputs: torch.Tensor, num_classes: int) -> None:
    """A pruned model must still map the example input to (batch, num_classes) finite logits."""
    model.eval()
    with torch.no_grad():
        try:
            out = model(example_inputs)
        except RuntimeError as e:
            raise UserError(f"the pruned model fails its forward check ({_first_line(e)}); add the layers involved "
                            "to structured.ignored_layers") from None
    expected = (example_inputs.shape[0], num_classes)
    if tuple(out.shape) != expected or not torch.isfinite(out).all():
        raise UserError(f"the pruned model returns {tuple(out.shape)} (finite: {bool(torch.isfinite(out).all())}) "
                        f"instead of finite {expected}; add the layers involved to structured.ignored_layers")


def channel_counts(model: nn.Module) -> dict[str, int]:
    """Output channels (features) of every conv and linear layer, by name."""
    counts = {}
    for name, m in model.named_modules():
        if isinstance(m, tp.ops.TORCH_CONV):
            counts[name] = m.out_channels
        elif isinstance(m, nn.Linear):
            counts[name] = m.out_features
    return counts


def channel_changes(before: dict[str, int], after: dict[str, int]) -> dict[str, dict[str, int]]:
    """name -> {before, after} for every layer of `before` (metrics.yaml's per-layer table)."""
    return {name: {"before": n, "after": after.get(name, 0)} for name, n in before.items()}


# ----------------------------------------------------------------------------- network slimming
def batchnorm_layers(model: nn.Module, exclude: list[str] = ()) -> list[nn.Module]:
    """Affine BatchNorm layers outside the named (ignored) modules."""
    skip = _expand(resolve_names(model, list(exclude), "structured.ignored_layers").values())
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine and m not in skip]


def bn_l1_loss(base: LossFn, bn_layers: list[nn.Module], reg: float) -> LossFn:
    """`base` + reg * sum |gamma| (Liu et al. 2017): its gradient adds reg * sign(gamma) to
    every BN scale, pushing unneeded channels' scales toward zero before pruning by scale."""
    def loss_fn(logits: torch.Tensor, targets: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        penalty = sum(m.weight.abs().sum() for m in bn_layers)
        return base(logits, targets, images) + reg * penalty

    return loss_fn


# ----------------------------------------------------------------------------- goal
def goal_met(*, flops_reduction_pct: float, accuracy_drop: float, min_flops_reduction_pct: float,
             max_accuracy_drop: float) -> bool:
    """At least `min_flops_reduction_pct` FLOPs removed and at most `max_accuracy_drop` top-1
    points lost. Rounded to 1e-6 first, so 91.5 - 90.0 counts as a drop of exactly 1.5."""
    flops, drop = round(float(flops_reduction_pct), 6), round(float(accuracy_drop), 6)
    return bool(flops >= min_flops_reduction_pct and drop <= max_accuracy_drop)


def goal_line(met: bool, *, min_flops_reduction_pct: float, max_accuracy_drop: float) -> str:
    return (f"Goal {'MET' if met else 'NOT MET'} "
            f"(>={min_flops_reduction_pct:g}% FLOPs, <={max_accuracy_drop:g}% drop)")


# ----------------------------------------------------------------------------- helpers
def _expand(modules) -> list[nn.Module]:
    """Modules and all their submodules, as torch-pruning treats ignored layers."""
    return [sub for m in modules for sub in m.modules()]


def _model_name(model: nn.Module) -> str:
    return getattr(model, "registry_name", None) or type(model).__name__


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
