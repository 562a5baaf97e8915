"""Checkpoints are plain dicts; this module writes them atomically and reads any of them back.

    save_checkpoint(run_dir / "last.pth", model=model, optimizer=opt, epoch=3, config=cfg_dict)
    model, ckpt = load_model(Path("results/train/quickstart/best_model.pth"), model_cfg=cfg.model,
                             num_classes=10, input_shape=(3, 32, 32))

A checkpoint dict holds `model` (a state dict, or the whole module when pruning changed its
shape), `optimizer`, `scheduler`, `scaler`, `epoch`, `config` (the resolved config as a dict)
and `metrics`. `load_model` also accepts files written by other tools: a pickled module or a
state dict under the usual keys (see tools.models.extract_state_dict).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tools.errors import UserError
from tools.io import atomic_torch_save


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    config: dict,
    epoch: int = 0,
    metrics: dict | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    full_module: bool = False,
    extra: dict | None = None,
) -> None:
    """`full_module=True` pickles the module itself, for models whose shapes no longer match the
    registry architecture (structured pruning)."""
    model = unwrap(model)
    ckpt = {
        "model": model if full_module else model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch,
        "config": config,
        "metrics": metrics or {},
    }
    ckpt.update(extra or {})
    atomic_torch_save(ckpt, path)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def read_checkpoint(path: str | Path) -> Any:
    """torch.load with one-line errors for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; pass the .pth written by a run, e.g. results/train/quickstart/best_model.pth")
    try:
        # weights_only=False: our checkpoints may hold whole pruned modules; only load files you trust.
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"checkpoint {path} is truncated or not a PyTorch file ({reason}); re-create it or pick another file") from None
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        raise UserError(f"checkpoint {path} pickles a class this project cannot import ({e}); save a state dict instead") from None


# A bare pickled module (e.g. structured pruning's pruned_model.pth, which third-party tools
# load with plain torch.load) carries its run's config as this plain-dict attribute.
MODULE_CONFIG_ATTR = "run_config"


def checkpoint_config(ckpt: Any) -> dict | None:
    """The resolved config a checkpoint was trained with, if it carries one."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict):
        return ckpt["config"]
    if isinstance(ckpt, nn.Module) and isinstance(getattr(ckpt, MODULE_CONFIG_ATTR, None), dict):
        return getattr(ckpt, MODULE_CONFIG_ATTR)
    return None


def load_model(
    path: str | Path,
    *,
    model_name: str,
    num_classes: int,
    input_shape: tuple[int, int, int],
    stem: str = "auto",
    ckpt: Any = None,
) -> tuple[nn.Module, Any]:
    """Build `model_name` and fill it from `path`, or take the pickled module when the file holds
    one. Returns the model (eval mode, CPU) and the raw checkpoint object."""
    from tools.models import build_model, extract_state_dict, load_state_into

    if ckpt is None:
        ckpt = read_checkpoint(path)
    module = ckpt if isinstance(ckpt, nn.Module) else None
    if module is None and isinstance(ckpt, dict) and isinstance(ckpt.get("model"), nn.Module):
        module = ckpt["model"]
    if module is not None:
        _check_num_classes(module, num_classes, input_shape, path)
        return module.eval(), ckpt
    model = build_model(model_name, num_classes=num_classes, in_channels=input_shape[0],
                        image_size=input_shape[1], stem=stem)
    load_state_into(model, extract_state_dict(ckpt), source=str(path))
    return model.eval(), ckpt


def _check_num_classes(module: nn.Module, num_classes: int, input_shape: tuple[int, int, int], path: str | Path) -> None:
    with torch.no_grad():
        try:
            out = module.eval()(torch.zeros(1, *input_shape))
        except RuntimeError as e:
            raise UserError(f"model in {path} does not accept inputs of shape {tuple(input_shape)} ({str(e).splitlines()[0]}); check data.name and data.image_size") from None
    if out.shape[-1] != num_classes:
        raise UserError(f"model in {path} predicts {out.shape[-1]} classes but the data set has {num_classes}; check data.name")
