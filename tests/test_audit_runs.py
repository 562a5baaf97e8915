"""Issue 15 audit: results that cannot be stale, overwritten or forged.

Stale pipeline / sweep / benchmark results re-run, a killed --force leaves nothing 'done', one
writer per run folder (a second exits 2 naming the holder; a dead holder's lock is taken over),
profile --save-dir honoured and never overwritten, re-pruning judged against the original baseline,
and failures leave a FAILED record instead of a folder that looks like an unfinished run."""

import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, TINY_TRAIN

import scripts.export_onnx as export_script
import scripts.pipeline as pipeline_script
import scripts.profile as profile_script
import scripts.prune_structured as structured_script
import scripts.prune_unstructured as unstructured_script
import scripts.sweep as sweep_script
import scripts.train as train_script
import tools.workflows.pipeline
import tools.workflows.sweep as sweep_workflow
from tools.core.errors import run_cli

FAST = ["--set", "train.device=cpu", "data.num_workers=0"]


def exit_code_and_error(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return exc.value.code, err


# ----------------------------------------------------------------------------- pipeline staleness
class FakeScripts:
    """Stands in for the pipeline's scripts: each writes its result file at once. The baseline's
    "weights" are a token that changes on every training run, and the pruning results record the
    token they were computed from, so a stale figure is visible."""

    def __init__(self):
        self.calls, self.trainings, self.kill_at = [], 0, None

    def script(self, name, argv):
        def run():
            self.calls.append(name)
            if name == self.kill_at:
                raise KeyboardInterrupt
            out = (
                argv[argv.index("--save-dir") + 1]
                if "--save-dir" in argv
                else os.path.dirname(argv[argv.index("--save-results") + 1])
            )
            os.makedirs(out, exist_ok=True)
            baseline = os.path.join(os.path.dirname(out), "train", "best_model.pth")
            if name == "train":
                self.trainings += 1
                open(baseline, "w").write(f"weights of training {self.trainings}: {argv}")
            token = open(baseline).read()
            result = {
                "train": "metrics.yaml",
                "eval": "eval_metrics.yaml",
                "export_onnx": "export.yaml",
                "quantize": "quantize.yaml",
                "profile": "profile.yaml",
            }.get(name, "metrics.yaml")
            if name.startswith("prune_"):
                open(os.path.join(out, "pruned_model.pth"), "w").write(token)
            yaml.safe_dump(
                {
                    "from": token,
                    "method": "l2",
                    "accuracy_drop": 1.0,
                    "flops_reduction_pct": 50.0,
                    "goal": {},
                    "goal_met": True,
                },
                open(os.path.join(out, result), "w"),
            )

        return run


@pytest.fixture
def fake_pipeline(monkeypatch, tmp_path):
    fake = FakeScripts()
    monkeypatch.setattr(tools.workflows.pipeline, "_script", fake.script)
    monkeypatch.setattr(
        "tools.reports.report.write_report",
        lambda runs, out: (out / "report.md").write_text("report") and out / "report.md",
    )
    argv = ["--config", str(ROOT / "cfgs" / "quickstart.yaml"), "--save-dir", str(tmp_path / "p")]
    return fake, argv, tmp_path / "p"


def test_pipeline_reruns_every_step_after_a_config_change(fake_pipeline, capsys):
    fake, argv, _ = fake_pipeline
    pipeline_script.main(argv)
    assert len(fake.calls) == 10  # the quickstart's 8 scripts and its FP32 and INT8 latency-targeted steps
    fake.calls.clear()
    pipeline_script.main(argv)
    assert fake.calls == [] and capsys.readouterr().out.count("skipped") == 11
    pipeline_script.main(argv + ["--set", "train.epochs=4"])
    assert fake.calls == [
        "train",
        "eval",
        "prune_unstructured",
        "prune_structured",
        "export_onnx",
        "quantize",
        "quantize",
        "profile",
        "prune_structured",
        "prune_structured",
    ]
    assert "(again: config changed)" in capsys.readouterr().out
    fake.calls.clear()
    pipeline_script.main(argv + ["--set", "train.epochs=4", "structured.target_macs_reduction=0.3"])
    assert fake.calls == [
        "prune_structured",
        "export_onnx",
        "quantize",
        "quantize",
        "profile",
        "prune_structured",
        "prune_structured",
    ]  # the baseline and earlier steps stand


def test_killed_force_run_then_plain_rerun_reads_no_stale_figures(fake_pipeline):
    fake, argv, run_dir = fake_pipeline
    pipeline_script.main(argv)
    fake.kill_at = "prune_unstructured"  # --force retrains, then is killed before the pruning steps
    with pytest.raises(KeyboardInterrupt):
        pipeline_script.main(argv + ["--force"])
    fake.kill_at = None
    fake.calls.clear()
    pipeline_script.main(argv)  # must redo every step after the retrained baseline
    assert fake.calls == [
        "prune_unstructured",
        "prune_structured",
        "export_onnx",
        "quantize",
        "quantize",
        "profile",
        "prune_structured",
        "prune_structured",
    ]
    baseline = (run_dir / "train" / "best_model.pth").read_text()
    for rel in ("eval/eval_metrics.yaml", "unstructured/metrics.yaml", "structured/metrics.yaml"):
        assert yaml.safe_load((run_dir / rel).read_text())["from"] == baseline, rel


def test_a_result_rewritten_by_hand_is_not_read_as_the_steps(fake_pipeline, capsys):
    fake, argv, run_dir = fake_pipeline
    pipeline_script.main(argv)
    (run_dir / "structured" / "metrics.yaml").write_text("accuracy_drop: 0.0\n")  # another run's figures
    fake.calls.clear()
    pipeline_script.main(argv)
    assert fake.calls == [
        "prune_structured",
        "export_onnx",
        "quantize",
        "quantize",
        "profile",
        "prune_structured",
        "prune_structured",
    ]
    assert "rewritten by another run" in capsys.readouterr().out


# ----------------------------------------------------------------------------- sweep and benchmark staleness
def test_sweep_reruns_points_when_the_base_config_changes(tmp_path, monkeypatch, capsys):
    config = tmp_path / "base.yaml"
    config.write_text(f"base: {ROOT / 'cfgs' / 'quickstart.yaml'}\ntrain: {{epochs: 1}}\n")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"script": "train", "config": str(config), "grid": {"train.lr": [0.1, 0.2]}}))
    calls = []

    def fake_point(cmd, run_dir):
        calls.append(run_dir.name)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.yaml").write_text(f"test_top1: {len(calls)}\nmacs: 5\n")  # a train run's frontier keys
        return run_dir, 0

    monkeypatch.setattr(sweep_workflow, "run_point", fake_point)
    monkeypatch.setattr(
        sweep_workflow, "plot_pareto", lambda *args, **kwargs: None
    )  # matplotlib: seconds, not tested here
    argv = ["--sweep", str(sweep), "--save-dir", str(tmp_path / "out")]
    sweep_script.main(argv)
    sweep_script.main(argv)
    assert len(calls) == 2  # the second sweep found both points current
    config.write_text(config.read_text().replace("epochs: 1", "epochs: 3"))
    sweep_script.main(argv)
    assert len(calls) == 4 and "again (config changed)" in capsys.readouterr().out


