"""Mask-based pruning on hand-made tensors: golden masks, allocation, schedules, exactness, storage."""

import io

import pytest
import torch
from torch import nn

from tools.core.errors import UserError
from tools.modeling.sparse_storage import (
    FORMATS,
    compressed_size_bytes,
    pack_state_dict,
    save_compressed_checkpoint,
)
from tools.pruning import unstructured as un
from tools.pruning.sensitivity import sparsities_for_drop, sparsities_for_total, total_sparsity

W = torch.tensor([[0.5, -0.1, 0.3, -0.7], [0.2, 0.0, -0.9, 0.4]])


def linear(weight, bias=False) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def masks_for(model, method, mode, sparsity, **kw):
    targets = un.prunable_targets(model)
    return un.compute_masks(targets, method=method, mode=mode, sparsity=sparsity, **kw)


def as_list(mask):
    return mask.int().tolist()


# ----------------------------------------------------------------------------- golden masks
def test_golden_l1_and_random():
    model = nn.Sequential(linear(W))
    assert as_list(masks_for(model, "l1", "layerwise", 0.5)["0"]) == [[1, 0, 0, 1], [0, 0, 1, 1]]
    random = masks_for(model, "random", "layerwise", 0.5, generator=torch.Generator().manual_seed(0))
    assert as_list(random["0"]) == [[1, 1, 0, 0], [0, 1, 0, 1]]  # scores = torch.rand(8) of seed 0


def test_golden_global_vs_layerwise_vs_lamp():
    big = linear(torch.tensor([[1.0, -2.0, 3.0, -4.0]]))
    small = linear(torch.tensor([[0.1, 0.2, -0.3, 0.4]]))
    model = nn.Sequential(big, small)
    glob = masks_for(model, "global", "global", 0.5)
    assert as_list(glob["0"]) == [[1, 1, 1, 1]] and as_list(glob["1"]) == [[0, 0, 0, 0]]  # global: scale bias
    layer = masks_for(model, "l1", "layerwise", 0.5)
    assert as_list(layer["0"]) == [[0, 0, 1, 1]] and as_list(layer["1"]) == [[0, 0, 1, 1]]
    lamp = masks_for(model, "lamp", "global", 0.5)  # LAMP is scale invariant: same as layerwise here
    assert as_list(lamp["0"]) == [[0, 0, 1, 1]] and as_list(lamp["1"]) == [[0, 0, 1, 1]]


def test_golden_lamp_scores():
    scores = un.lamp_scores(torch.tensor([3.0, -1.0, 4.0, 2.0]))
    # sorted squares 1, 4, 9, 16; suffix sums 30, 29, 25, 16
    assert torch.allclose(scores, torch.tensor([9 / 25, 1 / 30, 1.0, 4 / 29]))


def test_golden_taylor_scores_accumulate_over_batches():
    layer = linear(torch.tensor([[1.0, -2.0, 3.0, 0.5]]))
    batches = [
        (torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.zeros(1, dtype=torch.long)),
        (torch.tensor([[2.0, 0.0, 1.0, -1.0]]), torch.zeros(1, dtype=torch.long)),
    ]
    targets = un.prunable_targets(nn.Sequential(layer))
    # loss = sum of outputs, so dL/dw = x: |w x| per batch is [1,2,3,.5] then [2,0,3,.5]
    scores = un.accumulate_taylor_scores(
        nn.Sequential(layer),
        targets,
        batches,
        num_batches=5,
        device=torch.device("cpu"),
        loss_fn=lambda logits, y, x: logits.sum(),
    )
    assert torch.allclose(scores["0"], torch.tensor([[3.0, 2.0, 6.0, 1.0]]))
    masks = un.compute_masks(targets, method="taylor", mode="layerwise", sparsity=0.5, gradient_scores=scores)
    assert as_list(masks["0"]) == [[1, 0, 1, 0]]  # magnitude would have kept [0, 1, 1, 0]
    assert torch.equal(layer.weight, torch.tensor([[1.0, -2.0, 3.0, 0.5]]))  # scoring leaves weights alone


