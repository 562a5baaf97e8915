"""Bring your own model: a user's model file, foreign weights, torchvision classifiers, weights-only loads."""

import re
import subprocess
import sys

import pytest
import torch
import yaml
from torch import nn

from tests.conftest import ROOT
from tools.core.config import config_to_dict, load_config
from tools.core.errors import UserError
from tools.modeling.checkpoint import load_model, read_checkpoint, save_checkpoint
from tools.modeling.config import ModelConfig
from tools.modeling.registry import build_model
from tools.modeling.weights import load_state_into

OWN = "tests/assets/cifar_resnet.py:resnet"  # relative to the repository root, where the scripts run
TINY_DATA = {
    "name": "synthetic",
    "batch_size": 32,
    "eval_batch_size": 64,
    "augment": False,
    "synthetic": {"num_classes": 4, "train_size": 64, "test_size": 64, "resolution": 16},
}


def write_config(path, model: dict, resolution: int = 16):
    data = {**TINY_DATA, "synthetic": {**TINY_DATA["synthetic"], "resolution": resolution}}
    tree = {
        "data": data,
        "model": model,
        "train": {"device": "cpu", "epochs": 1, "num_threads": 1},
        "finetune": {"epochs": 1},
        "profile": {"warmup": 1, "repeats": 2, "batch_sizes": [1]},
    }
    path.write_text(yaml.safe_dump(tree))
    return path


def run(*argv, cwd=ROOT):
    """A script in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", *argv], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def own_weights(tmp_path_factory):
    """The user's pretrained file: DataParallel keys (module.) nested under state_dict, as public repos ship."""
    from tests.assets.cifar_resnet import resnet

    torch.manual_seed(0)
    model = resnet(num_blocks=1, num_classes=4)
    path = tmp_path_factory.mktemp("own") / "resnet8-pretrained.th"
    torch.save({"state_dict": nn.DataParallel(model).state_dict(), "best_prec1": 91.7}, path)
    return path


def test_own_model_through_every_script_in_fresh_processes(own_weights, tmp_path):
    cfg = write_config(tmp_path / "own.yaml", {"name": OWN, "kwargs": {"num_blocks": 1}})
    common = ["--config", str(cfg)]
    done = run("scripts.eval", "--checkpoint", str(own_weights), *common, "--save-dir", str(tmp_path / "eval"))
    assert done.returncode == 0 and "top1" in done.stdout, done.stderr

    run_dir = tmp_path / "structured"
    done = run(
        "scripts.prune_structured",
        "--checkpoint",
        str(own_weights),
        *common,
        "--target-macs-reduction",
        "0.3",
        "--save-dir",
        str(run_dir),
    )
    assert done.returncode == 0, done.stderr
    assert "pruned_model.pth not written: the model cannot be pickled" in done.stdout  # the lambda shortcut
    assert not (run_dir / "pruned_model.pth").exists()
    metrics = yaml.safe_load((run_dir / "metrics.yaml").read_text())
    assert abs(metrics["macs_reduction_pct"] - 30) <= 1 and metrics["saved_models"] == ["pruned_model_state.pth"]

    pruned = run_dir / "pruned_model_state.pth"
    raw = torch.load(pruned, weights_only=True)  # no pickle anywhere in it
    assert raw["structure"]["spec"]["name"] == OWN
    # The file names the factory, but only the user's config may choose code to run: --config again.
    done = run(
        "scripts.prune_unstructured",
        "--checkpoint",
        str(pruned),
        *common,
        "--sparsity",
        "0.5",
        "--epochs",
        "0",
        "--save-dir",
        str(tmp_path / "unstructured"),
    )
    assert done.returncode == 0, done.stderr
    done = run(
        "scripts.export_onnx",
        "--checkpoint",
        str(pruned),
        *common,
        "--format",
        "onnx",
        "--verify",
        "--save-dir",
        str(tmp_path / "export"),
    )
    assert done.returncode == 0 and (tmp_path / "export" / "model.onnx").is_file(), done.stderr
    done = run(
        "scripts.profile",
        "--baseline",
        str(own_weights),
        *common,
        "--pruned",
        str(pruned),
        str(tmp_path / "unstructured" / "pruned_model.pth"),
        "--save-results",
        str(tmp_path / "profile.yaml"),
    )
    assert done.returncode == 0, done.stderr
    rows = yaml.safe_load((tmp_path / "profile.yaml").read_text())
    assert "0.3" in str(rows) or rows  # written; the figures themselves are profile's own tests' business


