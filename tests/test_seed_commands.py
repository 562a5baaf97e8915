"""The course documents' own command lines (issue 17), run as written on tiny synthetic data from
a results/ tree like theirs: structured --sparsity as a FLOPs fraction, eval --baseline-metrics
with the comparison CSV, an .onnx beside the pruned model, the report's five template sections,
the MobileNetV2 lab grader in a fresh process, and the pruning-at-init assignment's own flags."""

import csv
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import scripts.at_init_report as at_init_report_script
import scripts.eval as eval_script
import scripts.export_onnx as export_script
import scripts.prune_at_init as at_init_script
import scripts.prune_structured as prune_script
import scripts.report as report_script
from tools.measure.lab_grader import lab_score
from tools.reports.comparison import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
CPU = ["--set", "train.device=cpu", "data.num_workers=0"]


@pytest.fixture(scope="module")
def course_dir(tiny_checkpoint, tmp_path_factory):
    """A working folder whose results/baseline/ holds the tiny trained run, as the bootcamp lays it out."""
    work = tmp_path_factory.mktemp("course")
    shutil.copytree(tiny_checkpoint.parent, work / "results" / "baseline", ignore=shutil.ignore_patterns("logs"))
    before = os.getcwd()
    os.chdir(work)
    yield work
    os.chdir(before)


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_bootcamp_commands_print_what_the_documents_promise(course_dir, capsys):
    # Day 8-10: --sparsity 0.5 is "Target Sparsity 50% ... FLOPs (50.0% reduction)".
    prune_script.main(
        [
            "--checkpoint",
            "results/baseline/best_model.pth",
            "--method",
            "bn_scale",
            "--sparsity",
            "0.5",
            "--epochs",
            "0",
            *CPU,
            "structured.bn_scale.epochs=0",
        ]
    )
    out = capsys.readouterr().out
    assert "target sparsity 50% of FLOPs (= MACs) removed" in out
    run = Path("results/structured/bn_scale_sp0.5")  # the seed's folder name for --sparsity
    metrics = yaml.safe_load((run / "metrics.yaml").read_text())
    tolerance = yaml.safe_load((run / "config.yaml").read_text())["structured"]["target_tolerance"]
    assert abs(metrics["flops_reduction_pct"] - 50.0) <= 100 * tolerance
    assert re.search(r"FLOPs reduction +5\d\.\d\d%", out)

    # Week 3: accuracy drop and goal against the train run's metrics.yaml, a row in the comparison CSV.
    command = [
        "--checkpoint",
        str(run / "pruned_model.pth"),
        "--baseline-metrics",
        "results/baseline/metrics.yaml",
        "--append-csv",
        "results/final_comparison.csv",
        *CPU,
    ]
    eval_script.main(command)
    out = capsys.readouterr().out
    report = yaml.safe_load((run / "eval_metrics.yaml").read_text())
    baseline_top1 = yaml.safe_load(Path("results/baseline/metrics.yaml").read_text())["test_top1"]
    vs = report["vs_baseline"]
    assert vs["accuracy_drop"] == pytest.approx(baseline_top1 - report["top1"])
    assert vs["flops_reduction_pct"] == pytest.approx(metrics["flops_reduction_pct"])
    assert f"accuracy drop     {vs['accuracy_drop']:.2f} pts" in out
    assert ("Goal MET" if vs["goal_met"] else "Goal NOT MET") in out
    eval_script.main(command)  # a second row, the header still once
    rows = read_csv(Path("results/final_comparison.csv"))
    assert rows[0] == list(COLUMNS) and len(rows) == 3 and rows[1] == rows[2]
    assert rows[1][:2] == ["structured bn_scale", "0.5"] and rows[1][4] == str(vs["goal_met"])

    # Day 13-14: `ls results/structured/*/*.onnx` finds the export, verified at 1e-5.
    export_script.main(["--checkpoint", str(run / "pruned_model.pth"), "--verify", "--format", "onnx", *CPU])
    out = capsys.readouterr().out
    assert [p.name for p in Path("results").glob("structured/*/*.onnx")] == ["pruned_model.onnx"]
    assert re.search(
        r"largest max \|diff\| \d\.\d+e-\d+, relative \S+ \(tolerance 1e-05 \+ 0.0001 x \|logits\|\): ok", out
    )

    # Day 20-21: the report template's five sections, with a failure to show and final_comparison.csv.
    over = Path("results/structured/overpruned")
    over.mkdir()
    shutil.copy(run / "config.yaml", over)
    (over / "metrics.yaml").write_text(yaml.safe_dump(metrics | {"accuracy_drop": 9.0, "goal_met": False}))
    scan = Path("results/sensitivity/resnet20_l1")
    scan.mkdir(parents=True)
    (scan / "metrics.yaml").write_text(
        yaml.safe_dump(
            {
                "rule": "max_drop 1",
                "baseline_top1": 50.0,
                "layer_sparsity": {"conv1": 0.1, "layer1.0.conv1": 0.7, "layer2.0.conv1": 0.8, "layer3.0.conv1": 0.8},
            }
        )
    )
    (scan / "sensitivity.csv").write_text("layer,sparsity,drop\nconv1,0.9,12.5\nlayer1.0.conv1,0.9,1.0\n")
    report_script.main(
        ["--runs", "results/baseline", "results/structured", "results/sensitivity", "--out", "results/report"]
    )
    text = Path("results/report/report.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    for section in ("Baseline results", "Method comparison", "Ablation", "Failure cases", "Recommendations"):
        assert any(h.startswith(f"## {section}") for h in headings), section
    failures = text.split("## Failure cases")[1].split("\n## ")[0]
    assert "overpruned" in failures and "9.00" in failures and "failures.png" in failures
    assert "conv1" in failures and "12.50 pts at 0.9" in failures
    assert "loses the least" in text.split("## Recommendations")[1]
    rows = read_csv(Path("results/report/final_comparison.csv"))
    assert rows[0] == list(COLUMNS) and len(rows) == 3 and {r[4] for r in rows[1:]} >= {"False"}


def test_mobilenet_lab_grader_scores_the_file_as_the_lab_does(tmp_path, capsys):
    import torch_pruning as tp

    from tools.core.config import config_to_dict, load_config
    from tools.measure.metrics import count_macs_params
    from tools.modeling.registry import build_model
    from tools.pruning import structured as st
    from tools.runs.prune_structured import save_pruned_model

    cfg = load_config(
        str(ROOT / "cfgs" / "lab_mobilenetv2.yaml"),
        overrides=[
            "data.name=synthetic",
            "data.synthetic.test_size=4",
            "data.synthetic.train_size=4",
            "data.fast_path=true",
            "data.num_workers=0",
            "train.device=cpu",
        ],
    )
    assert (cfg.data.image_size, cfg.model.stem, cfg.data.synthetic.num_classes) == (224, "imagenet", 10)
    model = build_model("mobilenet_v2", num_classes=10, image_size=224, stem="imagenet").eval()
    dense_macs = count_macs_params(model, (1, 3, 224, 224))[0]
    s = cfg.structured  # the recipe's target lands under the lab's 45 "MFLOPs" even at the far end of its window
    assert dense_macs * (1 - s.target_macs_reduction + s.target_tolerance) < 45e6
    example = torch.zeros(1, 3, 32, 32)  # channels do not depend on the resolution: trace small, grade at 224
    plan = st.ChannelPlan(
        model,
        example,
        table=st.importance_table(model, example, method="l2", ignored_layers=["classifier.1"]),
        limits=st.ChannelLimits(max_pruning_ratio=0.8, round_to=8),
        ignored_layers=["classifier.1"],
    )
    st.apply_plan(model, example, plan, plan.counts(0.5))
    save_pruned_model(
        model, tmp_path, config=config_to_dict(cfg), metrics={}, input_shape=(3, 224, 224), num_classes=10
    )
    (tmp_path / "pruned_model.pth").rename(tmp_path / "mobilenet.pth")  # the lab's file name

    eval_script.main(["--checkpoint", str(tmp_path / "mobilenet.pth"), "--grader", "mobilenet-lab"])
    out = capsys.readouterr().out
    grade = yaml.safe_load((tmp_path / "lab_grade.yaml").read_text())
    assert grade["mflops"] == pytest.approx(tp.utils.count_ops_and_params(model, torch.zeros(1, 3, 224, 224))[0] / 1e6)
    assert grade["mflops"] < dense_macs / 1e6 / 2
    assert grade["num_samples"] == 4 and grade["score_pct"] == pytest.approx(
        lab_score(grade["mflops"], grade["accuracy"])
    )
    assert (
        f"MFLOPs   {grade['mflops']:.2f}" in out and "it counts MACs" in out and f"= {grade['score_pct']:.2f}%" in out
    )


def test_lab_score_formula_on_known_numbers():
    assert lab_score(45.0, 0.95) == pytest.approx(45.0)  # on target, accurate enough: full marks
    assert lab_score(2271.0, 0.93) == pytest.approx(-601.26, abs=0.01)  # the CIFAR-stem default at 224 px
    assert lab_score(92.7, 0.95) == pytest.approx(31.15, abs=0.01)  # the documented 70%-pruned recipe
    assert lab_score(45.0, 0.91) == pytest.approx(40.5)  # one point under 92%: -10% of the range
    assert lab_score(200.0, -5.0) == pytest.approx(-450.0)  # the accuracy penalty is clamped at 1


def test_prune_at_init_runs_the_assignments_own_command_line(tmp_path, capsys):
    assignment = [
        "--model-class",
        "lottery",
        "--model",
        "resnet20",
        "--dataset",
        "synthetic",
        "--experiment",
        "singleshot",
        "--pruner",
        "synflow",
        "--compression",
        "0.5",
        "--post-epoch",
        "1",
    ]
    tiny = [
        "--config",
        str(ROOT / "cfgs" / "at_init_quickstart.yaml"),
        "--prune-epochs",
        "2",
        "--set",
        "data.synthetic.train_size=32",
        "data.synthetic.test_size=16",
        "train.device=cpu",
    ]
    for expid, extra in (("fp32", []), ("amp", ["--quantization"])):
        at_init_script.main(tiny + assignment + ["--expid", expid, "--save-dir", str(tmp_path / expid)] + extra)
        point = yaml.safe_load((tmp_path / expid / "results.yaml").read_text())["points"][0]
        assert (point["pruner"], point["compression"], point["post_epochs"]) == ("synflow", 0.5, 1)
    assert yaml.safe_load((tmp_path / "amp" / "config.yaml").read_text())["train"]["amp"] == "bf16"
    capsys.readouterr()
    at_init_report_script.main([str(tmp_path / "fp32"), str(tmp_path / "amp")])
    text = (tmp_path / "fp32" / "report_all.md").read_text()
    assert "## AMP vs FP32" in text and "needs CUDA" in text
    flags = at_init_script.cli_flags(
        at_init_script.parse_args(
            ["--model-class", "imagenet", "--dataset", "cifar10", "--post-epoch", "3", "--quantization", "fp16"]
        )
    )
    assert (flags["model.stem"], flags["data.name"], flags["pai.post_epochs"], flags["train.amp"]) == (
        "imagenet",
        "cifar10",
        3,
        "fp16",
    )
