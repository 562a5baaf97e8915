"""scripts.quantize (ORT static INT8, QDQ) and .onnx files in scripts.eval: tiny models, real runs."""

import re
from pathlib import Path

import onnx
import pytest
import torch
import yaml

import scripts.eval as eval_script
import scripts.quantize as quantize_script
from tools.core.errors import run_cli
from tools.modeling.registry import build_model

FAST = ["quantize.num_images=32"]


class WithSin(torch.nn.Module):
    """Puts an op in front of the network that ONNX Runtime's quantizer has no INT8 kernel for."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(torch.sin(x))


@pytest.fixture(scope="module")
def not_met(tiny_checkpoint, tmp_path_factory) -> Path:
    """A quantize run that cannot meet its max_drop (INT8 would have to gain 100 points), so the
    one QAT epoch runs too; the exit status must still be 0."""
    out = tmp_path_factory.mktemp("quantized")
    run_cli(
        quantize_script.main,
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--save-dir",
            str(out),
            "--max-drop",
            "-100",
            "--set",
            *FAST,
            "quantize.qat_epochs=1",
        ],
    )
    return out


def test_not_met_keeps_the_int8_file_and_says_so(not_met, tiny_checkpoint, capsys):
    report = yaml.safe_load((not_met / "quantize.yaml").read_text())
    assert report["verdict"] == "NOT MET" and report["max_drop"] == -100
    assert (not_met / "model.int8.onnx").is_file() and (not_met / "model.onnx").is_file()
    assert report["bn_folding"]["batchnorm_nodes_after_preprocess"] == 0
    assert report["float_nodes"] == []  # every op of the ResNet has an INT8 kernel
    assert report["calibration"]["num_images"] == 32
    assert report["size_ratio"] > 3  # int8 weights: about a quarter of the FP32 file
    # The FP32 file scores what PyTorch scored on the same test images (one image = 1.56 points).
    torch_top1 = yaml.safe_load((tiny_checkpoint.parent / "metrics.yaml").read_text())["test_top1"]
    assert abs(report["fp32"]["top1"] - torch_top1) <= 1.6
    # QAT ran and wrote a QDQ file of its own.
    assert report["qat"]["epochs"] == 1
    qat_graph = onnx.load(report["qat"]["path"]).graph
    assert any(n.op_type == "DequantizeLinear" for n in qat_graph.node)
    assert report["int8"]["method"] in ("ptq", "qat")


def test_eval_reads_the_int8_file_through_onnxruntime(not_met, capsys):
    eval_script.main(["--checkpoint", str(not_met / "model.int8.onnx")])
    assert "INT8" in capsys.readouterr().out
    metrics = yaml.safe_load((not_met / "eval_metrics.model.int8.yaml").read_text())
    ptq = yaml.safe_load((not_met / "quantize.yaml").read_text())["ptq"]
    assert metrics["precision"] == "int8" and metrics["backend"] == "onnxruntime"
    assert metrics["num_samples"] == ptq["num_samples"] == 64
    assert metrics["top1"] == pytest.approx(ptq["top1"])  # config from the sidecar: the same test split


def test_op_without_int8_kernel_is_listed_and_the_rest_quantized(tiny_checkpoint, tmp_path, capsys):
    # a wrapper class no config can build: only a pickled module holds it, so it needs trust
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    model = build_model("resnet20", num_classes=4, image_size=16)
    model.load_state_dict(ckpt["model"])
    checkpoint = tmp_path / "with_sin.pth"
    torch.save({"model": WithSin(model.eval()), "config": ckpt["config"]}, checkpoint)
    quantize_script.main(
        ["--checkpoint", str(checkpoint), "--save-dir", str(tmp_path / "q"), "--trust-checkpoint", "--set", *FAST]
    )
    report = yaml.safe_load((tmp_path / "q" / "quantize.yaml").read_text())
    assert [n["op_type"] for n in report["float_nodes"]] == ["Sin"]
    assert "left in FP32" in capsys.readouterr().out
    graph = onnx.load(str(tmp_path / "q" / "model.int8.onnx")).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(n.input[0] in dequantized and n.input[1] in dequantized for n in convs)


def test_calibration_data_of_the_wrong_shape_exits_2(tiny_checkpoint, tmp_path, capsys):
    from tools.modeling.export import export_onnx
    from tools.modeling.registry import build_model

    model = build_model("resnet20", num_classes=4, image_size=16)
    onnx_path = export_onnx(model, (3, 16, 16), tmp_path / "model.onnx", opset=17)
    argv = [
        "--onnx",
        str(onnx_path),
        "--config",
        "cfgs/quickstart.yaml",
        "--set",
        "data.synthetic.num_classes=4",
        "data.synthetic.resolution=24",
        "data.synthetic.train_size=64",
        "data.synthetic.test_size=16",
    ]
    with pytest.raises(SystemExit) as exc:
        run_cli(quantize_script.main, argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert re.search(r"images are 3x24x24 .* takes 3x16x16", err), err
    assert not (tmp_path / "model.int8.onnx").exists() and not (tmp_path / "quantize.yaml").exists()


def test_onnx_file_without_a_config_exits_2(tiny_checkpoint, not_met, tmp_path, capsys):
    lonely = tmp_path / "model.onnx"
    lonely.write_bytes((not_met / "model.onnx").read_bytes())
    with pytest.raises(SystemExit) as exc:
        run_cli(eval_script.main, ["--checkpoint", str(lonely)])
    assert exc.value.code == 2 and "pass --config" in capsys.readouterr().err


def test_keep_fp32_leaves_the_named_modules_in_float_and_quantizes_the_rest(tiny_checkpoint, tmp_path):
    out = tmp_path / "q"
    keep = "quantize.keep_fp32=[conv1, layer1]"
    quantize_script.main(["--checkpoint", str(tiny_checkpoint), "--save-dir", str(out), "--set", *FAST, keep])
    graph = onnx.load(str(out / "model.int8.onnx")).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = {n.name: n.input[0] in dequantized for n in graph.node if n.op_type == "Conv"}
    float_convs = {name for name, quantized in convs.items() if not quantized}
    assert float_convs and all(name.startswith(("/conv1/", "/layer1/")) for name in float_convs)
    assert all(quantized for name, quantized in convs.items() if name.startswith(("/layer2/", "/layer3/")))
    report = yaml.safe_load((out / "quantize.yaml").read_text())
    assert {n["name"] for n in report["float_nodes"] if n["op_type"] == "Conv"} == float_convs


def test_keep_fp32_naming_no_module_exits_2_with_the_nearest_name(tiny_checkpoint, tmp_path, capsys):
    argv = ["--checkpoint", str(tiny_checkpoint), "--save-dir", str(tmp_path / "q"), "--set", *FAST]
    with pytest.raises(SystemExit) as exc:
        run_cli(quantize_script.main, [*argv, "quantize.keep_fp32=[layr1]"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert "'layr1'" in err and "did you mean 'layer1'?" in err
    assert not (tmp_path / "q" / "model.int8.onnx").exists()


@pytest.mark.parametrize(
    "node, module",
    [
        ("/conv1/Conv", "conv1"),
        ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
        ("/layer2/layer2.0/shortcut/shortcut.0/Conv", "layer2.0.shortcut.0"),  # a Sequential's child
        ("/features/features.0/features.0.0/Conv", "features.0.0"),  # torchvision MobileNetV2
        ("/layer1/layer1.0/Add", "layer1.0"),  # a functional op belongs to the module that calls it
        ("/Flatten", ""),
    ],
)
def test_onnx_node_names_map_back_to_torch_module_names(node, module):
    from tools.deploy.quantize import onnx_module_name

    assert onnx_module_name(node) == module
