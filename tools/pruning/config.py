"""The pruning sections of the config: `unstructured:`, `structured:` (with its latency target,
bn_scale phase and goal), `sensitivity:` and `pai:` (pruning at initialization), read by
tools/pruning's unstructured, structured, latency_target, sensitivity and at_init and by their runs
in tools/runs; each registered with tools.core.config. A new method's keys go here, with their
`check` (or in a section of its own: see docs/architecture.md, "Where new things go").

    >>> StructuredConfig().latency.backend, PruneAtInitConfig().pruners
    ('torch', ['synflow'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.core.config import Bound, config_section


@config_section("unstructured")
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
    score_batches: int = 16  # taylor: batches of gradients summed; movement: steps before the first prune
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


@config_section("sensitivity")
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

    # torch (eager, BN folded) | onnxruntime (CPU provider) | cuda (eager on the GPU) | onnxruntime-int8 (CPU
    # provider, every timed model quantized to INT8 as scripts.quantize does, the dense model too; the run then
    # also writes model.int8.onnx with its top-1 and speed-ups, after quantize.qat_epochs of QAT when > 0)
    backend: str = "torch"
    batch_size: int = 64  # images per timed forward
    threads: int = 1  # intra-op threads for timing (cuda: ignored)
    tolerance: float = 0.05  # the measured reduction lands within this of the target (0.05 = 5 pts); also the largest timing spread accepted
    rounds: int = 7  # interleaved timing rounds of the pruned model against the baseline; medians are compared
    repeats: int = 3  # timed forwards per model per round
    allocation: str = "importance"  # importance: the MACs target's ranking, the measured latency decides where to stop | per_ms: least importance per ms saved (NetAdapt-style)
    levels: int = 6  # channel counts measured per group for the latency table (interpolated between)
    max_attempts: int = 4  # measured re-allocations before giving up on landing within tolerance
    cache_dir: str = (
        "results/latency_cache"  # latency tables keyed by model, backend, batch, threads and host; "" = off
    )
    report: bool = False  # MACs or ratio targets too: time the pruned model against the baseline this way (no target)

    def check(self, bound: Bound) -> None:
        for key in ("batch_size", "threads", "repeats", "max_attempts"):
            bound(key, ge=1)
        bound("rounds", ge=2, why="a spread needs two rounds")
        bound("levels", ge=2, why="channel counts per group in the latency table")
        bound("tolerance", gt=0, lt=0.5, why="a fraction of latency")


@config_section("structured")
@dataclass
class StructuredConfig:
    method: str = "l2"  # importance: one of tools.pruning.structured.STRUCTURED_METHODS (l2, l1, taylor, ...)
    granularity: str = (
        "channel"  # channel (physically smaller) | kernel | intra_kernel (masks, see tools.pruning.kernels)
    )
    pruning_ratio: float = 0.3  # fraction of channels (kernels) removed; used when target_macs_reduction is 0
    target_macs_reduction: float = 0.0  # > 0: search the ratio removing this fraction of MACs instead, e.g. 0.5
    target_tolerance: float = 0.01  # the search lands within this of the target (fraction of MACs: 0.01 = 1 pt)
    target_latency_reduction: float = (
        0.0  # > 0: prune until the measured latency on structured.latency.backend falls by this fraction
    )
    latency: LatencyTargetConfig = field(default_factory=LatencyTargetConfig)
    global_pruning: bool = True  # rank channels across layers (false: the same ratio in every layer)
    max_pruning_ratio: float = 0.8  # no layer loses more than this fraction of its original channels
    round_to: int = 8  # remaining channel counts are multiples of this (hardware-friendly); 1 = off
    ignored_layers: list[str] = field(
        default_factory=list
    )  # module names whose outputs are kept (the classifier always is)
    layer_ratios: dict[str, float] = field(
        default_factory=dict
    )  # module name -> its own ratio (overrides pruning_ratio)
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


@config_section("pai")
@dataclass
class PruneAtInitConfig:
    """Pruning at initialization (scripts.prune_at_init), the Synaptic-Flow protocol. Density =
    fraction of prunable weights kept = 10^-compression; sparsity = 1 - density."""

    experiment: str = "singleshot"  # singleshot | multishot (prune-train-rewind levels, lottery style)
    pruners: list[str] = field(
        default_factory=lambda: ["synflow"]
    )  # rand | mag | snip | grasp | synflow; several = a grid
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
