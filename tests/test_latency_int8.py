"""The onnxruntime-int8 latency backend (tools.pruning.latency_target, issue 32): every timed file is
a quantized one, the INT8 fast multiple is detected and recorded, an unreachable target exits 2
with one line, and one command writes the deployable model.int8.onnx with its speed-ups.

    OMP_NUM_THREADS=1 uv run pytest -q tests/test_latency_int8.py
"""

import onnx
import pytest
import torch
import yaml
from torch import nn

import scripts.prune_structured as prune_script
from tests.test_latency_target import tiny_net  # the same two-conv net the FP32 tests time
from tools.core.config import Config
from tools.core.errors import UserError, run_cli
from tools.measure import latency
from tools.pruning import latency_target as lt
from tools.pruning import structured as st
from tools.runs.prune_structured import check_structured_config

# every test here reads (or fakes) the CPU's detected fast multiple, as tests/test_latency_target.py
pytestmark = pytest.mark.cpu_capability

QDQ = {"QuantizeLinear", "DequantizeLinear"}


def plan_for(model: nn.Module, example: torch.Tensor, round_to: int) -> st.ChannelPlan:
    ignored = st.output_layer_names(model, example)
    table = st.importance_table(model, example, method="l2", ignored_layers=ignored)
    limits = st.ChannelLimits(max_pruning_ratio=0.8, round_to=round_to)
    return st.ChannelPlan(model, example, table=table, limits=limits, ignored_layers=ignored)


def fake_cpu(monkeypatch, capability: str, flags: set[str]) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(latency, "cpu_flags", lambda: flags)


def recording_runner(monkeypatch) -> list[set[str]]:
    """Replace the ONNX timing runner: record the op types of every file it is given, and time a
    fixed small amount of work instead (no timing assertion needs the real one)."""
    seen = []

    def fake(path, backend):
        seen.append({n.op_type for n in onnx.load(str(path)).graph.node})
        return lambda: sum(range(200))

    monkeypatch.setattr(lt, "_onnx_runner", fake)
    return seen


def build_table(backend: lt.Backend, tmp_path, multiple: int) -> lt.LatencyTable:
    model, example = tiny_net(), torch.zeros(1, 3, 16, 16)
    plan = plan_for(model, example, round_to=multiple)
    return lt.channel_latency_table(model, example, plan, backend, levels=2, run_file=tmp_path / lt.TABLE_FILE)


def int8_backend(**kw) -> lt.Backend:
    batches = [(torch.randn(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)) for _ in range(2)]
    return lt.Backend(lt.INT8, (3, 16, 16), batch_size=2, rounds=3, repeats=1, calibration=batches, **kw)


def test_int8_table_times_quantized_variants_only(tmp_path, monkeypatch):
    seen = recording_runner(monkeypatch)
    backend = int8_backend()
    table = build_table(backend, tmp_path, backend.fast_multiple)
    variants = 1 + sum(len(row) - 1 for row in table.raw_saved_ms.values())  # the baseline + each cut
    assert len(seen) == variants >= 3
    assert all(QDQ <= ops and "BatchNormalization" not in ops for ops in seen), seen  # QDQ, BN folded
    assert any("INT8 QDQ static quantization" in o for o in backend.optimisations)
    # the same fake on the FP32 backend sees plain FP32 graphs: the quantization is the INT8 backend's
    seen.clear()
    build_table(lt.Backend("onnxruntime", (3, 16, 16), batch_size=2, rounds=3, repeats=1), tmp_path / "fp32", 8)
    assert seen and not any(QDQ & ops for ops in seen)


def test_int8_compare_quantizes_the_dense_baseline_too(monkeypatch):
    seen = recording_runner(monkeypatch)
    model = tiny_net()
    pruned = tiny_net()
    pruned[0], pruned[1], pruned[3] = (
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.Conv2d(16, 32, 3, padding=1),
    )
    timing = lt.compare(model, pruned.eval(), int8_backend())
    assert timing.rounds == 3 and len(seen) == 2 and all(QDQ <= ops for ops in seen)


@pytest.mark.parametrize(
    "capability, flags, kernels, multiple",
    [
        ("AVX512", {"avx512f", "avx512_vnni", "amx_int8"}, "amx", 16),
        ("AVX512", {"avx512f", "avx512_vnni"}, "avx512_vnni", 16),
        ("AVX512", {"avx512f"}, "avx512", 16),
        ("AVX2", {"avx2", "avx_vnni"}, "avx_vnni", 16),
        ("AVX2", {"avx2", "avx512_vnni"}, "avx2", 16),  # ATEN_CPU_CAPABILITY=avx2 caps the tier
        ("DEFAULT", set(), "sse", 4),
    ],
)
def test_int8_fast_multiple_is_detected(monkeypatch, capability, flags, kernels, multiple):
    fake_cpu(monkeypatch, capability, flags)
    assert latency.int8_kernels() == kernels
    assert lt.fast_multiple(lt.INT8) == latency.int8_fast_multiple() == multiple


