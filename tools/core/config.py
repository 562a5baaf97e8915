"""Typed run configuration: dataclass defaults < YAML file (may extend a base) < CLI flags.

    >>> cfg = load_config("cfgs/quickstart.yaml", overrides=["train.epochs=3"])   # from the repository root
    >>> cfg.train.epochs, cfg.model.name
    (3, 'resnet20')

    save_config(cfg, run_dir / CONFIG)   # feeding this file back reproduces the run

A YAML file is a mapping of sections (`data`, `model`, `train`, ...). `base: other.yaml`
(relative to the file) pulls in another file first, so variants stay short. Every layer is
checked on its own against the schema, so an unknown key or a wrong type is reported with the
file (or `--set`) it came from, e.g.

    unknown key train.epoch in cfgs/x.yaml; did you mean train.epochs?

Each value is then range-checked once, by its section's `check` (next to the dataclass), with the
layer that set it: `train.lr must be > 0, got 0 in --set; fix it`. A key written twice in one
YAML mapping is an error, not "the last one wins".
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from tools.core.errors import UserError


# ----------------------------------------------------------------------------- range checks
class Bound:
    """The range checks of one config section, run once when the config loads. Every section
    dataclass has `check(self, bound)`; `bound("lr", gt=0)` raises a one-line UserError naming the
    key, the bad value, the allowed range and the layer that set it (file, --set, flags)."""

    def __init__(self, section: Any, prefix: str, origin: Callable[[str], str]):
        self.section, self.prefix, self.origin = section, prefix, origin

    def __call__(self, key: str, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
                 lt: float | None = None, why: str = "") -> None:
        value = getattr(self.section, key)
        items = value.items() if isinstance(value, dict) else (
            ((f"[{i}]", v) for i, v in enumerate(value)) if isinstance(value, list) else [("", value)])
        for sub, v in items:
            bad = (ge is not None and v < ge) or (gt is not None and v <= gt) or (le is not None and v > le) or (
                lt is not None and v >= lt)
            if bad:
                name = self.prefix + key + (f".{sub}" if isinstance(value, dict) else sub)
                note = f" ({why})" if why else ""
                raise UserError(f"{name} must be {_allowed(ge, gt, le, lt)}{note}, got {v!r} in "
                                f"{self.origin(self.prefix + key)}; fix it")


def _allowed(ge, gt, le, lt) -> str:
    def num(x) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    low = f"[{num(ge)}" if ge is not None else f"({num(gt)}" if gt is not None else None
    high = f"{num(le)}]" if le is not None else f"{num(lt)})" if lt is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"{'>=' if ge is not None else '>'} {low[1:]}"
    return f"{'<=' if le is not None else '<'} {high[:-1]}"


def _check_optimisation(bound: Bound) -> None:
    """The optimiser keys train and finetune share."""
    bound("momentum", ge=0, lt=1)
    bound("weight_decay", ge=0)
    bound("milestones", ge=0, why="epochs")
    bound("gamma", gt=0, le=1, why="multistep decay factor")
    bound("warmup_epochs", ge=0)
    bound("label_smoothing", ge=0, lt=1)
    bound("grad_clip_norm", ge=0, why="0 = off")
    bound("patience", ge=0, why="0 = off")


def check_ranges(section: Any, origin: Callable[[str], str], prefix: str = "") -> None:
    """Every section's `check`, nested sections included."""
    if hasattr(section, "check"):
        section.check(Bound(section, prefix, origin))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, origin, prefix + f.name + ".")


# ----------------------------------------------------------------------------- schema
@dataclass
class SyntheticConfig:
    num_classes: int = 10  # classes of the procedurally generated data set
    train_size: int = 5000
    test_size: int = 1000
    resolution: int = 32  # images are resolution x resolution RGB
    seed: int = 0  # the data set is a pure function of this seed

    def check(self, bound: Bound) -> None:
        bound("num_classes", ge=2)
        bound("train_size", ge=1)
        bound("test_size", ge=1)
        bound("resolution", ge=4)
        bound("seed", ge=0, lt=2**32)


NORMALIZE_PRESETS = ("dataset", "imagenet", "none")


