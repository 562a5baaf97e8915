"""Structured (channel/filter) pruning on torch-pruning's DependencyGraph, with MACs targets.

    uv run python -m scripts.prune_structured --checkpoint results/train/quickstart/best_model.pth \
        --method taylor --target-macs-reduction 0.5

    from tools.pruning import structured as st
    example = torch.zeros(1, 3, 32, 32)
    ignored = st.output_layer_names(model, example)            # the classifier keeps its classes
    table = st.importance_table(model, example, method="l2", ignored_layers=ignored)
    plan = st.ChannelPlan(model, example, table=table, limits=st.ChannelLimits(max_pruning_ratio=0.8, round_to=8),
                          ignored_layers=ignored)
    st.apply_plan(model, example, plan, plan.counts(0.3))     # in place: physically smaller
    found = st.search_channels(model, example, plan, target=0.5, tolerance=0.01,
                               reduction_of=lambda m: 1 - count_macs_params(m, (1, 3, 32, 32))[0] / base_macs)

Importance (`STRUCTURED_METHODS`), each a torch-pruning group importance, so coupled layers (a
residual sum, a depthwise conv and its BN, a concatenation) are scored and removed together:

- l1 / l2: group L1 / L2 norm of every weight the channel touches (GroupMagnitudeImportance).
- bn_scale: |gamma| of the group's BatchNorms, un-normalised, ranked globally as in Network
  Slimming (Liu et al. 2017); pair it with the L1 sparsity phase (`bn_l1_loss`).
- taylor: |w * dL/dw| summed over the group (Molchanov et al. 2019), gradients accumulated over
  calibration batches by `accumulate_gradients`.
- lamp: LAMP scores (Lee et al. 2021), layer-adaptive, so meaningful with global ranking.
- fpgm: distance to the geometric median of the layer's filters (He et al. 2019).
- random: a control; seeded.

Scores are computed once per pruning (`importance_table`) and looked up by root layer name, so
the MACs-target search prunes many deep copies cheaply and consistently: the channels removed
only grow with the ratio, so the search can bracket the target.

Allocation (`ChannelPlan`) follows torch-pruning's rules (global ranking or one ratio per
group, `layer_ratios` per module, remaining channels rounded down to `round_to`) and adds what
its BasePruner only applies between iterative steps: no layer keeps fewer than
(1 - max_pruning_ratio) of its original channels. Physical removal is torch-pruning's
(`Group.prune`), so every coupled layer shrinks together and the result is a smaller dense model.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import math
from dataclasses import dataclass
from typing import Callable, Hashable

import torch
import torch_pruning as tp
from torch import nn

from tools.core.errors import UserError, first_line
from tools.training.engine import LossFn

__all__ = [
    "STRUCTURED_METHODS",
    "GRANULARITIES",
    "build_importance",
    "check_traceable",
    "output_layer_names",
    "IMPORTANCES",
    "register_structured_method",
    "resolve_names",
    "importance_table",
    "accumulate_gradients",
    "ChannelLimits",
    "ChannelPlan",
    "apply_plan",
    "prune_channels",
    "round_ratio",
    "SearchResult",
    "RatioSearch",
    "search_ratio",
    "search_channels",
    "verify_forward",
    "channel_counts",
    "channel_changes",
    "batchnorm_layers",
    "bn_l1_loss",
    "goal_met",
    "goal_verdict",
    "verdict_text",
    "goal_line",
]

GRANULARITIES = ("channel", "kernel", "intra_kernel")
# torch-pruning's own default roots: every group starts at the output channels of one of these.
ROOT_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR, tp.ops.TORCH_LSTM)


# ----------------------------------------------------------------------------- importance
# structured.method -> its torch-pruning importance; another method: register_structured_method
IMPORTANCES: dict[str, Callable[[], tp.importance.Importance]] = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    # normalizer=None: Network Slimming ranks raw scales across the whole network.
    "bn_scale": lambda: tp.importance.BNScaleImportance(normalizer=None),
    "taylor": lambda: tp.importance.GroupTaylorImportance(),
    "lamp": lambda: tp.importance.LAMPImportance(p=2),
    "fpgm": lambda: tp.importance.FPGMImportance(p=2),
    "random": lambda: tp.importance.RandomImportance(),
}
STRUCTURED_METHODS = tuple(IMPORTANCES)  # the built-in ones


def register_structured_method(name: str, build: Callable[[], tp.importance.Importance]) -> None:
    """A structured.method of your own: `build()` returns a torch-pruning group importance. Its
    keys, if any, go in a config section of its own (see tools/pruning/config.py)."""
    IMPORTANCES[name] = build


def build_importance(method: str) -> tp.importance.Importance:
    """The torch-pruning importance object behind `method` (see the module docstring)."""
    if method not in IMPORTANCES:
        raise UserError(f"unknown structured.method {method!r}; choose one of: {', '.join(IMPORTANCES)}")
    return IMPORTANCES[method]()


# ----------------------------------------------------------------------------- tracing
def check_traceable(model: nn.Module, example_inputs: torch.Tensor) -> None:
    """One line of UserError unless every conv/linear that runs reaches the output through
    autograd: torch-pruning's graph is traced from autograd, and a layer cut off from it (a
    numpy round trip, a .detach()) would be pruned without its neighbours."""
    called: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda m, i, o: called.append(m))
        for m in model.modules()
        if isinstance(m, (tp.ops.TORCH_CONV, nn.Linear))
    ]
    try:
        with torch.enable_grad():
            out = _forward(model, example_inputs)
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                raise UserError(
                    f"cannot trace {_model_name(model)}: its forward returns {type(out).__name__} without an "
                    "autograd graph; structured pruning needs a model whose output tensor is computed by torch ops"
                )
            ran = [m for m in dict.fromkeys(called) if m.weight.requires_grad]  # frozen layers cannot be asked
            grads = torch.autograd.grad(out.float().sum(), [m.weight for m in ran], allow_unused=True) if ran else []
    finally:
        for h in handles:
            h.remove()
    names = {m: n for n, m in model.named_modules()}
    cut = [names[m] for m, g in zip(ran, grads) if g is None]
    if cut:
        raise UserError(
            f"cannot trace {_model_name(model)}: the output does not depend through autograd on "
            f"{', '.join(cut[:3])} (non-torch code such as numpy or .detach() in forward); "
            "structured pruning needs an end-to-end differentiable forward"
        )


def _forward(model: nn.Module, example_inputs: torch.Tensor):
    try:
        return model(example_inputs)
    except Exception as e:  # any failure here is about the user's model, not our code
        raise UserError(
            f"{_model_name(model)} fails on an input of shape {tuple(example_inputs.shape)} "
            f"({type(e).__name__}: {first_line(e)}); check data.image_size and the model"
        ) from None


def _build_graph(model: nn.Module, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    except Exception as e:
        raise UserError(
            f"torch-pruning cannot trace {_model_name(model)} ({type(e).__name__}: {first_line(e)}); "
            "add the offending layers to structured.ignored_layers or use unstructured pruning"
        ) from None


def output_layer_names(model: nn.Module, example_inputs: torch.Tensor) -> list[str]:
    """The layer(s) producing the logits: pruning their outputs would change the class count.
    The module whose output tensor is the model output, else the last conv/linear that ran."""
    outputs: dict[nn.Module, object] = {}  # the tensors themselves: ids of freed ones get reused
    order: list[nn.Module] = []

    def hook(m, inputs, out):
        outputs[m] = out
        order.append(m)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ROOT_TYPES)]
    try:
        with torch.no_grad():
            out = _forward(model, example_inputs)
    finally:
        for h in handles:
            h.remove()
    names = {m: n for n, m in model.named_modules()}
    exact = [names[m] for m, produced in outputs.items() if produced is out]
    return exact or ([names[order[-1]]] if order else [])


def resolve_names(model: nn.Module, names: list[str] | dict, key: str) -> dict[str, nn.Module]:
    """name -> module for config entries naming modules; an unknown name is a UserError."""
    modules = dict(model.named_modules())
    out = {}
    for name in names:
        if name not in modules or name == "":
            close = difflib.get_close_matches(str(name), [n for n in modules if n], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; names are those of model.named_modules()"
            raise UserError(f"{key} names {name!r}, which is not a layer of {_model_name(model)}{hint}")
        out[name] = modules[name]
    return out


def importance_table(
    model: nn.Module, example_inputs: torch.Tensor, *, method: str, ignored_layers: list[str]
) -> dict[str, torch.Tensor | None]:
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
        raise UserError(
            f"{_model_name(model)} has no channel group method {method} can score (it needs {what}); "
            "pick another structured.method or ignore fewer layers"
        )
    return table


def accumulate_gradients(
    model: nn.Module,
    loader,
    *,
    batches: int,
    device: torch.device,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> int:
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
@dataclass
class _Group:
    """One prunable group: its root layer and one score per channel."""

    scores: torch.Tensor  # per channel of one channel group (grouped convs repeat the pattern)
    channel_groups: int
    keep: int  # channels per channel group that must remain (max_pruning_ratio, round_to)
    ratio: float | None  # from layer_ratios; None = the default ratio


@dataclass(frozen=True)
class ChannelLimits:
    """How many channels a ChannelPlan may take, and from where."""

    global_pruning: bool = True  # rank all groups together (else each group loses the same share)
    max_pruning_ratio: float = 1.0  # no group loses more than this share of its original channels
    round_to: int = 1  # channel counts stay multiples of this (hardware-friendly widths)


class ChannelPlan:
    """Which channels to remove, for any ratio, from one state of a model: torch-pruning's
    dependency groups and an importance `table`, read once.

    `counts(ratio)` gives, per group (by root layer name), how many channels go: `ratio` of
    the prunable channels with the lowest scores across all groups (`global_pruning`), or in
    each group, `layer_ratios` giving the named modules their own ratio. A group keeps at least
    (1 - max_pruning_ratio) of its `original_channels` (name -> count before any pruning;
    default: the current counts) and what remains is rounded down to a multiple of `round_to`,
    as torch-pruning rounds. `apply_plan` then removes them.

    torch-pruning's BasePruner is not used to allocate: one shot, it applies max_pruning_ratio
    only between iterative steps and silently skips a group whose every channel falls under the
    global threshold, so the MACs removed would not grow monotonically with the ratio, which
    the target search relies on."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor,
        *,
        table: dict[str, torch.Tensor | None],
        limits: ChannelLimits = ChannelLimits(),
        ignored_layers: list[str] = (),
        layer_ratios: dict[str, float] | None = None,
        original_channels: dict[str, int] | None = None,
    ):
        self.limits = limits
        self.global_pruning, self.round_to = limits.global_pruning, max(1, limits.round_to)
        max_pruning_ratio = limits.max_pruning_ratio
        self.groups: dict[str, _Group] = {}
        graph = _build_graph(model, example_inputs)
        names = {m: n for n, m in model.named_modules()}
        ignored = _expand(resolve_names(model, list(ignored_layers), "structured.ignored_layers").values())
        per_module = _per_module_ratios(model, layer_ratios or {})
        original_channels = original_channels or channel_counts(model)
        for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=ROOT_TYPES):
            root = group[0].dep.target.module
            scores = table.get(names[root])
            if scores is None:
                continue
            ch_groups = _channel_groups(graph, group)
            scores = scores.view(ch_groups, -1).mean(0) if ch_groups > 1 else scores
            outputs = [dep.target.module for dep, _ in group if graph.is_out_channel_pruning_fn(dep.handler)]
            ratio = next((per_module[m] for m in outputs if m in per_module), None)
            original = original_channels.get(names[root], graph.get_out_channels(root)) // ch_groups
            keep = max(1, math.ceil(original * (1 - max_pruning_ratio) - 1e-9))
            keep = min(len(scores), _round_up(keep, self.round_to))
            self.groups[names[root]] = _Group(scores, ch_groups, keep, ratio)
        self._order = {name: torch.argsort(g.scores, stable=True) for name, g in self.groups.items()}

    def counts(self, ratio: float) -> dict[str, int]:
        """Root layer name -> channels (per channel group) to remove at `ratio`."""
        raw = {
            name: _local_count(len(g.scores), ratio if g.ratio is None else g.ratio) for name, g in self.groups.items()
        }
        pooled = [name for name, g in self.groups.items() if g.ratio is None]
        if self.global_pruning and pooled:
            raw.update(_global_counts({name: self.groups[name].scores for name in pooled}, ratio))
        return {name: self._limited(name, n) for name, n in raw.items()}

    def next_count(self, name: str, n: int) -> int | None:
        """The count that removes one more round_to block from group `name`; None at its floor
        or for groups with their own layer ratio."""
        group = self.groups[name]
        remaining = len(group.scores) - n
        step = remaining % self.round_to or self.round_to
        if group.ratio is not None or remaining - step < group.keep:
            return None
        return n + step

    def block_score(self, name: str, n: int, n_next: int) -> float:
        """Mean score of the channels that going from n to n_next removed would remove."""
        order = self._order[name][n:n_next]
        return float(self.groups[name].scores[order].mean())

    def indices(self, name: str, n: int) -> list[int]:
        """The root-layer channel indices removed by count `n`, repeated over channel groups."""
        group = self.groups[name]
        idxs = self._order[name][:n]
        size = len(group.scores)
        return sorted(torch.cat([idxs + g * size for g in range(group.channel_groups)]).tolist())

    def _limited(self, name: str, n: int) -> int:
        group = self.groups[name]
        if n <= 0:
            return 0
        size = len(group.scores)
        remaining = size - n
        remaining -= remaining % self.round_to
        return size - max(remaining, group.keep)


