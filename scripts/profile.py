"""Profile a baseline and pruned models: MACs/FLOPs/params/size, latency, and whether fewer FLOPs
really made the model faster.

    uv run python -m scripts.profile --baseline results/train/quickstart/best_model.pth \
        --pruned results/structured/l2_macs0.5/pruned_model.pth --measure-latency --batch-sizes 1,64 --backend both

Run it as a module (python -m scripts.profile): as a file it would shadow Python's own `profile`.
On a machine other jobs share, `--set profile.rounds=5` times the models in turns (interleaved).
Writes the results YAML (--save-results, default results/profile/<baseline run>/profile.yaml)
and latency_vs_macs.png beside it.
"""

from __future__ import annotations

from pathlib import Path

from tools.cli import base_parser, load_checkpoint_run, parse_batch_sizes
from tools.errors import run_cli
from tools.io import atomic_write_yaml
from tools.metrics import compare_metrics, format_comparison, format_count
from tools.profiling import (backend_list, flops_vs_latency, measure_models, plot_latency_vs_macs, profile_model,
                             slowest_layers)


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--baseline", required=True, help="checkpoint of the unpruned model")
    parser.add_argument("--pruned", nargs="+", action="extend", default=[], help="checkpoints of pruned models")
    parser.add_argument("--measure-latency", action="store_true", help="time inference (else cost figures only)")
    parser.add_argument("--batch-sizes", help="comma-separated, e.g. 1,32,256 (overrides profile.batch_sizes)")
    parser.add_argument("--backend", default="torch", help="torch | onnxruntime | both (default torch)")
    parser.add_argument("--save-results", help="YAML file for the results")
    parser.add_argument("--top-layers", type=int, default=8, help="slowest layers to list per model")
    return parser.parse_args(argv)


def label_for(path: str, taken: set[str]) -> str:
    p = Path(path)
    label = f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem
    while label in taken:
        label += "'"
    taken.add(label)
    return label


def main(argv=None):
    args = parse_args(argv)
    backends = backend_list(args.backend)
    flags = {"profile.batch_sizes": parse_batch_sizes(args.batch_sizes)}
    taken: set[str] = set()
    entries, models, layers = [], {}, {}
    for path in [args.baseline, *args.pruned]:
        cfg, _, data, model, device = load_checkpoint_run(args, flags=flags, checkpoint=path)
        label = label_for(path, taken)
        entries.append(profile_model(label, model, data.input_shape) | {"checkpoint": str(path)})
        models[label] = model
    prof = cfg.profile
    if args.measure_latency:
        latency = measure_models(models, data.input_shape, batch_sizes=prof.batch_sizes, backends=backends,
                                 device=device, warmup=prof.warmup, repeats=prof.repeats,
                                 num_threads=prof.num_threads or None, rounds=prof.rounds)
        for entry in entries:
            entry["latency"] = latency[entry["label"]]
            layers[entry["label"]] = slowest_layers(models[entry["label"]], data.input_shape,
                                                    batch_size=min(prof.batch_sizes), device=device,
                                                    repeats=max(3, prof.repeats // 5), top=args.top_layers)
    for entry in entries:
        print_entry(entry)

    baseline = entries[0]
    analysis = [row for entry in entries[1:] for row in flops_vs_latency(baseline, entry)]
    for entry in entries[1:]:
        print(f"\n{entry['label']} vs {baseline['label']}:")
        print(format_comparison(compare_metrics(headline(baseline), headline(entry))))
    print_analysis(analysis)
    for label, rows in layers.items():
        print_layers(label, rows)

    out = Path(args.save_results) if args.save_results else Path("results/profile") / Path(args.baseline).parent.name / "profile.yaml"
    results = {"models": entries, "flops_vs_latency": analysis, "slowest_layers": layers,
               "note": "MACs are multiply-accumulates per image; FLOPs = 2 x MACs; latency is per batch (ms)"}
    plot = plot_latency_vs_macs(entries, out.with_name("latency_vs_macs.png")) if args.measure_latency else None
    results["plot"] = str(plot) if plot else None
    atomic_write_yaml(out, results)
    print(f"\nwrote {out}" + (f" and {plot}" if plot else ""))


def headline(entry: dict) -> dict:
    """The figures compare_metrics knows, with the smallest batch's torch latency standing for latency."""
    figures = {k: entry[k] for k in ("macs", "params", "size_bytes")}
    torch_lat = entry["latency"].get("torch") or next(iter(entry["latency"].values()), {})
    if torch_lat:
        figures["latency_ms"] = torch_lat[min(torch_lat)]["median_ms"]
    return figures


def print_entry(entry: dict) -> None:
    print(f"\n== {entry['label']}: MACs {format_count(entry['macs'])}  FLOPs {format_count(entry['flops'])} "
          f"(FLOPs = 2 x MACs)  params {format_count(entry['params'])}  size {entry['size_bytes'] / 2**20:.2f} MiB")
    for backend, by_batch in entry["latency"].items():
        for bs, s in by_batch.items():
            print(f"   {backend:<11} batch {bs:>4}: median {s['median_ms']:8.3f} ms  p90 {s['p90_ms']:8.3f} ms  "
                  f"(noise p90/median {s['p90_ms'] / s['median_ms']:.2f})  {s['throughput_ips']:9.0f} img/s  "
                  f"threads {s['num_threads']}")
            if s.get("optimisations"):
                print(f"{'':<19} timed with: {'; '.join(s['optimisations'])}")


def print_analysis(rows: list[dict]) -> None:
    if not rows:
        return
    print("\nFLOPs vs latency (reductions in %, ratio = latency reduction / FLOPs reduction):")
    for r in rows:
        ratio = f"{r['latency_over_flops_reduction']:.2f}" if r["latency_over_flops_reduction"] is not None else "n/a"
        print(f"  {r['model']:<28} {r['backend']:<11} batch {r['batch_size']:>4}: FLOPs -{r['flops_reduction_pct']:5.1f}%  "
              f"latency -{r['latency_reduction_pct']:5.1f}%  speed-up {r['speedup']:.2f}x  ratio {ratio}")
        print(f"      {r['explanation']}")


def print_layers(label: str, rows: list[dict]) -> None:
    print(f"\nslowest layers of {label} (torch, smallest batch):")
    for r in rows:
        print(f"  {r['name']:<32} {r['type']:<14} {r['time_ms']:8.3f} ms  {r['share_pct']:5.1f}% of time  "
              f"{format_count(r['macs']):>8} MACs ({r['macs_share_pct']:4.1f}%)")


if __name__ == "__main__":
    run_cli(main)
