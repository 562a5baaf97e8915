"""Prune -> fine-tune, one-shot or iterative, and the figures prune_unstructured reports.

    uv run python -m scripts.prune_unstructured --checkpoint results/train/quickstart/best_model.pth --method taylor --sparsity 0.8 --iterative --num-iterations 3

    plan = make_plan(cfg.unstructured)                # validated; per-step sparsities
    job = PruneJob(model, data, plan, targets, finetune_cfg=ft, run_dir=run_dir, config=config, device=device,
                   loss_fn=loss_fn)
    history = run_pruning(job, final_epochs=cfg.finetune.epochs)

One step = gradient scores if the method needs them (taylor: a fresh pass of `score_batches`
batches on the current weights; movement: the -w*g sum kept since the start, the first step
training `score_batches` batches to have one), masks for that step's sparsity, accuracy right
after pruning, then fine-tuning with the masks enforced after every optimizer step
(`step_epochs` epochs between steps, `finetune.epochs` after the last). Each fine-tuning phase
writes its own fit() folder (log.csv, TensorBoard logs, checkpoints) and the best validation
checkpoint of the phase is the one carried on.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from tools.core.config import config_to_dict
from tools.core.errors import UserError
from tools.core.io import atomic_write_yaml, read_yaml_mapping
from tools.core.lineage import LINEAGE, child_lineage, versus
from tools.core.run_folder import BEST, LAST, LOGS, METRICS, PRUNED_MODEL, PRUNED_MODEL_COMPRESSED, RunFolder
from tools.measure.describe import checkpoint_selection, test_set_record
from tools.measure.metrics import (
    count_macs_params,
    count_nonzero_macs_params,
    flops_from_macs,
    format_count,
    layer_sparsity_table,
)
from tools.measure.sparsity_plots import plot_layer_weights
from tools.modeling.checkpoint import read_checkpoint, read_own_checkpoint, save_checkpoint
from tools.pruning.config import UnstructuredConfig
from tools.pruning.unstructured import (
    GRADIENT_METHODS,
    GradientScores,
    Target,
    accumulate_taylor_scores,
    apply_masks,
    enforce_masks,
    natural_mode,
    nm_ineligibility,
    print_layerwise_sparsity,
    prunable_targets,
    prune_step,
    remove_pruning_reparameterization,
    resolve_layer_sparsities,
    resolve_mode,
    schedule_sparsity,
    target_sparsity_report,
    validate_nm,
    validate_sparsity,
)
from tools.training.config import TrainConfig
from tools.training.distill import distillation_loss
from tools.training.engine import LossFn, build_optimizer, cross_entropy, evaluate
from tools.training.fit import (
    PRUNE_STATE,
    FitOptions,
    check_resume,
    finetune_train_config,
    fit,
    load_prune_run,
)


# ----------------------------------------------------------------------------- the plan
@dataclass
class PrunePlan:
    """Everything a pruning run needs from the `unstructured` config, checked and resolved."""

    method: str
    mode: str  # resolved: layerwise | global
    sparsity: float  # final target (nm: 1 - n/m)
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    num_steps: int = 1
    schedule: str = "cubic"
    step_epochs: int = 1
    score_batches: int = 16
    n: int = 2
    m: int = 4

    def step_sparsity(self, step: int) -> float:
        return schedule_sparsity(self.sparsity, step, self.num_steps, self.schedule)

    def step_layer_sparsity(self, step: int) -> dict[str, float]:
        return {k: schedule_sparsity(v, step, self.num_steps, self.schedule) for k, v in self.layer_sparsity.items()}

    def check_targets(self, targets: list[Target]) -> None:
        """Every per-layer key must name a prunable layer (UserError otherwise)."""
        resolve_layer_sparsities(targets, self.sparsity, self.layer_sparsity)

    def describe(self, targets: list[Target], finetune_lr: float, final_epochs: int) -> str:
        weights = sum(t.numel() for t in targets)
        what = (
            f"N:M {self.n}:{self.m} along the input dimension"
            if self.method == "nm"
            else (
                f"{self.mode} allocation"
                + (f", {len(self.layer_sparsity)} per-layer sparsities" if self.layer_sparsity else "")
            )
        )
        steps = (
            "one-shot"
            if self.num_steps == 1
            else (
                f"iterative, {self.num_steps} {self.schedule} steps to "
                + ", ".join(f"{100 * self.step_sparsity(t):.1f}%" for t in range(1, self.num_steps + 1))
                + f", {self.step_epochs} fine-tune epoch(s) between steps"
            )
        )
        return (
            f"pruning: method {self.method} ({what}), target sparsity {100 * self.sparsity:.2f}%, {steps}; "
            f"{len(targets)} tensors, {weights:,} weights; fine-tune {final_epochs} epoch(s) at lr {finetune_lr:g}"
        )

    @property
    def run_name(self) -> str:
        """<method>_<mode>_sp<sparsity>, plus _it<T><schedule> when iterative."""
        method = f"nm{self.n}of{self.m}" if self.method == "nm" else self.method
        sp = "dict" if self.layer_sparsity else f"{self.sparsity:g}"
        name = f"{method}_{self.mode}_sp{sp}"
        return name + (f"_it{self.num_steps}{self.schedule}" if self.num_steps > 1 else "")


def load_sparsity_file(path: str) -> dict[str, float]:
    """A YAML mapping of module name (or prefix) -> sparsity, as scripts.sensitivity writes."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"sparsity file {p} not found; pass the layer_sparsity.yaml written by scripts.sensitivity")
    tree = read_yaml_mapping(p)
    if tree is None or not all(isinstance(k, str) for k in tree):
        raise UserError(
            f"sparsity file {p} must be a YAML mapping of layer names to sparsities, e.g. 'layer1.0.conv1: 0.5'"
        )
    for key, value in tree.items():
        validate_sparsity(value, f"sparsity of layer {key!r} in {p}")
    return {k: float(v) for k, v in tree.items()}


