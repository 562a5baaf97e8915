"""export_onnx: ONNX/TorchScript round trips for dense and structurally pruned models, --verify."""

from pathlib import Path

import pytest
import torch
import torch_pruning as tp
import yaml

import scripts.export_onnx as export_script
import scripts.train as train_script
from tools.checkpoint import save_checkpoint
from tools.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--config", str(ROOT / "cfgs" / "quickstart.yaml"), "--set", "data.synthetic.train_size=128",
    "data.synthetic.test_size=64", "data.synthetic.resolution=16", "data.synthetic.num_classes=4",
    "model.name=resnet20", "train.epochs=1", "train.device=cpu",
]


class Doctored(torch.nn.Module):
    """Adds a per-call counter: the exported graph freezes it, eager PyTorch does not."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x) + float(self.calls)


@pytest.fixture(scope="module")
def dense(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("export") / "dense"
    train_script.main(TINY + ["--save-dir", str(run_dir)])
    return run_dir / "best_model.pth"


def save_variant(dense: Path, path: Path, transform) -> Path:
    ckpt = torch.load(dense, weights_only=False)
    from tools.models import build_model

    model = build_model("resnet20", num_classes=4, image_size=16)
    model.load_state_dict(ckpt["model"])
    save_checkpoint(path, model=transform(model.eval()), config=ckpt["config"], full_module=True)
    return path


def channel_pruned(model):
    example = torch.zeros(1, 3, 16, 16)
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.MagnitudeImportance(p=2),
                                       pruning_ratio=0.5, ignored_layers=[model.fc])
    pruner.step()
    return model


def export(checkpoint: Path, out: Path, *extra: str) -> dict:
    export_script.main(["--checkpoint", str(checkpoint), "--save-dir", str(out), "--verify", *extra])
    return yaml.safe_load((out / "export.yaml").read_text())


def test_dense_round_trip_agrees(dense, tmp_path):
    report = export(dense, tmp_path / "out")
    for fmt in ("onnx", "torchscript"):
        assert report[fmt]["verified"], report[fmt]
        assert set(report[fmt]["max_abs_diff"]) == {"random_bs1", "random_bs8", "real_bs1", "real_bs8"}
        assert max(report[fmt]["max_abs_diff"].values()) <= 1e-4
    import onnx

    graph = onnx.load(report["onnx"]["path"]).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch axis


def test_structurally_pruned_round_trip_is_smaller(dense, tmp_path):
    pruned = save_variant(dense, tmp_path / "pruned.pth", channel_pruned)
    report = export(pruned, tmp_path / "out", "--format", "onnx")
    dense_report = export(dense, tmp_path / "dense_out", "--format", "onnx")
    assert report["onnx"]["verified"]
    # Half the channels leave about a quarter of the conv weights.
    assert report["onnx"]["size_bytes"] < 0.5 * dense_report["onnx"]["size_bytes"]


def test_verify_fails_on_a_doctored_model(dense, tmp_path):
    doctored = save_variant(dense, tmp_path / "doctored.pth", Doctored)
    with pytest.raises(SystemExit) as exc:
        export(doctored, tmp_path / "out", "--format", "onnx")
    assert exc.value.code == 1
    report = yaml.safe_load((tmp_path / "out" / "export.yaml").read_text())
    assert report["onnx"]["verified"] is False


def test_bad_inputs_exit_2(dense, tmp_path, capsys):
    for argv, pattern in [
        (["--checkpoint", str(tmp_path / "missing.pth")], "checkpoint .*missing.pth not found"),
        (["--checkpoint", str(dense), "--opset", "1", "--save-dir", str(tmp_path / "o")],
         "cannot be exported to ONNX with opset 1"),
    ]:
        with pytest.raises(SystemExit) as exc:
            run_cli(export_script.main, argv)
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "\n" not in err
        assert __import__("re").search(pattern, err), err
    assert not (tmp_path / "o" / "model.onnx").exists()