def test_golden_movement_scores():
    model = nn.Sequential(linear(torch.tensor([[1.0, -2.0, 3.0, 0.5]])))
    targets = un.prunable_targets(model)
    with un.GradientScores(targets, "movement") as acc:
        model(torch.tensor([[1.0, 1.0, 1.0, -1.0]])).sum().backward()  # dL/dw = x
    assert torch.allclose(acc.scores["0"], torch.tensor([[-1.0, 2.0, -3.0, 0.5]]))  # -w * g
    masks = un.compute_masks(targets, method="movement", mode="layerwise", sparsity=0.5, gradient_scores=acc.scores)
    assert as_list(masks["0"]) == [[0, 1, 0, 1]]  # the large weight moving to zero goes first


def test_golden_nm_masks_linear_and_conv():
    weight = torch.tensor([[0.1, -0.9, 0.3, 0.2, 0.5, 0.4, -0.6, 0.05], [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 3.0]])
    assert as_list(un.nm_mask(un.magnitude_scores(weight), 2, 4)) == [
        [0, 1, 1, 0, 1, 0, 1, 0],
        [1, 1, 0, 0, 1, 0, 0, 1],
    ]
    conv = torch.zeros(1, 4, 1, 2)
    conv[0, :, 0, 0] = torch.tensor([4.0, 3.0, 2.0, 1.0])
    conv[0, :, 0, 1] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    mask = un.nm_mask(conv, 2, 4)  # groups run along input channels at each kernel position
    assert as_list(mask[0, :, 0, 0]) == [1, 1, 0, 0] and as_list(mask[0, :, 0, 1]) == [0, 0, 1, 1]


def test_nm_pattern_validity_and_eligibility():
    for n, m in ((2, 4), (1, 4), (4, 8), (4, 4)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(8, 6), nn.Linear(6, 2))
        targets = un.prunable_targets(model)
        report = un.prune_step(targets, method="nm", mode="layerwise", sparsity=0.0, nm=(n, m))
        for t in targets:
            eligible = un.nm_ineligibility(t.module, t.param, m) is None
            assert eligible == (t.name in ("1", "3")), t.name  # input widths 3, 8, 8, 6
            if eligible:
                grouped = t.tensor.movedim(1, -1).reshape(-1, m)
                assert ((grouped != 0).sum(1) == n).all(), (t.name, n, m)  # exactly N kept everywhere
                assert un.is_nm_pattern(t.tensor, n, m)
                assert report["layers"][t.name] == pytest.approx(1 - n / m)
            else:
                assert report["layers"][t.name] == 0.0  # left dense
    assert not un.is_nm_pattern(torch.ones(2, 8), 2, 4)
    assert un.nm_ineligibility(model[0], "weight", 4) == "input width 3 is not a multiple of M=4"


# ----------------------------------------------------------------------------- allocation and schedules
def uneven_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 7, 3), nn.ReLU(), nn.Conv2d(7, 5, 1), nn.Flatten(), nn.Linear(5, 3))


@pytest.mark.parametrize("schedule", un.SCHEDULES)
@pytest.mark.parametrize(
    "method,mode", [("l1", "layerwise"), ("global", "global"), ("lamp", "global"), ("random", "layerwise")]
)
def test_exact_sparsity_at_every_schedule_step_and_masks_only_grow(schedule, method, mode):
    model = uneven_model()
    targets = un.prunable_targets(model)
    before = None
    for step_sparsity in un.sparsity_schedule(0.83, 4, schedule):
        report = un.prune_step(targets, method=method, mode=mode, sparsity=step_sparsity)
        if mode == "layerwise":
            for t in targets:
                assert abs(report["layers"][t.name] * t.numel() - step_sparsity * t.numel()) <= 0.5 + 1e-9
        else:
            assert abs(report["pruned"] - step_sparsity * report["params"]) <= 0.5 + 1e-9
        masks = un.current_masks(targets)
        if before is not None:
            assert all(bool((masks[k] <= before[k]).all()) for k in masks), "a pruned weight came back"
        before = masks
    assert report["pruned"] == round(0.83 * report["params"]) or mode == "layerwise"


