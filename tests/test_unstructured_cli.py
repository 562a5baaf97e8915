"""prune_unstructured and sensitivity end to end on a tiny trained ResNet-20 (synthetic 16 px data)."""

import re
from pathlib import Path

import pytest
import torch
import yaml

import scripts.eval as eval_script
import scripts.prune_unstructured as prune_script
import scripts.sensitivity as sensitivity_script
from tools.core.errors import run_cli
from tools.pruning import unstructured as un


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    """conftest's one-epoch resnet20 on 16 px synthetic data (4 classes, 128 training images)."""
    return tiny_checkpoint


def prune(checkpoint: Path, out: Path, *extra: str) -> dict:
    prune_script.main(["--checkpoint", str(checkpoint), "--save-dir", str(out), *extra])
    return yaml.safe_load((out / "metrics.yaml").read_text())


def test_one_shot_writes_everything_and_the_pruned_model_loads_in_eval(checkpoint, tmp_path, capsys):
    out = tmp_path / "global"
    metrics = prune(checkpoint, out, "--method", "global", "--sparsity", "0.8", "--epochs", "1", "--save-compressed")
    for name in (
        "pruned_model.pth",
        "pruned_model_compressed.pth",
        "metrics.yaml",
        "config.yaml",
        "layer_weights.png",
        "finetune/log.csv",
    ):
        assert (out / name).is_file(), name
    assert any((out / "logs").iterdir()) and any((out / "finetune" / "logs").iterdir())
    printed = capsys.readouterr().out
    for text in (
        "baseline: test top1",
        "target sparsity 80.00%",
        "right after pruning",
        "epoch   1/1",
        "drop",
        "FLOPs = 2 x MACs",
        "compressed",
    ):
        assert text in printed, text
    assert (
        metrics["target_sparsity"] == 0.8 and abs(metrics["pruned_weights"] - 0.8 * metrics["prunable_weights"]) <= 0.5
    )
    assert metrics["dense_flops"] == 2 * metrics["dense_macs"] and metrics["theoretical_speedup"] > 1
    assert metrics["accuracy_drop"] == pytest.approx(metrics["baseline_top1"] - metrics["finetuned_top1"])
    assert metrics["compressed_size_bytes"] < metrics["dense_size_bytes"] / 2
    assert metrics["compressed_outputs_identical"] is True
    for key in ("layer_sparsity", "nonzero_macs", "pruned_top1", "params", "nonzero_params", "steps"):
        assert key in metrics, key

    eval_script.main(["--checkpoint", str(out / "pruned_model.pth"), "--save-dir", str(out / "eval")])
    report = yaml.safe_load((out / "eval" / "eval_metrics.yaml").read_text())
    assert report["top1"] == pytest.approx(metrics["finetuned_top1"])
    assert report["weight_sparsity"] == pytest.approx(metrics["pruned_weights"] / metrics["prunable_weights"])
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["unstructured"]["method"] == "global" and config["unstructured"]["sparsity"] == 0.8


def test_iterative_movement_follows_the_schedule(checkpoint, tmp_path):
    out = tmp_path / "movement"
    metrics = prune(
        checkpoint,
        out,
        "--method",
        "movement",
        "--sparsity",
        "0.6",
        "--num-iterations",
        "2",
        "--schedule",
        "linear",
        "--epochs",
        "0",
        "--set",
        "unstructured.score_batches=2",
    )
    steps = metrics["steps"]
    assert [s["target_sparsity"] for s in steps] == pytest.approx([0.3, 0.6])
    for s in steps:  # layerwise: each layer rounds its own count, half a weight at most
        assert abs(s["actual_sparsity"] - s["target_sparsity"]) * metrics["prunable_weights"] <= 0.5 * len(
            metrics["layer_sparsity"]
        )
    assert (out / "finetune_step1" / "log.csv").is_file()  # step_epochs (1) between steps
    assert not (out / "finetune_step2").exists() and steps[1]["finetune_epochs"] == 0  # --epochs 0 after the last
    assert metrics["iterative"] is True and metrics["mode"] == "layerwise"  # movement ranks within each layer


