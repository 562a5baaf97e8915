"""benchmark: discovery and its errors, targets, resume, the generated doc; one tiny end-to-end run."""

import pytest
import yaml
from conftest import ROOT

import scripts.benchmark as benchmark_script
from tools.core.config import config_to_dict, load_config
from tools.core.errors import UserError, run_cli
from tools.workflows.bench_doc import finetune_epochs, marker, render_doc, semi_structured_text
from tools.workflows.bench_recipe import check_targets, discover, plan
from tools.workflows.bench_runner import script_argv

TRAIN = f"""# A one-epoch resnet20 on tiny synthetic data.
base: {ROOT / "cfgs" / "quickstart.yaml"}
bench: {{script: train, table: baselines}}
data: {{synthetic: {{train_size: 96, test_size: 48, resolution: 16, num_classes: 4}}}}
train: {{epochs: 1, device: cpu, num_threads: 1}}
"""
PRUNE = """# Structured pruning of tiny_train.
bench:
  script: prune_structured
  needs: [tiny_train]
  table: pruning
  targets: {min_macs_reduction_pct: 99.0, max_drop: 100.0, max_finetune_fraction: 1.0}
finetune: {epochs: 1}
structured: {target_macs_reduction: 0.3}
"""
LATENCY = """bench:
  script: profile
  needs: [tiny_train, tiny_prune]
  table: latency
  args: ["--backend", "both"]
  targets: {min_latency_ratio: 0.0}
profile: {batch_sizes: [2], repeats: 2, warmup: 1, num_threads: 1}
"""
LOADER = TRAIN.replace("script: train, table: baselines", "script: loader_speed, table: loader, args: [--batches, '2']")


