"""The pipeline's INT8-targeted structured row: its step, its key's validation, and the report's
deployment rows by target (MACs, FP32 latency, INT8 latency) from fabricated run folders."""

from pathlib import Path

import pytest
import yaml
from conftest import ROOT

import scripts.pipeline as pipeline_script
from tools.core.errors import run_cli
from tools.reports.deployment import ADVICE, noise_note
from tools.reports.report import write_report
from tools.workflows.pipeline import INT8_BACKEND, pipeline_steps

QUICKSTART = str(ROOT / "cfgs" / "quickstart.yaml")


def _structured(run: Path, **extra) -> None:
    run.mkdir(parents=True)
    metrics = {
        "method": "l2",
        "goal_met": True,
        "flops_reduction_pct": 40.0,
        "baseline_top1": 83.0,
        "pruned_top1": 82.0,
        "accuracy_drop": 1.0,
        "pruned": {"macs": 6_000_000},
        **extra,
    }
    (run / "metrics.yaml").write_text(yaml.safe_dump(metrics))


def _int8(speedup_vs_int8: float, spread: float) -> dict:
    int8 = {
        "file": "model.int8.onnx",
        "method": "ptq",
        "int8_top1": 81.5,
        "int8_file_bytes": 100_000,
        "int8_speedup_vs_dense_fp32": 2.6,
        "int8_speedup_vs_dense_int8": speedup_vs_int8,
        "int8_speedup_vs_dense_int8_spread": spread,
        "rounds": 15,
        "timed_on": "onnxruntime CPU, batch 64, 1 thread(s), interleaved",
    }
    return {"int8": int8, **{k: v for k, v in int8.items() if k.startswith("int8_") and "spread" not in k}}


def _latency(backend: str, reduction_pct: float) -> dict:
    return {"backend": backend, "batch_size": 64, "measured_reduction_pct": reduction_pct, "rounds": 15}


def _runs(root: Path, int8_speedup: float, spread: float = 0.02) -> Path:
    _structured(
        root / "structured_int8",
        target_latency_reduction=0.3,
        latency=_latency("onnxruntime-int8", 33.0),
        **_int8(int8_speedup, spread),
    )
    fp32 = _latency("onnxruntime", 41.0) | {"baseline_ms": 30.0, "pruned_ms": 17.7}
    _structured(root / "structured_latency", target_latency_reduction=0.4, latency=fp32)
    return root


def _deployment(report: Path) -> str:
    return report.read_text().split("## Deployment")[1].split("## Failure")[0]


def test_the_deployment_table_has_the_int8_row_beside_the_fp32_latency_row(tmp_path):
    root = _runs(tmp_path / "pipe", int8_speedup=1.6)
    section = _deployment(write_report([root], tmp_path / "out"))
    int8 = next(line for line in section.splitlines() if line.startswith("| structured_int8 |"))
    assert "INT8 latency -0.3" in int8 and "structured_int8/model.int8.onnx" in int8
    assert "| 81.50 | 2.60 | 1.60 |" in int8 and "noise" not in int8  # top-1, vs dense FP32, vs dense INT8
    fp32 = next(line for line in section.splitlines() if line.startswith("| structured_latency |"))
    assert "FP32 latency -0.4" in fp32 and "| 1.69 |" in fp32  # 30.0 / 17.7 ms
    assert ADVICE in section and "`onnxruntime-int8`" in ADVICE and "MACs target" in ADVICE


@pytest.mark.parametrize(("speedup", "spread"), [(1.03, 0.01), (1.2, 0.25)])
def test_a_speedup_close_to_dense_int8_is_called_timing_noise(tmp_path, speedup, spread):
    section = _deployment(write_report([_runs(tmp_path / "pipe", speedup, spread)], tmp_path / "out"))
    int8 = next(line for line in section.splitlines() if line.startswith("| structured_int8 |"))
    assert "within timing noise of dense INT8" in int8


def test_the_noise_note_says_slower_only_outside_the_spread():
    assert noise_note(0.8, 0.05).startswith("SLOWER")
    assert noise_note(0.98, 0.05).startswith("within timing noise")
    assert noise_note(1.5, 0.05) == "" and noise_note(None) == ""


