"""Per-operator profiles of ONNX files: ONNX Runtime's trace summed per operator and run, warm-up
runs left out, shares of all kernel time; and a real file profiled end to end."""

import pytest
from torch import nn

from tools.measure.op_profile import conv_key, format_op_table, op_rows, profile_files


def run(ts: int) -> dict:
    return {"cat": "Session", "name": "model_run", "ts": ts, "dur": 90}


def kernel(node: str, op: str, ts: int, dur_us: float) -> dict:
    return {"cat": "Node", "name": f"{node}_kernel_time", "ts": ts, "dur": dur_us, "args": {"op_name": op}}


def test_kernel_times_are_summed_per_operator_and_run_and_the_warmup_left_out():
    events = [
        run(0),
        kernel("c1", "QLinearConv", 1, 9000),
        kernel("q", "QuantizeLinear", 2, 9000),  # warm-up: slow
        run(100),
        kernel("c1", "QLinearConv", 101, 3000),
        kernel("c2", "QLinearConv", 102, 1000),
        kernel("q", "QuantizeLinear", 103, 1000),
        {**kernel("q", "QuantizeLinear", 104, 500), "name": "q_fence_before"},  # not a kernel
        run(200),
        kernel("c1", "QLinearConv", 201, 3000),
        kernel("c2", "QLinearConv", 202, 1000),
        kernel("q", "QuantizeLinear", 203, 1000),
        run(300),
        kernel("c1", "QLinearConv", 301, 5000),
        kernel("c2", "QLinearConv", 302, 1000),
        kernel("q", "QuantizeLinear", 303, 1000),
    ]
    rows = op_rows(events, skip_runs=1)
    assert [r["op_type"] for r in rows] == ["QLinearConv", "QuantizeLinear"]
    conv, quant = rows
    assert conv["time_ms"] == pytest.approx(4.0) and conv["nodes"] == 2  # median of 4, 4, 6 ms
    assert quant["time_ms"] == pytest.approx(1.0) and quant["nodes"] == 1
    assert conv["share_pct"] == pytest.approx(80.0) and quant["share_pct"] == pytest.approx(20.0)


def test_a_trace_with_only_warmup_runs_is_refused():
    with pytest.raises(ValueError, match="leave none"):
        op_rows([run(0), kernel("c", "Conv", 1, 10)], skip_runs=1)


def test_a_real_file_is_profiled_per_operator(tmp_path):
    from tools.modeling.export import export_onnx

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )
    path = export_onnx(net.eval(), (3, 16, 16), tmp_path / "net.onnx", opset=17)
    rows = profile_files({"net": path}, (3, 16, 16), batch_size=2, warmup=1, repeats=3)["operators"]["net"]
    ops = {r["op_type"] for r in rows}
    assert ops & {"Conv", "FusedConv"} and "Gemm" in ops
    assert sum(r["share_pct"] for r in rows) == pytest.approx(100.0)
    table = format_op_table({"net": rows, "same": rows})
    assert "\n  all " in table and table.count("Gemm") == 1


def test_an_operator_one_file_lacks_is_a_dash():
    table = format_op_table(
        {
            "a": [{"op_type": "Conv", "nodes": 1, "time_ms": 2.0, "share_pct": 100.0}],
            "b": [{"op_type": "QLinearConv", "nodes": 1, "time_ms": 1.0, "share_pct": 100.0}],
        }
    )
    conv = next(line for line in table.splitlines() if line.strip().startswith("Conv"))
    assert conv.rstrip().endswith("-") and "2.000 ms" in conv


def test_scripts_profile_says_where_an_onnx_files_time_goes(tiny_checkpoint, tmp_path, capsys):
    """ONNX files get the counterpart of the torch models' slowest layers: kernel time per operator
    and per convolution shape, printed side by side and kept in profile.yaml."""
    import yaml

    import scripts.export_onnx as export_script
    import scripts.profile as profile_script

    export_script.main(["--checkpoint", str(tiny_checkpoint), "--save-dir", str(tmp_path / "x")])
    onnx_file = next((tmp_path / "x").glob("*.onnx"))
    argv = ["--baseline", str(onnx_file), "--pruned", str(onnx_file), "--measure-latency", "--batch-sizes", "2"]
    profile_script.main([*argv, "--backend", "onnxruntime", "--save-dir", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert "where the ONNX files' time goes" in out and "convolutions by shape" in out
    ops = yaml.safe_load((tmp_path / "p" / "profile.yaml").read_text())["onnx_op_profile"]
    assert ops["batch_size"] == 2 and len(ops["operators"]) == 2
    shapes = next(iter(ops["conv_shapes"].values()))
    assert shapes and all(" ch, " in r["op_type"] for r in shapes)


def conv_event(op: str, x: list[int], w: list[int], out: list[int]) -> dict:
    shapes = (
        [{"float": x}, {"float": w}]
        if op != "QLinearConv"
        else [{"uint8": x}, {"float": [1]}, {"uint8": [1]}, {"int8": w}]
    )
    return {"args": {"op_name": op, "input_type_shape": shapes, "output_type_shape": [{"float": out}]}}


@pytest.mark.parametrize(
    "event",
    [
        conv_event("Conv", [64, 384, 8, 8], [384, 1, 3, 3], [64, 384, 8, 8]),  # NCHW
        conv_event("FusedConv", [64, 24, 8, 8, 16], [384, 1, 3, 3], [64, 24, 8, 8, 16]),  # NCHWc, 16-channel blocks
        conv_event("QLinearConv", [64, 8, 8, 384], [384, 1, 3, 3], [64, 8, 8, 384]),  # NHWC
    ],
    ids=["fp32_nchw", "fp32_nchwc", "int8_nhwc"],
)
def test_a_depthwise_conv_has_one_shape_label_in_fp32_and_int8_files(event):
    assert conv_key(event) == "384->384 ch, 8x8"  # not the weight's 1 input channel per group


def test_fp32_channels_come_from_the_weight_not_the_padded_blocks():
    padded = conv_event("FusedConv", [64, 2, 16, 16, 16], [24, 24, 3, 3], [64, 2, 16, 16, 16])  # 24 in 2 x 16
    assert conv_key(padded) == "24->24 ch, 16x16"
    gray_stem = conv_event("Conv", [64, 1, 32, 32], [16, 1, 3, 3], [64, 16, 32, 32])
    assert conv_key(gray_stem) == "1->16 ch, 32x32"
