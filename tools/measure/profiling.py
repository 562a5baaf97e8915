"""Cost and latency profiles of several models, and the FLOPs-vs-latency comparison.

    uv run python -m scripts.profile --baseline base.pth --pruned pruned.pth --measure-latency

    entry = profile_model("pruned", model, (3, 32, 32))          # MACs, FLOPs, params, size
    plan = LatencyPlan(batch_sizes=[1, 64], backends=["torch"], device=torch.device("cpu"), num_threads=1)
    entry["latency"] = measure_models({"pruned": model}, (3, 32, 32), plan)["pruned"]
    rows = flops_vs_latency(baseline_entry, entry)   # one row per backend and batch size

Latency figures are the median of `repeats` timed runs after `warmup` untimed ones, with the
thread count recorded; p90/median is reported as the noise. With several rounds the models are
timed in turns (interleaved), which keeps comparisons fair on a machine other jobs share.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tools.core.errors import UserError
from tools.core.run_folder import QUANTIZE_RECORD
from tools.measure.metrics import count_macs_params, flops_from_macs, model_size_bytes, per_layer_macs

BACKENDS = ("torch", "onnxruntime", "both")
SMALL_BATCH = 8  # at or below this, fixed per-layer costs dominate on most hardware
DIVERGENCE = 0.8  # latency reduction below this fraction of the FLOPs reduction needs explaining


def backend_list(backend: str) -> list[str]:
    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    return ["torch", "onnxruntime"] if backend == "both" else [backend]


def profile_model(label: str, model: nn.Module, input_shape: tuple[int, int, int]) -> dict:
    """Cost figures (MACs, FLOPs, params, size); `measure_models` adds the latency."""
    model = model.eval()
    macs, params = count_macs_params(model, (1, *input_shape), device=next(model.parameters()).device)
    return {
        "label": label,
        "macs": macs,
        "flops": flops_from_macs(macs),
        "params": params,
        "size_bytes": model_size_bytes(model),
        "channels_not_multiple_of_8": channels_not_multiple_of(model, 8),
        "channels_not_multiple_of_16": channels_not_multiple_of(model, 16),
        "off_fast_path": off_fast_path(model),
        "latency": {},
    }


@dataclass(frozen=True)
class LatencyPlan:
    """What to time and how (the profile.* keys of the same names)."""

    batch_sizes: list[int]
    backends: list[str]  # torch and/or onnxruntime
    device: torch.device
    warmup: int = 10  # untimed runs first
    repeats: int = 50  # timed runs, split over the rounds
    num_threads: int | None = None  # None: torch's default
    rounds: int = 1  # > 1: the models take turns (interleaved)


def measure_models(
    models: dict[str, nn.Module],
    input_shape: tuple[int, int, int],
    plan: LatencyPlan,
    onnx_files: dict[str, Path] | None = None,
) -> dict[str, dict[str, dict[int, dict]]]:
    """Latency per model, backend and batch size; `onnx_files` (label -> .onnx file, FP32 or INT8)
    are timed on onnxruntime alone. With `plan.rounds` > 1 the models take turns: every round
    times each of them with repeats / rounds runs, so a burst of load from another process hits
    all models alike instead of whichever was being timed; the figures are then those of the
    round medians (see merge_rounds)."""
    rounds = plan.rounds
    if rounds < 1:
        raise UserError(f"profile.rounds must be >= 1, got {rounds}")
    per_round = -(-plan.repeats // rounds)
    labels = list(models) + list(onnx_files or {})
    with tempfile.TemporaryDirectory() as tmp:
        onnx = dict(onnx_files or {})
        if "onnxruntime" in plan.backends:
            from tools.modeling.export import export_onnx

            for i, (label, model) in enumerate(models.items()):
                onnx[label] = export_onnx(copy.deepcopy(model).cpu(), input_shape, Path(tmp) / f"{i}.onnx", opset=17)

        def time_one(label: str, first: bool) -> dict[str, dict[int, dict]]:
            model = models.get(label)
            this = replace(plan, warmup=plan.warmup if first else max(1, plan.warmup // rounds), repeats=per_round)
            if model is None:  # an ONNX file: onnxruntime on the CPU only
                this = replace(this, backends=["onnxruntime"], device=torch.device("cpu"))
            return measure_backends(model, input_shape, this, onnx_path=onnx.get(label))

        timed = [{label: time_one(label, r == 0) for label in labels} for r in range(rounds)]
    return {
        label: {
            backend: {bs: merge_rounds([t[label][backend][bs] for t in timed]) for bs in by_batch}
            for backend, by_batch in timed[0][label].items()
        }
        for label in labels
    }


def profile_onnx(label: str, path: Path) -> dict:
    """profile_model's figures for an ONNX file: its size and precision, and the MACs/params
    scripts.quantize recorded beside it (None when unknown; INT8 files do the same MACs in int8)."""
    from tools.core.io import read_yaml_mapping
    from tools.modeling.export import is_int8

    sidecar = read_yaml_mapping(path.parent / QUANTIZE_RECORD) or {}
    macs = sidecar.get("macs")
    return {
        "label": label,
        "onnx": str(path),
        "precision": "int8" if is_int8(path) else "fp32",
        "macs": macs,
        "flops": flops_from_macs(macs) if macs else None,
        "params": sidecar.get("params"),
        "size_bytes": path.stat().st_size,
        "channels_not_multiple_of_8": [],
        "channels_not_multiple_of_16": [],
        "latency": {},
    }


def merge_rounds(stats: list[dict]) -> dict:
    """One set of statistics from several rounds' (one round: unchanged). The median, p90 and
    spread are over the round medians, so p90/median measures how much the rounds disagree."""
    if len(stats) == 1:
        return stats[0]
    medians = [s["median_ms"] for s in stats]
    median_ms = statistics.median(medians)
    return stats[0] | {
        "mean_ms": statistics.fmean(s["mean_ms"] for s in stats),
        "std_ms": statistics.stdev(medians),
        "median_ms": median_ms,
        "p90_ms": float(np.percentile(medians, 90)),
        "p99_ms": max(s["p99_ms"] for s in stats),
        "min_ms": min(s["min_ms"] for s in stats),
        "throughput_ips": stats[0]["batch_size"] * 1000.0 / median_ms,
        "repeats": sum(s["repeats"] for s in stats),
        "rounds": len(stats),
        "round_medians_ms": medians,
    }


def measure_backends(
    model: nn.Module, input_shape: tuple[int, int, int], plan: LatencyPlan, onnx_path: Path | None = None
) -> dict[str, dict[int, dict]]:
    """One model's latency per backend and batch size (plan.rounds is ignored here); onnxruntime
    times the ONNX file at `onnx_path`."""
    from tools.measure.latency import measure_latency, measure_onnx_latency

    timing = {"warmup": plan.warmup, "repeats": plan.repeats, "num_threads": plan.num_threads}
    results: dict[str, dict[int, dict]] = {}
    if "torch" in plan.backends:
        results["torch"] = {
            bs: measure_latency(model, input_shape, batch_size=bs, device=plan.device, **timing)
            for bs in plan.batch_sizes
        }
    if "onnxruntime" in plan.backends:
        results["onnxruntime"] = {
            bs: measure_onnx_latency(str(onnx_path), input_shape, batch_size=bs, **timing) for bs in plan.batch_sizes
        }
    return results


def channels_not_multiple_of(model: nn.Module, multiple: int) -> list[str]:
    """Conv layers whose output channels are not a multiple of `multiple`: vectorised kernels
    pad such layers, so their latency shrinks less than their FLOPs."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.out_channels % multiple and m.groups == 1
    ]