def test_benchmark_row_is_stale_when_its_recipe_or_baseline_changes(tmp_path):
    from tools.core.run_folder import BENCHMARK_RECORD
    from tools.workflows.bench_recipe import discover

    bench = tmp_path / "cfgs"
    bench.mkdir()
    (bench / "base.yaml").write_text("bench: {script: train, table: t}\ntrain: {epochs: 1}\n")
    (bench / "pruned.yaml").write_text("bench: {script: prune_structured, table: t, needs: [base]}\n")
    results = tmp_path / "results"
    for name in ("base", "pruned"):
        b = discover(bench)[name]
        (results / name).mkdir(parents=True)
        (results / name / "metrics.yaml").write_text("top1: 1\n")
        (results / name / BENCHMARK_RECORD).write_text(
            yaml.safe_dump({"finished_at": "t0", "fingerprint": b.fingerprint(results)})
        )
    assert all(b.state(results) == "done" for b in discover(bench).values())
    (bench / "base.yaml").write_text("bench: {script: train, table: t, targets: {max_drop: 1}}\ntrain: {epochs: 1}\n")
    assert discover(bench)["base"].state(results) == "done"  # a target is how the doc reads the row, not the run
    (bench / "base.yaml").write_text("bench: {script: train, table: t}\ntrain: {epochs: 2}\n")
    assert discover(bench)["base"].state(results) == "stale" and not discover(bench)["base"].done(results)
    record = yaml.safe_load((results / "base" / BENCHMARK_RECORD).read_text())
    (results / "base" / BENCHMARK_RECORD).write_text(
        yaml.safe_dump(record | {"finished_at": "t1"})
    )  # the baseline ran again
    assert discover(bench)["pruned"].stale_reason(results) == "config changed"