def test_pruned_model_reloads_weights_only_here(own_weights, tmp_path):
    """The same rebuild in this process: weights-only read, same outputs as the pruned model."""
    import scripts.prune_structured as prune_script

    cfg = write_config(tmp_path / "own.yaml", {"name": OWN, "kwargs": {"num_blocks": 1}})
    prune_script.main(
        [
            "--checkpoint",
            str(own_weights),
            "--config",
            str(cfg),
            "--pruning-ratio",
            "0.5",
            "--epochs",
            "0",
            "--save-dir",
            str(tmp_path / "run"),
        ]
    )
    ckpt = read_checkpoint(tmp_path / "run" / "pruned_model_state.pth")  # weights_only=True inside
    config = load_config(cfg)
    model, _ = load_model(
        tmp_path / "run" / "pruned_model_state.pth",
        model_cfg=config.model,
        num_classes=4,
        input_shape=(3, 16, 16),
        ckpt=ckpt,
    )
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert min(widths) < 16 or max(widths) < 64, "nothing was pruned"
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 4)


@pytest.mark.parametrize("name", ["squeezenet1_1", "regnet_x_400mf", "mnasnet0_5"])
def test_torchvision_models_outside_the_registry_prune_end_to_end(name, tmp_path):
    import scripts.prune_structured as prune_script

    config = load_config(write_config(tmp_path / "c.yaml", {"name": name}, resolution=32))
    torch.manual_seed(0)
    start = tmp_path / "start.pth"
    save_checkpoint(start, model=build_model(name, num_classes=4, image_size=32), config=config_to_dict(config))
    prune_script.main(
        [
            "--checkpoint",
            str(start),
            "--target-macs-reduction",
            "0.3",
            "--epochs",
            "1",
            "--save-dir",
            str(tmp_path / "run"),
        ]
    )
    metrics = yaml.safe_load((tmp_path / "run" / "metrics.yaml").read_text())
    assert abs(metrics["macs_reduction_pct"] - 30) <= 1
    model, _ = load_model(
        tmp_path / "run" / "pruned_model_state.pth", model_cfg=config.model, num_classes=4, input_shape=(3, 32, 32)
    )
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_pickle_only_checkpoint_needs_trust(tiny_checkpoint, tmp_path, capsys):
    import scripts.eval as eval_script

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    model = build_model("resnet20", num_classes=4, image_size=16)
    model.load_state_dict(ckpt["model"])
    model.run_config = ckpt["config"]
    torch.save(model, tmp_path / "pickled.pth")
    with pytest.raises(SystemExit) as exc:
        from tools.core.errors import run_cli

        run_cli(eval_script.main, ["--checkpoint", str(tmp_path / "pickled.pth"), "--save-dir", str(tmp_path / "e")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err, err
    assert re.search(r"needs unpickling \(it pickles tools\.models\.CifarResNet\).*--trust-checkpoint", err), err
    eval_script.main(
        ["--checkpoint", str(tmp_path / "pickled.pth"), "--trust-checkpoint", "--save-dir", str(tmp_path / "e")]
    )
    assert "top1" in capsys.readouterr().out


def test_foreign_weights_rename_and_new_head(capsys):
    from tests.assets.cifar_resnet import resnet

    source = resnet(num_blocks=1, num_classes=4)
    state = nn.DataParallel(source).state_dict()
    from tools.modeling.weights import extract_state_dict

    state = extract_state_dict({"state_dict": state})
    target = nn.Sequential()
    target.body = resnet(num_blocks=1, num_classes=4)  # keys body.*, head still "linear"
    renamed = {"conv1.": "body.conv1.", "bn1.": "body.bn1.", "layer": "body.layer", "linear.": "body.linear."}
    load_state_into(target, state, "w.th", rename=renamed)
    assert torch.equal(target.body.linear.weight, source.linear.weight)
    other_head = resnet(num_blocks=1, num_classes=7)
    with pytest.raises(UserError, match=r"2 shape mismatches .*model.weights_strict: false"):
        load_state_into(other_head, state, "w.th")
    load_state_into(other_head, state, "w.th", strict=False)
    assert torch.equal(other_head.conv1.weight, source.conv1.weight)
    assert "not loaded: 2 shape mismatches (linear.weight" in capsys.readouterr().out


def test_model_name_forms_and_their_errors():
    assert build_model("torchvision.models:resnet18", num_classes=3, image_size=32).eval()(
        torch.zeros(1, 3, 32, 32)
    ).shape == (1, 3)
    assert build_model(OWN, num_classes=5, image_size=16, kwargs={"num_blocks": 1}).linear.out_features == 5
    cases = [
        ("tests/assets/missing.py:resnet", {}, r"file tests/assets/missing.py not found"),
        ("tests/assets/cifar_resnet.py:resnet99", {}, r"has no callable 'resnet99'; it defines: .*resnet"),
        (OWN, {"depth": 3}, r"calling it with model.kwargs \{'depth': 3.*\} failed"),
        ("no_such_package.models:net", {}, r"cannot import no_such_package.models"),
        ("shufflenet_v2", {}, r"unknown model 'shufflenet_v2' \(did you mean"),
        ("resnet20", {"depth": 3}, r"model.kwargs applies to torchvision and factory models"),
    ]
    for name, kwargs, pattern in cases:
        with pytest.raises(UserError, match=pattern):
            build_model(name, num_classes=10, image_size=16, kwargs=kwargs)
    with pytest.raises(UserError, match="has no 'cifar' stem"):
        build_model("squeezenet1_1", num_classes=10, stem="cifar")


def test_model_zoo_rows_and_doc(tmp_path):
    """A fast subset of docs/models.md: one model through every step, one that torch-pruning cannot trace."""
    from tools.workflows.model_zoo import check_model, row_key, write_doc

    ok = check_model("squeezenet1_1", image_size=32)
    assert ok["status"] == "ok" and abs(ok["macs_reduction_pct"] - 30) <= 1, ok
    bad = check_model("shufflenet_v2_x0_5", image_size=32)
    assert bad["status"] == "fails" and bad["step"] == "prune" and "\n" not in bad["reason"], bad
    doc = tmp_path / "models.md"
    write_doc(
        {row_key("squeezenet1_1", 32): ok, row_key("shufflenet_v2_x0_5", 32): bad},
        ["squeezenet1_1", "shufflenet_v2_x0_5"],
        doc=doc,
        records=tmp_path / "r.yaml",
        time_limit_s=60,
    )
    text = doc.read_text()
    assert "| squeezenet1_1 | 0.7 M | ok (-3" in text and "fails: prune: torch-pruning cannot trace" in text
    assert "1 of 2 models pass at 32 px, 0 at 224 px" in text


def test_model_zoo_limits_cpu_time_and_retries_timeouts_of_a_lower_limit(tmp_path, monkeypatch):
    from tools.workflows import model_zoo as zoo

    slow = zoo.run_row("squeezenet1_1", 32, time_limit_s=0.01, max_params=10**9)
    assert slow["status"] == "timeout" and "CPU time" in slow["reason"] and slow["seconds"] == 0.01, slow
    records = tmp_path / "r.yaml"
    for key, row in {
        zoo.row_key("squeezenet1_1", 32): slow,
        zoo.row_key("squeezenet1_1", 224): {**slow, "seconds": 120.0},
    }.items():
        zoo._record(records, key, row)
    ran = []
    monkeypatch.setattr(zoo, "run_row", lambda name, size, **kw: ran.append(size) or {"status": "ok", "seconds": 1})
    zoo.run_zoo(["squeezenet1_1"], [32, 224], records=records, time_limit_s=120, max_params=10**9)
    assert ran == [32]  # the 0.01 s timeout again, not the one that already had 120 s
    # the memory guard also knows models that cannot be built on the meta device (RegNet's widths are tensors)
    assert 3e6 < zoo.meta_params("regnet_y_400mf", 32) < 5e6
    assert zoo.meta_params("vit_b_16", 20) > 80e6  # its build refuses 20 px (patch 16): still counted, no crash


def test_trust_flag_is_a_config_key():
    assert ModelConfig().trust_checkpoint is False
    assert load_config(None, flags={"model.trust_checkpoint": True}).model.trust_checkpoint is True
