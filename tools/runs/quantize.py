"""The steps of scripts.quantize: FP32 ONNX file -> calibrated INT8 file, both evaluated on the
test split by ONNX Runtime, the verdict against quantize.max_drop, and QAT when PTQ misses it.

    job = QuantizeJob(fp32_path=Path("export/model.onnx"), out_dir=Path("export"), cfg=cfg,
                      calibration_loader=unaugmented.train, test_loader=data.test)
    report = run_quantize(job)      # also writes export/model.int8.onnx and export/quantize.yaml

    # scripts.prune_structured with structured.latency.backend=onnxruntime-int8 ends here:
    uv run python -m scripts.prune_structured --checkpoint results/train/quickstart/best_model.pth \
        --target-latency-reduction 0.6 --set structured.latency.backend=onnxruntime-int8 quantize.qat_epochs=1
    int8 = deploy_int8(pruned, dense, Int8Deployment(cfg, data, run_dir, backend))  # run_dir/model.int8.onnx
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime
import torch
from torch import nn

from tools.core.config import Config, config_to_dict, save_config
from tools.core.errors import UserError
from tools.core.io import atomic_write_yaml
from tools.core.run_folder import CONFIG, INT8_MODEL, QUANTIZE_RECORD
from tools.deploy.quantize import (
    LoaderCalibrationReader,
    check_input_shape,
    check_quantize_config,
    evaluate_onnx,
    file_entry,
    int8_path,
    load_onnx_run,
    prepare_fp32,
    quantize_int8,
    verdict,
)
from tools.modeling.checkpoint_run import load_checkpoint_run
from tools.modeling.export import export_onnx, load_onnx

if TYPE_CHECKING:  # imported where it is used: scripts.quantize alone does not need the pruning stack
    from tools.pruning import latency_target as lt


@dataclass
class QuantizeJob:
    fp32_path: Path  # the exported FP32 ONNX file
    out_dir: Path  # the INT8 file and quantize.yaml go here
    cfg: Config
    calibration_loader: object  # unaugmented training batches
    test_loader: object
    model: nn.Module | None = None  # the PyTorch model: needed for QAT, gives MACs/params
    train_data: object = None  # augmented DataBundle for QAT
    input_shape: tuple[int, int, int] = (3, 32, 32)
    source: str = ""  # what the FP32 file came from (checkpoint path or ONNX file)


def calibrate_and_quantize(job: QuantizeJob, fp32_path: Path, out_path: Path) -> dict:
    """BN folding (quant_pre_process), calibration and QDQ quantization of one FP32 file."""
    return quantize_file(fp32_path, out_path, job.calibration_loader, job.cfg.quantize)


def quantize_file(fp32_path: Path, out_path: Path, calibration_loader, q) -> dict:
    """quantize.* applied to one FP32 file: prepared (BN folded), calibrated on the first
    quantize.num_images of `calibration_loader` (unaugmented training batches), QDQ INT8."""
    input_name = load_onnx(fp32_path).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared, bn = prepare_fp32(fp32_path, Path(tmp) / "prepared.onnx")
        reader = LoaderCalibrationReader(calibration_loader, num_images=q.num_images, input_name=input_name)
        skipped = quantize_int8(prepared, out_path, reader, q)
    return {"bn_folding": bn, "calibration_images": reader.seen, "float_nodes": skipped}


def run_quantize(job: QuantizeJob) -> dict:
    q, threads = job.cfg.quantize, job.cfg.train.num_threads
    job.out_dir.mkdir(parents=True, exist_ok=True)
    out = int8_path(job.fp32_path, job.out_dir)
    fp32 = file_entry(job.fp32_path, evaluate_onnx(job.fp32_path, job.test_loader, num_threads=threads))
    print_file("FP32", fp32)
    info = calibrate_and_quantize(job, job.fp32_path, out)
    print_float_nodes(info["float_nodes"])
    ptq = file_entry(out, evaluate_onnx(out, job.test_loader, num_threads=threads)) | {"method": "ptq"}
    print_file("INT8", ptq, fp32)
    images = info.pop("calibration_images")
    report = {
        "source": job.source,
        "fp32": fp32,
        "ptq": ptq,
        "int8": ptq,
        **info,
        "calibration": {
            "method": q.calibration,
            "num_images": images,
            "percentile": q.percentile if q.calibration == "percentile" else None,
            "per_channel_weights": q.per_channel,
            "weights": "int8 symmetric",
            "activations": f"{q.activation_type} asymmetric",
            "format": "QDQ",
        },
    }
    drop, met = verdict(fp32["top1"], ptq["top1"], q.max_drop)
    if met != "MET" and q.qat_epochs and job.model is not None:
        print(
            f"PTQ drop {drop:.2f} pts > quantize.max_drop {q.max_drop:g}: quantization-aware fine-tuning, "
            f"{q.qat_epochs} epochs"
        )
        report["qat"] = run_qat(job)
        if report["qat"]["top1"] > ptq["top1"]:
            report["int8"] = report["qat"]
        drop, met = verdict(fp32["top1"], report["int8"]["top1"], q.max_drop)
    report |= summary(job, report, drop, met)
    atomic_write_yaml(job.out_dir / QUANTIZE_RECORD, report)
    print(
        f"deployed INT8 file: {report['int8']['path']} ({report['int8']['method']}); "
        f"top-1 drop {drop:.2f} pts vs FP32 ONNX (max {q.max_drop:g}): {met}"
    )
    print(f"wrote {job.out_dir / QUANTIZE_RECORD}")
    return report


def summary(job: QuantizeJob, report: dict, drop: float, met: str) -> dict:
    from tools.measure.metrics import count_macs_params, flops_from_macs

    cost = {}
    if job.model is not None:
        macs, params = count_macs_params(job.model, (1, *job.input_shape))
        cost = {"macs": macs, "flops": flops_from_macs(macs), "params": params}
    return cost | {
        "size_ratio": report["fp32"]["size_bytes"] / report["int8"]["size_bytes"],
        "drop": drop,
        "max_drop": job.cfg.quantize.max_drop,
        "verdict": met,
        "data": job.cfg.data.name,
        "backend": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)",
        "num_threads": job.cfg.train.num_threads or None,
        "note": "accuracies are test top-1/top-5 (%) of the ONNX files run by ONNX Runtime; drop = FP32 - INT8 "
        "top-1 (points); FLOPs = 2 x MACs",
    }


def qat_finetune(model: nn.Module, train_data, cfg: Config, run_dir: Path) -> nn.Module:
    """quantize.qat_epochs of fake-quantized fine-tuning (tools.deploy.qat: BN folded, quantize.qat_lr,
    finetune.* optimiser, on the CPU) of a copy of `model`; returns the plain folded model to export."""
    from tools.deploy.qat import prepare_qat, strip_qat
    from tools.training.fit import FitOptions, finetune_train_config, fit

    q = cfg.quantize
    qat = prepare_qat(model.cpu(), signed_activations=q.activation_type == "int8")
    train_cfg = replace(
        finetune_train_config(cfg.train, cfg.finetune), epochs=q.qat_epochs, lr=q.qat_lr, device="cpu", patience=0
    )
    fit(
        qat,
        train_data,
        train_cfg=train_cfg,
        run_dir=run_dir,
        config=config_to_dict(cfg),
        device=torch.device("cpu"),
        options=FitOptions(tag="qat"),
    )
    return strip_qat(qat)


def run_qat(job: QuantizeJob) -> dict:
    """Fake-quantized fine-tuning (tools.deploy.qat), then the plain model exported and quantized as PTQ was."""
    q, cfg = job.cfg.quantize, job.cfg
    plain = qat_finetune(job.model, job.train_data, cfg, job.out_dir / "qat")
    fp32_path = export_onnx(plain, job.input_shape, job.out_dir / "model.qat.onnx", opset=cfg.export.opset)
    out = int8_path(fp32_path, job.out_dir)
    info = calibrate_and_quantize(job, fp32_path, out)
    entry = file_entry(out, evaluate_onnx(out, job.test_loader, num_threads=cfg.train.num_threads))
    print_file("QAT INT8", entry)
    return entry | {
        "method": "qat",
        "epochs": q.qat_epochs,
        "lr": q.qat_lr,
        "fp32_path": str(fp32_path),
        "float_nodes": info["float_nodes"],
    }


# ----------------------------------------------------------------------------- prune to the INT8 deployment
@dataclass(frozen=True)
class Int8Deployment:
    """Where the pruned model's INT8 file goes and how it is checked (scripts.prune_structured with
    structured.latency.backend=onnxruntime-int8 or quantize.deploy)."""

    cfg: Config
    data: Any  # the run's DataBundle: augmented train (QAT), test (top-1)
    run_dir: Path  # receives INT8_MODEL (and qat/ when quantize.qat_epochs > 0)
    backend: lt.Backend  # the latency search's timing settings (batch, threads, rounds, repeats)


def deploy_int8(pruned: nn.Module, dense: nn.Module, dep: Int8Deployment) -> dict:
    """`pruned` (fine-tuned; QAT-fine-tuned first when quantize.qat_epochs > 0) exported, quantized as
    scripts.quantize does into run_dir/INT8_MODEL, its ONNX Runtime top-1 on the test split, and its
    speed-ups over the dense FP32 file and the dense model quantized the same way, timed interleaved."""
    from datasets import build_data
    from tools.pruning import latency_target as lt

    cfg, q, shape = dep.cfg, dep.cfg.quantize, tuple(dep.data.input_shape)
    if q.qat_epochs > 0:
        print(f"quantization-aware fine-tuning of the pruned model: {q.qat_epochs} epoch(s), lr {q.qat_lr:g}")
        pruned = qat_finetune(pruned, dep.data, cfg, dep.run_dir / "qat")
    # Calibration sees training images as the model will: not cropped or flipped (as scripts.quantize).
    calibration = build_data(replace(cfg.data, augment=False), seed=cfg.train.seed, device="cpu").train
    out = dep.run_dir / INT8_MODEL
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            name: export_onnx(copy_cpu(m), shape, Path(tmp) / f"{name}.onnx", opset=cfg.export.opset)
            for name, m in (("pruned", pruned), ("dense_fp32", dense))
        }
        info = quantize_file(files["pruned"], out, calibration, q)
        dense_int8 = Path(tmp) / "dense_int8.onnx"
        quantize_file(files["dense_fp32"], dense_int8, calibration, q)
        timing = lt.file_speedups(out, {"dense_fp32": files["dense_fp32"], "dense_int8": dense_int8}, dep.backend)
        profiles = op_profiles(
            {
                "pruned_int8": out,
                "pruned_fp32": files["pruned"],
                "dense_int8": dense_int8,
                "dense_fp32": files["dense_fp32"],
            },
            dep.backend,
        )
        sizes = {
            "dense_fp32_file_bytes": files["dense_fp32"].stat().st_size,
            "dense_int8_file_bytes": dense_int8.stat().st_size,
        }
    stats = evaluate_onnx(out, dep.data.test, num_threads=cfg.train.num_threads)
    return {
        "file": INT8_MODEL,
        "int8_top1": stats["top1"],
        "int8_top5": stats["top5"],
        "int8_file_bytes": out.stat().st_size,
        **sizes,
        "int8_size_ratio_vs_dense_fp32": sizes["dense_fp32_file_bytes"] / out.stat().st_size,
        "method": "qat" if q.qat_epochs > 0 else "ptq",
        "qat_epochs": q.qat_epochs,
        "calibration_images": info["calibration_images"],
        "float_nodes": info["float_nodes"],
        **timing,
        "timed_on": f"onnxruntime {onnxruntime.__version__} CPU, batch {dep.backend.batch_size}, "
        f"{dep.backend.threads} thread(s), interleaved",
        **profiles,
    }


def op_profiles(files: dict[str, Path], backend) -> dict[str, dict[str, list[dict]]]:
    """Where each file's time goes, per ONNX Runtime operator and per convolution shape
    (tools.measure.op_profile, one trace per file), printed side by side: the account of a speed-up
    that falls short of the MACs removed. {"op_profile": {file: rows}, "conv_profile": {file: rows}}"""
    from tools.measure.op_profile import format_op_table, profile_files

    views = profile_files(files, backend.input_shape, batch_size=backend.batch_size, num_threads=backend.threads)
    ops, shapes = views["operators"], views["conv_shapes"]
    print(f"where the time goes (ONNX Runtime profiler, batch {backend.batch_size}, kernel time per run):")
    print(format_op_table(ops))
    print(format_op_table(shapes, what="convolutions by shape"))
    return {"op_profile": ops, "conv_profile": shapes}


def copy_cpu(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cpu().eval()


def print_file(kind: str, entry: dict, fp32: dict | None = None) -> None:
    smaller = f"  ({fp32['size_bytes'] / entry['size_bytes']:.2f}x smaller)" if fp32 else ""
    print(
        f"{kind:<8} {entry['path']}  {entry['size_bytes'] / 2**20:.3f} MiB  top-1 {entry['top1']:.2f}%  "
        f"top-5 {entry['top5']:.2f}%  ({entry['num_samples']} test images, ONNX Runtime){smaller}"
    )


def print_float_nodes(nodes: list[dict]) -> None:
    if nodes:
        shown = ", ".join(f"{n['op_type']} {n['name']}" for n in nodes[:8])
        print(
            f"{len(nodes)} node(s) left in FP32 (quantize.keep_fp32, or no INT8 kernel in the quantizer): {shown}"
            + (" ..." if len(nodes) > 8 else "")
        )


def quantize(args) -> None:
    """scripts.quantize's whole command: `args` as its parse_args returns them."""
    flags = {
        "quantize.calibration": args.calibration,
        "quantize.num_images": args.num_images,
        "quantize.max_drop": args.max_drop,
        "train.device": "cpu",
    }
    job = checkpoint_job(args, flags) if args.checkpoint else onnx_job(args, flags)
    save_config(job.cfg, job.out_dir / CONFIG)
    run_quantize(job)


