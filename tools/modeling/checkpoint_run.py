"""The common start of every script that works on a trained model: its checkpoint's config (<
--config < --set < flags), then the data set, the rebuilt model and the device.

    cfg, ckpt, data, model, device = load_checkpoint_run(args)   # args from tools.core.cli.base_parser

It sits above tools.core.cli (argument parsing and config only) because it needs the data sets and
tools.modeling.checkpoint.
"""

from __future__ import annotations

import argparse

from datasets import build_data
from tools.core.cli import resolve_config
from tools.core.device import resolve_device, seed_everything, set_num_threads
from tools.core.errors import UserError
from tools.modeling.checkpoint import checkpoint_config, load_model, read_checkpoint


def load_checkpoint_run(
    args: argparse.Namespace,
    flags: dict | None = None,
    checkpoint: str | None = None,
    base: tuple[dict, str] | None = None,
):
    """The common start of every script that works on a trained model (`checkpoint`, default
    `args.checkpoint`): the config stored in it (or `base`, e.g. a resumed run's) < --config <
    --set < flags, then data, model, device.

    Returns (cfg, ckpt, data, model, device); the model is on `device`, in eval mode."""
    checkpoint = checkpoint or args.checkpoint
    # Whether to unpickle is decided before the checkpoint's own config is known (and never by it).
    ckpt = read_checkpoint(checkpoint, trust=resolve_config(args, flags=flags).model.trust_checkpoint)
    stored = checkpoint_config(ckpt)
    if stored is None and not args.config and base is None:
        raise UserError(f"{checkpoint} carries no config; pass --config with the model and data set it was trained on")
    cfg = resolve_config(args, flags=flags, base=base or ((stored, f"checkpoint {checkpoint}") if stored else None))
    set_num_threads(cfg.train.num_threads)
    device = resolve_device(cfg.train.device)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    data = build_data(cfg.data, seed=cfg.train.seed, device=device)
    model, _ = load_model(
        checkpoint, model_cfg=cfg.model, num_classes=data.num_classes, input_shape=data.input_shape, ckpt=ckpt
    )
    return cfg, ckpt, data, model.to(device), device