def make_plan(ucfg: UnstructuredConfig) -> PrunePlan:
    """Validate the section (UserError naming the bad key) and resolve mode and per-layer dict."""
    layer_sparsity = load_sparsity_file(ucfg.sparsity_file) if ucfg.sparsity_file else {}
    layer_sparsity.update(ucfg.layer_sparsity)
    for key, value in layer_sparsity.items():
        validate_sparsity(value, f"sparsity of layer {key!r}")
    if ucfg.method == "nm":
        validate_nm(ucfg.n, ucfg.m)
        if ucfg.iterative:
            raise UserError("method nm is one-shot (a fixed N:M pattern); drop --iterative")
        layer_sparsity = {}
    sparsity = (
        1.0 - ucfg.n / ucfg.m if ucfg.method == "nm" else validate_sparsity(ucfg.sparsity, "unstructured.sparsity")
    )
    mode = resolve_mode(ucfg.method, ucfg.mode, has_layer_sparsity=bool(layer_sparsity))
    _check_counts(ucfg)
    return PrunePlan(
        method=ucfg.method,
        mode=mode,
        sparsity=sparsity,
        layer_sparsity=layer_sparsity,
        num_steps=ucfg.num_iterations if ucfg.iterative else 1,
        schedule=ucfg.schedule,
        step_epochs=ucfg.step_epochs,
        score_batches=ucfg.score_batches,
        n=ucfg.n,
        m=ucfg.m,
    )


def _check_counts(ucfg: UnstructuredConfig) -> None:
    schedule_sparsity(0.5, 1, max(ucfg.num_iterations, 1), ucfg.schedule)  # rejects an unknown schedule
    if ucfg.iterative and ucfg.num_iterations < 1:
        raise UserError(f"unstructured.num_iterations must be >= 1, got {ucfg.num_iterations}")
    if ucfg.step_epochs < 0:
        raise UserError(f"unstructured.step_epochs must be >= 0, got {ucfg.step_epochs}")
    if ucfg.method in GRADIENT_METHODS and ucfg.score_batches < 1:
        raise UserError(f"unstructured.score_batches must be >= 1 for {ucfg.method}, got {ucfg.score_batches}")


# ----------------------------------------------------------------------------- losses
def finetune_loss(model: nn.Module, *, kd_alpha: float, kd_temperature: float, label_smoothing: float) -> LossFn:
    """Cross-entropy, or distillation from a frozen copy of `model` (call before pruning)."""
    if kd_alpha <= 0:
        return cross_entropy(label_smoothing)
    return distillation_loss(
        copy.deepcopy(model), alpha=kd_alpha, temperature=kd_temperature, label_smoothing=label_smoothing
    )


