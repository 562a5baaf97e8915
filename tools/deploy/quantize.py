"""Static post-training INT8 quantization with ONNX Runtime, and accuracy of ONNX files where they run.

    uv run python -m scripts.quantize --checkpoint results/structured/l2_macs0.5/pruned_model.pth
    uv run python -m scripts.eval --checkpoint results/structured/l2_macs0.5/export/model.int8.onnx

    prepared, bn = prepare_fp32(Path("export/model.onnx"), Path("export/model.prep.onnx"))  # BN folded
    reader = LoaderCalibrationReader(data.train, num_images=512, input_name="input")
    skipped = quantize_int8(prepared, Path("export/model.int8.onnx"), reader, cfg.quantize)
    stats = evaluate_onnx(Path("export/model.int8.onnx"), data.test, num_threads=1)  # top1, top5, loss

The INT8 file is ONNX Runtime's QDQ format (QuantizeLinear/DequantizeLinear pairs around float
ops, which ORT's CPU provider fuses into QLinearConv, QLinearAdd, QGemm): weights int8 with one
symmetric scale per output channel, activations uint8 (U8S8, the fast x86 path, VNNI included)
or int8 with ranges from `quantize.calibration` over unaugmented training images.

BatchNorm folding: `quant_pre_process` (ONNX Runtime's shape inference plus its basic graph
optimisation, which fuses Conv+BatchNormalization) runs before calibration. torch.onnx's
eval-mode exporter usually folds BN already; quantize.yaml records the BatchNormalization node
count of the exported and of the prepared graph, so an unfolded one shows.

Ops the quantizer has no INT8 kernel for stay FP32 between Dequantize/Quantize pairs: the rest
is quantized and `float_nodes` lists them.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path

import torch

from tools.core.errors import UserError, first_line
from tools.core.run_folder import CONFIG, EXPORT_RECORD
from tools.deploy.config import QuantizeConfig
from tools.modeling.export import QDQ_OPS, load_onnx, onnx_input_shape

CALIBRATIONS = ("minmax", "entropy", "percentile")
ACTIVATION_TYPES = ("uint8", "int8")
# Graph plumbing that carries (quantized) tensors without computing on them.
PLUMBING = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Shape", "Constant", "Concat")
INT8_SUFFIX = ".int8.onnx"


def check_quantize_config(q: QuantizeConfig) -> None:
    if q.calibration not in CALIBRATIONS:
        raise UserError(f"unknown quantize.calibration {q.calibration!r}; choose one of: {', '.join(CALIBRATIONS)}")
    if q.activation_type not in ACTIVATION_TYPES:
        raise UserError(f"unknown quantize.activation_type {q.activation_type!r}; choose uint8 or int8")
    if q.num_images < 1:
        raise UserError(f"quantize.num_images must be >= 1, got {q.num_images}")
    if not 0 < q.percentile <= 100:
        raise UserError(f"quantize.percentile must be in (0, 100], got {q.percentile}")
    if q.qat_epochs < 0 or q.qat_lr <= 0:
        raise UserError(f"quantize.qat_epochs must be >= 0 and quantize.qat_lr > 0, got {q.qat_epochs} and {q.qat_lr}")


def onnx_module_name(node_name: str) -> str:
    """The torch module an exported node came from: '/layer1/layer1.0/conv1/Conv' -> 'layer1.0.conv1'.
    torch.onnx names each scope by the module's name relative to an ancestor, so a scope that starts
    with the last names so far replaces them ('/features/features.0/features.0.0/Conv' -> 'features.0.0')."""
    parts: list[str] = []
    for scope in node_name.strip("/").split("/")[:-1]:
        names = scope.split(".")
        overlap = next((k for k in range(min(len(parts), len(names)), 0, -1) if parts[-k:] == names[:k]), 0)
        parts = parts[: len(parts) - overlap] + names
    return ".".join(parts)


def nodes_kept_fp32(model, modules: list[str]) -> list[str]:
    """The nodes of `modules` (quantize.keep_fp32; a container covers its children); a name that
    no node comes from is a UserError with the nearest module name the graph has."""
    owner = {n.name: onnx_module_name(n.name) for n in model.graph.node}
    kept = []
    for module in modules:
        nodes = [n for n, m in owner.items() if m == module or m.startswith(module + ".")]
        if not nodes:
            known = {".".join(m.split(".")[:k]) for m in owner.values() if m for k in range(1, m.count(".") + 2)}
            close = difflib.get_close_matches(module, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"module names there: {', '.join(sorted(known)[:12])}"
            raise UserError(f"quantize.keep_fp32 names {module!r}, which no node of the ONNX graph comes from; {hint}")
        kept += nodes
    return kept


def int8_path(fp32_path: Path, out_dir: Path | None = None) -> Path:
    """model.onnx -> model.int8.onnx, in `out_dir` (default: beside the FP32 file)."""
    return (out_dir or fp32_path.parent) / (fp32_path.name.removesuffix(".onnx") + INT8_SUFFIX)


def check_input_shape(path: Path, data_shape: tuple[int, int, int], what: str) -> None:
    """One line naming both shapes when the data does not fit the model's input."""
    model_shape = onnx_input_shape(path)
    fits = len(model_shape) == len(data_shape) and all(m in (None, d) for m, d in zip(model_shape, data_shape))
    if not fits:
        shown = "x".join("?" if m is None else str(m) for m in model_shape)
        raise UserError(
            f"{what} images are {'x'.join(map(str, data_shape))} (C x H x W) but {path} takes {shown}; "
            "use the data set and data.image_size the model was exported for"
        )


