"""scripts.prune_at_init and scripts.at_init_report end to end on tiny synthetic data."""

import csv
import re
from pathlib import Path

import pytest
import torch
import yaml

import scripts.at_init_report as report_script
import scripts.prune_at_init as at_init_script
from tools.core.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--config",
    str(ROOT / "cfgs" / "at_init_quickstart.yaml"),
    "--set",
    "data.synthetic.train_size=64",
    "data.synthetic.test_size=32",
    "data.synthetic.resolution=8",
    "data.synthetic.num_classes=4",
    "data.batch_size=32",
    "data.eval_batch_size=32",
    "train.device=cpu",
    "train.deterministic=true",
    "pai.prune_epochs=5",
    "pai.prune_images=16",
    "pai.post_epochs=1",
]


def read_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("pai") / "grid"
    at_init_script.main(
        TINY
        + [
            "--pruner-list",
            "rand,mag,snip,grasp,synflow",
            "--compression-list",
            "0.5,2",
            "--save-trace",
            "--save-dir",
            str(run_dir),
        ]
    )
    return run_dir


def test_singleshot_grid_writes_rows_figures_and_exact_densities(grid_run):
    rows = read_rows(grid_run)
    assert [(r["pruner"], float(r["compression"])) for r in rows] == [
        (p, c) for c in (0.5, 2.0) for p in ("rand", "mag", "snip", "grasp", "synflow")
    ]
    for r in rows:
        kept, total = int(r["remaining_params"]), int(r["prunable_params"])
        assert kept == int(10 ** -float(r["compression"]) * total + 0.5)
        assert float(r["density"]) + float(r["sparsity"]) == pytest.approx(1.0)
        assert int(r["dense_flops"]) == 2 * int(r["dense_macs"]) and int(r["nonzero_flops"]) == 2 * int(
            r["nonzero_macs"]
        )
        assert int(r["nonzero_macs"]) < int(r["dense_macs"])
        assert 0 <= float(r["top1"]) <= float(r["top5"]) <= 100 and float(r["inference_time_s"]) > 0
        assert float(r["train_wall_time_s"]) > 0 and float(r["peak_memory_mib"]) > 0
        assert r["memory_kind"] == "cpu_peak_rss_process" and r["amp"] == "none"
        assert 0 < float(r["conv_time_ms"]) <= float(r["step_time_ms"])
        point = grid_run / f"{r['pruner']}_c{float(r['compression']):g}"
        for name in ("log.csv", "pruned_model.pth", "layer_density.csv", "trace.json", "best_model.pth"):
            assert (point / name).is_file(), (point, name)
    for name in (
        "config.yaml",
        "start_model.pth",
        "results.yaml",
        "report.md",
        "accuracy_vs_compression.png",
        "inference_time_vs_compression.png",
        "flops_vs_compression.png",
    ):
        assert (grid_run / name).is_file(), name
    results = yaml.safe_load((grid_run / "results.yaml").read_text())
    assert results["points"][0]["layers"][0]["name"] == "conv1" and "density" in results["points"][0]["layers"][0]


def test_pruned_model_holds_the_masks_as_exact_zeros(grid_run):
    ckpt = torch.load(grid_run / "synflow_c2" / "pruned_model.pth", weights_only=False)
    state = ckpt["model"]
    assert not any(k.endswith(("_orig", "_mask")) for k in state)  # plain weights: loads anywhere
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() > 1]
    kept = sum(int(torch.count_nonzero(w)) for w in weights)
    assert kept == int(0.01 * sum(w.numel() for w in weights) + 0.5)


def test_every_pruner_starts_from_the_same_initial_weights(grid_run):
    start = torch.load(grid_run / "start_model.pth", weights_only=False)["model"]
    torch.manual_seed(0)
    from tools.modeling.registry import build_model

    fresh = build_model("resnet20", num_classes=4, image_size=8).state_dict()
    assert all(torch.equal(start[k], fresh[k]) for k in fresh)


