"""Inference latency: whole-model statistics and a per-layer breakdown.

    from tools.measure.latency import measure_latency, per_layer_latency
    stats = measure_latency(model, (3, 32, 32), batch_size=1, device="cpu", num_threads=1)
    print(f"{stats['median_ms']:.2f} ms, {stats['throughput_ips']:.0f} img/s")
    for row in per_layer_latency(model, (3, 32, 32), batch_size=1, device="cpu")[:10]:
        print(row["name"], row["type"], f"{row['time_ms']:.3f} ms", f"{row['share_pct']:.1f}%")

`input_shape` is one sample's shape (C, H, W); the batch dimension comes from
`batch_size`. Both functions time a deep copy of the model moved to `device` in eval mode
under torch.inference_mode, so the caller's model keeps its device, dtype, mode and hooks.

Timers: CUDA uses one pair of CUDA events per iteration (GPU time, not launch time); CPU
uses time.perf_counter; MPS synchronizes then uses perf_counter, as it has no usable
per-iteration events.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from tools.core.device import synchronize
from tools.core.errors import UserError


def _check_positive(label: str, value: int, minimum: int = 1) -> None:
    if not isinstance(value, int) or value < minimum:
        raise UserError(f"{label} must be an integer >= {minimum}, got {value!r}")


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """An eval-mode copy of `model` with every BatchNorm that follows a conv folded into it, as
    deployment runtimes (ONNX Runtime, TensorRT, oneDNN graphs) do, and the optimisations that
    ran. torch.fx's `fuse` does the folding; a model fx cannot trace is timed unfolded, and the
    returned list says so."""
    from torch.fx.experimental.optimization import fuse

    model = copy.deepcopy(model).eval()
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, ["eager (no BatchNorm to fold)"]
    try:
        return fuse(model), ["eager", "BatchNorm folded into convs (torch.fx)"]
    except Exception as e:  # fx tracing fails on data-dependent control flow: time it as it is
        return model, ["eager", f"BatchNorm not folded (torch.fx cannot trace the model: {type(e).__name__})"]


ORT_OPTIMISATIONS = [
    "ONNX Runtime CPU provider",
    "graph optimisation level ORT_ENABLE_ALL (constant folding, "
    "Conv+BatchNorm and Conv+activation fusion, NCHWc blocked layout)",
]


def _prepared(
    model: nn.Module, device: torch.device, dtype: torch.dtype, fold_bn: bool = True
) -> tuple[nn.Module, list[str]]:
    if fold_bn:
        model, optimisations = fold_batchnorm(model)
    else:
        model, optimisations = copy.deepcopy(model).eval(), ["eager"]
    return model.to(device=device, dtype=dtype).eval(), optimisations


def _example(input_shape: tuple, batch_size: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn((batch_size, *input_shape), device=device).to(dtype)


def _cuda_times_ms(run: Callable[[], object], repeats: int) -> list[float]:
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        start.record()
        run()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def _host_times_ms(run: Callable[[], object], repeats: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        times.append(1000.0 * (time.perf_counter() - start))
    return times


def _summary(times_ms: list[float], batch_size: int) -> dict:
    arr = np.asarray(times_ms, dtype=np.float64)
    median_ms = float(np.median(arr))
    return {
        "mean_ms": float(arr.mean()),
        "std_ms": statistics.stdev(times_ms) if len(times_ms) > 1 else 0.0,
        "median_ms": median_ms,
        "p90_ms": float(np.percentile(arr, 90)),
        "p99_ms": float(np.percentile(arr, 99)),
        "min_ms": float(arr.min()),
        "throughput_ips": batch_size * 1000.0 / median_ms if median_ms > 0 else float("inf"),
    }


class _threads:
    """Temporarily set torch's intra-op thread count (None: leave it alone)."""

    def __init__(self, num_threads: int | None) -> None:
        self.num_threads = num_threads

    def __enter__(self) -> int:
        self.saved = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        return torch.get_num_threads()

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self.saved)


