"""scripts.export_onnx: a checkpoint to ONNX and/or TorchScript in <run folder>/export/, optionally
verified against PyTorch's outputs (exit 1 when a format is off by more than the tolerance), with
export.yaml and a copy of the ONNX file beside the checkpoint.

    uv run python -m scripts.export_onnx --checkpoint results/train/quickstart/best_model.pth --verify
"""

from __future__ import annotations

from pathlib import Path

from tools.core.errors import UserError
from tools.core.io import atomic_write_bytes, atomic_write_yaml
from tools.core.run_folder import EXPORT_RECORD, RunFolder
from tools.measure.metrics import file_size_bytes
from tools.modeling.checkpoint_run import load_checkpoint_run
from tools.modeling.export import (
    FORMATS,
    check_opset,
    export_onnx,
    export_torchscript,
    make_onnx_runner,
    make_torchscript_runner,
    output_diffs,
    relative_diff,
    verification_inputs,
    within_tolerance,
)


def copy_beside(onnx_path: Path, checkpoint: Path) -> Path | None:
    """<checkpoint folder>/<checkpoint stem>.onnx, a copy of the export (written atomically);
    None, with a note, when that folder cannot be written (a read-only results tree)."""
    target = checkpoint.with_suffix(".onnx")
    if target.resolve() == onnx_path.resolve():
        return target
    try:
        atomic_write_bytes(target, onnx_path.read_bytes())
    except OSError as e:
        print(f"note: could not write {target} ({e.strerror}); the export is at {onnx_path}")
        return None
    return target


def export_checkpoint(args) -> None:
    """scripts.export_onnx's whole command: `args` as its parse_args returns them."""
    cfg, _, data, model, _ = load_checkpoint_run(
        args,
        flags={
            "export.format": args.format,
            "export.opset": args.opset,
            "export.tolerance": args.tolerance,
            "export.rtol": args.rtol,
            "train.device": "cpu",
        },
    )
    if cfg.export.format not in FORMATS:
        raise UserError(f"unknown export.format {cfg.export.format!r}; choose one of: {', '.join(FORMATS)}")
    if cfg.export.format in ("onnx", "both"):
        check_opset(cfg.export.opset)
    model = model.cpu().eval()
    with RunFolder(args.save_dir or Path(args.checkpoint).parent / "export") as run:
        export_in(run.path, args, cfg, data, model)


def export_in(out_dir: Path, args, cfg, data, model) -> None:
    shape = data.input_shape
    report: dict = {"checkpoint": str(args.checkpoint), "model": cfg.model.name, "input_shape": list(shape)}
    runners = {}
    if cfg.export.format in ("onnx", "both"):
        path = export_onnx(model, shape, out_dir / "model.onnx", opset=cfg.export.opset)
        report["onnx"] = {"path": str(path), "opset": cfg.export.opset, "size_bytes": file_size_bytes(path)}
        runners["onnx"] = lambda path=path: make_onnx_runner(path)
        print(f"ONNX (opset {cfg.export.opset}, dynamic batch): {path}  {file_size_bytes(path) / 2**20:.2f} MiB")
    if cfg.export.format in ("torchscript", "both"):
        path, scripted = export_torchscript(model, shape, out_dir / "model.torchscript.pt")
        report["torchscript"] = {
            "path": str(path),
            "method": "script" if scripted else "trace",
            "size_bytes": file_size_bytes(path),
        }
        runners["torchscript"] = lambda path=path: make_torchscript_runner(path)
        print(f"TorchScript ({'scripted' if scripted else 'traced'}): {path}  {file_size_bytes(path) / 2**20:.2f} MiB")

    failed = []
    if args.verify:
        real_batch = next(iter(data.test))[0]
        inputs = verification_inputs(shape, real_batch, cfg.export.verify_batch_sizes)
        for fmt, make_runner in runners.items():
            if not verify_format(fmt, make_runner(), model, inputs, cfg.export, report):
                failed.append(fmt)
        report["tolerance"] = cfg.export.tolerance
        report["rtol"] = cfg.export.rtol
    if "onnx" in report and "onnx" not in failed:  # a file that failed verification is not put where the docs look
        beside = copy_beside(Path(report["onnx"]["path"]), Path(args.checkpoint))
        if beside:
            report["onnx"]["beside_checkpoint"] = str(beside)
            print(f"ONNX beside the checkpoint: {beside}")
    atomic_write_yaml(out_dir / EXPORT_RECORD, report)
    print(f"wrote {out_dir / EXPORT_RECORD}")
    if failed:
        print(
            f"verification FAILED for {', '.join(failed)}: outputs differ from PyTorch by more than "
            f"{tolerance_text(cfg.export)} (see {out_dir / EXPORT_RECORD})"
        )
        raise SystemExit(1)


def tolerance_text(export_cfg) -> str:
    return f"{export_cfg.tolerance:g} + {export_cfg.rtol:g} x |logits|"


def verify_format(fmt: str, runner, model, inputs: dict, export_cfg, report: dict) -> bool:
    """Print and record each input's max |diff| and relative diff; True when all are within tolerance."""
    diffs = output_diffs(model, runner, inputs)
    oks = {name: within_tolerance(d, atol=export_cfg.tolerance, rtol=export_cfg.rtol) for name, d in diffs.items()}
    for name, d in diffs.items():
        print(
            f"verify {fmt:<11} {name:<10} max |diff| {d['abs']:.3e}  relative {relative_diff(d):.3e} "
            f"(largest |logit| {d['scale']:.3g})  {'ok' if oks[name] else 'FAIL'}"
        )
    ok = all(oks.values())
    largest_abs = max(d["abs"] for d in diffs.values())
    largest_rel = max(relative_diff(d) for d in diffs.values())
    print(
        f"verify {fmt:<11} largest max |diff| {largest_abs:.3e}, relative {largest_rel:.3e} "
        f"(tolerance {tolerance_text(export_cfg)}): {'ok' if ok else 'FAIL'}"
    )
    report[fmt] |= {
        "max_abs_diff": {n: d["abs"] for n, d in diffs.items()},
        "max_rel_diff": {n: relative_diff(d) for n, d in diffs.items()},
        "verified": ok,
    }
    return ok