# ----------------------------------------------------------------------------- running
def movement_warmup(
    model: nn.Module, loader, *, finetune_cfg: TrainConfig, num_batches: int, device: torch.device, loss_fn: LossFn
) -> int:
    """`num_batches` optimizer steps at the fine-tuning settings, so that movement scores (an
    active GradientScores) see the weights move before the first prune. Returns steps taken."""
    optimizer = build_optimizer(
        model.parameters(),
        name=finetune_cfg.optimizer,
        lr=finetune_cfg.lr,
        momentum=finetune_cfg.momentum,
        nesterov=finetune_cfg.nesterov,
        weight_decay=finetune_cfg.weight_decay,
    )
    model.train()
    steps = 0
    for images, labels in loader:
        if steps >= num_batches:
            break
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels, images).backward()
        optimizer.step()
        enforce_masks(model)
        steps += 1
    model.zero_grad(set_to_none=True)
    return steps


@dataclass(frozen=True)
class PruneJob:
    """What every step of an unstructured run shares: the model (reparameterised in place), its
    data, the plan and its targets, the fine-tuning settings and where the run writes."""

    model: nn.Module
    data: Any
    plan: PrunePlan
    targets: list[Target]
    finetune_cfg: TrainConfig
    run_dir: Path
    config: dict  # the resolved config, stored in every checkpoint
    device: torch.device
    loss_fn: LossFn


def _gradient_scores(job: PruneJob, movement: GradientScores | None) -> dict | None:
    plan, data = job.plan, job.data
    if plan.method == "taylor":
        data.train.set_epoch(0)
        return accumulate_taylor_scores(
            job.model, job.targets, data.train, num_batches=plan.score_batches, device=job.device, loss_fn=job.loss_fn
        )
    if plan.method == "movement":
        if movement.num_backwards == 0:
            data.train.set_epoch(0)
            movement_warmup(
                job.model,
                data.train,
                finetune_cfg=job.finetune_cfg,
                num_batches=plan.score_batches,
                device=job.device,
                loss_fn=job.loss_fn,
            )
            noisy_movement_note(movement.agreement(), movement.num_backwards)
        return movement.scores
    return None


NOISY_AGREEMENT = 0.2  # split-half r below which movement scores rank weights little better than chance


def noisy_movement_note(agreement: float | None, steps: int) -> str | None:
    """A warning (printed and returned) when the movement scores are mostly gradient noise."""
    if agreement is None or agreement >= NOISY_AGREEMENT:
        return None
    note = (
        f"warning: movement scores are mostly gradient noise here (split-half agreement r={agreement:.2f} over "
        f"{steps} steps, below {NOISY_AGREEMENT}): a model already trained on this task barely moves, so -w*grad "
        "does not rank its weights by importance (it can do worse than random pruning); movement pruning is for fine-tuning a pretrained model on a new task "
        "(Sanh et al. 2020). Use --method global or lamp here, or more steps (unstructured.score_batches)"
    )
    print(note, flush=True)
    return note


def finetune_phase(
    job: PruneJob,
    *,
    epochs: int,
    run_dir: Path,
    tag: str,
    resume: dict | None = None,
    last: tuple[Path, dict] | None = None,
) -> dict | None:
    """fit() with masks enforced after every step; the model ends at the phase's best
    validation checkpoint. None when `epochs` is 0. `last`: where the resume checkpoint goes and
    what it carries besides fit's own state (the final phase: <run folder>/last.pth)."""
    if epochs <= 0:
        return None
    model = job.model
    last_path, last_extra = last or (None, None)
    options = FitOptions(
        loss_fn=job.loss_fn,
        after_step=lambda: enforce_masks(model),
        tag=tag,
        last_path=last_path,
        last_extra=last_extra,
    )
    summary = fit(
        model,
        job.data,
        train_cfg=replace(job.finetune_cfg, epochs=epochs),
        run_dir=run_dir,
        config=job.config,
        device=job.device,
        resume=resume,
        options=options,
    )
    model.load_state_dict(read_own_checkpoint(run_dir / BEST)["model"])
    return summary