@dataclass
class DataConfig:
    name: str = "cifar10"  # cifar10 | cifar100 | mnist | fashionmnist | imagefolder | synthetic
    root: str = "./data"  # data set folder (imagefolder: holds train/ and val/ or test/)
    download: bool = True  # torchvision sets: download when missing
    batch_size: int = 128  # training batch size (per process under torchrun)
    eval_batch_size: int = 512
    num_workers: int = 2  # DataLoader path only
    val_split: float = 0.0  # fraction of train held out for validation; 0 -> validate on test
    augment: bool = True  # the data set's standard augmentation (crop + flip for CIFAR)
    image_size: int = 0  # 0 -> native (32 CIFAR/synthetic, 28 MNIST, 224 imagefolder)
    fast_path: bool = True  # small sets: uint8 tensors in memory, batched tensor augmentation
    cache_dir: str = "~/.cache/pruning-bootcamp"  # decoded imagefolder tensors are cached here
    train_subset: int = 0  # 0 = all; else a fixed seeded subset of N training images
    test_subset: int = 0  # 0 = all; else a fixed seeded subset of N test images
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    # one rule on both loader paths, printed in the run's first lines: dataset = the data set's
    # statistics (torchvision sets: their published ones; others: the training images', a seeded
    # sample of 512 on the DataLoader path over image files) | imagenet | none (mean 0, std 1)
    normalize: str = "dataset"
    mean: list[float] = field(default_factory=list)  # per channel, [0, 1] units; with std: replaces the preset
    std: list[float] = field(default_factory=list)  # per channel, > 0

    def check(self, bound: Bound) -> None:
        bound("std", gt=0)
        if self.normalize not in NORMALIZE_PRESETS:
            raise UserError(f"unknown data.normalize {self.normalize!r} in {bound.origin(bound.prefix + 'normalize')}; "
                            f"choose one of: {', '.join(NORMALIZE_PRESETS)} (or give data.mean and data.std)")
        if bool(self.mean) != bool(self.std) or len(self.mean) != len(self.std):
            raise UserError(f"data.mean {self.mean} and data.std {self.std} must be given together, one value per "
                            f"channel each, e.g. data.mean=[0.5,0.5,0.5] data.std=[0.25,0.25,0.25]")
        bound("batch_size", ge=1)
        bound("eval_batch_size", ge=1)
        bound("num_workers", ge=0)
        bound("val_split", ge=0, lt=1, why="a fraction of train")
        bound("image_size", ge=0, why="0 = native")
        bound("train_subset", ge=0, why="0 = all")
        bound("test_subset", ge=0, why="0 = all")


@dataclass
class ModelConfig:
    name: str = "resnet18"  # tools.models.MODEL_NAMES, any torchvision classifier, package.module:factory or path/to/file.py:factory
    kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments for a torchvision builder or your factory
    stem: str = "auto"  # auto | cifar | imagenet (auto: CIFAR stem for inputs <= 64 px)
    weights: str = ""  # optional external weights to start from (state dict or pickled model)
    weights_rename: dict[str, str] = field(default_factory=dict)  # key prefix -> new prefix for foreign weights, e.g. {"linear.": "fc."}
    weights_strict: bool = True  # false: load what fits from foreign weights and keep the rest (e.g. a new head) as initialised
    trust_checkpoint: bool = False  # unpickle checkpoints that need it (can run code from the file); same as --trust-checkpoint


@dataclass
class TrainConfig:
    epochs: int = 100
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 5e-4
    scheduler: str = "multistep"  # multistep | cosine | onecycle | constant
    milestones: list[int] = field(default_factory=lambda: [50, 75])  # multistep, in epochs
    gamma: float = 0.1  # multistep decay factor
    warmup_epochs: int = 0  # linear warm-up before multistep/cosine
    label_smoothing: float = 0.0
    grad_clip_norm: float = 0.0  # 0 disables gradient clipping
    amp: str = "none"  # none | bf16 | fp16 (CUDA; bf16 also on CPUs with native bf16, else fp32 with a warning)
    channels_last: bool = False  # CUDA only
    patience: int = 0  # early stopping after this many epochs without val improvement; 0 = off
    seed: int = 0
    deterministic: bool = False  # deterministic algorithms (bit-exact resume on CPU)
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    num_threads: int = 0  # CPU intra-op threads; 0 = torch's default (1 is fastest on a busy machine)

    def check(self, bound: Bound) -> None:
        bound("epochs", ge=1)
        bound("lr", gt=0)
        _check_optimisation(bound)
        bound("num_threads", ge=0, le=4096, why="0 = torch's default")
        bound("seed", ge=0, lt=2**32)