def off_fast_path(model: nn.Module, backend: str = "onnxruntime") -> dict:
    """Convs whose channel counts are not multiples of the backend's fast block on this machine
    (tools.pruning.latency_target.fast_multiple: 16 with AVX-512, 8 with AVX2, 8 on CUDA), each with the
    counts it would need: such a conv drops to a slower kernel or is padded to the next block."""
    from tools.measure.latency import fast_multiple

    multiple = fast_multiple(backend)
    layers = []
    for name, m in model.named_modules():
        if not isinstance(m, nn.Conv2d) or m.groups != 1:
            continue
        # the stem's 3 image channels are reordered once by the runtime, not per block
        odd_in = m.in_channels % multiple and m.in_channels > 4
        if m.out_channels % multiple or odd_in:
            layers.append(
                {
                    "layer": name,
                    "in": m.in_channels,
                    "out": m.out_channels,
                    "needs_in": _next_multiple(m.in_channels, multiple) if odd_in else m.in_channels,
                    "needs_out": _next_multiple(m.out_channels, multiple),
                }
            )
    return {"multiple": multiple, "layers": layers}


def _next_multiple(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def fast_path_text(off: dict, backend: str, limit: int = 3) -> str:
    """'layer1.0.conv1 has 12 -> 12 channels, needs 16 -> 16; ...' for the first `limit` layers."""
    shown = "; ".join(
        f"{r['layer']} has {r['in']} -> {r['out']} channels, needs {r['needs_in']} -> {r['needs_out']}"
        for r in off["layers"][:limit]
    )
    more = f" and {len(off['layers']) - limit} more" if len(off["layers"]) > limit else ""
    return (
        f"{len(off['layers'])} conv layers fall off {backend}'s fast path of {off['multiple']}-channel blocks on "
        f"this machine ({shown}{more}); prune with structured.round_to={off['multiple']} or a latency target"
    )


def slowest_layers(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    batch_size: int,
    device: torch.device,
    repeats: int,
    top: int = 10,
) -> list[dict]:
    """Per-layer time share (hooks) joined with each layer's MACs, slowest first."""
    from tools.measure.latency import per_layer_latency

    macs = per_layer_macs(model, (batch_size, *input_shape), device=next(model.parameters()).device)
    rows = per_layer_latency(model, input_shape, batch_size=batch_size, device=device, repeats=repeats)
    total_macs = max(sum(macs.values()), 1)
    return [
        row | {"macs": macs.get(row["name"], 0), "macs_share_pct": 100.0 * macs.get(row["name"], 0) / total_macs}
        for row in rows[:top]
    ]


def reduction_pct(baseline: float, current: float) -> float:
    return 100.0 * (1.0 - current / baseline) if baseline else 0.0


def flops_vs_latency(baseline: dict, pruned: dict) -> list[dict]:
    """Per backend and batch size: FLOPs reduction, latency reduction, their ratio, noise and
    a plain explanation when latency falls much less than FLOPs. FP32 models only: an INT8 file's
    speed-up comes from its kernels, not its FLOPs (see the precision of profile entries)."""
    if (
        not baseline.get("flops")
        or not pruned.get("flops")
        or "int8" in (baseline.get("precision"), pruned.get("precision"))
    ):
        return []
    flops_red = reduction_pct(baseline["flops"], pruned["flops"])
    rows = []
    for backend, by_batch in pruned["latency"].items():
        for bs, stats in by_batch.items():
            base = baseline["latency"].get(backend, {}).get(bs)
            if base is None:
                continue
            lat_red = reduction_pct(base["median_ms"], stats["median_ms"])
            ratio = lat_red / flops_red if flops_red > 0 else None
            rows.append(
                {
                    "model": pruned["label"],
                    "backend": backend,
                    "batch_size": bs,
                    "flops_reduction_pct": flops_red,
                    "latency_reduction_pct": lat_red,
                    "speedup": base["median_ms"] / stats["median_ms"],
                    "latency_over_flops_reduction": ratio,
                    "noise_p90_over_median": max(s["p90_ms"] / s["median_ms"] for s in (base, stats)),
                    "explanation": explain(
                        flops_red,
                        lat_red,
                        batch_size=bs,
                        device=stats["device"],
                        backend=backend,
                        channels=ChannelFacts.of(pruned),
                        noise=max(s["p90_ms"] / s["median_ms"] for s in (base, stats)),
                    ),
                }
            )
    return rows


@dataclass(frozen=True)
class ChannelFacts:
    """What a pruned model's channel counts say about its kernels' fast paths (profile entry keys)."""

    odd_8: list[str] = field(default_factory=list)  # convs whose counts are not multiples of 8
    odd_16: list[str] = field(default_factory=list)  # ... of 16 (ONNX Runtime's AVX-512 blocks)
    off_fast_path: dict | None = None  # off_fast_path(): the layers and the counts they need

    @classmethod
    def of(cls, entry: dict) -> ChannelFacts:
        return cls(
            entry.get("channels_not_multiple_of_8", []),
            entry.get("channels_not_multiple_of_16", []),
            entry.get("off_fast_path"),
        )


def explain(
    flops_red: float,
    lat_red: float,
    *,
    batch_size: int,
    device: str,
    noise: float,
    backend: str = "torch",
    channels: ChannelFacts = ChannelFacts(),
) -> str:
    """Why the measured latency did (not) follow the FLOPs, in words a practitioner can act on."""
    odd_channels, odd_channels_16, off_fast_path = channels.odd_8, channels.odd_16, channels.off_fast_path
    if flops_red <= 0:
        return (
            "no FLOPs reduction: latency can only change by noise or by unstructured sparsity the dense kernels ignore"
        )
    if lat_red > 1.2 * flops_red:
        return (
            "latency fell more than FLOPs: smaller layers now fit in cache, or the baseline was timed "
            "while the machine was busier; re-measure on an idle machine before trusting the ratio"
        )
    if lat_red >= DIVERGENCE * flops_red:
        return "latency follows FLOPs: the model is compute bound here"
    reasons = []
    if noise > 1.2:
        reasons.append(f"timings are noisy (p90/median {noise:.2f}); re-run with more repeats on an idle machine")
    if batch_size <= SMALL_BATCH:
        reasons.append(
            f"at batch {batch_size} each layer's fixed cost (dispatch, kernel launch, thread sync) "
            "is a large share of its time and does not shrink with channels"
        )
    if device.startswith("cuda"):
        reasons.append("on the GPU small kernels are launch bound: fewer channels leave the launch count unchanged")
    if off_fast_path is not None and device == "cpu":  # names the layers and the counts they need
        odd_channels, odd_channels_16 = [], []
        if off_fast_path["layers"]:
            reasons.append(fast_path_text(off_fast_path, backend))
    if odd_channels:
        reasons.append(
            f"{len(odd_channels)} conv layers have channel counts that are not multiples of 8 "
            f"(e.g. {odd_channels[0]}), which vectorised kernels pad; use round_to=8"
        )
    if backend == "onnxruntime" and device == "cpu" and odd_channels_16:
        reasons.append(
            f"ONNX Runtime's CPU convolutions compute in blocks of 16 channels on AVX-512 (8 on AVX2), "
            f"so {len(odd_channels_16)} conv layers with counts between blocks (e.g. {odd_channels_16[0]}) "
            f"cost as much as the next multiple of 16; try structured.round_to=16"
        )
    reasons.append(
        "memory-bound layers (BN, activations, pooling, depthwise convs, residual adds) move "
        "data rather than compute and shrink less than the FLOPs"
    )
    return "; ".join(reasons)


def plot_latency_vs_macs(entries: list[dict], path: Path) -> Path | None:
    """One scatter per batch size: median latency (ms) against MMACs, a marker per backend, and
    per backend the dashed line where latency would fall in proportion to MACs from the first
    entry (the baseline), so the gap to it is seen at a glance. Labels are spread apart."""
    from tools.core.plots import axis, pyplot, save_figure, spread_labels

    plt = pyplot()
    batch_sizes = sorted({bs for e in entries for by in e["latency"].values() for bs in by})
    if not batch_sizes:
        return None
    fig, axes = plt.subplots(1, len(batch_sizes), figsize=(5.5 * len(batch_sizes), 4.5), squeeze=False)
    markers = {"torch": "o", "onnxruntime": "s"}
    macs_label, macs_scale = axis("macs")
    for ax, bs in zip(axes[0], batch_sizes):
        labels = []
        for backend, marker in markers.items():
            points = [
                (macs_scale * e["macs"], e["latency"][backend][bs]["median_ms"], e["label"])
                for e in entries
                if bs in e["latency"].get(backend, {}) and e.get("macs")
            ]
            if not points:
                continue
            dots = ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=backend, zorder=3)
            x0, y0 = points[0][:2]
            ax.plot(
                [0, 1.05 * x0],
                [0, 1.05 * y0],
                "--",
                color=dots.get_facecolor()[0],
                alpha=0.6,
                linewidth=1,
                label=f"{backend}: latency proportional to MACs",
            )
            labels += points
        ax.set_ylim(bottom=0)
        spread_labels(ax, labels)
        ax.set(
            title=f"batch {bs}",
            xlabel=macs_label,
            ylabel="median latency per batch (ms)",
            xlim=(0, None),
            ylim=(0, None),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)
