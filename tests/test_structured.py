"""Structured pruning library: every registry model, targets, caps, round_to, importance methods,
Network Slimming's penalty, kernel granularities, distillation and the goal check."""

import copy
import functools
import math

import pytest
import torch
from torch import nn

from tools.core.errors import UserError
from tools.measure.metrics import count_macs_params, count_nonzero_macs_params
from tools.modeling.registry import MODEL_NAMES, build_model
from tools.pruning import kernels
from tools.pruning import structured as st
from tools.runs.prune_structured import final_block
from tools.training.distill import distillation_loss, kd_divergence
from tools.training.engine import StepOptions, train_one_epoch

NUM_CLASSES = 10


def example_for(name: str) -> torch.Tensor:
    if name == "fc":
        return torch.zeros(1, 1, 8, 8)
    return torch.zeros(1, 3, 32 if name == "vgg16" else 16, 16 if name != "vgg16" else 32)


@functools.lru_cache(maxsize=None)
def prepared(name: str):
    """(model, example, ignored, table, base MACs), built once per model for the whole module."""
    torch.manual_seed(0)
    example = example_for(name)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=example.shape[1], image_size=example.shape[2]).eval()
    st.check_traceable(model, example)
    ignored = st.output_layer_names(model, example)
    table = st.importance_table(model, example, method="l2", ignored_layers=ignored)
    return model, example, ignored, table, count_macs_params(model, tuple(example.shape))[0]


def plan_for(name: str, **limits) -> st.ChannelPlan:
    model, example, ignored, table, _ = prepared(name)
    limits = {"max_pruning_ratio": 0.8, "round_to": 8, **limits}
    return st.ChannelPlan(model, example, table=table, ignored_layers=ignored, limits=st.ChannelLimits(**limits))


def changed_layers_respect_round_to(before: dict, after: dict, round_to: int) -> bool:
    return all(after[n] % round_to == 0 for n in before if after[n] != before[n])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_prunes_at_ratio_0_3(name):
    model, example, ignored, table, base_macs = prepared(name)
    pruned = copy.deepcopy(model)
    counts = st.prune_channels(
        pruned, example, ratio=0.3, table=table, max_pruning_ratio=0.8, round_to=8, ignored_layers=ignored
    )
    st.verify_forward(pruned, example, NUM_CLASSES)
    before, after = st.channel_counts(model), st.channel_counts(pruned)
    assert sum(counts.values()) > 0 and count_macs_params(pruned, tuple(example.shape))[0] < base_macs
    assert all(after[n] == before[n] for n in ignored), "the classifier keeps its classes"
    assert changed_layers_respect_round_to(before, after, 8)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_reaches_target_macs_reduction_0_5(name):
    model, example, ignored, table, base_macs = prepared(name)
    found = st.search_channels(
        model,
        example,
        plan_for(name),
        target=0.5,
        tolerance=0.01,
        reduction_of=lambda m: 1 - count_macs_params(m, tuple(example.shape))[0] / base_macs,
    )
    st.verify_forward(found.model, example, NUM_CLASSES)
    assert 0.49 <= found.reduction <= 0.51, found
    reached = 1 - count_macs_params(found.model, tuple(example.shape))[0] / base_macs
    assert reached == pytest.approx(found.reduction)
    assert changed_layers_respect_round_to(st.channel_counts(model), st.channel_counts(found.model), 8)
    assert st.channel_counts(model) == st.channel_counts(prepared(name)[0]), "the search leaves the model alone"


def test_ignored_layers_keep_their_shape():
    model, example, ignored, table, _ = prepared("resnet20")
    pruned = copy.deepcopy(model)
    st.prune_channels(pruned, example, ratio=0.5, table=table, round_to=8, ignored_layers=ignored + ["conv1"])
    assert pruned.conv1.weight.shape == model.conv1.weight.shape
    assert pruned.fc.out_features == NUM_CLASSES
    assert pruned.layer3[0].conv1.out_channels < model.layer3[0].conv1.out_channels  # the rest is pruned


