"""Pruning at initialization: scorers against hand computations, exact densities, SynFlow's data
independence and resistance to layer collapse, multishot rewinding, trace parsing."""

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tools.runs.prune_at_init as at_init_run
from tools.core.errors import UserError
from tools.measure.traces import STEP_LABEL, conv_time_from_trace, merged_duration_us, record_inference_trace
from tools.modeling.registry import build_model
from tools.pruning.at_init import (
    GRASP_EPS,
    PRUNERS,
    ScoreInputs,
    compute_scores,
    density_from_compression,
    grasp_scores,
    initial_state,
    mag_scores,
    prune_to_density,
    rand_scores,
    rewind_weights,
    schedule_density,
    snip_scores,
    synflow_scores,
)
from tools.pruning.unstructured import current_masks, prunable_targets

W1 = [[1.0, -2.0], [0.5, 1.5]]
W2 = [[2.0, -1.0], [-0.5, 1.0]]


class TwoLayer(nn.Module):
    """x -> fc1 -> ReLU -> fc2, no biases: small enough to differentiate by hand."""

    def __init__(self, w1=W1, w2=W2):
        super().__init__()
        self.fc1 = nn.Linear(len(w1[0]), len(w1), bias=False)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(len(w2[0]), len(w2), bias=False)
        with torch.no_grad():
            self.fc1.weight.copy_(torch.tensor(w1))
            self.fc2.weight.copy_(torch.tensor(w2))

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(5)
        self.conv2 = nn.Conv2d(5, 7, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(7)
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    return TinyCNN()


def batches(seed, n=2, size=4):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 6, 6, generator=g), torch.randint(0, 3, (size,), generator=g)) for _ in range(n)]


def by_name(targets):
    return {t.name: t for t in targets}


# ----------------------------------------------------------------------------- compression
def test_compression_is_density_ten_to_minus_c():
    assert density_from_compression(1) == pytest.approx(0.1)
    assert density_from_compression(0.5) == pytest.approx(10**-0.5)
    assert density_from_compression(0) == 1.0
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(UserError, match="compression"):
            density_from_compression(bad)


def test_schedules_match_synaptic_flow():
    assert [schedule_density(0.01, t, 2, "exponential") for t in (1, 2)] == pytest.approx([0.1, 0.01])
    assert [schedule_density(0.1, t, 3, "linear") for t in (1, 2, 3)] == pytest.approx([0.7, 0.4, 0.1])
    with pytest.raises(UserError, match="schedule"):
        schedule_density(0.1, 1, 1, "cubic")


# ----------------------------------------------------------------------------- scorers by hand
def test_mag_and_rand_by_hand():
    targets = prunable_targets(TwoLayer())
    mag = mag_scores(targets)
    assert torch.equal(mag["fc1"], torch.tensor(W1).abs()) and torch.equal(mag["fc2"], torch.tensor(W2).abs())
    g = torch.Generator().manual_seed(3)
    expected = [torch.randn(2, 2, generator=g), torch.randn(2, 2, generator=g)]
    rand = rand_scores(targets, torch.Generator().manual_seed(3))
    assert torch.equal(rand["fc1"], expected[0]) and torch.equal(rand["fc2"], expected[1])


def hand_gradients(x, label):
    """dCE/dW1, dCE/dW2 of TwoLayer for one sample, derived by hand."""
    w1, w2 = torch.tensor(W1), torch.tensor(W2)
    pre = w1 @ x
    h = pre.clamp_min(0)
    z = w2 @ h
    dz = torch.softmax(z, 0) - F.one_hot(torch.tensor(label), 2).float()
    dw2 = torch.outer(dz, h)
    dpre = (w2.T @ dz) * (pre > 0).float()
    return torch.outer(dpre, x), dw2


def test_snip_is_normalised_abs_w_times_summed_gradient():
    samples = [(torch.tensor([1.0, 0.75]), 0), (torch.tensor([-0.5, 1.0]), 1)]
    g1 = sum(hand_gradients(x, y)[0] for x, y in samples)
    g2 = sum(hand_gradients(x, y)[1] for x, y in samples)
    raw1, raw2 = (torch.tensor(W1) * g1).abs(), (torch.tensor(W2) * g2).abs()
    total = raw1.sum() + raw2.sum()
    model = TwoLayer()
    scores = snip_scores(model, prunable_targets(model), [(x[None], torch.tensor([y])) for x, y in samples])
    torch.testing.assert_close(scores["fc1"], raw1 / total)
    torch.testing.assert_close(scores["fc2"], raw2 / total)
    assert float(sum(s.sum() for s in scores.values())) == pytest.approx(1.0)
    assert model.fc1.weight.grad is None  # scoring leaves no gradients behind


