"""Tables and figures of prune-at-initialization runs, read back from their run folders.

    uv run python -m scripts.at_init_report results/prune_at_init/cifar10jpeg_resnet20 --histogram synflow:1

    runs = [load_run(Path("results/prune_at_init/demo"))]
    print(accuracy_table(runs, compression=1.0))        # data set x architecture x pruner
    print(grid_table(runs[0]["points"]))                # accuracy, inference time, FLOPs per pruner x compression
    plot_curves(runs[0]["points"], out_dir)             # *_vs_compression.png, one curve per pruner

Every table names density (fraction of prunable weights kept = 10^-compression) and sparsity
(1 - density) and says FLOPs = 2 x MACs. Accuracies are test top-1/top-5 (%) after the
post-training; a dagger marks a run with layer collapse (a conv/linear layer left without weights).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import yaml
from torch import nn

from tools.core.errors import UserError
from tools.core.plots import pyplot, save_figure
from tools.core.run_folder import CONFIG, PRUNED_MODEL
from tools.measure.metrics import format_count
from tools.pruning.at_init import PRUNERS
from tools.reports.tables import markdown_table

CURVES = (
    ("top1", "test top-1 (%)", "accuracy_vs_compression.png"),
    ("inference_time_s", "test-set inference time (s)", "inference_time_vs_compression.png"),
    ("nonzero_flops", "non-zero FLOPs per image (FLOPs = 2 x MACs)", "flops_vs_compression.png"),
)


# ----------------------------------------------------------------------------- reading
def load_run(run_dir: Path) -> dict:
    """results.yaml of a run folder: {"run": {...}, "points": [rows]}, plus its folder."""
    path = Path(run_dir) / "results.yaml"
    if not path.is_file():
        raise UserError(f"{path} not found; pass a run folder written by scripts.prune_at_init")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        tree = None
    if not isinstance(tree, dict) or not isinstance(tree.get("points"), list):
        raise UserError(f"{path} is not a prune_at_init results file (no 'points' list); re-run the experiment")
    tree["dir"] = Path(run_dir)
    return tree


def _config(run: dict) -> dict:
    path = run["dir"] / CONFIG
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def data_label(run: dict) -> str:
    """The data set's name; an image folder is named by its folder (e.g. cifar10-jpeg)."""
    name = run["run"]["data"]
    root = _config(run).get("data", {}).get("root")
    return f"{Path(root).name} ({name})" if name == "imagefolder" and root else name


def _order(pruners) -> list[str]:
    known = [p for p in PRUNERS if p in pruners]
    return known + sorted(set(pruners) - set(known))


