"""PNG figures of pruning runs: per-layer weight histograms with sparsity, and sensitivity curves.

    uv run python -m scripts.prune_unstructured --checkpoint results/train/quickstart/best_model.pth --sparsity 0.8

    plot_layer_weights(model, run_dir / "layer_weights.png")
    plot_sensitivity(rows, baseline_top1=91.2, path=run_dir / "sensitivity.png")

Matplotlib runs headless (Agg) and every PNG is rendered in memory and written atomically.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tools.core.plots import pyplot, save_figure
from tools.measure.metrics import layer_sparsity_table


def _histogram_rows(model: nn.Module, names: list[str], bins: int) -> torch.Tensor:
    """One row per layer: histogram of its non-zero weights divided by the layer's max |w|."""
    modules = dict(model.named_modules())
    rows = []
    for name in names:
        weight = modules[name].weight.detach().flatten().float().cpu()
        nonzero = weight[weight != 0]
        scale = nonzero.abs().max() if nonzero.numel() else torch.tensor(1.0)
        rows.append(torch.histc(nonzero / scale, bins=bins, min=-1.0, max=1.0))
    return torch.stack(rows)


def plot_layer_weights(model: nn.Module, path: str | Path, bins: int = 81) -> None:
    """Left: per-layer histograms of the non-zero weights as one heat map (a row per layer,
    x = weight / the layer's largest |weight|, colour = log count), where magnitude pruning
    shows as an empty band around zero. Right: the layer's sparsity. Two axes whatever the
    depth, so ResNet-56 renders as fast and as legibly as ResNet-20."""
    plt = pyplot()
    table = layer_sparsity_table(model)
    names = [r["name"] for r in table]
    counts = _histogram_rows(model, names, bins)
    height = 1.6 + 0.24 * len(names)
    fig, (hist, bars) = plt.subplots(1, 2, sharey=True, figsize=(11, height), gridspec_kw={"width_ratios": [3, 1]})
    image = hist.imshow(
        torch.log1p(counts).numpy(),
        aspect="auto",
        cmap="magma",
        interpolation="nearest",
        extent=(-1, 1, len(names) - 0.5, -0.5),
    )
    hist.set_yticks(range(len(names)), names, fontsize=7)
    hist.set_xlabel("weight / largest |weight| of the layer (non-zero weights only)")
    hist.set_title("per-layer weight histograms")
    fig.colorbar(image, ax=hist, label="log(1 + count)", pad=0.01)
    bars.barh(range(len(names)), [100 * r["sparsity"] for r in table], color="tab:red")
    bars.set_xlim(0, 100)
    bars.set_xlabel("sparsity (%)")
    bars.set_title("per-layer sparsity")
    bars.grid(axis="x", alpha=0.3)
    save_figure(fig, path, dpi=110)


def plot_sensitivity(rows: list[dict], *, baseline_top1: float, path: str | Path) -> None:
    """Accuracy vs sparsity, one curve per layer (rows: {layer, sparsity, top1})."""
    plt = pyplot()
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 6))
    cmap = plt.get_cmap("viridis", max(len(layers), 2))
    for i, layer in enumerate(layers):
        points = [(0.0, baseline_top1)] + sorted((r["sparsity"], r["top1"]) for r in rows if r["layer"] == layer)
        ax.plot([100 * s for s, _ in points], [a for _, a in points], marker=".", color=cmap(i), label=layer)
    ax.axhline(baseline_top1, color="black", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel("sparsity of the layer, others dense (%)")
    ax.set_ylabel("validation top-1 (%)")
    ax.set_title("per-layer pruning sensitivity")
    ax.legend(fontsize=6, ncol=1 if len(layers) <= 30 else 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=110)