def check_num_classes(path: Path, num_classes: int, what: str) -> None:
    dims = load_onnx(path).graph.output[0].type.tensor_type.shape.dim
    outputs = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
    if outputs is not None and outputs != num_classes:
        raise UserError(
            f"{path} predicts {outputs} classes but {what} has {num_classes}; "
            "use the data set the model was trained on (--config or the run's config.yaml)"
        )


def count_ops(model, op_type: str) -> int:
    return sum(n.op_type == op_type for n in model.graph.node)


def float_nodes(model) -> list[dict]:
    """Compute nodes of a QDQ model that run in FP32: none of their inputs comes from a
    DequantizeLinear (the quantizer had no INT8 kernel for them, or was told to skip them)."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [
        {"name": n.name, "op_type": n.op_type}
        for n in model.graph.node
        if n.op_type not in QDQ_OPS + PLUMBING and not dequantized.intersection(n.input)
    ]


# ----------------------------------------------------------------------------- running ONNX files
class OrtModel:
    """An ONNX file behind the call interface tools.training.engine.evaluate expects (eval(), __call__)."""

    def __init__(self, path: Path, num_threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.num_threads = num_threads or None

    def eval(self) -> "OrtModel":
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input_name: images.cpu().float().numpy()})[0])


def evaluate_onnx(path: Path, loader, *, num_threads: int = 0) -> dict:
    """Top-1/top-5 (%) and loss of the ONNX file on every batch of `loader`, run by ONNX Runtime."""
    from tools.training.engine import evaluate

    return evaluate(OrtModel(path, num_threads), loader, device=torch.device("cpu"), desc=f"eval {path.name}")


# ----------------------------------------------------------------------------- quantization
class LoaderCalibrationReader:
    """The first `num_images` images of `loader` (a project loader: normalized float batches),
    handed to ONNX Runtime's calibrator batch by batch."""

    def __init__(self, loader, *, num_images: int, input_name: str):
        self.loader, self.num_images, self.input_name = loader, num_images, input_name
        self.seen = 0
        self._batches = None

    def get_next(self) -> dict | None:
        if self._batches is None:
            self._batches = iter(self.loader)
        if self.seen >= self.num_images:
            return None
        images, _ = next(self._batches, (None, None))
        if images is None:
            return None
        images = images[: self.num_images - self.seen]
        self.seen += images.size(0)
        return {self.input_name: images.cpu().float().numpy()}