def run_pruning(
    job: PruneJob,
    *,
    final_epochs: int,
    seed: int = 0,
    log: Callable[[dict], None] | None = None,
    prune_state: dict | None = None,
    resume: dict | None = None,
) -> list[dict]:
    """All steps of `job.plan` on `job.model`. Returns one dict per step: target/actual sparsity,
    top-1/top-5 right after pruning and after that step's fine-tuning. The final fine-tuning
    saves <run_dir>/last.pth with `prune_state` and the steps so far; `resume` (that file, its
    masks and weights already in the model) continues that fine-tuning."""
    plan, run_dir = job.plan, job.run_dir
    generator = torch.Generator().manual_seed(seed)
    movement = GradientScores(job.targets, "movement") if plan.method == "movement" else None
    saved = resume[PRUNE_STATE] if resume is not None else {"step": 0, "history": []}
    history = list(saved["history"])
    with movement or contextlib.nullcontext():
        for step in range(max(saved["step"], 1), plan.num_steps + 1):
            last = step == plan.num_steps
            if step == saved["step"]:  # resumed: pruned before, its figures saved
                row = saved["row"]
            else:
                row = _prune(job, step, movement, generator)
            phase_dir = run_dir / ("finetune" if plan.num_steps == 1 else f"finetune_step{step}")
            state = {**(prune_state or {}), "step": step, "row": row, "history": history}
            summary = finetune_phase(
                job,
                epochs=final_epochs if last else plan.step_epochs,
                run_dir=phase_dir,
                tag=f"finetune_step{step}",
                resume=resume if step == saved["step"] else None,
                last=(run_dir / LAST, {PRUNE_STATE: state}) if last else None,
            )
            row = row | _after_finetune(job.model, job.data, job.device, summary, row)
            history.append(row)
            if log is not None:
                log(row)
    return history


def _prune(job: PruneJob, step: int, movement: GradientScores | None, generator: torch.Generator) -> dict:
    """Step `step`'s masks, and the figures right after pruning."""
    plan = job.plan
    report = prune_step(
        job.targets,
        method=plan.method,
        mode=plan.mode,
        sparsity=plan.step_sparsity(step),
        layer_sparsity=plan.step_layer_sparsity(step),
        gradient_scores=_gradient_scores(job, movement),
        nm=(plan.n, plan.m),
        generator=generator,
    )
    pruned = evaluate(job.model, job.data.test, device=job.device)
    row = {
        "step": step,
        "target_sparsity": _step_target(plan, job.targets, step),
        "actual_sparsity": report["total"],
        "pruned_weights": report["pruned"],
        "pruned_top1": pruned["top1"],
        "pruned_top5": pruned["top5"],
    }
    if movement is not None:
        row["movement_score_agreement"] = movement.agreement()
    print(format_step(row, plan.num_steps), flush=True)
    return row


def restore_masks(model: nn.Module, targets: list[Target], resume: dict, source: str) -> None:
    """Install the keep-masks saved in a resumed last.pth, so its weights load into `model`."""
    names = {id(m): n for n, m in model.named_modules()}
    state = resume["model"]
    masks = {}
    for t in targets:
        key = f"{names[id(t.module)]}.{t.param}_mask".lstrip(".")
        if key not in state:
            raise UserError(f"{source} holds no mask {key}; it was pruned with other settings, start a new run")
        masks[t.name] = state[key]
    apply_masks(targets, masks)


def _after_finetune(model: nn.Module, data, device: torch.device, summary: dict | None, row: dict) -> dict:
    if summary is None:
        return {"finetune_epochs": 0, "finetuned_top1": row["pruned_top1"], "finetuned_top5": row["pruned_top5"]}
    final = evaluate(model, data.test, device=device)
    return {
        "finetune_epochs": summary["epochs_run"],
        "best_epoch": summary["best_epoch"],
        "finetuned_top1": final["top1"],
        "finetuned_top5": final["top5"],
    }


def _step_target(plan: PrunePlan, targets: list[Target], step: int) -> float:
    """The total sparsity this step aims at over the targets (the weighted per-layer mean
    for layerwise runs; nm counts its ineligible layers as dense)."""
    if plan.method == "nm":
        eligible = sum(t.numel() for t in targets if nm_ineligibility(t.module, t.param, plan.m) is None)
        return plan.sparsity * eligible / sum(t.numel() for t in targets)
    if plan.mode == "global":
        return plan.step_sparsity(step)
    per_layer = resolve_layer_sparsities(targets, plan.step_sparsity(step), plan.step_layer_sparsity(step))
    return sum(per_layer[t.name] * t.numel() for t in targets) / sum(t.numel() for t in targets)


def format_step(row: dict, num_steps: int) -> str:
    return (
        f"step {row['step']}/{num_steps}: target sparsity {100 * row['target_sparsity']:.2f}%  "
        f"actual {100 * row['actual_sparsity']:.2f}% ({row['pruned_weights']} weights pruned)  "
        f"right after pruning: test top1 {row['pruned_top1']:.2f}% top5 {row['pruned_top5']:.2f}%"
    )


