"""Checkpoints are plain dicts; this module writes them atomically and reads any of them back.

    save_checkpoint(run_dir / "last.pth", model=model, training={"optimizer": opt}, epoch=3, config=cfg_dict)
    model, ckpt = load_model(Path("results/train/quickstart/best_model.pth"), model_cfg=cfg.model,
                             num_classes=10, input_shape=(3, 32, 32))

A checkpoint dict holds `model` (a state dict), `optimizer`, `scheduler`, `scaler`, `epoch`,
`config` (the resolved config as a dict) and `metrics`; a model whose shapes no longer match what
its config builds (structured pruning) also carries `structure` (see tools.modeling.structure), from
which load_model rebuilds it. Every file is read with `torch.load(weights_only=True)`, so loading
never runs code from the file; files this project writes always load that way. A file that needs
unpickling (a pickled module from another tool, a pre-0.2 pruned checkpoint) loads only with
`trust=True` (`--trust-checkpoint` / model.trust_checkpoint); a pickled `X.pth` whose run also
wrote the weights-only twin `X_state.pth` (structured runs' pruned_model.pth) is read from the
twin instead. `load_model` also accepts a state dict from other tools under the usual keys (see
tools.modeling.weights.extract_state_dict). A run's own files (best_model.pth, last.pth) are read with
`read_own_checkpoint`, which never unpickles. A path that is no PyTorch file (a folder, text,
random bytes) is one line saying so before torch.load sees it. The config a file stores never
chooses code: tools.core.config refuses its `module:factory` model.name and ignores its
model.trust_checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tools.core.config import stored_config
from tools.core.errors import UserError, first_line
from tools.core.io import atomic_torch_save


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    config: dict,
    epoch: int = 0,
    metrics: dict | None = None,
    training: dict[str, Any] | None = None,
    full_module: bool = False,
    extra: dict | None = None,
) -> None:
    """Nothing is pickled, so the file loads with weights_only=True. When `config` names a model,
    the model's `structure` (tools.modeling.structure) is stored beside the state dict, so load_model
    rebuilds it whatever pruning did to its shapes, in any later script. `training` holds what a
    resume needs besides the model ({"optimizer": ..., "scheduler": ..., "scaler": ...}; each
    stored as its state dict, None when absent). `full_module` stores the structure even when
    `config` names no model."""
    from tools.modeling.structure import STRUCTURE_KEY, model_structure

    model = unwrap(model)
    training = training or {}
    ckpt = {
        "model": model.state_dict(),
        **{
            key: training[key].state_dict() if training.get(key) is not None else None
            for key in ("optimizer", "scheduler", "scaler")
        },
        "epoch": epoch,
        "config": stored_config(config) if config else config,  # data.root absolute: works from any folder
        "metrics": metrics or {},
    }
    if (config.get("model") or {}).get("name") or full_module:
        ckpt[STRUCTURE_KEY] = model_structure(model, config.get("model") or {})
    ckpt.update(extra or {})
    atomic_torch_save(ckpt, path)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


# The weights-only twin a run writes beside a pickled module: pruned_model.pth -> pruned_model_state.pth.
SAFE_TWIN_SUFFIX = "_state"
_LOAD_ERRORS = (
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    ValueError,
    OSError,
    KeyError,
    IndexError,
)


def safe_twin(path: Path) -> Path:
    return path.with_name(path.stem + SAFE_TWIN_SUFFIX + path.suffix)


def read_checkpoint(path: str | Path, *, trust: bool = False) -> Any:
    """torch.load with weights_only=True, one-line errors for a missing, truncated, foreign or
    pickled file; `trust=True` also unpickles (which can run code from the file)."""
    path = Path(path)
    _check_is_torch_file(path)
    try:
        return _torch_load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e).lower() and "weights only" not in str(e).lower():
            raise _unreadable(path, e) from None
        needs = _pickled_global(str(e))
    except _LOAD_ERRORS as e:
        raise _unreadable(path, e) from None
    if trust:
        return _read_trusted(path)
    twin = safe_twin(path)
    if twin.is_file():
        print(f"note: {path.name} is a pickled module; reading its weights-only twin {twin}", file=sys.stderr)
        return read_checkpoint(twin)
    raise UserError(
        f"checkpoint {path} needs unpickling ({needs}), which can run code from the file; pass "
        "--trust-checkpoint (model.trust_checkpoint: true) if you trust its source, or save a state dict"
    )


def read_own_checkpoint(path: str | Path) -> Any:
    """A file this project's runs write into their own folder (best_model.pth, last.pth): always
    a plain dict, so it is never unpickled, whatever the flags; a pickle there was put there by
    someone else."""
    try:
        return read_checkpoint(path, trust=False)
    except UserError as e:
        if "needs unpickling" not in str(e):
            raise
    raise UserError(
        f"{path} needs unpickling, but the runs of this project write plain state dicts there: "
        "it was replaced by another file; it is not loaded (delete it, or restore the run's own file)"
    )


def _check_is_torch_file(path: Path) -> None:
    """One line for a path that cannot be a checkpoint: missing, a folder, text, random bytes."""
    if path.is_dir():
        inside = sorted(p.name for p in path.glob("*.pth"))[:4]
        raise UserError(
            f"checkpoint {path} is a folder, not a file; pass the .pth inside it"
            + (f" ({', '.join(inside)})" if inside else ", e.g. <run folder>/best_model.pth")
        )
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} not found; pass the .pth written by a run, e.g. results/train/quickstart/best_model.pth"
        )
    if zipfile.is_zipfile(path) or _has_legacy_header(path):
        return
    with path.open("rb") as f:
        head = f.read(4096)
    why = (
        "an empty file"
        if not head
        else "text"
        if _is_text(head)
        else "neither a zip archive nor PyTorch's legacy format"
    )
    raise UserError(
        f"checkpoint {path} is truncated or not a PyTorch file (it is {why}); "
        "pass a .pth saved with torch.save, e.g. a run's best_model.pth"
    )


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # the header holds one integer: nothing to import
        raise pickle.UnpicklingError(f"global {module}.{name} in the header")


def _has_legacy_header(path: Path) -> bool:
    """Whether the file starts as torch.save's pre-1.6 format does: a pickled magic number. Read
    with an unpickler that imports nothing, so a hostile file can build no object here."""
    with path.open("rb") as f:
        head = f.read(64)  # the header pickle takes < 40 bytes in any protocol; a bounded read whatever it claims
    try:
        return _NoGlobals(io.BytesIO(head)).load() == torch.serialization.MAGIC_NUMBER
    except Exception:  # noqa: BLE001 (any failure means: not that header)
        return False


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start > len(head) - 4  # a character cut at the end of the sample
    return b"\0" not in head


def _torch_load(path: Path, *, weights_only: bool) -> Any:
    from tools.modeling.sparse_storage import unpack_tensor

    # unpack_tensor is this project's decoder of sparse storage (tensors in, tensor out): safe. Files
    # written before the layered layout name it by its old path (tools/sparse_storage.py keeps it).
    decoders = [unpack_tensor, (unpack_tensor, "tools.sparse_storage.unpack_tensor")]
    guard = torch.serialization.safe_globals(decoders) if weights_only else contextlib.nullcontext()
    with guard:
        return torch.load(path, map_location="cpu", weights_only=weights_only)


def _read_trusted(path: Path) -> Any:
    try:
        return _torch_load(path, weights_only=False)
    except _LOAD_ERRORS as e:
        raise _unreadable(path, e) from None
    except (AttributeError, ModuleNotFoundError, ImportError) as e:
        raise UserError(
            f"checkpoint {path} pickles a class this project cannot import ({e}); save a state dict instead"
        ) from None


def _pickled_global(message: str) -> str:
    found = re.search(r"GLOBAL ([\w.<>]+)", message)
    return f"it pickles {found.group(1)}" if found else "it holds pickled objects"


def _unreadable(path: Path, e: Exception) -> UserError:
    reason = first_line(e)
    return UserError(
        f"checkpoint {path} is truncated or not a PyTorch file ({reason}); re-create it or pick another file"
    )


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
    model_cfg: Any,
    num_classes: int,
    input_shape: tuple[int, int, int],
    ckpt: Any = None,
) -> tuple[nn.Module, Any]:
    """Build the model `model_cfg` (a tools.core.config.ModelConfig) names and fill it from `path`:
    rebuilt from the file's `structure` when pruning changed its shapes, or the module itself when
    a trusted file pickles one. Files from other tools (no `config`) get model.weights_rename and
    model.weights_strict. Returns the model (eval mode, CPU) and the raw checkpoint object."""
    from tools.modeling.registry import build_from_config
    from tools.modeling.structure import STRUCTURE_KEY, apply_structure, same_modules
    from tools.modeling.weights import extract_state_dict, load_state_into

    if ckpt is None:
        ckpt = read_checkpoint(path, trust=model_cfg.trust_checkpoint)
    module = ckpt if isinstance(ckpt, nn.Module) else None
    if module is None and isinstance(ckpt, dict) and isinstance(ckpt.get("model"), nn.Module):
        module = ckpt["model"]
    if module is not None:
        _check_num_classes(module, num_classes, input_shape, path)
        return module.eval(), ckpt
    state_dict = extract_state_dict(ckpt, source=str(path))
    model = build_from_config(model_cfg, num_classes=num_classes, input_shape=input_shape)
    structure = ckpt.get(STRUCTURE_KEY) if isinstance(ckpt, dict) else None
    # Another model.name than the file's falls through to the strict load, which says what differs.
    reshaped = isinstance(structure, dict) and same_modules(model, structure)
    if reshaped:
        apply_structure(model, structure, state_dict, str(path))
    foreign = not (isinstance(ckpt, dict) and isinstance(ckpt.get("config"), dict))
    load_state_into(
        model,
        state_dict,
        source=str(path),
        rename=model_cfg.weights_rename if foreign else None,
        strict=model_cfg.weights_strict or not foreign,
    )
    if reshaped:
        _check_num_classes(model, num_classes, input_shape, path)
    return model.eval(), ckpt


def _check_num_classes(
    module: nn.Module, num_classes: int, input_shape: tuple[int, int, int], path: str | Path
) -> None:
    with torch.no_grad():
        try:
            out = module.eval()(torch.zeros(1, *input_shape))
        except RuntimeError as e:
            raise UserError(
                f"model in {path} does not accept inputs of shape {tuple(input_shape)} ({first_line(e)}); check data.name and data.image_size"
            ) from None
    if out.shape[-1] != num_classes:
        raise UserError(
            f"model in {path} predicts {out.shape[-1]} classes but the data set has {num_classes}; check data.name"
        )
