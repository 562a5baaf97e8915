"""scripts.eval: a checkpoint's (or an ONNX file's) accuracy, cost figures and optional latency into
eval_metrics.yaml, compared with a baseline's metrics when one is given; or the MobileNetV2 lab's grade.

    uv run python -m scripts.eval --checkpoint results/train/quickstart/best_model.pth

It sits with the reports because the comparison with a baseline (drop, reductions, the goal
verdict, the comparison CSV row) is tools.reports.comparison.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from tools.core.cli import parse_batch_sizes, resolve_config
from tools.core.errors import UserError
from tools.core.io import atomic_write_yaml, read_yaml_mapping
from tools.core.run_folder import EVAL_METRICS, METRICS, RunLock
from tools.measure.describe import describe_model, latency_by_batch_size, test_set_record
from tools.measure.lab_grader import (
    LAB_INPUT_SHAPE,
    check_lab_may_unpickle,
    count_like_the_lab,
    format_grade,
    lab_score,
)
from tools.measure.metrics import format_count, normalize_metrics
from tools.modeling.checkpoint_run import load_checkpoint_run
from tools.reports.comparison import (
    append_csv_row,
    check_same_test_set,
    comparison_row,
    format_versus,
    model_figures,
    run_method,
    test_set_of,
    versus_baseline,
)
from tools.training.engine import evaluate


def read_baseline(path: str) -> tuple[dict, dict | None]:
    """(the baseline model's figures, the test set they were measured on, None when not recorded)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"baseline metrics {p} not found; pass the metrics.yaml of the baseline's train run or an eval_metrics.yaml"
        )
    data = read_yaml_mapping(p)
    if data is None:
        raise UserError(
            f"baseline metrics {p} is not a YAML mapping of metrics; pass a metrics.yaml or eval_metrics.yaml"
        )
    return model_figures(data, source=str(p)), test_set_of(data)


def run_metrics_of(ckpt, checkpoint: Path) -> dict | None:
    """The metrics the run that wrote `checkpoint` recorded: in the file, else beside it."""
    found = getattr(ckpt, "run_metrics", None) or (ckpt.get("metrics") if isinstance(ckpt, dict) else None)
    return found or read_yaml_mapping(checkpoint.parent / METRICS)


def grade_mobilenet_lab(args) -> None:
    """The lab's numbers: MACs ("MFLOPs") and params from its own snippet in a fresh process,
    accuracy of the same file on the test split at the grader's 224 px."""
    # The lab's snippet unpickles the file: only the user's flag or own config may allow that (never the file's).
    check_lab_may_unpickle(Path(args.checkpoint), trusted=resolve_config(args).model.trust_checkpoint)
    args.trust_checkpoint = True
    counted = count_like_the_lab(Path(args.checkpoint))
    _, _, data, _, device = load_checkpoint_run(args, flags={"data.image_size": LAB_INPUT_SHAPE[-1]})
    model = torch.load(args.checkpoint, map_location=device, weights_only=False)  # the graded object itself
    test = evaluate(model.eval(), data.test, device=device)
    mflops, accuracy = counted["macs"] / 1e6, test["top1"] / 100
    grade = {
        "checkpoint": str(args.checkpoint),
        "type": counted["type"],
        "mflops": mflops,
        "mflops_counts": "MACs",
        "params": counted["params"],
        "accuracy": accuracy,
        "num_samples": test["num_samples"],
        "score_pct": lab_score(mflops, accuracy),
    }
    out_dir = out_folder(args)
    atomic_write_yaml(out_dir / "lab_grade.yaml", grade)
    print(format_grade(grade))
    print(f"wrote {out_dir / 'lab_grade.yaml'}")


def out_folder(args) -> Path:
    return Path(args.save_dir) if args.save_dir else Path(args.checkpoint).parent


def eval_checkpoint(args) -> None:
    """scripts.eval's whole command: `args` as its parse_args returns them."""
    out_dir = out_folder(args)
    # Held while it runs, like every run folder: a running train's (or pipeline's) folder is refused
    # before any work. Without --save-dir and no such folder, the checkpoint's own error says why.
    with RunLock(out_dir) if args.save_dir or out_dir.is_dir() else contextlib.nullcontext():
        evaluate_into(args)