def test_schedule_values():
    assert un.sparsity_schedule(0.8, 4, "linear") == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert un.sparsity_schedule(0.8, 4, "cubic") == pytest.approx([0.4625, 0.7, 0.7875, 0.8])
    exp = un.sparsity_schedule(0.8, 4, "exponential")
    assert exp[0] == pytest.approx(1 - 0.2**0.25) and exp[-1] == pytest.approx(0.8)
    assert un.sparsity_schedule(0.5, 1, "cubic") == [0.5]


def test_layer_sparsity_dict_with_prefixes_and_layer_options():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), nn.Flatten(), nn.Linear(4, 2))
    names = [t.name for t in un.prunable_targets(model, prune_biases=True, prune_bn=True)]
    assert names == ["0.0", "0.0.bias", "0.1", "2", "2.bias"]
    assert [t.name for t in un.prunable_targets(model)] == ["0.0", "2"]  # no biases, no BN by default
    kept = un.prunable_targets(model, keep_first_conv_dense=True, keep_classifier_dense=True, prune_bn=True)
    assert [t.name for t in kept] == ["0.1"]
    targets = un.prunable_targets(model, prune_biases=True)
    per_layer = un.resolve_layer_sparsities(targets, 0.5, {"0": 0.25, "0.0.bias": 0.75})
    assert per_layer == {"0.0": 0.25, "0.0.bias": 0.75, "2": 0.5, "2.bias": 0.5}
    with pytest.raises(UserError, match=r"layer 'layer9' .* not a prunable layer"):
        un.resolve_layer_sparsities(targets, 0.5, {"layer9": 0.5})


# ----------------------------------------------------------------------------- masks on modules
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_masks_survive_optimizer_steps_with_momentum_and_weight_decay(optimizer):
    model = uneven_model()
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-2)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=5e-2)
    x = torch.randn(4, 3, 3, 3)

    def step():
        opt.zero_grad()
        (model(x) ** 2).sum().backward()
        opt.step()

    step()  # momentum / Adam moments now non-zero everywhere, pruned entries included
    targets = un.prunable_targets(model)
    un.apply_masks(targets, un.compute_masks(targets, method="global", mode="global", sparsity=0.7))
    for _ in range(3):
        step()
        for t in targets:  # the forward never sees a pruned weight, even before enforce_masks
            mask = getattr(t.module, "weight_mask")
            model(x)
            assert bool((t.tensor[mask == 0] == 0).all())
        un.enforce_masks(model)
        for t in targets:
            assert bool((t.trainable[getattr(t.module, "weight_mask") == 0] == 0).all())
    assert un.target_sparsity_report(targets)["pruned"] == round(0.7 * sum(t.numel() for t in targets))


def test_remove_reparameterization_keeps_outputs_identical():
    model = uneven_model().eval()
    targets = un.prunable_targets(model)
    un.prune_step(targets, method="l1", mode="layerwise", sparsity=0.6)
    x = torch.randn(5, 3, 3, 3)
    before = model(x)
    un.remove_pruning_reparameterization(model)
    assert torch.equal(model(x), before)
    assert not any(k.endswith(("_orig", "_mask")) for k in model.state_dict())
    fresh = uneven_model().eval()
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh(x), before)
    text = un.print_layerwise_sparsity(model)
    assert "total" in text and "60.00%" in text


