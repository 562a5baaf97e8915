"""Without uv: the benchmark runner and scripts run as plain `python -m` (issue 19), and the wheel helper.

uv run pytest tests/test_offline.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from test_packed import make_image_tree

import scripts.wheels as wheels_script
import tools.core.offline as offline
from tools.core.errors import UserError


def env_without_uv() -> dict[str, str]:
    """This environment less uv: its folder off PATH, its variables gone (the interpreter is
    called by its full path, sys.executable, as a plain Python on a GPU node would be)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV") and k != "VIRTUAL_ENV"}
    env["PATH"] = os.pathsep.join(
        d for d in env.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "uv").exists()
    )
    assert shutil.which("uv", path=env["PATH"]) is None
    return env


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env_without_uv(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_pack_data_and_a_benchmark_train_row_run_without_uv(tmp_path):
    pack = tmp_path / "tiny.pack"
    run_module("scripts.pack_data", str(make_image_tree(tmp_path / "imgs")), str(pack))
    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    row = {
        "bench": {"script": "train", "table": "tiny", "expected_min": 1.0},
        "data": {
            "name": "packed",
            "root": str(pack),
            "image_size": 16,
            "batch_size": 8,
            "eval_batch_size": 8,
            "num_workers": 0,
            "cache_dir": str(tmp_path / "cache"),
        },
        "model": {"name": "resnet20"},
        "train": {"epochs": 1, "device": "cpu", "num_threads": 1},
    }
    (bench_dir / "tiny_packed.yaml").write_text(yaml.safe_dump(row))
    results, doc = tmp_path / "results", tmp_path / "benchmarks.md"
    proc = run_module(
        "scripts.benchmark",
        "--run",
        "all",
        "--budget-min",
        "30",
        "--bench-dir",
        str(bench_dir),
        "--results",
        str(results),
        "--doc",
        str(doc),
    )
    assert "expected 1.0 min (estimate" in proc.stdout  # the runner ran the train script as a child process
    record = yaml.safe_load((results / "tiny_packed" / "benchmark.yaml").read_text())
    assert record["script_command"].startswith("python -m scripts.train --config")
    assert yaml.safe_load((results / "tiny_packed" / "metrics.yaml").read_text())["epochs"] == 1
    assert "| tiny_packed |" in doc.read_text()


def test_locked_wheel_versions_and_the_download_command(tmp_path):
    versions = offline.locked_versions(ROOT / "uv.lock", offline.WHEELS)
    assert set(versions) == {"torch-pruning", "thop"} and all(versions.values())
    command = offline.download_command(versions, tmp_path)
    assert command[:4] == [sys.executable, "-m", "pip", "download"] and "--no-deps" in command
    assert f"torch-pruning=={versions['torch-pruning']}" in command
    with pytest.raises(UserError, match="pins no nothing-like-this"):
        offline.locked_versions(ROOT / "uv.lock", ("nothing-like-this",))


def test_check_names_what_is_missing_and_old_torch(monkeypatch, capsys):
    assert [offline.torch_version_ok(v) for v in ("2.3.1", "2.4.0+cu121", "2.11.0", "10.0")] == [
        False,
        True,
        True,
        True,
    ]
    monkeypatch.setattr(offline, "MODULES", {"json": ("json", "x"), "no_such_module_here": ("nope-dist", "y")})
    with pytest.raises(UserError, match="lacks nope-dist") as err:
        wheels_script.main(["--check"])
    assert "\n" not in str(err.value) and ".whl/*.whl" in str(err.value)
    out = capsys.readouterr().out
    assert "ok       json" in out and "MISSING  nope-dist" in out
