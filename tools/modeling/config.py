"""The `model:` and `export:` sections of the config (read by tools.models, tools.modeling.checkpoint
and tools.modeling.export), registered with tools.core.config.

    >>> ModelConfig(name="resnet20").stem, ExportConfig().verify_batch_sizes
    ('auto', [1, 8])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tools.core.config import Bound, config_section


@config_section("model")
@dataclass
class ModelConfig:
    name: str = "resnet18"  # tools.modeling.registry.MODEL_NAMES, any torchvision classifier, package.module:factory or path/to/file.py:factory
    kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments for a torchvision builder or your factory
    stem: str = "auto"  # auto | cifar | imagenet (auto: CIFAR stem for inputs <= 64 px)
    weights: str = ""  # optional external weights to start from (state dict or pickled model)
    weights_rename: dict[str, str] = field(
        default_factory=dict
    )  # key prefix -> new prefix for foreign weights, e.g. {"linear.": "fc."}
    weights_strict: bool = (
        True  # false: load what fits from foreign weights and keep the rest (e.g. a new head) as initialised
    )
    trust_checkpoint: bool = (
        False  # unpickle checkpoints that need it (can run code from the file); same as --trust-checkpoint
    )


@config_section("export")
@dataclass
class ExportConfig:
    format: str = "both"  # onnx | torchscript | both
    opset: int = 17  # ONNX opset (the TorchScript-based exporter supports 7-20)
    tolerance: float = (
        1e-5  # --verify: absolute part; fails when max |PyTorch - exported| > tolerance + rtol x largest |logit|
    )
    rtol: float = (
        1e-4  # --verify: part relative to the logits' scale (float32 rounding grows with it; a wrong export is far off)
    )
    verify_batch_sizes: list[int] = field(default_factory=lambda: [1, 8])

    def check(self, bound: Bound) -> None:
        bound("opset", ge=1)
        bound("tolerance", ge=0, why="max |PyTorch - exported| allowed")
        bound("rtol", ge=0, why="a fraction of the largest |logit|")
        bound("verify_batch_sizes", ge=1)