def apply_plan(model: nn.Module, example_inputs: torch.Tensor, plan: ChannelPlan, counts: dict[str, int]) -> int:
    """Remove `counts` channels (see ChannelPlan) from `model` or a deep copy of the model the
    plan was made on, in place. Returns the number of groups pruned."""
    graph = _build_graph(model, example_inputs)
    modules = dict(model.named_modules())
    pruned = 0
    for name, n in counts.items():
        if n <= 0:
            continue
        root = modules[name]
        group = graph.get_pruning_group(
            root, graph.get_pruner_of_module(root).prune_out_channels, plan.indices(name, n)
        )
        if graph.check_pruning_group(group):
            try:
                group.prune()
            except (RuntimeError, IndexError) as e:  # e.g. a concatenation feeding a grouped conv
                raise UserError(
                    f"torch-pruning cannot prune the channel group of {name} ({first_line(e)}); "
                    f"add {name!r} to structured.ignored_layers"
                ) from None
            pruned += 1
    return pruned


def drop_unprunable_groups(model: nn.Module, example_inputs: torch.Tensor, plan: ChannelPlan) -> list[str]:
    """Remove from `plan` the groups whose pruning breaks the forward, and return their names.

    torch-pruning couples channels through the ops it models; an op it does not (a zero-padding
    shortcut written as a lambda, a hand-written channel concat) gets a wrong group, and pruning
    it fails at the next matmul. One probe prunes one round_to block of every group at once;
    only when that breaks is each group probed alone, so a model without such ops pays one probe."""
    first = {name: n for name in plan.groups if (n := plan.next_count(name, 0))}
    if _forward_ok(model, example_inputs, plan, first):
        return []
    bad = [name for name, n in first.items() if not _forward_ok(model, example_inputs, plan, {name: n})]
    for name in bad:
        del plan.groups[name]
    return bad


