"""The epoch loop with logging, checkpoints, exact resume and early stopping.

    summary = fit(model, data, train_cfg=cfg.train, run_dir=run_dir, config=config_to_dict(cfg),
                  device=device)
    summary["best_top1"], summary["history"]

Each epoch appends a row to `<run_dir>/log.csv`, writes TensorBoard scalars to `<run_dir>/logs`,
and saves `last.pth` (everything needed to resume) and, on a new best validation accuracy,
`best_model.pth`, both atomically. Loaders reshuffle as a pure function of (seed, epoch) and the
RNG state is checkpointed, so a killed-and-resumed run ends with the same weights as an
uninterrupted one (CPU, deterministic mode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from tools.core.errors import UserError
from tools.core.io import atomic_write_csv
from tools.core.run_folder import BEST, LAST, LOG_CSV, LOGS
from tools.measure.metrics import flops_from_macs
from tools.modeling.checkpoint import read_checkpoint, read_own_checkpoint, save_checkpoint, unwrap
from tools.modeling.checkpoint_run import load_checkpoint_run
from tools.modeling.weights import load_state_into
from tools.training.config import TrainConfig
from tools.training.engine import (
    LossFn,
    NonFiniteLoss,
    StepOptions,
    build_optimizer,
    build_scheduler,
    check_amp,
    cross_entropy,
    evaluate,
    train_one_epoch,
)


@dataclass
class FitState:
    """What, beyond model and optimizer, a resumed run needs to continue exactly."""

    epoch: int = 0  # epochs completed
    best_top1: float = -1.0
    best_epoch: int = -1
    epochs_since_best: int = 0
    wall_time_s: float = 0.0  # training + validation time summed over epochs, across resumes
    history: list[dict] = field(default_factory=list)
    schedule: dict = field(default_factory=dict)  # what the optimizer and scheduler were built for (schedule_key)


def schedule_key(train_cfg: TrainConfig, steps_per_epoch: int) -> dict:
    return {
        "optimizer": train_cfg.optimizer,
        "scheduler": train_cfg.scheduler,
        "epochs": train_cfg.epochs,
        "steps_per_epoch": steps_per_epoch,
    }


def check_resume(resume: dict, model: nn.Module, train_cfg: TrainConfig, steps_per_epoch: int, source: str) -> None:
    """UserError unless `resume` (a last.pth) continues `model` under `train_cfg`: same weights'
    shapes, optimizer, scheduler and batches per epoch, and at least the epochs already done.
    Loads the weights into `model`. Call it before writing anything into the run folder."""
    state = resume["model"] if isinstance(resume["model"], dict) else resume["model"].state_dict()
    load_state_into(unwrap(model), state, source=source)
    done = epochs_done(resume)
    if train_cfg.epochs < done:
        raise UserError(
            f"{source} has already trained {done} epochs; resume with epochs >= {done} "
            f"(got {train_cfg.epochs}) or start a new run"
        )
    saved = (resume.get("fit_state") or {}).get("schedule") or {}
    now = schedule_key(train_cfg, steps_per_epoch)
    for key in ("optimizer", "scheduler", "steps_per_epoch"):
        if key in saved and saved[key] != now[key]:
            what = "batches per epoch (batch size or data changed)" if key == "steps_per_epoch" else key
            raise UserError(
                f"{source} was trained with {what} {saved[key]}, this resume has {now[key]}; "
                f"resume with the same settings or start a new run"
            )


def epochs_done(ckpt: dict) -> int:
    return (ckpt.get("fit_state") or {}).get("epoch", ckpt.get("epoch", 0))


def check_resume_is_latest(resume: dict, source: Path, last: Path) -> None:
    """UserError when the run folder's `last` (its last.pth) is further on than `resume` read from
    `source`: continuing an older checkpoint (its best_model.pth) would rewrite the later epochs in
    last.pth and log.csv. Call it before writing anything into the run folder."""
    if not last.is_file() or (source.is_file() and source.resolve() == last.resolve()):
        return
    done, later = epochs_done(resume), epochs_done(read_checkpoint(last))
    if later > done:
        raise UserError(
            f"{source} is from epoch {done} but {last} is at epoch {later}; resume from {last} "
            f"(resuming the older one would overwrite epochs {done + 1}-{later} in last.pth and log.csv) "
            f"or pass a new --save-dir"
        )


@dataclass(frozen=True)
class FitOptions:
    """The optional parts of a fit."""

    loss_fn: LossFn | None = None  # default: cross-entropy with train.label_smoothing
    after_step: Callable[[], None] | None = None  # after every optimizer step (pruning masks)
    is_main: bool = True  # only the main process writes files
    tag: str = "train"  # progress bar and TensorBoard label
    save_full_module: bool = False  # see tools.modeling.checkpoint.save_checkpoint
    last_path: Path | None = None  # the resume checkpoint; default run_dir/last.pth
    last_extra: dict | None = None  # added to it (the pruning scripts keep there what their own resume needs)


def fit(
    model: nn.Module,
    data,
    *,
    train_cfg: TrainConfig,
    run_dir: Path,
    config: dict,
    device: torch.device,
    resume: dict | None = None,
    options: FitOptions = FitOptions(),
) -> dict:
    """Train `model` on `data.train` for `train_cfg.epochs`, validating on `data.val`.
    `resume` is a `last.pth` dict."""
    amp = check_amp(train_cfg.amp, device)
    step = StepOptions(
        loss_fn=options.loss_fn or cross_entropy(train_cfg.label_smoothing),
        amp=amp,
        scaler=torch.amp.GradScaler("cuda") if amp == "fp16" else None,
        grad_clip_norm=train_cfg.grad_clip_norm,
        after_step=options.after_step,
        channels_last=train_cfg.channels_last and device.type == "cuda",
    )
    optimizer, scheduler = _optimisation(model, train_cfg, len(data.train))
    state = FitState(schedule=schedule_key(train_cfg, len(data.train)))
    if resume is not None:
        check_resume(resume, model, train_cfg, len(data.train), source="the resumed checkpoint")
        state = _restore(resume, model, optimizer, scheduler, step.scaler, state.schedule)
    writer = _writer(run_dir, state.epoch) if options.is_main else None

    def checkpoint(path: Path, metrics: dict, extra: dict | None = None) -> None:
        save_checkpoint(
            path,
            model=model,
            config=config,
            epoch=state.epoch,
            metrics=metrics,
            full_module=options.save_full_module,
            training={"optimizer": optimizer, "scheduler": scheduler, "scaler": step.scaler},
            extra={"fit_state": _state_dict(state), "rng": _rng_state(), **(extra or {})},
        )

    try:
        while state.epoch < train_cfg.epochs and not _should_stop(state, train_cfg.patience):
            epoch = state.epoch
            data.train.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            try:
                train_stats = train_one_epoch(
                    model,
                    data.train,
                    optimizer,
                    scheduler,
                    device=device,
                    step=step,
                    desc=f"{options.tag} {epoch + 1}/{train_cfg.epochs}",
                )
            except NonFiniteLoss as e:
                raise UserError(f"{e}; {_kept(run_dir, options)}") from None
            val_stats = evaluate(unwrap(model), data.val, device=device, amp=amp, channels_last=step.channels_last)
            row = _epoch_row(epoch + 1, lr, train_stats, val_stats)
            improved = _advance(state, row)
            if options.is_main:
                print(_format_row(row, train_cfg.epochs, improved), flush=True)
                _log(writer, row, options.tag)
                atomic_write_csv(run_dir / LOG_CSV, state.history)
                if improved:
                    checkpoint(run_dir / BEST, row)
                checkpoint(options.last_path or run_dir / LAST, row, options.last_extra)
    finally:
        if writer is not None:
            writer.close()
    if options.is_main and state.best_epoch < 0 < state.epoch:
        raise UserError(
            f"{options.tag}: no epoch had a finite validation loss (last: {state.history[-1]['val_loss']}), "
            f"so there is no best model; lower the learning rate or set grad_clip_norm; "
            f"{_kept(run_dir, options)}"
        )
    return {
        "best_top1": state.best_top1,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "wall_time_s": state.wall_time_s,
        "history": state.history,
    }


def _optimisation(model: nn.Module, train_cfg: TrainConfig, steps_per_epoch: int) -> tuple:
    optimizer = build_optimizer(
        model.parameters(),
        name=train_cfg.optimizer,
        lr=train_cfg.lr,
        momentum=train_cfg.momentum,
        nesterov=train_cfg.nesterov,
        weight_decay=train_cfg.weight_decay,
    )
    scheduler = build_scheduler(
        optimizer,
        name=train_cfg.scheduler,
        epochs=train_cfg.epochs,
        steps_per_epoch=steps_per_epoch,
        milestones=train_cfg.milestones,
        gamma=train_cfg.gamma,
        warmup_epochs=train_cfg.warmup_epochs,
    )
    return optimizer, scheduler


def _kept(run_dir: Path | None, options: FitOptions) -> str:
    """Which checkpoints of the run exist to go on from: only files that are there."""
    if run_dir is None:
        return "the main process names the checkpoints kept"
    last = options.last_path or run_dir / LAST
    kept = [str(p) for p in (last, run_dir / BEST) if p.is_file()]
    return f"kept: {', '.join(kept)}" if kept else "no checkpoint was written (it failed before an epoch finished)"


def _advance(state: FitState, row: dict) -> bool:
    """Count the epoch `row` into `state`; True when it is a new best validation accuracy. An epoch
    whose validation loss is nan or inf is never the best, whatever its accuracy reads."""
    state.epoch = row["epoch"]
    state.wall_time_s += row["epoch_time_s"]
    state.history.append(row)
    improved = math.isfinite(row["val_loss"]) and row["val_top1"] > state.best_top1
    if improved:
        state.best_top1, state.best_epoch, state.epochs_since_best = row["val_top1"], row["epoch"], 0
    else:
        state.epochs_since_best += 1
    return improved


def _should_stop(state: FitState, patience: int) -> bool:
    if patience > 0 and state.epochs_since_best >= patience:
        print(f"early stopping: no val improvement for {state.epochs_since_best} epochs")
        return True
    return False


def _epoch_row(epoch: int, lr: float, train: dict, val: dict) -> dict:
    return {
        "epoch": epoch,
        "lr": lr,
        "train_loss": train["loss"],
        "train_top1": train["top1"],
        "val_loss": val["loss"],
        "val_top1": val["top1"],
        "val_top5": val["top5"],
        "epoch_time_s": train["time_s"] + val["time_s"],
        "train_images_per_s": train["images_per_s"],
    }


def _format_row(row: dict, epochs: int, improved: bool) -> str:
    star = " *" if improved else "" if math.isfinite(row["val_loss"]) else "  (val loss not finite: never the best)"
    return (
        f"epoch {row['epoch']:>3}/{epochs}  lr {row['lr']:.4g}  "
        f"train loss {row['train_loss']:.4f} top1 {row['train_top1']:6.2f}%  "
        f"val loss {row['val_loss']:.4f} top1 {row['val_top1']:6.2f}% top5 {row['val_top5']:6.2f}%  "
        f"{row['epoch_time_s']:.1f}s  {row['train_images_per_s']:.0f} img/s{star}"
    )


def _writer(run_dir: Path, start_epoch: int):
    from torch.utils.tensorboard import SummaryWriter

    # purge_step drops events a killed run wrote after its last checkpoint, so curves don't fork.
    return SummaryWriter(log_dir=str(run_dir / LOGS), purge_step=start_epoch + 1 if start_epoch else None)


def _log(writer, row: dict, tag: str) -> None:
    step = row["epoch"]
    for key, value in row.items():
        if key != "epoch":
            split, _, name = key.partition("_")
            writer.add_scalar(f"{tag}/{split}/{name}" if name else f"{tag}/{key}", value, step)
    writer.flush()


def _state_dict(state: FitState) -> dict:
    return {
        "epoch": state.epoch,
        "best_top1": state.best_top1,
        "best_epoch": state.best_epoch,
        "epochs_since_best": state.epochs_since_best,
        "wall_time_s": state.wall_time_s,
        "history": state.history,
        "schedule": state.schedule,
    }


def _rng_state() -> dict:
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _restore(ckpt: dict, model: nn.Module, optimizer, scheduler, scaler, schedule: dict) -> FitState:
    """Model, optimizer, scheduler, scaler and RNG as saved (check_resume has loaded the model).
    More epochs than the saved run planned: the freshly built scheduler, made for the new
    length, continues at the saved step, so cosine and multistep follow the longer curve and
    one-cycle's annealing restarts from the resumed step along the longer cycle."""
    optimizer.load_state_dict(ckpt["optimizer"])
    saved_schedule = (ckpt.get("fit_state") or {}).get("schedule") or {}
    if saved_schedule.get("epochs", schedule["epochs"]) == schedule["epochs"]:
        scheduler.load_state_dict(ckpt["scheduler"])
    else:
        _continue_schedule(scheduler, ckpt["scheduler"]["last_epoch"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt.get("rng") or {}
    if "cpu" in rng:
        torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    fs = ckpt.get("fit_state") or {"epoch": ckpt.get("epoch", 0)}
    return FitState(**{**fs, "schedule": schedule})


def _continue_schedule(scheduler, steps_done: int) -> None:
    """Put a scheduler built for a longer run at step `steps_done`, learning rates included."""
    scheduler.last_epoch = steps_done - 1
    scheduler._step_count = steps_done + 1  # past 1: no "step() before optimizer.step()" warning
    scheduler.step()


PRUNE_STATE = "prune_state"  # the key of a pruning run's last.pth holding what its --resume needs


def read_prune_resume(path: str, script: str) -> dict:
    """The last.pth (or its run folder) of a `script` run's final fine-tuning, for --resume."""
    file = Path(path)
    file = file / LAST if file.is_dir() else file
    ckpt = read_checkpoint(file)
    state = ckpt.get(PRUNE_STATE) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or state.get("script") != script or "optimizer" not in ckpt:
        raise UserError(f"{file} is not the last.pth of a {script} run's fine-tuning; --resume needs one")
    return ckpt


def load_prune_run(args, script: str, flags: dict) -> tuple[dict | None, str, tuple]:
    """A pruning command's start: the --resume last.pth (or None), the checkpoint it prunes, and
    load_checkpoint_run's (cfg, ckpt, data, model, device), the resumed run's config as the base."""
    resume = read_prune_resume(args.resume, script) if args.resume else None
    checkpoint = resumed_checkpoint(args.checkpoint, resume, args.resume)
    base = (resume["config"], f"checkpoint {args.resume}") if resume else None
    return resume, checkpoint, load_checkpoint_run(args, flags=flags, checkpoint=checkpoint, base=base)


def resumed_checkpoint(checkpoint: str | None, resume: dict | None, resume_path: str | None) -> str:
    """The trained model a pruning run starts from: --checkpoint, or on --resume the one the
    resumed run was pruned from (they must agree when both are given)."""
    if resume is None:
        if checkpoint is None:
            raise UserError("pass --checkpoint <trained model .pth> (or --resume <run folder>/last.pth)")
        return checkpoint
    stored = resume[PRUNE_STATE]["checkpoint"]
    if checkpoint is not None and Path(checkpoint).resolve() != Path(stored).resolve():
        raise UserError(
            f"{resume_path} fine-tunes a model pruned from {stored}, not {checkpoint}; "
            f"drop --checkpoint or start a new run"
        )
    return stored


def finetune_train_config(train: TrainConfig, finetune) -> TrainConfig:
    """The TrainConfig `fit` runs for fine-tuning: optimisation from `finetune` (lr 0 -> train.lr / 10),
    device, seed, amp and determinism from `train`."""
    from dataclasses import fields, replace

    values = {f.name: getattr(finetune, f.name) for f in fields(finetune) if f.name in {g.name for g in fields(train)}}
    values["lr"] = finetune.lr or train.lr / 10
    return replace(train, **values)


def test_best_checkpoint(
    model: nn.Module, data, run_dir: Path, device: torch.device, summary: dict, *, macs: int, params: int
) -> dict:
    """Test-set figures of the best checkpoint plus the run's bookkeeping."""
    history = summary["history"]
    best = read_own_checkpoint(run_dir / BEST)  # weights-only: a replaced file must not run code
    if not isinstance(best, dict) or not isinstance(best.get("model"), dict):
        raise UserError(f"{run_dir / BEST} holds no state dict under 'model'; it was replaced: restore or delete it")
    unwrap(model).load_state_dict(best["model"])
    test = evaluate(model, data.test, device=device)
    return {
        "best_val_top1": summary["best_top1"],
        "best_epoch": summary["best_epoch"],
        "final_val_top1": history[-1]["val_top1"] if history else None,
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "test_loss": test["loss"],
        "macs": macs,
        "flops": flops_from_macs(macs),
        "params": params,
        "epochs": summary["epochs_run"],
        "wall_time_s": summary["wall_time_s"],
        "train_images_per_s": history[-1]["train_images_per_s"] if history else None,
        "device": str(device),
    }
