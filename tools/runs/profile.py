"""scripts.profile: cost figures and latency of a baseline and pruned models (checkpoints or ONNX
files), whether fewer FLOPs made them faster, the slowest layers, and profile.yaml with its plot.

    uv run python -m scripts.profile --baseline results/train/quickstart/best_model.pth \\
        --pruned results/structured/l2_macs0.5/pruned_model.pth --measure-latency --batch-sizes 1,64
"""

from __future__ import annotations

from pathlib import Path

import torch

from tools.core.cli import parse_batch_sizes
from tools.core.errors import UserError
from tools.core.io import atomic_write_yaml
from tools.core.run_folder import PROFILE, RunFolder, RunLock
from tools.measure.metrics import compare_metrics, format_comparison, format_count
from tools.measure.op_profile import format_op_table, profile_files
from tools.measure.profiling import (
    LatencyPlan,
    backend_list,
    flops_vs_latency,
    measure_models,
    plot_latency_vs_macs,
    profile_model,
    profile_onnx,
    slowest_layers,
)
from tools.modeling.checkpoint_run import load_checkpoint_run


def check_free(args) -> None:
    """Refuse, before any work, to overwrite an earlier profile."""
    path = Path(args.save_results) if args.save_results else Path(args.save_dir) / PROFILE if args.save_dir else None
    if path is not None and path.exists():
        raise UserError(f"{path} already holds a profile; pass another --save-dir / --save-results, or delete it")


def label_for(path: str, taken: set[str]) -> str:
    p = Path(path)
    label = f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem
    while label in taken:
        label += "'"
    taken.add(label)
    return label


