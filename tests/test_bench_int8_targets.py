"""An INT8-targeted benchmark row (structured.latency.backend onnxruntime-int8) is judged on its
deployed file: speed-ups over dense FP32 and dense INT8, size, and the INT8 file's drop, which, like
any accuracy, is never judged on checkpoints chosen on the test set."""

from tools.workflows.bench_doc import Run, int8_columns
from tools.workflows.bench_recipe import check_targets

TARGETS = {
    "min_int8_speedup_vs_dense_fp32": 3.0,
    "min_int8_speedup_vs_dense_int8": 1.4,
    "max_int8_drop": 1.0,
    "min_int8_size_ratio": 6.0,
}
RESULT = {
    "int8_top1": 86.1,
    "int8_drop": 0.6,
    "int8_speedup_vs_dense_fp32": 3.2,
    "int8_speedup_vs_dense_int8": 1.3,
    "int8_size_ratio_vs_dense_fp32": 6.5,
}


def test_the_int8_file_is_judged_and_shown():
    values, spreads = {"selected_on": "val"}, {}
    columns = int8_columns(Run(b=None, config={}, result=RESULT, record={}), values, spreads)
    assert columns["INT8 speed-up vs dense FP32 / dense INT8"] == "3.20x / 1.30x"
    assert columns["INT8 file: top-1 (drop)"] == "86.10 (+0.60)"
    assert check_targets(TARGETS, values, spreads) == "MISSED: INT8 file vs dense INT8 1.30x < 1.4"


def test_rows_without_an_int8_file_keep_their_columns():
    values = {}
    assert int8_columns(Run(b=None, config={}, result={"accuracy_drop": 0.5}, record={}), values, {}) == {}
    assert values == {}


def test_the_int8_drop_is_not_judged_on_test_selected_checkpoints():
    values = {"selected_on": "test", **RESULT}
    verdict = check_targets({"max_int8_drop": 1.0, "min_int8_size_ratio": 6.0}, values)
    assert verdict.startswith("not judged") and "other targets met" in verdict


def test_the_doc_says_where_the_deployed_files_time_goes(monkeypatch):
    """Each seed's int8.op_profile (ms per operator and file) becomes one table: means over seeds,
    shares of each file's kernel time, an operator a file lacks as '-'."""
    from types import SimpleNamespace

    from tools.workflows import bench_doc

    def profile(conv_ms):
        return {
            "dense_fp32": [{"op_type": "FusedConv", "time_ms": 30.0}, {"op_type": "ReorderInput", "time_ms": 10.0}],
            "pruned_int8": [
                {"op_type": "QLinearConv", "time_ms": conv_ms},
                {"op_type": "QuantizeLinear", "time_ms": 2.0},
            ],
        }

    by_seed = {0: profile(6.0), 1: profile(10.0)}
    row = SimpleNamespace(name="r20_int8", done_seeds=lambda root: [0, 1])
    monkeypatch.setattr(
        bench_doc,
        "read_run",
        lambda b, root, seed: Run(b, {}, {"int8": {"op_profile": by_seed[seed], "timed_on": "batch 64"}}, {}),
    )
    text = bench_doc.op_account(row, None)
    assert "`r20_int8`" in text and "mean of 2 seed(s)" in text
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert lines["QLinearConv"].split("|")[2:4] == [" - ", " 8.00 (80%) "]  # dense FP32 has none; mean of 6 and 10
    assert "40.00" in lines["all operators"] and "10.00" in lines["all operators"]
    assert "by shape" not in text  # no seed recorded int8.conv_profile
    no_profile = SimpleNamespace(name="macs_row", done_seeds=lambda root: [0])
    monkeypatch.setattr(bench_doc, "read_run", lambda b, root, seed: Run(b, {}, {"accuracy_drop": 0.5}, {}))
    assert bench_doc.op_account(no_profile, None) == ""


def test_the_doc_shows_one_seeds_convolutions_by_shape(monkeypatch):
    """int8.conv_profile (ms per conv shape and file) is shown for the first seed that recorded it:
    the shapes of a pruned model differ between seeds, so they are not averaged."""
    from types import SimpleNamespace

    from tools.workflows import bench_doc

    ops = {"pruned_int8": [{"op_type": "QLinearConv", "time_ms": 4.0}]}
    shapes = {
        "dense_int8": [{"op_type": "16->16 ch, 32x32", "time_ms": 14.0}],
        "pruned_int8": [
            {"op_type": "8->8 ch, 32x32", "time_ms": 13.0},
            {"op_type": "16->16 ch, 16x16", "time_ms": 1.0},
        ],
    }
    int8 = {0: {"op_profile": ops}, 1: {"op_profile": ops, "conv_profile": shapes}}
    monkeypatch.setattr(bench_doc, "read_run", lambda b, root, seed: Run(b, {}, {"int8": int8[seed]}, {}))
    text = bench_doc.op_account(SimpleNamespace(name="r20", done_seeds=lambda root: [0, 1]), None)
    assert "seed 1's files by shape" in text and "mean of 2 seed(s)" in text
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert lines["8->8 ch, 32x32"].split("|")[2:4] == [" - ", " 13.00 (93%) "]  # dense INT8 has no 8-ch conv
    assert "14.00" in lines["all convolutions"] and "14.00 (100%)" in lines["16->16 ch, 32x32"]
