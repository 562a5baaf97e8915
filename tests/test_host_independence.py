"""The suite holds on any x86 CPU: tests that read the CPU capability torch detects are marked
`cpu_capability`, .ci/run runs them again as an AVX2 CPU sees them, and the latency grid they
check follows the detected fast multiple (16 AVX-512, 8 AVX2, 4 else), never this machine's."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools.pruning import latency_target as lt

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.cpu_capability


def test_ci_runs_the_capability_tests_again_as_avx2():
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    native = [i for i, line in enumerate(lines) if "pytest -n auto --dist loadfile" in line]
    again = [
        i
        for i, line in enumerate(lines)
        if "ATEN_CPU_CAPABILITY=avx2" in line and "-m cpu_capability" in line and not line.lstrip().startswith("#")
    ]
    assert native and again and native[0] < again[0], "the avx2 run follows the native run"
    assert "cpu_capability:" in (REPO / "pyproject.toml").read_text()  # registered: no unknown-marker warning


def test_ci_treats_no_tests_collected_as_success():
    """pytest exits 5 when a selection is empty: CI passes on; any other failure stops it."""
    script = (REPO / ".ci" / "run").read_text()
    start = script.index("run_pytest() {")
    function = script[start : script.index("\n}\n", start) + 3]
    for code, expected in ((5, 0), (0, 0), (1, 1), (2, 2)):
        done = subprocess.run(["bash", "-c", f"set -euo pipefail\n{function}\nrun_pytest bash -c 'exit {code}'"])
        assert done.returncode == expected, (code, done.returncode)


def test_capability_tests_are_marked():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-m",
            "cpu_capability",
            "-p",
            "no:randomly",
            "tests/test_latency_target.py",
            "tests/test_profile.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    ids = done.stdout
    assert "test_table_is_measured_monotone_and_cached" in ids
    assert "test_profile_two_checkpoints_writes_every_key_and_the_plot" in ids
    assert "test_merge_rounds_uses_the_round_medians" not in ids  # plain arithmetic: not marked


@pytest.mark.parametrize("capability, counts", [("AVX512", [16, 32]), ("AVX2", [8, 24, 32]), ("DEFAULT", [8, 20, 32])])
def test_latency_grid_follows_the_detected_multiple(monkeypatch, tmp_path, capability, counts):
    """The grid test_table_is_measured_monotone_and_cached checks, on each CPU kind (timing faked:
    only the channel counts matter here)."""
    from tests.test_latency_target import plan_for, tiny_net

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(lt, "time_interleaved", lambda models, *a, **k: [[1.0] * 3] + [[0.5] * 3] * (len(models) - 1))
    multiple = lt.fast_multiple("torch")
    model = tiny_net()
    backend = lt.Backend("torch", (3, 32, 32), batch_size=2, threads=1, rounds=3, repeats=1)
    table = lt.channel_latency_table(
        model, torch.zeros(1, 3, 32, 32), plan_for(model, round_to=multiple), backend, levels=3
    )
    assert sorted(table.raw_saved_ms["0"]) == counts