def test_grasp_matches_the_hand_hessian_gradient_product():
    """Scalar chain z = w2 * w1 * x, L = z^2 / 2 with logits / T: g and H written out by hand."""
    w1, w2, x, temperature = 2.0, -0.5, 1.5, 3.0
    model = TwoLayer(w1=[[w1]], w2=[[w2]]).double()
    a = x**2 / temperature**2
    g = [a * w1 * w2**2, a * w1**2 * w2]
    hessian = [[a * w2**2, 2 * a * w1 * w2], [2 * a * w1 * w2, a * w1**2]]
    hg = [hessian[0][0] * g[0] + hessian[0][1] * g[1], hessian[1][0] * g[0] + hessian[1][1] * g[1]]
    theta_hg = [w1 * hg[0], w2 * hg[1]]
    norm = abs(sum(theta_hg)) + GRASP_EPS
    scores = grasp_scores(
        model,
        prunable_targets(model),
        [(torch.tensor([[x]], dtype=torch.float64), None)],
        temperature=temperature,
        loss_fn=lambda logits, labels: 0.5 * (logits**2).sum(),
    )
    assert float(scores["fc1"]) == pytest.approx(-theta_hg[0] / norm, rel=1e-9)
    assert float(scores["fc2"]) == pytest.approx(-theta_hg[1] / norm, rel=1e-9)


def test_grasp_with_cross_entropy_matches_an_explicit_hessian():
    model = TwoLayer().double()
    x, y = torch.tensor([[1.0, 0.75], [0.3, -0.2]], dtype=torch.float64), torch.tensor([0, 1])
    w0 = torch.cat([model.fc1.weight.flatten(), model.fc2.weight.flatten()]).detach()

    def loss(flat):
        h = F.relu(x @ flat[:4].view(2, 2).T)
        return F.cross_entropy(h @ flat[4:].view(2, 2).T / 200.0, y)

    grad = torch.autograd.functional.jacobian(loss, w0)
    theta_hg = w0 * (torch.autograd.functional.hessian(loss, w0) @ grad)
    expected = -theta_hg / (theta_hg.sum().abs() + GRASP_EPS)
    scores = grasp_scores(model, prunable_targets(model), [(x, y)])
    torch.testing.assert_close(torch.cat([scores["fc1"].flatten(), scores["fc2"].flatten()]), expected)


def test_grasp_prunes_its_highest_scores():
    model = TwoLayer().double()
    targets = prunable_targets(model)
    data = [(torch.tensor([[1.0, 0.75], [0.3, -0.2]], dtype=torch.float64), torch.tensor([0, 1]))]
    scores = torch.cat([s.flatten() for s in grasp_scores(model, targets, data).values()])
    prune_to_density(
        model,
        targets,
        pruner="grasp",
        density=0.5,
        scope="global",
        schedule="exponential",
        iterations=1,
        inputs=ScoreInputs(data, (2,)),
    )
    kept = torch.cat([(t.tensor != 0).flatten() for t in targets])
    assert set(torch.nonzero(~kept).flatten().tolist()) == set(scores.topk(4).indices.tolist())


def test_synflow_by_hand_and_signs_restored():
    model = TwoLayer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = synflow_scores(model, prunable_targets(model), (2,))
    a1, a2 = torch.tensor(W1).abs(), torch.tensor(W2).abs()
    row_sums_1 = a1.sum(1)  # |W1| 1: the (positive) hidden activations for an all-ones input
    col_sums_2 = a2.sum(0)  # 1^T |W2|: dR/dh
    torch.testing.assert_close(scores["fc2"], a2 * row_sums_1[None, :])
    torch.testing.assert_close(scores["fc1"], a1 * col_sums_2[:, None])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_synflow_is_data_free():
    model = tiny_cnn()
    model.bn1.running_mean.fill_(0.3)  # non-trivial buffers, to see they come back unchanged
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = prunable_targets(model)
    runs = [
        compute_scores("synflow", model, targets, batches=b, input_shape=(3, 6, 6))
        for b in ([], batches(1), batches(2))
    ]
    for other in runs[1:]:
        for name in runs[0]:
            assert torch.equal(runs[0][name], other[name]), name
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(float(s.sum()) > 0 for s in runs[0].values())


def test_data_pruners_need_batches():
    model = tiny_cnn()
    for pruner in ("snip", "grasp"):
        with pytest.raises(UserError, match="pruning batch set"):
            compute_scores(pruner, model, prunable_targets(model), batches=[], input_shape=(3, 6, 6))


