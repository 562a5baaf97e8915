"""The prune-at-initialization experiments: singleshot and multishot grids, one results row each.

    uv run python -m scripts.prune_at_init --config cfgs/at_init_quickstart.yaml --experiment multishot --level-list 1,2 --set pai.pre_epochs=1

    plan = make_plan(cfg.pai)
    ctx = RunContext(cfg=cfg, data=data, device=device, run_dir=run_dir, config=config_to_dict(cfg))
    rows = run_experiment(ctx, plan)      # also writes results.csv / results.yaml after every run

singleshot (Synaptic-Flow's Experiments/singleshot.py): build the model (seed train.seed),
optionally train it `pre_epochs`, keep that state; then for every compression and pruner start
from that same state, prune to density 10^-compression, train `post_epochs` with the masks held
(after every optimizer step), evaluate.

multishot (Experiments/multishot.py, lottery style): for every compression, level count L and
pruner, start from the initial weights and repeat L times: train `pre_epochs`, prune to
density^(l/L), rewind every weight to its initial value (masks kept). Then train `post_epochs`.
The original's rewind filters state_dict() entries by requires_grad, which state_dict tensors
never have, so it rewinds nothing; this one does rewind.

Each run gets a folder `<pruner>_c<compression>[_L<levels>]/` with fit's log.csv, TensorBoard
logs, checkpoints, layer_density.csv, pruned_model.pth (plain weights with exact zeros) and with
`pai.save_trace` trace.json. Every training phase reports wall time and peak memory (CUDA: peak
allocated; CPU: the process's peak RSS, a high-water mark since it started).
"""

from __future__ import annotations

import copy
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from tools.core.config import Config
from tools.core.errors import UserError
from tools.core.io import atomic_torch_save, atomic_write_csv, atomic_write_yaml
from tools.core.run_folder import PRUNED_MODEL, RESULTS_CSV
from tools.measure.metrics import count_macs_params, count_nonzero_macs_params, flops_from_macs
from tools.modeling.checkpoint import save_checkpoint
from tools.modeling.registry import build_from_config
from tools.pruning.at_init import (
    DATA_PRUNERS,
    ScoreInputs,
    check_pruner,
    check_schedule,
    check_scope,
    density_from_compression,
    format_density_table,
    initial_state,
    prune_batches,
    prune_to_density,
    rewind_weights,
)
from tools.pruning.config import PruneAtInitConfig
from tools.pruning.unstructured import enforce_masks, prunable_targets, remove_pruning_reparameterization
from tools.training.engine import check_amp, evaluate
from tools.training.fit import FitOptions, fit

EXPERIMENTS = ("singleshot", "multishot")
MIB = 2**20


# ----------------------------------------------------------------------------- the plan
@dataclass
class AtInitPlan:
    """The `pai` section, checked."""

    experiment: str
    pruners: list[str]
    compressions: list[float]
    levels: list[int] = field(default_factory=lambda: [1])
    scope: str = "global"
    schedule: str = "exponential"
    prune_epochs: int = 100
    prune_epochs_others: int = 1
    prune_images: int = 0
    pre_epochs: int = 0
    post_epochs: int = 10
    keep_classifier_dense: bool = False
    prune_biases: bool = False
    prune_bn: bool = False
    grasp_temperature: float = 200.0
    save_trace: bool = False

    def iterations(self, pruner: str) -> int:
        return self.prune_epochs if pruner == "synflow" else self.prune_epochs_others

    @property
    def needs_data(self) -> bool:
        return any(p in DATA_PRUNERS for p in self.pruners)

    def point_levels(self) -> list[int]:
        return self.levels if self.experiment == "multishot" else [1]

    def describe(self) -> str:
        grid = ", ".join(
            f"c={c:g} (density {density_from_compression(c):.4g}, sparsity {1 - density_from_compression(c):.4g})"
            for c in self.compressions
        )
        levels = f"; levels {self.levels}" if self.experiment == "multishot" else ""
        return (
            f"{self.experiment}: pruners {', '.join(self.pruners)} x compressions {grid}{levels}; "
            f"{self.scope} scope, {self.schedule} schedule, synflow {self.prune_epochs} iterations, others "
            f"{self.prune_epochs_others}; pre-train {self.pre_epochs} epoch(s), post-train {self.post_epochs}"
        )


def _positive_ints(values: list[int], what: str, minimum: int) -> None:
    if any(v < minimum for v in values):
        raise UserError(f"{what} must be >= {minimum}, got {values}")


