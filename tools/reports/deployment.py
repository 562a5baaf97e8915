"""The report's deployment rows by target: which pruned file to ship for which runtime, and how much
faster it runs than the dense model in FP32 and in INT8.

    uv run python -m scripts.report --runs results/pipeline/quickstart

    rows, profiles = collect_runs([Path("results/pipeline/quickstart")])   # tools.reports.report
    print(target_table(rows, [Path("results/pipeline/quickstart")], profiles))

One row per structured run that has a deployable file: the MACs-targeted row (its INT8 file from
scripts.quantize, timed by scripts.profile at the largest profiled batch against the dense
model's two files), the FP32 latency-targeted row (structured.latency.backend onnxruntime: its
interleaved timing against the dense model) and the INT8 latency-targeted row (onnxruntime-int8:
model.int8.onnx, timed interleaved against the dense FP32 and the dense INT8 file). An INT8 row
whose speed-up over dense INT8 is under NOISE_SPEEDUP, or within its timing spread, says so.
"""

from __future__ import annotations

from pathlib import Path

from tools.core.io import read_yaml_mapping
from tools.core.run_folder import INT8_MODEL, METRICS, PRUNED_MODEL_STATE, QUANTIZE_RECORD
from tools.reports.tables import values_table

# Below this a speed-up over dense INT8 is not called one: scripts.profile's medians (not
# interleaved) move by more than 5% between runs on a shared CPU.
NOISE_SPEEDUP = 1.05
ADVICE = (
    "Which target for which deployment: an FP32 model on ONNX Runtime -> a latency target on "
    "`onnxruntime` (the FP32 latency row); an INT8 model on ONNX Runtime -> a latency target on "
    "`onnxruntime-int8` (the INT8 latency row: ship its model.int8.onnx); the deployment not known "
    "yet -> the MACs target (it follows no one runtime's kernels)."
)
HEADER = [
    "row",
    "target",
    "deployed file",
    "ONNX Runtime top-1 %",
    "speed-up vs dense FP32",
    "speed-up vs dense INT8",
    "timed",
    "note",
]


def noise_note(speedup: float | None, spread: float | None = None) -> str:
    """What the table says about a speed-up over dense INT8: slower, within noise, or nothing."""
    if speedup is None:
        return ""
    if speedup < 1 and (spread is None or speedup + spread < 1):
        return "SLOWER than dense INT8"
    if speedup < NOISE_SPEEDUP or (spread is not None and speedup - spread <= 1):
        extra = f" +-{spread:.2f}x" if spread is not None else ""
        return f"within timing noise of dense INT8 ({speedup:.2f}x{extra}, < {NOISE_SPEEDUP}x or inside the spread)"
    return ""


def _onnx_ms(profiles: list[dict]) -> tuple[dict[Path, float], int | None]:
    """ONNX Runtime median ms of every profiled ONNX file at the largest batch profiled, and that batch."""
    timed = {
        Path(e["onnx"]).resolve(): e["latency"].get("onnxruntime", {})
        for p in profiles
        for e in p["models"]
        if "onnx" in e
    }
    batches = sorted({bs for by_batch in timed.values() for bs in by_batch})
    if not batches:
        return {}, None
    bs = batches[-1]
    return {path: by_batch[bs]["median_ms"] for path, by_batch in timed.items() if bs in by_batch}, bs


def _quantize_records(roots: list[Path]) -> list[tuple[Path, dict]]:
    found = [(p, read_yaml_mapping(p)) for root in roots for p in sorted(root.rglob(QUANTIZE_RECORD))]
    return [(p, q) for p, q in found if q and "fp32" in q and "int8" in q]


def off_multiple_note(source: Path, profiles: list[dict], multiple: int) -> str:
    """The layers of the quantized checkpoint `source` (as scripts.profile counted them) whose
    channels are off the INT8 fast multiple: MLAS pads them, so they cost time they do not save."""
    off = [
        layer
        for p in profiles
        for e in p["models"]
        if e.get("checkpoint") and Path(e["checkpoint"]).resolve() == source.resolve()
        for layer in e.get(f"channels_not_multiple_of_{multiple}", [])
    ]
    if not off:
        return ""
    return f"{len(off)} layer(s) off the INT8 fast multiple {multiple} ({', '.join(off[:3])}): set structured.round_to to it"