class Branches(nn.Module):
    """Two convs concatenated (cat=True), or one conv feeding a 4-group conv (cat=False)."""

    def __init__(self, cat: bool):
        super().__init__()
        self.cat = cat
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 3, padding=1)
        self.c = nn.Conv2d(3, 32, 3, padding=1)
        self.g = nn.Conv2d(32, 32, 3, padding=1, groups=1 if cat else 4)
        self.bn = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, NUM_CLASSES)

    def forward(self, x):
        x = torch.cat([self.a(x), self.b(x)], 1) if self.cat else self.c(x)
        return self.fc(torch.relu(self.bn(self.g(x))).mean((2, 3)))


@pytest.mark.parametrize("cat", [True, False], ids=["concatenation", "grouped_conv"])
def test_concatenations_and_grouped_convs(cat):
    torch.manual_seed(0)
    model, example = Branches(cat).eval(), torch.zeros(1, 3, 8, 8)
    table = st.importance_table(model, example, method="l2", ignored_layers=["fc"])
    st.prune_channels(model, example, ratio=0.5, table=table, round_to=1, ignored_layers=["fc"])
    st.verify_forward(model, example, NUM_CLASSES)
    if cat:
        assert model.g.in_channels == model.a.out_channels + model.b.out_channels < 32
    else:
        assert model.g.groups == 4 and model.g.in_channels == model.c.out_channels == 16


def test_round_to_and_max_pruning_ratio_hold():
    model, example, ignored, table, _ = prepared("resnet56")
    plan = plan_for("resnet56", round_to=16, max_pruning_ratio=0.5)
    pruned = copy.deepcopy(model)
    st.apply_plan(pruned, example, plan, plan.counts(0.99))
    before, after = st.channel_counts(model), st.channel_counts(pruned)
    assert changed_layers_respect_round_to(before, after, 16)
    assert all(after[n] >= math.ceil(before[n] * 0.5) for n in before), "no layer loses more than half"
    assert any(after[n] < before[n] for n in before)


def test_reduction_grows_with_the_ratio():
    plan = plan_for("resnet20")
    totals = [sum(plan.counts(r).values()) for r in (0.0, 0.1, 0.2, 0.4, 0.6, 0.9)]
    assert totals == sorted(totals) and totals[0] == 0 and totals[-1] > totals[1]


def test_layer_ratios_override_the_default():
    model, example, ignored, table, _ = prepared("resnet20")
    plan = st.ChannelPlan(model, example, table=table, ignored_layers=ignored, layer_ratios={"layer3.1.conv1": 0.5})
    counts = plan.counts(0.0)
    assert counts["layer3.1.conv1"] == 32 and sum(counts.values()) == 32
    with pytest.raises(UserError, match="structured.layer_ratios names 'layer9'"):
        st.ChannelPlan(model, example, table=table, layer_ratios={"layer9": 0.5})


@pytest.mark.parametrize("method", st.STRUCTURED_METHODS)
def test_every_importance_method_prunes_resnet20(method):
    model, example, ignored, _, _ = prepared("resnet20")
    model = copy.deepcopy(model)
    if method == "taylor":
        batches = [(torch.randn(8, 3, 16, 16), torch.randint(0, NUM_CLASSES, (8,)))]
        st.accumulate_gradients(model, batches, batches=1, device=torch.device("cpu"))
    table = st.importance_table(model, example, method=method, ignored_layers=ignored)
    model.zero_grad(set_to_none=True)
    st.prune_channels(model, example, ratio=0.3, table=table, round_to=8, ignored_layers=ignored)
    st.verify_forward(model, example, NUM_CLASSES)
    before = prepared("resnet20")[0]
    assert sum(st.channel_counts(model).values()) < sum(st.channel_counts(before).values())


