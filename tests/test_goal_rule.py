"""One goal rule and one test set (issue 28, items 5 and 6).

Item 5: eval --append-csv, the report's final_comparison.csv and report.md give an unstructured
(masked) model the same verdict, n/a: a goal needs a dense FLOPs reduction, zeros alone never meet it.
Item 6: eval --baseline-metrics refuses, with one line naming both image counts, a baseline
measured on another test set, and one that does not record its test set.
"""

import csv
from pathlib import Path

import pytest
import yaml

import scripts.eval as eval_script
import scripts.prune_unstructured as prune_script
import scripts.report as report_script
from tools.core.errors import UserError, run_cli
from tools.pruning.structured import goal_verdict
from tools.reports.comparison import comparison_row, versus_baseline

CPU = ["--set", "train.device=cpu"]
GOAL = {"min_flops_reduction_pct": 40.0, "max_accuracy_drop": 1.5}


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_rule_needs_a_dense_flops_reduction():
    assert goal_verdict(flops_reduction_pct=0.0, accuracy_drop=0.0, sparse=True, **GOAL) is None
    assert goal_verdict(flops_reduction_pct=50.0, accuracy_drop=0.5, sparse=False, **GOAL) is True
    assert goal_verdict(flops_reduction_pct=50.0, accuracy_drop=0.5, sparse=True, **GOAL) is True  # smaller and sparse
    assert goal_verdict(flops_reduction_pct=10.0, accuracy_drop=0.5, sparse=False, **GOAL) is False
    # a 50%-sparse model: half the non-zero FLOPs, the same dense FLOPs -> no verdict, written n/a
    baseline = {"top1": 90.0, "macs": 1000, "params": 100}
    sparse = {"top1": 89.9, "macs": 1000, "params": 100, "nonzero_macs": 500, "weight_sparsity": 0.5}
    vs = versus_baseline(baseline, sparse, GOAL)
    assert vs["nonzero_flops_reduction_pct"] == pytest.approx(50.0) and vs["goal_met"] is None
    assert comparison_row("unstructured global (global)", 0.5, vs)["Goal_Met"] == "n/a"


@pytest.fixture(scope="module")
def unstructured_run(tiny_checkpoint, tmp_path_factory) -> Path:
    """A global 50% magnitude run on the tiny model (no fine-tuning: seconds)."""
    root = tmp_path_factory.mktemp("goal") / "runs"
    prune_script.main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--save-dir",
            str(root / "global50"),
            "--method",
            "global",
            "--sparsity",
            "0.5",
            "--epochs",
            "0",
        ]
    )
    return root / "global50"


def test_eval_csv_report_csv_and_report_md_agree_on_na(tiny_checkpoint, unstructured_run, tmp_path, capsys):
    comparison = tmp_path / "final_comparison.csv"
    eval_script.main(
        [
            "--checkpoint",
            str(unstructured_run / "pruned_model.pth"),
            "--save-dir",
            str(tmp_path / "eval"),
            "--baseline-metrics",
            str(tiny_checkpoint.parent / "metrics.yaml"),
            "--append-csv",
            str(comparison),
            *CPU,
        ]
    )
    assert "Goal n/a" in capsys.readouterr().out
    assert read_rows(comparison)[0]["Goal_Met"] == "n/a"
    vs = yaml.safe_load((tmp_path / "eval" / "eval_metrics.yaml").read_text())["vs_baseline"]
    assert vs["goal_met"] is None and vs["nonzero_flops_reduction_pct"] > 30 and vs["flops_reduction_pct"] == 0

    report_script.main(["--runs", str(unstructured_run.parent), "--out", str(tmp_path / "report")])
    rows = read_rows(tmp_path / "report" / "final_comparison.csv")
    assert [r["Goal_Met"] for r in rows] == ["n/a"]
    table = [
        line
        for line in (tmp_path / "report" / "report.md").read_text().splitlines()
        if line.startswith("| unstructured")
    ]
    assert len(table) == 1 and "| n/a |" in table[0]


def test_a_baseline_on_another_test_set_is_refused(tiny_checkpoint, tmp_path, capsys):
    eval_script.main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--save-dir",
            str(tmp_path / "subset"),
            "--set",
            "data.test_subset=32",
            "train.device=cpu",
        ]
    )
    subset = yaml.safe_load((tmp_path / "subset" / "eval_metrics.yaml").read_text())
    assert subset["num_samples"] == 32 and subset["test_set"]["test_images"] == 32
    capsys.readouterr()
    argv = [
        "--checkpoint",
        str(tiny_checkpoint),
        "--save-dir",
        str(tmp_path / "full"),
        "--baseline-metrics",
        str(tmp_path / "subset" / "eval_metrics.yaml"),
        *CPU,
    ]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(eval_script.main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "32 test images" in err and "64" in err and "same test set" in err
    assert not (tmp_path / "full" / "eval_metrics.yaml").exists()  # no half-written result


def test_a_baseline_without_a_test_set_record_is_named_not_guessed(tiny_checkpoint, tmp_path):
    old = yaml.safe_load((tiny_checkpoint.parent / "metrics.yaml").read_text())
    assert old["test_set"]["test_images"] == 64  # train's metrics.yaml records it now
    del old["test_set"]
    (tmp_path / "old_metrics.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(UserError, match=r"do not record how many test images.*re-evaluate the baseline"):
        eval_script.main(
            [
                "--checkpoint",
                str(tiny_checkpoint),
                "--save-dir",
                str(tmp_path / "e"),
                "--baseline-metrics",
                str(tmp_path / "old_metrics.yaml"),
                *CPU,
            ]
        )


def test_the_same_test_set_compares(tiny_checkpoint, tmp_path):
    eval_script.main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--save-dir",
            str(tmp_path / "e"),
            "--baseline-metrics",
            str(tiny_checkpoint.parent / "metrics.yaml"),
            *CPU,
        ]
    )
    vs = yaml.safe_load((tmp_path / "e" / "eval_metrics.yaml").read_text())["vs_baseline"]
    assert vs["accuracy_drop"] == pytest.approx(0.0) and vs["goal_met"] is False  # dense, nothing removed
