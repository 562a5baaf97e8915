"""The model registry: `build_model` by name (classes in tools.models, stems in tools.modeling.stems).

    from tools.modeling.registry import build_model
    from tools.modeling.weights import extract_state_dict, load_state_into
    model = build_model("resnet20", num_classes=10)                      # CIFAR-10
    model = build_model("fc", num_classes=10, in_channels=1, image_size=28)  # MNIST MLP
    obj = torch.load("ckpt.pth", map_location="cpu", weights_only=False)
    load_state_into(model, extract_state_dict(obj), "ckpt.pth")

Registry (`MODEL_NAMES`):

- resnet18 / resnet34 / resnet50: torchvision ResNets.
- resnet20 / resnet32 / resnet56: He et al. 2016 CIFAR ResNets (16/32/64 channels) with
  option-B shortcuts (1x1 conv + BN) wherever shape changes, because torch-pruning's
  dependency graph couples a conv shortcut to the block output cleanly, while option A's
  zero-padding shortcut is a parameter-free op it cannot prune through.
- vgg16: VGG-16 with BatchNorm.
- mobilenet_v2 / mobilenet_v3_large: torchvision's.
- fc: LeNet-300-100 (flatten -> 300 -> 100 -> classes), the classic MNIST pruning MLP.

`stem` picks the input stage of the ImageNet-family conv nets (resnet18/34/50, vgg16,
mobilenet_*): "auto" means "cifar" when image_size <= 64, else "imagenet".
CIFAR stems, so that a 32x32 image is not shrunk to 1x1 before the last stage:

- resnet18/34/50: 3x3 stride-1 first conv, no max-pool (the usual CIFAR ResNet-18).
- mobilenet_v2 / v3: first conv stride 1 and the first stride-2 block stride 1, as in the
  widely used kuangliu/pytorch-cifar MobileNetV2; 32px inputs end at 4x4 feature maps.
- vgg16: torchvision's conv/BN/max-pool features, then global average pooling and one
  Linear(512, classes); 32px inputs reach 1x1 after the five max-pools.

Beyond the registry, `name` may be any torchvision classification builder name or the user's own
`package.module:factory` / `path/to/file.py:factory` (see tools.modeling.sources).

resnet20/32/56 only have a CIFAR stem; fc has none. Those accept stem="auto" (or their
native stem) and reject anything else. Weights are always randomly initialised: this
module never downloads anything.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch.nn as nn
import torchvision

from tools.core.errors import UserError
from tools.modeling.sources import build_external, is_factory_spec, torchvision_names
from tools.modeling.stems import conv_like, kaiming_init, mobilenet_stem, resnet_stem, resolve_stem
from tools.models import CifarResNet, CifarVGG, LeNet300100

MODEL_NAMES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet20",
    "resnet32",
    "resnet56",
    "vgg16",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "fc",
)

# Smallest input side a model's forward survives: vgg16's five 2x2 max-pools need 2**5 pixels
# (16 px reaches 1x1 after four and the fifth fails with "Output size is too small").
_MIN_IMAGE_SIZE = {"vgg16": 32}


# ------------------------------------------------------------------ builders


def _torchvision_resnet(depth: int, num_classes: int, in_channels: int, stem: str) -> nn.Module:
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
    resnet_stem(model, in_channels, stem)
    return model


# torchvision's configuration "D"; "M" is a 2x2 max-pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg16_features(in_channels: int) -> nn.Sequential:
    """Same layers and indices as torchvision's vgg16_bn().features, so weights transfer."""
    layers: list[nn.Module] = []
    for item in _VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers += [nn.Conv2d(in_channels, item, 3, padding=1), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
        in_channels = item
    return nn.Sequential(*layers)


def _vgg16(num_classes: int, in_channels: int, stem: str) -> nn.Module:
    if stem == "cifar":
        # Built directly: torchvision's 4096-wide ImageNet head takes seconds to initialise.
        model = CifarVGG(_vgg16_features(in_channels), num_classes)
        kaiming_init(model)
        return model
    model = torchvision.models.vgg16_bn(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.features[0] = conv_like(model.features[0], in_channels=in_channels)
    return model


def _mobilenet(version: str, num_classes: int, in_channels: int, stem: str) -> nn.Module:
    model = getattr(torchvision.models, version)(weights=None, num_classes=num_classes)
    mobilenet_stem(model, in_channels, stem)
    return model


# ---------------------------------------------------------------------- registry


def _check_name(name: str) -> str:
    """The registry or torchvision name `name` means; a one-line error naming close matches."""
    key = name.strip().lower()
    if key in MODEL_NAMES or key in torchvision_names():
        return key
    close = difflib.get_close_matches(key, MODEL_NAMES + torchvision_names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(
        f"unknown model {name!r}{hint}; choose one of: {', '.join(MODEL_NAMES)}, any torchvision "
        "classifier (e.g. shufflenet_v2_x0_5), or your own as package.module:factory / path/to/file.py:factory"
    )


def _check_sizes(num_classes: int, in_channels: int, image_size: int) -> None:
    for label, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{label} must be a positive integer, got {value!r}")


_Builder = Callable[[int, int, int, str], nn.Module]


def _builders() -> dict[str, tuple[tuple[str, ...], _Builder]]:
    """name -> (stems it may be forced to, builder(num_classes, in_channels, size, stem))."""
    both = ("cifar", "imagenet")
    return {
        "resnet18": (both, lambda n, c, s, st: _torchvision_resnet(18, n, c, st)),
        "resnet34": (both, lambda n, c, s, st: _torchvision_resnet(34, n, c, st)),
        "resnet50": (both, lambda n, c, s, st: _torchvision_resnet(50, n, c, st)),
        "resnet20": (("cifar",), lambda n, c, s, st: CifarResNet(20, n, c)),
        "resnet32": (("cifar",), lambda n, c, s, st: CifarResNet(32, n, c)),
        "resnet56": (("cifar",), lambda n, c, s, st: CifarResNet(56, n, c)),
        "vgg16": (both, lambda n, c, s, st: _vgg16(n, c, st)),
        "mobilenet_v2": (both, lambda n, c, s, st: _mobilenet("mobilenet_v2", n, c, st)),
        "mobilenet_v3_large": (
            both,
            lambda n, c, s, st: _mobilenet("mobilenet_v3_large", n, c, st),
        ),
        "fc": ((), lambda n, c, s, st: LeNet300100(n, c * s * s)),
    }


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    stem: str = "auto",
    kwargs: dict | None = None,
) -> nn.Module:
    """A randomly initialised model, tagged with `model.registry_name`: a registry name (see the
    module docstring for the stems), any torchvision classifier name, or a user factory
    (`package.module:factory`, `path/to/file.py:factory`) called with `kwargs`; see
    tools.modeling.sources for the last two."""
    _check_sizes(num_classes, in_channels, image_size)
    key = name.strip() if is_factory_spec(name.strip()) else _check_name(name)
    if image_size < _MIN_IMAGE_SIZE.get(key, 1):
        raise UserError(
            f"model {key} needs images of at least {_MIN_IMAGE_SIZE[key]} px (it halves them 5 times), "
            f"got {image_size} px; set data.image_size to {_MIN_IMAGE_SIZE[key]} or more, or pick another model"
        )
    if key in MODEL_NAMES:
        if kwargs:
            raise UserError(
                f"model.kwargs applies to torchvision and factory models, not registry model {key}; remove it"
            )
        stems, builder = _builders()[key]
        model = builder(num_classes, in_channels, image_size, resolve_stem(key, stem, image_size, stems))
    else:
        model = build_external(
            key, num_classes=num_classes, in_channels=in_channels, image_size=image_size, stem=stem, kwargs=kwargs
        )
    # A plain attribute (not in the state dict) so error messages can say "resnet20"
    # rather than the shared class name CifarResNet; it survives pickling and deepcopy.
    model.registry_name = key
    return model


def build_from_config(model_cfg, *, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """build_model for a tools.core.config.ModelConfig and the data set's class count and input shape."""
    return build_model(
        model_cfg.name,
        num_classes=num_classes,
        in_channels=input_shape[0],
        image_size=input_shape[1],
        stem=model_cfg.stem,
        kwargs=model_cfg.kwargs,
    )