# ----------------------------------------------------------------------------- figures
def accuracy_and_cost(model: nn.Module, data, device: torch.device) -> dict:
    """Test top-1/top-5 and dense / non-zero MACs, FLOPs (= 2 x MACs) and params at batch 1."""
    shape = (1, *data.input_shape)
    macs, params = count_macs_params(model, shape)
    nz_macs, nz_params = count_nonzero_macs_params(model, shape)
    test = evaluate(model, data.test, device=device)
    return {
        "top1": test["top1"],
        "top5": test["top5"],
        "macs": macs,
        "flops": flops_from_macs(macs),
        "params": params,
        "nonzero_macs": nz_macs,
        "nonzero_flops": flops_from_macs(nz_macs),
        "nonzero_params": nz_params,
        "theoretical_speedup": macs / max(nz_macs, 1),
    }


def format_figures(label: str, figures: dict) -> str:
    return (
        f"{label}: test top1 {figures['top1']:.2f}% top5 {figures['top5']:.2f}%  "
        f"MACs {format_count(figures['macs'])} (non-zero {format_count(figures['nonzero_macs'])})  "
        f"FLOPs {format_count(figures['flops'])} (non-zero {format_count(figures['nonzero_flops'])}; FLOPs = 2 x MACs)  "
        f"params {format_count(figures['params'])} (non-zero {format_count(figures['nonzero_params'])})"
    )


def pruning_metrics(
    *,
    plan: PrunePlan,
    targets: list[Target],
    baseline: dict,
    final: dict,
    history: list[dict],
    sizes: dict,
    layer_table: list[dict],
) -> dict:
    """The metrics.yaml of a pruning run (accuracies in %, sparsities as fractions, bytes)."""
    report = target_sparsity_report(targets)
    last = history[-1]
    return {
        "method": plan.method,
        "mode": plan.mode,
        **({"n": plan.n, "m": plan.m} if plan.method == "nm" else {}),
        "iterative": plan.num_steps > 1,
        "num_iterations": plan.num_steps,
        "schedule": plan.schedule,
        "target_sparsity": last["target_sparsity"],
        "actual_sparsity": report["total"],
        "pruned_weights": report["pruned"],
        "prunable_weights": report["params"],
        "layer_sparsity": report["layers"],
        "layers": {
            r["name"]: {"params": r["params"], "nonzero": r["nonzero"], "sparsity": r["sparsity"]} for r in layer_table
        },
        "dense_macs": baseline["macs"],
        "dense_flops": baseline["flops"],
        "nonzero_macs": final["nonzero_macs"],
        "nonzero_flops": final["nonzero_flops"],
        "theoretical_speedup": final["theoretical_speedup"],
        "params": final["params"],
        "nonzero_params": final["nonzero_params"],
        "baseline_top1": baseline["top1"],
        "baseline_top5": baseline["top5"],
        "pruned_top1": last["pruned_top1"],
        "pruned_top5": last["pruned_top5"],
        "finetuned_top1": final["top1"],
        "finetuned_top5": final["top5"],
        "accuracy_drop": baseline["top1"] - final["top1"],
        "accuracy_drop_before_finetune": baseline["top1"] - last["pruned_top1"],
        **sizes,
        "steps": history,
    }