def _forward_ok(model: nn.Module, example_inputs: torch.Tensor, plan: ChannelPlan, counts: dict[str, int]) -> bool:
    with _one_thread():
        with torch.no_grad():
            expected = tuple(model.eval()(example_inputs).shape)
        pruned = copy.deepcopy(model)
        try:
            apply_plan(pruned, example_inputs, plan, counts)
            with torch.no_grad():
                out = pruned.eval()(example_inputs)
        except (UserError, RuntimeError, IndexError, ValueError):
            return False
    return tuple(out.shape) == expected


def prune_channels(
    model: nn.Module,
    example_inputs: torch.Tensor,
    *,
    ratio: float,
    table: dict[str, torch.Tensor | None],
    ignored_layers: list[str] = (),
    **limits,
) -> dict[str, int]:
    """One-shot channel pruning in place at `ratio`; `limits` are ChannelLimits' fields.
    Returns the counts removed per group."""
    plan = ChannelPlan(
        model, example_inputs, table=table, limits=ChannelLimits(**limits), ignored_layers=ignored_layers
    )
    counts = plan.counts(ratio)
    apply_plan(model, example_inputs, plan, counts)
    return counts


def _per_module_ratios(model: nn.Module, layer_ratios: dict[str, float]) -> dict[nn.Module, float]:
    out: dict[nn.Module, float] = {}
    for module, r in zip(
        resolve_names(model, list(layer_ratios), "structured.layer_ratios").values(), layer_ratios.values()
    ):
        for sub in module.modules():
            out.setdefault(sub, r)
    return out