def test_report_tables_and_histograms(grid_run, tmp_path, capsys):
    report_script.main([str(grid_run), "--compression", "2", "--histogram", "synflow:2", "--out", str(tmp_path)])
    text = (tmp_path / "report_all.md").read_text()
    assert "density 0.01 of the prunable weights kept, sparsity 0.99" in text
    header = re.search(r"\| data \| model \| experiment \| rand \| mag \| snip \| grasp \| synflow \|", text)
    assert header, text[:500]
    assert "| synthetic | resnet20 | singleshot |" in text
    assert "test-set inference (s)" in text and "non-zero FLOPs" in text and "peak memory (MiB)" in text
    assert "conv share (%)" in text
    assert (tmp_path / "weights_synflow_c2.png").is_file()
    assert "Density of the convs of layer1.0" in text and "| layer1.0.conv1 |" in text


def test_multishot_rewinds_to_the_initial_weights(tmp_path):
    run_dir = tmp_path / "multi"
    at_init_script.main(
        TINY
        + [
            "--experiment",
            "multishot",
            "--pruner",
            "mag",
            "--compression",
            "1",
            "--level-list",
            "1,2",
            "--pre-epochs",
            "1",
            "--post-epochs",
            "0",
            "--model",
            "fc",
            "--save-dir",
            str(run_dir),
        ]
    )
    rows = read_rows(run_dir)
    assert [(r["pruner"], r["level"]) for r in rows] == [("mag", "1"), ("mag", "2")]
    init = torch.load(run_dir / "start_model.pth", weights_only=False)["model"]
    for level in (1, 2):
        point = run_dir / f"mag_c1_L{level}"
        state = torch.load(point / "pruned_model.pth", weights_only=False)["model"]
        for key in ("fc1.weight", "fc2.weight", "fc3.weight"):
            kept = state[key] != 0
            torch.testing.assert_close(state[key], init[key] * kept)  # no post-training: the rewound init, masked
        assert (point / "level1_pretrain" / "log.csv").is_file()
        assert (point / f"level{level}_pretrain" / "log.csv").is_file()


def run_exit_code(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    return exc.value.code, capsys.readouterr().err.strip()


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    cases = [
        (
            at_init_script.main,
            TINY + ["--pruner-list", "rand,snipp"],
            r"unknown pruner 'snipp' \(did you mean 'snip'\?\)",
        ),
        (
            at_init_script.main,
            TINY + ["--compression", "-1"],
            r"pai.compressions\[0\] must be >= 0 .*got -1.0 in command-line flags",
        ),
        (
            at_init_script.main,
            TINY + ["--compression-list", "0.5,x"],
            r"--compression-list must be a comma-separated list",
        ),
        (
            at_init_script.main,
            TINY + ["--experiment", "multishot", "--level-list", "0"],
            r"pai.levels\[0\] must be >= 1",
        ),
        (at_init_script.main, TINY + ["--set", "pai.scope=layer"], r"unknown scope 'layer'"),
        (at_init_script.main, TINY + ["--set", "pai.prune_epochs=0"], r"pai.prune_epochs must be >= 1"),
        (report_script.main, [str(tmp_path / "nothing")], r"results.yaml not found"),
    ]
    for main, argv, pattern in cases:
        code, err = run_exit_code(main, argv, capsys)
        assert code == 2, (argv, err)
        assert "\n" not in err and "Traceback" not in err, err
        assert re.search(pattern, err), (pattern, err)


def test_report_rejects_a_missing_grid_point(grid_run, capsys):
    code, err = run_exit_code(
        report_script.main, [str(grid_run), "--histogram", "synflow:3", "--out", str(grid_run / "r")], capsys
    )
    assert code == 2 and "no run synflow:3" in err
    code, err = run_exit_code(report_script.main, [str(grid_run), "--histogram", "synflow"], capsys)
    assert code == 2 and "PRUNER:COMPRESSION" in err
