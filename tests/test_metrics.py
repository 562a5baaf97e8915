"""MACs/params agree with torch-pruning and thop; sparsity, size, accuracy and comparisons.

uv run pytest tests/test_metrics.py
"""

from __future__ import annotations

import copy

import pytest
import thop
import torch
import torch.nn as nn
import torch.nn.utils.prune
import torch_pruning as tp

from tools.core.errors import UserError
from tools.measure.metrics import (
    accuracy_topk,
    compare_metrics,
    count_macs_params,
    count_nonzero_macs_params,
    file_size_bytes,
    flops_from_macs,
    format_comparison,
    format_count,
    format_layer_table,
    layer_sparsity_table,
    model_size_bytes,
    normalize_metrics,
    weight_sparsity,
)
from tools.modeling.registry import MODEL_NAMES, build_model

DEFAULT_INPUT = {name: (3, 32) for name in MODEL_NAMES} | {"fc": (1, 28)}

# thop charges BatchNorm 4 ops per element (tp: 2) and activations nothing (tp: 1 per
# element). Exact agreement with tp wins, so on the BN/activation-heavy MobileNets thop is
# 1.9% / 2.4% above us; this was checked to be exactly those two terms plus linear biases.
THOP_TOLERANCE = {"mobilenet_v2": 0.025, "mobilenet_v3_large": 0.03}


def _model_and_shape(name):
    channels, size = DEFAULT_INPUT[name]
    model = build_model(name, num_classes=10, in_channels=channels, image_size=size)
    return model, (1, channels, size, size)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_macs_params_match_torch_pruning_and_thop(name):
    model, shape = _model_and_shape(name)
    macs, params = count_macs_params(model, shape)
    tp_macs, tp_params = tp.utils.count_ops_and_params(model, torch.zeros(shape))
    assert (macs, params) == (int(tp_macs), tp_params)
    thop_macs, _ = thop.profile(copy.deepcopy(model), inputs=(torch.zeros(shape),), verbose=False)
    assert abs(macs - thop_macs) / thop_macs < THOP_TOLERANCE.get(name, 0.01)


def test_counting_restores_modes_and_hooks():
    model, shape = _model_and_shape("resnet20")
    model.train()
    model.bn1.eval()  # a frozen BN must stay frozen
    count_macs_params(model, shape)
    assert model.training and model.layer1.training and not model.bn1.training
    assert all(not m._forward_hooks for m in model.modules())


def test_shared_module_counted_per_call_not_per_parent():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Sequential(shared), nn.Sequential(shared, nn.ReLU()))
    # two calls of 16 MACs + 4 bias adds, then the ReLU's 4 outputs. (tp sums the shared
    # module's total once per parent and reports 84; no registry model shares that way.)
    assert count_macs_params(model, (1, 4)) == (2 * (16 + 4) + 4, 20)


def test_bad_input_shape():
    with pytest.raises(UserError, match="input shape"):
        count_macs_params(nn.Linear(4, 4), (0, 4))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)  # 18 weights
        self.fc = nn.Linear(8, 3)  # 24 weights + 3 bias

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.conv(x), 2)  # functional: free
        return self.fc(torch.flatten(x, 1))


def _tiny_with_zeros():
    model = Tiny()
    with torch.no_grad():
        model.conv.weight.fill_(1.0)
        model.conv.weight[0, 0, :2] = 0.0  # 6 zeros -> 12 non-zero
        model.fc.weight.fill_(1.0)
        model.fc.weight[:, :3] = 0.0  # 9 zeros -> 15 non-zero
        model.fc.bias.copy_(torch.tensor([0.0, 1.0, 2.0]))  # one zero bias
    return model


def test_nonzero_counts_hand_computed():
    model = _tiny_with_zeros()
    shape = (1, 1, 4, 4)
    # conv: weights x 16 output positions; fc: weights + 3 bias adds.
    assert count_macs_params(model, shape) == (18 * 16 + 24 + 3, 18 + 24 + 3)
    assert count_nonzero_macs_params(model, shape) == (12 * 16 + 15 + 3, 12 + 15 + 2)
    # batch 2 charges conv and linear (bias too) per sample
    assert count_nonzero_macs_params(model, (2, 1, 4, 4))[0] == 2 * (12 * 16 + 15 + 3)


def test_nonzero_equals_dense_without_zeros():
    model = Tiny()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand_like(p) + 0.5)
    shape = (1, 1, 4, 4)
    assert count_nonzero_macs_params(model, shape) == count_macs_params(model, shape)


def test_nonzero_sees_torch_prune_masks():
    model = Tiny()
    nn.utils.prune.l1_unstructured(model.fc, "weight", amount=12)
    _, dense_params = count_macs_params(model, (1, 1, 4, 4))
    macs, params = count_nonzero_macs_params(model, (1, 1, 4, 4))
    assert dense_params == 18 + 24 + 3
    assert macs == 18 * 16 + 12 + 3
    assert params == 18 + 12 + int(torch.count_nonzero(model.fc.bias))


