"""Issue 28 item 8: every writer honours run-folder locks and finished runs.

eval --save-dir into a held folder, train into a running pipeline's train/, a sweep re-run over an
orphaned point that still runs, train over a COMPLETE run and a resume from a checkpoint older than
the folder's last.pth are each refused with one line (exit 2), and nothing in the folder changes.
"""

import hashlib
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, TINY_TRAIN

import scripts.eval as eval_script
import scripts.sweep as sweep_script
import scripts.train as train_script
import tools.workflows.sweep as sweep_workflow
from tools.core.errors import UserError, run_cli
from tools.core.run_folder import RunLock


def hold(folder, command: str) -> subprocess.Popen:
    """Another live process holding `folder` the way tools.core.run_folder.RunLock does."""
    code = (
        "import sys, time\nfrom tools.core.run_folder import RunLock\n"
        f"RunLock({str(folder)!r}, command={command!r}).acquire()\nprint('held', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


def exit_and_error(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    return exc.value.code, capsys.readouterr().err.strip()


def digests(folder) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished (COMPLETE) one-epoch tiny train run."""
    run_dir = tmp_path_factory.mktemp("locks") / "run"
    train_script.main(TINY_TRAIN + ["--save-dir", str(run_dir)])
    assert (run_dir / "COMPLETE").is_file()
    return run_dir


def test_eval_into_a_folder_a_running_train_holds_is_refused(finished, tmp_path, capsys):
    out = tmp_path / "held"
    holder = hold(out, "python -m scripts.train --save-dir held")
    try:
        code, err = exit_and_error(
            eval_script.main, ["--checkpoint", str(finished / "best_model.pth"), "--save-dir", str(out)], capsys
        )
    finally:
        release(holder)
    assert code == 2 and len(err.splitlines()) == 1
    assert f"PID {holder.pid}" in err and "scripts.train --save-dir held" in err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # no eval_metrics.yaml in the running train's folder


def test_train_into_a_running_pipelines_step_folder_is_refused(tmp_path, capsys):
    pipe = tmp_path / "pipe"
    (pipe / "train").mkdir(parents=True)
    (pipe / "train" / "best_model.pth").write_bytes(b"the pipeline's baseline")
    holder = hold(pipe, "python -m scripts.pipeline --save-dir pipe")
    try:
        code, err = exit_and_error(train_script.main, TINY_TRAIN + ["--save-dir", str(pipe / "train")], capsys)
    finally:
        release(holder)
    assert code == 2 and len(err.splitlines()) == 1
    assert "inside" in err and str(pipe) in err and f"PID {holder.pid}" in err and "scripts.pipeline" in err
    assert sorted(p.name for p in (pipe / "train").iterdir()) == ["best_model.pth"]
    assert (pipe / "train" / "best_model.pth").read_bytes() == b"the pipeline's baseline"


def test_a_folder_inside_ones_own_held_folder_is_writable(tmp_path):
    """The pipeline runs its steps in its own process: its step folders stay its own."""
    with RunLock(tmp_path / "pipe"):
        with RunLock(tmp_path / "pipe" / "train") as inner:
            assert inner.path.is_file()
    assert not (tmp_path / "pipe" / ".lock").exists()


def test_clear_never_deletes_a_folder_a_live_run_holds(tmp_path):
    from tools.core.run_folder import clear

    point = tmp_path / "point"
    point.mkdir()
    (point / "metrics.yaml").write_text("top1: 1\n")
    holder = hold(point, "orphaned point")
    try:
        with pytest.raises(UserError, match=f"in use by PID {holder.pid}"):
            clear(point)
    finally:
        release(holder)
    assert (point / "metrics.yaml").is_file()
    clear(point)  # its holder is gone: now it goes
    assert not point.exists()


def test_sweep_rerun_keeps_a_point_folder_its_orphaned_run_still_holds(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "script": "train",
                "config": str(ROOT / "cfgs" / "quickstart.yaml"),
                "grid": {"train.lr": [0.1, 0.2]},
                "metric": "test_top1",
                "cost": "params",
            }
        )
    )
    out = tmp_path / "out"
    orphan = out / "lr0.2"
    orphan.mkdir(parents=True)
    (orphan / "log.csv").write_text("epoch\n1\n")
    calls = []
    monkeypatch.setattr(sweep_workflow, "run_point", lambda cmd, run_dir: (calls.append(run_dir.name), (run_dir, 1))[1])
    holder = hold(orphan, "python -m scripts.train --save-dir out/lr0.2")
    try:
        code, err = exit_and_error(sweep_script.main, ["--sweep", str(sweep), "--save-dir", str(out)], capsys)
    finally:
        release(holder)
    assert code == 2 and f"PID {holder.pid}" in err.splitlines()[-1] and "lr0.2" in err.splitlines()[-1]
    assert calls == []  # no point ran, none was deleted
    assert (orphan / "log.csv").read_text() == "epoch\n1\n"


def test_train_into_a_finished_run_is_refused(finished, capsys):
    before = digests(finished)
    code, err = exit_and_error(train_script.main, TINY_TRAIN + ["--save-dir", str(finished)], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "COMPLETE" in err and "--resume" in err and "--save-dir" in err
    assert digests(finished) == before


def test_resume_from_a_checkpoint_older_than_last_pth_is_refused(finished, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    epoch1 = run / "epoch1.pth"
    shutil.copy(run / "last.pth", epoch1)
    train_script.main(["--resume", str(run / "last.pth"), "--epochs", "2"])  # extending a finished run is fine
    assert torch.load(run / "last.pth", weights_only=False)["epoch"] == 2 and (run / "COMPLETE").is_file()
    shutil.copy(epoch1, run / "best_model.pth")  # the best epoch was an earlier one
    before = digests(run)
    code, err = exit_and_error(train_script.main, ["--resume", str(run / "best_model.pth"), "--epochs", "3"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "epoch 1" in err and "epoch 2" in err and str(run / "last.pth") in err
    assert digests(run) == before  # last.pth and log.csv keep epoch 2
