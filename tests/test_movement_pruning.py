"""Movement pruning (issue 28, item 4): the score's sign, its accumulation over real optimizer
steps, and an allocation that ranks weights, not layers (raw -w*g differs by orders of magnitude
between layers, so a global threshold put even 0.1% sparsity into conv1 and the classifier)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tools.pruning import unstructured as un
from tools.runs.prune_unstructured import movement_warmup
from tools.training.config import TrainConfig

CPU = torch.device("cpu")
PLAIN_SGD = TrainConfig(epochs=1, optimizer="sgd", lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)


def test_a_weight_pushed_toward_zero_scores_lower_than_one_pushed_away():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0, -1.0, -1.0]]))
    model = nn.Sequential(layer)
    x = torch.tensor([[0.5, -0.5, -0.5, 0.5]])  # loss = sum of outputs: dL/dw = x at every step
    batches = [(x, torch.zeros(1, dtype=torch.long))] * 3
    targets = un.prunable_targets(model)
    with un.GradientScores(targets, "movement") as acc:
        steps = movement_warmup(
            model,
            batches,
            finetune_cfg=PLAIN_SGD,
            num_batches=3,
            device=CPU,
            loss_fn=lambda logits, y, images: logits.sum(),
        )
    assert steps == 3
    # the weights really moved: w - 3 * lr * x; entries 0 and 2 shrank toward zero, 1 and 3 grew
    assert torch.allclose(layer.weight, torch.tensor([[0.85, 1.15, -0.85, -1.15]]))
    # -w_t * g summed over the steps, w_t the value before each step (1, 0.95, 0.9 for entry 0)
    expected = (
        -sum(torch.tensor([[1.0, 1.0, -1.0, -1.0]]) + t * torch.tensor([[-0.05, 0.05, 0.05, -0.05]]) for t in range(3))
        * x
    )
    assert torch.allclose(acc.scores["0"], expected)
    assert acc.scores["0"][0, 0] < 0 < acc.scores["0"][0, 1] and acc.scores["0"][0, 2] < 0 < acc.scores["0"][0, 3]
    masks = un.compute_masks(
        targets, method="movement", mode=un.natural_mode("movement"), sparsity=0.5, gradient_scores=acc.scores
    )
    assert masks["0"].tolist() == [[0.0, 1.0, 0.0, 1.0]]  # the two moving toward zero go


def bn_net() -> nn.Sequential:
    """Layers of very different sizes (a 108-weight stem, a 128-weight classifier, 9k in between),
    the shape that concentrated global movement pruning in conv1 and fc."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    )


@pytest.fixture(scope="module")
def movement_scores():
    """A small BN net trained on 4 separable classes, then 16 movement steps at fine-tuning settings."""
    torch.manual_seed(0)
    protos = torch.randn(4, 3, 8, 8)
    generator = torch.Generator().manual_seed(1)
    labels = [torch.randint(0, 4, (32,), generator=generator) for _ in range(20)]
    batches = [(protos[y] + torch.randn(32, 3, 8, 8, generator=generator), y) for y in labels]
    model = bn_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for images, y in batches * 2:
        optimizer.zero_grad()
        F.cross_entropy(model(images), y).backward()
        optimizer.step()
    targets = un.prunable_targets(model)
    finetune = TrainConfig(epochs=1, optimizer="sgd", lr=0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    with un.GradientScores(targets, "movement") as acc:
        movement_warmup(
            model,
            batches,
            finetune_cfg=finetune,
            num_batches=16,
            device=CPU,
            loss_fn=lambda logits, y, images: F.cross_entropy(logits, y),
        )
    return model, acc.scores


@pytest.mark.parametrize("sparsity", [0.001, 0.01, 0.1])
def test_movement_sparsity_is_spread_over_the_layers_not_concentrated_in_a_small_one(movement_scores, sparsity):
    model, scores = movement_scores
    assert un.natural_mode("movement") == "layerwise"
    # the raw scores differ in scale between layers: what made a global threshold rank layers
    scale = {name: float(s.abs().mean()) for name, s in scores.items()}
    assert max(scale.values()) > 10 * min(scale.values())
    for mode in (un.natural_mode("movement"), "global"):
        targets = un.prunable_targets(copy.deepcopy(model))
        masks = un.compute_masks(targets, method="movement", mode=mode, sparsity=sparsity, gradient_scores=scores)
        per_layer = {name: 1.0 - float(m.mean()) for name, m in masks.items()}
        total = sum(float((m == 0).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        assert total == pytest.approx(sparsity, abs=1.0 / 9000)
        for name, m in masks.items():  # no layer more than 3x the target (plus one weight of rounding)
            assert per_layer[name] <= 3 * sparsity + 1.0 / m.numel(), (mode, name, per_layer)


def test_layer_normalized_scores_are_scale_free():
    scores = {"a": torch.tensor([1.0, -2.0, 3.0]), "b": 1000 * torch.tensor([1.0, -2.0, 3.0])}
    normalized = un.layer_normalized(scores)
    assert torch.allclose(normalized["a"], normalized["b"]) and float(normalized["a"].abs().mean()) == pytest.approx(
        1.0
    )


def _agreement(gradient_of_pass) -> float | None:
    """Split-half agreement of movement scores over 8 backward passes whose loss is (w * c).sum(),
    c = gradient_of_pass(k): dL/dw = c exactly, with no optimizer step in between."""
    layer = nn.Linear(64, 64, bias=False)
    targets = un.prunable_targets(nn.Sequential(layer))
    with un.GradientScores(targets, "movement") as acc:
        for k in range(8):
            (layer.weight * gradient_of_pass(k)).sum().backward()
    return acc.agreement()


def test_movement_agreement_tells_a_shared_direction_from_gradient_noise():
    torch.manual_seed(0)
    direction = torch.randn(64, 64)
    noise = torch.Generator().manual_seed(1)
    assert _agreement(lambda k: direction) == pytest.approx(1.0)
    assert _agreement(lambda k: direction + 0.3 * torch.randn(64, 64, generator=noise)) > 0.8
    assert abs(_agreement(lambda k: torch.randn(64, 64, generator=noise))) < 0.1


def test_noisy_movement_scores_are_named_with_the_fix(capsys):
    from tools.runs.prune_unstructured import noisy_movement_note

    assert noisy_movement_note(None, 1) is None and noisy_movement_note(0.6, 16) is None
    note = noisy_movement_note(0.03, 16)
    assert "r=0.03 over 16 steps" in note and "--method global" in note
    assert capsys.readouterr().out.strip() == note
