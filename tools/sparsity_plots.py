"""PNG figures of pruning runs: per-layer weight histograms with sparsity, and sensitivity curves.

    uv run python -m scripts.prune_unstructured --checkpoint results/train/quickstart/best_model.pth --sparsity 0.8

    plot_layer_weights(model, run_dir / "layer_weights.png")
    plot_sensitivity(rows, baseline_top1=91.2, path=run_dir / "sensitivity.png")

Matplotlib runs headless (Agg) and every PNG is rendered in memory and written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from torch import nn

from tools.io import atomic_write_bytes
from tools.metrics import layer_sparsity_table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_layer_weights(model: nn.Module, path: str | Path, bins: int = 60) -> None:
    """Top: sparsity per conv/linear layer (bars). Below: one histogram per layer of its
    non-zero weights (pruning by magnitude carves a gap around zero)."""
    plt = _pyplot()
    rows = layer_sparsity_table(model)
    modules = dict(model.named_modules())
    cols = min(5, max(1, len(rows)))
    grid_rows = math.ceil(len(rows) / cols)
    fig = plt.figure(figsize=(3.2 * cols, 3.0 + 2.2 * grid_rows))
    spec = fig.add_gridspec(grid_rows + 1, cols, height_ratios=[1.4] + [1] * grid_rows)
    bars = fig.add_subplot(spec[0, :])
    bars.bar(range(len(rows)), [100 * r["sparsity"] for r in rows], color="tab:red")
    bars.set_xticks(range(len(rows)), [r["name"] for r in rows], rotation=60, ha="right", fontsize=7)
    bars.set_ylabel("sparsity (%)")
    bars.set_ylim(0, 100)
    bars.set_title("per-layer weight sparsity")
    for i, r in enumerate(rows):
        ax = fig.add_subplot(spec[1 + i // cols, i % cols])
        weight = modules[r["name"]].weight.detach().flatten().float().cpu()
        ax.hist(weight[weight != 0].numpy(), bins=bins, color="tab:blue")
        ax.set_title(f"{r['name']} ({100 * r['sparsity']:.0f}% zero)", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("non-zero weights per layer", y=1.0)
    fig.tight_layout()
    _save(fig, path)


def plot_sensitivity(rows: list[dict], *, baseline_top1: float, path: str | Path) -> None:
    """Accuracy vs sparsity, one curve per layer (rows: {layer, sparsity, top1})."""
    plt = _pyplot()
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 6))
    cmap = plt.get_cmap("viridis", max(len(layers), 2))
    for i, layer in enumerate(layers):
        points = sorted((r["sparsity"], r["top1"]) for r in rows if r["layer"] == layer)
        ax.plot([100 * s for s, _ in points], [a for _, a in points], marker=".", color=cmap(i), label=layer)
    ax.axhline(baseline_top1, color="black", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel("sparsity of the layer, others dense (%)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("per-layer pruning sensitivity")
    ax.legend(fontsize=6, ncol=2, loc="lower left")
    ax.grid(alpha=0.3)
    _save(fig, path)
