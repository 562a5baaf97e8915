"""2:4 semi-structured sparsity on NVIDIA GPUs: which linear layers qualify, and their measured speed-up.

    uv run python -m scripts.prune_unstructured --checkpoint best_model.pth --method nm --device cuda

    rows = semi_structured_eligibility(model, n=2, m=4, device=torch.device("cuda"))
    timings = benchmark_semi_structured(model, rows, batch_sizes=[256], warmup=10, repeats=50)

PyTorch's `torch.sparse.to_sparse_semi_structured` stores a 2:4-sparse fp16/bf16 matrix in the
compressed layout of Ampere-and-later sparse tensor cores (cuSPARSELt, or CUTLASS when
cuSPARSELt is missing). `F.linear(x, W_sparse)` then runs the sparse GEMM. Limits (checked
here, each failure named in the report): CUDA with compute capability >= 8.0; exactly the 2:4
pattern along the input dimension (our `nm` masks with n=2, m=4); nn.Linear weights only (no
conv kernels); both weight dimensions multiples of the backend's minimum block (cuSPARSELt
fp16/bf16: 16 x 16; CUTLASS: 32 x 64). On CPU only the masks and the theoretical figures exist.

Timings are per layer, fp16, the input a (batch, in_features) matrix, CUDA-event medians.
"""

from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from torch import nn

from tools.pruning.unstructured import is_nm_pattern

TIMING_DTYPE = torch.float16
MIN_CAPABILITY = (8, 0)


def sparse_backend() -> type | None:
    """The tensor subclass `to_sparse_semi_structured` will use here (None: no support)."""
    # The two backend subclasses and their shape table exist since torch 2.3 (the oldest
    # supported torch is 2.4); a build or version without them reports "no support", not a crash.
    sparse = torch.sparse
    cutlass = getattr(sparse, "SparseSemiStructuredTensorCUTLASS", None)
    cusparselt_tensor = getattr(sparse, "SparseSemiStructuredTensorCUSPARSELT", None)
    if not hasattr(sparse, "to_sparse_semi_structured") or not hasattr(cutlass, "_DTYPE_SHAPE_CONSTRAINTS"):
        return None
    cusparselt = getattr(torch.backends, "cusparselt", None)
    force_cutlass = getattr(sparse.SparseSemiStructuredTensor, "_FORCE_CUTLASS", False)
    if force_cutlass or cusparselt_tensor is None or cusparselt is None or not cusparselt.is_available():
        return cutlass
    return cusparselt_tensor


def device_ineligibility(device: torch.device) -> str | None:
    """Why this device cannot run semi-structured kernels (None when it can)."""
    if device.type != "cuda":
        return f"device {device.type}: semi-structured sparse kernels need a CUDA GPU; CPU reports masks and theoretical figures only"
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        return f"GPU compute capability {capability[0]}.{capability[1]} < 8.0 (sparse tensor cores arrived with Ampere)"
    if sparse_backend() is None:
        return f"torch {torch.__version__} has no torch.sparse.to_sparse_semi_structured"
    return None


def layer_ineligibility(module: nn.Module, n: int, m: int, backend: type | None) -> str | None:
    """Why this layer's weight cannot become a semi-structured tensor (None when it can)."""
    if not isinstance(module, nn.Linear):
        return f"{type(module).__name__}: semi-structured kernels take nn.Linear weights only"
    if (n, m) != (2, 4):
        return f"pattern {n}:{m}: the hardware format is 2:4 only"
    if not is_nm_pattern(module.weight, 2, 4):
        return "weight is not 2:4 sparse along the input dimension"
    if backend is None:
        return "no semi-structured backend in this torch build"
    limits = backend._DTYPE_SHAPE_CONSTRAINTS.get(TIMING_DTYPE)
    rows, cols = module.out_features, module.in_features
    if limits is None:
        return f"{backend.__name__} does not support {TIMING_DTYPE}"
    if (
        rows % limits.sparse_min_rows
        or cols % limits.sparse_min_cols
        or rows < limits.sparse_min_rows
        or cols < limits.sparse_min_cols
    ):
        return (
            f"weight {rows}x{cols}: {backend.BACKEND} needs both dimensions multiples of "
            f"{limits.sparse_min_rows}x{limits.sparse_min_cols}"
        )
    return None


