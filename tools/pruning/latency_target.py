"""Latency targets for structured pruning: a measured latency model of the deployment backend,
an allocation over the importance ranking (or per millisecond), and the measured whole-model check
that judges it.

    uv run python -m scripts.prune_structured --checkpoint results/train/quickstart/best_model.pth \
        --target-latency-reduction 0.5 --set structured.latency.backend=onnxruntime structured.latency.batch_size=64
    uv run python -m scripts.prune_structured --checkpoint results/train/quickstart/best_model.pth \
        --target-latency-reduction 0.6 --set structured.latency.backend=onnxruntime-int8 quantize.qat_epochs=1

    backend = Backend("onnxruntime", input_shape=(3, 32, 32), batch_size=64, threads=1, rounds=7, repeats=3)
    plan = st.ChannelPlan(model, example, table=scores, limits=st.ChannelLimits(round_to=backend.fast_multiple),
                          ignored_layers=ignored)
    table = channel_latency_table(model, example, plan, backend, levels=6, cache_dir=Path("results/latency_cache"))
    alloc = allocate(plan, table, goal=0.5)      # alloc.counts: channels removed per group; alloc.predicted
    st.apply_plan(pruned := copy.deepcopy(model), example, plan, alloc.counts)
    timing = compare(model, pruned, backend)     # timing.reduction, timing.spread: measured, interleaved

The latency model (`channel_latency_table`) is measured, not assumed: for every prunable dependency group
the whole model is timed with only that group shrunk to a few channel counts (multiples of the
backend's fast multiple), each time right after the unpruned model, and the group's saving is the
baseline time x (1 - the median over rounds of the variant/baseline ratio of the two minima). Timing the whole model, not the layer alone, charges each group with what
it really moves on that backend: its convs, the BN/ReLU/add that follow them, ONNX Runtime's
layout reorders. The model is additive over groups (a conv between two pruned groups shrinks by
both, so the prediction is a first-order one); the measured check is what decides.

Allocation (`structured.latency.allocation`) is a greedy walk over fast-multiple blocks until the
predicted reduction reaches the goal. `importance` (the default) takes the blocks in the plan's own
order, the one a MACs target prunes by (global L2 ranking by default), and uses the table only to
know where to stop; `per_ms` is NetAdapt-style (Yang et al. 2018): each step removes the block
that costs the least importance per millisecond it saves, and never a block whose measured saving
is not positive. Greedy rather than a HALP knapsack (Shen et al. 2022) because the table is
additive and per-group, so a knapsack would be exact only for a model that is not (the
interactions between neighbouring groups are first-order at best) and costs a solver; greedy
order also gives a monotone path along which the measured calibration below can move the goal
a little and land on the same blocks. `importance` is the default because it was measured better
on both models tried here (docs/benchmarks.md, ONNX Runtime, one thread): at the same measured
latency it keeps more MACs and more accuracy. ResNet-20, batch 64, -45.5% measured: 55.3% fewer
MACs and +3.02 points after 3 fine-tuning epochs, against 57.2% and +4.26 for `per_ms` at -46.2%
(seed 0 each); MobileNetV2, batch 1, -26.8%: 26.4% fewer MACs, against 35.1% for `per_ms` at
-26.1%; the quickstart pipeline's 40%-target row: 44.3% fewer FLOPs and a 0.80-point drop at
-35.6% (idle machine) to -39.2% (busy) measured, against 52.2% and 3.40 at -40.0% for `per_ms`.
The per-group table misjudges where the time is (it predicted -64% for -27% on MobileNetV2), so
`per_ms` spends accuracy on channels whose saving was overestimated, while the importance order
spends none that a MACs target would not.

The judge is the measured whole model: after allocating, the pruned model and the baseline take
turns for `rounds` rounds of `repeats` forwards; the reduction is the median of the per-round
reductions and its spread the half-width of the box-plot notch around it, 1.58 x IQR / sqrt(rounds)
(McGill et al. 1978: a ~95% interval of a median), so more rounds narrow it on a busy machine. When that
misses the target the goal moves by the miss and the allocation reruns (`max_attempts`). A
spread larger than the tolerance refuses to call anything met (UserError), as does a target the
model cannot reach within max_pruning_ratio (the best measured reduction and the bound that held
it are named).

Fast multiples (`fast_multiple`) are detected for the machine: ONNX Runtime's MLAS and oneDNN
(PyTorch eager) compute CPU convolutions in blocks of 16 channels with AVX-512 and 8 with AVX2
(torch.backends.cpu.get_cpu_capability() reads the same CPUID flags they dispatch on); CUDA
tensor cores want multiples of 8.

`onnxruntime-int8` times what an INT8 deployment runs: every timed model (each table variant, each
attempt, and the dense baseline the reduction is measured against) is exported, BN-folded and
statically quantized to QDQ INT8 by tools.deploy.quantize, as scripts.quantize does, calibrated on
the same few training batches (`Backend.calibration`, the first INT8_CALIBRATION_BATCHES;
see `quantized_copy` for why a few suffice), then run by ONNX Runtime, which fuses the QDQ pairs
into QLinearConv/QLinearAdd/QGemm. Its fast multiple is MLAS's INT8 one
(tools.measure.latency.int8_fast_multiple: 16 with AVX2 or AVX-512, measured; 4 without AVX2),
recorded with the kernel family in the table's key and in metrics.yaml. The run then writes the
deployable model.int8.onnx (tools.runs.quantize.deploy_int8).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from tools.core.device import cpu_name, synchronize
from tools.core.errors import UserError
from tools.core.io import atomic_write_yaml
from tools.deploy.config import QuantizeConfig
from tools.measure.latency import ORT_OPTIMISATIONS, fast_multiple, int8_kernels
from tools.pruning import structured as st

INT8 = "onnxruntime-int8"  # ONNX Runtime CPU, every timed model quantized to INT8 (QDQ) first
BACKENDS = ("torch", "onnxruntime", INT8, "cuda")
ONNX_BACKENDS = ("onnxruntime", INT8)
# Training batches every INT8-timed model is calibrated on (see quantized_copy: the timing does not
# depend on the scales, so a few suffice). A constant, not a config key: a new key would change every
# resolved config, and so every benchmark row's fingerprint.
INT8_CALIBRATION_BATCHES = 2
TABLE_FILE = "latency_table.yaml"


# ----------------------------------------------------------------------------- backends
def check_backend(name: str) -> None:
    """One line of UserError unless `name` can be timed on this machine (before any pruning)."""
    if name not in BACKENDS:
        raise UserError(f"unknown structured.latency.backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "structured.latency.backend cuda needs a CUDA GPU and none is visible; "
            "use torch or onnxruntime, or run on a machine with a GPU"
        )
    if name in ONNX_BACKENDS:
        try:
            import onnxruntime  # noqa: F401
            import onnxruntime.quantization  # noqa: F401
        except ImportError:
            raise UserError(
                f"structured.latency.backend {name} needs the onnxruntime package; "
                "`uv sync` installs it, or choose backend torch"
            ) from None


def host_id() -> dict:
    """What a latency table is only valid on."""
    return {
        "node": platform.node(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": str(torch.__version__),
    }


@dataclass
class Backend:
    """Where and how models are timed; `rounds` x `repeats` forwards per model per comparison."""

    name: str
    input_shape: tuple[int, ...]
    batch_size: int
    threads: int = 1
    rounds: int = 7
    repeats: int = 3
    optimisations: list[str] = field(default_factory=list)
    # onnxruntime-int8 only: (images, labels) training batches every timed model is calibrated on,
    # and the quantize: settings that choose its kernels (activation type, per-channel weights)
    calibration: list = field(default_factory=list, repr=False)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)

    @property
    def fast_multiple(self) -> int:
        return fast_multiple(self.name)

    def key(self) -> dict:
        key = {
            "backend": self.name,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "input_shape": list(self.input_shape),
        }
        if self.name == INT8:  # what picks the INT8 kernels, so a table timed with others is not reused
            key |= {
                "fast_multiple": self.fast_multiple,
                "int8_kernels": int8_kernels(),
                "activation_type": self.quantize.activation_type,
                "per_channel": self.quantize.per_channel,
            }
        return key


def _runner(model: nn.Module, backend: Backend, workdir: Path, index: int) -> tuple[Callable[[], object], list[str]]:
    """A no-argument call running one forward of `model` on `backend`, and its optimisations."""
    from tools.measure.latency import fold_batchnorm

    shape = (backend.batch_size, *backend.input_shape)
    if backend.name in ONNX_BACKENDS:
        return _onnx_runner(_onnx_file(model, backend, workdir, index), backend), _ort_optimisations(backend)
    net, optimisations = fold_batchnorm(model)
    device = torch.device("cuda" if backend.name == "cuda" else "cpu")
    net = net.to(device)
    x = torch.randn(shape, device=device)

    def run():
        with torch.inference_mode():
            net(x)
        synchronize(device)

    return run, optimisations


def _onnx_file(model: nn.Module, backend: Backend, workdir: Path, index: int) -> Path:
    """The file ONNX Runtime times for `model`: the FP32 export, or (onnxruntime-int8) that export
    quantized as scripts.quantize would deploy it."""
    from tools.modeling.export import export_onnx

    path = export_onnx(copy.deepcopy(model).cpu(), tuple(backend.input_shape), workdir / f"{index}.onnx", opset=17)
    if backend.name != INT8:
        return path
    return quantized_copy(path, workdir / f"{index}.int8.onnx", backend.calibration, backend.quantize)


def quantized_copy(fp32_path: Path, out_path: Path, batches: list, q: QuantizeConfig) -> Path:
    """`fp32_path` BN-folded (prepare_fp32) and statically quantized to QDQ INT8 (quantize_int8),
    the path of scripts.quantize, calibrated on `batches` ((images, labels) training batches).

    Why a few training batches and MinMax, whatever quantize.calibration says: the INT8 graph, its
    kernels and their cost are fixed by the shapes, the activation type and per-channel weights;
    the scale and zero-point values only change what the integers mean, not how long they take.
    So every variant of the table is calibrated on the same few batches with the cheapest
    calibrator (random inputs would time the same; real batches cost no more and give the timed
    file real ranges). The deployed file (tools.runs.quantize.deploy_int8) is calibrated in full."""
    from tools.deploy.quantize import LoaderCalibrationReader, prepare_fp32, quantize_int8
    from tools.modeling.export import load_onnx

    input_name = load_onnx(fp32_path).graph.input[0].name
    prepared, _ = prepare_fp32(fp32_path, out_path.with_name(out_path.name + ".prep.onnx"))
    images = sum(len(images) for images, _ in batches)
    reader = LoaderCalibrationReader(batches, num_images=images, input_name=input_name)
    quantize_int8(prepared, out_path, reader, replace(q, calibration="minmax"))
    return out_path


def _ort_optimisations(backend: Backend) -> list[str]:
    if backend.name != INT8:
        return ORT_OPTIMISATIONS
    q = backend.quantize
    images = sum(len(images) for images, _ in backend.calibration)
    return ORT_OPTIMISATIONS + [
        f"INT8 QDQ static quantization as scripts.quantize (BatchNorm folded by quant_pre_process, "
        f"{'U8S8' if q.activation_type == 'uint8' else 'S8S8'}, "
        f"{'per-channel' if q.per_channel else 'per-tensor'} weights, MinMax on {images} training images), "
        f"run as QLinearConv / QLinearAdd / QGemm by ONNX Runtime's {int8_kernels()} kernels"
    ]


def _onnx_runner(path: Path, backend: Backend) -> Callable[[], object]:
    """A no-argument call running one forward of the ONNX file at `path` on ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = backend.threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    shape = (backend.batch_size, *backend.input_shape)
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    return lambda: session.run(None, feed)