@dataclass
class KDConfig:
    alpha: float = 0.0  # weight of the distillation loss from the unpruned model; 0 = off
    temperature: float = 4.0  # softmax temperature of teacher and student

    def check(self, bound: Bound) -> None:
        bound("alpha", ge=0, le=1, why="weight of the distillation term")
        bound("temperature", gt=0)


@dataclass
class FinetuneConfig:
    """Optimisation after pruning; device, seed, amp and determinism come from `train`."""

    epochs: int = 10
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.0  # 0 -> one tenth of train.lr
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    scheduler: str = "cosine"  # multistep | cosine | onecycle | constant
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    grad_clip_norm: float = 0.0
    patience: int = 0
    kd: KDConfig = field(default_factory=KDConfig)

    def check(self, bound: Bound) -> None:
        bound("epochs", ge=0, why="0 = no fine-tuning")
        bound("lr", ge=0, why="0 = one tenth of train.lr")
        _check_optimisation(bound)


# Pruning sections: each pruning script owns its own section.
@dataclass
class UnstructuredConfig:
    method: str = "global"  # l1 | global | random | taylor | movement | lamp | nm (see tools.pruning.unstructured)
    mode: str = "auto"  # auto (the method's own) | layerwise | global allocation of the sparsity
    sparsity: float = 0.5  # target fraction of pruned weights, in [0, 1); nm: fixed at 1 - n/m
    layer_sparsity: dict[str, float] = field(default_factory=dict)  # module name or prefix -> sparsity (layerwise)
    sparsity_file: str = ""  # YAML mapping like layer_sparsity (e.g. from scripts.sensitivity); layer_sparsity wins
    iterative: bool = False  # prune in num_iterations steps with fine-tuning between them
    num_iterations: int = 5  # iterative steps
    schedule: str = "cubic"  # linear | exponential | cubic (Zhu & Gupta) sparsity per step
    step_epochs: int = 1  # fine-tune epochs after each intermediate step; the last one runs finetune.epochs
    score_batches: int = 16  # taylor: batches of gradients summed (movement: a ramp, see tools.runs.prune_unstructured)
    n: int = 2  # nm: weights kept in every group of m (along the input dimension)
    m: int = 4  # nm: group size
    keep_first_conv_dense: bool = False  # never prune the first conv
    keep_classifier_dense: bool = False  # never prune the last linear layer
    prune_biases: bool = False  # also prune conv/linear biases
    prune_bn: bool = False  # also prune BatchNorm scales (gamma)
    save_compressed: bool = False  # also write pruned_model_compressed.pth (sparse storage)
    compressed_format: str = "auto"  # auto (smallest per tensor) | bitmask | csr
    semi_structured: bool = True  # nm on CUDA: convert eligible linear layers to 2:4 kernels and time them

    def check(self, bound: Bound) -> None:
        bound("sparsity", ge=0, lt=1, why="a fraction of weights pruned")
        bound("layer_sparsity", ge=0, lt=1, why="a fraction of weights pruned")
        bound("num_iterations", ge=1)
        bound("step_epochs", ge=0)
        bound("score_batches", ge=1)
        bound("m", ge=2, why="the N:M group size")
        bound("n", ge=1, lt=self.m, why="N of every M weights kept; N = M prunes nothing")


@dataclass
class SensitivityConfig:
    sparsities: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    method: str = "l1"  # how each layer is pruned alone: l1 | random | taylor
    num_images: int = 1000  # validation images per measurement; 0 = the whole validation split
    max_drop: float = 1.0  # derived dict: per layer, the largest sparsity costing at most this many top-1 points
    target_sparsity: float = 0.0  # > 0: derive the dict meeting this total sparsity instead (equal-drop allocation)

    def check(self, bound: Bound) -> None:
        bound("sparsities", ge=0, lt=1, why="fractions of a layer pruned")
        bound("num_images", ge=0, why="0 = the whole validation split")
        bound("max_drop", ge=0, why="top-1 points")
        bound("target_sparsity", ge=0, lt=1, why="0 = use max_drop")