@pytest.mark.parametrize("capability, flags, multiple", [("AVX512", {"avx512_vnni"}, 16), ("DEFAULT", set(), 4)])
def test_int8_multiple_is_in_the_table_key(tmp_path, monkeypatch, capability, flags, multiple):
    fake_cpu(monkeypatch, capability, flags)
    recording_runner(monkeypatch)
    build_table(int8_backend(), tmp_path, multiple)
    key = yaml.safe_load((tmp_path / lt.TABLE_FILE).read_text())["key"]
    assert key["backend"] == lt.INT8 and key["fast_multiple"] == multiple
    assert key["int8_kernels"] == latency.int8_kernels() and key["activation_type"] == "uint8"
    assert all(c % multiple == 0 for row in key["grid"].values() for c in row)


FAST = ["--set", "train.device=cpu", "data.num_workers=0"]
INT8_RUN = [
    *FAST,
    "structured.latency.backend=onnxruntime-int8",
    "structured.latency.batch_size=4",
    "structured.latency.rounds=3",
    "structured.latency.repeats=1",
    "structured.latency.cache_dir=",
    "quantize.num_images=32",
]


def linear_table(monkeypatch):
    """A table predicting the same saving for every channel (its timing is tested above)."""

    def fake(model, example, plan, backend, **kw):
        total = sum(len(g.scores) for g in plan.groups.values())
        rows = {
            name: {k: 100.0 / total * (len(g.scores) - k) for k in range(1, len(g.scores) + 1)}
            for name, g in plan.groups.items()
        }
        return lt.LatencyTable(100.0, rows, rows, {})

    monkeypatch.setattr(lt, "channel_latency_table", fake)