def test_sparsity_table():
    model = _tiny_with_zeros()
    assert weight_sparsity(model) == pytest.approx(15 / 42)
    rows = layer_sparsity_table(model)
    assert rows == [
        {
            "name": "conv",
            "type": "Conv2d",
            "shape": [2, 1, 3, 3],
            "params": 18,
            "nonzero": 12,
            "sparsity": pytest.approx(6 / 18),
        },
        {
            "name": "fc",
            "type": "Linear",
            "shape": [3, 8],
            "params": 24,
            "nonzero": 15,
            "sparsity": pytest.approx(9 / 24),
        },
    ]
    lines = format_layer_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("layer")
    assert lines[1].split() == ["conv", "Conv2d", "2x1x3x3", "18", "12", "33.33%"]
    assert lines[3].split() == ["total", "42", "27", "35.71%"]
    assert len({len(line) for line in lines[:3]}) == 1  # right-aligned numbers line up


def test_counts_formatting_and_flops():
    assert flops_from_macs(557_216_778) == 1_114_433_556
    assert format_count(1_234_000_000) == "1.23G"
    assert format_count(41_407_114) == "41.41M"
    assert format_count(999_999) == "1.00M"
    assert format_count(12_500) == "12.50K"
    assert format_count(950) == "950"
    assert format_count(2.5e12) == "2.50T"


def test_sizes(tmp_path):
    model = Tiny()
    path = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), path)
    # the zip records inside are named after the file, so only near-equal
    assert abs(model_size_bytes(model) - file_size_bytes(path)) < 100
    assert model_size_bytes(model) > 4 * (18 + 24 + 3)
    with pytest.raises(UserError, match="missing.pth"):
        file_size_bytes(tmp_path / "missing.pth")


def test_accuracy_topk_counts():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    targets = torch.tensor([1, 2, 0, 1])
    # top1: only sample 0; top2: samples 0, 3 and 2 ([2, 1] does not hold 0) -> 0, 3
    assert accuracy_topk(logits, targets, ks=(1, 2)) == [1.0, 2.0]
    # k capped at 3 classes: everything is in the top "5"
    assert accuracy_topk(logits, targets) == [1.0, 4.0]


BASELINE = {
    "top1": 92.5,
    "top5": 99.5,
    "macs": 40_000_000,
    "params": 270_000,
    "size_bytes": 1_100_000,
    "latency_ms": 4.0,
}
CURRENT = {"top1": 91.0, "top5": 99.0, "macs": 10_000_000, "params": 135_000, "size_bytes": 550_000, "latency_ms": 2.5}


def test_normalize_metrics_exact():
    assert normalize_metrics(BASELINE, CURRENT) == {
        "accuracy_drop": pytest.approx(1.5),
        "macs_reduction_pct": pytest.approx(75.0),
        "flops_reduction_pct": pytest.approx(75.0),
        "macs_ratio": pytest.approx(4.0),
        "params_reduction_pct": pytest.approx(50.0),
        "size_reduction_pct": pytest.approx(50.0),
        "latency_reduction_pct": pytest.approx(37.5),
        "speedup": pytest.approx(1.6),
    }


def test_normalize_only_shared_keys():
    assert normalize_metrics({"top1": 90.0, "macs": 100}, {"top1": 88.0, "latency_ms": 1.0}) == {
        "accuracy_drop": pytest.approx(2.0)
    }
    assert normalize_metrics({"macs": 100, "top1": None}, {"macs": 25, "top1": 70.0}) == {
        "macs_reduction_pct": 75.0,
        "flops_reduction_pct": 75.0,
        "macs_ratio": 4.0,
    }


def test_normalize_rejects_bad_values():
    with pytest.raises(UserError, match="baseline macs"):
        normalize_metrics({"macs": 0}, {"macs": 10})
    with pytest.raises(UserError, match="'latency_ms' must be a number"):
        normalize_metrics({"latency_ms": "fast"}, {"latency_ms": 1.0})


def test_compare_metrics_rows_and_table():
    rows = compare_metrics(BASELINE, {k: v for k, v in CURRENT.items() if k != "top5"})
    assert [r["metric"] for r in rows] == ["top1", "macs", "params", "size_bytes", "latency_ms"]
    top1, macs = rows[0], rows[1]
    assert top1["change"] == pytest.approx(-1.5)
    assert macs == {
        "metric": "macs",
        "baseline": 40e6,
        "current": 10e6,
        "change": -30e6,
        "change_pct": pytest.approx(-75.0),
    }
    lines = format_comparison(rows).splitlines()
    assert lines[1].split() == ["top1", "92.50%", "91.00%", "-1.50", "pts"]
    assert lines[2].split() == ["macs", "40.00M", "10.00M", "-75.00%"]
    assert lines[5].split() == ["latency_ms", "4.000", "ms", "2.500", "ms", "-37.50%"]
