"""scripts.train: a model trained from a config into its run folder (or resumed from last.pth), on
one device or with DDP, tested with its best checkpoint; prints the run's figures.

    uv run python -m scripts.train --config cfgs/quickstart.yaml
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from datasets import build_data
from tools.core.cli import resolve_config, run_name
from tools.core.config import config_to_dict
from tools.core.device import seed_everything, set_num_threads
from tools.core.distributed import cleanup_distributed, setup_distributed, wrap_ddp
from tools.core.errors import UserError
from tools.core.io import atomic_write_yaml
from tools.core.run_folder import BEST, LAST, LOG_CSV, LOGS, METRICS, RunFolder
from tools.measure.describe import checkpoint_selection, test_set_record
from tools.measure.metrics import count_macs_params, flops_from_macs, format_count
from tools.modeling.checkpoint import read_checkpoint, unwrap
from tools.modeling.registry import build_from_config
from tools.modeling.weights import extract_state_dict, load_state_into
from tools.training.fit import FitOptions, check_resume, check_resume_is_latest, fit, test_best_checkpoint


def train(args) -> None:
    """scripts.train's whole command: `args` as its parse_args returns them."""
    resume = None
    if args.resume:
        path = Path(args.resume)
        path = path / LAST if path.is_dir() else path
        resume = read_checkpoint(path, trust=bool(args.trust_checkpoint))
        if not isinstance(resume, dict) or "optimizer" not in resume or "config" not in resume:
            raise UserError(f"{path} is not a training checkpoint (last.pth) of this project; --resume needs one")
    cfg = resolve_config(
        args,
        flags={
            "train.epochs": args.epochs,
            "train.lr": args.lr,
            "data.batch_size": args.batch_size,
            "train.seed": args.seed,
            "model.name": args.model,
        },
        base=(resume["config"], f"checkpoint {args.resume}") if resume else None,
    )
    set_num_threads(cfg.train.num_threads)
    dist = setup_distributed(cfg.train.device)
    seed_everything(cfg.train.seed + dist.rank, cfg.train.deterministic)

    data = build_data(cfg.data, seed=cfg.train.seed, device=dist.device, rank=dist.rank, world_size=dist.world_size)
    model = build_from_config(cfg.model, num_classes=data.num_classes, input_shape=data.input_shape)
    if cfg.model.weights and resume is None:
        weights = read_checkpoint(cfg.model.weights, trust=cfg.model.trust_checkpoint)
        load_state_into(
            model,
            extract_state_dict(weights, source=cfg.model.weights),
            source=cfg.model.weights,
            rename=cfg.model.weights_rename,
            strict=cfg.model.weights_strict,
        )
    macs, params = count_macs_params(model, (1, *data.input_shape))
    if resume is not None:  # before anything is written into the run folder
        check_resume(resume, model, cfg.train, len(data.train), source=str(path))
    model.to(dist.device)

    run = None
    if dist.is_main:
        run = (
            RunFolder(args.save_dir or path.parent)
            if resume is not None
            else RunFolder.new(cfg.output.root, "train", run_name(cfg, args.config, cfg.model.name), args.save_dir)
        )
        if resume is not None:
            check_resume_is_latest(resume, path, run.last)
        run.start(cfg, resume=resume is not None)
    with run or contextlib.nullcontext():
        train_in(run.path if run else None, cfg, model, data, dist, resume=resume, macs=macs, params=params)
    cleanup_distributed(dist)


def train_in(run_dir: Path | None, cfg, model, data, dist, *, resume: dict | None, macs: int, params: int) -> None:
    """The run itself, inside its run folder (`run_dir` is None on DDP ranks other than the main one)."""
    if dist.is_main:
        print(f"run folder: {run_dir}")
        print(
            f"model {cfg.model.name} on {cfg.data.name} {data.input_shape}, {data.num_classes} classes, "
            f"device {dist.device}, world size {dist.world_size}"
        )
        print(
            f"MACs {format_count(macs)}  FLOPs {format_count(flops_from_macs(macs))} (FLOPs = 2 x MACs)  "
            f"params {format_count(params)}"
        )

    summary = fit(
        wrap_ddp(model, dist),
        data,
        train_cfg=cfg.train,
        run_dir=run_dir,
        config=config_to_dict(cfg),
        device=dist.device,
        resume=resume,
        options=FitOptions(is_main=dist.is_main),
    )

    if dist.is_main:
        metrics = test_best_checkpoint(unwrap(model), data, run_dir, dist.device, summary, macs=macs, params=params)
        metrics["test_set"] = test_set_record(cfg.data, cfg.train.seed, data.test.num_samples)
        metrics["checkpoint_selected_on"] = checkpoint_selection(cfg.data.val_split, summary["epochs_run"])
        atomic_write_yaml(run_dir / METRICS, metrics)
        print(
            f"best val top1 {metrics['best_val_top1']:.2f}% (epoch {metrics['best_epoch']}), "
            f"test top1 {metrics['test_top1']:.2f}% top5 {metrics['test_top5']:.2f}% with the best checkpoint; "
            f"wall time {metrics['wall_time_s']:.1f}s"
        )
        print(f"checkpoints: {run_dir / BEST}, {run_dir / LAST}")
        print(f"metrics:     {run_dir / METRICS}  (per-epoch log: {run_dir / LOG_CSV})")
        print(f"TensorBoard: uv run tensorboard --logdir {run_dir / LOGS}")