def measure_latency(
    model: nn.Module,
    input_shape: tuple,
    *,
    batch_size: int,
    device: str | torch.device,
    warmup: int = 10,
    repeats: int = 50,
    dtype: torch.dtype = torch.float32,
    num_threads: int | None = None,
) -> dict:
    """Per-batch forward latency stats (ms) and throughput (images/s, from the median), of the
    model as deployed: BatchNorm folded into the convs (see fold_batchnorm)."""
    _check_positive("batch_size", batch_size)
    _check_positive("repeats", repeats)
    _check_positive("warmup", warmup, minimum=0)
    if num_threads is not None:
        _check_positive("num_threads", num_threads)
    device = torch.device(device)
    net, optimisations = _prepared(model, device, dtype)
    x = _example(input_shape, batch_size, device, dtype)
    with _threads(num_threads) as threads_used, torch.inference_mode():
        for _ in range(warmup):
            net(x)
        synchronize(device)
        if device.type == "cuda":
            times_ms = _cuda_times_ms(lambda: net(x), repeats)
        else:
            times_ms = _host_times_ms(lambda: net(x), repeats, device)
    stats = _summary(times_ms, batch_size)
    stats.update(
        device=str(device),
        batch_size=batch_size,
        dtype=str(dtype).removeprefix("torch."),
        num_threads=threads_used,
        warmup=warmup,
        repeats=repeats,
        optimisations=optimisations,
    )
    return stats


def measure_onnx_latency(
    onnx_path: str,
    input_shape: tuple,
    *,
    batch_size: int,
    warmup: int = 10,
    repeats: int = 50,
    num_threads: int | None = None,
) -> dict:
    """The same statistics for an ONNX file run by ONNX Runtime's CPU provider; `num_threads`
    sets intra-op threads (None: ONNX Runtime's default, one per physical core)."""
    import onnxruntime as ort

    _check_positive("batch_size", batch_size)
    _check_positive("repeats", repeats)
    _check_positive("warmup", warmup, minimum=0)
    options = ort.SessionOptions()
    if num_threads is not None:
        _check_positive("num_threads", num_threads)
        options.intra_op_num_threads = num_threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {
        session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(
            (batch_size, *input_shape), dtype=np.float32
        )
    }
    for _ in range(warmup):
        session.run(None, feed)
    times_ms = _host_times_ms(lambda: session.run(None, feed), repeats, torch.device("cpu"))
    stats = _summary(times_ms, batch_size)
    stats.update(
        device="cpu",
        backend="onnxruntime",
        batch_size=batch_size,
        dtype="float32",
        num_threads=session.get_session_options().intra_op_num_threads or None,
        warmup=warmup,
        repeats=repeats,
        optimisations=ORT_OPTIMISATIONS,
    )
    return stats