@dataclass
class BNScaleConfig:
    """Network Slimming's sparsity phase, run before pruning when structured.method is bn_scale."""

    reg: float = 1e-4  # L1 penalty on BatchNorm scales (Liu et al. 2017 use 1e-4 on CIFAR)
    epochs: int = 5  # sparsity-training epochs (finetune.* optimiser settings); 0 = prune the scales as they are

    def check(self, bound: Bound) -> None:
        bound("reg", ge=0)
        bound("epochs", ge=0)


@dataclass
class GoalConfig:
    """The pass/fail line printed at the end of scripts.prune_structured."""

    min_flops_reduction_pct: float = 40.0  # FLOPs (= 2 x MACs) removed, in percent, at least
    max_accuracy_drop: float = 1.5  # top-1 points lost vs the baseline, at most

    def check(self, bound: Bound) -> None:
        bound("min_flops_reduction_pct", ge=0, le=100, why="percent")
        bound("max_accuracy_drop", ge=0, le=100, why="top-1 points")


@dataclass
class LatencyTargetConfig:
    """How structured.target_latency_reduction is measured (see tools.pruning.latency_target)."""

    backend: str = "torch"  # torch (eager, BN folded) | onnxruntime (CPU provider) | cuda (eager on the GPU)
    batch_size: int = 64  # images per timed forward
    threads: int = 1  # intra-op threads for timing (cuda: ignored)
    tolerance: float = 0.05  # the measured reduction lands within this of the target (0.05 = 5 pts); also the largest timing spread accepted
    rounds: int = 7  # interleaved timing rounds of the pruned model against the baseline; medians are compared
    repeats: int = 3  # timed forwards per model per round
    allocation: str = "importance"  # importance: the MACs target's ranking, the measured latency decides where to stop | per_ms: least importance per ms saved (NetAdapt-style)
    levels: int = 6  # channel counts measured per group for the latency table (interpolated between)
    max_attempts: int = 4  # measured re-allocations before giving up on landing within tolerance
    cache_dir: str = "results/latency_cache"  # latency tables keyed by model, backend, batch, threads and host; "" = off
    report: bool = False  # MACs or ratio targets too: time the pruned model against the baseline this way (no target)

    def check(self, bound: Bound) -> None:
        for key in ("batch_size", "threads", "repeats", "max_attempts"):
            bound(key, ge=1)
        bound("rounds", ge=2, why="a spread needs two rounds")
        bound("levels", ge=2, why="channel counts per group in the latency table")
        bound("tolerance", gt=0, lt=0.5, why="a fraction of latency")


@dataclass
class StructuredConfig:
    method: str = "l2"  # importance: l1 | l2 | bn_scale | taylor | lamp | fpgm | random (see tools.pruning.structured)
    granularity: str = "channel"  # channel (physically smaller) | kernel | intra_kernel (masks, see tools.pruning.kernels)
    pruning_ratio: float = 0.3  # fraction of channels (kernels) removed; used when target_macs_reduction is 0
    target_macs_reduction: float = 0.0  # > 0: search the ratio removing this fraction of MACs instead, e.g. 0.5
    target_tolerance: float = 0.01  # the search lands within this of the target (fraction of MACs: 0.01 = 1 pt)
    target_latency_reduction: float = 0.0  # > 0: prune until the measured latency on structured.latency.backend falls by this fraction
    latency: LatencyTargetConfig = field(default_factory=LatencyTargetConfig)
    global_pruning: bool = True  # rank channels across layers (false: the same ratio in every layer)
    max_pruning_ratio: float = 0.8  # no layer loses more than this fraction of its original channels
    round_to: int = 8  # remaining channel counts are multiples of this (hardware-friendly); 1 = off
    ignored_layers: list[str] = field(default_factory=list)  # module names whose outputs are kept (the classifier always is)
    layer_ratios: dict[str, float] = field(default_factory=dict)  # module name -> its own ratio (overrides pruning_ratio)
    iterative_steps: int = 1  # prune-finetune rounds toward the ratio / target
    step_epochs: int = 1  # fine-tune epochs after each intermediate round; the last round runs finetune.epochs
    calibration_batches: int = 8  # taylor: training batches whose loss gradients are summed
    pattern_size: int = 4  # intra_kernel: entries kept in each 3x3 kernel (centre included)
    num_patterns: int = 8  # intra_kernel: distinct patterns allowed across the model
    bn_scale: BNScaleConfig = field(default_factory=BNScaleConfig)
    goal: GoalConfig = field(default_factory=GoalConfig)

    def check(self, bound: Bound) -> None:
        bound("pruning_ratio", ge=0, lt=1, why="a fraction removed; 1 would remove everything")
        bound("target_macs_reduction", ge=0, lt=1, why="a fraction of MACs removed; 0 = use pruning_ratio")
        bound("target_tolerance", gt=0, lt=0.5, why="a fraction of MACs")
        bound("target_latency_reduction", ge=0, lt=1, why="a fraction of measured latency removed; 0 = off")
        bound("max_pruning_ratio", gt=0, le=1)
        bound("round_to", ge=1, why="1 = off")
        bound("layer_ratios", ge=0, lt=1, why="a fraction removed")
        bound("iterative_steps", ge=1)
        bound("step_epochs", ge=0)
        bound("calibration_batches", ge=1)
        bound("pattern_size", ge=1, le=9, why="entries kept per 3x3 kernel")
        bound("num_patterns", ge=1)


