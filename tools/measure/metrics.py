"""Model cost and quality metrics: MACs/params, sparsity, size, accuracy, before/after tables.

    >>> from torch import nn
    >>> macs, params = count_macs_params(nn.Conv2d(3, 64, 3, padding=1), (1, 3, 32, 32))
    >>> print(format_count(macs), "MACs =", format_count(flops_from_macs(macs)), "FLOPs;", params, "params")
    1.84M MACs = 3.67M FLOPs; 1792 params

    print(format_comparison(compare_metrics(baseline, pruned)))   # two metrics dicts side by side

Counting rules (mirroring torch_pruning.utils.count_ops_and_params, so the two agree
exactly at batch 1): a module is charged only if its exact type has a rule; a charged
module's children are not visited; everything else, functional ops included (residual
adds, F.relu, SE scaling, Hardswish/SiLU/Sigmoid modules), costs nothing.

- Conv*/ConvTranspose*: weight elements x batch x output positions, + output elements if bias.
- Linear: weight elements x tokens (all input dims but the last), + out_features x tokens if
  bias. tp charges the bias once per call instead of per token; identical for 2-D inputs of
  batch 1, which is what every registry model's classifier sees.
- BatchNorm/InstanceNorm/GroupNorm/LayerNorm: input elements, x2 when affine.
- Pooling (max/avg/adaptive): input elements. ReLU/ReLU6/PReLU/ELU/LeakyReLU/GELU: output
  elements. Upsample: output elements.
- RNN and MultiheadAttention, which tp also charges, are not modelled here (counted 0).
- A module shared by two parents is charged per call; tp adds its total once per parent.

Counts are for one forward of `input_shape`, batch dimension included; pass batch 1 for
per-image figures. thop agrees within 1% on the registry models: it charges ReLUs and
max-pools nothing and average pools per output element, the differences are small.

`normalize_metrics` vs `compare_metrics`: the first returns the derived headline figures
(accuracy drop, reductions, speed-up) as one flat JSON-friendly dict for result files and
plots; the second returns one row per raw metric (baseline, current, change) for humans,
rendered by `format_comparison`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn

from tools.core.errors import UserError

WeightCounter = Callable[[torch.Tensor], int]
_Rule = Callable[[nn.Module, tuple, torch.Tensor, WeightCounter], int]

METRIC_KEYS = ("top1", "top5", "macs", "params", "size_bytes", "latency_ms")
_ACCURACY_KEYS = ("top1", "top5")
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


# ------------------------------------------------------------------ counting rules


def _dense_weights(weight: torch.Tensor) -> int:
    return weight.numel()


def _nonzero_weights(weight: torch.Tensor) -> int:
    return int(torch.count_nonzero(weight))


def _conv_macs(m: nn.Module, inputs: tuple, output: torch.Tensor, weights: WeightCounter) -> int:
    # weight elements = k * in * out / groups: the MACs at one output position.
    positions = output.shape[0] * math.prod(output.shape[2:])
    bias = m.out_channels * positions if m.bias is not None else 0
    return weights(m.weight) * positions + bias


def _linear_macs(m: nn.Module, inputs: tuple, output: torch.Tensor, weights: WeightCounter) -> int:
    tokens = math.prod(inputs[0].shape[:-1])
    bias = m.out_features * tokens if m.bias is not None else 0
    return weights(m.weight) * tokens + bias


def _norm_macs(m: nn.Module, inputs: tuple, output: torch.Tensor, weights: WeightCounter) -> int:
    affine = getattr(m, "affine", False) or getattr(m, "elementwise_affine", False)
    return inputs[0].numel() * (2 if affine else 1)


def _input_elements(m: nn.Module, inputs: tuple, output: torch.Tensor, weights: WeightCounter) -> int:
    return inputs[0].numel()


def _output_elements(m: nn.Module, inputs: tuple, output: torch.Tensor, weights: WeightCounter) -> int:
    return output.numel()


def _rules() -> dict[type, _Rule]:
    """Exact module type -> MACs rule. Exact types, not isinstance, as tp does."""
    convs = [nn.Conv1d, nn.Conv2d, nn.Conv3d]
    convs += [nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d]
    norms = [nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm]
    norms += [nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d]
    pools = [nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d]
    pools += [nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d]
    pools += [nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d]
    activations = [nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.GELU, nn.Upsample]
    rules: dict[type, _Rule] = {t: _conv_macs for t in convs}
    rules[nn.Linear] = _linear_macs
    rules.update({t: _norm_macs for t in norms})
    rules.update({t: _input_elements for t in pools})
    rules.update({t: _output_elements for t in activations})
    return rules


def _charged_modules(module: nn.Module, rules: Mapping[type, _Rule]) -> Iterator[nn.Module]:
    """Modules with a rule, not descending into them (their children would double count)."""
    if type(module) in rules:
        yield module
        return
    for child in module.children():
        yield from _charged_modules(child, rules)


# ---------------------------------------------------------------- the counters


def _pruned_view(module: nn.Module, name: str, param: torch.Tensor) -> torch.Tensor:
    """torch.nn.utils.prune keeps the dense `w_orig` as the parameter and the masked
    product as the plain attribute `w`: the latter is what the model computes with."""
    masked = getattr(module, name.removesuffix("_orig"), None) if name.endswith("_orig") else None
    return masked if isinstance(masked, torch.Tensor) else param


def _effective_parameters(model: nn.Module) -> Iterator[torch.Tensor]:
    """Each parameter once (shared ones too), pruning masks applied."""
    seen: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) not in seen:
                seen.add(id(param))
                yield _pruned_view(module, name, param)


def _model_device_dtype(model: nn.Module, device) -> tuple[torch.device, torch.dtype]:
    first = next(model.parameters(), None)
    if first is None:
        return torch.device(device or "cpu"), torch.get_default_dtype()
    return torch.device(device) if device else first.device, first.dtype


def _check_shape(input_shape: tuple) -> None:
    if not input_shape or not all(isinstance(d, int) and d >= 1 for d in input_shape):
        raise UserError(
            f"input shape {tuple(input_shape)!r} must be positive integers, batch first, e.g. (1, 3, 32, 32)"
        )


@torch.no_grad()
def _forward_macs(
    model: nn.Module, input_shape: tuple, weights: WeightCounter, device, per_module: dict | None = None
) -> int:
    rules = _rules()
    total = [0]

    def hook(m: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        macs = int(rules[type(m)](m, inputs, output, weights))
        total[0] += macs
        if per_module is not None:
            per_module[m] = per_module.get(m, 0) + macs

    _check_shape(input_shape)
    device, dtype = _model_device_dtype(model, device)
    modes = {m: m.training for m in model.modules()}
    # dict.fromkeys: a module shared by two parents must still be hooked only once
    charged = dict.fromkeys(_charged_modules(model, rules))
    handles = [m.register_forward_hook(hook) for m in charged]
    try:
        model.eval()
        model(torch.zeros(tuple(input_shape), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():  # per module: some may have been frozen in eval
            m.training = training
    return total[0]


def count_macs_params(model: nn.Module, input_shape: tuple, device=None) -> tuple[int, int]:
    """(MACs, parameters) of one eval-mode forward of zeros shaped `input_shape`.

    The input is made on `device` (default: where the model's parameters are) in the
    parameters' dtype; the model is not moved. Training modes are restored afterwards.
    """
    macs = _forward_macs(model, input_shape, _dense_weights, device)
    params = sum(p.numel() for p in model.parameters())
    return macs, params


def count_nonzero_macs_params(model: nn.Module, input_shape: tuple, device=None) -> tuple[int, int]:
    """Like count_macs_params, but conv/linear only pay for non-zero weights and params are
    the non-zero entries: the work left after unstructured pruning, on ideal sparse kernels."""
    macs = _forward_macs(model, input_shape, _nonzero_weights, device)
    params = sum(_nonzero_weights(p) for p in _effective_parameters(model))
    return macs, params


def per_layer_macs(model: nn.Module, input_shape: tuple, device=None) -> dict[str, int]:
    """Dense MACs of each charged module by qualified name; they sum to count_macs_params."""
    per_module: dict = {}
    _forward_macs(model, input_shape, _dense_weights, device, per_module)
    names = {m: name for name, m in model.named_modules()}
    return {names[m]: macs for m, macs in per_module.items()}


def flops_from_macs(macs: int) -> int:
    """One multiply-accumulate is two floating-point operations."""
    return 2 * int(macs)


def format_count(n: float) -> str:
    """Short human count: 1234567890 -> '1.23G', 950 -> '950'."""
    for suffix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if round(abs(n) / scale, 2) >= 1:
            return f"{n / scale:.2f}{suffix}"
    return str(int(n)) if float(n).is_integer() else f"{n:.2f}"


# ---------------------------------------------------------------------- sparsity


def _weighted_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if isinstance(module, _WEIGHTED) and isinstance(getattr(module, "weight", None), torch.Tensor):
            yield name, module


def weight_sparsity(model: nn.Module) -> float:
    """Fraction (0..1) of conv/linear weight entries that are exactly zero."""
    total = zeros = 0
    for _, module in _weighted_layers(model):
        total += module.weight.numel()
        zeros += module.weight.numel() - _nonzero_weights(module.weight)
    return zeros / total if total else 0.0


def layer_sparsity_table(model: nn.Module) -> list[dict]:
    """One row per conv/linear layer; `params` counts the weight only (bias excluded), so
    that sparsity = 1 - nonzero / params."""
    rows = []
    for name, module in _weighted_layers(model):
        params = module.weight.numel()
        nonzero = _nonzero_weights(module.weight)
        rows.append(
            {
                "name": name,
                "type": type(module).__name__,
                "shape": list(module.weight.shape),
                "params": params,
                "nonzero": nonzero,
                "sparsity": 1 - nonzero / params if params else 0.0,
            }
        )
    return rows


def _aligned(table: list[list[str]], right_from: int) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [c.ljust(w) if i < right_from else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_layer_table(rows: Sequence[Mapping]) -> str:
    """Aligned text table of layer_sparsity_table rows, with a total line."""
    table = [["layer", "type", "shape", "params", "nonzero", "sparsity"]]
    for r in rows:
        shape = "x".join(str(d) for d in r["shape"])
        table.append([r["name"], r["type"], shape, str(r["params"]), str(r["nonzero"]), f"{100 * r['sparsity']:.2f}%"])
    params = sum(r["params"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    overall = 1 - nonzero / params if params else 0.0
    table.append(["total", "", "", str(params), str(nonzero), f"{100 * overall:.2f}%"])
    return _aligned(table, right_from=3)


# ----------------------------------------------------------------- size, accuracy


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of torch.save(model.state_dict()): a checkpoint's size, give or take a few
    bytes, as the zip records inside a file are named after the file."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def file_size_bytes(path: str | os.PathLike) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        raise UserError(f"cannot read the size of {os.fspath(path)!r}; check the path exists") from None


@torch.no_grad()
def accuracy_topk(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[torch.Tensor]:
    """Number of samples whose target is among the top-k logits, for each k: counts (so batches can
    be summed), as tensors on the logits' device (so a batch loop need not wait for the GPU). k is
    capped at the number of classes: top-5 of 3 classes is 3."""
    num_classes = logits.shape[1]
    top = logits.topk(min(max(ks), num_classes), dim=1).indices
    hits = top.eq(targets.view(-1, 1))
    return [hits[:, : min(k, num_classes)].any(dim=1).sum() for k in ks]


# ---------------------------------------------------------- baseline vs current


def _value(metrics: Mapping, key: str) -> float | None:
    value = metrics.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"metric {key!r} must be a number, got {value!r}")
    return float(value)


def _pairs(baseline: Mapping, current: Mapping) -> dict[str, tuple[float, float]]:
    """The metrics known to both sides, in METRIC_KEYS order."""
    pairs = {}
    for key in METRIC_KEYS:
        b, c = _value(baseline, key), _value(current, key)
        if b is not None and c is not None:
            pairs[key] = (b, c)
    return pairs


def _reduction_pct(key: str, b: float, c: float) -> float:
    if b <= 0:
        raise UserError(f"baseline {key} is {b:g}; it must be positive to compute a reduction")
    return 100.0 * (b - c) / b


def _ratio(key: str, b: float, c: float) -> float:
    if c <= 0:
        raise UserError(f"current {key} is {c:g}; it must be positive to compute a ratio")
    return b / c


def normalize_metrics(baseline: Mapping, current: Mapping) -> dict[str, float]:
    """Headline figures for the keys present in both dicts (top1/top5 in percent):

    accuracy_drop (top1 points, positive = worse), macs_reduction_pct, flops_reduction_pct
    (equal: FLOPs = 2 x MACs on both sides), macs_ratio (baseline / current, '2.0x fewer'),
    params_reduction_pct, size_reduction_pct, latency_reduction_pct, speedup (baseline
    latency / current). Reductions are positive when the current model is smaller/faster.
    """
    pairs = _pairs(baseline, current)
    out: dict[str, float] = {}
    if "top1" in pairs:
        b, c = pairs["top1"]
        out["accuracy_drop"] = b - c
    if "macs" in pairs:
        out["macs_reduction_pct"] = _reduction_pct("macs", *pairs["macs"])
        out["flops_reduction_pct"] = out["macs_reduction_pct"]
        out["macs_ratio"] = _ratio("macs", *pairs["macs"])
    for key, name in (("params", "params"), ("size_bytes", "size"), ("latency_ms", "latency")):
        if key in pairs:
            out[f"{name}_reduction_pct"] = _reduction_pct(key, *pairs[key])
    if "latency_ms" in pairs:
        out["speedup"] = _ratio("latency_ms", *pairs["latency_ms"])
    return out


def compare_metrics(baseline: Mapping, current: Mapping) -> list[dict]:
    """Rows {metric, baseline, current, change, change_pct} for the keys present in both.

    change = current - baseline (percentage points for top1/top5); change_pct is relative
    to the baseline (None when the baseline is 0).
    """
    rows = []
    for key, (b, c) in _pairs(baseline, current).items():
        change_pct = 100.0 * (c - b) / b if b else None
        rows.append({"metric": key, "baseline": b, "current": c, "change": c - b, "change_pct": change_pct})
    return rows


def _format_value(key: str, value: float) -> str:
    if key in _ACCURACY_KEYS:
        return f"{value:.2f}%"
    if key == "latency_ms":
        return f"{value:.3f} ms"
    if key == "size_bytes":
        return f"{format_count(value)}B"
    return format_count(value)


def _format_change(row: Mapping) -> str:
    if row["metric"] in _ACCURACY_KEYS:
        return f"{row['change']:+.2f} pts"
    if row["change_pct"] is None:
        return "n/a"
    return f"{row['change_pct']:+.2f}%"


def format_comparison(rows: Sequence[Mapping]) -> str:
    """Aligned text table of compare_metrics rows."""
    table = [["metric", "baseline", "current", "change"]]
    for r in rows:
        key = r["metric"]
        table.append([key, _format_value(key, r["baseline"]), _format_value(key, r["current"]), _format_change(r)])
    return _aligned(table, right_from=1)
