"""Where a reported checkpoint was chosen (issue 29): every metrics.yaml says `checkpoint_selected_on`
(val | last | test), and the benchmark runner judges no accuracy target on test-selected figures."""

import yaml

import scripts.prune_structured as structured_script
import scripts.prune_unstructured as prune_script
import scripts.train as train_script
from tests.conftest import TINY_TRAIN
from tools.measure.describe import checkpoint_selection
from tools.workflows.bench_recipe import check_targets


def metrics_of(run_dir) -> dict:
    return yaml.safe_load((run_dir / "metrics.yaml").read_text())


def test_the_runner_refuses_to_judge_a_drop_on_test_selected_figures():
    verdict = check_targets({"max_drop": 1.0}, {"drop": 0.4, "selected_on": "test"})
    assert verdict.startswith("not judged") and "data.val_split" in verdict
    assert check_targets({"max_drop": 1.0}, {"drop": 0.4, "selected_on": "val"}) == "met"
    assert check_targets({"max_drop": 1.0}, {"drop": 0.4, "selected_on": "last"}) == "met"
    # a bound that is not on accuracy is judged whatever chose the checkpoint
    assert check_targets({"min_macs_reduction_pct": 50}, {"macs_reduction_pct": 51, "selected_on": "test"}) == "met"


def test_selection_rule():
    assert [checkpoint_selection(0.1, 3), checkpoint_selection(0.0, 3), checkpoint_selection(0.1, 0)] == [
        "val",
        "test",
        "last",
    ]


def test_train_and_prune_runs_record_where_their_checkpoint_was_chosen(tiny_checkpoint, tmp_path):
    assert metrics_of(tiny_checkpoint.parent)["checkpoint_selected_on"] == "val"  # the quickstart's 10% split
    test_run = tmp_path / "train_test"
    train_script.main(TINY_TRAIN + ["--save-dir", str(test_run), "--set", "data.val_split=0"])
    assert metrics_of(test_run)["checkpoint_selected_on"] == "test"

    prune_script.main(
        ["--checkpoint", str(tiny_checkpoint), "--save-dir", str(tmp_path / "u0"), "--sparsity", "0.5", "--epochs", "0"]
    )
    assert metrics_of(tmp_path / "u0")["checkpoint_selected_on"] == "last"
    prune_script.main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--save-dir",
            str(tmp_path / "u1"),
            "--sparsity",
            "0.5",
            "--epochs",
            "1",
            "--set",
            "data.val_split=0.25",
        ]
    )
    assert metrics_of(tmp_path / "u1")["checkpoint_selected_on"] == "val"
    structured_script.main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--save-dir",
            str(tmp_path / "s1"),
            "--pruning-ratio",
            "0.3",
            "--epochs",
            "1",
            "--set",
            "data.val_split=0",
        ]
    )
    assert metrics_of(tmp_path / "s1")["checkpoint_selected_on"] == "test"
