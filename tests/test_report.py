"""report: renders from crafted run folders, including partial results, and errors when empty."""

import pytest
import yaml

import scripts.report as report_script
from tools.core.errors import UserError
from tools.reports.report import ablation_table, summarize_run


def write_run(folder, metrics, config=None, log=None):
    folder.mkdir(parents=True)
    (folder / "metrics.yaml").write_text(yaml.safe_dump(metrics))
    if config:
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if log:
        (folder / "log.csv").write_text(log)
    return folder


TRAIN = {"test_top1": 80.0, "macs": 1000, "epochs": 3}
UNSTRUCTURED = {
    "method": "global",
    "mode": "global",
    "target_sparsity": 0.8,
    "actual_sparsity": 0.8,
    "dense_macs": 1000,
    "nonzero_macs": 250,
    "baseline_top1": 80.0,
    "finetuned_top1": 79.0,
    "accuracy_drop": 1.0,
    "layer_sparsity": {"conv1": 0.5, "fc": 0.9},
}
STRUCTURED = {
    "method": "l2",
    "granularity": "channel",
    "target_macs_reduction": 0.5,
    "flops_reduction_pct": 50.5,
    "reduction_basis": "dense",
    "baseline_top1": 80.0,
    "pruned_top1": 79.2,
    "accuracy_drop": 0.8,
    "goal_met": True,
    "pruned": {"macs": 495},
    "finetune": {"epochs": 2},
    "channels": {"conv1": {"before": 16, "after": 8}},
}

STRUCTURED_LATENCY = STRUCTURED | {
    "target_macs_reduction": None,
    "target_latency_reduction": 0.5,
    "flops_reduction_pct": 30.0,
    "pruned_top1": 79.5,
    "accuracy_drop": 0.5,
    "latency": {"backend": "onnxruntime", "batch_size": 64},
    "latency_reduction_pct": 47.5,
}


def test_summaries_name_the_reduction_basis():
    row = summarize_run(__import__("pathlib").Path("u"), UNSTRUCTURED, {"finetune": {"epochs": 1}})
    assert row["flops_reduction_pct"] == pytest.approx(75.0) and row["basis"].startswith("non-zero")
    assert row["finetune_epochs"] == 1
    row = summarize_run(__import__("pathlib").Path("s"), STRUCTURED, None)
    assert row["basis"] == "dense" and row["goal_met"] is True and row["macs"] == 495


def test_full_report(tmp_path):
    log = "epoch,val_top1\n1,50\n2,70\n"
    write_run(tmp_path / "runs" / "train", TRAIN, log=log)
    write_run(tmp_path / "runs" / "unstructured" / "global_sp0.8", UNSTRUCTURED, {"finetune": {"epochs": 1}}, log=log)
    write_run(tmp_path / "runs" / "structured" / "l2_macs0.5", STRUCTURED, log=log)
    write_run(tmp_path / "runs" / "structured_latency", STRUCTURED_LATENCY)
    report_script.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.index("## Method comparison") < text.index("## Figures")
    assert "| structured | l2 | MACs -0.5 | 50.50 | dense |  | 80.00 | 79.20 | 0.80 | MET | 2 |" in text
    assert (
        "| structured | l2 | latency -0.5 (onnxruntime, batch 64) | 30.00 | dense | 47.50 | 80.00 | 79.50 | 0.50 "
        "| MET | 2 |"
    ) in text  # the latency-targeted row beside the MACs-targeted one
    assert "| unstructured | global (global) | 0.80 | 75.00 | non-zero (theoretical)" in text
    for png in ("pareto.png", "curves.png", "layer_sparsity.png", "channels.png"):
        assert (tmp_path / "out" / png).stat().st_size > 1000, png
        assert f"]({png})" in text


def test_partial_results_still_render(tmp_path):
    write_run(tmp_path / "runs" / "train", TRAIN)
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "metrics.yaml").write_text("{not yaml")
    report_script.main(["--runs", str(tmp_path / "runs")])
    text = (tmp_path / "runs" / "report.md").read_text()
    assert "## Method comparison\n\n_No results for this section yet._" in text
    assert "## FLOPs vs measured latency\n\n_No results" in text


def test_ablation_needs_two_settings():
    rows = [summarize_run(__import__("pathlib").Path("u"), UNSTRUCTURED, None)]
    assert ablation_table(rows, "sparsity", "sparsity") is None


def test_empty_or_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no run results"):
        report_script.main(["--runs", str(tmp_path)])
    with pytest.raises(UserError, match="not found"):
        report_script.main(["--runs", str(tmp_path / "nope")])
