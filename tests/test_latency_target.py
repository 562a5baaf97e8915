"""Latency targets (tools.pruning.latency_target): the measured table, the greedy allocation on the
detected block multiple, BatchNorm folding, and the bad inputs (unreachable target, missing
backend, exclusive targets) exiting 2 with one line."""

import pytest
import torch
import yaml
from torch import nn

import scripts.prune_structured as prune_script
from tools.core.config import Config
from tools.core.errors import UserError, run_cli
from tools.measure.latency import fold_batchnorm
from tools.modeling.registry import build_model
from tools.pruning import latency_target as lt
from tools.pruning import structured as st
from tools.runs.prune_structured import check_structured_config

# every test here reads (or fakes) the CPU's detected fast multiple: .ci/run runs them again under
# ATEN_CPU_CAPABILITY=avx2 to prove they hold on another CPU
pytestmark = pytest.mark.cpu_capability

FAST = ["--set", "train.device=cpu", "data.num_workers=0"]


def tiny_net() -> nn.Module:
    """Two 32-channel convs at 32 px: cutting the first to 8 channels saves most of the second's
    work, far above timing noise."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    ).eval()


def plan_for(model: nn.Module, round_to: int, max_pruning_ratio: float = 0.8) -> st.ChannelPlan:
    example = torch.zeros(1, 3, 32, 32)
    ignored = st.output_layer_names(model, example)
    table = st.importance_table(model, example, method="l2", ignored_layers=ignored)
    limits = st.ChannelLimits(max_pruning_ratio=max_pruning_ratio, round_to=round_to)
    return st.ChannelPlan(model, example, table=table, limits=limits, ignored_layers=ignored)


def test_table_is_measured_monotone_and_cached(tmp_path, monkeypatch, capsys):
    # the grid is in blocks of the multiple torch reports for this CPU (16 AVX-512, 8 AVX2, 4 else),
    # so the expectation is derived from it; .ci/run repeats this under ATEN_CPU_CAPABILITY=avx2
    multiple = lt.fast_multiple("torch")
    model, example = tiny_net(), torch.zeros(1, 3, 32, 32)
    plan = plan_for(model, round_to=multiple)
    backend = lt.Backend("torch", (3, 32, 32), batch_size=8, threads=1, rounds=4, repeats=2)
    table = lt.channel_latency_table(
        model, example, plan, backend, levels=3, cache_dir=tmp_path / "cache", run_file=tmp_path / "run" / lt.TABLE_FILE
    )
    first = table.raw_saved_ms["0"]
    floor = -(-7 // multiple) * multiple  # ceil(32 * (1 - max_pruning_ratio 0.8)) = 7, up to a block
    assert min(first) == floor and first[32] == 0.0 and all(c % multiple == 0 for c in first)
    assert len(first) == min(3, len(range(floor, 33, multiple)))  # at most `levels`, both ends
    # no assertion on the measured times themselves: a shared CPU makes them noise
    for row in table.saved_ms.values():  # fewer channels never predicted slower
        kept = sorted(row)
        assert all(row[a] >= row[b] for a, b in zip(kept, kept[1:]))
    assert (tmp_path / "run" / lt.TABLE_FILE).is_file() and len(list((tmp_path / "cache").iterdir())) == 1

    monkeypatch.setattr(lt, "time_interleaved", lambda *a, **k: pytest.fail("a cached table was timed again"))
    again = lt.channel_latency_table(model, example, plan, backend, levels=3, cache_dir=tmp_path / "cache")
    assert again.saved_ms == table.saved_ms and "reused" in capsys.readouterr().out
    other = lt.Backend("torch", (3, 32, 32), batch_size=4, threads=1)  # another batch: another table
    with pytest.raises(pytest.fail.Exception):
        lt.channel_latency_table(model, example, plan, other, levels=3, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("capability, multiple", [("AVX512", 16), ("AVX2", 8), ("DEFAULT", 4)])
def test_fast_multiple_is_detected(monkeypatch, capability, multiple):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert lt.fast_multiple("onnxruntime") == lt.fast_multiple("torch") == multiple
    assert lt.fast_multiple("cuda") == 8


def synthetic_table(plan: st.ChannelPlan, saves_ms: dict[str, float]) -> lt.LatencyTable:
    """A linear table: each group saves saves_ms[name] per channel removed."""
    rows = {
        name: {k: saves_ms[name] * (len(g.scores) - k) for k in range(1, len(g.scores) + 1)}
        for name, g in plan.groups.items()
    }
    return lt.LatencyTable(100.0, rows, rows, {})


@pytest.mark.parametrize("capability", ["AVX512", "AVX2"])
def test_allocation_lands_on_the_detected_multiple_and_follows_the_time(monkeypatch, capability):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    multiple = lt.fast_multiple("onnxruntime")
    model = build_model("resnet20", num_classes=4, image_size=32).eval()
    plan = plan_for(model, round_to=multiple)
    # stage 3 groups save time, the rest is memory bound here: only stage 3 may lose channels
    table = synthetic_table(plan, {name: (1.0 if name.startswith("layer3") else 0.0) for name in plan.groups})
    alloc = lt.allocate(plan, table, goal=0.3, by="per_ms")
    assert alloc.predicted >= 0.3 and not alloc.exhausted
    for name, removed in alloc.counts.items():
        kept = len(plan.groups[name].scores) - removed
        assert kept % multiple == 0, (name, kept)
        assert removed == 0 or name.startswith("layer3"), name
    pruned = st.apply_plan(model, torch.zeros(1, 3, 32, 32), plan, alloc.counts)
    assert pruned > 0 and all(c % multiple == 0 for n, c in st.channel_counts(model).items() if n != "fc")


def test_importance_allocation_keeps_the_ranking_and_stops_on_the_time():
    model = build_model("resnet20", num_classes=4, image_size=32).eval()
    plan = plan_for(model, round_to=8)
    # all the time in stage 3: per_ms cuts only there, importance cuts where the scores are lowest
    table = synthetic_table(plan, {name: (1.0 if name.startswith("layer3") else 0.0) for name in plan.groups})
    alloc = lt.allocate(plan, table, goal=0.3)  # by="importance", the default
    assert 0.3 <= alloc.predicted < 0.3 + 8 / table.baseline_ms  # stops at the first block past the goal
    taken = {name: plan.block_score(name, 0, plan.next_count(name, 0)) for name, n in alloc.counts.items() if n}
    spared = {
        name: plan.block_score(name, 0, plan.next_count(name, 0))
        for name, n in alloc.counts.items()
        if not n and plan.next_count(name, 0) is not None
    }
    assert any(not name.startswith("layer3") for name in taken)  # removed though it saves no time
    assert max(taken.values()) <= min(spared.values())  # no untouched group had a cheaper first block
    assert lt.allocate(plan, table, goal=0.3, by="per_ms").counts != alloc.counts


def test_batchnorm_folding_keeps_outputs():
    model = build_model("resnet20", num_classes=10, image_size=32)
    for m in model.modules():  # trained-looking statistics, so folding has something to fold
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.running_mean, -0.5, 0.5), nn.init.uniform_(m.running_var, 0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5), nn.init.uniform_(m.bias, -0.2, 0.2)
    model.eval()
    folded, optimisations = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert "BatchNorm folded into convs (torch.fx)" in optimisations
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5, rtol=0)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the caller's model is untouched


def linear_table(monkeypatch):
    """Skip the table's timing in CLI runs (test_table_is_measured_monotone_and_cached times one):
    every channel removed is predicted to save the same time."""

    def fake(model, example, plan, backend, **kw):
        total = sum(len(g.scores) for g in plan.groups.values())
        return synthetic_table(plan, {name: 100.0 / total for name in plan.groups})

    monkeypatch.setattr(lt, "channel_latency_table", fake)


LAT_RUN = [
    "--epochs",
    "0",
    *FAST,
    "structured.latency.batch_size=4",
    "structured.latency.rounds=3",
    "structured.latency.repeats=1",
    "structured.latency.cache_dir=",
]


def test_unreachable_target_exits_2_with_the_best_reached(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    linear_table(monkeypatch)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        run_cli(
            prune_script.main,
            [
                "--checkpoint",
                str(tiny_checkpoint),
                "--save-dir",
                str(run_dir),
                "--target-latency-reduction",
                "0.95",
                *LAT_RUN,
                "structured.max_pruning_ratio=0.3",
            ],
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target latency reduction 95% is unreachable: the best measured is" in err[0], err
    assert "held by structured.max_pruning_ratio 0.3" in err[0]
    assert not (run_dir / "metrics.yaml").exists() and not (run_dir / "pruned_model.pth").exists()


def test_latency_target_run_records_predicted_and_measured(tiny_checkpoint, tmp_path, monkeypatch):
    """The run's plumbing, timed deterministically (a shared CPU makes 3-round spreads of tiny
    models arbitrary): compare answers a 31% reduction with a 2-point spread."""
    linear_table(monkeypatch)
    monkeypatch.setattr(lt, "compare", lambda *a, **k: lt.Timing(10.0, 6.9, reduction=0.31, spread=0.02, rounds=3))
    run_dir = tmp_path / "lat"
    prune_script.main(
        [
            "--checkpoint",
            str(tiny_checkpoint),
            "--save-dir",
            str(run_dir),
            "--target-latency-reduction",
            "0.3",
            *LAT_RUN,
        ]
    )
    metrics = yaml.safe_load((run_dir / "metrics.yaml").read_text())
    lat = metrics["latency"]
    assert lat["measured_reduction_pct"] == pytest.approx(31) and lat["spread_pts"] == pytest.approx(2)
    assert metrics["latency_reduction_pct"] == lat["measured_reduction_pct"] and len(lat["attempts"]) == 1
    assert metrics["predicted_latency_reduction_pct"] == pytest.approx(30, abs=3)  # linear table: lands just past 30%
    assert metrics["target_macs_reduction"] is None and lat["fast_multiple"] == lt.fast_multiple("torch")
    assert all(c["after"] % lat["fast_multiple"] == 0 for n, c in metrics["channels"].items() if n != "fc")


def test_bad_latency_settings_are_one_line_errors(monkeypatch):
    cfg = Config()
    cfg.structured.target_latency_reduction = 0.5
    cfg.structured.target_macs_reduction = 0.5
    with pytest.raises(UserError, match="are exclusive"):
        check_structured_config(cfg)
    cfg.structured.target_macs_reduction = 0.0
    cfg.structured.latency.backend = "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="backend cuda needs a CUDA GPU"):
        check_structured_config(cfg)
    cfg.structured.latency.backend = "tensorrt"
    with pytest.raises(UserError, match="unknown structured.latency.backend 'tensorrt'"):
        check_structured_config(cfg)
    cfg.structured.latency.backend, cfg.structured.latency.allocation = "torch", "knapsack"
    with pytest.raises(
        UserError, match="unknown structured.latency.allocation 'knapsack'; choose one of: importance, per_ms"
    ):
        check_structured_config(cfg)


def test_noisy_timing_refuses_to_call_the_target_met(monkeypatch):
    model = tiny_net()
    backend = lt.Backend("torch", (3, 32, 32), batch_size=2, rounds=3, repeats=1)
    noisy = lt.Timing(10.0, 5.0, reduction=0.5, spread=0.2, rounds=3)
    monkeypatch.setattr(lt, "compare", lambda *a, **k: noisy)
    found = lt.LatencySearch(model, {}, 0.5, noisy, [])
    with pytest.raises(UserError, match=r"timing spread \+-20.0 pts is larger than the tolerance \+-5.0 pts"):
        lt._confirmed(found, model, backend, tolerance=0.05)


def test_explanation_names_layers_off_the_fast_path_with_the_count_they_need(monkeypatch):
    from tools.measure.profiling import ChannelFacts, explain, off_fast_path

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    model = tiny_net()
    model[0], model[3] = nn.Conv2d(3, 24, 3, padding=1), nn.Conv2d(24, 24, 3, padding=1)
    off = off_fast_path(model)
    assert off["multiple"] == 16 and [r["layer"] for r in off["layers"]] == ["0", "3"]
    text = explain(
        50,
        10,
        batch_size=64,
        device="cpu",
        noise=1.0,
        backend="onnxruntime",
        channels=ChannelFacts(odd_8=["0"], off_fast_path=off),
    )
    assert "0 has 3 -> 24 channels, needs 3 -> 32" in text and "3 has 24 -> 24 channels, needs 32 -> 32" in text
    assert "16-channel blocks" in text and "multiples of 8" not in text


def test_latency_report_applies_only_where_latency_can_change():
    from tools.core.config import Config
    from tools.runs.prune_structured import reports_latency

    s = Config().structured
    s.latency.report = True
    assert reports_latency(s)
    s.granularity = "intra_kernel"  # masks: the dense kernels run as before, nothing to time
    assert not reports_latency(s)
    s.granularity, s.iterative_steps = "channel", 2
    assert not reports_latency(s)