# ----------------------------------------------------------------------------- sparse storage
@pytest.mark.parametrize("fmt", FORMATS)
def test_compressed_round_trip_is_exact(fmt):
    torch.manual_seed(0)
    tensors = {
        "conv": torch.randn(8, 4, 3, 3),
        "vec": torch.randn(7),
        "fc": torch.randn(5, 40),
        "steps": torch.tensor(12),
        "zeros": torch.zeros(3, 3),
        "half": torch.randn(4, 8).half(),
    }
    for key in ("conv", "vec", "fc", "half"):
        tensors[key][torch.rand(tensors[key].shape) < 0.9] = 0
    buffer = io.BytesIO()
    torch.save({"model": pack_state_dict(tensors, fmt)}, buffer)
    buffer.seek(0)
    back = torch.load(buffer, weights_only=False)["model"]
    for key, value in tensors.items():
        assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


def test_compressed_checkpoint_loads_like_any_checkpoint_and_is_smaller(tmp_path):
    from tools.modeling.checkpoint import load_model
    from tools.modeling.registry import build_model

    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=4, image_size=16).eval()
    targets = un.prunable_targets(model)
    un.prune_step(targets, method="global", mode="global", sparsity=0.9)
    un.remove_pruning_reparameterization(model)
    path = tmp_path / "pruned_compressed.pth"
    storage = save_compressed_checkpoint(path, state_dict=model.state_dict(), config={}, fmt="auto")
    assert storage["tensors"]["bitmask"] >= len(targets)  # + all-zero BN biases of the fresh model
    from tools.modeling.config import ModelConfig

    loaded, _ = load_model(path, model_cfg=ModelConfig(name="resnet20"), num_classes=4, input_shape=(3, 16, 16))
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))
    dense = compressed_size_bytes(model.state_dict(), "dense")
    assert path.stat().st_size < 0.25 * dense


# ----------------------------------------------------------------------------- sensitivity maths
ROWS = [
    {"layer": layer, "sparsity": s, "drop": drop}
    for layer, drops in (("robust", [0.0, 0.1, 0.5]), ("fragile", [1.0, 3.0, 9.0]))
    for s, drop in zip([0.3, 0.6, 0.9], drops)
]


def test_sensitivity_dict_meets_drop_budget_and_total_target():
    per_layer = sparsities_for_drop(ROWS, max_drop=0.5)
    assert per_layer["robust"] == pytest.approx(0.9) and per_layer["fragile"] == pytest.approx(0.15)
    params = {"robust": 300, "fragile": 100}
    per_layer = sparsities_for_total(ROWS, params, target_total=0.7)
    assert total_sparsity(per_layer, params) == pytest.approx(0.7, abs=1e-6)
    assert per_layer["robust"] > per_layer["fragile"]
    with pytest.raises(UserError, match="above the 0.9000 reachable"):
        sparsities_for_total(ROWS, params, target_total=0.95)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: un.validate_sparsity(1.0), r"sparsity 1.0 must be in \[0, 1\)"),
        (lambda: un.validate_sparsity(-0.1), r"must be in \[0, 1\)"),
        (lambda: un.validate_nm(5, 4), r"N:M needs 1 <= N <= M .* got 5:4"),
        (lambda: un.natural_mode("magnitude"), r"unknown pruning method 'magnitude'; choose one of: l1, global"),
        (lambda: un.resolve_mode("nm", "global"), r"nm .* no global mode"),
        (lambda: un.resolve_mode("global", "layerwise"), r"use --method l1"),
        (lambda: un.schedule_sparsity(0.5, 1, 2, "quadratic"), r"unknown schedule 'quadratic'"),
    ],
)
def test_bad_inputs_raise_one_line_user_errors(call, match):
    with pytest.raises(UserError, match=match) as exc:
        call()
    assert "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- 2:4 on GPU
def nm_model(device="cpu") -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device)
    targets = un.prunable_targets(model)
    un.prune_step(targets, method="nm", mode="layerwise", sparsity=0.0, nm=(2, 4))
    return un.remove_pruning_reparameterization(model)


