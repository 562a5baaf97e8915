"""Chrome trace of one inference step and the convolution share computed from it.

    uv run python -m scripts.prune_at_init --config cfgs/at_init_quickstart.yaml --save-trace

    path = record_inference_trace(model, images, run_dir / "trace.json", device=device)
    stats = conv_time_from_trace(path, device_type="cpu")
    stats["conv_time_ms"], stats["step_time_ms"], stats["conv_share_pct"]

The step is one eval-mode forward over a test batch inside a torch.profiler record_function
named STEP_LABEL, with a device synchronisation inside it, so the label's span covers the GPU
work too (one warm-up forward runs first, outside the trace, so allocation and kernel selection
are not charged to it). Open the JSON in chrome://tracing or https://ui.perfetto.dev.

Convolution time is the union of the convolution intervals inside the step (an interval
counted once however many events overlap it, so nested aten::conv2d > aten::convolution >
aten::mkldnn_convolution, or concurrent CUDA streams, are not double counted):

- CPU: `cpu_op` events whose name contains "conv".
- CUDA: `kernel` events whose name indicates a convolution (conv, implicit_gemm, winograd,
  fprop, ...), or that were launched (same correlation id) from inside a convolution cpu_op,
  which catches the cuDNN helper kernels with generic names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from tools.core.device import synchronize
from tools.core.errors import UserError

STEP_LABEL = "pai::inference_step"
CONV_OP = re.compile(r"conv", re.IGNORECASE)
CONV_KERNEL = re.compile(r"conv|implicit_gemm|winograd|fprop|dgrad|wgrad|fft2d|xmma_fprop", re.IGNORECASE)


@torch.inference_mode()
def record_inference_trace(model: nn.Module, images: torch.Tensor, path: str | Path, *, device: torch.device) -> Path:
    """Write the Chrome trace of one forward of `images` (after one untimed warm-up) to `path`."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    model = model.eval()
    images = images.to(device)
    model(images)
    synchronize(device)
    with profile(activities=activities) as prof:
        with record_function(STEP_LABEL):
            model(images)
            synchronize(device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # export_chrome_trace writes the file itself; a temp name + rename keeps the write atomic.
    tmp = path.with_name(f".{path.name}.tmp")
    prof.export_chrome_trace(str(tmp))
    tmp.replace(path)
    return path


def merged_duration_us(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals: overlapping time is counted once."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


def load_trace_events(trace: str | Path | dict) -> list[dict]:
    if isinstance(trace, dict):
        data = trace
    else:
        try:
            data = json.loads(Path(trace).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read the Chrome trace {trace} ({e}); record it again with --save-trace") from None
    events = data.get("traceEvents", data) if isinstance(data, dict) else data
    return [e for e in events if isinstance(e, dict) and e.get("ph") == "X" and "dur" in e and "ts" in e]


def _span(event: dict) -> tuple[float, float]:
    start = float(event["ts"])
    return start, start + float(event["dur"])


def _step_span(events: list[dict]) -> tuple[float, float]:
    steps = [e for e in events if e.get("name") == STEP_LABEL and e.get("cat") != "gpu_user_annotation"]
    if not steps:
        raise UserError(f"the trace has no {STEP_LABEL!r} span; it was not written by record_inference_trace")
    return _span(max(steps, key=lambda e: float(e["dur"])))


def _clip(spans: list[tuple[float, float]], window: tuple[float, float]) -> list[tuple[float, float]]:
    lo, hi = window
    return [(max(s, lo), min(e, hi)) for s, e in spans if min(e, hi) > max(s, lo)]


def _cpu_conv_ops(events: list[dict]) -> list[dict]:
    return [e for e in events if e.get("cat") == "cpu_op" and CONV_OP.search(str(e.get("name", "")))]


def _inside(ts: float, op_spans: dict, key) -> bool:
    return any(s <= ts <= e for s, e in op_spans.get(key, ()))


def _cuda_conv_kernels(events: list[dict]) -> list[dict]:
    """Kernels named like convolutions, or launched from inside a convolution cpu_op."""
    op_spans: dict = {}
    for op in _cpu_conv_ops(events):
        op_spans.setdefault((op.get("pid"), op.get("tid")), []).append(_span(op))
    conv_correlations = {
        e.get("args", {}).get("correlation")
        for e in events
        if e.get("cat") == "cuda_runtime" and _inside(float(e["ts"]), op_spans, (e.get("pid"), e.get("tid")))
    }
    conv_correlations.discard(None)
    return [
        e
        for e in events
        if e.get("cat") == "kernel"
        and (CONV_KERNEL.search(str(e.get("name", ""))) or e.get("args", {}).get("correlation") in conv_correlations)
    ]


def conv_time_from_trace(trace: str | Path | dict, *, device_type: str) -> dict:
    """{conv_time_ms, step_time_ms, conv_share_pct, conv_events} of the traced step."""
    events = load_trace_events(trace)
    step = _step_span(events)
    conv = _cuda_conv_kernels(events) if device_type == "cuda" else _cpu_conv_ops(events)
    conv_us = merged_duration_us(_clip([_span(e) for e in conv], step))
    step_us = step[1] - step[0]
    return {
        "conv_time_ms": conv_us / 1000.0,
        "step_time_ms": step_us / 1000.0,
        "conv_share_pct": 100.0 * conv_us / step_us if step_us > 0 else 0.0,
        "conv_events": len(conv),
        "device_type": device_type,
    }
