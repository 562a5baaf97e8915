"""Movement pruning (issue 28, item 4): the score's sign, its accumulation over real optimizer
steps, an allocation that ranks weights, not layers (raw -w*g differs by orders of magnitude
between layers, so a global threshold put even 0.1% sparsity into conv1 and the classifier), and
the gradual ramp that makes it no worse than random on a trained model (one shot after 16 batches
was: the low tail of a short -w*g sum is large weights pushed toward zero)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tools.pruning import unstructured as un
from tools.runs.prune_unstructured import MaskRamp, PrunePlan, PruneJob
from tools.training.config import TrainConfig

CPU = torch.device("cpu")
PLAIN_SGD = TrainConfig(epochs=1, optimizer="sgd", lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)
FINETUNE = TrainConfig(epochs=1, optimizer="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)


def sgd_steps(model, batches, *, cfg: TrainConfig, num_steps: int, loss_fn=None, after_step=None) -> int:
    """`num_steps` optimizer steps at `cfg`'s settings, masks kept (what fit does, without the files)."""
    loss_fn = loss_fn or (lambda logits, y: F.cross_entropy(logits, y))
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                weight_decay=cfg.weight_decay)
    model.train()
    for images, labels in batches[:num_steps]:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()
        (after_step or (lambda: un.enforce_masks(model)))()
    return min(num_steps, len(batches))


def test_a_weight_pushed_toward_zero_scores_lower_than_one_pushed_away():
    layer = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 1.0, -1.0, -1.0]]))
    model = nn.Sequential(layer)
    x = torch.tensor([[0.5, -0.5, -0.5, 0.5]])  # loss = sum of outputs: dL/dw = x at every step
    batches = [(x, torch.zeros(1, dtype=torch.long))] * 3
    targets = un.prunable_targets(model)
    with un.GradientScores(targets, "movement") as acc:
        steps = sgd_steps(model, batches, cfg=PLAIN_SGD, num_steps=3, loss_fn=lambda logits, y: logits.sum())
    assert steps == 3
    # the weights really moved: w - 3 * lr * x; entries 0 and 2 shrank toward zero, 1 and 3 grew
    assert torch.allclose(layer.weight, torch.tensor([[0.85, 1.15, -0.85, -1.15]]))
    # -w_t * g summed over the steps, w_t the value before each step (1, 0.95, 0.9 for entry 0)
    expected = -sum(torch.tensor([[1.0, 1.0, -1.0, -1.0]]) + t * torch.tensor([[-0.05, 0.05, 0.05, -0.05]])
                    for t in range(3)) * x
    assert torch.allclose(acc.scores["0"], expected)
    assert acc.scores["0"][0, 0] < 0 < acc.scores["0"][0, 1] and acc.scores["0"][0, 2] < 0 < acc.scores["0"][0, 3]
    masks = un.compute_masks(targets, method="movement", mode=un.natural_mode("movement"), sparsity=0.5,
                             gradient_scores=acc.scores)
    assert masks["0"].tolist() == [[0.0, 1.0, 0.0, 1.0]]  # the two moving toward zero go


def bn_net() -> nn.Sequential:
    """Layers of very different sizes (a 108-weight stem, a 128-weight classifier, 9k in between),
    the shape that concentrated global movement pruning in conv1 and fc."""
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4))


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
        sgd_steps(model, batches, cfg=finetune, num_steps=16)
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
    assert torch.allclose(normalized["a"], normalized["b"]) and float(normalized["a"].abs().mean()) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def trained_8_class_net():
    """A BN net trained to ~99% on 8 noisy prototype classes (40 batches of 32, 8 epochs one-cycle)."""
    torch.manual_seed(0)
    protos = torch.randn(8, 3, 8, 8)
    generator = torch.Generator().manual_seed(1)

    def batches(n):
        labels = [torch.randint(0, 8, (32,), generator=generator) for _ in range(n)]
        return [(protos[y] + 1.5 * torch.randn(32, 3, 8, 8, generator=generator), y) for y in labels]

    train, test = batches(40), batches(10)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 8))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.05, total_steps=len(train) * 8)
    for _ in range(8):
        for images, y in train:
            optimizer.zero_grad()
            F.cross_entropy(model(images), y).backward()
            optimizer.step()
            scheduler.step()
    return model, train, test


def top1(model, batches) -> float:
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    model.train()
    return 100.0 * correct / sum(len(y) for _, y in batches)


@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_gradual_movement_is_no_worse_than_random_on_a_trained_model(trained_8_class_net, sparsity):
    """Each model: prune, then 40 fine-tuning steps at the final masks; two seeds (batch orders)."""
    model, train, test = trained_8_class_net
    assert top1(model, test) > 95
    results = {"random": [], "ramp": []} | ({"one_shot_16": []} if sparsity == 0.5 else {})
    for seed in range(2):
        stream = (train * 10)[3 * seed:]
        for how in results:
            net = copy.deepcopy(model)
            targets = un.prunable_targets(net)
            if how == "random":
                un.prune_step(targets, method="random", mode="layerwise", sparsity=sparsity,
                              generator=torch.Generator().manual_seed(seed))
            else:
                with un.GradientScores(targets, "movement") as acc:
                    if how == "one_shot_16":  # what the run did before: 16 dense steps, then one prune
                        sgd_steps(net, stream, cfg=FINETUNE, num_steps=16)
                    else:  # the run's ramp: 120 steps while MaskRamp grows the masks
                        job = PruneJob(net, None, PrunePlan(method="movement", mode="layerwise", sparsity=sparsity),
                                       targets, FINETUNE, None, {}, CPU, None)
                        sgd_steps(net, stream, cfg=FINETUNE, num_steps=120, after_step=MaskRamp(job, acc, 120))
                    un.prune_step(targets, method="movement", mode="layerwise", sparsity=sparsity,
                                  gradient_scores=acc.scores)
            assert un.target_sparsity_report(targets)["total"] == pytest.approx(sparsity, abs=1e-3)
            sgd_steps(net, train, cfg=FINETUNE, num_steps=40)
            results[how].append(top1(net, test))
    mean = {how: sum(r) / len(r) for how, r in results.items()}
    if sparsity == 0.5:  # the failure the ramp fixes (quickstart: 55-57% vs random 79%), real for the scores
        assert mean["one_shot_16"] < mean["random"], mean
    assert mean["ramp"] > mean["random"] + 2, mean