def test_bn_scale_without_batchnorm_is_a_user_error():
    model, example, ignored, _, _ = prepared("fc")
    with pytest.raises(UserError, match="no channel group method bn_scale can score .*BatchNorm"):
        st.importance_table(model, example, method="bn_scale", ignored_layers=ignored)


def test_unreachable_target_is_a_user_error():
    model, example, _, _, base_macs = prepared("resnet20")
    with pytest.raises(UserError, match="target MACs reduction 90.0% is unreachable"):
        st.search_channels(
            model,
            example,
            plan_for("resnet20", max_pruning_ratio=0.3),
            target=0.9,
            tolerance=0.01,
            reduction_of=lambda m: 1 - count_macs_params(m, tuple(example.shape))[0] / base_macs,
        )


def test_search_lands_in_the_window_or_explains_why():
    def search(step_fn, **kw):
        how = st.RatioSearch(prune=lambda m, r: setattr(m, "r", r), reduction_of=lambda m: step_fn(m.r), **kw)
        return st.search_ratio(nn.Linear(1, 1), how, target=0.5, tolerance=0.01)

    smooth = search(lambda r: 1 - (1 - r) ** 2)
    assert 0.5 <= smooth.reduction <= 0.51 and smooth.probes <= 4
    with pytest.raises(UserError, match="nearest reachable are 45.0% and 55.0%"):
        search(lambda r: 0.45 if r < 0.3 else 0.55 if r < 0.9 else 0.6)
    with pytest.raises(UserError, match="fixed part .* removes 60.0%"):
        search(lambda r: 0.6 + r / 10, fixed_part=True)


