"""The prune_structured pipeline: baseline, (sparsity training), prune rounds, fine-tuning, report.

    uv run python -m scripts.prune_structured --checkpoint results/train/quickstart/best_model.pth \
        --method l2 --target-macs-reduction 0.5

    check_structured_config(cfg)
    metrics = run_structured(model, data, cfg=cfg, run_dir=run_dir, device=device)

Writes into `run_dir`: pruned_model.pth (the fine-tuned pruned model pickled as a bare module,
so plain `torch.load(path, weights_only=False)` returns it; it carries `run_config` and
`run_metrics` attributes for this project's scripts), metrics.yaml, and fit's log.csv, logs/,
best_model.pth and last.pth for the final fine-tuning; sparsity/ and rounds/round<i>/ hold the
same for bn_scale's sparsity phase and intermediate rounds.

All accuracies are test-split top-1 (%); reductions are percent of the baseline. With kernel
granularities the reduction is of non-zero MACs/params, since masks leave dense counts as they were.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import torch
from torch import nn

from tools import latency_target as lt
from tools import structured as st
from tools.checkpoint import MODULE_CONFIG_ATTR, read_checkpoint
from tools.config import Config, config_to_dict
from tools.distill import check_kd, distillation_loss
from tools.engine import cross_entropy, evaluate, seed_everything
from tools.errors import UserError
from tools.evaluation import describe_model
from tools.io import atomic_torch_save, atomic_write_yaml
from tools.kernel_pruning import KERNEL_METHODS, apply_kernel_masks, kernel_layers, masks_from_zeros, prune_kernels
from tools.metrics import count_macs_params, count_nonzero_macs_params, format_count
from tools.training import BEST, fit, finetune_train_config

PRUNED_MODEL = "pruned_model.pth"
METRICS = "metrics.yaml"


# ----------------------------------------------------------------------------- config
def check_structured_config(cfg: Config) -> None:
    """One-line UserErrors for every structured.* value that cannot work, before any work."""
    s = cfg.structured
    st.build_importance(s.method)  # unknown method
    if s.granularity not in st.GRANULARITIES:
        raise UserError(f"unknown structured.granularity {s.granularity!r}; choose one of: {', '.join(st.GRANULARITIES)}")
    if s.granularity != "channel" and s.method not in KERNEL_METHODS:
        raise UserError(f"structured.granularity {s.granularity} ranks kernels by {', '.join(KERNEL_METHODS)}, "
                        f"not {s.method}; pick one of those methods or granularity channel")
    _fraction("structured.pruning_ratio", s.pruning_ratio)
    _fraction("structured.target_macs_reduction", s.target_macs_reduction)
    _fraction("structured.target_latency_reduction", s.target_latency_reduction)
    if s.target_latency_reduction > 0 or s.latency.report:
        check_latency_config(cfg)
    for name, r in s.layer_ratios.items():
        _fraction(f"structured.layer_ratios.{name}", r)
    if not 0 < s.max_pruning_ratio <= 1:
        raise UserError(f"structured.max_pruning_ratio must be in (0, 1], got {s.max_pruning_ratio}")
    if not 0 < s.target_tolerance < 0.5:
        raise UserError(f"structured.target_tolerance must be in (0, 0.5) (a fraction of MACs), got {s.target_tolerance}")
    for key in ("round_to", "iterative_steps", "calibration_batches", "num_patterns"):
        if getattr(s, key) < 1:
            raise UserError(f"structured.{key} must be at least 1, got {getattr(s, key)}")
    if s.step_epochs < 0 or s.bn_scale.epochs < 0 or cfg.finetune.epochs < 0:
        raise UserError("structured.step_epochs, structured.bn_scale.epochs and finetune.epochs must be >= 0")
    if s.bn_scale.reg < 0:
        raise UserError(f"structured.bn_scale.reg must be >= 0, got {s.bn_scale.reg}")
    check_kd(cfg.finetune.kd.alpha, cfg.finetune.kd.temperature)


def check_latency_config(cfg: Config) -> None:
    """The latency target's own checks, the backend's availability included (before any pruning)."""
    s, lat = cfg.structured, cfg.structured.latency
    if s.target_macs_reduction > 0 and s.target_latency_reduction > 0:
        raise UserError("structured.target_latency_reduction and structured.target_macs_reduction are exclusive; "
                        "set one of them to 0 (on the command line: one of --target-latency-reduction, "
                        "--target-macs-reduction, --sparsity)")
    if s.granularity != "channel" or s.iterative_steps != 1:
        raise UserError("structured.target_latency_reduction (and latency.report) need granularity channel and iterative_steps 1 "
                        f"(got {s.granularity}, {s.iterative_steps}): only removed channels make a model faster")
    for key in ("batch_size", "threads", "rounds", "repeats", "levels", "max_attempts"):
        if getattr(lat, key) < (2 if key in ("rounds", "levels") else 1):
            raise UserError(f"structured.latency.{key} must be at least {2 if key in ('rounds', 'levels') else 1}, "
                            f"got {getattr(lat, key)}")
    if not 0 < lat.tolerance < 0.5:
        raise UserError(f"structured.latency.tolerance must be in (0, 0.5) (a fraction of latency), got {lat.tolerance}")
    lt.check_backend(lat.backend)


def _fraction(key: str, value: float) -> None:
    if not 0 <= value < 1:
        raise UserError(f"{key} must be in [0, 1) (a fraction removed; 1 would remove everything), got {value}")


def structured_run_name(s) -> str:
    """<method>[_<granularity>]_sp<ratio> or _macs<target>, e.g. taylor_macs0.5."""
    method = s.method if s.granularity == "channel" else f"{s.method}_{s.granularity}"
    if s.target_latency_reduction > 0:
        return f"{method}_lat{s.target_latency_reduction:g}_{s.latency.backend}"
    if s.target_macs_reduction > 0:
        return f"{method}_macs{s.target_macs_reduction:g}"
    return f"{method}_sp{s.pruning_ratio:g}"


# ----------------------------------------------------------------------------- the pipeline
def run_structured(model: nn.Module, data, *, cfg: Config, run_dir: Path, device: torch.device,
                   checkpoint: str = "") -> dict:
    """Prune `model` (trained, on `device`) as cfg.structured says, fine-tune it, write
    pruned_model.pth and metrics.yaml into `run_dir`, and return the metrics."""
    start = time.perf_counter()
    s, config = cfg.structured, config_to_dict(cfg)
    example = torch.zeros(1, *data.input_shape, device=device)
    model.eval()
    if s.granularity == "channel":
        st.check_traceable(model, example)
    ignored = list(dict.fromkeys(st.output_layer_names(model, example) + list(s.ignored_layers)))
    st.resolve_names(model, ignored, "structured.ignored_layers")
    baseline = measure(model, data, device)
    print(f"baseline: {format_report(baseline)}")
    teacher = copy.deepcopy(model).eval() if cfg.finetune.kd.alpha > 0 else None
    channels_before = st.channel_counts(model)

    sparsity = None
    if s.method == "bn_scale" and s.granularity == "channel" and s.bn_scale.epochs > 0:
        model, sparsity = sparsity_train(model, data, cfg=cfg, run_dir=run_dir / "sparsity", device=device,
                                         config=config)
    rounds = []
    for step in range(1, s.iterative_steps + 1):
        model, info = prune_round(model, data, cfg=cfg, step=step, example=example, ignored=ignored,
                                  baseline=baseline, original_channels=channels_before, device=device, run_dir=run_dir)
        rounds.append(info)
        print(f"round {step}/{s.iterative_steps}: {format_round(info)}")
        if step < s.iterative_steps:
            model, _ = finetune(model, data, cfg=cfg, epochs=s.step_epochs, run_dir=run_dir / "rounds" / f"round{step}",
                                device=device, teacher=teacher, config=config, tag=f"round{step}")
    after_prune = measure(model, data, device)
    print(f"after pruning, before fine-tuning: {format_report(after_prune, baseline, s.granularity)}")
    model, summary = finetune(model, data, cfg=cfg, epochs=cfg.finetune.epochs, run_dir=run_dir, device=device,
                              teacher=teacher, config=config, tag="finetune")
    final = measure(model, data, device)
    metrics = build_metrics(cfg, baseline=baseline, after_prune=after_prune, final=final, rounds=rounds,
                            channels=st.channel_changes(channels_before, st.channel_counts(model)),
                            finetune=summary, sparsity=sparsity, device=device, checkpoint=checkpoint,
                            wall_time_s=time.perf_counter() - start)
    save_pruned_model(model, run_dir / PRUNED_MODEL, config=config, metrics=metrics)
    atomic_write_yaml(run_dir / METRICS, metrics)
    return metrics


def prune_round(model: nn.Module, data, *, cfg: Config, step: int, example: torch.Tensor, ignored: list[str],
                baseline: dict, original_channels: dict[str, int], device: torch.device,
                run_dir: Path | None = None) -> tuple[nn.Module, dict]:
    """Round `step` of cfg.structured.iterative_steps: toward step/steps of the ratio or target.
    Returns the pruned model (possibly a new object) and what the round did."""
    s = cfg.structured
    if s.granularity == "channel":
        model, info = _prune_channel_round(model, data, cfg=cfg, step=step, example=example, ignored=ignored,
                                           baseline=baseline, original_channels=original_channels, device=device,
                                           run_dir=run_dir)
    else:
        model, info = _prune_kernel_round(model, cfg=cfg, step=step, ignored=ignored, baseline=baseline,
                                          input_shape=tuple(data.input_shape))
    st.verify_forward(model, example, data.num_classes)
    return model, {"round": step, **info}


def _prune_channel_round(model, data, *, cfg, step, example, ignored, baseline, original_channels, device, run_dir):
    s = cfg.structured
    steps = s.iterative_steps
    seed_everything(cfg.train.seed + step, cfg.train.deterministic)  # random importance, calibration batches
    if s.method == "taylor":
        st.accumulate_gradients(model, data.train, batches=s.calibration_batches, device=device)
    table = st.importance_table(model, example, method=s.method, ignored_layers=ignored)
    model.zero_grad(set_to_none=True)
    latency = s.target_latency_reduction > 0
    original = copy.deepcopy(model) if s.latency.report else None  # the ratio path prunes in place
    plan = st.ChannelPlan(
        model, example, table=table, global_pruning=s.global_pruning, max_pruning_ratio=s.max_pruning_ratio,
        round_to=math.lcm(s.round_to, lt.fast_multiple(s.latency.backend)) if latency else s.round_to,
        ignored_layers=ignored, original_channels=original_channels,
        layer_ratios={name: st.round_ratio(r, step, steps) for name, r in s.layer_ratios.items()},
    )
    if latency:
        model, info = _latency_search(model, plan, cfg=cfg, example=example, input_shape=tuple(data.input_shape),
                                      run_dir=run_dir)
    elif s.target_macs_reduction > 0:
        found = st.search_channels(model, example, plan, target=s.target_macs_reduction * step / steps,
                                   tolerance=s.target_tolerance,
                                   reduction_of=lambda m: _reduction(m, baseline["macs"], example))
        info = {"ratio": found.ratio, "probes": found.probes, "refinements": found.refinements}
        model = found.model
    else:
        ratio = st.round_ratio(s.pruning_ratio, step, steps)
        st.apply_plan(model, example, plan, plan.counts(ratio))
        info = {"ratio": ratio}
    info["macs_reduction_pct"] = 100 * _reduction(model, baseline["macs"], example)
    if s.latency.report and not latency:
        info["latency"] = _latency_report(original, model, cfg=cfg, input_shape=tuple(data.input_shape))
    return model, info


def _backend(cfg: Config, input_shape: tuple) -> lt.Backend:
    lat = cfg.structured.latency
    return lt.Backend(lat.backend, input_shape, lat.batch_size, threads=lat.threads, rounds=lat.rounds,
                      repeats=lat.repeats)


def _latency_search(model, plan, *, cfg, example, input_shape, run_dir) -> tuple[nn.Module, dict]:
    """structured.target_latency_reduction: the measured table, the greedy allocation and the
    measured check (tools.latency_target), on CPU copies unless the backend is cuda."""
    s, lat = cfg.structured, cfg.structured.latency
    backend = _backend(cfg, input_shape)
    device = next(model.parameters()).device
    timed = model if lat.backend == "cuda" else copy.deepcopy(model).cpu()
    example = example.to(next(timed.parameters()).device)
    table = lt.latency_table(timed, example, plan, backend, levels=lat.levels,
                             cache_dir=Path(lat.cache_dir) if lat.cache_dir else None,
                             run_file=run_dir / lt.TABLE_FILE if run_dir else None)
    found = lt.search_latency(timed, example, plan, table, backend, target=s.target_latency_reduction,
                              tolerance=lat.tolerance, max_attempts=lat.max_attempts,
                              max_pruning_ratio=s.max_pruning_ratio)
    t = found.timing
    print(f"latency target {100 * s.target_latency_reduction:g}% on {lat.backend} batch {lat.batch_size}, "
          f"{lat.threads} thread(s): predicted -{100 * found.predicted:.1f}%, measured -{100 * t.reduction:.1f}% "
          f"+-{100 * t.spread:.1f} pts ({t.baseline_ms:.2f} -> {t.pruned_ms:.2f} ms, median of {t.rounds} interleaved "
          f"rounds); channels in multiples of {backend.fast_multiple}; timed with: {'; '.join(backend.optimisations)}")
    latency = {"backend": lat.backend, "batch_size": lat.batch_size, "threads": lat.threads,
               "fast_multiple": backend.fast_multiple, "host": lt.host_id(), "optimisations": backend.optimisations,
               "target_pct": 100 * s.target_latency_reduction, "tolerance_pts": 100 * lat.tolerance,
               "predicted_reduction_pct": 100 * found.predicted, **t.as_dict(), "attempts": found.attempts,
               "table": lt.TABLE_FILE}
    return found.model.to(device), {"latency": latency}


def _latency_report(baseline: nn.Module, pruned: nn.Module, *, cfg, input_shape) -> dict:
    """structured.latency.report: the measured check of a MACs- or ratio-pruned model, no target."""
    lat, backend = cfg.structured.latency, _backend(cfg, input_shape)
    on = (lambda m: m) if lat.backend == "cuda" else (lambda m: copy.deepcopy(m).cpu())
    t = lt.compare(on(baseline), on(pruned), backend)
    print(f"latency on {lat.backend} batch {lat.batch_size}, {lat.threads} thread(s): measured -{100 * t.reduction:.1f}% "
          f"+-{100 * t.spread:.1f} pts ({t.baseline_ms:.2f} -> {t.pruned_ms:.2f} ms, median of {t.rounds} interleaved rounds)")
    return {"backend": lat.backend, "batch_size": lat.batch_size, "threads": lat.threads, "host": lt.host_id(),
            "optimisations": backend.optimisations, "predicted_reduction_pct": None, **t.as_dict()}


def _prune_kernel_round(model, *, cfg, step, ignored, baseline, input_shape):
    s = cfg.structured
    steps = s.iterative_steps

    def prune(m: nn.Module, ratio: float) -> None:
        prune_kernels(m, granularity=s.granularity, ratio=ratio, method=s.method, ignored_layers=ignored,
                      global_pruning=s.global_pruning, max_pruning_ratio=s.max_pruning_ratio,
                      pattern_size=s.pattern_size, num_patterns=s.num_patterns, seed=cfg.train.seed)

    def reduction_of(m: nn.Module) -> float:
        return 1 - count_nonzero_macs_params(m, (1, *input_shape))[0] / baseline["nonzero_macs"]

    if s.target_macs_reduction > 0:
        found = st.search_ratio(model, target=s.target_macs_reduction * step / steps, tolerance=s.target_tolerance,
                                prune=prune, reduction_of=reduction_of, fixed_part=s.granularity == "intra_kernel",
                                what="kernel")
        model, info = found.model, {"ratio": found.ratio, "probes": found.probes}
    else:
        ratio = s.pruning_ratio * step / steps  # cumulative: kernels zeroed earlier score 0 and stay counted
        prune(model, ratio)
        info = {"ratio": ratio}
    info["nonzero_macs_reduction_pct"] = 100 * reduction_of(model)
    return model, info


def _reduction(model: nn.Module, base_macs: int, example: torch.Tensor) -> float:
    macs, _ = count_macs_params(model, tuple(example.shape))
    return 1 - macs / base_macs


# ----------------------------------------------------------------------------- training phases
def finetune(model: nn.Module, data, *, cfg: Config, epochs: int, run_dir: Path, device: torch.device,
             teacher: nn.Module | None, config: dict, tag: str) -> tuple[nn.Module, dict | None]:
    """fit for `epochs` with finetune.* settings (KD from `teacher` when finetune.kd.alpha > 0);
    kernel masks are re-applied after every step. Returns the best-validation model."""
    if epochs <= 0:
        return model, None
    train_cfg = dataclasses.replace(finetune_train_config(cfg.train, cfg.finetune), epochs=epochs)
    loss_fn = None
    if teacher is not None:
        kd = cfg.finetune.kd
        loss_fn = distillation_loss(teacher, alpha=kd.alpha, temperature=kd.temperature,
                                    label_smoothing=train_cfg.label_smoothing)
    after_step = None
    if cfg.structured.granularity != "channel":
        masks = masks_from_zeros(kernel_layers(model))
        after_step = lambda: apply_kernel_masks(masks)  # noqa: E731  (keeps zeroed kernels at zero)
    summary = fit(model, data, train_cfg=train_cfg, run_dir=run_dir, config=config, device=device, loss_fn=loss_fn,
                  after_step=after_step, tag=tag, save_full_module=True)
    best = read_checkpoint(run_dir / BEST)["model"].to(device)
    return best.eval(), summary


def sparsity_train(model: nn.Module, data, *, cfg: Config, run_dir: Path, device: torch.device,
                   config: dict) -> tuple[nn.Module, dict]:
    """Network Slimming's phase: train with reg * sum |gamma| added to the loss for
    structured.bn_scale.epochs, keeping the last weights (the sparsest, not the most accurate)."""
    s = cfg.structured
    layers = st.batchnorm_layers(model, exclude=list(s.ignored_layers))
    before = _scale_stats(layers)
    train_cfg = dataclasses.replace(finetune_train_config(cfg.train, cfg.finetune), epochs=s.bn_scale.epochs)
    loss_fn = st.bn_l1_loss(cross_entropy(train_cfg.label_smoothing), layers, s.bn_scale.reg)
    summary = fit(model, data, train_cfg=train_cfg, run_dir=run_dir, config=config, device=device, loss_fn=loss_fn,
                  tag="sparsity")
    after = _scale_stats(layers)
    print(f"sparsity training: mean |gamma| {before['mean_abs_gamma']:.4f} -> {after['mean_abs_gamma']:.4f}, "
          f"scales below 0.01: {100 * before['fraction_below_0.01']:.1f}% -> {100 * after['fraction_below_0.01']:.1f}%")
    return model.eval(), {"reg": s.bn_scale.reg, "epochs": summary["epochs_run"], "before": before, "after": after,
                          "final_val_top1": summary["history"][-1]["val_top1"] if summary["history"] else None}


def _scale_stats(layers: list[nn.Module]) -> dict:
    gammas = torch.cat([m.weight.detach().abs().flatten().cpu() for m in layers]) if layers else torch.zeros(1)
    return {"mean_abs_gamma": float(gammas.mean()), "fraction_below_0.01": float((gammas < 0.01).float().mean())}


# ----------------------------------------------------------------------------- measuring and reporting
def measure(model: nn.Module, data, device: torch.device) -> dict:
    """Test top-1/top-5 plus dense and non-zero MACs/FLOPs/params of `model`."""
    report = describe_model(model, tuple(data.input_shape))
    test = evaluate(model, data.test, device=device)
    keys = ("macs", "flops", "params", "nonzero_macs", "nonzero_flops", "nonzero_params")
    return {"top1": test["top1"], "top5": test["top5"], **{k: report[k] for k in keys}}


def build_metrics(cfg: Config, *, baseline: dict, after_prune: dict, final: dict, rounds: list, channels: dict,
                  finetune: dict | None, sparsity: dict | None, device, checkpoint: str, wall_time_s: float) -> dict:
    s = cfg.structured
    prefix = "" if s.granularity == "channel" else "nonzero_"
    macs_pct = _pct(baseline[prefix + "macs"], final[prefix + "macs"])
    drop = baseline["top1"] - final["top1"]
    goal = {"min_flops_reduction_pct": s.goal.min_flops_reduction_pct, "max_accuracy_drop": s.goal.max_accuracy_drop}
    metrics = {
        "checkpoint": checkpoint,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "method": s.method,
        "granularity": s.granularity,
        "pruning_ratio": None if s.target_macs_reduction > 0 or s.target_latency_reduction > 0 else s.pruning_ratio,
        "target_macs_reduction": s.target_macs_reduction or None,
        "target_latency_reduction": s.target_latency_reduction or None,
        "reduction_basis": "nonzero" if prefix else "dense",
        "baseline_top1": baseline["top1"],
        "pruned_top1": final["top1"],
        "accuracy_drop": drop,
        "macs_reduction_pct": macs_pct,
        "flops_reduction_pct": macs_pct,  # FLOPs = 2 x MACs on both sides
        "params_reduction_pct": _pct(baseline[prefix + "params"], final[prefix + "params"]),
        "goal": goal,
        "goal_met": st.goal_met(flops_reduction_pct=macs_pct, accuracy_drop=drop, **goal),
        "baseline": baseline,
        "pruned_before_finetune": after_prune,
        "pruned": final,
        "rounds": rounds,
        "finetune": _finetune_summary(cfg, finetune),
        "channels": channels,
        "device": str(device),
        "wall_time_s": wall_time_s,
    }
    if sparsity is not None:
        metrics["sparsity_training"] = sparsity
    latency = rounds[-1].pop("latency", None) if rounds else None  # kept once, at the top level
    if latency is not None:  # the architecture is final after pruning, so fine-tuning leaves this as measured
        metrics |= {"latency": latency, "latency_reduction_pct": latency["measured_reduction_pct"],
                    "predicted_latency_reduction_pct": latency.get("predicted_reduction_pct"),
                    "latency_spread_pts": latency["spread_pts"]}
    return metrics


def _pct(before: float, after: float) -> float:
    return 100.0 * (before - after) / before if before else 0.0


def _finetune_summary(cfg: Config, summary: dict | None) -> dict:
    out = {"epochs": cfg.finetune.epochs, "kd_alpha": cfg.finetune.kd.alpha, "kd_temperature": cfg.finetune.kd.temperature}
    if summary is not None:
        out |= {"epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
                "best_val_top1": summary["best_top1"], "wall_time_s": summary["wall_time_s"]}
    return out


def save_pruned_model(model: nn.Module, path: Path, *, config: dict, metrics: dict) -> None:
    """The pruned module itself on CPU, in eval mode, carrying its config and metrics as plain
    attributes: plain torch.load returns a working module, and tools.checkpoint reads the config."""
    module = copy.deepcopy(model).cpu().eval()
    setattr(module, MODULE_CONFIG_ATTR, config)
    module.run_metrics = {k: v for k, v in metrics.items() if k != "channels"}
    atomic_torch_save(module, path)


def format_report(report: dict, baseline: dict | None = None, granularity: str = "channel") -> str:
    """One line: top-1/top-5, MACs, FLOPs, params (with reductions vs `baseline`)."""
    def cost(key: str) -> str:
        text = format_count(report[key])
        return text if baseline is None else f"{text} (-{_pct(baseline[key], report[key]):.1f}%)"

    line = (f"top1 {report['top1']:.2f}% top5 {report['top5']:.2f}%  MACs {cost('macs')}  FLOPs {cost('flops')} "
            f"(FLOPs = 2 x MACs)  params {cost('params')}")
    if granularity != "channel":
        line += f"  non-zero MACs {cost('nonzero_macs')}  non-zero params {cost('nonzero_params')}"
    return line


def format_round(info: dict) -> str:
    parts = [f"ratio {info['ratio']:.4f}"] if "ratio" in info else []
    if "macs_reduction_pct" in info:
        parts.append(f"MACs reduction {info['macs_reduction_pct']:.2f}%")
    if "nonzero_macs_reduction_pct" in info:
        parts.append(f"non-zero MACs reduction {info['nonzero_macs_reduction_pct']:.2f}%")
    if "probes" in info:
        parts.append(f"{info['probes']} pruned copies tried" +
                     (f", {info['refinements']} round_to blocks added" if info.get("refinements") else ""))
    return ", ".join(parts)


def final_block(metrics: dict) -> str:
    """The closing summary: accuracies, drop, FLOPs and params reductions, and the goal line."""
    nonzero = metrics["reduction_basis"] == "nonzero"
    basis, key = ("non-zero ", "nonzero_flops") if nonzero else ("", "flops")
    flops = f"{format_count(metrics['baseline'][key])} -> {format_count(metrics['pruned'][key])} {basis}FLOPs"
    rows = [
        ("baseline top1", f"{metrics['baseline_top1']:.2f}%"),
        ("pruned top1", f"{metrics['pruned_top1']:.2f}%"),
        ("accuracy drop", f"{metrics['accuracy_drop']:.2f} pts"),
        (f"{basis}FLOPs reduction", f"{metrics['flops_reduction_pct']:.2f}% ({flops}; FLOPs = 2 x MACs)"),
        (f"{basis}params reduction", f"{metrics['params_reduction_pct']:.2f}%"),
    ]
    if "latency" in metrics:
        lat = metrics["latency"]
        target = (f" (predicted {lat['predicted_reduction_pct']:.1f}%, target {lat['target_pct']:g}% "
                  f"+-{lat['tolerance_pts']:g})" if lat["predicted_reduction_pct"] is not None else "")
        rows.append(("latency reduction", f"{lat['measured_reduction_pct']:.1f}% measured +-{lat['spread_pts']:.1f} pts"
                                          f"{target} on {lat['backend']} batch {lat['batch_size']}, "
                                          f"{lat['threads']} thread(s)"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append(st.goal_line(metrics["goal_met"], **metrics["goal"]))
    return "\n".join(lines)