def int8_multiple(rows: list[dict]) -> int:
    """The INT8 fast multiple an INT8 latency row recorded, else this CPU's (tools.measure.latency)."""
    for r in rows:
        lat = (read_yaml_mapping(Path(r["run"]) / METRICS) or {}).get("latency") or {}
        if lat.get("backend") == "onnxruntime-int8" and lat.get("fast_multiple"):
            return int(lat["fast_multiple"])
    from tools.measure.latency import int8_fast_multiple

    return int8_fast_multiple()


def macs_rows(roots: list[Path], profiles: list[dict], multiple: int = 16) -> list[list]:
    """The pruned quantize.yaml files' INT8 files against the dense one (the record with the most
    MACs); `multiple`: the INT8 fast channel multiple the note checks the quantized model against."""
    records = _quantize_records(roots)
    ms, bs = _onnx_ms(profiles)
    if len(records) < 2 or bs is None:
        return []
    dense = max(records, key=lambda r: r[1].get("macs") or 0)[1]
    dense_ms = {k: ms.get(Path(dense[k]["path"]).resolve()) for k in ("fp32", "int8")}
    rows = []
    for path, q in records:
        mine = ms.get(Path(q["int8"]["path"]).resolve())
        if q is dense or mine is None:
            continue
        vs = {k: dense_ms[k] / mine if dense_ms[k] else None for k in dense_ms}
        checkpoint = Path(q["source"]) if q.get("source") else path
        source = checkpoint.parent  # the structured run it quantized
        macs = (read_yaml_mapping(source / METRICS) or {}).get("target_macs_reduction")
        notes = [noise_note(vs["int8"]), off_multiple_note(checkpoint, profiles, multiple)]
        rows.append(
            [
                source.name,
                f"MACs -{macs:g}" if macs else "",
                f"{path.parent.name}/{Path(q['int8']['path']).name} (INT8)",
                q["int8"]["top1"],
                vs["fp32"],
                vs["int8"],
                f"scripts.profile, batch {bs}, medians (not interleaved)",
                "; ".join(n for n in notes if n),
            ]
        )
    return rows


def latency_rows(rows: list[dict]) -> list[list]:
    """The latency-targeted structured runs: FP32 on onnxruntime, INT8 on onnxruntime-int8."""
    out = []
    for r in rows:
        metrics = (read_yaml_mapping(Path(r["run"]) / METRICS) or {}) if r["kind"] == "structured" else {}
        if not metrics.get("target_latency_reduction"):
            continue
        if "int8" in metrics:
            out.append(_int8_row(Path(r["run"]), metrics))
        elif (metrics.get("latency") or {}).get("backend") == "onnxruntime":
            out.append(_fp32_row(Path(r["run"]), metrics))
    return out


def _int8_row(run: Path, metrics: dict) -> list:
    int8, lat = metrics["int8"], metrics.get("latency") or {}
    speedup = int8["int8_speedup_vs_dense_int8"]
    return [
        run.name,
        f"INT8 latency -{metrics['target_latency_reduction']:g}{_measured(lat)}",
        f"{run.name}/{INT8_MODEL} (INT8, {int8.get('method', 'ptq')})",
        int8["int8_top1"],
        int8["int8_speedup_vs_dense_fp32"],
        speedup,
        f"{int8.get('timed_on', '')}, {int8.get('rounds', '?')} rounds",
        noise_note(speedup, int8.get("int8_speedup_vs_dense_int8_spread")),
    ]


def _measured(lat: dict) -> str:
    pct = lat.get("measured_reduction_pct")
    return "" if pct is None else f" (measured -{pct:.1f}%)"


def _fp32_row(run: Path, metrics: dict) -> list:
    lat = metrics["latency"]
    return [
        run.name,
        f"FP32 latency -{metrics['target_latency_reduction']:g}{_measured(lat)}",
        f"{run.name}/{PRUNED_MODEL_STATE}, exported to FP32 ONNX (scripts.export_onnx)",
        f"{metrics['pruned_top1']:.2f} (PyTorch)",
        lat["baseline_ms"] / lat["pruned_ms"] if lat.get("pruned_ms") and lat.get("baseline_ms") else None,
        None,
        f"{lat['backend']}, batch {lat.get('batch_size')}, interleaved, {lat.get('rounds', '?')} rounds",
        "",
    ]


def target_table(rows: list[dict], roots: list[Path], profiles: list[dict]) -> str | None:
    """The deployment rows by target (MACs, FP32 latency, INT8 latency) and the advice sentence."""
    found = macs_rows(roots, profiles, int8_multiple(rows)) + latency_rows(rows)
    if not found:
        return None
    return values_table(HEADER, found) + "\n\n" + ADVICE