# ----------------------------------------------------------------------------- exact densities
@pytest.mark.parametrize("pruner", PRUNERS)
@pytest.mark.parametrize("scope", ["global", "local"])
def test_masks_reach_the_requested_density_exactly(pruner, scope):
    for compression in (0.5, 1.0, 2.0):
        model = tiny_cnn()
        targets = prunable_targets(model, prune_biases=True)
        density = density_from_compression(compression)
        report = prune_to_density(
            model,
            targets,
            pruner=pruner,
            density=density,
            scope=scope,
            schedule="exponential",
            iterations=3 if pruner == "synflow" else 1,
            inputs=ScoreInputs(batches(0), (3, 6, 6)),
        )
        if scope == "global":
            assert report["remaining"] == int(density * report["total"] + 0.5), (compression, report["remaining"])
        else:
            for layer in report["layers"]:
                assert layer["remaining"] == int(density * layer["params"] + 0.5), (compression, layer)
        assert report["density"] + report["sparsity"] == pytest.approx(1.0)


def test_masks_only_grow_and_the_model_mode_is_kept():
    model = tiny_cnn().train()
    targets = prunable_targets(model)
    kw = dict(pruner="snip", scope="global", schedule="linear", iterations=2, inputs=ScoreInputs(batches(0), (3, 6, 6)))
    prune_to_density(model, targets, density=0.3, **kw)
    first = current_masks(targets)
    prune_to_density(model, targets, density=0.05, **kw)
    for name, mask in current_masks(targets).items():
        assert not bool((mask.bool() & ~first[name].bool()).any()), name
    assert model.training and model.bn1.training


# ----------------------------------------------------------------------------- layer collapse
def connected_paths(model) -> float:
    """Number of input-output paths through non-zero weights (|W3| |W2| |W1| summed)."""
    masks = [(m.weight != 0).double() for m in (model.fc1, model.fc2, model.fc3)]
    return float((masks[2] @ masks[1] @ masks[0]).sum())


def test_synflow_avoids_layer_collapse_where_magnitude_collapses():
    reports = {}
    for pruner in ("mag", "synflow"):
        torch.manual_seed(0)
        model = build_model("fc", num_classes=10, in_channels=1, image_size=8)  # LeNet-300-100, 50,200 weights
        targets = prunable_targets(model)
        reports[pruner] = prune_to_density(
            model,
            targets,
            pruner=pruner,
            density=density_from_compression(3),
            scope="global",
            schedule="exponential",
            iterations=100 if pruner == "synflow" else 1,
            inputs=ScoreInputs([], (1, 8, 8)),
        )
        reports[pruner]["paths"] = connected_paths(model)
    assert reports["mag"]["collapsed_layers"] and reports["mag"]["paths"] == 0
    assert reports["synflow"]["collapsed_layers"] == [] and reports["synflow"]["paths"] > 0
    assert reports["synflow"]["remaining"] == reports["mag"]["remaining"] == 50  # the same budget, 0.1%


# ----------------------------------------------------------------------------- rewinding / multishot
def test_rewind_restores_weights_and_keeps_masks():
    model = tiny_cnn()
    init = initial_state(model)
    targets = prunable_targets(model)
    prune_to_density(
        model,
        targets,
        pruner="mag",
        density=0.3,
        scope="global",
        schedule="exponential",
        iterations=1,
        inputs=ScoreInputs([], (3, 6, 6)),
    )
    masks = current_masks(targets)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model.bn1.running_var.mul_(3)
    rewind_weights(model, init)
    assert all(torch.equal(m, current_masks(targets)[n]) for n, m in masks.items())
    for t in targets:
        torch.testing.assert_close(t.trainable.detach(), init[f"{t.name}.weight"] * masks[t.name])
    assert torch.equal(model.bn1.running_var, init["bn1.running_var"]) and torch.equal(
        model.bn1.weight, init["bn1.weight"]
    )


