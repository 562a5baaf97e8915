"""Input stages (stems) for small images, shared by the registry and torchvision models.

    >>> import torchvision
    >>> from tools.modeling.stems import resnet_stem, resolve_stem
    >>> resolve_stem("resnet18", "auto", 32, ("cifar", "imagenet"))
    'cifar'
    >>> model = torchvision.models.resnet18(weights=None, num_classes=10)
    >>> resnet_stem(model, 3, "cifar")
    >>> model.conv1.kernel_size, model.conv1.stride
    ((3, 3), (1, 1))

"auto" means "cifar" when image_size <= 64, else "imagenet"; what each CIFAR stem does is in
tools.modeling.registry's docstring. Nothing here imports tools.models: the classes there and the
builders in tools.modeling.registry / tools.modeling.sources all sit above this module.
"""

from __future__ import annotations

import torch.nn as nn

from tools.core.errors import UserError

STEMS = ("auto", "cifar", "imagenet")
_CIFAR_MAX_IMAGE_SIZE = 64


def kaiming_init(module: nn.Module) -> None:
    """He initialisation for convs (fan-out), unit BatchNorm, zero biases: the registry models' start."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_uniform_(m.weight, a=5**0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def conv_like(
    conv: nn.Conv2d, *, in_channels: int, kernel_size: int | None = None, stride: int | None = None
) -> nn.Conv2d:
    """A fresh conv shaped like `conv` but with another input width / kernel / stride."""
    kernel = conv.kernel_size if kernel_size is None else (kernel_size, kernel_size)
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=kernel,
        stride=conv.stride if stride is None else stride,
        padding=tuple(k // 2 for k in kernel),
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    kaiming_init(new)
    return new


def resolve_stem(name: str, stem: str, image_size: int, choices: tuple[str, ...]) -> str:
    """The stem `stem` means for model `name` at `image_size` ("cifar" or "imagenet"), if `choices` allows it."""
    if stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; choose one of: {', '.join(STEMS)}")
    if stem == "auto":
        return "cifar" if image_size <= _CIFAR_MAX_IMAGE_SIZE else "imagenet"
    if stem not in choices:
        raise UserError(
            f"model {name} has no {stem!r} stem; use stem 'auto'" + (f" or {choices[0]!r}" if choices else "")
        )
    return stem


def resnet_stem(model: nn.Module, in_channels: int, stem: str) -> None:
    """CIFAR stem (3x3 stride-1 conv1, no max-pool) for any torchvision ResNet, in place."""
    if stem == "cifar":
        model.conv1 = conv_like(model.conv1, in_channels=in_channels, kernel_size=3, stride=1)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = conv_like(model.conv1, in_channels=in_channels)


def _unstride_first_downsample(blocks: nn.Module) -> None:
    """Turn the first stride-2 conv inside `blocks` into a stride-1 conv."""
    for module in blocks.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
            return


def mobilenet_stem(model: nn.Module, in_channels: int, stem: str) -> None:
    """CIFAR stem for torchvision MobileNetV2/V3, in place: see tools.modeling.registry."""
    first = model.features[0][0]
    if in_channels != 3:
        first = model.features[0][0] = conv_like(first, in_channels=in_channels)
    if stem == "cifar":
        first.stride = (1, 1)
        _unstride_first_downsample(model.features[1:])
