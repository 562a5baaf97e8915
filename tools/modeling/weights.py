"""Loading weights saved by other tools (or by this one) into a model, with one-line errors.

    >>> import torch
    >>> from tools.modeling.weights import extract_state_dict, load_state_into
    >>> model = torch.nn.Linear(2, 1)
    >>> saved = {"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}
    >>> sorted(extract_state_dict(saved))
    ['bias', 'weight']
    >>> load_state_into(model, extract_state_dict(saved), "ckpt.pth")

`extract_state_dict` finds the weights inside whatever `torch.load` returned (a module, a state
dict, or one nested under state_dict / model_state_dict / model / net) and drops the DataParallel /
torch.compile prefixes; `load_state_into` loads them strictly (one line naming what differs) or
keeps what does not fit (model.weights_strict: false).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn as nn

from tools.core.errors import UserError, first_line

# Keys under which training scripts commonly nest the weights, most specific first.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
# DataParallel/DDP and torch.compile prefix every key of the wrapped model.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_LIST_LIMIT = 3


def _strip_prefix(state_dict: dict, prefix: str) -> dict:
    # Only when every key carries it: a model may legitimately own a submodule "module".
    if not state_dict or not all(k.startswith(prefix) for k in state_dict):
        return state_dict
    return {k[len(prefix) :]: v for k, v in state_dict.items()}


def _strip_wrapper_prefixes(state_dict: dict) -> dict:
    # DDP(compile(m)) and compile(DDP(m)) stack the prefixes in either order.
    previous = None
    while previous is not state_dict:
        previous = state_dict
        for prefix in _WRAPPER_PREFIXES:
            state_dict = _strip_prefix(state_dict, prefix)
    return state_dict


def _unwrap(obj: object, source: str) -> Mapping:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, Mapping):
        raise UserError(
            f"{source} holds a {type(obj).__name__}, not a model or state dict; "
            "save model.state_dict() or the model itself"
        )
    for key in _WRAPPER_KEYS:
        if isinstance(obj.get(key), (Mapping, nn.Module)):
            return _unwrap(obj[key], source)
    if not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(
            f"{source} has no tensors and none of the keys {', '.join(_WRAPPER_KEYS)}; "
            f"top-level keys are: {', '.join(map(str, list(obj)[:8]))}"
        )
    return obj


def extract_state_dict(obj: object, *, source: str = "checkpoint") -> dict:
    """The model weights inside whatever `torch.load` returned, with wrapper prefixes removed.

    Accepts a pickled nn.Module, a plain state dict, or a dict nesting either under
    state_dict / model_state_dict / model / net. `source` only names it in errors.
    """
    return _strip_wrapper_prefixes(dict(_unwrap(obj, source)))


def _shape_mismatches(model_state: Mapping, state_dict: Mapping) -> list[str]:
    rows = []
    for key, value in state_dict.items():
        if key in model_state and isinstance(value, torch.Tensor):
            want = tuple(model_state[key].shape)
            if tuple(value.shape) != want:
                rows.append(f"{key}: checkpoint {list(value.shape)} vs model {list(want)}")
    return rows


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (plural or noun + 's')}"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return f"({shown}{', ...' if len(items) > _LIST_LIMIT else ''})"


def _mismatch_summary(missing, unexpected, shapes) -> str:
    parts = []
    if missing:
        parts.append(f"{_plural(len(missing), 'missing key')} {_listed(missing)}")
    if unexpected:
        parts.append(f"{_plural(len(unexpected), 'unexpected key')} {_listed(unexpected)}")
    if shapes:
        parts.append(f"{_plural(len(shapes), 'shape mismatch', 'shape mismatches')} {_listed(shapes)}")
    return ", ".join(parts)


def rename_keys(state_dict: Mapping, rename: Mapping[str, str]) -> dict:
    """`rename` maps key prefixes, e.g. {"linear.": "fc."}; the first matching prefix wins."""
    out = {}
    for key, value in state_dict.items():
        for old, new in rename.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def _untracked_batchnorm_keys(model: nn.Module, missing: list[str]) -> list[str]:
    """The missing keys PyTorch itself accepts: `num_batches_tracked` of a BatchNorm layer that tracks
    running statistics. Files saved before PyTorch 0.4.1 lack them (e.g. the widely used pretrained
    CIFAR ResNet-20s), and BatchNorm's versioned loading fills them in; any other key stays missing."""
    modules = dict(model.named_modules())
    found = []
    for key in missing:
        owner, _, attr = key.rpartition(".")
        module = modules.get(owner)
        if (
            attr == "num_batches_tracked"
            and isinstance(module, nn.modules.batchnorm._BatchNorm)
            and module.track_running_stats
        ):
            found.append(key)
    return found


def _as_version_1(metadata, untracked: list[str]):
    """`metadata` with the owners of `untracked` at BatchNorm format version 1, the one PyTorch
    loads without num_batches_tracked (it keeps the layer's own count)."""
    if metadata is None or not untracked:
        return metadata
    metadata = OrderedDict((k, dict(v)) for k, v in metadata.items())
    for key in untracked:
        owner = key.rpartition(".")[0]
        metadata.setdefault(owner, {})["version"] = 1
    return metadata


def load_state_into(
    model: nn.Module,
    state_dict: Mapping,
    source: str,
    *,
    model_name: str | None = None,
    rename: Mapping[str, str] | None = None,
    strict: bool = True,
) -> None:
    """Load `state_dict` (keys renamed by prefix with `rename` first). Strict: any missing or
    unexpected key or shape difference is a one-line UserError. Not strict: every tensor that fits
    is loaded, the rest keep their initial values, and one line says which (e.g. a new head).

    `model_name` is only used in messages; it defaults to the `registry_name` that
    build_model sets, else the class name.
    """
    state_dict = rename_keys(state_dict, rename) if rename else state_dict
    model_state = model.state_dict()
    untracked = _untracked_batchnorm_keys(model, [k for k in model_state if k not in state_dict])
    missing = [k for k in model_state if k not in state_dict and k not in untracked]
    unexpected = [k for k in state_dict if k not in model_state]
    shapes = _shape_mismatches(model_state, state_dict)
    name = model_name or getattr(model, "registry_name", None) or type(model).__name__
    if (missing or unexpected or shapes) and strict:
        raise UserError(
            f"checkpoint {source} does not match model {name}: {_mismatch_summary(missing, unexpected, shapes)}; "
            "check model.name and data set / num_classes (model.weights_rename maps key prefixes, "
            "model.weights_strict: false keeps a new head)"
        )
    skipped = set(missing) | {row.split(":")[0] for row in shapes}
    fitting = OrderedDict((k, v) for k, v in state_dict.items() if k in model_state and k not in skipped)
    # Per-module format versions: files from other tools often lack them (or carry them under
    # prefixes stripped above), and some modules (MNASNet) refuse a load without; the model's own fit.
    fitting._metadata = _as_version_1(getattr(model_state, "_metadata", None), untracked)
    if not fitting:
        raise UserError(
            f"no tensor of checkpoint {source} fits model {name}; check model.name and model.weights_rename"
        )
    try:
        model.load_state_dict(fitting, strict=strict)
    except RuntimeError as e:
        raise UserError(f"checkpoint {source} cannot be loaded into {name}: {first_line(e)}") from None
    if not strict and (missing or unexpected or shapes):
        print(
            f"note: loaded {len(fitting)}/{len(model_state)} tensors of {name} from {source}; not loaded: "
            f"{_mismatch_summary(missing, unexpected, shapes)} (model.weights_strict: false)"
        )