def test_multishot_levels_rewind_weights_and_keep_masks(monkeypatch, tmp_path):
    """Two levels with a fake training that moves every weight: each level's prune starts from the
    rewound initial weights, level-1 pruned weights stay pruned, the final weights are init * mask."""
    model = tiny_cnn()
    init = initial_state(model)
    targets = prunable_targets(model)
    seen = []

    def fake_training(model_, ctx, *, epochs, run_dir, tag, masked):
        seen.append(
            (
                {n: m.clone() for n, m in current_masks(targets).items()},
                {t.name: t.trainable.detach().clone() for t in targets},
            )
        )
        with torch.no_grad():
            for t in targets:
                t.trainable.add_(torch.randn_like(t.trainable))
        return {
            "epochs": epochs,
            "wall_time_s": 0.0,
            "peak_memory_mib": None,
            "memory_kind": None,
            "best_val_top1": None,
        }

    monkeypatch.setattr(at_init_run, "train_phase", fake_training)
    plan = at_init_run.AtInitPlan(experiment="multishot", pruners=["mag"], compressions=[1.0], levels=[2], pre_epochs=1)
    ctx = SimpleNamespace(input_shape=(3, 6, 6), cfg=SimpleNamespace(train=SimpleNamespace(seed=0)))
    report, costs, _ = at_init_run.prune_point(
        model, targets, ctx, plan, at_init_run.Point("mag", 1.0, 2), batches=[], init_state=init, point_dir=tmp_path
    )
    assert len(seen) == 2 and not seen[0][0]  # no mask before the first level's training
    level1_masks, level2_start = seen[1]
    for t in targets:  # level 2 trained from the rewound initial weights, under level 1's masks
        torch.testing.assert_close(level2_start[t.name], init[f"{t.name}.weight"] * level1_masks[t.name])
    final = current_masks(targets)
    for name, mask in final.items():
        assert not bool((mask.bool() & ~level1_masks[name].bool()).any()), name
        torch.testing.assert_close(by_name(targets)[name].trainable.detach(), init[f"{name}.weight"] * mask)
    assert report["remaining"] == int(0.1 * report["total"] + 0.5)
    level1_kept = sum(int(m.sum()) for m in level1_masks.values())
    assert level1_kept == int(10**-0.5 * report["total"] + 0.5)  # density^(1/2) after the first of two levels


# ----------------------------------------------------------------------------- traces
def test_merged_duration_counts_overlaps_once():
    assert merged_duration_us([(0, 10), (5, 15), (20, 30), (21, 22)]) == 25
    assert merged_duration_us([]) == 0


def _event(name, cat, ts, dur, **args):
    return {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur, "pid": 1, "tid": 1, "args": args}


def test_trace_parsing_on_hand_made_cpu_and_cuda_traces():
    cpu = {
        "traceEvents": [
            _event(STEP_LABEL, "user_annotation", 0, 1000),
            _event("aten::conv2d", "cpu_op", 100, 300),
            _event("aten::mkldnn_convolution", "cpu_op", 110, 280),
            _event("aten::conv2d", "cpu_op", 350, 250),
            _event("aten::relu", "cpu_op", 600, 100),
            _event("aten::conv2d", "cpu_op", 1500, 100),  # outside the step
        ]
    }
    stats = conv_time_from_trace(cpu, device_type="cpu")
    assert stats["conv_time_ms"] == pytest.approx(0.5) and stats["step_time_ms"] == pytest.approx(1.0)
    assert stats["conv_share_pct"] == pytest.approx(50.0)
    cuda = {
        "traceEvents": [
            _event(STEP_LABEL, "user_annotation", 0, 1000),
            _event("aten::cudnn_convolution", "cpu_op", 10, 50),
            _event("cudaLaunchKernel", "cuda_runtime", 20, 5, correlation=7),
            _event("cudaLaunchKernel", "cuda_runtime", 80, 5, correlation=8),
            {**_event("nchwToNhwcKernel", "kernel", 100, 40, correlation=7), "tid": 9},  # launched by the conv op
            {**_event("sm80_xmma_fprop_implicit_gemm_f32", "kernel", 130, 100, correlation=99), "tid": 9},
            {**_event("elementwise_kernel", "kernel", 300, 50, correlation=8), "tid": 9},  # not a conv
        ]
    }
    stats = conv_time_from_trace(cuda, device_type="cuda")
    assert stats["conv_time_ms"] == pytest.approx(0.13) and stats["conv_events"] == 2


def test_recorded_trace_gives_positive_conv_time_within_the_step(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=4, image_size=8)
    path = record_inference_trace(model, torch.randn(4, 3, 8, 8), tmp_path / "trace.json", device=torch.device("cpu"))
    assert json.loads(path.read_text())["traceEvents"]
    stats = conv_time_from_trace(path, device_type="cpu")
    assert 0 < stats["conv_time_ms"] <= stats["step_time_ms"]
    assert 0 < stats["conv_share_pct"] <= 100 and stats["conv_events"] >= 21  # 21 convs in ResNet-20 (incl. shortcuts)


def test_trace_without_the_step_is_a_user_error(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"traceEvents": [_event("aten::conv2d", "cpu_op", 0, 5)]}))
    with pytest.raises(UserError, match="no 'pai::inference_step' span"):
        conv_time_from_trace(bad, device_type="cpu")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="cannot read the Chrome trace"):
        conv_time_from_trace(tmp_path / "broken.json", device_type="cpu")