def write_bench(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """tiny_train -> tiny_prune run through the runner, plus a GPU row that stays pending."""
    root = tmp_path_factory.mktemp("bench")
    bench = write_bench(
        root / "cfgs",
        tiny_train=TRAIN,
        tiny_prune=PRUNE,
        tiny_latency=LATENCY,
        tiny_loader=LOADER,
        tiny_gpu=TRAIN.replace("table: baselines", "table: baselines, device: cuda"),
        shared_base="finetune: {epochs: 2}\n",
    )  # no bench section: a base, not a row
    doc = root / "benchmarks.md"
    doc.write_text(
        f"# Benchmarks\n\nProse kept.\n\n{marker('pruning')[0]}\nold rows\n{marker('pruning')[1]}\n\nMore prose.\n"
    )
    argv = ["--bench-dir", str(bench), "--results", str(root / "results"), "--doc", str(doc)]
    benchmark_script.main(["--run", "tiny_prune", "tiny_latency", "tiny_loader"] + argv)
    return root, argv


def test_discovery_skips_bases_and_plans_dependencies_first(tiny_bench):
    root, _ = tiny_bench
    benchmarks = discover(root / "cfgs")
    assert sorted(benchmarks) == ["tiny_gpu", "tiny_latency", "tiny_loader", "tiny_prune", "tiny_train"]
    assert [b.name for b in plan(benchmarks, ["tiny_prune"])] == ["tiny_train", "tiny_prune"]
    assert benchmarks["tiny_prune"].description == "Structured pruning of tiny_train."


def test_run_writes_results_record_and_doc(tiny_bench):
    root, _ = tiny_bench
    for rel in ("tiny_train/metrics.yaml", "tiny_prune/metrics.yaml", "tiny_prune/pruned_model.pth", "tiny_prune.log"):
        assert (root / "results" / rel).is_file(), rel
    record = yaml.safe_load((root / "results" / "tiny_prune" / "benchmark.yaml").read_text())
    assert record["command"] == "uv run python -m scripts.benchmark --run tiny_prune" and record["wall_time_s"] > 0
    doc = (root / "benchmarks.md").read_text()
    assert doc.startswith("# Benchmarks\n\nProse kept.") and "More prose." in doc and "old rows" not in doc
    pruning = doc.split(marker("pruning")[0])[1].split(marker("pruning")[1])[0]
    row = next(line for line in pruning.splitlines() if line.startswith("| tiny_prune |"))
    metrics = yaml.safe_load((root / "results" / "tiny_prune" / "metrics.yaml").read_text())
    assert f"{metrics['macs_reduction_pct']:.1f}%" in row and f"{metrics['accuracy_drop']:+.2f}" in row
    assert "MISSED: MACs reduction" in row and "< 99" in row  # the impossible target, reported as missed
    assert "1 fine-tune (baseline 1)" in row and "`uv run python -m scripts.benchmark --run tiny_prune`" in row
    # a table without a block is appended under its own heading; the pending GPU row is not in the
    # results but in the pending page beside them
    baselines = doc.split("## baselines")[1]
    assert "| tiny_train |" in baselines and "tiny_gpu" not in doc
    pending = (root / "benchmarks_pending.md").read_text()
    row = next(line for line in pending.splitlines() if line.startswith("| tiny_gpu |"))
    assert "| baselines |" in row and "pending: needs a CUDA GPU" in row and "tiny_prune" not in pending


def test_latency_and_loader_rows(tiny_bench):
    root, _ = tiny_bench
    doc = (root / "benchmarks.md").read_text()
    latency = [line for line in doc.split("## latency")[1].splitlines() if line.startswith("| tiny_latency |")]
    assert len(latency) == 2  # one pruned model x two backends x one batch size
    assert any("| torch | 2 |" in line for line in latency) and any("| onnxruntime | 2 |" in line for line in latency)
    assert all("| tiny_train | tiny_prune |" in line for line in latency)
    result = yaml.safe_load((root / "results" / "tiny_loader" / "loader_speed.yaml").read_text())
    assert result["loader_images_per_s"] > 0 and result["step_images_per_s"] > 0
    ratio = result["loader_images_per_s"] / result["step_images_per_s"]
    loader = next(line for line in doc.split("## loader")[1].splitlines() if line.startswith("| tiny_loader |"))
    assert f"{ratio:,.1f}x" in loader and "| 1 fine-tune" not in loader


def test_rerun_skips_finished_rows(tiny_bench, capsys):
    root, argv = tiny_bench
    before = (root / "results" / "tiny_prune" / "metrics.yaml").stat().st_mtime_ns
    benchmark_script.main(["--run", "tiny_prune"] + argv)
    out = capsys.readouterr().out
    assert out.count("done earlier") == 2 and "tiny_latency" not in out
    assert (root / "results" / "tiny_prune" / "metrics.yaml").stat().st_mtime_ns == before


def test_list_shows_state_and_command(tiny_bench, capsys):
    _, argv = tiny_bench
    benchmark_script.main(["--list"] + argv)
    out = capsys.readouterr().out
    assert "tiny_prune" in out and "done" in out and "needs tiny_train" in out
    assert "uv run python -m scripts.benchmark --run tiny_gpu" in out


def test_gpu_row_without_gpu_is_a_clear_error(tiny_bench, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    _, argv = tiny_bench
    with pytest.raises(SystemExit) as exc:
        run_cli(benchmark_script.main, ["--run", "tiny_gpu"] + argv)
    assert exc.value.code == 2 and "defined for a CUDA GPU" in capsys.readouterr().err


def test_a_clean_checkout_without_the_baseline_weights_is_one_line_naming_the_file(tiny_bench, tmp_path, capsys):
    """Git keeps a finished row's records, not its .pth: a row that starts from it says so, with both fixes."""
    import shutil

    root, _ = tiny_bench
    results = tmp_path / "results"
    shutil.copytree(root / "results" / "tiny_train", results / "tiny_train")
    (results / "tiny_train" / "best_model.pth").unlink()
    argv = ["--bench-dir", str(root / "cfgs"), "--results", str(results), "--doc", str(tmp_path / "d.md")]
    with pytest.raises(SystemExit) as exc:
        run_cli(benchmark_script.main, ["--run", "tiny_prune"] + argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert (
        f"{results / 'tiny_train' / 'best_model.pth'}, which this checkout lacks" in err and "--run tiny_train" in err
    )
    assert not (results / "tiny_prune").exists()  # nothing started


def test_interrupted_train_row_resumes_from_last(tmp_path):
    bench = write_bench(tmp_path / "cfgs", tiny_train=TRAIN)
    b = discover(bench)["tiny_train"]
    results = tmp_path / "results"
    assert "--resume" not in script_argv(b, {"tiny_train": b}, results)
    (results / "tiny_train").mkdir(parents=True)
    (results / "tiny_train" / "last.pth").write_bytes(b"")
    argv = script_argv(b, {"tiny_train": b}, results)
    assert argv[-2:] == ["--resume", str(results / "tiny_train" / "last.pth")]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"a": "bench: {script: distill, table: t}\n"}, "bench.script 'distill' is not one of"),
        ({"a": "bench: {script: prune_structured, table: t, needs: [nope]}\n"}, "needs names 'nope'"),
        (
            {"a": "bench: {script: train, table: t, targets: {max_dorp: 1.0}}\n"},
            "targets.max_dorp is not a known target",
        ),
        ({"a": "bench: {script: train}\n"}, "bench.table is empty"),
        ({"a": "bench: {script: train, table: t, device: tpu}\n"}, "must be cpu or cuda"),
        ({"a": "bench: {script: prune_structured, table: t}\n"}, "needs has 0 entries; prune_structured takes 1"),
        ({"a": "bench: {script: train, table: t, scrpit: x}\n"}, "scrpit"),
    ],
)
def test_bad_benchmark_files_name_the_key(tmp_path, files, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("[", r"\[")):
        discover(write_bench(tmp_path, **files))