def semi_structured_eligibility(model: nn.Module, *, n: int, m: int, device: torch.device) -> list[dict]:
    """One row per nn.Linear: {layer, shape, eligible, reason}; the device reason, if any,
    applies to all of them."""
    backend = sparse_backend()
    device_reason = device_ineligibility(device)
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            reason = layer_ineligibility(module, n, m, backend) or device_reason
            rows.append(
                {
                    "layer": name,
                    "shape": list(module.weight.shape),
                    "eligible": reason is None,
                    "reason": reason or "ok",
                }
            )
    return rows


def _cuda_median_ms(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


@torch.no_grad()
def time_linear(weight: torch.Tensor, bias: torch.Tensor | None, *, batch_size: int, warmup: int, repeats: int) -> dict:
    """Dense vs semi-structured F.linear on one (batch_size, in) fp16 input, on weight's GPU."""
    from torch.sparse import to_sparse_semi_structured

    dense_w = weight.detach().to(TIMING_DTYPE).contiguous()
    b = bias.detach().to(TIMING_DTYPE) if bias is not None else None
    sparse_w = to_sparse_semi_structured(dense_w)
    x = torch.randn(batch_size, dense_w.shape[1], device=dense_w.device, dtype=TIMING_DTYPE)
    dense_out, sparse_out = F.linear(x, dense_w, b), F.linear(x, sparse_w, b)
    dense_ms = _cuda_median_ms(lambda: F.linear(x, dense_w, b), warmup, repeats)
    sparse_ms = _cuda_median_ms(lambda: F.linear(x, sparse_w, b), warmup, repeats)
    return {
        "batch_size": batch_size,
        "dense_ms": dense_ms,
        "sparse_ms": sparse_ms,
        "speedup": dense_ms / sparse_ms,
        "max_abs_diff": float((dense_out - sparse_out).abs().max()),
    }


def benchmark_semi_structured(
    model: nn.Module, rows: list[dict], *, batch_sizes: list[int], warmup: int, repeats: int
) -> list[dict]:
    """Time every eligible layer of `rows` (the model is on the GPU) at each batch size."""
    modules = dict(model.named_modules())
    results = []
    for row in rows:
        if row["eligible"]:
            layer = modules[row["layer"]]
            for bs in batch_sizes:
                results.append(
                    {
                        "layer": row["layer"],
                        **time_linear(layer.weight, layer.bias, batch_size=bs, warmup=warmup, repeats=repeats),
                    }
                )
    return results


def semi_structured_report(
    model: nn.Module, *, n: int, m: int, device: torch.device, batch_sizes: list[int], warmup: int, repeats: int
) -> dict:
    """Eligibility for every linear layer and, on a capable GPU, measured dense vs sparse times."""
    rows = semi_structured_eligibility(model, n=n, m=m, device=device)
    report = {"device": str(device), "dtype": str(TIMING_DTYPE).removeprefix("torch."), "layers": rows, "timings": []}
    if device_ineligibility(device) is None and any(r["eligible"] for r in rows):
        report["timings"] = benchmark_semi_structured(
            model, rows, batch_sizes=batch_sizes, warmup=warmup, repeats=repeats
        )
    return report


def format_semi_structured(report: dict) -> str:
    lines = [f"semi-structured 2:4 ({report['dtype']}, {report['device']}):"]
    for r in report["layers"]:
        lines.append(
            f"  {r['layer']:<24} {'x'.join(map(str, r['shape'])):>11}  "
            f"{'eligible' if r['eligible'] else 'not eligible: ' + r['reason']}"
        )
    for t in report["timings"]:
        lines.append(
            f"  {t['layer']:<24} batch {t['batch_size']:>5}: dense {t['dense_ms']:.4f} ms  "
            f"2:4 sparse {t['sparse_ms']:.4f} ms  speed-up {t['speedup']:.2f}x (measured)"
        )
    if not report["layers"]:
        lines.append("  no nn.Linear layer in this model")
    return "\n".join(lines)
