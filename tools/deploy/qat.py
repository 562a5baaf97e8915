"""Quantization-aware fine-tuning (QAT) whose result is quantized by the same ONNX Runtime path as PTQ.

    qat_model = prepare_qat(model, (3, 32, 32), signed_activations=False)  # BN folded, fake quantization
    fit(qat_model, data, train_cfg=..., run_dir=run_dir / "qat", ...)      # ordinary fine-tuning
    plain = strip_qat(qat_model)      # plain folded convs with the trained weights: export + quantize_int8

Approach: BatchNorm is folded into the preceding convolutions first (torch.fx graph, torch's
`fuse_conv_bn_eval`), so training sees the weights ONNX Runtime will quantize. Every Conv2d and
Linear then runs with fake-quantized weights (per output channel, symmetric int8: the grid ORT's
per-channel QDQ quantizer uses) and fake-quantized inputs (per tensor, 8 bits, ranges from a
moving average of the batch min/max), through torch's core `torch.fake_quantize_per_channel_affine`
/ `torch.fake_quantize_per_tensor_affine` ops, whose straight-through gradients let training
adapt the weights to the rounding. After fine-tuning the wrappers are removed and the plain FP32
model is exported and quantized by `tools.deploy.quantize.quantize_int8` (QDQ, same calibration), so
PTQ and QAT files have one format and one set of kernels.

Library choice: torch.ao.quantization (eager/FX QAT) is deprecated in favour of torchao, and
torchao's QAT targets Linear layers of language models (no Conv2d, no QDQ ONNX export); the two
core fake-quantize ops are maintained in torch itself and export-neutral here, since the
wrappers are stripped before export.

Known gap: the activation ranges learned during QAT are not carried into the ONNX file; ONNX
Runtime re-calibrates them (quantize.calibration), and only Conv/Linear inputs are fake-quantized
(ORT also quantizes residual Adds), so QAT recovers the weight-rounding part of the drop.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tools.core.errors import UserError, first_line

EMA = 0.01  # weight of each new batch in the moving-average activation range (as torch's observers)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (torch.fx GraphModule) with every BatchNorm2d that directly follows a
    Conv2d (whose output nothing else reads) folded into that conv."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        graph_module = torch.fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception as e:  # data-dependent control flow and the like
        raise UserError(
            f"QAT needs a torch.fx-traceable model to fold BatchNorm ({type(e).__name__}: "
            f"{first_line(e, empty='')}); set quantize.qat_epochs=0"
        ) from None
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        conv = node.args[0] if node.op == "call_module" and node.args else None
        if not (
            isinstance(modules.get(node.target), nn.BatchNorm2d)
            and isinstance(conv, torch.fx.Node)
            and conv.op == "call_module"
            and isinstance(modules.get(conv.target), nn.Conv2d)
            and len(conv.users) == 1
        ):
            continue
        _replace(graph_module, conv.target, fuse_conv_bn_eval(modules[conv.target], modules[node.target]))
        node.replace_all_uses_with(conv)
        graph_module.graph.erase_node(node)
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


class FakeQuantized(nn.Module):
    """A Conv2d or Linear that computes with fake-quantized weights and inputs."""

    def __init__(self, layer: nn.Module, signed_activations: bool):
        super().__init__()
        self.layer = layer
        self.qmin, self.qmax = (-128, 127) if signed_activations else (0, 255)
        self.register_buffer("range_min", torch.zeros(()))
        self.register_buffer("range_max", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _observe(self, x: torch.Tensor) -> None:
        low, high = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)  # zero stays exact, as in ORT
        if not self.initialized:
            self.range_min.copy_(low), self.range_max.copy_(high), self.initialized.fill_(True)
        else:
            self.range_min.lerp_(low, EMA), self.range_max.lerp_(high, EMA)

    def _quantized_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._observe(x)
        if not self.initialized:
            return x
        scale = ((self.range_max - self.range_min) / (self.qmax - self.qmin)).clamp(min=1e-8)
        zero_point = (self.qmin - torch.round(self.range_min / scale)).clamp(self.qmin, self.qmax).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale.reshape(1), zero_point.reshape(1), self.qmin, self.qmax)

    def _quantized_weight(self) -> torch.Tensor:
        w = self.layer.weight
        scale = (w.detach().abs().flatten(1).amax(1) / 127).clamp(min=1e-8)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, -127, 127)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, w = self._quantized_input(x), self._quantized_weight()
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, w, self.layer.bias)
        return F.linear(x, w, self.layer.bias)


def prepare_qat(model: nn.Module, *, signed_activations: bool) -> nn.Module:
    """BN folded, then every Conv2d / Linear wrapped in FakeQuantized. `model` is left as it is."""
    qat = fold_batchnorm(model)
    for name, module in list(qat.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            _replace(qat, name, FakeQuantized(module, signed_activations))
    return qat


def strip_qat(qat: nn.Module) -> nn.Module:
    """The plain model: every FakeQuantized replaced by its layer (with the trained weights)."""
    plain = copy.deepcopy(qat).eval()
    for name, module in list(plain.named_modules()):
        if isinstance(module, FakeQuantized):
            _replace(plain, name, module.layer)
    return plain
