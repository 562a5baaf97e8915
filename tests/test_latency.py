"""Latency statistics and the per-layer breakdown on a tiny CPU model.

uv run pytest tests/test_latency.py
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tools.core.errors import UserError
from tools.measure.latency import measure_latency, per_layer_latency


def _tiny():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def test_measure_latency_stats():
    before = torch.get_num_threads()
    stats = measure_latency(_tiny(), (3, 16, 16), batch_size=4, device="cpu", warmup=2, repeats=20, num_threads=1)
    assert torch.get_num_threads() == before
    assert stats["num_threads"] == 1
    assert 0 < stats["min_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= stats["p99_ms"]
    assert stats["mean_ms"] > 0 and stats["std_ms"] >= 0
    assert stats["throughput_ips"] == pytest.approx(4 * 1000 / stats["median_ms"])
    assert (stats["device"], stats["batch_size"], stats["dtype"]) == ("cpu", 4, "float32")
    assert (stats["warmup"], stats["repeats"]) == (2, 20)


def test_measure_latency_leaves_model_alone():
    model = _tiny().train()
    measure_latency(model, (3, 8, 8), batch_size=1, device="cpu", warmup=0, repeats=2, dtype=torch.float64)
    assert model.training
    assert next(model.parameters()).dtype == torch.float32
    assert model[1].num_batches_tracked.item() == 0  # never ran in train mode


@pytest.mark.parametrize(
    "kwargs", [{"batch_size": 0}, {"batch_size": 1, "repeats": 0}, {"batch_size": 1, "num_threads": 0}]
)
def test_bad_arguments(kwargs):
    with pytest.raises(UserError):
        measure_latency(_tiny(), (3, 8, 8), device="cpu", **kwargs)


def test_per_layer_rows_cover_leaves_and_remove_hooks():
    model = _tiny()
    rows = per_layer_latency(model, (3, 16, 16), batch_size=2, device="cpu", repeats=3)
    leaves = {name for name, m in model.named_modules() if not list(m.children())}
    assert {r["name"] for r in rows} == leaves
    assert {r["type"] for r in rows} >= {"Conv2d", "BatchNorm2d", "ReLU", "Linear"}
    times = [r["time_ms"] for r in rows]
    assert times == sorted(times, reverse=True) and all(t > 0 for t in times)
    assert sum(r["share_pct"] for r in rows) == pytest.approx(100.0)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(UserError):
        per_layer_latency(model, (3, 16, 16), batch_size=0, device="cpu")
