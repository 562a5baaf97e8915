"""Registry models build and run; external checkpoint formats load; mismatches explain themselves.

uv run pytest tests/test_models.py
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tools.core.errors import UserError
from tools.modeling.registry import MODEL_NAMES, build_model
from tools.modeling.weights import extract_state_dict, load_state_into

# (in_channels, image_size) each model is normally trained at.
DEFAULT_INPUT = {name: (3, 32) for name in MODEL_NAMES} | {"fc": (1, 28)}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_builds_and_runs_at_default_input(name):
    channels, size = DEFAULT_INPUT[name]
    model = build_model(name, num_classes=10, in_channels=channels, image_size=size).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, channels, size, size))
    assert out.shape == (2, 10)


def test_imagenet_stem_resnet18_at_224():
    model = build_model("resnet18", num_classes=1000, image_size=224).eval()
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model.conv1.kernel_size == (7, 7) and model.conv1.stride == (2, 2)
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_cifar_stems():
    resnet = build_model("resnet18", num_classes=10)
    assert resnet.conv1.kernel_size == (3, 3) and resnet.conv1.stride == (1, 1)
    assert isinstance(resnet.maxpool, nn.Identity)
    forced = build_model("resnet18", num_classes=10, image_size=224, stem="cifar")
    assert isinstance(forced.maxpool, nn.Identity)
    mobile = build_model("mobilenet_v2", num_classes=10)
    with torch.no_grad():
        features = mobile.features(torch.zeros(1, 3, 32, 32))
    assert features.shape[-2:] == (4, 4)  # two of the five stride-2 stages removed


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "vgg16", "mobilenet_v2", "mobilenet_v3_large"])
def test_single_channel_input(name):
    model = build_model(name, num_classes=10, in_channels=1).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 32, 32)).shape == (1, 10)


def test_option_b_shortcut_is_projection():
    model = build_model("resnet20", num_classes=10)
    shortcut = model.layer2[0].shortcut
    assert isinstance(shortcut[0], nn.Conv2d) and shortcut[0].kernel_size == (1, 1)
    assert len(model.layer1[0].shortcut) == 0


def test_unknown_name_suggests_closest():
    with pytest.raises(UserError, match=r"unknown model 'resnet19'.*did you mean 'resnet18'.*resnet56"):
        build_model("resnet19", num_classes=10)


def test_bad_stem_and_sizes():
    with pytest.raises(UserError, match="stem"):
        build_model("resnet18", num_classes=10, stem="tiny")
    with pytest.raises(UserError, match="resnet20 has no 'imagenet' stem"):
        build_model("resnet20", num_classes=10, stem="imagenet")
    with pytest.raises(UserError, match="num_classes"):
        build_model("resnet20", num_classes=0)


# ------------------------------------------------------------------ external weights


def _reference():
    return build_model("resnet20", num_classes=10)


def _prefixed(state_dict, prefix):
    return {prefix + k: v for k, v in state_dict.items()}


FORMATS = {
    "full_module": lambda m: m,
    "plain": lambda m: m.state_dict(),
    "state_dict": lambda m: {"state_dict": m.state_dict(), "epoch": 3},
    "model": lambda m: {"model": m.state_dict(), "optimizer": {}},
    "model_module": lambda m: {"model": m},
    "model_state_dict": lambda m: {"model_state_dict": m.state_dict()},
    "net": lambda m: {"net": m.state_dict(), "acc": 91.2},
    "dataparallel": lambda m: _prefixed(m.state_dict(), "module."),
    "compiled_ddp": lambda m: {"state_dict": _prefixed(m.state_dict(), "_orig_mod.module.")},
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_external_formats_load(fmt, tmp_path):
    source = _reference()
    path = tmp_path / f"{fmt}.pth"
    torch.save(FORMATS[fmt](source), path)
    obj = torch.load(path, map_location="cpu", weights_only=False)
    target = _reference()
    load_state_into(target, extract_state_dict(obj), str(path))
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_not_a_checkpoint():
    with pytest.raises(UserError, match="holds a list"):
        extract_state_dict([1, 2], source="x.pth")
    with pytest.raises(UserError, match="no tensors"):
        extract_state_dict({"epoch": 3})


def test_mismatch_lists_missing_and_unexpected_keys():
    state = _reference().state_dict()
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError) as info:
        load_state_into(_reference(), state, "ck.pth")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("checkpoint ck.pth does not match model resnet20")
    assert "1 missing key (layer1.0.conv1.weight)" in message
    assert "1 unexpected key (extra.weight)" in message


def test_mismatch_reports_class_count():
    state = build_model("resnet20", num_classes=100).state_dict()
    with pytest.raises(UserError) as info:
        load_state_into(_reference(), state, "c100.pth", model_name="r20")
    message = str(info.value)
    assert message.startswith("checkpoint c100.pth does not match model r20")
    assert "2 shape mismatches" in message
    assert "fc.weight: checkpoint [100, 64] vs model [10, 64]" in message
    assert "num_classes" in message


def test_registry_name_survives_pickling(tmp_path):
    torch.save(_reference(), tmp_path / "m.pth")
    assert torch.load(tmp_path / "m.pth", weights_only=False).registry_name == "resnet20"


def test_mismatch_truncates_long_lists():
    state = build_model("resnet56", num_classes=10).state_dict()
    with pytest.raises(UserError, match=r"unexpected keys \([^)]*, \.\.\.\)"):
        load_state_into(_reference(), state, "r56.pth")
