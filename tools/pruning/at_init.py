"""Pruning at initialization: rand, mag, SNIP, GraSP and SynFlow scores and the Synaptic-Flow
prune loop (compression c -> density 10^-c), on the masks of tools.pruning.unstructured.

    uv run python -m scripts.prune_at_init --config cfgs/at_init_quickstart.yaml --pruner-list rand,mag,snip,grasp,synflow --compression-list 0.5,1

    targets = prunable_targets(model, keep_classifier_dense=False)
    report = prune_to_density(model, targets, pruner="synflow", density=density_from_compression(1.0),
                              scope="global", schedule="exponential", iterations=100, batches=[],
                              input_shape=(3, 32, 32))
    report["density"], report["collapsed_layers"]      # 0.1 of the prunable weights kept, [] = connected

Density vs sparsity: density = fraction of prunable weights KEPT = 10^-compression, sparsity =
1 - density = fraction PRUNED. The Synaptic-Flow code calls the density "sparsity"; here every
output names both. Compression 1 keeps 10%, 2 keeps 1%.

Scores (the lowest are pruned, except GraSP, whose paper score removes the highest):

- `rand`: N(0, 1) draws (Synaptic-Flow's Rand), a sanity baseline.
- `mag`: |w| (at initialization unless pre-trained: magnitude needs a trained net to mean much).
- `snip`: |dL/dmask| = |w * sum_b dL_b/dw| over the pruning batches, divided by the sum over all
  targets (Lee et al. 2019).
- `grasp`: S = -w * Hg / (|sum w * Hg| + eps), H the Hessian and g the gradient of the loss of
  the logits divided by a temperature (200), summed over the pruning batches; the highest S are
  removed, i.e. the weights whose removal reduces gradient flow least (Wang et al. 2020).
- `synflow`: data-free. On a float64 copy with every parameter and buffer made non-negative and
  BN in eval mode, R = sum of the outputs for an all-ones input; score |dR/dw * w| (Tanaka et
  al. 2020). Iterated `prune_epochs` times with the exponential schedule, which is what avoids
  layer collapse. The caller's model keeps its signs: the original abs'es in place and restores
  the signs afterwards; a copy gives identical scores and cannot lose them on an exception.

Scoring runs in eval mode (as Synaptic-Flow's prune_loop): BN uses its running statistics, so
scoring changes nothing in the model but the masks. Masks are exact: global scope prunes
round((1 - density) * total) weights over all targets together, local scope that count in
every target; ties break by position. Iterations only add pruned entries (pinned at -inf).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tools.core.errors import UserError
from tools.pruning.schedules import schedule_point
from tools.pruning.unstructured import (
    Target,
    apply_masks,
    current_masks,
    global_masks,
    is_reparameterized,
    layerwise_masks,
    magnitude_scores,
)

PRUNERS = ("rand", "mag", "snip", "grasp", "synflow")
DATA_PRUNERS = ("snip", "grasp")  # need a pruning batch set
PRUNES_HIGHEST = ("grasp",)  # the paper's score removes the highest values
SCOPES = ("global", "local")
SCHEDULES = ("exponential", "linear")  # Synaptic-Flow's two, of tools.pruning.schedules.SCHEDULES
GRASP_EPS = 1e-10  # Synaptic-Flow's GraSP: keeps the normalisation finite when sum(w * Hg) = 0

Batches = list[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------- checking
def _check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        import difflib

        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown {what} {value!r}{hint}; choose one of: {', '.join(choices)}")
    return value


def check_pruner(name: str) -> str:
    return _check_choice(name, PRUNERS, "pruner")


def check_scope(name: str) -> str:
    return _check_choice(name, SCOPES, "scope")


def check_schedule(name: str) -> str:
    return _check_choice(name, SCHEDULES, "schedule")


def density_from_compression(compression: float) -> float:
    """Fraction of prunable weights kept: 10^-compression (compression 1 keeps 10%)."""
    if (
        isinstance(compression, bool)
        or not isinstance(compression, (int, float))
        or not math.isfinite(compression)
        or compression < 0
    ):
        raise UserError(
            f"compression {compression!r} must be a number >= 0 (density = 10^-compression, "
            "e.g. 1 keeps 10% of the weights); fix it"
        )
    return 10.0 ** -float(compression)


# ----------------------------------------------------------------------------- scores
def rand_scores(targets: list[Target], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Standard normal draws on the CPU generator (reproducible on any device)."""
    return {t.name: torch.randn(t.tensor.shape, generator=generator).to(t.tensor.device) for t in targets}