@contextlib.contextmanager
def tensorboard_logger(run_dir: Path):
    """A `log(step_row)` callable writing prune/* scalars to <run_dir>/logs, one point per step."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(run_dir / LOGS))

    def log(row: dict) -> None:
        for key in ("target_sparsity", "actual_sparsity", "pruned_top1", "finetuned_top1"):
            writer.add_scalar(f"prune/{key}", row[key], row["step"])
        writer.flush()

    try:
        yield log
    finally:
        writer.close()


@torch.no_grad()
def outputs_identical(model: nn.Module, state_dict: dict, images: torch.Tensor) -> bool:
    """Does `model` with `state_dict` loaded give bit-identical outputs on `images`?"""
    twin = copy.deepcopy(model).eval()
    twin.load_state_dict(state_dict)
    return torch.equal(model.eval()(images), twin(images))


def storage_sizes(
    model: nn.Module, run_dir: Path, *, config: dict, metrics: dict, fmt: str, save: bool, images: torch.Tensor
) -> dict:
    """Dense pruned_model.pth size vs the same checkpoint in sparse storage; with `save`, also
    writes pruned_model_compressed.pth and checks that reloading it gives identical outputs."""
    from tools.measure.metrics import file_size_bytes
    from tools.modeling.sparse_storage import compressed_checkpoint, save_compressed_checkpoint, serialized_size_bytes

    state = model.state_dict()
    dense = file_size_bytes(run_dir / PRUNED_MODEL)
    out = {"dense_size_bytes": dense}
    if save:
        path = run_dir / PRUNED_MODEL_COMPRESSED
        storage = save_compressed_checkpoint(path, state_dict=state, config=config, metrics=metrics, fmt=fmt)
        compressed = file_size_bytes(path)
        out |= {
            "compressed_file": str(path),
            "compressed_outputs_identical": outputs_identical(model, read_checkpoint(path)["model"], images),
        }
    else:
        ckpt = compressed_checkpoint(state, config=config, metrics=metrics, fmt=fmt)
        storage, compressed = ckpt["storage"], serialized_size_bytes(ckpt)
    tensors = ", ".join(f"{k} {v}" for k, v in sorted(storage["tensors"].items()))
    return out | {
        "compressed_size_bytes": compressed,
        "compression_ratio": dense / compressed,
        "compressed_format": f"{fmt} ({tensors} tensors)",
    }


def nm_layers(targets: list[Target], n: int, m: int) -> dict:
    """Per target: whether it got an N:M mask, why not, and whether the pattern holds."""
    from tools.pruning.unstructured import is_nm_pattern

    rows = {}
    for t in targets:
        reason = nm_ineligibility(t.module, t.param, m)
        rows[t.name] = {
            "masked": reason is None,
            "reason": reason or "ok",
            "pattern_valid": reason is None and is_nm_pattern(t.tensor, n, m),
        }
    return rows


def semi_structured_section(
    model: nn.Module, *, plan: PrunePlan, targets: list[Target], device: torch.device, profile, enabled: bool
) -> dict:
    """nm runs: the per-layer masks/pattern check, and (CUDA, `enabled`) 2:4 kernel timings."""
    from tools.pruning.semi_structured import semi_structured_report

    section = {"nm_layers": nm_layers(targets, plan.n, plan.m)}
    if enabled:
        section |= semi_structured_report(
            model,
            n=plan.n,
            m=plan.m,
            device=device,
            batch_sizes=profile.batch_sizes,
            warmup=profile.warmup,
            repeats=profile.repeats,
        )
    return section


def format_nm(section: dict) -> str:
    """Lines for the N:M part of the summary: masks and pattern per layer, then 2:4 kernels."""
    from tools.pruning.semi_structured import format_semi_structured

    lines = ["N:M masks:"]
    for name, row in section["nm_layers"].items():
        state = f"pattern valid: {row['pattern_valid']}" if row["masked"] else f"left dense: {row['reason']}"
        lines.append(f"  {name:<24} {state}")
    if "layers" in section:
        lines.append(format_semi_structured(section))
    return "\n".join(lines)


def parse_nm(text: str | None) -> tuple[int | None, int | None]:
    if text is None:
        return None, None
    n, sep, m = text.partition(":")
    if not sep or not n.strip().isdigit() or not m.strip().isdigit():
        raise UserError(f"--nm must look like N:M with integers, e.g. 2:4, got {text!r}")
    return int(n), int(m)


def cli_flags(args) -> dict:
    """Script flags as dotted config keys; obviously bad values fail here, before any loading."""
    n, m = parse_nm(args.nm)
    if n is not None:
        validate_nm(n, m)
    if args.sparsity is not None:
        validate_sparsity(args.sparsity, "--sparsity")
    if args.method is not None:
        natural_mode(args.method)  # rejects an unknown method
    iterative = True if args.num_iterations is not None else args.iterative
    return {
        "unstructured.method": args.method,
        "unstructured.mode": args.mode,
        "unstructured.sparsity": args.sparsity,
        "unstructured.sparsity_file": args.sparsity_file,
        "unstructured.iterative": iterative,
        "unstructured.num_iterations": args.num_iterations,
        "unstructured.schedule": args.schedule,
        "unstructured.n": n,
        "unstructured.m": m,
        "finetune.epochs": args.epochs,
        "unstructured.save_compressed": args.save_compressed,
    }


def prune_unstructured(args) -> None:
    """scripts.prune_unstructured's whole command: `args` as its parse_args returns them."""
    resume, checkpoint, (cfg, ckpt, data, model, device) = load_prune_run(args, "prune_unstructured", cli_flags(args))
    ucfg = cfg.unstructured
    if args.nm is not None and ucfg.method != "nm":
        raise UserError(
            f"--nm {args.nm} applies to --method nm only, but the method is {ucfg.method}; add --method nm or drop --nm"
        )
    plan = make_plan(ucfg)
    targets = prunable_targets(
        model,
        keep_first_conv_dense=ucfg.keep_first_conv_dense,
        keep_classifier_dense=ucfg.keep_classifier_dense,
        prune_biases=ucfg.prune_biases,
        prune_bn=ucfg.prune_bn,
    )
    plan.check_targets(targets)
    ft_cfg = finetune_train_config(cfg.train, cfg.finetune)
    # The distillation teacher is the unpruned model: taken before any mask is installed.
    loss_fn = finetune_loss(
        model,
        kd_alpha=cfg.finetune.kd.alpha,
        kd_temperature=cfg.finetune.kd.temperature,
        label_smoothing=cfg.finetune.label_smoothing,
    )
    if resume is not None:
        check_unstructured_resume(
            resume, model, targets, plan, replace(ft_cfg, epochs=cfg.finetune.epochs), len(data.train), args.resume
        )
    save_dir = args.save_dir or (Path(args.resume).parent if resume else None)
    with RunFolder.new(cfg.output.root, "unstructured", plan.run_name, save_dir).start(
        cfg, resume=resume is not None
    ) as run:
        prune_in(
            run.path, args, cfg, ckpt, data, model, device, Pruning(plan, targets, ft_cfg, loss_fn, checkpoint, resume)
        )