@dataclass
class ExportConfig:
    format: str = "both"  # onnx | torchscript | both
    opset: int = 17  # ONNX opset (the TorchScript-based exporter supports 7-20)
    tolerance: float = 1e-5  # --verify: absolute part; fails when max |PyTorch - exported| > tolerance + rtol x largest |logit|
    rtol: float = 1e-4  # --verify: part relative to the logits' scale (float32 rounding grows with it; a wrong export is far off)
    verify_batch_sizes: list[int] = field(default_factory=lambda: [1, 8])

    def check(self, bound: Bound) -> None:
        bound("opset", ge=1)
        bound("tolerance", ge=0, why="max |PyTorch - exported| allowed")
        bound("rtol", ge=0, why="a fraction of the largest |logit|")
        bound("verify_batch_sizes", ge=1)


@dataclass
class QuantizeConfig:
    """Static INT8 quantization of an exported ONNX model (scripts.quantize, ONNX Runtime, QDQ format)."""

    calibration: str = "minmax"  # minmax | entropy | percentile: how activation ranges are set (ORT calibrators)
    num_images: int = 512  # unaugmented training images the activation ranges are calibrated on
    percentile: float = 99.999  # percentile calibration only: the activation percentile kept
    per_channel: bool = True  # one weight scale per output channel (false: one per tensor)
    activation_type: str = "uint8"  # uint8 (U8S8, ORT's fast x86 path incl. VNNI) | int8 (S8S8, slower on x86)
    max_drop: float = 1.0  # INT8 top-1 at most this many points below the FP32 ONNX file's, else NOT MET
    qat_epochs: int = 0  # > 0: when PTQ misses max_drop, fine-tune this many epochs with fake quantization, re-quantize
    qat_lr: float = 0.001  # QAT learning rate (other optimiser settings from finetune.*); BN is folded, so keep it small


@dataclass
class PruneAtInitConfig:
    """Pruning at initialization (scripts.prune_at_init), the Synaptic-Flow protocol. Density =
    fraction of prunable weights kept = 10^-compression; sparsity = 1 - density."""

    experiment: str = "singleshot"  # singleshot | multishot (prune-train-rewind levels, lottery style)
    pruners: list[str] = field(default_factory=lambda: ["synflow"])  # rand | mag | snip | grasp | synflow; several = a grid
    compressions: list[float] = field(default_factory=lambda: [1.0])  # density = 10^-compression (1 keeps 10%)
    levels: list[int] = field(default_factory=lambda: [1, 2, 3])  # multishot: prune-train-rewind rounds per compression
    scope: str = "global"  # global (one ranking over all layers) | local (every layer at the density)
    schedule: str = "exponential"  # density per prune iteration: exponential (d^(t/T)) | linear
    prune_epochs: int = 100  # synflow: score-prune iterations
    prune_epochs_others: int = 1  # rand, mag, snip, grasp: score-prune iterations (1 = one shot, as in their papers)
    prune_images: int = 0  # snip/grasp: training images the scores are summed over; 0 = 10 per class
    pre_epochs: int = 0  # training before pruning (multishot: before every level's prune)
    post_epochs: int = 10  # training after pruning, masks held (train.* optimiser and schedule)
    keep_classifier_dense: bool = False  # never prune the last linear layer
    prune_biases: bool = False  # also prune conv/linear biases
    prune_bn: bool = False  # also prune BatchNorm scales
    grasp_temperature: float = 200.0  # GraSP divides the logits by this
    save_trace: bool = False  # Chrome trace of one inference step per run, with its convolution time

    def check(self, bound: Bound) -> None:
        bound("compressions", ge=0, why="density = 10^-compression")
        bound("levels", ge=1)
        bound("prune_epochs", ge=1)
        bound("prune_epochs_others", ge=1)
        bound("prune_images", ge=0, why="0 = 10 per class")
        bound("pre_epochs", ge=0)
        bound("post_epochs", ge=0)
        bound("grasp_temperature", gt=0)