def mag_scores(targets: list[Target]) -> dict[str, torch.Tensor]:
    return {t.name: magnitude_scores(t.tensor) for t in targets}


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


class _eval_mode:
    """Eval mode inside, the caller's per-module modes restored on exit."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> nn.Module:
        self.modes = {m: m.training for m in self.model.modules()}
        return self.model.eval()

    def __exit__(self, *exc) -> None:
        for module, training in self.modes.items():
            module.training = training


def _check_batches(batches: Batches, pruner: str) -> None:
    if not batches:
        raise UserError(f"pruner {pruner} needs a pruning batch set, got none; set pai.prune_images > 0")


def _summed_gradients(
    model: nn.Module, params: list[torch.Tensor], batches: Batches, loss_fn: LossFn, scale: float = 1.0
) -> list[torch.Tensor]:
    """sum_b dL(model(x_b) / scale, y_b)/dparams, without touching any .grad."""
    total = [torch.zeros_like(p) for p in params]
    for images, labels in batches:
        grads = torch.autograd.grad(loss_fn(model(images) / scale, labels), params, allow_unused=True)
        for acc, g in zip(total, grads):
            if g is not None:
                acc.add_(g)
    return total


def snip_scores(
    model: nn.Module, targets: list[Target], batches: Batches, loss_fn: LossFn | None = None
) -> dict[str, torch.Tensor]:
    """|w * sum_b g_b| / sum over all targets. Gradients are taken w.r.t. the trained parameter
    (weight_orig once masked), whose pruned entries are zero, so pruned weights score 0."""
    _check_batches(batches, "snip")
    params = [t.trainable for t in targets]
    with _eval_mode(model):
        grads = _summed_gradients(model, params, batches, loss_fn or _cross_entropy)
    raw = {t.name: (g * p).detach().abs() for t, p, g in zip(targets, params, grads)}
    norm = sum(float(s.double().sum()) for s in raw.values())
    return {name: s / norm if norm > 0 else s for name, s in raw.items()}


def grasp_scores(
    model: nn.Module,
    targets: list[Target],
    batches: Batches,
    *,
    temperature: float = 200.0,
    loss_fn: LossFn | None = None,
) -> dict[str, torch.Tensor]:
    """The paper's S = -w * Hg / (|sum w * Hg| + eps); the HIGHEST are to be removed.

    g is the stopped gradient summed over the batches; Hg = d(g_stop . g(w))/dw, accumulated
    batch by batch (double backward), both of loss(logits / temperature)."""
    _check_batches(batches, "grasp")
    if temperature <= 0:
        raise UserError(f"pai.grasp_temperature must be > 0, got {temperature}")
    loss_fn = loss_fn or _cross_entropy
    params = [t.trainable for t in targets]
    with _eval_mode(model):
        stopped = _summed_gradients(model, params, batches, loss_fn, scale=temperature)
        hg = [torch.zeros_like(p) for p in params]
        for images, labels in batches:
            grads = torch.autograd.grad(
                loss_fn(model(images) / temperature, labels), params, create_graph=True, allow_unused=True
            )
            dot = sum((s * g).sum() for s, g in zip(stopped, grads) if g is not None)
            if not isinstance(dot, torch.Tensor) or not dot.requires_grad:
                continue  # no target influences this loss: Hg stays zero
            for acc, h in zip(hg, torch.autograd.grad(dot, params, allow_unused=True)):
                if h is not None:
                    acc.add_(h.detach())
    raw = {t.name: (h * p).detach() for t, p, h in zip(targets, params, hg)}
    norm = abs(sum(float(s.double().sum()) for s in raw.values())) + GRASP_EPS
    return {name: -s / norm for name, s in raw.items()}


def _module_names(model: nn.Module) -> dict[int, str]:
    return {id(m): name for name, m in model.named_modules()}


@torch.no_grad()
def _linearized_copy(model: nn.Module) -> nn.Module:
    """float64 eval-mode copy with every floating parameter and buffer replaced by |value|."""
    net = copy.deepcopy(model).double().eval()
    for tensor in net.state_dict().values():  # state_dict tensors share storage with the module
        if tensor.is_floating_point():
            tensor.abs_()
    return net


def synflow_scores(model: nn.Module, targets: list[Target], input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """|dR/dw * w| with R = sum(f_|theta|(1)): no data, only the input shape (C, H, W)."""
    names = _module_names(model)
    net = _linearized_copy(model)
    modules = dict(net.named_modules())
    copies = [Target(t.name, modules[names[id(t.module)]], t.param) for t in targets]
    params = [t.trainable for t in copies]
    device = params[0].device
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=device)
    grads = torch.autograd.grad(net(ones).sum(), params, allow_unused=True)
    return {
        t.name: ((g if g is not None else torch.zeros_like(p)) * p).detach().abs().to(t.tensor.dtype)
        for t, p, g in zip(targets, params, grads)
    }


def compute_scores(
    pruner: str,
    model: nn.Module,
    targets: list[Target],
    *,
    batches: Batches,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    grasp_temperature: float = 200.0,
    loss_fn: LossFn | None = None,
) -> dict[str, torch.Tensor]:
    """The raw scores of `pruner` (GraSP in the paper's sign: highest removed)."""
    check_pruner(pruner)
    if pruner == "rand":
        return rand_scores(targets, generator or torch.Generator().manual_seed(0))
    if pruner == "mag":
        return mag_scores(targets)
    if pruner == "snip":
        return snip_scores(model, targets, batches, loss_fn)
    if pruner == "grasp":
        return grasp_scores(model, targets, batches, temperature=grasp_temperature, loss_fn=loss_fn)
    return synflow_scores(model, targets, input_shape)


def keep_scores(pruner: str, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores where the lowest are pruned (the allocation's convention): GraSP's are negated."""
    return {n: -s for n, s in scores.items()} if pruner in PRUNES_HIGHEST else scores


# ----------------------------------------------------------------------------- masks
def schedule_density(density: float, step: int, num_steps: int, schedule: str) -> float:
    """Density after iteration `step` of `num_steps` (Synaptic-Flow's prune_loop; tools.pruning.schedules):
    exponential d^(t/T) (the same fraction of the survivors each time), linear 1 - (1-d) t/T."""
    check_schedule(schedule)
    if num_steps < 1 or not 1 <= step <= num_steps:
        raise UserError(f"prune iterations must be >= 1, got {num_steps}")
    return schedule_point(1.0 - density, density, step=step, num_steps=num_steps, schedule=schedule)[1]


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def exact_sparsity(density: float, numel: int) -> float:
    """The sparsity whose rounded pruned count leaves exactly round(density * numel) kept."""
    return (numel - _round_half_up(density * numel)) / numel if numel else 0.0


def masks_for_density(
    keep: dict[str, torch.Tensor], density: float, scope: str, previous: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Keep-masks with round(density * n) weights kept over all targets (global) or in every
    target (local); already-pruned entries stay pruned."""
    check_scope(scope)
    if scope == "global":
        total = sum(s.numel() for s in keep.values())
        return global_masks(keep, exact_sparsity(density, total), previous)
    sparsities = {name: exact_sparsity(density, s.numel()) for name, s in keep.items()}
    return layerwise_masks(keep, sparsities, previous)


@dataclass(frozen=True)
class ScoreInputs:
    """What the pruners score with: data batches (snip, grasp), the input shape (synflow's all-ones
    input), a generator (rand) and GraSP's temperature."""

    batches: Batches
    input_shape: tuple[int, ...]
    generator: torch.Generator | None = None
    grasp_temperature: float = 200.0
    loss_fn: LossFn | None = None


def prune_to_density(
    model: nn.Module,
    targets: list[Target],
    *,
    pruner: str,
    density: float,
    scope: str,
    schedule: str,
    iterations: int,
    inputs: ScoreInputs,
) -> dict:
    """Score -> mask `iterations` times along `schedule` down to `density`; the masks are
    installed on the targets (torch.nn.utils.prune). Returns density_report(targets)."""
    check_pruner(pruner)
    if not 0.0 < density <= 1.0:
        raise UserError(f"density {density!r} must be in (0, 1] (the fraction of weights kept)")
    if iterations < 1:
        raise UserError(f"prune iterations must be >= 1, got {iterations}")
    for step in range(1, iterations + 1):
        scores = compute_scores(
            pruner,
            model,
            targets,
            batches=inputs.batches,
            input_shape=inputs.input_shape,
            generator=inputs.generator,
            grasp_temperature=inputs.grasp_temperature,
            loss_fn=inputs.loss_fn,
        )
        step_density = schedule_density(density, step, iterations, schedule)
        masks = masks_for_density(keep_scores(pruner, scores), step_density, scope, current_masks(targets))
        apply_masks(targets, masks)
    return density_report(targets)


# ----------------------------------------------------------------------------- reporting
def _remaining(t: Target) -> int:
    return int(torch.count_nonzero(t.tensor))


def collapsed_layers(targets: list[Target]) -> list[str]:
    """Conv/linear weights with no remaining entry: the network is cut there (layer collapse)."""
    return [
        t.name
        for t in targets
        if t.param == "weight"
        and isinstance(t.module, (nn.Linear, nn.modules.conv._ConvNd))
        and t.numel()
        and _remaining(t) == 0
    ]


def density_report(targets: list[Target]) -> dict:
    """Remaining (non-zero) entries per target and overall, as density (kept) AND sparsity
    (pruned), plus the collapsed layers."""
    layers, remaining, total = [], 0, 0
    for t in targets:
        kept = _remaining(t)
        layers.append(
            {"name": t.name, "params": t.numel(), "remaining": kept, "density": kept / t.numel() if t.numel() else 0.0}
        )
        remaining, total = remaining + kept, total + t.numel()
    density = remaining / total if total else 0.0
    return {
        "remaining": remaining,
        "total": total,
        "density": density,
        "sparsity": 1.0 - density,
        "layers": layers,
        "collapsed_layers": collapsed_layers(targets),
    }


def format_density_table(report: dict) -> str:
    lines = [f"{'layer':<28} {'params':>9} {'remaining':>9} {'density':>8} {'sparsity':>8}"]
    for r in report["layers"]:
        flag = "  COLLAPSED" if r["name"] in report["collapsed_layers"] else ""
        lines.append(
            f"{r['name']:<28} {r['params']:>9} {r['remaining']:>9} {100 * r['density']:>7.2f}% "
            f"{100 * (1 - r['density']):>7.2f}%{flag}"
        )
    lines.append(
        f"{'total':<28} {report['total']:>9} {report['remaining']:>9} {100 * report['density']:>7.3f}% "
        f"{100 * report['sparsity']:>7.3f}%"
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- data and rewinding
def prune_batches(loader: Iterable, num_images: int, device: torch.device) -> Batches:
    """The first `num_images` training images (the loader's seeded epoch-0 order), in batches."""
    if num_images < 1:
        raise UserError(f"pai.prune_images must be >= 1 for snip/grasp, got {num_images}")
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0)
    batches, seen = [], 0
    for images, labels in loader:
        take = min(len(labels), num_images - seen)
        batches.append((images[:take].to(device), labels[:take].to(device)))
        seen += take
        if seen >= num_images:
            break
    if not batches:
        raise UserError("the training loader yielded no batch for the pruning scores; check data.train_subset")
    return batches


def initial_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the plain state (call before any mask is installed)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def rewind_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Lottery-ticket rewind: every parameter and buffer back to `state` (a plain state dict),
    pruned entries kept at zero; the masks themselves are not touched."""
    for module_name, module in model.named_modules():
        tensors = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        for name, tensor in tensors:
            base = name.removesuffix("_orig")
            masked = name.endswith("_orig") and is_reparameterized(module, base)
            if name.endswith("_mask") and is_reparameterized(module, name.removesuffix("_mask")):
                continue
            key = f"{module_name}.{base}" if module_name else base
            if key not in state:
                raise ValueError(f"rewind state lacks {key}; take it with initial_state() before pruning")
            value = state[key].to(device=tensor.device, dtype=tensor.dtype)
            if masked:
                mask = getattr(module, base + "_mask")
                tensor.copy_(value * mask)
                setattr(module, base, tensor.detach() * mask)  # the forward recomputes it anyway
            else:
                tensor.copy_(value)
