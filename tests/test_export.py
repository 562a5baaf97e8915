"""export_onnx: ONNX/TorchScript round trips for dense and structurally pruned models, --verify."""

import re
from pathlib import Path

import pytest
import torch
import yaml

import scripts.export_onnx as export_script
from tools.core.errors import run_cli
from tools.modeling.registry import build_model


class Doctored(torch.nn.Module):
    """Adds a per-call counter: the exported graph freezes it, eager PyTorch does not."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x) + float(self.calls)


def export(checkpoint: Path, out: Path, *extra: str) -> dict:
    export_script.main(["--checkpoint", str(checkpoint), "--save-dir", str(out), "--verify", *extra])
    return yaml.safe_load((out / "export.yaml").read_text())


def test_dense_round_trip_agrees(tiny_checkpoint, tmp_path):
    report = export(tiny_checkpoint, tmp_path / "out")
    for fmt in ("onnx", "torchscript"):
        assert report[fmt]["verified"], report[fmt]
        assert set(report[fmt]["max_abs_diff"]) == {"random_bs1", "random_bs8", "real_bs1", "real_bs8"}
        assert max(report[fmt]["max_abs_diff"].values()) <= 1e-4
    import onnx

    graph = onnx.load(report["onnx"]["path"]).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch axis


def test_structurally_pruned_round_trip_is_smaller(tiny_checkpoint, pruned_checkpoint, tmp_path):
    report = export(pruned_checkpoint, tmp_path / "out", "--format", "onnx")
    dense_report = export(tiny_checkpoint, tmp_path / "dense_out", "--format", "onnx")
    assert report["onnx"]["verified"]
    # Half the channels leave about a quarter of the conv weights.
    assert report["onnx"]["size_bytes"] < 0.5 * dense_report["onnx"]["size_bytes"]


def test_verify_fails_on_a_doctored_model(tiny_checkpoint, tmp_path):
    # A wrapper class no config can build: only a pickled module holds it, so it needs trust.
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    plain = build_model("resnet20", num_classes=4, image_size=16)
    plain.load_state_dict(ckpt["model"])
    doctored = tmp_path / "doctored.pth"
    torch.save({"model": Doctored(plain.eval()), "config": ckpt["config"]}, doctored)
    with pytest.raises(SystemExit) as exc:
        export(doctored, tmp_path / "out", "--format", "onnx", "--trust-checkpoint")
    assert exc.value.code == 1
    report = yaml.safe_load((tmp_path / "out" / "export.yaml").read_text())
    assert report["onnx"]["verified"] is False


def test_bad_inputs_exit_2(tiny_checkpoint, tmp_path, capsys):
    for argv, pattern in [
        (["--checkpoint", str(tmp_path / "missing.pth")], "checkpoint .*missing.pth not found"),
        (
            ["--checkpoint", str(tiny_checkpoint), "--opset", "1", "--save-dir", str(tmp_path / "o")],
            "opset 1 is not one the ONNX exporter writes",
        ),
    ]:
        with pytest.raises(SystemExit) as exc:
            run_cli(export_script.main, argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "\n" not in err
        assert __import__("re").search(pattern, err), err
    assert not (tmp_path / "o" / "model.onnx").exists()


@pytest.mark.parametrize("opset, fix", [(17, "try a newer --opset (up to 20)"), (13, "try --opset 17")])
def test_an_op_the_exporter_lacks_is_one_line_that_suggests_another_opset(tmp_path, opset, fix):
    from tools.core.errors import UserError
    from tools.modeling.export import export_onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(5))  # 6x6 -> 5x5: no ONNX op
    with pytest.raises(UserError, match=f"cannot be exported to ONNX with opset {opset} .*; {re.escape(fix)}") as e:
        export_onnx(model, (3, 8, 8), tmp_path / "m.onnx", opset=opset)
    assert "\n" not in str(e.value) and not list(tmp_path.iterdir())  # nothing half-written