def _channel_groups(graph, group) -> int:
    """How many equal channel groups a grouped conv (or GroupNorm) in `group` imposes; a
    depthwise conv is handled by the graph itself (torch-pruning's rule)."""
    counts = [1]
    for dep, _ in group:
        m = dep.target.module
        if not isinstance(m, nn.Module) or (isinstance(m, tp.ops.TORCH_CONV) and m.groups == m.out_channels):
            continue
        pruner = graph.get_pruner_of_module(m)
        if pruner is not None and graph.is_out_channel_pruning_fn(dep.handler):
            counts.append(pruner.get_out_channel_groups(m))
        elif pruner is not None and graph.is_in_channel_pruning_fn(dep.handler):
            counts.append(pruner.get_in_channel_groups(m))
    return max(counts)


def _local_count(size: int, ratio: float) -> int:
    return size - int(size * (1 - ratio))  # torch-pruning's rule


def _global_counts(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, int]:
    """Each group's share of the `ratio` lowest scores over all of them together."""
    names = list(scores)
    flat = torch.cat([scores[n] for n in names])
    owner = torch.cat([torch.full((len(scores[n]),), i) for i, n in enumerate(names)])
    chosen = torch.bincount(
        owner[torch.argsort(flat, stable=True)[: _local_count(len(flat), ratio)]], minlength=len(names)
    )
    return {n: int(c) for n, c in zip(names, chosen)}


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
    counts: dict[str, int] | None = None  # channel search: channels removed per group (root layer name)
    refinements: int = 0  # channel search: round_to blocks added beyond the ratio to land on the target