def _leaves(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if next(module.children(), None) is None:
            yield name, module


def _timing_hooks(model: nn.Module, device: torch.device, totals_ms: dict, calls: dict) -> list:
    """Pre/post forward hooks adding each leaf's wall time (synchronized) into totals_ms."""
    handles = []
    for name, module in _leaves(model):

        def pre(m, inputs, name=name):
            synchronize(device)
            calls[name] = time.perf_counter()

        def post(m, inputs, output, name=name):
            synchronize(device)
            totals_ms[name] += 1000.0 * (time.perf_counter() - calls[name])

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    return handles


def _layer_rows(model: nn.Module, totals_ms: dict, repeats: int) -> list[dict]:
    types = {name: type(module).__name__ for name, module in _leaves(model)}
    grand_ms = sum(totals_ms.values())
    rows = [
        {
            "name": name,
            "type": types[name],
            "time_ms": total / repeats,
            "share_pct": 100.0 * total / grand_ms if grand_ms > 0 else 0.0,
        }
        for name, total in totals_ms.items()
    ]
    return sorted(rows, key=lambda r: r["time_ms"], reverse=True)


def per_layer_latency(
    model: nn.Module,
    input_shape: tuple,
    *,
    batch_size: int,
    device: str | torch.device,
    repeats: int = 10,
) -> list[dict]:
    """Rows {name, type, time_ms, share_pct} per leaf module that ran, slowest first.

    time_ms is the mean per forward (a module called twice, like torchvision's shared
    ResNet ReLU, sums both calls); share_pct is of the leaves' total. Synchronizing around
    every layer removes GPU overlap, so the sum exceeds measure_latency's figure.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("repeats", repeats)
    device = torch.device(device)
    net, _ = _prepared(model, device, torch.float32, fold_bn=False)  # per layer: BN keeps its own row
    x = _example(input_shape, batch_size, device, torch.float32)
    totals_ms: dict[str, float] = defaultdict(float)
    with torch.inference_mode():
        net(x)  # warm-up outside the measurement: first calls allocate and pick kernels
        handles = _timing_hooks(net, device, totals_ms, {})
        try:
            for _ in range(repeats):
                net(x)
        finally:
            for handle in handles:
                handle.remove()
    return _layer_rows(net, totals_ms, repeats)


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (avx2, avx512_vnni, amx_int8, ...);
    empty elsewhere, where only torch's capability is known."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def int8_kernels() -> str:
    """The family of ONNX Runtime's (MLAS) x86 INT8 kernels this CPU runs: amx, avx512_vnni, avx512,
    avx_vnni, avx2 or sse. torch's capability (the AVX tier, which ATEN_CPU_CAPABILITY can lower) is
    the ceiling; the CPU flags name the dot-product extension within it."""
    capability, flags = torch.backends.cpu.get_cpu_capability(), cpu_flags()
    if "AVX512" in capability:
        return "amx" if "amx_int8" in flags else "avx512_vnni" if "avx512_vnni" in flags else "avx512"
    if "AVX2" in capability:
        return "avx_vnni" if "avx_vnni" in flags else "avx2"
    return "sse"


# Output channels per fast block of MLAS's INT8 convolution (see int8_fast_multiple).
INT8_MULTIPLES = {"amx": 16, "avx512_vnni": 16, "avx512": 16, "avx_vnni": 16, "avx2": 16, "sse": 4}


def int8_fast_multiple() -> int:
    """Channel multiple of ONNX Runtime's INT8 convolutions on this CPU (QDQ U8S8, symmetric int8
    weights). Why these numbers, from MLAS (onnxruntime/core/mlas/lib/convsym.cpp, platform.cpp):
    QLinearConv takes MLAS's symmetric-conv kernels (MlasConvSym) only when the output channels
    are a multiple of the dispatch's KernelOutputChannelAlignment and the input channels of 4
    (KernelInputChannelAlignment: 4 uint8 x int8 products per int32 lane, vpmaddubsw or VNNI's
    vpdpbusd); otherwise it falls back to im2col + QGEMM. The filters are packed in blocks of 16
    output channels (FilterOutputChannelPackCount), padded with zeros, and depthwise convs need
    the group count a multiple of 16. AVX-512 (Core and VNNI; AMX machines use the AVX-512 VNNI
    conv kernels, AMX tiles only in QGEMM, 16 int32 columns per tile) accumulate 16 int32 output
    channels per zmm register: 16. AVX2 and AVX-VNNI (alignment 8, 8 int32 per ymm register) keep
    the fast path at 8, but the 16-channel packing still computes the zero-padded half, so 8
    channels cost what 16 do: measured on an AMD EPYC (AVX2, ONNX Runtime 1.31, batch 64, one
    thread, ResNet-20), six 8->8-channel 32x32 QLinearConvs took 13.6 ms against 14.1 ms for the
    16->16 ones, 0.78x the speed of the same FP32 convs, while 16- to 64-channel layers ran
    1.5-2.1x faster in INT8 than in FP32. With 8-channel steps the latency search removed 73-79% of
    MACs for a 38-42% faster INT8 file; with 16, 47% for 36% (docs/benchmarks.md, int8_target). So
    16 there too. Without AVX2 (SSE4.1 QGEMM, 4 int32 per xmm register): 4, not measured."""
    return INT8_MULTIPLES[int8_kernels()]


def fast_multiple(backend: str) -> int:
    """Channel multiple the backend's convolution kernels compute in (see tools.pruning.latency_target's docstring)."""
    if backend == "cuda":
        return 8
    if backend == "onnxruntime-int8":
        return int8_fast_multiple()
    capability = torch.backends.cpu.get_cpu_capability()
    return 16 if "AVX512" in capability else 8 if "AVX2" in capability else 4