def _close(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


# ----------------------------------------------------------------------------- tables
def _accuracy(point: dict | None) -> str:
    if point is None:
        return "-"
    dagger = " †" if point.get("collapsed_layers") else ""
    return f"{point['top1']:.2f}{dagger}"


def accuracy_table(runs: list[dict], compression: float = 1.0) -> str:
    """Test top-1 (%) at `compression`: one row per data set / architecture / experiment
    (level for multishot), one column per pruner."""
    pruners = _order({p["pruner"] for r in runs for p in r["points"]})
    rows = []
    for run in runs:
        levels = sorted({p.get("level") or 0 for p in run["points"]})
        for level in levels:
            at = {
                p["pruner"]: p
                for p in run["points"]
                if _close(p["compression"], compression) and (p.get("level") or 0) == level
            }
            if not at:
                continue
            what = run["run"]["experiment"] + (f", {level} level(s)" if level else "")
            rows.append([data_label(run), run["run"]["model"], what] + [_accuracy(at.get(p)) for p in pruners])
    density = 10**-compression
    title = (
        f"Test top-1 (%) at compression {compression:g}: density {density:.4g} of the prunable weights kept, "
        f"sparsity {1 - density:.4g}"
    )
    return title + "\n\n" + markdown_table(["data", "model", "experiment"] + pruners, rows)


def grid_table(points: list[dict]) -> str:
    """Accuracy, test-set inference time and FLOPs for every pruner x compression (x level)."""
    header = [
        "pruner",
        "compression",
        "density",
        "sparsity",
        "top-1 (%)",
        "top-5 (%)",
        "test-set inference (s)",
        "dense FLOPs",
        "non-zero FLOPs",
        "FLOPs reduction",
        "collapsed layers",
    ]
    multishot = any(p.get("level") for p in points)
    if multishot:
        header.insert(2, "levels")
    rows = []
    for p in sorted(
        points,
        key=lambda p: (
            _order([x["pruner"] for x in points]).index(p["pruner"]),
            float(p["compression"]),
            p.get("level") or 0,
        ),
    ):
        row = [
            p["pruner"],
            f"{p['compression']:g}",
            f"{p['density']:.4f}",
            f"{p['sparsity']:.4f}",
            f"{p['top1']:.2f}",
            f"{p['top5']:.2f}",
            f"{p['inference_time_s']:.2f}",
            format_count(p["dense_flops"]),
            format_count(p["nonzero_flops"]),
            f"{p['flops_reduction']:.2f}x",
            p.get("collapsed") or "none",
        ]
        if multishot:
            row.insert(2, str(p.get("level")))
        rows.append(row)
    return markdown_table(header, rows)


def cost_table(points: list[dict]) -> str:
    """Training wall time and peak memory per run (fill the AMP vs FP32 comparison from two runs)."""
    header = [
        "pruner",
        "compression",
        "amp",
        "device",
        "training epochs",
        "training wall time (s)",
        "peak memory (MiB)",
        "memory measured",
        "pruning time (s)",
    ]
    rows = []
    for p in points:
        memory = f"{p['peak_memory_mib']:.0f}" if p.get("peak_memory_mib") else "-"
        # singleshot pre-training is shared by every run: results.yaml reports it once (run.pretrain)
        epochs = (
            f"{p['level']} x {p['pre_epochs']} pre + {p['post_epochs']} post"
            if p.get("level")
            else f"{p['post_epochs']} post"
        )
        rows.append(
            [
                p["pruner"],
                f"{p['compression']:g}",
                str(p["amp"]),
                str(p["device"]),
                epochs,
                f"{p['train_wall_time_s']:.1f}",
                memory,
                str(p.get("memory_kind") or "-"),
                f"{p['prune_time_s']:.2f}",
            ]
        )
    return markdown_table(header, rows)


def trace_table(points: list[dict]) -> str | None:
    traced = [p for p in points if p.get("conv_time_ms") is not None]
    if not traced:
        return None
    rows = [
        [
            p["pruner"],
            f"{p['compression']:g}",
            str(p["trace_batch_size"]),
            f"{p['conv_time_ms']:.2f}",
            f"{p['step_time_ms']:.2f}",
            f"{p['conv_share_pct']:.1f}",
        ]
        for p in traced
    ]
    return markdown_table(
        ["pruner", "compression", "batch", "conv kernels (ms)", "inference step (ms)", "conv share (%)"], rows
    )


def _requested_amp(run: dict) -> str:
    return str(_config(run).get("train", {}).get("amp", "none"))


def amp_table(runs: list[dict]) -> str | None:
    """AMP vs FP32 from a pair of run folders, the first trained with train.amp none and the first
    with bf16/fp16 (`--quantization` / `--amp`): training wall time, peak memory and accuracy per
    pruner x compression. None without such a pair; a "needs CUDA" line when neither run could
    use mixed precision (train.amp falls back to fp32 off CUDA, so both measured fp32)."""
    fp32 = next((r for r in runs if _requested_amp(r) == "none"), None)
    amp = next((r for r in runs if _requested_amp(r) != "none"), None)
    if fp32 is None or amp is None:
        return None
    title = f"AMP ({_requested_amp(amp)}, {amp['dir']}) vs FP32 ({fp32['dir']}), training:"
    used = {p.get("amp") for p in amp["points"]}
    if used <= {"none"}:
        devices = sorted({str(p.get("device")) for r in (fp32, amp) for p in r["points"]})
        return (
            f"{title} needs CUDA: both runs trained in fp32 on {', '.join(devices)} (mixed precision runs on CUDA "
            "only; train.amp falls back to fp32 elsewhere). Rerun the pair with --device cuda to fill this table."
        )
    key = lambda p: (p["pruner"], float(p["compression"]), p.get("level") or 0)  # noqa: E731
    by_key = {key(p): p for p in fp32["points"]}
    rows = []
    for p in amp["points"]:
        f = by_key.get(key(p))
        if f is None:
            continue
        memory = lambda q: f"{q['peak_memory_mib']:.0f}" if q.get("peak_memory_mib") else "-"  # noqa: E731
        rows.append(
            [
                p["pruner"],
                f"{p['compression']:g}",
                f"{f['train_wall_time_s']:.1f}",
                f"{p['train_wall_time_s']:.1f}",
                f"{f['train_wall_time_s'] / p['train_wall_time_s']:.2f}x",
                memory(f),
                memory(p),
                f"{f['top1']:.2f}",
                f"{p['top1']:.2f}",
                f"{p['top1'] - f['top1']:+.2f}",
            ]
        )
    if not rows:
        return f"{title} the two runs share no pruner x compression point; run the same grid twice."
    return (
        title
        + "\n\n"
        + markdown_table(
            [
                "pruner",
                "compression",
                "FP32 train (s)",
                "AMP train (s)",
                "speed-up",
                "FP32 peak memory (MiB)",
                "AMP peak memory (MiB)",
                "FP32 top-1 (%)",
                "AMP top-1 (%)",
                "AMP - FP32 (pts)",
            ],
            rows,
        )
    )


def run_report(run: dict) -> str:
    info = run["run"]
    parts = [
        f"## {data_label(run)} / {info['model']} ({info['experiment']}), {run['dir']}",
        f"Training images {info.get('train_images')}, test images {info.get('test_images')}. "
        f"Density = {info['density_definition']}; {info['flops_definition']}; inference time = "
        f"{info['inference_time_definition']}.",
        grid_table(run["points"]),
        "Training cost:",
        cost_table(run["points"]),
    ]
    traces = trace_table(run["points"])
    if traces:
        parts += ["Convolution time in one traced inference step (overlapping kernels counted once):", traces]
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- figures
def _series(points: list[dict]) -> dict[str, list[dict]]:
    """label -> points sorted by compression; one label per pruner (and level in multishot)."""
    series: dict[str, list[dict]] = {}
    for p in points:
        label = p["pruner"] + (f" L{p['level']}" if p.get("level") else "")
        series.setdefault(label, []).append(p)
    return {k: sorted(v, key=lambda p: float(p["compression"])) for k, v in series.items()}


def plot_curves(points: list[dict], out_dir: Path) -> list[Path]:
    """accuracy, test-set inference time and non-zero FLOPs vs compression, one curve per pruner."""
    plt = pyplot()
    paths = []
    for key, ylabel, name in CURVES:
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, series in _series(points).items():
            ax.plot([float(p["compression"]) for p in series], [float(p[key]) for p in series], marker="o", label=label)
        ax.set_xlabel("compression c (density 10^-c of the prunable weights kept)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save_figure(fig, Path(out_dir) / name, dpi=110)
        paths.append(Path(out_dir) / name)
    return paths


def _weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))]


