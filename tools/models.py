"""Model registry and loading of external weights.

    from tools.models import build_model, extract_state_dict, load_state_into
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
from collections import OrderedDict
from collections.abc import Callable, Mapping

import torch
import torch.nn as nn
import torchvision

from tools.core.errors import UserError

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

STEMS = ("auto", "cifar", "imagenet")

# Keys under which training scripts commonly nest the weights, most specific first.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
# DataParallel/DDP and torch.compile prefix every key of the wrapped model.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")
_CIFAR_MAX_IMAGE_SIZE = 64
# Smallest input side a model's forward survives: vgg16's five 2x2 max-pools need 2**5 pixels
# (16 px reaches 1x1 after four and the fifth fails with "Output size is too small").
_MIN_IMAGE_SIZE = {"vgg16": 32}
_LIST_LIMIT = 3


# --------------------------------------------------------------------------- helpers


def _kaiming_init(module: nn.Module) -> None:
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


def _conv_like(
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
    _kaiming_init(new)
    return new


def _resolve_stem(name: str, stem: str, image_size: int, choices: tuple[str, ...]) -> str:
    if stem not in STEMS:
        raise UserError(f"unknown stem {stem!r}; choose one of: {', '.join(STEMS)}")
    if stem == "auto":
        return "cifar" if image_size <= _CIFAR_MAX_IMAGE_SIZE else "imagenet"
    if stem not in choices:
        raise UserError(
            f"model {name} has no {stem!r} stem; use stem 'auto'"
            + (f" or {choices[0]!r}" if choices else "")
        )
    return stem


# ----------------------------------------------------------------- CIFAR ResNet (He)


class BasicBlock(nn.Module):
    """3x3-3x3 residual block; a 1x1 conv + BN projection when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs: three stages of n blocks at 16/32/64 channels."""

    def __init__(self, depth: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        blocks_per_stage = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _cifar_stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = _cifar_stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = _cifar_stage(32, 64, blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        _kaiming_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _cifar_stage(in_planes: int, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
    blocks = [BasicBlock(in_planes, planes, stride)]
    blocks += [BasicBlock(planes, planes, 1) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


# -------------------------------------------------------------------- other models


class LeNet300100(nn.Module):
    """The fully connected LeNet-300-100 from Han et al. 2015 pruning experiments."""

    def __init__(self, num_classes: int, in_features: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 300)
        self.relu1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(300, 100)
        self.relu2 = nn.ReLU(inplace=True)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.fc1(self.flatten(x)))
        return self.fc3(self.relu2(self.fc2(x)))


class CifarVGG(nn.Module):
    """VGG features followed by global pooling and a single classifier layer."""

    def __init__(self, features: nn.Sequential, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _torchvision_resnet(depth: int, num_classes: int, in_channels: int, stem: str) -> nn.Module:
    model = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=num_classes)
    _resnet_stem(model, in_channels, stem)
    return model


def _resnet_stem(model: nn.Module, in_channels: int, stem: str) -> None:
    """CIFAR stem (3x3 stride-1 conv1, no max-pool) for any torchvision ResNet, in place."""
    if stem == "cifar":
        model.conv1 = _conv_like(model.conv1, in_channels=in_channels, kernel_size=3, stride=1)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = _conv_like(model.conv1, in_channels=in_channels)


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
        _kaiming_init(model)
        return model
    model = torchvision.models.vgg16_bn(weights=None, num_classes=num_classes)
    if in_channels != 3:
        model.features[0] = _conv_like(model.features[0], in_channels=in_channels)
    return model


def _unstride_first_downsample(blocks: nn.Module) -> None:
    """Turn the first stride-2 conv inside `blocks` into a stride-1 conv."""
    for module in blocks.modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)
            return


def _mobilenet(version: str, num_classes: int, in_channels: int, stem: str) -> nn.Module:
    model = getattr(torchvision.models, version)(weights=None, num_classes=num_classes)
    _mobilenet_stem(model, in_channels, stem)
    return model


def _mobilenet_stem(model: nn.Module, in_channels: int, stem: str) -> None:
    """CIFAR stem for torchvision MobileNetV2/V3, in place: see the module docstring."""
    first = model.features[0][0]
    if in_channels != 3:
        first = model.features[0][0] = _conv_like(first, in_channels=in_channels)
    if stem == "cifar":
        first.stride = (1, 1)
        _unstride_first_downsample(model.features[1:])


# ---------------------------------------------------------------------- registry


def _check_name(name: str) -> str:
    """The registry or torchvision name `name` means; a one-line error naming close matches."""
    from tools.modeling.sources import torchvision_names

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
    from tools.modeling.sources import build_external, is_factory_spec

    _check_sizes(num_classes, in_channels, image_size)
    key = name.strip() if is_factory_spec(name.strip()) else _check_name(name)
    if image_size < _MIN_IMAGE_SIZE.get(key, 1):
        raise UserError(f"model {key} needs images of at least {_MIN_IMAGE_SIZE[key]} px (it halves them 5 times), "
                        f"got {image_size} px; set data.image_size to {_MIN_IMAGE_SIZE[key]} or more, or pick another model")
    if key in MODEL_NAMES:
        if kwargs:
            raise UserError(f"model.kwargs applies to torchvision and factory models, not registry model {key}; "
                            "remove it")
        stems, builder = _builders()[key]
        model = builder(num_classes, in_channels, image_size, _resolve_stem(key, stem, image_size, stems))
    else:
        model = build_external(key, num_classes=num_classes, in_channels=in_channels, image_size=image_size,
                               stem=stem, kwargs=kwargs)
    # A plain attribute (not in the state dict) so error messages can say "resnet20"
    # rather than the shared class name CifarResNet; it survives pickling and deepcopy.
    model.registry_name = key
    return model


# ------------------------------------------------------------ external weights


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
        parts.append(
            f"{_plural(len(shapes), 'shape mismatch', 'shape mismatches')} {_listed(shapes)}"
        )
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
        if attr == "num_batches_tracked" and isinstance(module, nn.modules.batchnorm._BatchNorm) \
                and module.track_running_stats:
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
        raise UserError(f"no tensor of checkpoint {source} fits model {name}; check model.name and model.weights_rename")
    try:
        model.load_state_dict(fitting, strict=strict)
    except RuntimeError as e:
        first_line = str(e).strip().splitlines()[0]
        raise UserError(f"checkpoint {source} cannot be loaded into {name}: {first_line}") from None
    if not strict and (missing or unexpected or shapes):
        print(f"note: loaded {len(fitting)}/{len(model_state)} tensors of {name} from {source}; not loaded: "
              f"{_mismatch_summary(missing, unexpected, shapes)} (model.weights_strict: false)")


def build_from_config(model_cfg, *, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """build_model for a tools.core.config.ModelConfig and the data set's class count and input shape."""
    return build_model(model_cfg.name, num_classes=num_classes, in_channels=input_shape[0],
                       image_size=input_shape[1], stem=model_cfg.stem, kwargs=model_cfg.kwargs)