def test_dependency_cycle_and_unknown_name(tmp_path):
    row = "bench: {{script: prune_structured, table: t, needs: [{}]}}\n"
    benchmarks = discover(
        write_bench(tmp_path, a=row.format("b"), b=row.format("a").replace("prune_structured", "prune_unstructured"))
    )
    with pytest.raises(UserError, match="cycle: a -> b -> a"):
        plan(benchmarks, ["a"])
    with pytest.raises(UserError, match="unknown benchmark 'c'"):
        plan(benchmarks, ["c"])


def test_check_targets():
    targets = {"max_drop": 1.0, "min_macs_reduction_pct": 50.0}
    assert check_targets(targets, {"drop": 0.7, "macs_reduction_pct": 51.3}) == "met"
    assert check_targets(targets, {"drop": 1.35, "macs_reduction_pct": 51.3}) == "MISSED: top-1 drop 1.35 pts > 1"
    assert check_targets(targets, {"drop": 0.2}) == "n/a (min_macs_reduction_pct not measured)"
    assert check_targets({}, {"drop": 5.0}) == "-"


def test_finetune_epochs_count_every_training_epoch():
    cfg = config_to_dict(
        load_config(
            overrides=[
                "finetune.epochs=6",
                "structured.iterative_steps=3",
                "structured.step_epochs=2",
                "unstructured.num_iterations=4",
            ]
        )
    )
    assert finetune_epochs(cfg, "prune_structured") == 10
    assert finetune_epochs(cfg, "prune_unstructured") == 6  # not iterative
    cfg["unstructured"]["iterative"] = True
    assert finetune_epochs(cfg, "prune_unstructured") == 9
    cfg["structured"]["method"] = "bn_scale"
    assert finetune_epochs(cfg, "prune_structured") == 10 + cfg["structured"]["bn_scale"]["epochs"]


def test_render_doc_is_idempotent(tiny_bench):
    root, _ = tiny_bench
    benchmarks = discover(root / "cfgs")
    text = (root / "benchmarks.md").read_text()
    assert render_doc(text, benchmarks, root / "results", cuda=False) == text


def test_project_benchmarks_are_valid_and_have_doc_blocks():
    benchmarks = discover(ROOT / "cfgs" / "bench")
    doc = (ROOT / "docs" / "benchmarks.md").read_text()
    assert any(b.cfg.bench.device == "cuda" for b in benchmarks.values())
    for table in {b.cfg.bench.table for b in benchmarks.values()}:
        assert marker(table)[0] in doc and marker(table)[1] in doc, table


def test_semi_structured_text():
    timed = {
        "device": "cuda:0",
        "layers": [{"layer": "fc1", "eligible": True, "reason": "ok"}],
        "timings": [{"layer": "fc1", "batch_size": 256, "speedup": 1.234}],
    }
    assert semi_structured_text(timed) == "fc1 batch 256: 1.23x"
    none = {"device": "cpu", "timings": [], "layers": [{"layer": "fc", "eligible": False, "reason": "weight 10x64"}]}
    assert semi_structured_text(none) == "no eligible layer: fc weight 10x64"
    assert semi_structured_text({"nm_layers": {}}) == "not timed (no CUDA)" and semi_structured_text(None) == "-"


def test_latency_column_names_the_allocation_of_a_search():
    from tools.workflows.bench_doc import latency_text

    timed = {
        "measured_reduction_pct": 45.5,
        "spread_pts": 1.5,
        "backend": "onnxruntime",
        "batch_size": 64,
        "threads": 1,
    }
    searched = {**timed, "predicted_reduction_pct": 52.8, "allocation": "importance"}
    assert (
        latency_text({"latency": searched})
        == "52.8% / 45.5% (+-1.5) onnxruntime batch 64, 1 thread(s), allocation importance"
    )
    older = {k: v for k, v in searched.items() if k != "allocation"}  # written before the option: per_ms
    assert latency_text({"latency": older}).endswith("allocation per_ms")
    report = {**timed, "predicted_reduction_pct": None}  # a MACs target timed alike: no search
    assert latency_text({"latency": report}) == "- / 45.5% (+-1.5) onnxruntime batch 64, 1 thread(s)"
    assert latency_text({}) == "-"