@dataclass
class Pruning:
    """What the run inside its folder works from, decided before the folder was claimed."""

    plan: object
    targets: list
    ft_cfg: object
    loss_fn: object
    checkpoint: object
    resume: dict | None


def prune_in(run_dir, args, cfg, ckpt, data, model, device, p: Pruning) -> None:
    plan, targets, ft_cfg, loss_fn, checkpoint, resume = p.plan, p.targets, p.ft_cfg, p.loss_fn, p.checkpoint, p.resume
    config = config_to_dict(cfg)
    print(f"run folder: {run_dir}\nmodel {cfg.model.name} on {cfg.data.name} {data.input_shape}, device {device}")
    start = time.perf_counter()
    baseline = resume[PRUNE_STATE]["baseline"] if resume else accuracy_and_cost(model, data, device)
    print(format_figures("baseline", baseline))
    lineage = child_lineage(ckpt, checkpoint=str(checkpoint), figures=baseline)
    print(plan.describe(targets, ft_cfg.lr, cfg.finetune.epochs))
    if resume is not None:
        print(f"resuming the final fine-tuning after epoch {resume['epoch']} from {args.resume}; pruning is not redone")
    prune_state = {
        "script": "prune_unstructured",
        "checkpoint": str(Path(checkpoint).resolve()),
        "baseline": baseline,
        "plan": plan.run_name,
    }
    with tensorboard_logger(run_dir) as log:
        job = PruneJob(
            model,
            data,
            plan,
            targets,
            finetune_cfg=ft_cfg,
            run_dir=run_dir,
            config=config,
            device=device,
            loss_fn=loss_fn,
        )
        history = run_pruning(
            job, final_epochs=cfg.finetune.epochs, seed=cfg.train.seed, log=log, prune_state=prune_state, resume=resume
        )
    remove_pruning_reparameterization(model)
    final = accuracy_and_cost(model, data, device)
    print_layerwise_sparsity(model)

    metrics = write_results(
        model,
        run_dir,
        p,
        Outcome(baseline=baseline, final=final, history=history, lineage=lineage),
        cfg=cfg,
        config=config,
        data=data,
        device=device,
    )
    metrics["wall_time_s"] = time.perf_counter() - start
    atomic_write_yaml(run_dir / METRICS, metrics)
    print_summary(metrics, run_dir)


def check_unstructured_resume(
    resume: dict, model, targets, plan, finetune_cfg, steps_per_epoch: int, source: str
) -> None:
    """The resumed last.pth must hold this plan's masks and weights for this model; they are
    installed into `model`. Nothing is written before this passes."""
    if resume[PRUNE_STATE]["plan"] != plan.run_name:
        raise UserError(
            f"{source} was pruned as {resume[PRUNE_STATE]['plan']}, these settings make "
            f"{plan.run_name}; resume with the run's own settings or start a new run"
        )
    restore_masks(model, targets, resume, source)
    check_resume(resume, model, finetune_cfg, steps_per_epoch, source)


@dataclass(frozen=True)
class Outcome:
    """What the pruning and fine-tuning measured: the figures before and after, each step's row, the lineage."""

    baseline: dict
    final: dict
    history: list[dict]
    lineage: list[dict]