def checkpoint_job(args, flags: dict) -> QuantizeJob:
    from datasets import build_data
    from tools.modeling.export import export_onnx

    cfg, _, data, model, _ = load_checkpoint_run(args, flags=flags)
    check_quantize_config(cfg.quantize)
    out_dir = Path(args.save_dir) if args.save_dir else Path(args.checkpoint).parent / "export"
    fp32_path = export_onnx(model.cpu().eval(), data.input_shape, out_dir / "model.onnx", opset=cfg.export.opset)
    # Calibration sees training images as the model will: not cropped or flipped.
    calibration = build_data(replace(cfg.data, augment=False), seed=cfg.train.seed, device="cpu")
    check_input_shape(fp32_path, calibration.input_shape, "calibration")
    return QuantizeJob(
        fp32_path,
        out_dir,
        cfg,
        calibration.train,
        data.test,
        model=model,
        train_data=data,
        input_shape=data.input_shape,
        source=str(args.checkpoint),
    )


def onnx_job(args, flags: dict) -> QuantizeJob:
    fp32_path = Path(args.onnx)
    cfg, data = load_onnx_run(args, fp32_path, flags=flags, augment=False)
    check_quantize_config(cfg.quantize)
    if cfg.quantize.qat_epochs:
        raise UserError(
            "quantize.qat_epochs needs the PyTorch model; pass --checkpoint instead of --onnx "
            "(or set quantize.qat_epochs=0)"
        )
    out_dir = Path(args.save_dir) if args.save_dir else fp32_path.parent
    return QuantizeJob(
        fp32_path, out_dir, cfg, data.train, data.test, input_shape=data.input_shape, source=str(fp32_path)
    )