@dataclass
class _Probe:
    ratio: float
    reduction: float
    model: nn.Module | None = None  # None: the unpruned model (ratio 0, nothing fixed)


@dataclass(frozen=True)
class RatioSearch:
    """How search_ratio prunes and measures a copy, and what bounds the search."""

    prune: Callable[[nn.Module, float], None]  # prune(copy, ratio), in place
    reduction_of: Callable[[nn.Module], float]  # the fraction of MACs a pruned copy removes
    max_ratio: float = 1.0
    fixed_part: bool = False  # ratio 0 already removes something (intra-kernel patterns): measure it
    max_probes: int = 40
    what: str = "channel"  # named in the errors
    config_of: Callable[[float], Hashable] | None = None  # what a ratio prunes: equal configs are measured once
    refine: Callable[[_Probe], SearchResult | None] | None = None  # tried when the target falls inside one step


class _Prober:
    """Pruned copies of `model` by ratio, each measured once."""

    def __init__(self, model: nn.Module, how: RatioSearch):
        self.model, self.how, self.count, self.seen = model, how, 0, {}

    def __call__(self, ratio: float) -> _Probe:
        key = self.how.config_of(ratio) if self.how.config_of is not None else ratio
        if key not in self.seen:
            with _one_thread():
                pruned = copy.deepcopy(self.model)
                self.how.prune(pruned, ratio)
                self.count += 1
                self.seen[key] = (self.how.reduction_of(pruned), pruned)
        reduction, pruned = self.seen[key]
        return _Probe(ratio, reduction, pruned)

    def result(self, p: _Probe) -> SearchResult:
        kept = p.model if p.model is not None else copy.deepcopy(self.model)
        return SearchResult(kept, p.ratio, p.reduction, self.count)