def test_sensitivity_dict_feeds_prune_unstructured(checkpoint, tmp_path):
    sens = tmp_path / "sens"
    sensitivity_script.main(
        [
            "--checkpoint",
            str(checkpoint),
            "--save-dir",
            str(sens),
            "--sparsities",
            "0.5,0.9",
            "--num-images",
            "32",
            "--target-sparsity",
            "0.6",
        ]
    )
    rows = (sens / "sensitivity.csv").read_text().splitlines()
    layers = yaml.safe_load((sens / "layer_sparsity.yaml").read_text())
    assert len(rows) == 1 + 2 * len(layers) and (sens / "sensitivity.png").stat().st_size > 0
    assert all(0 <= v <= 0.9 for v in layers.values())
    assert yaml.safe_load((sens / "metrics.yaml").read_text())["total_sparsity"] == pytest.approx(0.6, abs=1e-5)

    out = tmp_path / "from_dict"
    metrics = prune(
        checkpoint,
        out,
        "--method",
        "taylor",
        "--sparsity-file",
        str(sens / "layer_sparsity.yaml"),
        "--epochs",
        "0",
        "--set",
        "unstructured.score_batches=1",
    )
    assert metrics["mode"] == "layerwise" and out.name == "from_dict"
    for name, target in layers.items():
        params = metrics["layers"][name]["params"]
        assert abs(metrics["layer_sparsity"][name] - target) * params <= 0.5 + 1e-6, name
    assert metrics["actual_sparsity"] == pytest.approx(0.6, abs=1e-4)


def test_nm_on_cpu_reports_masks_and_theoretical_figures(checkpoint, tmp_path):
    metrics = prune(checkpoint, tmp_path / "nm", "--method", "nm", "--nm", "2:4", "--epochs", "0")
    section = metrics["semi_structured"]
    layers = section["nm_layers"]
    assert layers["conv1"] == {
        "masked": False,
        "reason": "input width 3 is not a multiple of M=4",
        "pattern_valid": False,
    }
    assert all(row["pattern_valid"] for name, row in layers.items() if name != "conv1")
    assert metrics["layer_sparsity"]["layer1.0.conv1"] == 0.5
    (fc,) = section["layers"]
    assert not fc["eligible"] and section["timings"] == []
    model = torch.load(tmp_path / "nm" / "pruned_model.pth", weights_only=False)["model"]
    assert un.is_nm_pattern(model["layer3.0.conv2.weight"], 2, 4)


def run_exit_code(argv, capsys, main=prune_script.main) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    return exc.value.code, capsys.readouterr().err.strip()


def test_bad_inputs_exit_2_with_one_line(checkpoint, tmp_path, capsys):
    ck = ["--checkpoint", str(checkpoint), "--save-dir", str(tmp_path / "bad")]
    bad_file = tmp_path / "layers.yaml"
    bad_file.write_text("layer9.conv1: 0.5\n")
    cases = [
        (ck + ["--sparsity", "1.0"], r"--sparsity 1.0 must be in \[0, 1\)"),
        (ck + ["--sparsity", "-0.2"], r"--sparsity -0.2 must be in \[0, 1\)"),
        (ck + ["--set", "unstructured.sparsity=1.5"], r"unstructured.sparsity must be in \[0, 1\) .*got 1.5 in --set"),
        (ck + ["--method", "nm", "--nm", "5:4"], r"N:M needs 1 <= N <= M .* got 5:4"),
        (ck + ["--method", "magnitude"], r"unknown pruning method 'magnitude'; choose one of"),
        (ck + ["--set", "model.name=resnet32"], r"does not match model resnet32"),
        (ck + ["--sparsity-file", str(tmp_path / "none.yaml")], r"sparsity file .*none.yaml not found"),
        (ck + ["--method", "l1", "--sparsity-file", str(bad_file)], r"layer 'layer9.conv1' .* not a prunable layer"),
        (ck + ["--method", "nm", "--iterative"], r"nm is one-shot"),
    ]
    for argv, pattern in cases:
        code, err = run_exit_code(argv, capsys)
        assert code == 2, (argv, err)
        assert "\n" not in err and "Traceback" not in err, err
        assert re.search(pattern, err), (pattern, err)
    code, err = run_exit_code(
        ["--checkpoint", str(checkpoint), "--sparsities", "0.5,1.2"], capsys, main=sensitivity_script.main
    )
    assert code == 2 and re.search(r"sensitivity sparsity 1.2 must be in \[0, 1\)", err), err
    assert not (tmp_path / "bad" / "pruned_model.pth").exists()