def test_the_int8_step_sits_after_the_latency_step_and_times_int8(tmp_path):
    args = {"config": QUICKSTART, "run_dir": tmp_path, "sets": ["train.epochs=1"]}
    steps = pipeline_steps(**args, latency_target=0.4, int8_latency_target=0.3)
    names = [s.name for s in steps]
    assert names[-3:] == ["prune_structured_latency", "prune_structured_int8", "report"]
    int8 = steps[-2]
    assert int8.optional and int8.result == tmp_path / "structured_int8" / "metrics.yaml"
    assert "0.3" in int8.argv and "pipeline" not in int8.sections and "quantize" in int8.sections
    off = [s.name for s in pipeline_steps(**args, latency_target=0.4, int8_latency_target=0)]
    assert "prune_structured_int8" not in off and INT8_BACKEND.endswith("onnxruntime-int8")


def test_the_quickstart_runs_the_int8_step():
    from tools.core.config import load_config

    assert 0 < load_config(Path(QUICKSTART)).pipeline.int8_latency_target_reduction < 1


@pytest.mark.parametrize("bad", ["1.5", "-0.1"])
def test_a_bad_int8_target_is_one_line_naming_the_key(tmp_path, capsys, bad):
    argv = ["--config", QUICKSTART, "--set", f"pipeline.int8_latency_target_reduction={bad}"]
    with pytest.raises(SystemExit) as exc:
        run_cli(pipeline_script.main, argv + ["--save-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert "pipeline.int8_latency_target_reduction" in err and not (tmp_path / "run").exists()


def _quantized(root: Path, name: str, macs: int, ms: dict, source: Path) -> list[dict]:
    """quantize.yaml of `name` (its FP32 and INT8 files) and their profile entries timed at `ms`."""
    folder = root / name
    folder.mkdir(parents=True)
    files = {p: folder / f"model{'.int8' if p == 'int8' else ''}.onnx" for p in ("fp32", "int8")}
    record = {p: {"path": str(f), "size_bytes": 1000, "top1": 80.0} for p, f in files.items()}
    (folder / "quantize.yaml").write_text(yaml.safe_dump(record | {"macs": macs, "source": str(source)}))
    return [{"onnx": str(f), "latency": {"onnxruntime": {64: {"median_ms": ms[p]}}}} for p, f in files.items()]


def test_the_macs_row_is_timed_against_both_dense_files_and_flags_channels_off_the_int8_multiple(tmp_path):
    root = _runs(tmp_path / "pipe", int8_speedup=1.6)  # its latency row recorded the INT8 multiple: 16
    metrics = yaml.safe_load((root / "structured_int8" / "metrics.yaml").read_text())
    metrics["latency"]["fast_multiple"] = 16
    (root / "structured_int8" / "metrics.yaml").write_text(yaml.safe_dump(metrics))
    _structured(root / "structured", target_macs_reduction=0.5)
    pruned, baseline = root / "structured" / "pruned_model.pth", root / "train" / "best_model.pth"
    models = _quantized(root, "quantize", 5_000_000, {"fp32": 9.0, "int8": 6.0}, pruned)
    models += _quantized(root, "quantize_dense", 10_000_000, {"fp32": 15.0, "int8": 9.0}, baseline)
    off = {"checkpoint": str(pruned), "channels_not_multiple_of_16": ["layer1.0.conv1"], "latency": {}}
    (root / "profile").mkdir()
    (root / "profile" / "profile.yaml").write_text(yaml.safe_dump({"models": [*models, off]}))
    section = _deployment(write_report([root], tmp_path / "out"))
    macs = next(line for line in section.splitlines() if line.startswith("| structured | MACs -0.5 |"))
    assert "quantize/model.int8.onnx" in macs and "| 2.50 | 1.50 |" in macs  # 15 / 6 and 9 / 6 ms
    assert "1 layer(s) off the INT8 fast multiple 16 (layer1.0.conv1)" in macs and "noise" not in macs


def test_changing_one_latency_target_leaves_the_other_latency_step_done(tmp_path):
    config = {"structured": {"method": "l2"}, "pipeline": {"latency_target_reduction": 0.4}}
    before = {s.name: s for s in pipeline_steps(**_args(tmp_path), latency_target=0.4, int8_latency_target=0.4)}
    after = {s.name: s for s in pipeline_steps(**_args(tmp_path), latency_target=0.4, int8_latency_target=0.3)}
    changed = config | {"pipeline": {"latency_target_reduction": 0.4, "int8_latency_target_reduction": 0.3}}
    fp32 = "prune_structured_latency"
    assert before[fp32].fingerprint(config) == after[fp32].fingerprint(changed)  # a new key stales it neither
    int8 = "prune_structured_int8"
    assert before[int8].fingerprint(config) != after[int8].fingerprint(config)  # its own target is its argv


def _args(tmp_path: Path) -> dict:
    return {"config": QUICKSTART, "run_dir": tmp_path, "sets": []}
