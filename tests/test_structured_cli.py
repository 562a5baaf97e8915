"""scripts.prune_structured end to end on the tiny trained resnet20 (tests/conftest.py): outputs,
the goal block, a fresh-process reload, eval on the result, iterative/bn_scale/KD and kernel
runs, and bad inputs exiting 2 with one line."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import scripts.eval as eval_script
import scripts.prune_structured as prune_script
from tools.core.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "train.device=cpu", "data.num_workers=0"]


def prune(checkpoint: Path, run_dir: Path, *args: str) -> dict:
    prune_script.main(["--checkpoint", str(checkpoint), "--save-dir", str(run_dir), *args, *FAST])
    return yaml.safe_load((run_dir / "metrics.yaml").read_text())


@pytest.fixture(scope="module")
def target_run(tiny_checkpoint, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("structured") / "l2_macs0.5"
    return run_dir, prune(tiny_checkpoint, run_dir, "--method", "l2", "--target-macs-reduction", "0.5", "--epochs", "1")


def test_target_run_writes_every_output(target_run):
    run_dir, metrics = target_run
    for name in ("pruned_model.pth", "metrics.yaml", "config.yaml", "log.csv", "best_model.pth"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "logs").iterdir()), "TensorBoard events"
    assert 49.0 <= metrics["flops_reduction_pct"] <= 51.0
    assert metrics["flops_reduction_pct"] == metrics["macs_reduction_pct"]
    assert metrics["accuracy_drop"] == pytest.approx(metrics["baseline_top1"] - metrics["pruned_top1"])
    assert isinstance(metrics["goal_met"], bool) and metrics["goal"]["min_flops_reduction_pct"] == 40.0
    assert metrics["channels"]["layer3.0.conv1"]["before"] == 64
    assert any(c["after"] < c["before"] for c in metrics["channels"].values())
    assert metrics["channels"]["fc"] == {"before": 4, "after": 4}
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["structured"]["target_macs_reduction"] == 0.5 and config["finetune"]["epochs"] == 1


def test_stdout_has_the_report_and_goal_line(tiny_checkpoint, tmp_path, capsys):
    prune(
        tiny_checkpoint,
        tmp_path / "run",
        "--method",
        "l1",
        "--pruning-ratio",
        "0.3",
        "--epochs",
        "0",
        "--set",
        "structured.goal.min_flops_reduction_pct=90",
        "structured.goal.max_accuracy_drop=0.5",
    )
    out = capsys.readouterr().out
    for pattern in (
        r"baseline: top1 .* MACs .* FLOPs .* params",
        r"round 1/1: ratio 0.3000, MACs reduction",
        r"after pruning, before fine-tuning: .* MACs .*\(-\d+\.\d%\)",
        r"FLOPs reduction +\d+\.\d\d%",
        r"accuracy drop +-?\d+\.\d\d pts",
    ):
        assert re.search(pattern, out), pattern
    assert "Goal NOT MET (>=90% FLOPs, <=0.5% drop)" in out.splitlines()


def test_pruned_model_is_a_plain_module_that_reloads_identically(target_run, tmp_path):
    run_dir, metrics = target_run
    model = torch.load(run_dir / "pruned_model.pth", weights_only=False)
    assert isinstance(model, nn.Module) and model.run_config["model"]["name"] == "resnet20"
    images = torch.randn(3, 3, 16, 16)
    torch.save(images, tmp_path / "images.pt")
    with torch.no_grad():
        expected = model.eval()(images)
    code = (
        "import sys, torch, torch_pruning as tp\n"
        f"m = torch.load({str(run_dir / 'pruned_model.pth')!r}, weights_only=False).eval()\n"
        f"x = torch.load({str(tmp_path / 'images.pt')!r})\n"
        "macs, params = tp.utils.count_ops_and_params(m, torch.zeros(1, 3, 16, 16))\n"
        f"torch.save({{'out': m(x).detach(), 'macs': macs, 'params': params}}, {str(tmp_path / 'out.pt')!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    fresh = torch.load(tmp_path / "out.pt")
    assert torch.equal(fresh["out"], expected)
    assert fresh["macs"] == metrics["pruned"]["macs"] and fresh["params"] == metrics["pruned"]["params"]


def test_eval_works_on_the_pruned_model(target_run, tmp_path):
    run_dir, metrics = target_run
    eval_script.main(["--checkpoint", str(run_dir / "pruned_model.pth"), "--save-dir", str(tmp_path), *FAST])
    report = yaml.safe_load((tmp_path / "eval_metrics.yaml").read_text())
    assert report["top1"] == pytest.approx(metrics["pruned_top1"]) and report["macs"] == metrics["pruned"]["macs"]


def test_bn_scale_iterative_with_distillation(tiny_checkpoint, tmp_path):
    metrics = prune(
        tiny_checkpoint,
        tmp_path / "run",
        "--method",
        "bn_scale",
        "--target-macs-reduction",
        "0.4",
        "--iterative-steps",
        "2",
        "--epochs",
        "1",
        "--set",
        "structured.bn_scale.epochs=1",
        "structured.bn_scale.reg=1e-3",
        "structured.step_epochs=1",
        "finetune.kd.alpha=0.5",
    )
    assert [r["round"] for r in metrics["rounds"]] == [1, 2]
    assert 19.0 <= metrics["rounds"][0]["macs_reduction_pct"] <= 21.0 and 39.0 <= metrics["flops_reduction_pct"] <= 41.0
    assert metrics["sparsity_training"]["epochs"] == 1 and metrics["finetune"]["kd_alpha"] == 0.5
    assert (tmp_path / "run" / "sparsity" / "log.csv").is_file()
    assert (tmp_path / "run" / "rounds" / "round1" / "log.csv").is_file()


def test_intra_kernel_patterns_survive_fine_tuning(tiny_checkpoint, tmp_path):
    metrics = prune(
        tiny_checkpoint,
        tmp_path / "run",
        "--method",
        "l2",
        "--granularity",
        "intra_kernel",
        "--pruning-ratio",
        "0.1",
        "--epochs",
        "1",
    )
    assert metrics["reduction_basis"] == "nonzero" and metrics["flops_reduction_pct"] > 40
    assert metrics["pruned"]["macs"] == metrics["baseline"]["macs"], "masks leave dense MACs alone"
    model = torch.load(tmp_path / "run" / "pruned_model.pth", weights_only=False)
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            assert ((m.weight != 0).flatten(2).sum(2) <= 4).all()


class NumpyDetour(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.from_numpy(self.conv(x).detach().numpy()).mean((2, 3)))


def test_bad_inputs_exit_2_with_one_line(tiny_checkpoint, tmp_path, capsys):
    untraceable = NumpyDetour()
    untraceable.run_config = torch.load(tiny_checkpoint, weights_only=False)["config"]
    torch.save(untraceable, tmp_path / "untraceable.pth")
    base = ["--checkpoint", str(tiny_checkpoint), "--save-dir", str(tmp_path / "bad"), *FAST]
    cases = [
        (["--pruning-ratio", "1.0"], r"structured.pruning_ratio must be in \[0, 1\) .*got 1.0"),
        (["--pruning-ratio", "-0.2"], r"structured.pruning_ratio must be in \[0, 1\)"),
        (["--sparsity", "1.0"], r"--sparsity / --target-macs-reduction is the fraction of FLOPs removed .*got 1"),
        (
            ["--target-macs-reduction", "0.95", "--set", "structured.max_pruning_ratio=0.5"],
            r"target MACs reduction 95.0% is unreachable",
        ),
        (["--method", "magnitude"], r"unknown structured.method 'magnitude'; choose one of: l1, l2, bn_scale"),
        (["--granularity", "kernel", "--method", "taylor"], r"granularity kernel ranks kernels by l1, l2, random"),
        (["--set", "structured.ignored_layers=[layer9]"], r"structured.ignored_layers names 'layer9'"),
        (["--pruning-ratio", "0.3", "--sparsity", "0.5"], r"not allowed with argument"),
    ]
    for extra, pattern in cases:
        code, err = exit_code(base + extra, capsys)
        assert code == 2 and "\n" not in err and "Traceback" not in err, (extra, err)
        assert re.search(pattern, err), (pattern, err)
    code, err = exit_code(
        [
            "--checkpoint",
            str(tmp_path / "untraceable.pth"),
            "--trust-checkpoint",
            "--save-dir",
            str(tmp_path / "u"),
            *FAST,
        ],
        capsys,
    )
    assert code == 2 and re.search(r"cannot trace NumpyDetour", err), err


def exit_code(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(prune_script.main, argv)
    return exc.value.code, capsys.readouterr().err.strip()