def prepare_fp32(fp32_path: Path, prepared_path: Path) -> tuple[Path, dict]:
    """quant_pre_process: shape inference and ORT's basic optimisation (Conv+BN fusion, constant
    folding). Returns the prepared file and the BatchNormalization node counts before/after."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    before = count_ops(load_onnx(fp32_path), "BatchNormalization")
    try:
        quant_pre_process(str(fp32_path), str(prepared_path))
    except Exception as e:  # the symbolic shape inference gives up on some graphs; plain is fine then
        reason = first_line(e)
        print(f"note: symbolic shape inference failed ({reason}); retrying with ONNX shape inference only")
        quant_pre_process(str(fp32_path), str(prepared_path), skip_symbolic_shape=True)
    after = count_ops(load_onnx(prepared_path), "BatchNormalization")
    return prepared_path, {
        "batchnorm_nodes_exported": before,
        "batchnorm_nodes_after_preprocess": after,
        "folded_by": "torch.onnx export (eval mode) and onnxruntime quant_pre_process",
    }


def quantize_int8(prepared_path: Path, out_path: Path, reader, q: QuantizeConfig) -> list[dict]:
    """quantize_static in QDQ format into `out_path` (atomically). Returns the nodes left in FP32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[q.calibration]
    extra = {
        "ActivationSymmetric": False,
        "WeightSymmetric": True,
        "CalibPercentile": q.percentile,
        "CalibMaxIntermediateOutputs": 16,
    }  # minmax: reduce every 16 batches instead of keeping all outputs
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp.onnx")
    os.close(fd)
    try:
        quantize_static(
            str(prepared_path),
            tmp,
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=q.per_channel,
            activation_type=QuantType.QUInt8 if q.activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            nodes_to_exclude=nodes_kept_fp32(load_onnx(prepared_path), q.keep_fp32) if q.keep_fp32 else [],
            extra_options=extra,
        )
        os.replace(tmp, out_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    if reader.seen == 0:
        out_path.unlink()
        raise UserError("calibration got no training images; check data.root and data.train_subset")
    return float_nodes(load_onnx(out_path))


def file_entry(path: Path, stats: dict) -> dict:
    return {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "top1": stats["top1"],
        "top5": stats["top5"],
        "loss": stats["loss"],
        "num_samples": stats["num_samples"],
    }


def verdict(fp32_top1: float, int8_top1: float, max_drop: float) -> tuple[float, str]:
    drop = fp32_top1 - int8_top1
    return drop, "MET" if drop <= max_drop else "NOT MET"


# ----------------------------------------------------------------------------- configs of ONNX files
def sidecar_config(onnx_path: Path) -> tuple[dict, str] | None:
    """The config of the run an ONNX file came from: config.yaml beside it (scripts.quantize writes
    one), the checkpoint named in export.yaml beside it (scripts.export_onnx), or the config.yaml of
    the run folder holding its export/ folder. None when there is none."""
    from tools.core.io import read_yaml_mapping
    from tools.modeling.checkpoint import checkpoint_config, read_checkpoint

    folder = onnx_path.parent
    tree = read_yaml_mapping(folder / CONFIG)
    if tree is not None:
        return tree, str(folder / CONFIG)
    checkpoint = (read_yaml_mapping(folder / EXPORT_RECORD) or {}).get("checkpoint")
    if checkpoint and Path(checkpoint).is_file():
        stored = checkpoint_config(read_checkpoint(checkpoint))
        if stored is not None:
            return stored, f"checkpoint {checkpoint}"
    tree = read_yaml_mapping(folder.parent / CONFIG)
    return (tree, str(folder.parent / CONFIG)) if tree is not None else None


def resolve_onnx_config(args, onnx_path: Path, flags: dict | None = None):
    """defaults < the ONNX file's sidecar config < --config < --set < flags."""
    from tools.core.cli import resolve_config

    load_onnx(onnx_path)  # a missing or broken file is reported before the config
    base = sidecar_config(onnx_path)
    if base is None and not args.config:
        raise UserError(
            f"{onnx_path} has no config.yaml or export.yaml beside it; pass --config with the data set "
            "it was trained on"
        )
    return resolve_config(args, flags=flags, base=base)


def load_onnx_run(args, onnx_path: Path, flags: dict | None = None, augment: bool | None = None):
    """(cfg, data) for an ONNX file; the data's image shape is checked against the model's input.
    `augment=False` gives an unaugmented training loader (calibration)."""
    from dataclasses import replace

    from datasets import build_data
    from tools.core.device import seed_everything, set_num_threads

    cfg = resolve_onnx_config(args, onnx_path, flags)
    set_num_threads(cfg.train.num_threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    data_cfg = cfg.data if augment is None else replace(cfg.data, augment=augment)
    data = build_data(data_cfg, seed=cfg.train.seed, device="cpu")
    check_input_shape(onnx_path, data.input_shape, f"data set {cfg.data.name}")
    check_num_classes(onnx_path, data.num_classes, f"data set {cfg.data.name}")
    return cfg, data
