"""Export a model to ONNX (dynamic batch axis) and TorchScript, and check both against PyTorch.

uv run python -m scripts.export_onnx --checkpoint results/train/quickstart/best_model.pth --verify

onnx_path = export_onnx(model, (3, 32, 32), out_dir / "model.onnx", opset=17)
diffs = max_abs_diffs(model, make_onnx_runner(onnx_path), inputs)   # {"random_bs1": 2e-7, ...}
"""

from __future__ import annotations

import contextlib
import inspect
import io
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from tools.core.errors import UserError, first_line
from tools.core.io import atomic_write_bytes

FORMATS = ("onnx", "torchscript", "both")
Runner = Callable[[torch.Tensor], np.ndarray]


ONNX_OPSETS = range(7, 21)  # what the TorchScript-based exporter (dynamo=False) covers
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")  # the ops of a statically quantized (QDQ) file


def check_opset(opset: int) -> None:
    """A one-line UserError for an opset the exporter cannot write, before any folder is made."""
    if opset not in ONNX_OPSETS:
        raise UserError(
            f"export.opset {opset} is not one the ONNX exporter writes; pick {ONNX_OPSETS.start}-"
            f"{ONNX_OPSETS.stop - 1} (e.g. --opset 17)"
        )


def export_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: Path, *, opset: int) -> Path:
    """Writes `path` with a dynamic batch axis and validates it with onnx.checker. The file is
    written to a temporary name first, so a failed export leaves nothing that looks complete."""
    import onnx

    model = model.eval().cpu()
    example = torch.zeros(1, *input_shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the TorchScript-based exporter is chatty about deprecations
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                opset_version=opset,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                do_constant_folding=True,
                **_torchscript_exporter(),
            )
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)
    except UserError:
        raise
    except Exception as e:  # the exporter raises many types; any of them means "cannot export"
        tmp.unlink(missing_ok=True)
        reason = first_line(e)
        fix = "try --opset 17" if opset != 17 else "try a newer --opset (up to 20) or change the operator named there"
        raise UserError(f"model cannot be exported to ONNX with opset {opset} ({reason}); {fix}") from None
    tmp.replace(path)
    return path


def _torchscript_exporter() -> dict:
    """dynamo=False: the TorchScript-based exporter covers opsets 7-20 and needs no onnxscript
    (the default since torch 2.9 is the dynamo one). torch < 2.5 has no `dynamo` argument and
    always uses the TorchScript-based exporter."""
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def export_torchscript(model: nn.Module, input_shape: tuple[int, int, int], path: Path) -> tuple[Path, bool]:
    """Saves a traced module; also tries scripting, which keeps control flow but fails on some
    models. Returns (path, whether scripting worked); the scripted module is preferred when it does."""
    model = model.eval().cpu()
    example = torch.zeros(1, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated upstream but still what many runtimes load
        try:
            module = torch.jit.script(model)
            scripted = True
        except Exception:  # scripting rejects much valid Python; tracing is the fallback
            module = torch.jit.trace(model, example, check_trace=False)
            scripted = False
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path, scripted


def make_onnx_runner(path: Path, num_threads: int = 0) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.numpy()})[0]


def make_torchscript_runner(path: Path) -> Runner:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return module(x).numpy()

    return run


def verification_inputs(
    input_shape: tuple[int, int, int], real_batch: torch.Tensor | None, batch_sizes: list[int], seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random normal inputs and slices of a real test batch at each batch size."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {f"random_bs{bs}": torch.randn(bs, *input_shape, generator=generator) for bs in batch_sizes}
    if real_batch is not None:
        for bs in batch_sizes:
            if real_batch.size(0) >= bs:
                inputs[f"real_bs{bs}"] = real_batch[:bs].cpu().float()
    return inputs


@torch.inference_mode()
def max_abs_diffs(model: nn.Module, runner: Runner, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
    model = model.eval().cpu()
    return {name: float(np.abs(model(x).numpy() - runner(x)).max()) for name, x in inputs.items()}


@torch.inference_mode()
def output_diffs(model: nn.Module, runner: Runner, inputs: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per input: max |PyTorch - exported| (`abs`) and the largest |PyTorch| output (`scale`)."""
    model = model.eval().cpu()
    out = {}
    for name, x in inputs.items():
        reference = model(x).numpy()
        out[name] = {"abs": float(np.abs(reference - runner(x)).max()), "scale": float(np.abs(reference).max())}
    return out


def within_tolerance(diff: dict[str, float], *, atol: float, rtol: float) -> bool:
    """max |diff| <= atol + rtol * (largest |logit| of that input): float32 rounding grows with
    the size of the sums behind the outputs, so a fixed absolute bound alone rejects correct
    exports of models with large logits, while a wrong export is off by a share of that scale.

    >>> within_tolerance({"abs": 1.2e-5, "scale": 30.0}, atol=1e-5, rtol=1e-4)
    True
    >>> within_tolerance({"abs": 1.2e-5, "scale": 0.01}, atol=1e-5, rtol=1e-4)
    False
    """
    return diff["abs"] <= atol + rtol * diff["scale"]


def relative_diff(diff: dict[str, float]) -> float:
    """max |diff| / largest |logit|: the difference relative to the logits' scale."""
    return diff["abs"] / diff["scale"] if diff["scale"] > 0 else float("inf") if diff["abs"] > 0 else 0.0


# ----------------------------------------------------------------------------- ONNX facts
def load_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise UserError(f"ONNX file {path} not found; export one with scripts.export_onnx (or pass --checkpoint)")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises several types for a file that is not ONNX
        raise UserError(f"{path} is not a readable ONNX model ({type(e).__name__}); re-export it") from None


def onnx_input_shape(path: Path) -> tuple:
    """(C, H, W) of the first input, None for a dynamic dimension."""
    dims = load_onnx(path).graph.input[0].type.tensor_type.shape.dim[1:]
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def is_int8(path: Path) -> bool:
    return any(n.op_type in QDQ_OPS or n.op_type.startswith("QLinear") for n in load_onnx(path).graph.node)
