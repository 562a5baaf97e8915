"""Models from outside the registry: any torchvision classifier, or the user's own factory.

    from tools.modeling.sources import build_external
    model = build_external("shufflenet_v2_x0_5", num_classes=10, in_channels=3, image_size=32)
    model = build_external("tests/assets/cifar_resnet.py:resnet20", num_classes=10, in_channels=3,
                           image_size=32, kwargs={})
    model = build_external("torchvision.models:resnet18", num_classes=10, in_channels=3, image_size=224)

`model.name` forms handled here (tools.modeling.registry.build_model dispatches to them):

- a torchvision classification builder name (`torchvision.models.list_models(module=torchvision.models)`),
  built with weights=None and num_classes from the data set. Stems: ResNet-family models (resnet*,
  resnext*, wide_resnet*) get the registry's CIFAR stem (3x3 stride-1 conv, no max-pool) and
  MobileNetV2/V3 models the registry's MobileNet one, when the stem resolves to "cifar" (inputs
  <= 64 px); every other architecture keeps its ImageNet stem at any input size, since no
  established small-input variant exists for it (docs/models.md says which work at 32 px).
  GoogLeNet and Inception-v3 are built without their auxiliary heads (a tuple output breaks every
  step); ViT and MaxViT are built for the data set's image size.
- `package.module:factory` or `path/to/file.py:factory` (path relative to the working directory):
  `factory(**model.kwargs)`, plus `num_classes=` when the factory takes it and model.kwargs does
  not set it. The model must map (1, C, H, W) zeros to (1, num_classes) logits; a quick forward
  checks that, so a wrong class count is a one-line error here rather than deep in training.

With in_channels != 3 the first conv is replaced by one taking that many channels.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from functools import cache
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torchvision

from tools.core.errors import UserError, first_line
from tools.modeling.stems import conv_like, mobilenet_stem, resnet_stem, resolve_stem


@cache
def torchvision_names() -> tuple[str, ...]:
    """Every torchvision classification builder (not detection, segmentation, video, ...)."""
    return tuple(torchvision.models.list_models(module=torchvision.models))


def is_factory_spec(name: str) -> bool:
    target, sep, attr = name.rpartition(":")
    return bool(sep and target and attr.isidentifier())


def build_external(
    name: str, *, num_classes: int, in_channels: int, image_size: int, stem: str = "auto", kwargs: dict | None = None
) -> nn.Module:
    if is_factory_spec(name):
        model = _build_from_factory(name, num_classes, dict(kwargs or {}))
        if in_channels != 3:
            _replace_first_conv(model, in_channels)
        check_output(model, name, num_classes, (in_channels, image_size, image_size))
        return model
    return _build_torchvision(name, num_classes, in_channels, image_size, stem, dict(kwargs or {}))


# ------------------------------------------------------------------------------ torchvision
def _torchvision_kwargs(name: str, num_classes: int, image_size: int, kwargs: dict) -> dict:
    extra: dict[str, Any] = {"weights": None, "num_classes": num_classes}
    if name in ("googlenet", "inception_v3"):
        extra |= {"aux_logits": False, "init_weights": True}
    elif name.startswith("vit_"):
        extra["image_size"] = image_size
    elif name.startswith("maxvit_"):
        extra["input_size"] = (image_size, image_size)
    return extra | kwargs


def _build_torchvision(
    name: str, num_classes: int, in_channels: int, image_size: int, stem: str, kwargs: dict
) -> nn.Module:
    try:
        model = torchvision.models.get_model(name, **_torchvision_kwargs(name, num_classes, image_size, kwargs))
    except (TypeError, ValueError) as e:
        raise UserError(f"torchvision {name} rejects model.kwargs {kwargs}: {first_line(e)}") from None
    tv = torchvision.models
    adapt = {tv.ResNet: resnet_stem, tv.MobileNetV2: mobilenet_stem, tv.MobileNetV3: mobilenet_stem}
    adapter = adapt.get(type(model))
    resolved = resolve_stem(name, stem, image_size, ("cifar", "imagenet") if adapter else ("imagenet",))
    if adapter is not None:
        adapter(model, in_channels, resolved)
    elif in_channels != 3:
        _replace_first_conv(model, in_channels)
    return model


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, conv_like(module, in_channels=in_channels))
            return
    raise UserError(
        f"{type(model).__name__} has no Conv2d to adapt to {in_channels}-channel input; "
        "use a 3-channel data set or a factory that takes the channel count"
    )


# ------------------------------------------------------------------------------ user factories
def _build_from_factory(spec: str, num_classes: int, kwargs: dict) -> nn.Module:
    factory = load_factory(spec)
    if "num_classes" not in kwargs and _accepts(factory, "num_classes"):
        kwargs["num_classes"] = num_classes
    try:
        model = factory(**kwargs)
    except TypeError as e:
        raise UserError(
            f"model.name {spec}: calling it with model.kwargs {kwargs} failed: {first_line(e)}; fix model.kwargs"
        ) from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.name {spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def load_factory(spec: str) -> Callable:
    """The callable `spec` ("package.module:factory" or "path/file.py:factory") names."""
    target, _, attr = spec.rpartition(":")
    module = _import_file(Path(target), spec) if _looks_like_path(target) else _import_module(target, spec)
    factory = getattr(module, attr, None)
    if not callable(factory):
        public = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")][:8]
        raise UserError(f"model.name {spec}: {target} has no callable {attr!r}; it defines: {', '.join(public)}")
    return factory


def _looks_like_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _import_module(target: str, spec: str):
    try:
        return importlib.import_module(target)
    except ImportError as e:
        raise UserError(
            f"model.name {spec}: cannot import {target} ({e}); install it or use path/to/file.py:factory"
        ) from None


def _import_file(path: Path, spec: str):
    """Import a .py file once per process as module `<stem>` (or `<stem>_<hash>` when that name is
    taken), registered in sys.modules so its classes pickle under an importable-looking name."""
    if not path.is_file():
        raise UserError(f"model.name {spec}: file {path} not found (relative to {Path.cwd()}); check the path")
    resolved = path.resolve()
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) and Path(module.__file__).resolve() == resolved:
            return module
    name = (
        path.stem
        if path.stem.isidentifier() and path.stem not in sys.modules
        else f"{path.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    )
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's file: any error there is theirs to fix, in one line
        del sys.modules[name]
        raise UserError(f"model.name {spec}: importing {path} failed: {type(e).__name__}: {e}") from None
    return module


def _accepts(factory: Callable, param: str) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == param or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def check_output(model: nn.Module, name: str, num_classes: int, input_shape: tuple[int, int, int]) -> None:
    """One forward of zeros: the model must return (1, num_classes) logits for this input shape."""
    was_training = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, *input_shape))
    except Exception as e:  # noqa: BLE001 (the user's forward: report any failure in one line)
        raise UserError(
            f"model {name} fails on input {tuple(input_shape)}: {type(e).__name__}: "
            f"{first_line(e, empty='')}; check data.image_size"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(
            f"model {name} returns {got} for one image but the data set has {num_classes} classes; "
            "the factory must return logits (pass num_classes via model.kwargs if it names it otherwise)"
        )
