"""profile: results YAML with every key and the plot; FLOPs-vs-latency analysis; bad inputs."""

import re

import pytest
import yaml

import scripts.profile as profile_script
from tools.core.errors import run_cli
from tools.measure.profiling import ChannelFacts, explain, flops_vs_latency, merge_rounds


@pytest.mark.cpu_capability  # the entries' off_fast_path uses the detected fast multiple
def test_profile_two_checkpoints_writes_every_key_and_the_plot(tiny_checkpoint, pruned_checkpoint, tmp_path):
    out = tmp_path / "profile.yaml"
    profile_script.main(
        [
            "--baseline",
            str(tiny_checkpoint),
            "--pruned",
            str(pruned_checkpoint),
            "--measure-latency",
            "--batch-sizes",
            "1,4",
            "--backend",
            "both",
            "--save-results",
            str(out),
            "--set",
            "profile.repeats=5",
            "profile.warmup=1",
            "profile.num_threads=1",
        ]
    )
    results = yaml.safe_load(out.read_text())
    assert set(results) >= {"models", "flops_vs_latency", "slowest_layers", "plot", "note"}
    base, pruned = results["models"]
    for entry in (base, pruned):
        assert set(entry) >= {
            "label",
            "macs",
            "flops",
            "params",
            "size_bytes",
            "latency",
            "checkpoint",
            "channels_not_multiple_of_8",
        }
        assert entry["flops"] == 2 * entry["macs"]
        for backend in ("torch", "onnxruntime"):
            for bs in (1, 4):
                stats = entry["latency"][backend][bs]
                assert 0 < stats["median_ms"] <= stats["p90_ms"] and stats["num_threads"] == 1
    assert pruned["macs"] < 0.5 * base["macs"]
    rows = results["flops_vs_latency"]
    assert {(r["backend"], r["batch_size"]) for r in rows} == {(b, s) for b in ("torch", "onnxruntime") for s in (1, 4)}
    for r in rows:
        assert r["flops_reduction_pct"] > 50 and r["explanation"]
    assert len(results["slowest_layers"]) == 2
    assert (tmp_path / "latency_vs_macs.png").stat().st_size > 1000


def entry(label, flops, median_ms, bs=1, odd=()):
    stats = {"median_ms": median_ms, "p90_ms": median_ms * 1.05, "device": "cpu"}
    return {"label": label, "flops": flops, "latency": {"torch": {bs: stats}}, "channels_not_multiple_of_8": list(odd)}


def test_flops_vs_latency_on_crafted_entries():
    (row,) = flops_vs_latency(entry("b", 100, 10.0), entry("p", 50, 5.0))
    assert row["flops_reduction_pct"] == pytest.approx(50) and row["latency_reduction_pct"] == pytest.approx(50)
    assert row["speedup"] == pytest.approx(2.0) and row["latency_over_flops_reduction"] == pytest.approx(1.0)
    assert "compute bound" in row["explanation"]
    (row,) = flops_vs_latency(entry("b", 100, 10.0), entry("p", 40, 9.0, odd=["layer1.0.conv1"]))
    assert row["latency_over_flops_reduction"] == pytest.approx(10 / 60)
    assert "batch 1" in row["explanation"] and "multiples of 8" in row["explanation"]
    (row,) = flops_vs_latency(entry("b", 100, 10.0), entry("p", 50, 2.0))
    assert "fell more than FLOPs" in row["explanation"]


def test_explain_mentions_noise_and_gpu_launches():
    text = explain(50, 5, batch_size=256, device="cuda:0", noise=1.5)
    assert "noisy" in text and "launch" in text and "batch 256" not in text


@pytest.mark.parametrize(
    "extra,pattern",
    [
        (["--batch-sizes", "0"], r"--batch-sizes must be positive integers"),
        (["--backend", "tensorrt"], r"unknown --backend 'tensorrt'"),
        (["--set", "profile.rounds=0"], r"profile.rounds must be >= 1, got 0"),
    ],
)
def test_bad_inputs_exit_2(tiny_checkpoint, capsys, extra, pattern):
    with pytest.raises(SystemExit) as exc:
        run_cli(profile_script.main, ["--baseline", str(tiny_checkpoint), "--measure-latency", *extra])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err and re.search(pattern, err), err


def test_missing_checkpoint_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(profile_script.main, ["--baseline", str(tmp_path / "nope.pth")])
    assert exc.value.code == 2 and "nope.pth not found" in capsys.readouterr().err


def test_explain_points_onnxruntime_at_its_16_channel_blocks():
    channels = ChannelFacts(odd_16=["layer2.0.conv1"])
    text = explain(50, 10, batch_size=64, device="cpu", noise=1.0, backend="onnxruntime", channels=channels)
    assert "blocks of 16 channels" in text and "layer2.0.conv1" in text and "round_to=16" in text
    assert "blocks of 16" not in explain(
        50, 10, batch_size=64, device="cpu", noise=1.0, channels=channels
    )  # eager torch: not this cause


def test_interleaved_rounds(tiny_checkpoint, pruned_checkpoint, tmp_path):
    out = tmp_path / "profile.yaml"
    profile_script.main(
        [
            "--baseline",
            str(tiny_checkpoint),
            "--pruned",
            str(pruned_checkpoint),
            "--measure-latency",
            "--batch-sizes",
            "2",
            "--backend",
            "both",
            "--save-results",
            str(out),
            "--set",
            "profile.repeats=6",
            "profile.warmup=1",
            "profile.num_threads=1",
            "profile.rounds=3",
        ]
    )
    for entry in yaml.safe_load(out.read_text())["models"]:
        for backend in ("torch", "onnxruntime"):
            stats = entry["latency"][backend][2]
            assert stats["rounds"] == 3 and stats["repeats"] == 6 and len(stats["round_medians_ms"]) == 3
            assert stats["median_ms"] == sorted(stats["round_medians_ms"])[1]


def test_merge_rounds_uses_the_round_medians():
    rounds = [
        {
            "mean_ms": m + 0.5,
            "median_ms": m,
            "p90_ms": m + 1,
            "p99_ms": m + 2,
            "min_ms": m - 0.5,
            "batch_size": 4,
            "repeats": 10,
        }
        for m in (3.0, 1.0, 2.0)
    ]
    merged = merge_rounds(rounds)
    assert merged["median_ms"] == 2.0 and merged["min_ms"] == 0.5 and merged["p99_ms"] == 5.0
    assert merged["round_medians_ms"] == [3.0, 1.0, 2.0] and merged["repeats"] == 30 and merged["rounds"] == 3
    assert merged["throughput_ips"] == 4 * 1000.0 / 2.0 and merged["p90_ms"] == pytest.approx(2.8)
    assert merge_rounds(rounds[:1]) is rounds[0]
