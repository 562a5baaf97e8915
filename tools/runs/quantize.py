"""The steps of scripts.quantize: FP32 ONNX file -> calibrated INT8 file, both evaluated on the
test split by ONNX Runtime, the verdict against quantize.max_drop, and QAT when PTQ misses it.

    job = QuantizeJob(fp32_path=Path("export/model.onnx"), out_dir=Path("export"), cfg=cfg,
                      calibration_loader=unaugmented.train, test_loader=data.test)
    report = run_quantize(job)      # also writes export/model.int8.onnx and export/quantize.yaml
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import onnxruntime
import torch
from torch import nn

from tools.core.config import Config, config_to_dict, save_config
from tools.core.errors import UserError
from tools.core.io import atomic_write_yaml
from tools.core.run_folder import CONFIG, QUANTIZE_RECORD
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
from tools.modeling.export import load_onnx


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
    q = job.cfg.quantize
    input_name = load_onnx(fp32_path).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared, bn = prepare_fp32(fp32_path, Path(tmp) / "prepared.onnx")
        reader = LoaderCalibrationReader(job.calibration_loader, num_images=q.num_images, input_name=input_name)
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


def run_qat(job: QuantizeJob) -> dict:
    """Fake-quantized fine-tuning (tools.deploy.qat), then the plain model exported and quantized as PTQ was."""
    from tools.deploy.qat import prepare_qat, strip_qat
    from tools.modeling.export import export_onnx
    from tools.training.fit import FitOptions, finetune_train_config, fit

    q, cfg = job.cfg.quantize, job.cfg
    model = prepare_qat(job.model.cpu(), signed_activations=q.activation_type == "int8")
    train_cfg = replace(
        finetune_train_config(cfg.train, cfg.finetune), epochs=q.qat_epochs, lr=q.qat_lr, device="cpu", patience=0
    )
    fit(
        model,
        job.train_data,
        train_cfg=train_cfg,
        run_dir=job.out_dir / "qat",
        config=config_to_dict(cfg),
        device=torch.device("cpu"),
        options=FitOptions(tag="qat"),
    )
    fp32_path = export_onnx(strip_qat(model), job.input_shape, job.out_dir / "model.qat.onnx", opset=cfg.export.opset)
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
            f"{len(nodes)} node(s) left in FP32 (no INT8 kernel in the quantizer): {shown}"
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