def _timed_ms(run: Callable[[], object], repeats: int, best: bool) -> float:
    """Median (or, `best`, minimum) of `repeats` timed calls; load from other processes only ever
    adds time, so the minimum is the steadier estimate of a small difference."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(1000.0 * (time.perf_counter() - start))
    return min(times) if best else statistics.median(times)


def time_interleaved(
    models: list[nn.Module], backend: Backend, rounds: int | None = None, paired: bool = False
) -> list[list[float]]:
    """Per model, one time (ms) per round: the median of `repeats` forwards. The models take
    turns every round, so a burst of load from another process hits them alike. `paired`: the
    first model is a reference timed again right before each of the others, and each round
    gives the others' time over that reference's (the minimum of the repeats of each), so slow
    drifts in load cancel in every pair."""
    with tempfile.TemporaryDirectory() as tmp:

        def build(index: int, model: nn.Module) -> Callable[[], object]:
            run, backend.optimisations = _runner(model, backend, Path(tmp), index)
            return run

        return _interleave([functools.partial(build, i, m) for i, m in enumerate(models)], backend, rounds, paired)


def time_onnx_files(paths: list[Path], backend: Backend, rounds: int | None = None) -> list[list[float]]:
    """time_interleaved for ONNX files as they are (no export, no quantization), on ONNX Runtime's
    CPU provider with `backend`'s batch, threads, rounds and repeats (and its estimator: the
    fastest repeat of each round on onnxruntime-int8, see _interleave)."""
    return _interleave([functools.partial(_onnx_runner, p, backend) for p in paths], backend, rounds, paired=False)


def _interleave(builders: list[Callable], backend: Backend, rounds: int | None, paired: bool) -> list[list[float]]:
    rounds = rounds or backend.rounds
    # INT8 rounds keep the fastest of their repeats, as paired rounds do: on a shared x86 host (a
    # 2-vCPU EPYC VM here) one ONNX Runtime INT8 session ran a fixed input in 2.5 or 6.5 ms, at
    # random, while the FP32 file held 8.0 ms; the slow forwards are contention, not the file, and
    # the median of 3 repeats flips between the modes. Other backends keep their median.
    best = backend.name == INT8
    before = torch.get_num_threads()
    torch.set_num_threads(backend.threads)
    try:
        runners = []
        for build in builders:
            run = build()
            run()  # warm-up: first calls allocate and pick kernels
            runners.append(run)
        out: list[list[float]] = [[] for _ in runners]
        for _ in range(rounds):
            for i, run in enumerate(runners):
                if paired and i > 0:
                    reference = _timed_ms(runners[0], backend.repeats, best=True)
                    out[0].append(reference)
                    out[i].append(_timed_ms(run, backend.repeats, best=True) / reference)
                elif not paired:
                    out[i].append(_timed_ms(run, backend.repeats, best=best))
    finally:
        torch.set_num_threads(before)
    return out


def file_speedups(deployed: Path, references: dict[str, Path], backend: Backend) -> dict:
    """The `deployed` ONNX file against each reference file, timed interleaved: its median time,
    each reference's, `int8_speedup_vs_<name>`, the median over rounds of reference / deployed, and
    `int8_speedup_vs_<name>_spread`, its notch (so a report can tell a speed-up from timing noise)."""
    times = time_onnx_files([deployed, *references.values()], backend)
    out = {"int8_latency_ms": statistics.median(times[0])}
    for name, reference in zip(references, times[1:]):
        ratios = [r / d for r, d in zip(reference, times[0])]
        out[f"{name}_latency_ms"] = statistics.median(reference)
        out[f"int8_speedup_vs_{name}"] = statistics.median(ratios)
        out[f"int8_speedup_vs_{name}_spread"] = notch(ratios)
    return out | {"rounds": len(times[0])}


def notch(values: list[float]) -> float:
    """Half-width of the box-plot notch, 1.58 x IQR / sqrt(n): a ~95% interval of the median."""
    q1, q3 = np.percentile(values, [25, 75])
    return 1.58 * float(q3 - q1) / len(values) ** 0.5


@dataclass
class Timing:
    """A pruned model against the baseline, measured interleaved."""

    baseline_ms: float  # median of the round medians
    pruned_ms: float
    reduction: float  # median of the per-round reductions (fraction)
    spread: float  # half-width of the median's ~95% interval, 1.58 x IQR / sqrt(rounds) (fraction)
    rounds: int

    def as_dict(self) -> dict:
        return {
            "baseline_ms": self.baseline_ms,
            "pruned_ms": self.pruned_ms,
            "measured_reduction_pct": 100 * self.reduction,
            "spread_pts": 100 * self.spread,
            "rounds": self.rounds,
        }


def compare(baseline: nn.Module, pruned: nn.Module, backend: Backend, rounds: int | None = None) -> Timing:
    base, mine = time_interleaved([baseline, pruned], backend, rounds)
    per_round = [1 - p / b for b, p in zip(base, mine)]
    spread = notch(per_round)  # ~95% interval of the median
    return Timing(
        statistics.median(base), statistics.median(mine), statistics.median(per_round), spread, len(per_round)
    )


# ----------------------------------------------------------------------------- the latency table
@dataclass
class LatencyTable:
    """Measured cost of each group's channel counts: saved_ms[group][kept] is how much faster the
    whole model runs with only that group cut to `kept` channels (per channel group)."""

    baseline_ms: float
    saved_ms: dict[str, dict[int, float]]  # monotone: fewer channels never cost more time
    raw_saved_ms: dict[str, dict[int, float]]  # as measured
    key: dict

    def saved(self, name: str, kept: int) -> float:
        """Interpolated linearly between the measured counts."""
        points = self.saved_ms[name]
        counts = sorted(points)
        return float(np.interp(kept, counts, [points[c] for c in counts]))

    def as_dict(self) -> dict:
        return {
            "baseline_ms": self.baseline_ms,
            "saved_ms": self.saved_ms,
            "raw_saved_ms": self.raw_saved_ms,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyTable":
        def ints(table):
            return {g: {int(c): float(v) for c, v in row.items()} for g, row in table.items()}

        return cls(float(d["baseline_ms"]), ints(d["saved_ms"]), ints(d["raw_saved_ms"]), d["key"])


def table_counts(size: int, floor: int, multiple: int, levels: int) -> list[int]:
    """Kept-channel counts to measure for a group of `size`: multiples of `multiple` from `floor`
    up, at most `levels` of them (evenly spread), always with both ends."""
    candidates = sorted({c for c in range(multiple, size, multiple) if c >= floor} | {size})
    if len(candidates) <= levels:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, levels).round().astype(int)
    return sorted({candidates[i] for i in picks})


def channel_latency_table(
    model: nn.Module,
    example: torch.Tensor,
    plan: st.ChannelPlan,
    backend: Backend,
    *,
    levels: int,
    cache_dir: Path | None = None,
    run_file: Path | None = None,
) -> LatencyTable:
    """The measured table for `plan`'s groups (see LatencyTable), from `run_file` or the cache
    when one with the same key (model, channel counts, backend, batch, threads, host) exists."""
    grid = {name: table_counts(len(g.scores), g.keep, backend.fast_multiple, levels) for name, g in plan.groups.items()}
    key = {
        "model": st._model_name(model),
        "channels": st.channel_counts(model),
        "grid": grid,
        **backend.key(),
        "host": host_id(),
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cached = cache_dir / f"{digest}.yaml" if cache_dir else None
    for path in (run_file, cached):
        table = _load_table(path, key)
        if table is not None:
            print(f"latency table: reused {path}")
            _save_tables(table, run_file, cached)
            return table
    table = _measure_table(model, example, plan, backend, grid, key)
    _save_tables(table, run_file, cached)
    return table


def _load_table(path: Path | None, key: dict) -> LatencyTable | None:
    import yaml

    if path is None or not path.is_file():
        return None
    d = yaml.safe_load(path.read_text())
    return LatencyTable.from_dict(d) if d and d.get("key") == json.loads(json.dumps(key)) else None


def _save_tables(table: LatencyTable, *paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            atomic_write_yaml(path, table.as_dict())


def _measure_table(model, example, plan, backend, grid, key) -> LatencyTable:
    variants, where = [model], []
    for name, counts in grid.items():
        size = len(plan.groups[name].scores)
        for kept in counts:
            if kept < size:
                pruned = copy.deepcopy(model)
                st.apply_plan(pruned, example, plan, {name: size - kept})
                variants.append(pruned)
                where.append((name, kept))
    quantized = " (each quantized to INT8 first)" if backend.name == INT8 else ""
    print(
        f"latency table: timing {len(variants)} variants of the model ({len(grid)} groups) on {backend.name}"
        f"{quantized}, batch {backend.batch_size}, {backend.threads} thread(s), {backend.rounds} interleaved rounds"
    )
    ratios = time_interleaved(variants, backend, max(3, backend.rounds // 2), paired=True)
    base_ms = statistics.median(ratios[0])
    raw = {name: {len(plan.groups[name].scores): 0.0} for name in grid}
    for (name, kept), per_round in zip(where, ratios[1:]):
        raw[name][kept] = base_ms * (1 - statistics.median(per_round))
    return LatencyTable(base_ms, {n: _monotone(row) for n, row in raw.items()}, raw, key)


def _monotone(row: dict[int, float]) -> dict[int, float]:
    """Saved time can only grow as channels go: each count takes at least the saving of any
    larger count (noise otherwise makes the greedy chase phantom savings)."""
    out, best = {}, 0.0
    for kept in sorted(row, reverse=True):
        best = max(best, row[kept])
        out[kept] = best
    return out


# ----------------------------------------------------------------------------- allocation
@dataclass
class Allocation:
    counts: dict[str, int]  # channels removed per group (per channel group)
    predicted: float  # predicted latency reduction (fraction)
    exhausted: bool  # no block left that saves time within max_pruning_ratio
    at_floor: int  # groups cut to their max_pruning_ratio floor
    no_gain: int  # groups whose next block saves no measured time


ALLOCATIONS = ("importance", "per_ms")


def allocate(plan: st.ChannelPlan, table: LatencyTable, goal: float, by: str = "importance") -> Allocation:
    """Greedy: remove the block with the least importance (`by="importance"`: the plan's own
    ranking, global or per layer, as a MACs target would prune) or the least importance per
    millisecond saved (`"per_ms"`) until the predicted reduction reaches `goal` (see the module docstring)."""
    counts = {name: 0 for name in plan.groups}
    saved = {name: 0.0 for name in plan.groups}
    goal_ms = goal * table.baseline_ms
    while sum(saved.values()) < goal_ms:
        best = None
        for name, group in plan.groups.items():
            n_next = plan.next_count(name, counts[name])
            if n_next is None:
                continue
            gain = table.saved(name, len(group.scores) - n_next) - saved[name]
            if by == "importance":
                cost = plan.block_score(name, counts[name], n_next)
            elif gain > 1e-9:
                cost = plan.block_score(name, counts[name], n_next) * (n_next - counts[name]) / gain
            else:
                continue
            if best is None or cost < best[0]:
                best = (cost, name, n_next, gain)
        if best is None:
            return _exhausted(plan, table, counts, saved)
        _, name, n_next, gain = best
        counts[name], saved[name] = n_next, saved[name] + gain
    return Allocation(counts, sum(saved.values()) / table.baseline_ms, False, 0, 0)


def _exhausted(plan, table, counts, saved) -> Allocation:
    at_floor = sum(plan.next_count(name, n) is None for name, n in counts.items())
    return Allocation(counts, sum(saved.values()) / table.baseline_ms, True, at_floor, len(counts) - at_floor)


# ----------------------------------------------------------------------------- the search
@dataclass
class LatencySearch:
    model: nn.Module
    counts: dict[str, int]
    predicted: float
    timing: Timing
    attempts: list[dict]


@dataclass
class SearchRules:
    tolerance: float  # the measured reduction must land within this of the target (fraction)
    max_attempts: int  # measured allocations before giving up
    allocation: str = "importance"  # see allocate()


def search_latency(
    model: nn.Module,
    example: torch.Tensor,
    plan: st.ChannelPlan,
    table: LatencyTable,
    backend: Backend,
    *,
    target: float,
    rules: SearchRules,
) -> LatencySearch:
    """Allocate for `target`, measure, move the goal by the miss, repeat; see the module docstring."""
    tolerance, max_attempts, allocation = rules.tolerance, rules.max_attempts, rules.allocation
    goal, attempts, best = target, [], None
    most = allocate(plan, table, float("inf"), allocation)  # every block it may take: the table's ceiling
    for attempt in range(1, max_attempts + 1):
        alloc = most if goal >= most.predicted else allocate(plan, table, goal, allocation)
        pruned = copy.deepcopy(model)
        st.apply_plan(pruned, example, plan, alloc.counts)
        timing = compare(model, pruned, backend)
        attempts.append({"goal_pct": 100 * goal, "predicted_reduction_pct": 100 * alloc.predicted, **timing.as_dict()})
        print(
            f"latency attempt {attempt}: predicted -{100 * alloc.predicted:.1f}%, measured -{100 * timing.reduction:.1f}% "
            f"(+-{100 * timing.spread:.1f} pts over {timing.rounds} rounds; {timing.baseline_ms:.2f} -> "
            f"{timing.pruned_ms:.2f} ms)"
        )
        found = LatencySearch(pruned, alloc.counts, alloc.predicted, timing, attempts)
        if best is None or abs(timing.reduction - target) < abs(best.timing.reduction - target):
            best = found
        if abs(timing.reduction - target) <= tolerance:
            return _confirmed(found, model, backend, tolerance)
        if alloc.exhausted and timing.reduction < target:
            raise UserError(_unreachable(target, best, alloc, plan.limits.max_pruning_ratio))
        goal = min(most.predicted, max(0.0, goal + target - timing.reduction))
    raise UserError(
        f"the measured latency reduction did not land within {100 * tolerance:.0f} pts of "
        f"{100 * target:.0f}% in {max_attempts} attempts (best {100 * best.timing.reduction:.1f}% "
        f"+-{100 * best.timing.spread:.1f}); raise structured.latency.tolerance or max_attempts"
    )


def _confirmed(found: LatencySearch, model, backend: Backend, tolerance: float) -> LatencySearch:
    """A spread wider than the tolerance gets one re-measurement with twice the rounds, then refuses."""
    if found.timing.spread > tolerance:
        found.timing = compare(model, found.model, backend, rounds=2 * backend.rounds)
        found.attempts.append({"remeasured": True, **found.timing.as_dict()})
    if found.timing.spread > tolerance:
        raise UserError(
            f"timing spread +-{100 * found.timing.spread:.1f} pts is larger than the tolerance "
            f"+-{100 * tolerance:.1f} pts (measured -{100 * found.timing.reduction:.1f}%), so the latency "
            "target cannot be called met; re-run on a quieter machine or raise structured.latency.rounds"
        )
    return found


def _unreachable(target: float, best: LatencySearch, alloc: Allocation, max_pruning_ratio: float) -> str:
    if alloc.at_floor:
        bound = (
            f"structured.max_pruning_ratio {max_pruning_ratio:g} ({alloc.at_floor} of "
            f"{alloc.at_floor + alloc.no_gain} groups at their floor"
        )
        bound += f", the other {alloc.no_gain} save no measured time)" if alloc.no_gain else ")"
        fix = "raise structured.max_pruning_ratio or lower the target"
    else:
        bound = "the backend: removing more channels from any group saves no measured time"
        fix = "lower the target (the rest of the time is in layers channels do not shrink)"
    return (
        f"target latency reduction {100 * target:.0f}% is unreachable: the best measured is "
        f"{100 * best.timing.reduction:.1f}% (+-{100 * best.timing.spread:.1f} pts), held by {bound}; {fix}"
    )