def make_plan(pai: PruneAtInitConfig) -> AtInitPlan:
    """Validate the section; UserError names the bad key."""
    if pai.experiment not in EXPERIMENTS:
        raise UserError(f"unknown experiment {pai.experiment!r}; choose singleshot or multishot")
    if not pai.pruners or not pai.compressions:
        raise UserError(
            "pai.pruners and pai.compressions need at least one entry each, e.g. --pruner-list synflow --compression-list 1"
        )
    for pruner in pai.pruners:
        check_pruner(pruner)
    for compression in pai.compressions:
        density_from_compression(compression)
    check_scope(pai.scope)
    check_schedule(pai.schedule)
    if pai.experiment == "multishot" and not pai.levels:
        raise UserError("multishot needs pai.levels, e.g. --level-list 1,2,3")
    _positive_ints(pai.levels, "pai.levels", 1)
    _positive_ints([pai.prune_epochs], "pai.prune_epochs", 1)
    _positive_ints([pai.prune_epochs_others], "pai.prune_epochs_others", 1)
    _positive_ints([pai.prune_images, pai.pre_epochs, pai.post_epochs], "pai.prune_images/pre_epochs/post_epochs", 0)
    if pai.grasp_temperature <= 0:
        raise UserError(f"pai.grasp_temperature must be > 0, got {pai.grasp_temperature}")
    return AtInitPlan(
        experiment=pai.experiment,
        pruners=list(dict.fromkeys(pai.pruners)),
        compressions=list(dict.fromkeys(float(c) for c in pai.compressions)),
        levels=list(pai.levels),
        scope=pai.scope,
        schedule=pai.schedule,
        prune_epochs=pai.prune_epochs,
        prune_epochs_others=pai.prune_epochs_others,
        prune_images=pai.prune_images,
        pre_epochs=pai.pre_epochs,
        post_epochs=pai.post_epochs,
        keep_classifier_dense=pai.keep_classifier_dense,
        prune_biases=pai.prune_biases,
        prune_bn=pai.prune_bn,
        grasp_temperature=pai.grasp_temperature,
        save_trace=pai.save_trace,
    )


# ----------------------------------------------------------------------------- context
@dataclass
class RunContext:
    cfg: Config
    data: object  # datasets.DataBundle
    device: torch.device
    run_dir: Path
    config: dict

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.input_shape)

    @property
    def amp(self) -> str:
        """The mixed precision actually used (CPU falls back to fp32, with a warning once)."""
        return check_amp(self.cfg.train.amp, self.device)

    def fresh_model(self, state: dict | None = None) -> nn.Module:
        torch.manual_seed(self.cfg.train.seed)  # same initial weights whatever ran before
        model = build_from_config(self.cfg.model, num_classes=self.data.num_classes, input_shape=self.input_shape)
        if state is not None:
            model.load_state_dict(state)
        return model.to(self.device)

    def targets(self, model: nn.Module, plan: AtInitPlan):
        return prunable_targets(
            model,
            keep_classifier_dense=plan.keep_classifier_dense,
            prune_biases=plan.prune_biases,
            prune_bn=plan.prune_bn,
        )


