"""engine: a diverging loss stops the epoch with one line (checked once per epoch, no per-step sync)."""

import pytest
import torch
from torch import nn

from tools.core.errors import UserError
from tools.training.engine import train_one_epoch


def test_nonfinite_loss_is_reported_once_per_epoch():
    model = nn.Linear(4, 3)
    loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(UserError, match="loss became nan during this epoch; lower the learning rate"):
        train_one_epoch(model, loader, optimizer, device=torch.device("cpu"))


def test_finite_epoch_returns_figures():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    loader = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    out = train_one_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=0.1), device=torch.device("cpu"))
    assert out["num_samples"] == 24 and out["loss"] > 0