def write_results(model, run_dir, p: Pruning, outcome: Outcome, *, cfg, config, data, device) -> dict:
    """pruned_model.pth (with its lineage), the compressed copy (if asked), layer_weights.png; returns metrics."""
    plan, targets, checkpoint = p.plan, p.targets, p.checkpoint
    baseline, final, history, lineage = outcome.baseline, outcome.final, outcome.history, outcome.lineage
    ucfg = cfg.unstructured
    summary = {
        "top1": final["top1"],
        "top5": final["top5"],
        "baseline_top1": baseline["top1"],
        "actual_sparsity": history[-1]["actual_sparsity"],
        "method": plan.method,
        "mode": plan.mode,
    }
    save_checkpoint(run_dir / PRUNED_MODEL, model=model, config=config, metrics=summary, extra={LINEAGE: lineage})
    images = next(iter(data.test))[0][:64].to(device)
    sizes = storage_sizes(
        model,
        run_dir,
        config=config,
        metrics=summary,
        fmt=ucfg.compressed_format,
        save=ucfg.save_compressed,
        images=images,
    )
    metrics = pruning_metrics(
        plan=plan,
        targets=targets,
        baseline=baseline,
        final=final,
        history=history,
        sizes=sizes,
        layer_table=layer_sparsity_table(model),
    )
    if plan.method == "nm":
        metrics["semi_structured"] = semi_structured_section(
            model, plan=plan, targets=targets, device=device, profile=cfg.profile, enabled=ucfg.semi_structured
        )
    metrics |= {
        "checkpoint": str(checkpoint),
        "model": cfg.model.name,
        "data": cfg.data.name,
        "finetune_epochs": cfg.finetune.epochs,
        "finetune_lr": finetune_train_config(cfg.train, cfg.finetune).lr,
        "seed": cfg.train.seed,
        "eval_split": "test",
        "device": str(device),
        "test_set": test_set_record(cfg.data, cfg.train.seed, data.test.num_samples),
        "checkpoint_selected_on": checkpoint_selection(
            cfg.data.val_split, sum(h.get("finetune_epochs", 0) for h in history)
        ),
        "vs_original": versus(lineage[0], final, "nonzero_"),
        LINEAGE: lineage,
    }
    plot_layer_weights(model, run_dir / "layer_weights.png")
    return metrics


def print_summary(metrics: dict, run_dir) -> None:
    mib = 2**20
    print(
        f"sparsity: target {100 * metrics['target_sparsity']:.2f}%  actual {100 * metrics['actual_sparsity']:.2f}% "
        f"of the prunable weights"
    )
    print(
        f"top1: baseline {metrics['baseline_top1']:.2f}%  right after pruning {metrics['pruned_top1']:.2f}%  "
        f"after fine-tuning {metrics['finetuned_top1']:.2f}%  drop {metrics['accuracy_drop']:+.2f} pts"
    )
    if len(metrics[LINEAGE]) > 1:  # a re-pruned model: the line above is against its parent
        original = metrics["vs_original"]
        print(
            f"vs the original baseline {original['checkpoint']}: top1 {original['baseline_top1']:.2f}%  "
            f"drop {original['accuracy_drop']:+.2f} pts  non-zero MACs reduction {original['macs_reduction_pct']:.2f}%"
        )
    print(
        f"MACs: dense {metrics['dense_macs']:,}  non-zero {metrics['nonzero_macs']:,}  theoretical speed-up "
        f"{metrics['theoretical_speedup']:.2f}x on ideal sparse kernels (FLOPs = 2 x MACs: dense "
        f"{metrics['dense_flops']:,}, non-zero {metrics['nonzero_flops']:,})"
    )
    print(
        f"size: dense checkpoint {metrics['dense_size_bytes'] / mib:.2f} MiB -> compressed "
        f"{metrics['compressed_size_bytes'] / mib:.2f} MiB ({metrics['compression_ratio']:.2f}x smaller, "
        f"{metrics['compressed_format']}, lossless)"
    )
    if "compressed_file" in metrics:
        print(
            f"compressed checkpoint: {metrics['compressed_file']} (reloaded: outputs identical = "
            f"{metrics['compressed_outputs_identical']})"
        )
    if "semi_structured" in metrics:
        print(format_nm(metrics["semi_structured"]))
    print(f"wrote {run_dir / PRUNED_MODEL}, {run_dir / METRICS}, {run_dir / 'layer_weights.png'}")
    print(f"TensorBoard: uv run tensorboard --logdir {run_dir}")
