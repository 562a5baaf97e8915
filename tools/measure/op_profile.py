"""Where an ONNX file's time goes: ONNX Runtime's own profiler, its kernel times summed per operator.

    views = profile_files({"pruned INT8": Path("model.int8.onnx")}, (3, 32, 32), batch_size=64, num_threads=1)
    print(format_op_table(views["operators"]))
    print(format_op_table(views["conv_shapes"], what="convolutions by shape"))

One row per operator as ONNX Runtime ran it, after its graph fusions (QLinearConv, QuantizeLinear,
FusedConv, ReorderInput, ...): `op_type`, `nodes` (how many), `time_ms` (the median over the timed
runs of that operator's summed kernel time per run) and `share_pct` (of all kernel time). Why this,
when a file is slower or faster than its MACs say: a pruned INT8 file keeps every QuantizeLinear,
requantizing Add and layout reorder of the dense one, so the fixed costs that pruning cannot touch
show here beside the convolutions it shrinks. The profiler adds a little time per node, so compare
shares and ratios between files profiled alike, and take end-to-end latency from the interleaved
timing, not from these sums.
"""

from __future__ import annotations

import bisect
import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

KERNEL = "_kernel_time"  # ONNX Runtime's profiler names each node's kernel event <node>_kernel_time


def profile_files(
    files: dict[str, Path],
    input_shape: tuple,
    *,
    batch_size: int,
    num_threads: int = 1,
    warmup: int = 5,
    repeats: int = 20,
) -> dict[str, dict[str, list[dict]]]:
    """One profiler trace per file, read two ways: {"operators": {label: rows {op_type, nodes, time_ms, share_pct}, slowest first},
    "conv_shapes": {label: rows}}, the second the convolutions alone summed per shape (input ->
    output channels, output size): {op_type: "8->8 ch, 32x32", nodes, time_ms, share_pct (of conv
    time)}. Why the second: the same shape in an FP32 and an INT8 file shows where INT8 pays, and a
    pruned layer that costs what the unpruned one did shows channel counts the kernels cannot use."""
    views: dict[str, dict[str, list[dict]]] = {"operators": {}, "conv_shapes": {}}
    for label, path in files.items():
        events = trace(path, input_shape, batch_size, num_threads, warmup + repeats)
        views["operators"][label] = op_rows(events, warmup)
        views["conv_shapes"][label] = op_rows(events, warmup, key=conv_key)
    return views


def trace(path: Path, input_shape: tuple, batch_size: int, num_threads: int, runs: int) -> list[dict]:
    """ONNX Runtime's profiler trace of `runs` forwards of random inputs."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        shape = (batch_size, *input_shape)
        feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
        for _ in range(runs):
            session.run(None, feed)
        return json.loads(Path(session.end_profiling()).read_text())


def op_key(event: dict) -> str:
    return event["args"]["op_name"]


def conv_key(event: dict) -> str | None:
    """The shape "16->8 ch, 32x32" of a convolution kernel event, None for any other. QLinearConv runs
    NHWC with prepacked weights: channels from the activations. FP32 Conv runs NCHW or in NCHWc blocks
    (N, C/b, H, W, b) that pad the channels: channels from its OIHW weight, whose input count a
    depthwise conv divides by its groups (1), so a layer has one label in FP32 and INT8 files."""
    op, args = event["args"]["op_name"], event["args"]
    if "Conv" not in op:
        return None
    x, weight = (next(iter(d.values())) for d in args["input_type_shape"][:2])
    out = next(iter(args["output_type_shape"][0].values()))
    if op == "QLinearConv":
        c_in, (_, h, w, c_out) = x[3], out
    else:
        depthwise = weight[1] == 1 and x[1] > 1
        c_in, c_out, h, w = (weight[0] if depthwise else weight[1]), weight[0], out[2], out[3]
    return f"{c_in}->{c_out} ch, {h}x{w}"  # no op name: one layer lines up across FP32 and INT8 files


def op_rows(events: list[dict], skip_runs: int = 0, key=op_key) -> list[dict]:
    """Rows per key (default: per operator) from a profiler trace: each node's kernel event belongs to
    the model_run that started last before it; the first `skip_runs` runs (warm-up) are left out.
    `key(event)` names the event's row, or None to leave the event out."""
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    runs = len(starts) - skip_runs
    if runs < 1:
        raise ValueError(f"the trace holds {len(starts)} runs; {skip_runs} warm-up runs leave none to summarise")
    per_run: dict[str, list[float]] = defaultdict(lambda: [0.0] * runs)
    nodes: dict[str, set[str]] = defaultdict(set)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(KERNEL):
            continue
        run = bisect.bisect_right(starts, e["ts"]) - 1 - skip_runs
        if run >= 0 and (name := key(e)) is not None:
            per_run[name][run] += e["dur"] / 1000.0  # the trace is in microseconds
            nodes[name].add(e["name"])
    times = {name: statistics.median(ms) for name, ms in per_run.items()}
    total = sum(times.values()) or 1.0
    rows = [
        {"op_type": name, "nodes": len(nodes[name]), "time_ms": ms, "share_pct": 100.0 * ms / total}
        for name, ms in times.items()
    ]
    return sorted(rows, key=lambda r: r["time_ms"], reverse=True)


def format_op_table(profiles: dict[str, list[dict]], what: str = "operator") -> str:
    """A text table: one line per operator (or conv shape, `what`), one column (ms and share) per file."""
    ops = list(dict.fromkeys(r["op_type"] for rows in profiles.values() for r in rows))
    by_file = {label: {r["op_type"]: r for r in rows} for label, rows in profiles.items()}
    lines = [f"  {what:<26}" + "".join(f"{label:>26}" for label in profiles)]
    for op in ops:
        cells = [by_file[label].get(op) for label in profiles]
        lines.append(
            f"  {op:<26}"
            + "".join(f"{r['time_ms']:>16.3f} ms {r['share_pct']:5.1f}%" if r else f"{'-':>26}" for r in cells)
        )
    totals = [sum(r["time_ms"] for r in rows) for rows in profiles.values()]
    lines.append(f"  {'all':<26}" + "".join(f"{t:>16.3f} ms {100.0:5.1f}%" for t in totals))
    return "\n".join(lines)