def search_ratio(model: nn.Module, how: RatioSearch, *, target: float, tolerance: float) -> SearchResult:
    """Find a ratio whose pruned copy of `model` removes `target` (a fraction of MACs):
    preferably in [target, target + tolerance], else in [target - tolerance, target).
    `model` itself is left untouched (see RatioSearch for the rest).

    The reduction grows with the ratio in steps. Guesses interpolate in 1 - sqrt(1 - reduction),
    which is about linear in the channel ratio (MACs of a conv scale with in x out channels),
    so 2-5 probes usually land; every third probe bisects, so the bracket always shrinks.
    When the target falls inside one step, `how.refine(highest probe below it)` may still reach
    it; otherwise that, like an unreachable target, is a UserError."""
    probe, what = _Prober(model, how), how.what
    lo, hi = (probe(0.0) if how.fixed_part else _Probe(0.0, 0.0)), None
    if lo.reduction > target + tolerance:
        raise UserError(
            f"the fixed part of {what} pruning already removes {100 * lo.reduction:.1f}% of MACs, beyond the "
            f"target {100 * target:.1f}% + {100 * tolerance:.1f} pts; raise the target or keep more (e.g. a "
            "larger structured.pattern_size)"
        )
    for i in range(how.max_probes):
        if target <= lo.reduction <= target + tolerance:
            return probe.result(lo)
        if hi is not None and (target <= hi.reduction <= target + tolerance or hi.ratio - lo.ratio < 1e-4):
            break
        ratio = _next_guess(lo, hi, target + tolerance / 2, how.max_ratio, bisect=hi is not None and i % 3 == 2)
        p = probe(min(ratio, how.max_ratio))
        if p.ratio >= how.max_ratio and p.reduction < target:
            _check_reachable(p, target, tolerance, what)
            return probe.result(p)  # the most that can be removed, short of the target by less than the tolerance
        if p.reduction < target:
            lo = p
        else:
            hi = p
    return _closest(probe, (lo, hi), target=target, tolerance=tolerance)


def _closest(probe: _Prober, bracket: tuple[_Probe, _Probe | None], *, target: float, tolerance: float) -> SearchResult:
    """The end of a search that did not land on its own: the probe above within the window, a
    refined one, the probe below within the window, or a UserError naming the nearest two."""
    lo, hi = bracket
    if hi is not None and target <= hi.reduction <= target + tolerance:
        return probe.result(hi)
    refined = probe.how.refine(lo) if probe.how.refine is not None else None
    if refined is not None:
        refined.probes += probe.count
        return refined
    if target - tolerance <= lo.reduction < target:
        return probe.result(lo)
    reach = f"{100 * lo.reduction:.1f}% and {100 * hi.reduction:.1f}%" if hi else f"{100 * lo.reduction:.1f}%"
    raise UserError(
        f"cannot land within {100 * tolerance:.1f} pts of the target MACs reduction {100 * target:.1f}%: the "
        f"nearest reachable are {reach} ({probe.how.what} steps are coarse on this model); lower "
        "structured.round_to, raise structured.target_tolerance or move the target"
    )


