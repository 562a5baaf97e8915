"""export_onnx --verify judges max |diff| against atol + rtol x the logits' scale (issue 28, item 13):
a correct export of a model with large logits passes, a wrong export still fails."""

import copy

import pytest
import torch
from torch import nn

from tools.modeling.config import ExportConfig
from tools.modeling.export import export_onnx, make_onnx_runner, verification_inputs, within_tolerance
from tools.runs.export_onnx import verify_format

SHAPE = (3, 8, 8)


def large_logit_model() -> nn.Module:
    """A small conv net whose logits are in the tens (like a confident pretrained classifier)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )
    with torch.no_grad():
        model[-1].weight.mul_(200.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = large_logit_model()
    path = export_onnx(model, SHAPE, tmp_path_factory.mktemp("onnx") / "model.onnx", opset=17)
    inputs = verification_inputs(SHAPE, None, [1, 4])
    return model, path, inputs


def test_defaults_are_atol_1e5_and_rtol_1e4():
    cfg = ExportConfig()
    assert cfg.tolerance == 1e-5 and cfg.rtol == 1e-4


def test_a_1p2e5_difference_on_large_logits_passes_by_rtol(exported, capsys):
    model, path, inputs = exported
    runner = make_onnx_runner(path)
    off = lambda x: runner(x) + 1.2e-5  # noqa: E731  a correct export, off by float32 rounding at this scale
    report = {"onnx": {}}
    assert verify_format("onnx", off, model, inputs, ExportConfig(), report) is True
    out = capsys.readouterr().out
    assert "max |diff|" in out and "relative" in out and "FAIL" not in out
    assert max(report["onnx"]["max_abs_diff"].values()) > 1e-5  # the old atol-only rule rejected this
    assert max(report["onnx"]["max_rel_diff"].values()) < 1e-5 and report["onnx"]["verified"] is True
    # the same difference on small logits is not excused: atol alone is the bound there
    assert not within_tolerance({"abs": 1.2e-5, "scale": 1e-2}, atol=1e-5, rtol=1e-4)


def test_a_wrong_export_still_fails(exported, tmp_path, capsys):
    model, _, inputs = exported
    wrong = copy.deepcopy(model)
    with torch.no_grad():
        wrong[0].weight.mul_(1.01)  # a 1% weight error: an export that does not compute the model
    path = export_onnx(wrong, SHAPE, tmp_path / "wrong.onnx", opset=17)
    report = {"onnx": {}}
    assert verify_format("onnx", make_onnx_runner(path), model, inputs, ExportConfig(), report) is False
    assert "FAIL" in capsys.readouterr().out and report["onnx"]["verified"] is False


def test_an_exact_export_passes_with_rtol_zero(exported):
    model, path, inputs = exported
    report = {"onnx": {}}
    cfg = ExportConfig(tolerance=1e-3, rtol=0.0)
    assert verify_format("onnx", make_onnx_runner(path), model, inputs, cfg, report) is True
