"""Sweep grid, Pareto frontier on crafted points, and a 4-point sweep that resumes."""

import re

import pytest
import yaml

import scripts.sweep as sweep_script
import tools.workflows.sweep as sweep_workflow
from tools.core.errors import UserError, run_cli
from tools.reports.comparison import pareto_front
from tools.workflows.sweep import expand_grid, point_name, read_sweep


def test_expand_grid_order_and_names():
    points = expand_grid({"a.x": [1, 2], "b.y": ["p", "q"]})
    assert points == [{"a.x": 1, "b.y": "p"}, {"a.x": 1, "b.y": "q"}, {"a.x": 2, "b.y": "p"}, {"a.x": 2, "b.y": "q"}]
    assert point_name({"unstructured.sparsity": 0.5, "finetune.lr": 0.01}) == "sparsity0.5_lr0.01"


def test_pareto_front_on_crafted_points():
    rows = [
        {"point": "a", "top1": 90, "macs": 100},
        {"point": "b", "top1": 85, "macs": 50},
        {"point": "c", "top1": 80, "macs": 60},  # dominated by b
        {"point": "d", "top1": 90, "macs": 120},  # dominated by a (same accuracy, more cost)
        {"point": "e", "top1": 70, "macs": 10},
        {"point": "f", "top1": None, "macs": 5},  # incomplete: ignored
    ]
    assert [r["point"] for r in pareto_front(rows, maximize="top1", minimize="macs")] == ["e", "b", "a"]


def test_read_sweep_errors(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("script: train\nconfig: x.yaml\ngrid: {train.lr: [0.1]}\ngird: 1\n")
    with pytest.raises(UserError, match="unknown key gird"):
        read_sweep(bad)
    bad.write_text("script: prune\nconfig: x.yaml\ngrid: {train.lr: [0.1]}\n")
    with pytest.raises(UserError, match="unknown script 'prune'"):
        read_sweep(bad)
    with pytest.raises(UserError, match="not found"):
        read_sweep(tmp_path / "missing.yaml")


def test_four_point_sweep_resumes_after_interruption(tmp_path, monkeypatch, capsys):
    from conftest import ROOT

    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "script": "train",
                "config": str(ROOT / "cfgs" / "quickstart.yaml"),
                "grid": {"train.lr": [0.05, 0.1], "train.nesterov": [True, False]},
                "metric": "test_top1",
                "cost": "params",
            }
        )
    )
    tiny = [
        "data.synthetic.train_size=64",
        "data.synthetic.test_size=32",
        "data.synthetic.resolution=8",
        "data.synthetic.num_classes=3",
        "train.epochs=1",
        "train.device=cpu",
        "train.num_threads=1",
    ]
    out = tmp_path / "out"
    real = sweep_workflow.run_point
    calls = []

    def interrupted(cmd, run_dir):  # the third point "dies": it leaves a folder without metrics
        calls.append(run_dir.name)
        if len(calls) == 3:
            run_dir.mkdir(parents=True, exist_ok=True)
            return run_dir, 137
        return real(cmd, run_dir)

    monkeypatch.setattr(sweep_workflow, "run_point", interrupted)
    with pytest.raises(SystemExit) as exc:
        run_cli(sweep_script.main, ["--sweep", str(sweep), "--save-dir", str(out), "--workers", "1", "--set", *tiny])
    assert exc.value.code == 2 and "1 sweep point(s) failed" in capsys.readouterr().err
    assert len(list(out.glob("*/metrics.yaml"))) == 3

    calls.clear()
    monkeypatch.setattr(sweep_workflow, "run_point", lambda cmd, d: (calls.append(d.name), real(cmd, d))[1])
    sweep_script.main(["--sweep", str(sweep), "--save-dir", str(out), "--workers", "2", "--set", *tiny])
    assert len(calls) == 1  # only the interrupted point ran again
    result = yaml.safe_load((out / "sweep.yaml").read_text())
    assert len(result["rows"]) == 4 and result["pareto"]
    assert all(re.fullmatch(r"lr0\.\d+_nesterov(True|False)", r["point"]) for r in result["rows"])
    assert (out / "pareto.png").stat().st_size > 1000 and (out / "sweep.csv").is_file()