def search_channels(
    model: nn.Module,
    example_inputs: torch.Tensor,
    plan: ChannelPlan,
    *,
    target: float,
    tolerance: float,
    reduction_of: Callable[[nn.Module], float],
) -> SearchResult:
    """search_ratio over `plan`'s ratio; when a single group's round_to step jumps over the
    target window (a 16-channel layer losing 8 channels at once), it fills the gap greedily
    from the last ratio below the target with the lowest-scored round_to blocks of other
    groups, skipping any block that would overshoot."""

    def prune(pruned: nn.Module, ratio: float) -> None:
        apply_plan(pruned, example_inputs, plan, plan.counts(ratio))

    def refine(lo: _Probe) -> SearchResult | None:
        return _fill_to_target(
            model, example_inputs, plan, lo, target=target, tolerance=tolerance, reduction_of=reduction_of
        )

    how = RatioSearch(
        prune, reduction_of, config_of=lambda ratio: tuple(sorted(plan.counts(ratio).items())), refine=refine
    )
    found = search_ratio(model, how, target=target, tolerance=tolerance)
    if found.counts is None:
        found.counts = plan.counts(found.ratio)
    return found


def _fill_to_target(
    model: nn.Module,
    example_inputs: torch.Tensor,
    plan: ChannelPlan,
    start: _Probe,
    *,
    target: float,
    tolerance: float,
    reduction_of,
) -> SearchResult | None:
    counts, reduction, best = plan.counts(start.ratio), start.reduction, start.model
    frozen: set[str] = set()  # groups whose next block overshoots
    probes = added = 0
    while reduction < target:
        moves = []
        for name in plan.groups:
            n = counts.get(name, 0)
            n_next = None if name in frozen else plan.next_count(name, n)
            if n_next is not None:
                moves.append((plan.block_score(name, n, n_next), name, n_next))
        if not moves:
            return None
        _, name, n_next = min(moves)
        trial = {**counts, name: n_next}
        with _one_thread():
            pruned = copy.deepcopy(model)
            apply_plan(pruned, example_inputs, plan, trial)
            probes += 1
            f = reduction_of(pruned)
        if f > target + tolerance:
            frozen.add(name)
            continue
        counts, reduction, best, added = trial, f, pruned, added + 1
    return SearchResult(best, start.ratio, reduction, probes, counts, added)


def _check_reachable(p: _Probe, target: float, tolerance: float, what: str) -> None:
    if p.reduction < target - tolerance:
        raise UserError(
            f"target MACs reduction {100 * target:.1f}% is unreachable: pruning every {what} group as far as "
            f"max_pruning_ratio allows removes only {100 * p.reduction:.1f}%; lower the target or raise "
            "structured.max_pruning_ratio (or ignore fewer layers)"
        )


def _linearised(reduction: float) -> float:
    """1 - sqrt(1 - reduction): equals the channel ratio r when every layer keeps (1 - r) of
    its inputs and outputs, i.e. MACs shrink by (1 - r)^2."""
    return 1 - math.sqrt(max(0.0, 1 - min(reduction, 1.0)))


def _next_guess(lo: _Probe, hi: _Probe | None, goal: float, max_ratio: float, bisect: bool) -> float:
    """The next ratio: extrapolated from `lo` (through the origin) until something reaches the
    goal, then interpolated inside [lo, hi] away from its ends, or bisected."""
    g = _linearised(goal)
    if hi is None:
        g_lo = _linearised(lo.reduction)
        guess = g if g_lo <= 0 else lo.ratio * g / g_lo
        return min(max_ratio, max(guess, lo.ratio + 1e-3))
    if bisect:
        return (lo.ratio + hi.ratio) / 2
    g0, g1 = _linearised(lo.reduction), _linearised(hi.reduction)
    guess = (lo.ratio + hi.ratio) / 2 if g1 <= g0 else lo.ratio + (g - g0) * (hi.ratio - lo.ratio) / (g1 - g0)
    margin = 0.02 * (hi.ratio - lo.ratio)
    return min(max(guess, lo.ratio + margin), hi.ratio - margin)


