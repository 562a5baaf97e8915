"""The `quantize:` section of the config (read by tools.deploy.quantize and qat), registered with
tools.core.config.

    >>> QuantizeConfig().calibration, QuantizeConfig().activation_type
    ('minmax', 'uint8')
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.core.config import config_section


@config_section("quantize")
@dataclass
class QuantizeConfig:
    """Static INT8 quantization of an exported ONNX model (scripts.quantize, ONNX Runtime, QDQ format)."""

    calibration: str = "minmax"  # minmax | entropy | percentile: how activation ranges are set (ORT calibrators)
    num_images: int = 512  # unaugmented training images the activation ranges are calibrated on
    percentile: float = 99.999  # percentile calibration only: the activation percentile kept
    per_channel: bool = True  # one weight scale per output channel (false: one per tensor)
    activation_type: str = "uint8"  # uint8 (U8S8, ORT's fast x86 path incl. VNNI) | int8 (S8S8, slower on x86)
    # module names (as in structured.ignored_layers; a container covers its children) whose ONNX nodes stay FP32:
    # where the CPU's INT8 kernel is slower than its FP32 one, or quantizing costs the accuracy (a 3-channel stem,
    # 8-channel layers on AVX2; docs/benchmarks.md, int8_target)
    keep_fp32: list[str] = field(default_factory=list)
    max_drop: float = 1.0  # INT8 top-1 at most this many points below the FP32 ONNX file's, else NOT MET
    # scripts.prune_structured: also end with model.int8.onnx, its top-1 and its speed-ups over the dense FP32 and
    # INT8 files, whatever the target (a MACs or FP32-latency row deployed as INT8; onnxruntime-int8 always does)
    deploy: bool = False
    qat_epochs: int = 0  # > 0: when PTQ misses max_drop, fine-tune this many epochs with fake quantization, re-quantize
    # (scripts.prune_structured ending with model.int8.onnx, see deploy: QAT before it, always)
    qat_lr: float = (
        0.001  # QAT learning rate (other optimiser settings from finetune.*); BN is folded, so keep it small
    )