# ----------------------------------------------------------------------------- training cost
def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    """(MiB, what was measured): CUDA peak allocated since the last reset, else the process's
    peak resident set size (a high-water mark that cannot be reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB, "cuda_peak_allocated"
    try:
        import resource
    except ImportError:  # Windows has no getrusage
        return None, "unavailable"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB, macOS bytes
    return rss_bytes / MIB, "cpu_peak_rss_process"


def train_phase(model: nn.Module, ctx: RunContext, *, epochs: int, run_dir: Path, tag: str, masked: bool) -> dict:
    """fit() for `epochs` with the train.* optimiser; masks re-applied after every step when
    `masked`. Returns wall time (s), peak memory (MiB) and the final/best validation top-1."""
    if epochs == 0:
        return {"epochs": 0, "wall_time_s": 0.0, "peak_memory_mib": None, "memory_kind": None, "best_val_top1": None}
    _reset_peak_memory(ctx.device)
    start = time.perf_counter()
    options = FitOptions(after_step=(lambda: enforce_masks(model)) if masked else None, tag=tag)
    summary = fit(
        model,
        ctx.data,
        train_cfg=replace(ctx.cfg.train, epochs=epochs),
        run_dir=run_dir,
        config=ctx.config,
        device=ctx.device,
        options=options,
    )
    wall_time_s = time.perf_counter() - start
    peak, kind = peak_memory_mib(ctx.device)
    return {
        "epochs": summary["epochs_run"],
        "wall_time_s": wall_time_s,
        "peak_memory_mib": peak,
        "memory_kind": kind,
        "best_val_top1": summary["best_top1"],
    }


def _merge_costs(costs: list[dict]) -> dict:
    ran = [c for c in costs if c["epochs"]]
    peaks = [c["peak_memory_mib"] for c in ran]
    return {
        "epochs": sum(c["epochs"] for c in costs),
        "wall_time_s": sum(c["wall_time_s"] for c in costs),
        "peak_memory_mib": max(peaks) if peaks else None,
        "memory_kind": ran[0]["memory_kind"] if ran else None,
    }


# ----------------------------------------------------------------------------- evaluation
def _plain_copy(model: nn.Module) -> nn.Module:
    return remove_pruning_reparameterization(copy.deepcopy(model)).eval()


def evaluate_point(model: nn.Module, ctx: RunContext) -> dict:
    """Top-1/top-5 on the test split (the final weights), the time to run the whole test set
    (after one warm-up batch), dense and non-zero MACs and FLOPs (FLOPs = 2 x MACs)."""
    plain = _plain_copy(model)
    first = next(iter(ctx.data.test))[0].to(ctx.device)
    with torch.inference_mode():
        plain(first)  # warm-up: allocation and kernel selection are not inference time
    test = evaluate(plain, ctx.data.test, device=ctx.device, amp=ctx.amp)
    shape = (1, *ctx.input_shape)
    dense_macs, params = count_macs_params(plain, shape)
    nonzero_macs, nonzero_params = count_nonzero_macs_params(plain, shape)
    return {
        "top1": test["top1"],
        "top5": test["top5"],
        "test_loss": test["loss"],
        "test_images": test["num_samples"],
        "inference_time_s": test["time_s"],
        "inference_ms_per_image": 1000.0 * test["time_s"] / max(test["num_samples"], 1),
        "dense_macs": dense_macs,
        "dense_flops": flops_from_macs(dense_macs),
        "nonzero_macs": nonzero_macs,
        "nonzero_flops": flops_from_macs(nonzero_macs),
        "params": params,
        "nonzero_params": nonzero_params,
        "flops_reduction": dense_macs / nonzero_macs if nonzero_macs else float("inf"),
    }


def trace_figures(model: nn.Module, ctx: RunContext, path: Path) -> dict:
    from tools.measure.traces import conv_time_from_trace, record_inference_trace

    images = next(iter(ctx.data.test))[0]
    record_inference_trace(_plain_copy(model), images, path, device=ctx.device)
    stats = conv_time_from_trace(path, device_type=ctx.device.type)
    return {
        "trace": str(path),
        "trace_batch_size": len(images),
        "conv_time_ms": stats["conv_time_ms"],
        "step_time_ms": stats["step_time_ms"],
        "conv_share_pct": stats["conv_share_pct"],
    }


# ----------------------------------------------------------------------------- one run of the grid
@dataclass
class Point:
    pruner: str
    compression: float
    level: int | None  # multishot only

    @property
    def name(self) -> str:
        return f"{self.pruner}_c{self.compression:g}" + (f"_L{self.level}" if self.level else "")

    @property
    def density(self) -> float:
        return density_from_compression(self.compression)


def _prune(model, targets, ctx: RunContext, plan: AtInitPlan, *, pruner: str, density: float, batches) -> dict:
    inputs = ScoreInputs(
        batches,
        ctx.input_shape,
        generator=torch.Generator().manual_seed(ctx.cfg.train.seed),
        grasp_temperature=plan.grasp_temperature,
    )
    return prune_to_density(
        model,
        targets,
        pruner=pruner,
        density=density,
        scope=plan.scope,
        schedule=plan.schedule,
        iterations=plan.iterations(pruner),
        inputs=inputs,
    )


def prune_point(
    model, targets, ctx: RunContext, plan: AtInitPlan, point: Point, *, batches, init_state, point_dir: Path
) -> tuple[dict, list[dict], float]:
    """Singleshot: one prune to the density. Multishot: `level` rounds of pre-train, prune to
    density^(l/level), rewind. Returns (density report, pre-training costs, pruning seconds)."""
    costs, prune_s = [], 0.0
    for round_i in range(1, (point.level or 1) + 1):
        if point.level:
            costs.append(
                train_phase(
                    model,
                    ctx,
                    epochs=plan.pre_epochs,
                    run_dir=point_dir / f"level{round_i}_pretrain",
                    tag=f"{point.name} pre {round_i}",
                    masked=round_i > 1,
                )
            )
        start = time.perf_counter()
        report = _prune(
            model,
            targets,
            ctx,
            plan,
            pruner=point.pruner,
            density=point.density ** (round_i / (point.level or 1)),
            batches=batches,
        )
        prune_s += time.perf_counter() - start
        if point.level:
            rewind_weights(model, init_state)
            print(
                f"  level {round_i}/{point.level}: density {report['density']:.5f} (sparsity {report['sparsity']:.5f}), "
                f"weights rewound to initialisation, masks kept"
            )
    return report, costs, prune_s


def run_point(
    ctx: RunContext, plan: AtInitPlan, point: Point, *, start_state: dict, batches
) -> tuple[dict, list[dict]]:
    """Prune, post-train, evaluate one grid point; returns (results row, per-layer densities)."""
    point_dir = ctx.run_dir / point.name
    model = ctx.fresh_model(start_state)
    targets = ctx.targets(model, plan)
    print(
        f"\n== {point.name}: {point.pruner}, compression {point.compression:g} -> target density "
        f"{point.density:.5g} (sparsity {1 - point.density:.5g})" + (f", {point.level} level(s)" if point.level else "")
    )
    report, pre_costs, prune_s = prune_point(
        model, targets, ctx, plan, point, batches=batches, init_state=start_state, point_dir=point_dir
    )
    print(format_density_table(report))
    if report["collapsed_layers"]:
        print(
            f"LAYER COLLAPSE: {', '.join(report['collapsed_layers'])} kept no weight (a plain chain of layers is "
            "cut there; a residual branch leaves only its parallel path)"
        )
    post = train_phase(model, ctx, epochs=plan.post_epochs, run_dir=point_dir, tag=point.name, masked=True)
    figures = evaluate_point(model, ctx)
    if plan.save_trace:
        figures |= trace_figures(model, ctx, point_dir / "trace.json")
    row = _row(
        ctx,
        plan,
        point,
        report,
        figures,
        pre=_merge_costs(pre_costs) if pre_costs else None,
        post=post,
        prune_s=prune_s,
    )
    _save_point(model, targets, ctx, point_dir, row, report)
    print(format_row(row))
    return row, report["layers"]


def _row(
    ctx: RunContext,
    plan: AtInitPlan,
    point: Point,
    report: dict,
    figures: dict,
    *,
    pre: dict | None,
    post: dict,
    prune_s: float,
) -> dict:
    costs = [c for c in (pre, post) if c]
    total = _merge_costs(costs)
    row = {
        "experiment": plan.experiment,
        "data": ctx.cfg.data.name,
        "model": ctx.cfg.model.name,
        "pruner": point.pruner,
        "compression": point.compression,
        "level": point.level or "",
        "target_density": point.density,
        "density": report["density"],
        "sparsity": report["sparsity"],
        "remaining_params": report["remaining"],
        "prunable_params": report["total"],
        "collapsed_layers": len(report["collapsed_layers"]),
        "collapsed": ";".join(report["collapsed_layers"]),
        "scope": plan.scope,
        "schedule": plan.schedule,
        "prune_iterations": plan.iterations(point.pruner),
        "prune_time_s": prune_s,
        "pre_epochs": plan.pre_epochs,
        "post_epochs": post["epochs"],
        "best_val_top1": post["best_val_top1"],
    }
    row |= figures
    row |= {
        "pre_train_wall_time_s": pre["wall_time_s"] if pre else 0.0,
        "post_train_wall_time_s": post["wall_time_s"],
        "train_wall_time_s": total["wall_time_s"],
        "peak_memory_mib": total["peak_memory_mib"],
        "memory_kind": total["memory_kind"],
        "amp": ctx.amp,
        "device": str(ctx.device),
        "seed": ctx.cfg.train.seed,
    }
    return row


def _save_point(model, targets, ctx: RunContext, point_dir: Path, row: dict, report: dict) -> None:
    atomic_write_csv(
        point_dir / "layer_density.csv",
        [
            r | {"sparsity": 1 - r["density"], "collapsed": r["name"] in report["collapsed_layers"]}
            for r in report["layers"]
        ],
    )
    save_checkpoint(point_dir / PRUNED_MODEL, model=_plain_copy(model), config=ctx.config, metrics=row)


def format_row(row: dict) -> str:
    collapse = f"  COLLAPSED: {row['collapsed']}" if row["collapsed_layers"] else ""
    trace = (
        f"  conv {row['conv_time_ms']:.2f} of {row['step_time_ms']:.2f} ms ({row['conv_share_pct']:.1f}%) "
        f"per inference step"
        if "conv_time_ms" in row
        else ""
    )
    memory = f"{row['peak_memory_mib']:.0f} MiB ({row['memory_kind']})" if row["peak_memory_mib"] else "n/a"
    return (
        f"{row['pruner']} c={row['compression']:g}: density {row['density']:.5f} (sparsity {row['sparsity']:.5f})  "
        f"test top1 {row['top1']:.2f}% top5 {row['top5']:.2f}%  test-set inference {row['inference_time_s']:.2f} s  "
        f"FLOPs dense {row['dense_flops']:,} non-zero {row['nonzero_flops']:,} (= 2 x MACs)  "
        f"training {row['train_wall_time_s']:.1f} s, peak memory {memory}, amp {row['amp']}{collapse}{trace}"
    )


# ----------------------------------------------------------------------------- the grid
def start_state_for(ctx: RunContext, plan: AtInitPlan) -> tuple[dict, dict | None]:
    """The state every run starts from: the initial weights, pre-trained once in singleshot.
    Also saved as start_model.pth. Returns (state, pre-training cost or None)."""
    model = ctx.fresh_model()
    cost = None
    if plan.experiment == "singleshot" and plan.pre_epochs:
        cost = train_phase(
            model, ctx, epochs=plan.pre_epochs, run_dir=ctx.run_dir / "pretrain", tag="pretrain", masked=False
        )
    state = initial_state(model)
    atomic_torch_save(
        {"model": state, "config": ctx.config, "pre_epochs": plan.pre_epochs if cost else 0},
        ctx.run_dir / "start_model.pth",
    )
    return state, cost


def grid(plan: AtInitPlan) -> list[Point]:
    """Compression outermost, as Synaptic-Flow's scripts loop."""
    multishot = plan.experiment == "multishot"
    return [
        Point(p, c, level if multishot else None)
        for c in plan.compressions
        for level in plan.point_levels()
        for p in plan.pruners
    ]