def evaluate_into(args) -> None:
    if args.grader:
        return grade_mobilenet_lab(args)
    baseline, baseline_test_set = read_baseline(args.baseline_metrics) if args.baseline_metrics else (None, None)
    if args.checkpoint.endswith(".onnx"):
        return eval_onnx(args, baseline, baseline_test_set)
    cfg, ckpt, data, model, device = load_checkpoint_run(
        args, flags={"profile.batch_sizes": parse_batch_sizes(args.batch_sizes)}
    )
    test_set = test_set_record(cfg.data, cfg.train.seed, data.test.num_samples)
    if baseline is not None:  # before the evaluation: nothing is written for a comparison that means nothing
        check_same_test_set(baseline_test_set, test_set, args.baseline_metrics)
    report = {"checkpoint": str(args.checkpoint), "model": cfg.model.name, "data": cfg.data.name, "test_set": test_set}
    report |= describe_model(model, data.input_shape, checkpoint_path=args.checkpoint)
    test = evaluate(model, data.test, device=device)
    report |= {
        "top1": test["top1"],
        "top5": test["top5"],
        "loss": test["loss"],
        "num_samples": test["num_samples"],
        "device": str(device),
    }
    if args.measure_latency:
        prof = cfg.profile
        report["latency"] = latency_by_batch_size(
            model,
            data.input_shape,
            batch_sizes=prof.batch_sizes,
            device=device,
            warmup=prof.warmup,
            repeats=prof.repeats,
            num_threads=prof.num_threads,
        )
        # The smallest batch stands for "the" latency in comparisons.
        report["latency_ms"] = report["latency"][min(prof.batch_sizes)]["median_ms"]
    if baseline is not None:
        goal = {
            "min_flops_reduction_pct": cfg.structured.goal.min_flops_reduction_pct,
            "max_accuracy_drop": cfg.structured.goal.max_accuracy_drop,
        }
        report["vs_baseline"] = versus_baseline(baseline, report, goal) | {
            "baseline_metrics": str(args.baseline_metrics)
        }

    out_dir = out_folder(args)
    atomic_write_yaml(out_dir / EVAL_METRICS, report)
    print_report(report)
    if baseline is not None:
        print(format_versus(report["vs_baseline"], args.baseline_metrics, baseline.get("top1")))
    print(f"wrote {out_dir / EVAL_METRICS}")
    if args.append_csv:
        method, sparsity = run_method(
            run_metrics_of(ckpt, Path(args.checkpoint)), Path(args.checkpoint).parent.name, report["weight_sparsity"]
        )
        append_csv_row(Path(args.append_csv), comparison_row(method, sparsity, report["vs_baseline"]))
        print(f"appended {method} to {args.append_csv}")


def eval_onnx(args, baseline: dict | None, baseline_test_set: dict | None = None) -> None:
    from tools.deploy.quantize import evaluate_onnx, load_onnx_run
    from tools.measure.latency import measure_onnx_latency
    from tools.modeling.export import is_int8

    path = Path(args.checkpoint)
    cfg, data = load_onnx_run(args, path, flags={"profile.batch_sizes": parse_batch_sizes(args.batch_sizes)})
    threads = cfg.train.num_threads
    test_set = test_set_record(cfg.data, cfg.train.seed, data.test.num_samples)
    if baseline is not None:
        check_same_test_set(baseline_test_set, test_set, args.baseline_metrics)
    test = evaluate_onnx(path, data.test, num_threads=threads)
    report = {
        "onnx": str(path),
        "precision": "int8" if is_int8(path) else "fp32",
        "data": cfg.data.name,
        "top1": test["top1"],
        "top5": test["top5"],
        "loss": test["loss"],
        "num_samples": test["num_samples"],
        "size_bytes": path.stat().st_size,
        "device": "cpu",
        "backend": "onnxruntime",
        "num_threads": threads or None,
        "test_set": test_set,
    }
    if args.measure_latency:
        prof = cfg.profile
        report["latency"] = {
            bs: measure_onnx_latency(
                str(path),
                data.input_shape,
                batch_size=bs,
                warmup=prof.warmup,
                repeats=prof.repeats,
                num_threads=prof.num_threads or None,
            )
            for bs in prof.batch_sizes
        }
        report["latency_ms"] = report["latency"][min(prof.batch_sizes)]["median_ms"]
    if baseline is not None:
        report["vs_baseline"] = normalize_metrics(baseline, report)
    out_dir = out_folder(args)
    out = out_dir / f"eval_metrics.{path.name.removesuffix('.onnx')}.yaml"
    atomic_write_yaml(out, report)
    print(
        f"top1 {report['top1']:.2f}%  top5 {report['top5']:.2f}%  loss {report['loss']:.4f}  "
        f"({report['num_samples']} test images, ONNX Runtime, {report['precision'].upper()}, "
        f"{threads or 'default'} threads)"
    )
    print(f"file size {report['size_bytes'] / 2**20:.3f} MiB")
    for bs, stats in report.get("latency", {}).items():
        print(
            f"latency batch {bs}: median {stats['median_ms']:.3f} ms  p90 {stats['p90_ms']:.3f} ms  "
            f"throughput {stats['throughput_ips']:.0f} img/s  ({stats['num_threads']} threads)"
        )
    print(f"wrote {out}")


def print_report(report: dict) -> None:
    print(
        f"top1 {report['top1']:.2f}%  top5 {report['top5']:.2f}%  loss {report['loss']:.4f}  "
        f"({report['num_samples']} test images, {report['device']})"
    )
    print(
        f"MACs {format_count(report['macs'])}  FLOPs {format_count(report['flops'])} (FLOPs = 2 x MACs)  "
        f"params {format_count(report['params'])}"
    )
    print(
        f"non-zero MACs {format_count(report['nonzero_macs'])}  non-zero params {format_count(report['nonzero_params'])}  "
        f"weight sparsity {100 * report['weight_sparsity']:.2f}%"
    )
    print(
        f"model size {report['size_bytes'] / 2**20:.2f} MiB (state dict), "
        f"checkpoint file {report['checkpoint_size_bytes'] / 2**20:.2f} MiB"
    )
    for bs, stats in report.get("latency", {}).items():
        print(
            f"latency batch {bs}: median {stats['median_ms']:.3f} ms  p90 {stats['p90_ms']:.3f} ms  "
            f"throughput {stats['throughput_ips']:.0f} img/s  ({stats['num_threads']} threads)"
        )
