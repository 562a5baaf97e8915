"""benchmark seeds: a seeded row runs once per seed into <row>/seed<k>/ and its table row is the mean
+- std of the seeds' own result files; targets judged on the mean say when they are inside the noise."""

from contextlib import contextmanager

import pytest
import yaml
from test_benchmark import PRUNE, TRAIN, write_bench

import scripts.benchmark as benchmark_script
from tools.core.errors import UserError
from tools.workflows.bench_doc import marker, mean_and_spread, read_row
from tools.workflows.bench_recipe import check_targets, discover
from tools.workflows.bench_runner import script_argv

SEEDED = PRUNE.replace("table: pruning", "table: pruning\n  seeds: [3, 5]")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    bench = write_bench(root / "cfgs", tiny_train=TRAIN, tiny_seeded=SEEDED)
    doc = root / "benchmarks.md"
    doc.write_text(f"# B\n\n{marker('pruning')[0]}\n{marker('pruning')[1]}\n")
    argv = ["--bench-dir", str(bench), "--results", str(root / "results"), "--doc", str(doc)]
    benchmark_script.main(["--run", "tiny_seeded"] + argv)
    return root, argv


def test_seeds_expand_into_one_run_each(seeded):
    root, _ = seeded
    for seed in (3, 5):
        run = root / "results" / "tiny_seeded" / f"seed{seed}"
        assert yaml.safe_load((run / "config.yaml").read_text())["train"]["seed"] == seed
        assert (run / "metrics.yaml").is_file() and (run / "benchmark.yaml").is_file()
    assert not (root / "results" / "tiny_seeded" / "metrics.yaml").exists()


def test_table_row_is_mean_and_std_of_the_run_folders(seeded):
    root, _ = seeded
    drops = [
        yaml.safe_load((root / "results" / "tiny_seeded" / f"seed{s}" / "metrics.yaml").read_text())["accuracy_drop"]
        for s in (3, 5)
    ]
    mean, std = sum(drops) / 2, abs(drops[0] - drops[1]) / 2**0.5
    doc = (root / "benchmarks.md").read_text()
    assert f"{mean:+.2f} ± {std:.2f}" in doc and "n=2 (3, 5)" in doc
    run = read_row(discover(root / "cfgs")["tiny_seeded"], root / "results")
    assert run.seeds == [3, 5] and run.result["accuracy_drop"] == pytest.approx(mean)


def test_partial_seeds_are_shown_as_partial(seeded, tmp_path):
    root, argv = seeded
    import shutil

    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    shutil.rmtree(results / "tiny_seeded" / "seed5")
    b = discover(root / "cfgs")["tiny_seeded"]
    assert b.state(results) == "partial 1/2" and not b.done(results)
    doc = tmp_path / "doc.md"
    doc.write_text((root / "benchmarks.md").read_text())
    benchmark_script.main(
        ["--doc-only", "--bench-dir", str(root / "cfgs"), "--results", str(results), "--doc", str(doc)]
    )
    assert "partial, 1 of 2 seeds" in doc.read_text()
    assert script_argv(b, discover(root / "cfgs"), results, 5)[:4] == ["--config", str(b.path), "--set", "train.seed=5"]


def test_seeds_flag_runs_only_those_seeds(seeded):
    root, _ = seeded
    b = discover(root / "cfgs")["tiny_seeded"]
    assert b.todo(root / "results") == [] and b.todo(root / "results", [5]) == []
    fresh = root / "nothing_yet"
    assert b.todo(fresh) == [3, 5] and b.todo(fresh, [5]) == [5] and b.todo(fresh, [7]) == []


def test_a_section_no_row_reads_does_not_stale_the_records(seeded):
    root, _ = seeded
    b = discover(root / "cfgs")["tiny_seeded"]
    before = b.fingerprint(root / "results")
    b.cfg.pipeline.latency_target_reduction = 0.3  # scripts.pipeline's own key
    assert b.fingerprint(root / "results") == before and b.done(root / "results")


def test_an_added_option_at_its_old_behaviour_stales_nothing_and_set_otherwise_does(seeded, monkeypatch):
    import tools.workflows.bench_recipe as bench

    root, _ = seeded
    b = discover(root / "cfgs")["tiny_seeded"]
    b.cfg.structured.latency.allocation = "per_ms"  # what every run did before the key existed
    b.cfg.structured.target_latency_reduction = 0.5  # a row that reads it

    to_dict = bench.config_to_dict

    def without_the_key(cfg):  # the config as the project wrote it before the key existed
        d = to_dict(cfg)
        del d["structured"]["latency"]["allocation"]
        return d

    def recorded_before_the_key() -> dict:
        with monkeypatch.context() as m:
            m.setattr(
                bench, "ADDED_KEYS", {k: v for k, v in bench.ADDED_KEYS.items() if k != "structured.latency.allocation"}
            )
            m.setattr(bench, "config_to_dict", without_the_key)
            return b.fingerprint(root / "results")

    assert b.fingerprint(root / "results") == recorded_before_the_key()
    b.cfg.structured.latency.allocation = "importance"
    assert b.fingerprint(root / "results") != recorded_before_the_key()
    b.cfg.structured.target_latency_reduction = 0.0  # a row that does not read it: as before
    assert b.fingerprint(root / "results") == recorded_before_the_key()


def test_mean_and_spread_of_nested_results():
    mean, spread = mean_and_spread(
        [{"a": 1.0, "n": 4, "m": "x", "d": {"t": 2.0}}, {"a": 3.0, "n": 4, "m": "y", "d": {"t": 4.0}}]
    )
    assert mean == {"a": 2.0, "n": 4, "m": "x", "d": {"t": 3.0}}
    assert spread["a"] == pytest.approx(2**0.5) and spread["n"] == 0.0 and spread["d"]["t"] == pytest.approx(2**0.5)