def test_unreachable_int8_target_exits_2_with_the_best_reached(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    linear_table(monkeypatch)
    seen = []
    real = lt._onnx_runner
    monkeypatch.setattr(lt, "_onnx_runner", lambda p, b: seen.append(onnx.load(str(p))) or real(p, b))
    run_dir = tmp_path / "run"
    argv = ["--checkpoint", str(tiny_checkpoint), "--save-dir", str(run_dir), "--target-latency-reduction", "0.95"]
    with pytest.raises(SystemExit) as exc:
        run_cli(prune_script.main, [*argv, "--epochs", "0", *INT8_RUN, "structured.max_pruning_ratio=0.3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target latency reduction 95% is unreachable: the best measured is" in err[0], err
    assert "held by structured.max_pruning_ratio 0.3" in err[0]
    assert len(seen) == 2 and all(any(n.op_type in QDQ for n in m.graph.node) for m in seen)  # dense INT8 too
    assert not (run_dir / "metrics.yaml").exists() and not (run_dir / "model.int8.onnx").exists()


def test_bad_quantize_settings_stop_an_int8_run_before_pruning():
    cfg = Config()
    cfg.structured.target_latency_reduction = 0.5
    cfg.structured.latency.backend = lt.INT8
    cfg.quantize.calibration = "mean"
    with pytest.raises(UserError, match="unknown quantize.calibration 'mean'"):
        check_structured_config(cfg)


def test_a_misnamed_keep_fp32_layer_stops_the_run_before_pruning(tiny_checkpoint, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["--checkpoint", str(tiny_checkpoint), "--save-dir", str(run_dir), "--target-macs-reduction", "0.3"]
    with pytest.raises(SystemExit) as exc:
        run_cli(prune_script.main, [*argv, "--set", "quantize.deploy=true", "quantize.keep_fp32=[conv]"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and "quantize.keep_fp32 names 'conv'" in err
    assert not run_dir.exists()


def test_one_command_writes_the_int8_file_and_its_speedups(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    """Checkpoint -> pruned, fine-tuned, QAT-fine-tuned, quantized model.int8.onnx. The search's
    timing is faked (3-round spreads of tiny models are noise); the final file's is real."""
    fake_cpu(monkeypatch, "AVX2", {"avx2"})
    linear_table(monkeypatch)
    monkeypatch.setattr(lt, "compare", lambda *a, **k: lt.Timing(10.0, 6.9, reduction=0.31, spread=0.02, rounds=3))
    run_dir = tmp_path / "int8"
    argv = ["--checkpoint", str(tiny_checkpoint), "--save-dir", str(run_dir), "--target-latency-reduction", "0.3"]
    prune_script.main([*argv, "--epochs", "1", *INT8_RUN, "quantize.qat_epochs=1"])
    out = capsys.readouterr().out
    metrics = yaml.safe_load((run_dir / "metrics.yaml").read_text())
    int8_file = run_dir / "model.int8.onnx"
    assert int8_file.is_file() and QDQ <= {n.op_type for n in onnx.load(str(int8_file)).graph.node}
    for key in ("int8_speedup_vs_dense_fp32", "int8_speedup_vs_dense_int8"):
        assert isinstance(metrics[key], float) and metrics[key] > 0, key
    assert 0 <= metrics["int8_top1"] <= 100 and metrics["int8_file_bytes"] == int8_file.stat().st_size
    int8 = metrics["int8"]
    assert int8["method"] == "qat" and int8["qat_epochs"] == 1 and (run_dir / "qat").is_dir()
    assert all(int8[k] > 0 for k in ("int8_latency_ms", "dense_fp32_latency_ms", "dense_int8_latency_ms"))
    assert metrics["latency"]["fast_multiple"] == 16 and metrics["latency"]["int8_kernels"] == "avx2"
    assert "INT8 speed-up" in out and "x vs dense FP32" in out and "vs dense INT8" in out
    # where the time goes: the four files profiled per operator, the INT8 ones running INT8 kernels
    ops = {name: {r["op_type"] for r in rows} for name, rows in int8["op_profile"].items()}
    assert set(ops) == {"pruned_int8", "pruned_fp32", "dense_int8", "dense_fp32"} and "where the time goes" in out
    assert "QLinearConv" in ops["pruned_int8"] & ops["dense_int8"] and "QLinearConv" not in ops["dense_fp32"]
    shapes = {name: {r["op_type"] for r in rows} for name, rows in int8["conv_profile"].items()}
    assert set(shapes) == set(ops) and all(" ch, " in s for names in shapes.values() for s in names)
    assert "convolutions by shape" in out


def test_a_macs_target_with_the_int8_report_writes_the_int8_file_too(tiny_checkpoint, tmp_path, monkeypatch):
    """structured.latency.report times a MACs-pruned model on the backend; on onnxruntime-int8 the
    run ends with the deployable file as well (PTQ: quantize.qat_epochs 0)."""
    fake_cpu(monkeypatch, "AVX512", {"avx512f", "avx512_vnni"})
    monkeypatch.setattr(lt, "compare", lambda *a, **k: lt.Timing(10.0, 7.0, reduction=0.3, spread=0.02, rounds=3))
    run_dir = tmp_path / "macs"
    argv = ["--checkpoint", str(tiny_checkpoint), "--save-dir", str(run_dir), "--target-macs-reduction", "0.3"]
    prune_script.main([*argv, "--epochs", "0", *INT8_RUN, "structured.latency.report=true"])
    metrics = yaml.safe_load((run_dir / "metrics.yaml").read_text())
    assert metrics["latency"]["fast_multiple"] == 16 and metrics["latency"]["int8_kernels"] == "avx512_vnni"
    assert metrics["int8"]["method"] == "ptq" and (run_dir / "model.int8.onnx").is_file()
    assert metrics["int8_speedup_vs_dense_int8"] > 0 and not (run_dir / "qat").exists()


@pytest.mark.parametrize(
    "target",
    [
        ["--target-macs-reduction", "0.3"],
        ["--target-latency-reduction", "0.3"],
    ],
    ids=["macs", "fp32_latency"],
)
def test_quantize_deploy_ends_any_run_with_the_int8_file(target, tiny_checkpoint, tmp_path, monkeypatch):
    """quantize.deploy: a MACs- or FP32-latency-targeted run ends with model.int8.onnx and the same
    figures as an INT8-targeted one, so the deployments compare (the FP32 search's timing faked)."""
    linear_table(monkeypatch)
    monkeypatch.setattr(lt, "compare", lambda *a, **k: lt.Timing(10.0, 7.0, reduction=0.3, spread=0.02, rounds=3))
    run_dir = tmp_path / "deploy"
    argv = ["--checkpoint", str(tiny_checkpoint), "--save-dir", str(run_dir), *target, "--epochs", "0"]
    timing = ["structured.latency.batch_size=4", "structured.latency.rounds=3", "structured.latency.repeats=1"]
    fp32 = ["structured.latency.backend=onnxruntime"]  # read by the latency target only
    deploy = ["quantize.num_images=32", "quantize.deploy=true", "quantize.keep_fp32=[conv1]"]
    prune_script.main([*argv, *FAST, *timing, *fp32, *deploy])
    metrics = yaml.safe_load((run_dir / "metrics.yaml").read_text())
    if "--target-latency-reduction" in target:
        assert metrics["latency"]["backend"] == "onnxruntime" and metrics["latency_reduction_pct"] == 30.0
    graph = onnx.load(str(run_dir / "model.int8.onnx")).graph
    assert QDQ <= {n.op_type for n in graph.node}
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized = {n.name: n.input[0] in dequantized for n in graph.node if n.op_type == "Conv"}
    assert quantized.pop("/conv1/Conv") is False and all(quantized.values())  # the stem kept FP32, as asked
    assert metrics["int8"]["rounds"] == 3 and metrics["int8_speedup_vs_dense_fp32"] > 0
    assert metrics["int8_drop"] == pytest.approx(metrics["baseline_top1"] - metrics["int8_top1"])