def profile(args) -> None:
    """scripts.profile's whole command: `args` as its parse_args returns them."""
    check_free(args)
    backends = backend_list(args.backend)
    flags = {"profile.batch_sizes": parse_batch_sizes(args.batch_sizes)}
    taken: set[str] = set()
    entries, models, onnx_files, layers = [], {}, {}, {}
    device = torch.device("cpu")  # ONNX files run on ONNX Runtime's CPU provider
    for path in [args.baseline, *args.pruned]:
        label = label_for(path, taken)
        if path.endswith(".onnx"):
            from tools.deploy.quantize import resolve_onnx_config
            from tools.modeling.export import onnx_input_shape

            cfg = resolve_onnx_config(args, Path(path), flags)
            input_shape = onnx_input_shape(Path(path))
            entries.append(profile_onnx(label, Path(path)))
            onnx_files[label] = Path(path)
            continue
        cfg, _, data, model, device = load_checkpoint_run(args, flags=flags, checkpoint=path)
        input_shape = data.input_shape
        entries.append(profile_model(label, model, input_shape) | {"checkpoint": str(path)})
        models[label] = model
    prof = cfg.profile
    if args.measure_latency:
        plan = LatencyPlan(
            batch_sizes=prof.batch_sizes,
            backends=backends,
            device=device,
            warmup=prof.warmup,
            repeats=prof.repeats,
            num_threads=prof.num_threads or None,
            rounds=prof.rounds,
        )
        latency = measure_models(models, input_shape, plan, onnx_files=onnx_files)
        for entry in entries:
            entry["latency"] = latency[entry["label"]]
        for label, model in models.items():
            layers[label] = slowest_layers(
                model,
                input_shape,
                batch_size=min(prof.batch_sizes),
                device=device,
                repeats=max(3, prof.repeats // 5),
                top=args.top_layers,
            )
    ops = (
        onnx_op_profiles(onnx_files, input_shape, max(prof.batch_sizes), prof.num_threads or 1)
        if args.measure_latency
        else {}
    )
    for entry in entries:
        print_entry(entry)

    baseline = entries[0]
    analysis = [row for entry in entries[1:] for row in flops_vs_latency(baseline, entry)]
    for entry in entries[1:]:
        if entry["macs"] is None or baseline["macs"] is None:
            continue
        print(f"\n{entry['label']} vs {baseline['label']}:")
        print(format_comparison(compare_metrics(headline(baseline), headline(entry))))
    print_analysis(analysis)
    print_onnx_speedups(baseline, [e for e in entries[1:] if "onnx" in e])
    for label, rows in layers.items():
        print_layers(label, rows)
    if ops:
        print(
            f"\nwhere the ONNX files' time goes (ONNX Runtime profiler, batch {ops['batch_size']}, kernel ms per run):"
        )
        print(format_op_table(ops["operators"]))
        print("\n" + format_op_table(ops["conv_shapes"], what="convolutions by shape"))

    results = {
        "models": entries,
        "flops_vs_latency": analysis,
        "slowest_layers": layers,
        "onnx_op_profile": ops or None,
        "note": "MACs are multiply-accumulates per image; FLOPs = 2 x MACs; latency is per batch (ms)",
    }
    write_results(args, cfg.output.root, results, plot=args.measure_latency)


def onnx_op_profiles(files: dict[str, Path], input_shape: tuple, batch_size: int, threads: int) -> dict:
    """Per ONNX file, its kernel time per ONNX Runtime operator and per convolution shape (the files'
    counterpart of the torch models' slowest layers); {} without ONNX files."""
    if not files:
        return {}
    return {"batch_size": batch_size} | profile_files(files, input_shape, batch_size=batch_size, num_threads=threads)


def write_results(args, root: str, results: dict, *, plot: bool) -> None:
    """profile.yaml (and the plot) into a folder this process holds, never over an earlier profile."""
    if args.save_results:
        out = Path(args.save_results)
        owner = RunLock(out.parent)
    else:
        owner = RunFolder.new(root, "profile", Path(args.baseline).parent.name, args.save_dir)
        out = owner / PROFILE
    with owner:
        check_free(args)  # again: another run may have written it while this one measured
        plot_path = plot_latency_vs_macs(results["models"], out.with_name("latency_vs_macs.png")) if plot else None
        results["plot"] = str(plot_path) if plot_path else None
        atomic_write_yaml(out, results)
    print(f"\nwrote {out}" + (f" and {plot_path}" if plot_path else ""))


def headline(entry: dict) -> dict:
    """The figures compare_metrics knows, with the smallest batch's torch latency standing for latency."""
    figures = {k: entry[k] for k in ("macs", "params", "size_bytes")}
    torch_lat = entry["latency"].get("torch") or next(iter(entry["latency"].values()), {})
    if torch_lat:
        figures["latency_ms"] = torch_lat[min(torch_lat)]["median_ms"]
    return figures


def print_entry(entry: dict) -> None:
    cost = (
        f"MACs {format_count(entry['macs'])}  FLOPs {format_count(entry['flops'])} (FLOPs = 2 x MACs)  "
        f"params {format_count(entry['params'])}  "
        if entry["macs"]
        else ""
    )
    kind = f"  ({entry['precision'].upper()} ONNX file)" if "onnx" in entry else ""
    print(f"\n== {entry['label']}: {cost}size {entry['size_bytes'] / 2**20:.2f} MiB{kind}")
    for backend, by_batch in entry["latency"].items():
        for bs, s in by_batch.items():
            print(
                f"   {backend:<11} batch {bs:>4}: median {s['median_ms']:8.3f} ms  p90 {s['p90_ms']:8.3f} ms  "
                f"(noise p90/median {s['p90_ms'] / s['median_ms']:.2f})  {s['throughput_ips']:9.0f} img/s  "
                f"threads {s['num_threads']}"
            )
            if s.get("optimisations"):
                print(f"{'':<19} timed with: {'; '.join(s['optimisations'])}")


def print_analysis(rows: list[dict]) -> None:
    if not rows:
        return
    print("\nFLOPs vs latency (reductions in %, ratio = latency reduction / FLOPs reduction):")
    for r in rows:
        ratio = f"{r['latency_over_flops_reduction']:.2f}" if r["latency_over_flops_reduction"] is not None else "n/a"
        print(
            f"  {r['model']:<28} {r['backend']:<11} batch {r['batch_size']:>4}: FLOPs -{r['flops_reduction_pct']:5.1f}%  "
            f"latency -{r['latency_reduction_pct']:5.1f}%  speed-up {r['speedup']:.2f}x  ratio {ratio}"
        )
        print(f"      {r['explanation']}")


def print_onnx_speedups(baseline: dict, entries: list[dict]) -> None:
    """ONNX files (FP32 or INT8) against the baseline on ONNX Runtime, batch by batch."""
    base = baseline["latency"].get("onnxruntime", {})
    if entries and base:
        print("\nONNX files vs the baseline on ONNX Runtime:")
    for entry in entries:
        for bs, stats in entry["latency"].get("onnxruntime", {}).items():
            if bs in base:
                print(
                    f"  {entry['label']:<28} onnxruntime batch {bs:>4}: {base[bs]['median_ms']:.2f} -> "
                    f"{stats['median_ms']:.2f} ms, speed-up {base[bs]['median_ms'] / stats['median_ms']:.2f}x "
                    f"vs {baseline['label']}, size {baseline['size_bytes'] / entry['size_bytes']:.2f}x smaller"
                )


def print_layers(label: str, rows: list[dict]) -> None:
    print(f"\nslowest layers of {label} (torch, smallest batch):")
    for r in rows:
        print(
            f"  {r['name']:<32} {r['type']:<14} {r['time_ms']:8.3f} ms  {r['share_pct']:5.1f}% of time  "
            f"{format_count(r['macs']):>8} MACs ({r['macs_share_pct']:4.1f}%)"
        )