@dataclass
class ProfileConfig:
    warmup: int = 10  # untimed iterations before timing
    repeats: int = 50  # timed iterations; median and p90 come from these
    batch_sizes: list[int] = field(default_factory=lambda: [1, 32, 256])
    num_threads: int = 0  # CPU threads for timing; 0 = torch's default
    rounds: int = 1  # > 1: models take turns, repeats / rounds runs each per round (fair on a shared machine)

    def check(self, bound: Bound) -> None:
        bound("warmup", ge=0)
        bound("repeats", ge=1)
        bound("batch_sizes", ge=1)
        bound("num_threads", ge=0, le=4096, why="0 = torch's default")
        bound("rounds", ge=1)


@dataclass
class BenchConfig:
    # Read by scripts.benchmark only: a file in cfgs/bench/ is both a run's recipe and one row of
    # docs/benchmarks.md. Every other script ignores this section.
    script: str = ""  # train | prune_structured | prune_unstructured | profile | loader_speed | quantize
    needs: list[str] = field(default_factory=list)  # benchmarks whose models this row uses (profile: baseline first)
    table: str = ""  # the docs/benchmarks.md table the row belongs to
    device: str = "cpu"  # cpu | cuda: the device the row is defined for (cuda rows stay pending without a GPU)
    args: list[str] = field(default_factory=list)  # extra flags for the script, e.g. ["--backend", "both"]
    targets: dict[str, float] = field(default_factory=dict)  # e.g. {max_drop: 1.0}; see tools.workflows.benchmark.TARGETS
    seeds: list[int] = field(default_factory=list)  # one run per seed (train.seed) in <row>/seed<k>/; [] -> one run
    expected_min: float = 0.0  # estimated wall minutes of the row (an estimate, printed before it runs; --budget-min uses it); 0 = none
    priority: int = 0  # --run all runs higher priorities first (the headline rows); equal ones in name order

    def check(self, bound: Bound) -> None:
        bound("seeds", ge=0, lt=2**32)


@dataclass
class PipelineConfig:
    # Read by scripts.pipeline only.
    latency_target_reduction: float = 0.0  # > 0: a second structured step prunes to this MEASURED latency reduction (timed as structured.latency says), beside the MACs-targeted one

    def check(self, bound: Bound) -> None:
        bound("latency_target_reduction", ge=0, lt=1, why="a fraction of latency; 0 = no latency-targeted step")


@dataclass
class OutputConfig:
    root: str = "results"  # run folders are created under <root>/<script>/
    name: str = ""  # run folder name; "" -> the config file's stem


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    unstructured: UnstructuredConfig = field(default_factory=UnstructuredConfig)
    structured: StructuredConfig = field(default_factory=StructuredConfig)
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    pai: PruneAtInitConfig = field(default_factory=PruneAtInitConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)


# ----------------------------------------------------------------------------- loading
BASE_KEY = "base"


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    base: tuple[dict, str] | None = None,
) -> Config:
    """Defaults < `base` (a config dict and where it came from, e.g. a checkpoint's) < YAML at
    `path` (and its bases) < `overrides` ("a.b=value") < `flags` (dotted key -> value, from a
    script's own options; None values are ignored)."""
    layers: list[tuple[dict, str]] = [_without_trust(base)] if base else []
    if path is not None:
        layers += _read_yaml_chain(Path(path))
    for item in overrides or []:
        layers.append((_parse_override(item), "--set"))
    flag_tree: dict = {}
    for key, value in (flags or {}).items():
        if value is not None:
            _set_dotted(flag_tree, key, value)
    if flag_tree:
        layers.append((flag_tree, "command-line flags"))

    if base:  # a stored config from before data.normalize kept its (silent) normalization
        layers[0] = (legacy_normalize(layers[0][0]), base[1])  # layers[0] is the stored config less its trust
    merged: dict = {}
    origins: dict[str, str] = {}  # dotted key -> the last layer that set it, for range errors
    for tree, source in layers:
        _check_tree(tree, Config, source, prefix="")
        _deep_merge(merged, tree)
        _record_origins(tree, source, "", origins)
    cfg = _build(Config, merged, prefix="")
    check_ranges(cfg, lambda key: origins.get(key, "the defaults"))
    if base:
        _refuse_factory_from_file(cfg, base[1], layers[1:])
        print(inherited_line(cfg, origins, base[1]))
    return cfg


