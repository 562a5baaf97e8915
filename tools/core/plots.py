"""Matplotlib without a display, and the one way figures are written (atomically, as PNG).

plt = pyplot()
fig, ax = plt.subplots()
ax.plot([1, 2, 3])
save_figure(fig, Path("results/report/curve.png"))   # closes the figure
"""

from __future__ import annotations

import io
from pathlib import Path

from tools.core.io import atomic_write_bytes

# Axis label and scale of each quantity a plot may draw: units on every axis, no bare "1e7".
AXES = {
    "macs": ("MACs per image (MMACs; FLOPs = 2 x MACs)", 1e-6),
    "params": ("parameters (M)", 1e-6),
    "top1": ("test top-1 (%)", 1.0),
    "top5": ("test top-5 (%)", 1.0),
    "accuracy_drop": ("top-1 drop (points)", 1.0),
    "latency_ms": ("median latency (ms)", 1.0),
    "size_mb": ("file size (MB)", 1.0),
}


def axis(key: str) -> tuple[str, float]:
    """(label with its unit, scale) of a plotted quantity; unknown keys are drawn as they are."""
    return AXES.get(key, (key, 1.0))


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Atomic: a crash mid-save never leaves a truncated PNG that looks complete."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def spread_labels(ax, points: list[tuple[float, float, str]]) -> None:
    """Annotate each point, nudging labels upward so that no two are closer than 5% of the
    axes' current y range (matplotlib places annotations blindly and stacks labels of close
    points). Call it after the data and the y limits are set."""
    if not points:
        return
    low, high = ax.get_ylim()
    gap, last = 0.05 * (high - low), None
    for x, y, label in sorted(points, key=lambda p: p[1]):
        text_y = y if last is None else max(y, last + gap)
        ax.annotate(
            label,
            (x, y),
            xytext=(x, text_y),
            textcoords="data",
            fontsize=7,
            ha="left",
            arrowprops={"arrowstyle": "-", "alpha": 0.4} if text_y != y else None,
        )
        last = text_y
    ax.set_ylim(top=max(ax.get_ylim()[1], last + gap))  # the highest nudged label stays inside the axes