# ----------------------------------------------------------------------------- one writer per folder
def hold_lock(folder, command: str) -> subprocess.Popen:
    """Another process holding `folder` as tools.core.run_folder documents it (as a running train would):
    <folder>/.lock created with O_EXCL, naming PID, host and command, flock held while it runs."""
    code = (
        "import fcntl, os, socket, sys, time\n"
        f"os.makedirs({str(folder)!r}, exist_ok=True)\n"
        f"fd = os.open(os.path.join({str(folder)!r}, '.lock'), os.O_CREAT | os.O_EXCL | os.O_RDWR)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        f"os.write(fd, f'pid: {{os.getpid()}}\\nhost: {{socket.gethostname()}}\\ncommand: {command}\\n'.encode())\n"
        "print('held', flush=True)\ntime.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_to_one_save_dir_exits_2_naming_the_holder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    holder = hold_lock(run_dir, "python -m scripts.train --save-dir run")
    try:
        code, err = exit_code_and_error(train_script.main, TINY_TRAIN + ["--save-dir", str(run_dir)], capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"PID {holder.pid}" in err and "python -m scripts.train --save-dir run" in err
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # the second writer wrote nothing


def test_stale_lock_of_a_dead_process_is_taken_over_with_a_notice(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text(yaml.safe_dump({"pid": dead.pid, "host": "h", "command": "old train"}))
    train_script.main(TINY_TRAIN + ["--save-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert "taking over the stale lock" in err and f"PID {dead.pid}" in err and "old train" in err
    assert (run_dir / "metrics.yaml").is_file() and (run_dir / "COMPLETE").is_file()
    assert not (run_dir / ".lock").exists()  # released at the end


def test_run_lock_is_reusable_on_any_folder(tmp_path):
    from tools.core.errors import UserError
    from tools.core.run_folder import RunLock

    row = tmp_path / "bench" / "row"
    holder = hold_lock(row, "scripts.benchmark --run row")
    try:
        with pytest.raises(UserError, match=f"PID {holder.pid} .*scripts.benchmark --run row"):
            with RunLock(row, "a second runner"):
                pass
    finally:
        holder.kill()
        holder.wait()
    with RunLock(row, "runner") as lock:  # free again: the holder died with its flock
        assert yaml.safe_load(lock.path.read_text())["command"] == "runner"
        with RunLock(row):  # the holder itself (or a child it starts) may write there
            pass
    assert not (row / ".lock").exists()


# ----------------------------------------------------------------------------- half-made folders
def test_unreachable_macs_target_leaves_a_failed_record_not_a_run(tiny_checkpoint, tmp_path, capsys):
    run_dir = tmp_path / "s"
    code, err = exit_code_and_error(
        structured_script.main,
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--save-dir",
            str(run_dir),
            "--target-macs-reduction",
            "0.999",
            "--epochs",
            "0",
            *FAST,
        ],
        capsys,
    )
    assert code == 2 and "target" in err
    assert sorted(p.name for p in run_dir.iterdir()) == ["FAILED"]
    failed = yaml.safe_load((run_dir / "FAILED").read_text())
    assert (
        failed["error"] == err.removeprefix("error: ")
        and failed["config"]["structured"]["target_macs_reduction"] == 0.999
    )


def test_bad_opset_fails_before_any_folder(tiny_checkpoint, tmp_path, capsys):
    code, err = exit_code_and_error(
        export_script.main,
        ["--checkpoint", str(tiny_checkpoint), "--opset", "3", "--save-dir", str(tmp_path / "e")],
        capsys,
    )
    assert code == 2 and "opset 3" in err and not (tmp_path / "e").exists()


# ----------------------------------------------------------------------------- profile --save-dir
def test_profile_honours_save_dir_and_never_overwrites(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default folder is relative: keep it out of the repository
    argv = ["--baseline", str(tiny_checkpoint), "--set", "train.device=cpu"]
    profile_script.main(argv + ["--save-dir", "mine"])
    written = (tmp_path / "mine" / "profile.yaml").read_bytes()
    assert not (tmp_path / "results").exists()
    code, err = exit_code_and_error(profile_script.main, argv + ["--save-dir", "mine"], capsys)
    assert (
        code == 2 and "already holds a profile" in err and (tmp_path / "mine" / "profile.yaml").read_bytes() == written
    )
    profile_script.main(argv)
    profile_script.main(argv)
    assert sorted(p.name for p in (tmp_path / "results" / "profile").iterdir()) == ["dense", "dense_2"]


# ----------------------------------------------------------------------------- lineage
def test_repruning_is_judged_against_the_original_baseline(tiny_checkpoint, tmp_path, capsys):
    from tools.core.fingerprint import file_sha256

    def prune(checkpoint, name, *extra):
        structured_script.main(
            [
                "--checkpoint",
                str(checkpoint),
                "--save-dir",
                str(tmp_path / name),
                "--method",
                "l1",
                "--pruning-ratio",
                "0.3",
                "--epochs",
                "0",
                *FAST,
                "structured.goal.min_flops_reduction_pct=65",
                "structured.goal.max_accuracy_drop=100",
                "structured.round_to=8",
                *extra,
            ]
        )
        return yaml.safe_load((tmp_path / name / "metrics.yaml").read_text())

    first = prune(tiny_checkpoint, "p1")
    assert not first["goal_met"] and first["vs_original"]["macs_reduction_pct"] == first["macs_reduction_pct"]
    capsys.readouterr()
    second = prune(tmp_path / "p1" / "pruned_model.pth", "p2")
    out = capsys.readouterr().out
    assert [e["checkpoint"] for e in second["lineage"]] == [
        str(tiny_checkpoint),
        str(tmp_path / "p1" / "pruned_model.pth"),
    ]
    assert second["lineage"][0]["sha256"] == file_sha256(tiny_checkpoint)
    original = second["vs_original"]
    assert original["baseline_top1"] == first["baseline_top1"] and original["checkpoint"] == str(tiny_checkpoint)
    assert second["macs_reduction_pct"] < 65 < original["macs_reduction_pct"]  # vs parent: not met; vs original: met
    assert original["accuracy_drop"] == pytest.approx(first["baseline_top1"] - second["pruned_top1"])
    assert second["goal_met"] and "Goal MET" in out and "against the original baseline" in out
    module = torch.load(tmp_path / "p2" / "pruned_model.pth", weights_only=False)
    assert len(module.lineage) == 2 and module.run_config["model"]["name"] == "resnet20"


def test_unstructured_repruning_reports_against_the_original(tiny_checkpoint, tmp_path, capsys):
    def prune(checkpoint, name, sparsity):
        unstructured_script.main(
            [
                "--checkpoint",
                str(checkpoint),
                "--save-dir",
                str(tmp_path / name),
                "--method",
                "global",
                "--sparsity",
                sparsity,
                "--epochs",
                "0",
                *FAST,
            ]
        )
        return yaml.safe_load((tmp_path / name / "metrics.yaml").read_text())

    first = prune(tiny_checkpoint, "u1", "0.5")
    second = prune(tmp_path / "u1" / "pruned_model.pth", "u2", "0.8")
    assert [e["checkpoint"] for e in second["lineage"]] == [
        str(tiny_checkpoint),
        str(tmp_path / "u1" / "pruned_model.pth"),
    ]
    assert second["vs_original"]["baseline_top1"] == first["baseline_top1"]
    assert second["vs_original"]["macs_reduction_pct"] > 0
    assert "vs the original baseline" in capsys.readouterr().out
    assert len(torch.load(tmp_path / "u2" / "pruned_model.pth", weights_only=False)["lineage"]) == 2


def test_a_complete_run_is_marked_last(tmp_path):
    from tools.core.run_folder import COMPLETE, FAILED, RunFolder

    with RunFolder(tmp_path / "r") as run:
        (run / "metrics.yaml").write_text("top1: 1\n")
        assert not (run / COMPLETE).exists()
    assert (tmp_path / "r" / COMPLETE).is_file()
    with pytest.raises(ValueError):
        with RunFolder(tmp_path / "r").start(resume=True):  # a run continuing the folder: the old marker goes first
            assert not (tmp_path / "r" / COMPLETE).exists()
            raise ValueError("boom\nsecond line")
    assert yaml.safe_load((tmp_path / "r" / FAILED).read_text())["error"] == "ValueError: boom"
    assert not (tmp_path / "r" / COMPLETE).exists()