def is_factory_name(name: str) -> bool:
    """Whether model.name names code to import and call (`package.module:factory`, `file.py:factory`);
    every other form (registry, torchvision) is a plain name, and none of those holds a colon.

    >>> is_factory_name("tests/assets/cifar_resnet.py:resnet"), is_factory_name("resnet20")
    (True, False)
    """
    return ":" in name


def _without_trust(base: tuple[dict, str]) -> tuple[dict, str]:
    """`base` (a checkpoint's stored config) minus model.trust_checkpoint: a file never grants
    itself (or the files it names) the right to run code; only the user's config or flags do."""
    tree, source = base
    model = tree.get("model") if isinstance(tree, dict) else None
    if isinstance(model, dict) and "trust_checkpoint" in model:
        tree = {**tree, "model": {k: v for k, v in model.items() if k != "trust_checkpoint"}}
    return tree, source


def _refuse_factory_from_file(cfg: Config, source: str, user_layers: list[tuple[dict, str]]) -> None:
    """A model.name that imports and calls code is taken from the user's own config or command line
    (or with --trust-checkpoint), never from the stored config of a file (`source`), which anyone
    can edit without unpickling anything: `os:system` with kwargs {command: ...} would run there."""
    name = cfg.model.name
    if not is_factory_name(name) or cfg.model.trust_checkpoint:
        return
    if any(isinstance(tree.get("model"), dict) and "name" in tree["model"] for tree, _ in user_layers):
        return  # the user named it (the same or another factory)
    raise UserError(f"model.name {name!r} comes from the config stored in {source}; a module:factory name runs code, "
                    f"so it is taken only from your own config or command line: pass --set model.name={name} "
                    "(or a --config naming it) if you trust that code, or --trust-checkpoint if you trust the file")


def inherited_line(cfg: Config, origins: dict[str, str], source: str) -> str:
    """One line naming the keys whose value comes from `source` (the checkpoint's stored config:
    --config, --set and flags did not set them) and differs from the defaults."""
    ours, default = _leaves(config_to_dict(cfg)), _leaves(config_to_dict(Config()))
    every = _all_keys(Config)
    sections = {k.rsplit(".", 1)[0] for k in every if "." in k}  # their keys are listed one by one
    keys = [k for k in every if k not in sections and origins.get(k) == source and ours[k] != default.get(k)]
    listed = ", ".join(f"{k}={ours[k]}" for k in keys) or "none besides the defaults"
    return (f"config: kept from {source} (defaults < checkpoint < --config < --set < flags; "
            f"override any with --set): {listed}")


def _leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        out[prefix + key] = value
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
    return out


def legacy_normalize(tree: dict) -> dict:
    """A stored config without data.normalize (written before it existed) that read image files
    per sample (DataLoader path) was normalized with ImageNet's statistics: keep that."""
    data = tree.get("data") if isinstance(tree, dict) else None
    if not isinstance(data, dict) or "normalize" in data or data.get("name") not in ("imagefolder", "packed"):
        return tree
    size_px = data.get("image_size") or 224
    if data.get("fast_path", True) and size_px <= 64:
        return tree
    return tree | {"data": data | {"normalize": "imagenet"}}


def stored_config(config: dict) -> dict:
    """`config` as a run folder or checkpoint stores it: a relative data.root made absolute (from
    the folder the run started in), so the stored config works from any folder later."""
    data = config.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("root"), str) or Path(data["root"]).expanduser().is_absolute():
        return config
    return config | {"data": data | {"root": str(Path(data["root"]).resolve())}}


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(tree: dict, source: str = "checkpoint") -> Config:
    _check_tree(tree, Config, source, prefix="")
    cfg = _build(Config, tree, prefix="")
    check_ranges(cfg, lambda key: source)
    return cfg