def plot_weight_histograms(model: nn.Module, path: Path, title: str, bins: int = 60) -> None:
    """One subplot per conv/linear layer: histogram of its remaining (non-zero) weights."""
    plt = pyplot()
    layers = _weighted_layers(model)
    cols = min(4, len(layers))
    rows = math.ceil(len(layers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), squeeze=False)
    for ax, (name, module) in zip(axes.flat, layers):
        weight = module.weight.detach().float().flatten().cpu()
        kept = weight[weight != 0]
        if kept.numel():
            ax.hist(kept.numpy(), bins=bins, color="tab:blue")
        collapsed = " (COLLAPSED)" if not kept.numel() else ""
        ax.set_title(f"{name}\ndensity {100 * kept.numel() / weight.numel():.2f}%{collapsed}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(layers) :]:
        ax.axis("off")
    fig.suptitle(f"{title}: remaining weights per layer", fontsize=9)
    fig.tight_layout()
    save_figure(fig, Path(path), dpi=110)


def _conv_count(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def first_block(model: nn.Module) -> str | None:
    """The first innermost submodule holding >= 2 convs (ResNet-20: layer1.0), or None."""
    for name, module in model.named_modules():
        if name and _conv_count(module) >= 2 and not any(_conv_count(c) >= 2 for c in module.children()):
            return name
    return None


def block_density(model: nn.Module, block: str) -> list[dict]:
    """Density (and sparsity) of each conv weight inside module `block`."""
    modules = dict(model.named_modules())
    if block not in modules:
        raise UserError(f"block {block!r} is not a module of the model; e.g. {first_block(model) or 'layer1.0'}")
    rows = []
    for name, m in modules[block].named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            kept = int(torch.count_nonzero(m.weight))
            rows.append(
                {
                    "name": f"{block}.{name}",
                    "params": m.weight.numel(),
                    "remaining": kept,
                    "density": kept / m.weight.numel(),
                    "sparsity": 1 - kept / m.weight.numel(),
                }
            )
    return rows


def block_table(rows: list[dict]) -> str:
    return markdown_table(
        ["conv", "params", "remaining", "density", "sparsity"],
        [
            [r["name"], str(r["params"]), str(r["remaining"]), f"{r['density']:.4f}", f"{r['sparsity']:.4f}"]
            for r in rows
        ],
    )


def parse_point(text: str) -> tuple[str, float, int | None]:
    """'synflow:1' or 'synflow:1:2' (multishot level) -> (pruner, compression, level)."""
    parts = text.split(":")
    try:
        pruner, compression = parts[0], float(parts[1])
        level = int(parts[2]) if len(parts) > 2 else None
    except (IndexError, ValueError):
        raise UserError(f"--histogram expects PRUNER:COMPRESSION[:LEVEL], e.g. synflow:1, got {text!r}") from None
    if len(parts) > 3:
        raise UserError(f"--histogram expects PRUNER:COMPRESSION[:LEVEL], e.g. synflow:1, got {text!r}")
    return pruner, compression, level


def load_point_model(run: dict, pruner: str, compression: float, level: int | None) -> tuple[nn.Module, dict]:
    """The pruned model of one grid point (plain weights with zeros) and its row."""
    from tools.modeling.checkpoint import load_model
    from tools.modeling.config import ModelConfig

    match = [
        p
        for p in run["points"]
        if p["pruner"] == pruner
        and _close(p["compression"], compression)
        and (level is None or (p.get("level") or None) == level)
    ]
    if not match:
        have = ", ".join(
            f"{p['pruner']}:{p['compression']:g}" + (f":{p['level']}" if p.get("level") else "") for p in run["points"]
        )
        raise UserError(f"no run {pruner}:{compression:g} in {run['dir']}; it has {have}")
    point = match[0]
    name = f"{point['pruner']}_c{point['compression']:g}" + (f"_L{point['level']}" if point.get("level") else "")
    info = run["run"]
    stored = _config(run).get("model", {})
    model_cfg = ModelConfig(name=info["model"], stem=stored.get("stem", "auto"), kwargs=stored.get("kwargs") or {})
    model, _ = load_model(
        run["dir"] / name / PRUNED_MODEL,
        model_cfg=model_cfg,
        num_classes=info["num_classes"],
        input_shape=tuple(info["input_shape"]),
    )
    return model, point