def test_semi_structured_eligibility_reasons_on_cpu():
    from tools.pruning.semi_structured import layer_ineligibility, semi_structured_eligibility, semi_structured_report

    model = nm_model()
    cusparselt = torch.sparse.SparseSemiStructuredTensorCUSPARSELT
    assert layer_ineligibility(model[0], 2, 4, cusparselt) is None
    assert (
        layer_ineligibility(model[2], 2, 4, cusparselt)
        == "weight 10x128: cusparselt needs both dimensions multiples of 16x16"
    )
    assert layer_ineligibility(model[0], 1, 4, cusparselt) == "pattern 1:4: the hardware format is 2:4 only"
    assert "nn.Linear weights only" in layer_ineligibility(nn.Conv2d(4, 4, 1), 2, 4, cusparselt)
    assert "not 2:4 sparse" in layer_ineligibility(nn.Linear(64, 64), 2, 4, cusparselt)
    rows = semi_structured_eligibility(model, n=2, m=4, device=torch.device("cpu"))
    assert [r["eligible"] for r in rows] == [False, False]
    assert rows[0]["reason"].startswith("device cpu: semi-structured sparse kernels need a CUDA GPU")
    report = semi_structured_report(model, n=2, m=4, device=torch.device("cpu"), batch_sizes=[8], warmup=1, repeats=1)
    assert report["timings"] == []


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 0),
    reason="2:4 semi-structured kernels need a CUDA GPU with compute capability >= 8.0",
)
def test_semi_structured_conversion_and_timing_on_cuda():
    from tools.pruning.semi_structured import semi_structured_report

    model = nm_model("cuda")
    report = semi_structured_report(
        model, n=2, m=4, device=torch.device("cuda"), batch_sizes=[256], warmup=3, repeats=5
    )
    assert [r["eligible"] for r in report["layers"]] == [True, False]
    (timing,) = report["timings"]
    assert timing["layer"] == "0" and timing["dense_ms"] > 0 and timing["sparse_ms"] > 0
    assert timing["max_abs_diff"] < 1e-2  # same fp16 GEMM, sparse kernel


def test_distillation_loss_from_the_unpruned_model():
    from tools.runs.prune_unstructured import finetune_loss

    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    plain = finetune_loss(model, kd_alpha=0.0, kd_temperature=4.0, label_smoothing=0.0)
    pure_kd = finetune_loss(model, kd_alpha=1.0, kd_temperature=4.0, label_smoothing=0.0)
    with torch.no_grad():
        logits = model(x)
    assert float(plain(logits, y, x)) == pytest.approx(float(nn.functional.cross_entropy(logits, y)))
    assert float(pure_kd(logits, y, x)) == pytest.approx(0.0, abs=1e-6)  # student == teacher
    assert float(pure_kd(logits * 0, y, x)) > 0


def test_sensitivity_samples_a_seeded_random_subset_not_the_first_images():
    from tools.pruning.sensitivity import sample_eval_subset

    images = torch.arange(100.0).view(100, 1)
    labels = torch.arange(100) // 10  # class-sorted, like an image folder in index order
    loader = type(
        "Loader",
        (),
        {
            "num_samples": 100,
            "batch_size": 32,
            "__len__": lambda self: 4,
            "__iter__": lambda self: ((images[i : i + 32], labels[i : i + 32]) for i in range(0, 100, 32)),
        },
    )()
    subset = sample_eval_subset(loader, 20, seed=0)
    picked = torch.cat([x for x, _ in subset]).flatten()
    assert len(subset) == 1 and picked.numel() == 20 and len(set(picked.tolist())) == 20
    assert len(set((picked // 10).tolist())) >= 6  # spread over the classes
    again = torch.cat([x for x, _ in sample_eval_subset(loader, 20, seed=0)]).flatten()
    assert torch.equal(picked, again) and sample_eval_subset(loader, 0) is loader
