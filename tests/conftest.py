"""Shared fixtures: a tiny trained checkpoint and a structurally pruned copy of it."""

import os
from pathlib import Path

import pytest
import torch

import tools.workflows.config  # noqa: F401  (composes the config's sections, as every script does)

# One thread for the whole suite, subprocesses included: on a small shared machine two OpenMP
# threads stall each other at every op, and the tiny test models gain nothing from a second one.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = [
    "--config",
    str(ROOT / "cfgs" / "quickstart.yaml"),
    "--set",
    "data.synthetic.train_size=128",
    "data.synthetic.test_size=64",
    "data.synthetic.resolution=16",
    "data.synthetic.num_classes=4",
    "model.name=resnet20",
    "train.epochs=1",
    "train.device=cpu",
]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """best_model.pth of a one-epoch resnet20 on 16 px synthetic data (4 classes)."""
    import scripts.train as train_script

    run_dir = tmp_path_factory.mktemp("tiny") / "dense"
    train_script.main(TINY_TRAIN + ["--save-dir", str(run_dir)])
    return run_dir / "best_model.pth"


def save_variant(checkpoint: Path, path: Path, transform) -> Path:
    """Rebuild the tiny model, apply `transform` and save it as a full-module checkpoint."""
    from tools.modeling.checkpoint import save_checkpoint
    from tools.modeling.registry import build_model

    ckpt = torch.load(checkpoint, weights_only=False)
    model = build_model("resnet20", num_classes=4, image_size=16)
    model.load_state_dict(ckpt["model"])
    save_checkpoint(path, model=transform(model.eval()), config=ckpt["config"], full_module=True)
    return path


def channel_pruned(model, ratio: float = 0.5):
    import torch_pruning as tp

    pruner = tp.pruner.MagnitudePruner(
        model,
        torch.zeros(1, 3, 16, 16),
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=[model.fc],
    )
    pruner.step()
    return model


@pytest.fixture(scope="session")
def pruned_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    return save_variant(tiny_checkpoint, tmp_path_factory.mktemp("tiny") / "pruned.pth", channel_pruned)


def exit_code_and_error(main, argv, capsys) -> tuple[int, str]:
    """Exit code (0 when `main` returns) and stderr of a script run through run_cli, as the shell sees them."""
    from tools.core.errors import run_cli

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
        raise SystemExit(0)
    return exc.value.code, capsys.readouterr().err.strip()


def assert_one_line(code: int, err: str) -> None:
    """A user error: exit 2 and one `error: ...` line, no traceback."""
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
