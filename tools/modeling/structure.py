"""A pruned model's architecture as plain data, and its rebuild without unpickling any code.

    from tools.modeling.structure import model_structure, rebuild
    structure = model_structure(pruned, {"name": "resnet20", "kwargs": {}, "stem": "auto"})
    model = rebuild(structure, pruned.state_dict(), num_classes=10, input_shape=(3, 32, 32), source="x.pth")

Structured pruning (torch-pruning) shrinks tensors and rewrites plain attributes of the modules it
touches (Conv2d.out_channels, BatchNorm2d.num_features, groups, ...); it never adds, removes or
replaces modules. So a pruned model is fully described by the spec its unpruned model was built
from (model.name, model.kwargs, model.stem), every module's plain attributes (numbers, strings and
tuples of them) and the shapes of its state dict, all of which `torch.load(weights_only=True)`
reads. `rebuild` builds the spec's model, checks that every module name and class matches, sets
the attributes, gives each parameter and buffer the saved shape and loads the weights strictly.

Why not torch-pruning's `DependencyGraph.pruning_history()`: replaying it re-traces the graph at
load time (seconds for big models at 224 px), and the history would have to be stitched together
across iterative rounds and the MACs-target search's probe copies; the shapes and attributes
stored here are exactly what such a replay produces. `rebuild_problem` checks, when a run saves
the model, that the rebuild reproduces its outputs, so a model this cannot describe is reported
then, not when someone loads it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tools.core.errors import UserError, first_line

STRUCTURE_KEY = "structure"
FORMAT = 1
_SIMPLE = (int, float, bool, str, type(None))
_SPEC_KEYS = ("name", "kwargs", "stem")


def _simple(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(isinstance(v, _SIMPLE) for v in value)
    return isinstance(value, _SIMPLE)


def model_structure(model: nn.Module, model_config: dict) -> dict:
    """{"format", "spec": model.name/kwargs/stem, "modules": {name: {"type", "attrs"}}}."""
    modules = {}
    for name, module in model.named_modules():
        attrs = {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training" and _simple(v)}
        modules[name] = {"type": type(module).__qualname__, "attrs": attrs}
    spec = {k: model_config.get(k) for k in _SPEC_KEYS}
    return {"format": FORMAT, "spec": spec, "modules": modules}


def rebuild(
    structure: dict, state_dict: dict, *, num_classes: int, input_shape: tuple[int, int, int], source: str
) -> nn.Module:
    """The model `structure` describes, holding `state_dict`; one-line UserError when they do not fit.
    (tools.modeling.checkpoint.load_model builds the config's model and calls apply_structure instead.)"""
    from tools.modeling.registry import build_model
    from tools.modeling.weights import load_state_into

    if structure.get("format") != FORMAT or not isinstance(structure.get("modules"), dict):
        raise UserError(
            f"{source} stores a model structure of format {structure.get('format')!r}; this version "
            f"reads format {FORMAT}: re-create the file with this version"
        )
    spec = structure.get("spec") or {}
    model = build_model(
        spec.get("name") or "",
        num_classes=num_classes,
        in_channels=input_shape[0],
        image_size=input_shape[1],
        stem=spec.get("stem") or "auto",
        kwargs=spec.get("kwargs") or None,
    )
    apply_structure(model, structure, state_dict, source)
    load_state_into(model, state_dict, source)
    return model


def apply_structure(model: nn.Module, structure: dict, state_dict: dict, source: str) -> None:
    """Reshape `model` (as its spec builds it) in place into the saved structure."""
    modules = dict(model.named_modules())
    saved = structure["modules"]
    _check_same_modules(modules, saved, (structure.get("spec") or {}).get("name"), source)
    for name, info in saved.items():
        for attr, value in info["attrs"].items():
            setattr(modules[name], attr, value)
    for key, tensor in state_dict.items():
        owner, _, attr = key.rpartition(".")
        if owner in modules and isinstance(tensor, torch.Tensor):
            _reshape(modules[owner], attr, tensor)


def same_modules(model: nn.Module, structure: dict) -> bool:
    """Whether `model` has exactly the saved modules (names and classes), i.e. `structure` applies."""
    saved = structure.get("modules") or {}
    modules = dict(model.named_modules())
    return modules.keys() == saved.keys() and all(type(m).__qualname__ == saved[n]["type"] for n, m in modules.items())


def _check_same_modules(modules: dict, saved: dict, name: str | None, source: str) -> None:
    missing = [n for n in saved if n not in modules]
    extra = [n for n in modules if n not in saved]
    types = [
        f"{n} is {type(modules[n]).__qualname__}, saved {saved[n]['type']}"
        for n in saved
        if n in modules and type(modules[n]).__qualname__ != saved[n]["type"]
    ]
    problems = (
        ([f"missing modules {missing[:3]}"] if missing else [])
        + ([f"unexpected modules {extra[:3]}"] if extra else [])
        + types[:3]
    )
    if problems:
        raise UserError(
            f"{source} was pruned from another architecture than model {name} builds "
            f"({'; '.join(problems)}); check model.name and model.kwargs"
        )


def _reshape(module: nn.Module, attr: str, tensor: torch.Tensor) -> None:
    if module._parameters.get(attr) is not None:
        old = module._parameters[attr]
        if old.shape != tensor.shape:
            module._parameters[attr] = nn.Parameter(
                torch.empty(tensor.shape, dtype=old.dtype), requires_grad=old.requires_grad
            )
    elif module._buffers.get(attr) is not None:
        old = module._buffers[attr]
        if old.shape != tensor.shape:
            module._buffers[attr] = torch.empty(tensor.shape, dtype=old.dtype)


def rebuild_problem(
    model: nn.Module, structure: dict, *, num_classes: int, input_shape: tuple[int, int, int]
) -> str | None:
    """None when `rebuild` reproduces `model` (a CPU module) on a random batch; else why not, in one line."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    try:
        copy = rebuild(structure, state, num_classes=num_classes, input_shape=input_shape, source="the pruned model")
    except UserError as e:
        return str(e)
    images = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    try:
        with torch.no_grad():
            want, got = model.eval()(images), copy.eval()(images)
    except Exception as e:  # noqa: BLE001 (any failure of the copy is the answer)
        return f"the rebuilt model fails: {type(e).__name__}: {first_line(e, empty='')}"
    finally:
        model.train(was_training)
    if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=1e-5):
        return "the rebuilt model's outputs differ from the pruned model's"
    return None
