"""Issue 28 item 10: an epoch whose validation loss is nan/inf is never the best, and the error of a
diverged run names only checkpoints that exist."""

import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import TINY_TRAIN

import scripts.train as train_script
import tools.training.fit as fit_module
from tools.core.errors import run_cli


def val_losses(monkeypatch, figures: list[tuple[float, float]]) -> None:
    """The fit's validation passes report (loss, top1) from `figures` in turn; later calls (the test
    split) are real."""
    real, calls = fit_module.evaluate, []

    def evaluate(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(1)
        if len(calls) <= len(figures):
            out["loss"], out["top1"] = figures[len(calls) - 1]
        return out

    monkeypatch.setattr(fit_module, "evaluate", evaluate)


def diverging_from_epoch(monkeypatch, epoch: int) -> None:
    """The training loss turns nan from `epoch` on (1-based)."""
    seen = {"epochs": 0}
    real_epoch = fit_module.train_one_epoch

    def counting(*args, **kwargs):
        seen["epochs"] += 1
        return real_epoch(*args, **kwargs)

    def loss(smoothing=0.0):
        return lambda logits, targets, images: (
            F.cross_entropy(logits, targets) * (float("nan") if seen["epochs"] >= epoch else 1.0)
        )

    monkeypatch.setattr(fit_module, "train_one_epoch", counting)
    monkeypatch.setattr(fit_module, "cross_entropy", loss)


def exit_and_error(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(train_script.main, argv)
    return exc.value.code, capsys.readouterr().err.strip()


@pytest.mark.parametrize(
    "figures, best",
    [
        ([(1.0, 50.0), (float("nan"), 90.0), (1.0, 60.0)], 3),
        ([(float("inf"), 90.0), (1.0, 40.0), (1.2, 30.0)], 2),
    ],
)
def test_an_epoch_with_a_nonfinite_val_loss_is_never_the_best(tmp_path, monkeypatch, capsys, figures, best):
    val_losses(monkeypatch, figures)
    run = tmp_path / "run"
    train_script.main(TINY_TRAIN + ["--set", "train.epochs=3", "--save-dir", str(run)])
    metrics = yaml.safe_load((run / "metrics.yaml").read_text())
    assert metrics["best_epoch"] == best and metrics["best_val_top1"] == figures[best - 1][1]
    assert torch.load(run / "best_model.pth", weights_only=False)["epoch"] == best
    assert "val loss not finite" in capsys.readouterr().out


def test_no_finite_val_loss_at_all_is_one_line_without_a_best_model(tmp_path, monkeypatch, capsys):
    val_losses(monkeypatch, [(math.nan, 80.0)])
    run = tmp_path / "run"
    code, err = exit_and_error(TINY_TRAIN + ["--save-dir", str(run)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "no epoch had a finite validation loss" in err
    assert not (run / "best_model.pth").exists() and "best_model.pth" not in err
    assert (run / "last.pth").is_file() and str(run / "last.pth") in err
    assert not (run / "COMPLETE").exists()


def test_loss_diverging_in_the_first_epoch_names_no_missing_checkpoint(tmp_path, monkeypatch, capsys):
    diverging_from_epoch(monkeypatch, 1)
    run = tmp_path / "run"
    code, err = exit_and_error(TINY_TRAIN + ["--save-dir", str(run)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "loss became nan" in err
    assert not (run / "last.pth").exists() and "last.pth" not in err and "no checkpoint was written" in err


def test_loss_diverging_later_names_the_checkpoints_kept(tmp_path, monkeypatch, capsys):
    diverging_from_epoch(monkeypatch, 2)
    run = tmp_path / "run"
    code, err = exit_and_error(TINY_TRAIN + ["--set", "train.epochs=2", "--save-dir", str(run)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "loss became nan" in err
    assert str(run / "last.pth") in err and str(run / "best_model.pth") in err
    assert torch.load(run / "last.pth", weights_only=False)["epoch"] == 1
