"""Checkpoints from older PyTorch load as PyTorch loads them, and files that are no checkpoint (or
an empty config) get one line naming the file (issue 28, items 12 and 16)."""

from collections import OrderedDict

import pytest
import torch
import yaml
from torch import nn

from tests.conftest import ROOT, assert_one_line, exit_code_and_error
from tools.modeling.registry import build_model

OWN = "tests/assets/cifar_resnet.py:resnet"  # the README's own-model route: a factory in the user's config


def as_old_pytorch_saved(state_dict: dict) -> OrderedDict:
    """`state_dict` as PyTorch < 0.4.1 wrote it: no BatchNorm num_batches_tracked, no format versions."""
    return OrderedDict((k, v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked"))


@pytest.fixture
def own_route(tmp_path, monkeypatch):
    """The README's own-model route: the user's config naming their factory, and their pretrained
    file from an older PyTorch (DataParallel keys nested under state_dict, no num_batches_tracked)."""
    from tests.assets.cifar_resnet import resnet

    monkeypatch.chdir(ROOT)
    torch.manual_seed(0)
    model = resnet(num_blocks=1, num_classes=4).eval()
    old = as_old_pytorch_saved(nn.DataParallel(model).state_dict())
    assert len(old) < len(nn.DataParallel(model).state_dict())  # the model has BatchNorm layers
    nn.DataParallel(resnet(num_blocks=1, num_classes=4)).load_state_dict(old, strict=True)  # PyTorch accepts it
    weights = tmp_path / "resnet8-pretrained.th"
    torch.save({"state_dict": old, "best_prec1": 91.7}, weights)
    config = tmp_path / "my_resnet.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "name": "synthetic",
                    "batch_size": 32,
                    "eval_batch_size": 32,
                    "augment": False,
                    "synthetic": {"num_classes": 4, "train_size": 32, "test_size": 32, "resolution": 16},
                },
                "model": {"name": OWN, "kwargs": {"num_blocks": 1}},
                "train": {"device": "cpu", "epochs": 1, "num_threads": 1},
                "finetune": {"epochs": 0},
                "profile": {"warmup": 1, "repeats": 2, "batch_sizes": [1]},
            }
        )
    )
    return weights, config, model


def test_old_pytorch_checkpoint_evaluates_prunes_exports_and_profiles(own_route, tmp_path, capsys):
    import scripts.eval
    import scripts.export_onnx
    import scripts.profile
    import scripts.prune_structured

    weights, config, model = own_route
    common = ["--checkpoint", str(weights), "--config", str(config)]
    scripts.eval.main(common + ["--save-dir", str(tmp_path / "eval")])
    report = yaml.safe_load((tmp_path / "eval" / "eval_metrics.yaml").read_text())
    assert report["num_samples"] == 32 and 0 <= report["top1"] <= 100
    scripts.prune_structured.main(common + ["--target-macs-reduction", "0.3", "--save-dir", str(tmp_path / "s")])
    assert (tmp_path / "s" / "pruned_model_state.pth").is_file()
    scripts.export_onnx.main(common + ["--format", "onnx", "--verify", "--save-dir", str(tmp_path / "x")])
    assert (tmp_path / "x" / "model.onnx").is_file()
    scripts.profile.main(["--baseline", str(weights), "--config", str(config), "--save-dir", str(tmp_path / "p")])
    assert (tmp_path / "p" / "profile.yaml").is_file()


def test_old_project_checkpoint_loads_with_its_weights(tiny_checkpoint, tmp_path):
    from tools.core.config import config_from_dict
    from tools.modeling.checkpoint import load_model

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["model"] = as_old_pytorch_saved(ckpt["model"])
    torch.save(ckpt, tmp_path / "old.pth")
    cfg = config_from_dict(ckpt["config"])
    model, _ = load_model(tmp_path / "old.pth", model_cfg=cfg.model, num_classes=4, input_shape=(3, 16, 16))
    for key, value in ckpt["model"].items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_real_missing_key_still_fails_in_one_line(tiny_checkpoint, tmp_path, capsys):
    import scripts.eval

    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt["model"] = as_old_pytorch_saved(ckpt["model"])
    del ckpt["model"]["bn1.running_mean"]
    torch.save(ckpt, tmp_path / "broken.pth")
    code, err = exit_code_and_error(scripts.eval.main, ["--checkpoint", str(tmp_path / "broken.pth")], capsys)
    assert_one_line(code, err)
    assert "does not match model resnet20: 1 missing key (bn1.running_mean)" in err, err


def test_untracked_batchnorm_keys_are_only_num_batches_tracked():
    from tools.modeling.weights import _untracked_batchnorm_keys

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4, track_running_stats=False))
    missing = ["1.num_batches_tracked", "1.running_mean", "0.num_batches_tracked", "2.num_batches_tracked"]
    assert _untracked_batchnorm_keys(model, missing) == ["1.num_batches_tracked"]


def test_files_that_are_no_checkpoint_get_one_line(tiny_checkpoint, tmp_path, capsys):
    import scripts.eval

    text = tmp_path / "notes.pth"
    text.write_text("experiment notes: resnet20, 91.7%\n")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(
        b"\x01"
        + torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
        .numpy()
        .tobytes()
    )
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    cases = [
        (text, r"notes\.pth is truncated or not a PyTorch file \(it is text\)"),
        (noise, r"noise\.pth is truncated or not a PyTorch file \(it is neither a zip archive nor PyTorch's legacy"),
        (empty, r"empty\.pth is truncated or not a PyTorch file \(it is an empty file\)"),
        (tiny_checkpoint.parent, r"is a folder, not a file; pass the \.pth inside it \(best_model\.pth, last\.pth\)"),
    ]
    for path, pattern in cases:
        code, err = exit_code_and_error(scripts.eval.main, ["--checkpoint", str(path)], capsys)
        assert_one_line(code, err)
        assert __import__("re").search(pattern, err), (pattern, err)
        assert "--trust-checkpoint" not in err and "not found" not in err, err


def test_a_legacy_format_checkpoint_still_loads(tmp_path):
    from tools.modeling.checkpoint import read_checkpoint

    state = build_model("resnet20", num_classes=4, image_size=16).state_dict()
    torch.save({"model": state}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert read_checkpoint(tmp_path / "legacy.pth")["model"].keys() == state.keys()


@pytest.mark.parametrize("content", ["", "# only a comment\n"])
def test_an_empty_config_is_refused(content, tmp_path, capsys):
    import scripts.train

    config = tmp_path / "blank.yaml"
    config.write_text(content)
    code, err = exit_code_and_error(scripts.train.main, ["--config", str(config)], capsys)
    assert_one_line(code, err)
    assert f"config {config} is empty" in err, err