def run_experiment(ctx: RunContext, plan: AtInitPlan) -> list[dict]:
    """Every grid point, results written after each (a killed grid keeps what finished)."""
    if plan.experiment == "multishot" and plan.pre_epochs == 0:
        print(
            "note: multishot with pai.pre_epochs=0 prunes the untrained net at every level; "
            "set --pre-epochs for lottery-style training between levels"
        )
    start_state, pretrain = start_state_for(ctx, plan)
    batches = []
    if plan.needs_data:
        batches = prune_batches(ctx.data.train, plan.prune_images or 10 * ctx.data.num_classes, ctx.device)
    rows, layers = [], {}
    for point in grid(plan):
        row, layers[point.name] = run_point(ctx, plan, point, start_state=start_state, batches=batches)
        rows.append(row)
        write_results(ctx, plan, rows, layers, pretrain)
    return rows


def write_results(ctx: RunContext, plan: AtInitPlan, rows: list[dict], layers: dict, pretrain: dict | None) -> None:
    atomic_write_csv(ctx.run_dir / RESULTS_CSV, rows)
    atomic_write_yaml(
        ctx.run_dir / "results.yaml",
        {
            "run": {
                "experiment": plan.experiment,
                "data": ctx.cfg.data.name,
                "model": ctx.cfg.model.name,
                "input_shape": list(ctx.input_shape),
                "num_classes": ctx.data.num_classes,
                "train_images": ctx.data.train.num_samples,
                "test_images": ctx.data.test.num_samples,
                "density_definition": "fraction of prunable weights kept = 10^-compression; sparsity = 1 - density",
                "flops_definition": "FLOPs = 2 x MACs, one forward of one image",
                "inference_time_definition": "seconds to evaluate the whole test split (masks make no dense kernel faster)",
                "pretrain": pretrain,
            },
            "points": [r | {"layers": layers[_point_name(r)]} for r in rows],
        },
    )


def _point_name(row: dict) -> str:
    return Point(row["pruner"], row["compression"], row["level"] or None).name