class NumpyDetour(nn.Module):
    """A forward that leaves autograd: torch-pruning cannot see conv -> fc."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        x = torch.from_numpy(self.conv(x).detach().numpy())
        return self.fc(x.mean((2, 3)))


def test_untraceable_models_are_user_errors():
    with pytest.raises(
        UserError, match="cannot trace NumpyDetour: the output does not depend through autograd on conv"
    ):
        st.check_traceable(NumpyDetour(), torch.zeros(1, 3, 8, 8))
    with pytest.raises(UserError, match="fails on an input of shape"):
        st.check_traceable(nn.Linear(5, 2), torch.zeros(1, 3, 8, 8))


def test_bn_l1_penalty_drives_scales_toward_zero():
    torch.manual_seed(0)
    batches = [(torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))) for _ in range(4)]

    def mean_scale_after(reg: float) -> float:
        torch.manual_seed(1)
        model = build_model("resnet20", num_classes=4, image_size=8)
        layers = st.batchnorm_layers(model)
        loss = st.bn_l1_loss(lambda logits, y, x: nn.functional.cross_entropy(logits, y), layers, reg)
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        for _ in range(3):
            train_one_epoch(model, batches, opt, device=torch.device("cpu"), step=StepOptions(loss_fn=loss))
        return float(torch.cat([m.weight.detach().abs() for m in layers]).mean())

    plain, penalised = mean_scale_after(0.0), mean_scale_after(0.5)
    assert penalised < 0.75 * plain, (plain, penalised)


def test_kernel_granularity_zeroes_whole_kernels():
    model, example, ignored, _, _ = prepared("resnet20")
    model = copy.deepcopy(model)
    masks = kernels.prune_kernels(
        model, kernels.KernelPruning("kernel", "l1", global_pruning=False), ratio=0.5, ignored_layers=ignored
    )
    for conv, mask in masks.items():
        kernels_zero = (conv.weight.abs().sum((2, 3)) == 0).float().mean()
        assert kernels_zero == pytest.approx(0.5, abs=0.01)
        assert torch.equal(mask, conv.weight != 0)
    dense, _ = count_macs_params(model, tuple(example.shape))
    nonzero, _ = count_nonzero_macs_params(model, tuple(example.shape))
    assert dense == prepared("resnet20")[4] and nonzero < 0.6 * dense


def test_intra_kernel_keeps_a_pattern_in_every_kernel():
    model, _, ignored, _, _ = prepared("resnet20")
    model = copy.deepcopy(model)
    kernels.prune_kernels(
        model,
        kernels.KernelPruning("intra_kernel", "l2", pattern_size=4, num_patterns=6),
        ratio=0.0,
        ignored_layers=ignored,
    )
    shapes = set()
    for conv in kernels.kernel_layers(model, ignored):
        nonzero = (conv.weight != 0).flatten(0, 1).flatten(1)
        assert (nonzero.sum(1) <= 4).all() and nonzero[:, 4].all(), "at most 4 entries, the centre kept"
        shapes |= {tuple(row.tolist()) for row in nonzero}
    assert len(shapes) <= 6


def test_kernel_target_search_uses_nonzero_macs():
    model, example, ignored, _, _ = prepared("resnet20")
    base, _ = count_nonzero_macs_params(model, tuple(example.shape))
    how = st.RatioSearch(
        prune=lambda m, r: kernels.prune_kernels(
            m, kernels.KernelPruning("kernel", "l2"), ratio=r, ignored_layers=ignored
        ),
        reduction_of=lambda m: 1 - count_nonzero_macs_params(m, tuple(example.shape))[0] / base,
        what="kernel",
    )
    found = st.search_ratio(model, how, target=0.4, tolerance=0.01)
    assert 0.39 <= found.reduction <= 0.41


def test_distillation_loss():
    torch.manual_seed(0)
    student, teacher = nn.Linear(4, 3), nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    logits = student(x)
    plain = distillation_loss(teacher, alpha=0.0, temperature=4.0)(logits, y, x)
    assert plain.item() == pytest.approx(nn.functional.cross_entropy(logits, y).item())
    assert kd_divergence(logits, logits, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    mixed = distillation_loss(teacher, alpha=0.5, temperature=2.0)(logits, y, x)
    mixed.backward()
    assert student.weight.grad is not None and teacher.weight.grad is None
    with pytest.raises(UserError, match="finetune.kd.alpha must be in"):
        distillation_loss(teacher, alpha=1.5, temperature=4.0)


@pytest.mark.parametrize(
    "flops,drop,met",
    [
        (40.0, 1.5, True),
        (39.99, 0.0, False),
        (50.0, 1.51, False),
        (80.0, -2.0, True),
        (45.0, 91.5 - 90.0, True),
        (float("nan"), 0.0, False),
        (45.0, float("nan"), False),
    ],
)
def test_goal_check_on_crafted_metrics(flops, drop, met):
    assert (
        st.goal_met(flops_reduction_pct=flops, accuracy_drop=drop, min_flops_reduction_pct=40.0, max_accuracy_drop=1.5)
        is met
    )


def test_final_block_reports_the_goal_from_its_thresholds():
    costs = {"flops": 2_000_000, "nonzero_flops": 2_000_000}
    metrics = {
        "reduction_basis": "dense",
        "baseline_top1": 91.5,
        "pruned_top1": 90.0,
        "accuracy_drop": 1.5,
        "flops_reduction_pct": 52.0,
        "params_reduction_pct": 40.0,
        "goal_met": True,
        "goal": {"min_flops_reduction_pct": 40.0, "max_accuracy_drop": 1.5},
        "baseline": costs,
        "pruned": {"flops": 960_000, "nonzero_flops": 960_000},
    }
    text = final_block(metrics)
    assert text.splitlines()[-1] == "Goal MET (>=40% FLOPs, <=1.5% drop)"
    assert "accuracy drop     1.50 pts" in text and "FLOPs reduction   52.00%" in text
    metrics |= {"goal_met": False, "goal": {"min_flops_reduction_pct": 60.0, "max_accuracy_drop": 0.5}}
    assert final_block(metrics).splitlines()[-1] == "Goal NOT MET (>=60% FLOPs, <=0.5% drop)"
