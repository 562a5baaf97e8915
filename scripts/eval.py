"""Evaluate a checkpoint: accuracy, MACs/FLOPs, params, sparsity, size, and optionally latency.

    uv run python -m scripts.eval --checkpoint results/train/quickstart/best_model.pth
    uv run python -m scripts.eval --checkpoint pruned_model.pth --measure-latency \
        --baseline-metrics results/train/quickstart/eval_metrics.yaml

The data set and model come from the config stored in the checkpoint; --config / --set override
it. Writes eval_metrics.yaml next to the checkpoint (or into --save-dir).

An .onnx file (FP32 or INT8, e.g. from scripts.export_onnx or scripts.quantize) is evaluated by
ONNX Runtime on the test split (train.num_threads intra-op threads; --measure-latency times it
with profile.*). Its config comes from --config, else from beside the file: config.yaml in its
folder (scripts.quantize writes one), the checkpoint named in export.yaml there, or the
config.yaml of the run folder holding its export/ folder.

    uv run python -m scripts.eval --checkpoint results/train/quickstart/export/model.int8.onnx
"""

from __future__ import annotations

from pathlib import Path

from tools.cli import base_parser, load_checkpoint_run, parse_batch_sizes
from tools.engine import evaluate
from tools.errors import UserError, run_cli
from tools.evaluation import describe_model, latency_table
from tools.io import atomic_write_yaml, read_yaml_mapping
from tools.metrics import format_count, normalize_metrics


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", required=True,
                        help="a .pth written by train or a pruning script, or an .onnx file (evaluated by ONNX Runtime)")
    parser.add_argument("--measure-latency", action="store_true", help="time inference at profile.batch_sizes")
    parser.add_argument("--batch-sizes", help="comma-separated batch sizes for latency, e.g. 1,64 (overrides profile.batch_sizes)")
    parser.add_argument("--baseline-metrics", help="eval_metrics.yaml of the baseline: adds drop / reduction / speed-up")
    return parser.parse_args(argv)


def read_baseline(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"baseline metrics {p} not found; pass the eval_metrics.yaml written by eval for the baseline")
    data = read_yaml_mapping(p)
    if data is None:
        raise UserError(f"baseline metrics {p} is not a YAML mapping of metrics; pass an eval_metrics.yaml")
    return data


def main(argv=None):
    args = parse_args(argv)
    baseline = read_baseline(args.baseline_metrics) if args.baseline_metrics else None
    if args.checkpoint.endswith(".onnx"):
        return eval_onnx(args, baseline)
    cfg, _, data, model, device = load_checkpoint_run(
        args, flags={"profile.batch_sizes": parse_batch_sizes(args.batch_sizes)})
    report = {"checkpoint": str(args.checkpoint), "model": cfg.model.name, "data": cfg.data.name}
    report |= describe_model(model, data.input_shape, checkpoint_path=args.checkpoint)
    test = evaluate(model, data.test, device=device)
    report |= {"top1": test["top1"], "top5": test["top5"], "loss": test["loss"], "num_samples": test["num_samples"],
               "device": str(device)}
    if args.measure_latency:
        prof = cfg.profile
        report["latency"] = latency_table(model, data.input_shape, batch_sizes=prof.batch_sizes, device=device,
                                          warmup=prof.warmup, repeats=prof.repeats, num_threads=prof.num_threads)
        # The smallest batch stands for "the" latency in comparisons.
        report["latency_ms"] = report["latency"][min(prof.batch_sizes)]["median_ms"]
    if baseline is not None:
        report["vs_baseline"] = normalize_metrics(baseline, report)

    out_dir = Path(args.save_dir) if args.save_dir else Path(args.checkpoint).parent
    atomic_write_yaml(out_dir / "eval_metrics.yaml", report)
    print_report(report)
    print(f"wrote {out_dir / 'eval_metrics.yaml'}")


def eval_onnx(args, baseline: dict | None) -> None:
    from tools.latency import measure_onnx_latency
    from tools.quantize import evaluate_onnx, is_int8, load_onnx_run

    path = Path(args.checkpoint)
    cfg, data = load_onnx_run(args, path, flags={"profile.batch_sizes": parse_batch_sizes(args.batch_sizes)})
    threads = cfg.train.num_threads
    test = evaluate_onnx(path, data.test, num_threads=threads)
    report = {"onnx": str(path), "precision": "int8" if is_int8(path) else "fp32", "data": cfg.data.name,
              "top1": test["top1"], "top5": test["top5"], "loss": test["loss"], "num_samples": test["num_samples"],
              "size_bytes": path.stat().st_size, "device": "cpu", "backend": "onnxruntime",
              "num_threads": threads or None}
    if args.measure_latency:
        prof = cfg.profile
        report["latency"] = {bs: measure_onnx_latency(str(path), data.input_shape, batch_size=bs, warmup=prof.warmup,
                                                      repeats=prof.repeats, num_threads=prof.num_threads or None)
                             for bs in prof.batch_sizes}
        report["latency_ms"] = report["latency"][min(prof.batch_sizes)]["median_ms"]
    if baseline is not None:
        report["vs_baseline"] = normalize_metrics(baseline, report)
    out_dir = Path(args.save_dir) if args.save_dir else path.parent
    out = out_dir / f"eval_metrics.{path.name.removesuffix('.onnx')}.yaml"
    atomic_write_yaml(out, report)
    print(f"top1 {report['top1']:.2f}%  top5 {report['top5']:.2f}%  loss {report['loss']:.4f}  "
          f"({report['num_samples']} test images, ONNX Runtime, {report['precision'].upper()}, "
          f"{threads or 'default'} threads)")
    print(f"file size {report['size_bytes'] / 2**20:.3f} MiB")
    for bs, stats in report.get("latency", {}).items():
        print(f"latency batch {bs}: median {stats['median_ms']:.3f} ms  p90 {stats['p90_ms']:.3f} ms  "
              f"throughput {stats['throughput_ips']:.0f} img/s  ({stats['num_threads']} threads)")
    print(f"wrote {out}")


def print_report(report: dict) -> None:
    print(f"top1 {report['top1']:.2f}%  top5 {report['top5']:.2f}%  loss {report['loss']:.4f}  "
          f"({report['num_samples']} test images, {report['device']})")
    print(f"MACs {format_count(report['macs'])}  FLOPs {format_count(report['flops'])} (FLOPs = 2 x MACs)  "
          f"params {format_count(report['params'])}")
    print(f"non-zero MACs {format_count(report['nonzero_macs'])}  non-zero params {format_count(report['nonzero_params'])}  "
          f"weight sparsity {100 * report['weight_sparsity']:.2f}%")
    print(f"model size {report['size_bytes'] / 2**20:.2f} MiB (state dict), "
          f"checkpoint file {report['checkpoint_size_bytes'] / 2**20:.2f} MiB")
    for bs, stats in report.get("latency", {}).items():
        print(f"latency batch {bs}: median {stats['median_ms']:.3f} ms  p90 {stats['p90_ms']:.3f} ms  "
              f"throughput {stats['throughput_ips']:.0f} img/s  ({stats['num_threads']} threads)")
    for key, value in report.get("vs_baseline", {}).items():
        print(f"vs baseline: {key} {value:.2f}" if isinstance(value, float) else f"vs baseline: {key} {value}")


if __name__ == "__main__":
    run_cli(main)
