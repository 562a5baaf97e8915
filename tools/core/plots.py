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
