"""Nothing read from a checkpoint chooses code to run: not its stored model.name (a module:factory),
not a replaced best_model.pth on resume, not the lab grader's unpickling (issue 28, items 1-3).

Each hostile file carries a payload that touches a marker file; the marker must stay absent."""

import os
import re
import shutil

import pytest
import torch

from tests.conftest import ROOT, assert_one_line, exit_code_and_error
from tools.core.config import config_to_dict, load_config
from tools.core.errors import UserError
from tools.modeling.checkpoint import save_checkpoint
from tools.modeling.registry import build_model

OWN = "tests/assets/cifar_resnet.py:resnet"  # a benign factory, relative to the repository root
TINY_DATA = [
    "data.name=synthetic",
    "data.synthetic.train_size=32",
    "data.synthetic.test_size=32",
    "data.synthetic.resolution=16",
    "data.synthetic.num_classes=4",
    "data.augment=false",
    "train.device=cpu",
    "train.num_threads=1",
]


class TouchMarker:
    """A pickle that runs `touch marker` when unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)  # factory paths are relative to the working directory, as for a user


def with_factory_config(checkpoint, path, marker):
    """A weights-only copy of `checkpoint` whose stored config names os:system (and grants itself trust)."""
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["config"]["model"].update(name="os:system", kwargs={"command": f"touch {marker}"}, trust_checkpoint=True)
    torch.save(ckpt, path)
    return path


def script_argvs(evil, tmp_path):
    import scripts.eval
    import scripts.export_onnx
    import scripts.profile
    import scripts.prune_structured
    import scripts.quantize

    return {
        "eval": (scripts.eval.main, ["--checkpoint", str(evil), "--save-dir", str(tmp_path / "eval")]),
        "prune_structured": (
            scripts.prune_structured.main,
            [
                "--checkpoint",
                str(evil),
                "--target-macs-reduction",
                "0.3",
                "--epochs",
                "0",
                "--save-dir",
                str(tmp_path / "s"),
            ],
        ),
        "export_onnx": (scripts.export_onnx.main, ["--checkpoint", str(evil), "--save-dir", str(tmp_path / "x")]),
        "profile": (scripts.profile.main, ["--baseline", str(evil), "--save-dir", str(tmp_path / "p")]),
        "quantize": (scripts.quantize.main, ["--checkpoint", str(evil), "--save-dir", str(tmp_path / "q")]),
    }


@pytest.mark.parametrize("script", ["eval", "prune_structured", "export_onnx", "profile", "quantize"])
def test_a_checkpoints_stored_factory_runs_no_code(script, tiny_checkpoint, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    evil = with_factory_config(tiny_checkpoint, tmp_path / "evil.pth", marker)
    main, argv = script_argvs(evil, tmp_path)[script]
    code, err = exit_code_and_error(main, argv, capsys)
    assert not marker.exists(), f"{script} ran the checkpoint's factory"
    assert_one_line(code, err)
    assert re.search(r"model\.name 'os:system' comes from the config stored in checkpoint .*evil\.pth", err), err
    assert "--set model.name=" in err and "--trust-checkpoint" in err, err


def test_a_resumed_checkpoints_stored_factory_runs_no_code(tiny_checkpoint, tmp_path, capsys):
    import scripts.train

    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint.parent, run)
    with_factory_config(run / "last.pth", run / "last.pth", marker)
    code, err = exit_code_and_error(scripts.train.main, ["--resume", str(run / "last.pth"), "--epochs", "2"], capsys)
    assert not marker.exists()
    assert_one_line(code, err)
    assert "model.name 'os:system' comes from the config stored in checkpoint" in err


def test_stored_trust_is_ignored_but_the_users_is_kept():
    stored = ({"model": {"name": "resnet20", "trust_checkpoint": True}}, "checkpoint x.pth")
    assert load_config(None, base=stored).model.trust_checkpoint is False
    assert load_config(None, base=stored, flags={"model.trust_checkpoint": True}).model.trust_checkpoint is True


def own_model_checkpoint(path):
    cfg = load_config(None, overrides=TINY_DATA + [f"model.name={OWN}", "model.kwargs={num_blocks: 1}"])
    torch.manual_seed(0)
    save_checkpoint(
        path, model=build_model(OWN, num_classes=4, image_size=16, kwargs={"num_blocks": 1}), config=config_to_dict(cfg)
    )
    return path


def test_the_users_own_factory_still_works(in_repo, tmp_path, capsys):
    import scripts.eval

    ckpt = own_model_checkpoint(tmp_path / "own.pth")
    code, err = exit_code_and_error(scripts.eval.main, ["--checkpoint", str(ckpt)], capsys)
    assert_one_line(code, err)
    assert f"model.name '{OWN}' comes from the config stored in checkpoint" in err
    for extra in (["--set", f"model.name={OWN}"], ["--trust-checkpoint"]):
        scripts.eval.main(["--checkpoint", str(ckpt), "--save-dir", str(tmp_path / "e"), *extra])
        assert "top1" in capsys.readouterr().out


def test_a_factory_must_return_a_module(in_repo, tmp_path, capsys):
    import scripts.train

    code, err = exit_code_and_error(
        scripts.train.main,
        [
            "--config",
            str(ROOT / "cfgs" / "quickstart.yaml"),
            "--set",
            *TINY_DATA,
            "model.name=os:getcwd",
            "--save-dir",
            str(tmp_path / "t"),
        ],
        capsys,
    )
    assert_one_line(code, err)
    assert "model.name os:getcwd returned a str, not a torch.nn.Module" in err


def test_resume_never_unpickles_a_replaced_best_model(tiny_checkpoint, tmp_path, capsys):
    import scripts.train

    marker = tmp_path / "MARKER"
    run = tmp_path / "run"
    shutil.copytree(tiny_checkpoint.parent, run)
    torch.save(TouchMarker(marker), run / "best_model.pth")
    last = torch.load(run / "last.pth", weights_only=True)
    last["fit_state"]["best_top1"] = 1000.0  # no resumed epoch beats it: the run ends by testing best_model.pth
    torch.save(last, run / "last.pth")
    code, err = exit_code_and_error(scripts.train.main, ["--resume", str(run / "last.pth"), "--epochs", "2"], capsys)
    assert not marker.exists()
    assert_one_line(code, err)
    assert re.search(r"best_model\.pth needs unpickling, but the runs of this project write plain state dicts", err)


def test_best_checkpoint_read_is_weights_only(tmp_path):
    from tools.training.fit import test_best_checkpoint

    marker = tmp_path / "MARKER"
    torch.save(TouchMarker(marker), tmp_path / "best_model.pth")
    with pytest.raises(UserError, match="was replaced by another file"):
        test_best_checkpoint(
            build_model("fc", num_classes=2, image_size=4, in_channels=1),
            None,
            tmp_path,
            torch.device("cpu"),
            {"history": []},
            macs=0,
            params=0,
        )
    assert not marker.exists()


def test_lab_grader_unpickles_only_with_the_trust_flag(tmp_path, capsys):
    import scripts.eval

    marker = tmp_path / "MARKER"
    torch.save(TouchMarker(marker), tmp_path / "mobilenet.pth")
    argv = ["--checkpoint", str(tmp_path / "mobilenet.pth"), "--grader", "mobilenet-lab", "--set", *TINY_DATA]
    code, err = exit_code_and_error(scripts.eval.main, argv, capsys)
    assert not marker.exists(), "the grader unpickled an untrusted file"
    assert_one_line(code, err)
    assert "as the lab's snippet does, torch.load(weights_only=False)" in err and "--trust-checkpoint" in err, err


def test_lab_grader_needs_no_flag_for_a_file_proven_safe(tmp_path):
    from tools.measure.lab_grader import check_lab_may_unpickle

    torch.save(build_model("resnet20", num_classes=4, image_size=16), tmp_path / "module.pth")  # known classes only
    check_lab_may_unpickle(tmp_path / "module.pth", trusted=False)
    torch.save(TouchMarker(tmp_path / "MARKER"), tmp_path / "evil.pth")
    check_lab_may_unpickle(tmp_path / "evil.pth", trusted=True)  # the user's flag: the lab's snippet may unpickle it
    with pytest.raises(UserError, match="pass --trust-checkpoint if you trust its source"):
        check_lab_may_unpickle(tmp_path / "evil.pth", trusted=False)
    assert not (tmp_path / "MARKER").exists()
