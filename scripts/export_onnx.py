"""Export a checkpoint to ONNX and/or TorchScript, optionally verified against PyTorch.

    uv run python -m scripts.export_onnx --checkpoint results/train/quickstart/best_model.pth --verify
    uv run python -m scripts.export_onnx --checkpoint pruned_model.pth --format onnx --opset 13

Writes model.onnx / model.torchscript.pt and export.yaml (file sizes, opset, max abs differences)
into <checkpoint folder>/export/ unless --save-dir, then COMPLETE (FAILED with the error line when
the export or its verification fails; a bad format or opset fails before any folder is made), and
the ONNX file also beside the checkpoint as <checkpoint name>.onnx
(results/structured/l2_macs0.5/pruned_model.onnx: what `ls results/structured/*/*.onnx` lists; not
when --verify fails). --verify runs ONNX Runtime and TorchScript on random and real test inputs at
export.verify_batch_sizes, prints the largest absolute difference and the largest relative one
(max |diff| / largest |logit| of that input), and exits 1 when any max |diff| exceeds
export.tolerance + export.rtol x the largest |logit| of its input (defaults 1e-5 and 1e-4, the
torch.allclose form on the logits' scale: a correct export of a model with large logits passes,
a wrong export is off by far more).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file (python scripts/export_onnx.py): repo root on sys.path first
    import _file_form  # noqa: F401  (scripts/_file_form.py; scripts/ is sys.path[0] here)

from pathlib import Path

from tools.core.cli import base_parser
from tools.core.errors import UserError, run_cli
from tools.core.io import atomic_write_bytes, atomic_write_yaml
from tools.core.run_folder import EXPORT_RECORD, RunFolder
from tools.measure.metrics import file_size_bytes
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
from tools.modeling.checkpoint_run import load_checkpoint_run


def parse_args(argv):
    parser = base_parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="a .pth written by train or a pruning script")
    parser.add_argument("--format", choices=FORMATS, help="overrides export.format")
    parser.add_argument("--opset", type=int, help="overrides export.opset")
    parser.add_argument("--tolerance", type=float, help="overrides export.tolerance (the absolute part)")
    parser.add_argument("--rtol", type=float, help="overrides export.rtol (the part relative to the logits' scale)")
    parser.add_argument("--verify", action="store_true", help="compare ONNX Runtime / TorchScript outputs with PyTorch")
    return parser.parse_args(argv)


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


def main(argv=None):
    args = parse_args(argv)
    cfg, _, data, model, _ = load_checkpoint_run(
        args, flags={"export.format": args.format, "export.opset": args.opset, "export.tolerance": args.tolerance,
                     "export.rtol": args.rtol, "train.device": "cpu"})
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
        report["torchscript"] = {"path": str(path), "method": "script" if scripted else "trace",
                                 "size_bytes": file_size_bytes(path)}
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
        print(f"verification FAILED for {', '.join(failed)}: outputs differ from PyTorch by more than "
              f"{tolerance_text(cfg.export)} (see {out_dir / EXPORT_RECORD})")
        raise SystemExit(1)


def tolerance_text(export_cfg) -> str:
    return f"{export_cfg.tolerance:g} + {export_cfg.rtol:g} x |logits|"


def verify_format(fmt: str, runner, model, inputs: dict, export_cfg, report: dict) -> bool:
    """Print and record each input's max |diff| and relative diff; True when all are within tolerance."""
    diffs = output_diffs(model, runner, inputs)
    oks = {name: within_tolerance(d, atol=export_cfg.tolerance, rtol=export_cfg.rtol) for name, d in diffs.items()}
    for name, d in diffs.items():
        print(f"verify {fmt:<11} {name:<10} max |diff| {d['abs']:.3e}  relative {relative_diff(d):.3e} "
              f"(largest |logit| {d['scale']:.3g})  {'ok' if oks[name] else 'FAIL'}")
    ok = all(oks.values())
    largest_abs = max(d["abs"] for d in diffs.values())
    largest_rel = max(relative_diff(d) for d in diffs.values())
    print(f"verify {fmt:<11} largest max |diff| {largest_abs:.3e}, relative {largest_rel:.3e} "
          f"(tolerance {tolerance_text(export_cfg)}): {'ok' if ok else 'FAIL'}")
    report[fmt] |= {"max_abs_diff": {n: d["abs"] for n, d in diffs.items()},
                    "max_rel_diff": {n: relative_diff(d) for n, d in diffs.items()}, "verified": ok}
    return ok


if __name__ == "__main__":
    run_cli(main)