def test_targets_on_the_mean_say_when_inside_the_noise():
    targets = {"max_drop": 1.0}
    assert check_targets(targets, {"drop": 0.5}, {"drop": 0.1}) == "met"
    assert check_targets(targets, {"drop": 0.9}, {"drop": 0.3}) == "met, within noise (top-1 drop 0.90 pts, std 0.30)"
    assert (
        check_targets(targets, {"drop": 1.2}, {"drop": 0.3})
        == "MISSED: top-1 drop 1.20 pts > 1 (within noise, std 0.30)"
    )
    assert check_targets(targets, {"drop": 1.2}, {"drop": 0.0}) == "MISSED: top-1 drop 1.20 pts > 1"


def test_repeated_seed_is_refused(tmp_path):
    with pytest.raises(UserError, match="repeats a seed"):
        discover(write_bench(tmp_path, tiny_train=TRAIN, bad=SEEDED.replace("[3, 5]", "[1, 1]")))


@contextmanager
def held(folder):
    """Another process holding `folder`'s run lock for the duration of the block; yields its PID."""
    import subprocess
    import sys

    from conftest import ROOT

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom tools.core.run_folder import RunLock\n"
            f"with RunLock({str(folder)!r}, command='scripts.benchmark --run tiny_seeded'):\n"
            "    print('held', flush=True); time.sleep(600)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def run_seeded(root, results, *extra):
    from tools.core.errors import run_cli

    argv = ["--bench-dir", str(root / "cfgs"), "--results", str(results), "--doc", str(results / "d.md")]
    run_cli(benchmark_script.main, ["--run", "tiny_seeded", *argv, *extra])


def test_a_second_runner_on_one_row_exits_2_naming_the_holder(seeded, tmp_path, capsys):
    root, _ = seeded
    row = tmp_path / "results" / "tiny_seeded"
    with held(row) as pid, pytest.raises(SystemExit) as exc:
        run_seeded(root, tmp_path / "results")
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"in use by PID {pid}" in err and "--run tiny_seeded" in err
    assert not (row / "seed3").exists()  # nothing was started


def test_two_runners_share_a_seeded_row_one_seed_each(seeded, tmp_path, capsys):
    """The lock is per run folder: while seed 3 is held, --seeds 5 runs; a runner wanting seed 3 exits 2."""
    import shutil

    root, _ = seeded
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    for seed in (3, 5):
        shutil.rmtree(results / "tiny_seeded" / f"seed{seed}")
    with held(results / "tiny_seeded" / "seed3") as pid:
        run_seeded(root, results, "--seeds", "5")
        assert (results / "tiny_seeded" / "seed5" / "benchmark.yaml").is_file()
        with pytest.raises(SystemExit) as exc:
            run_seeded(root, results)
    assert exc.value.code == 2 and f"in use by PID {pid}" in capsys.readouterr().err
    assert not (results / "tiny_seeded" / "seed3" / "metrics.yaml").exists()


def test_a_runner_locks_the_run_folder_not_the_row(seeded, tmp_path, monkeypatch):
    import shutil

    from tools.core.run_folder import LOCK
    from tools.workflows import bench_runner

    root, _ = seeded
    results = tmp_path / "results"
    shutil.copytree(root / "results", results)
    shutil.rmtree(results / "tiny_seeded" / "seed5")
    row, locked = results / "tiny_seeded", []
    monkeypatch.setattr(
        bench_runner,
        "run_once",
        lambda b, _, r, seed: locked.append(((row / LOCK).exists(), (row / f"seed{seed}" / LOCK).exists())) or 0.0,
    )
    run_seeded(root, results)
    assert locked == [(False, True)]  # only seed 5 was left to run, under its own lock


def test_a_killed_prune_row_resumes_from_its_last_finished_epoch(seeded, tmp_path, capsys):
    """A run killed during fine-tuning epoch 2 leaves its epoch-1 last.pth: the runner continues it."""
    import scripts.prune_structured as structured_script

    root, _ = seeded
    bench = write_bench(
        tmp_path / "cfgs",
        tiny_train=TRAIN,
        tiny_two=PRUNE.replace("finetune: {epochs: 1}", "finetune: {epochs: 2}").replace(
            "table: pruning", "table: pruning\n  seeds: [0]"
        ),
    )
    results = tmp_path / "results"
    import shutil

    shutil.copytree(root / "results" / "tiny_train", results / "tiny_train")
    run = results / "tiny_two" / "seed0"
    structured_script.main(
        [
            "--config",
            str(bench / "tiny_two.yaml"),
            "--checkpoint",
            str(results / "tiny_train" / "best_model.pth"),
            "--save-dir",
            str(run),
            "--set",
            "train.seed=0",
            "finetune.epochs=1",
        ]
    )
    for name in ("metrics.yaml", "COMPLETE"):  # what a kill during epoch 2 has not written yet
        (run / name).unlink()
    b = discover(bench)["tiny_two"]
    assert script_argv(b, discover(bench), results, 0)[-2:] == ["--resume", str(run / "last.pth")]
    capsys.readouterr()
    benchmark_script.main(
        ["--run", "tiny_two", "--bench-dir", str(bench), "--results", str(results), "--doc", str(tmp_path / "d.md")]
    )
    out = capsys.readouterr().out
    assert "resuming the final fine-tuning after epoch 1; pruning is not redone" in out
    assert yaml.safe_load((run / "metrics.yaml").read_text())["finetune"]["epochs"] == 2