def _record_origins(tree: dict, source: str, prefix: str, origins: dict[str, str]) -> None:
    for key, value in tree.items():
        origins[prefix + str(key)] = source
        if isinstance(value, dict):
            _record_origins(value, source, f"{prefix}{key}.", origins)


def save_config(cfg: Config, path: str | Path) -> None:
    from tools.core.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(stored_config(config_to_dict(cfg)), sort_keys=False))


def _read_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    if not path.is_file():
        raise UserError(f"config file {path} not found; pass an existing file, e.g. --config cfgs/quickstart.yaml")
    resolved = path.resolve()
    if resolved in seen:
        raise UserError(f"config {path} extends itself through 'base:'; remove the cycle")
    tree = read_yaml_file(path)
    if tree is None:  # an empty file is more likely a mistake than a wish for every default
        raise UserError(f"config {path} is empty; write its sections (data:, model:, train:, ...) or pass another "
                        "file, e.g. --config cfgs/quickstart.yaml")
    if not isinstance(tree, dict):
        raise UserError(f"config {path} must be a mapping of sections (data:, model:, train:, ...)")
    layers: list[tuple[dict, str]] = []
    base = tree.pop(BASE_KEY, None)
    if base is not None:
        if not isinstance(base, str):
            raise UserError(f"'base' in {path} must be a file name, got {base!r}")
        layers += _read_yaml_chain(path.parent / base, seen + (resolved,))
    layers.append((tree, str(path)))
    return layers


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(f"duplicate key {key!r}")
        self.where = f"at line {line} (first at line {first_line}); keep one"


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when installed
    """yaml.SafeLoader that rejects a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        raise DuplicateKeyError(key, line, first[key])
                    first[key] = line
                except TypeError:  # an unhashable key: the base class reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path) -> Any:
    """The YAML document in `path`; one-line UserErrors for bytes that are not UTF-8, syntax
    errors and duplicate keys, each naming the file (and line)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as e:
        raise UserError(f"{e} in {path} {e.where}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise UserError(f"YAML syntax error in {path}{where}: {problem}; fix the file") from None


def _parse_override(item: str) -> dict:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects key=value (e.g. train.epochs=3), got {item!r}")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # an unparsable value stays a string; the type check will judge it
    tree: dict = {}
    _set_dotted(tree, key.strip(), value)
    return tree


def _set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _deep_merge(dst: dict, src: dict) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _deep_merge(dst[key], value)
        else:
            dst[key] = value


# ----------------------------------------------------------------------------- checking
def _all_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        keys.append(name)
        hint = _hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            keys += _all_keys(hint, name + ".")
    return keys


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_tree(tree: dict, cls: type, source: str, prefix: str) -> None:
    hints = _hints(cls)
    for key, value in tree.items():
        full = prefix + str(key)
        if key not in hints:
            raise UserError(f"unknown key {full} in {source}{_suggest(full)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise UserError(f"key {full} in {source} must be a section (a mapping), got {value!r}")
            _check_tree(value, hint, source, full + ".")
        else:
            _coerce(value, hint, full, source)


def _suggest(full: str) -> str:
    close = difflib.get_close_matches(full, _all_keys(Config), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else "; see the config reference in README.md"


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(typing.get_args(hint)[1])}"
    return {int: "an integer", float: "a finite number", bool: "true/false", str: "a string"}.get(hint, str(hint))


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    def bad() -> UserError:
        return UserError(f"key {key} in {source} must be {_type_name(hint)}, got {value!r}")

    if hint is Any:  # free-form values (model.kwargs): YAML already limited them to plain data
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key, source)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise bad()
        return [_coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        key_type, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise bad()
        return {_coerce(k, key_type, key, source): _coerce(v, item, f"{key}.{k}", source) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if hint is float:
        try:  # PyYAML reads 5e-4 (no dot) as a string
            number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float, str)) else None
        except (ValueError, OverflowError):
            number = None
        if number is None or not math.isfinite(number):
            raise bad()
        return number
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad()
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a schema bug, not user input


def _build(cls: type, tree: dict, prefix: str) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for key, value in tree.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, prefix + key + ".")
        else:
            kwargs[key] = _coerce(value, hint, prefix + key, "config")
    return cls(**kwargs)