# ----------------------------------------------------------------------------- checks and tables
def verify_forward(model: nn.Module, example_inputs: torch.Tensor, num_classes: int) -> None:
    """A pruned model must still map the example input to (batch, num_classes) finite logits."""
    model.eval()
    with torch.no_grad():
        try:
            out = model(example_inputs)
        except RuntimeError as e:
            raise UserError(
                f"the pruned model fails its forward check ({first_line(e)}); add the layers involved "
                "to structured.ignored_layers"
            ) from None
    expected = (example_inputs.shape[0], num_classes)
    if tuple(out.shape) != expected or not torch.isfinite(out).all():
        raise UserError(
            f"the pruned model returns {tuple(out.shape)} (finite: {bool(torch.isfinite(out).all())}) "
            f"instead of finite {expected}; add the layers involved to structured.ignored_layers"
        )


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
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine and m not in skip]


def bn_l1_loss(base: LossFn, bn_layers: list[nn.Module], reg: float) -> LossFn:
    """`base` + reg * sum |gamma| (Liu et al. 2017): its gradient adds reg * sign(gamma) to
    every BN scale, pushing unneeded channels' scales toward zero before pruning by scale."""

    def loss_fn(logits: torch.Tensor, targets: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        penalty = sum(m.weight.abs().sum() for m in bn_layers)
        return base(logits, targets, images) + reg * penalty

    return loss_fn


# ----------------------------------------------------------------------------- goal
def goal_met(
    *, flops_reduction_pct: float, accuracy_drop: float, min_flops_reduction_pct: float, max_accuracy_drop: float
) -> bool:
    """At least `min_flops_reduction_pct` FLOPs removed and at most `max_accuracy_drop` top-1
    points lost. Rounded to 1e-6 first, so 91.5 - 90.0 counts as a drop of exactly 1.5."""
    flops, drop = round(float(flops_reduction_pct), 6), round(float(accuracy_drop), 6)
    return bool(flops >= min_flops_reduction_pct and drop <= max_accuracy_drop)


def goal_verdict(
    *,
    flops_reduction_pct: float | None,
    accuracy_drop: float | None,
    sparse: bool,
    min_flops_reduction_pct: float,
    max_accuracy_drop: float,
) -> bool | None:
    """The one goal rule of eval, report.md and final_comparison.csv: the goal is judged on the
    DENSE FLOPs reduction (a physically smaller model). A masked (sparse) model whose dense FLOPs
    did not fall has no verdict, None (written "n/a"): zeros alone are not a FLOPs reduction.

    >>> goal_verdict(flops_reduction_pct=0.0, accuracy_drop=0.2, sparse=True, min_flops_reduction_pct=40, max_accuracy_drop=1.5)
    >>> goal_verdict(flops_reduction_pct=50.0, accuracy_drop=0.2, sparse=True, min_flops_reduction_pct=40, max_accuracy_drop=1.5)
    True
    """
    if flops_reduction_pct is None or accuracy_drop is None:
        return None
    if sparse and round(float(flops_reduction_pct), 6) <= 0:
        return None
    return goal_met(
        flops_reduction_pct=flops_reduction_pct,
        accuracy_drop=accuracy_drop,
        min_flops_reduction_pct=min_flops_reduction_pct,
        max_accuracy_drop=max_accuracy_drop,
    )


def verdict_text(met: bool | None) -> str:
    """MET / NOT MET / n/a: how every table writes a goal_verdict."""
    return "n/a" if met is None else "MET" if met else "NOT MET"


def goal_line(met: bool | None, *, min_flops_reduction_pct: float, max_accuracy_drop: float) -> str:
    why = " (masks only: no dense FLOPs reduction)" if met is None else ""
    return f"Goal {verdict_text(met)}{why} (>={min_flops_reduction_pct:g}% FLOPs, <={max_accuracy_drop:g}% drop)"


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _one_thread():
    """Probes run batch-1 forwards of tiny tensors: intra-op threads only add synchronisation,
    which costs 10-100x on a loaded CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _expand(modules) -> list[nn.Module]:
    """Modules and all their submodules, as torch-pruning treats ignored layers."""
    return [sub for m in modules for sub in m.modules()]


def _model_name(model: nn.Module) -> str:
    return getattr(model, "registry_name", None) or type(model).__name__
