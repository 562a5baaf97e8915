"""train and eval end to end on tiny synthetic data: learning, exact resume, outputs, bad inputs."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import scripts.eval as eval_script
import scripts.train as train_script
import tools.training.fit
from tools.core.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "--config",
    str(ROOT / "cfgs" / "quickstart.yaml"),
    "--set",
    "data.name=synthetic",
    "data.synthetic.train_size=256",
    "data.synthetic.test_size=128",
    "data.synthetic.resolution=16",
    "data.synthetic.num_classes=4",
    "data.batch_size=64",
    "model.name=resnet20",
    "train.epochs=2",
    "train.lr=0.05",
    "train.scheduler=cosine",
    "train.deterministic=true",
    "train.device=cpu",
    "data.num_workers=0",
    "output.root=" + str(ROOT / "results" / "tests"),
]


def train(tmp_path: Path, name: str, *extra: str) -> Path:
    run_dir = tmp_path / name
    train_script.main(TINY + list(extra) + ["--save-dir", str(run_dir)])
    return run_dir


def run_exit_code(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    err = capsys.readouterr().err.strip()
    return exc.value.code, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("runs"), "base")


def test_train_writes_every_artifact(trained):
    for name in ("config.yaml", "metrics.yaml", "log.csv", "best_model.pth", "last.pth"):
        assert (trained / name).is_file(), name
    assert any((trained / "logs").iterdir()), "TensorBoard events"
    metrics = yaml.safe_load((trained / "metrics.yaml").read_text())
    for key in (
        "best_val_top1",
        "final_val_top1",
        "test_top1",
        "test_top5",
        "macs",
        "flops",
        "params",
        "epochs",
        "wall_time_s",
        "device",
    ):
        assert key in metrics, key
    assert metrics["flops"] == 2 * metrics["macs"] and metrics["epochs"] == 2
    last = torch.load(trained / "last.pth", weights_only=False)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "config", "metrics"} <= set(last)
    assert last["epoch"] == 2 and last["config"]["model"]["name"] == "resnet20"


def test_one_epoch_lowers_the_loss(tmp_path):
    run_dir = train(tmp_path, "one", "--set", "train.epochs=1")
    ckpt = torch.load(run_dir / "last.pth", weights_only=False)
    from datasets import build_data
    from tools.core.config import config_from_dict
    from tools.modeling.registry import build_model
    from tools.training.engine import evaluate

    cfg = config_from_dict(ckpt["config"])
    data = build_data(cfg.data, seed=cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    fresh = build_model("resnet20", num_classes=4, image_size=16)
    before = evaluate(fresh, data.train, device=torch.device("cpu"))["loss"]
    fresh.load_state_dict(ckpt["model"])
    after = evaluate(fresh, data.train, device=torch.device("cpu"))["loss"]
    assert after < before


def test_killed_and_resumed_equals_uninterrupted(tmp_path, monkeypatch, trained):
    real = tools.training.fit.train_one_epoch
    calls = {"n": 0}

    def dies_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed mid-epoch, after epoch 1's last.pth
        return real(*args, **kwargs)

    monkeypatch.setattr(tools.training.fit, "train_one_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "killed")
    assert torch.load(tmp_path / "killed" / "last.pth", weights_only=False)["epoch"] == 1
    monkeypatch.setattr(tools.training.fit, "train_one_epoch", real)
    train_script.main(["--resume", str(tmp_path / "killed" / "last.pth")])

    resumed = torch.load(tmp_path / "killed" / "last.pth", weights_only=False)
    uninterrupted = torch.load(trained / "last.pth", weights_only=False)
    assert resumed["epoch"] == 2
    for key, value in uninterrupted["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    log = (tmp_path / "killed" / "log.csv").read_text().splitlines()
    assert len(log) == 3  # header + one row per epoch, no duplicate from the killed epoch


def test_saved_config_reproduces_the_run(tmp_path, trained):
    again = tmp_path / "again"
    train_script.main(["--config", str(trained / "config.yaml"), "--save-dir", str(again)])
    a = torch.load(trained / "last.pth", weights_only=False)["model"]
    b = torch.load(again / "last.pth", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_eval_writes_expected_keys(tmp_path, trained):
    out = tmp_path / "eval"
    eval_script.main(
        [
            "--checkpoint",
            str(trained / "best_model.pth"),
            "--save-dir",
            str(out),
            "--measure-latency",
            "--batch-sizes",
            "1,4",
            "--set",
            "profile.repeats=3",
            "profile.warmup=1",
        ]
    )
    report = yaml.safe_load((out / "eval_metrics.yaml").read_text())
    for key in (
        "top1",
        "top5",
        "loss",
        "macs",
        "flops",
        "params",
        "nonzero_macs",
        "nonzero_params",
        "weight_sparsity",
        "size_bytes",
        "checkpoint_size_bytes",
        "latency",
        "latency_ms",
    ):
        assert key in report, key
    assert set(report["latency"]) == {1, 4}
    assert report["latency"][4]["throughput_ips"] > 0
    metrics = yaml.safe_load((trained / "metrics.yaml").read_text())
    assert report["top1"] == pytest.approx(metrics["test_top1"])
    # Against itself as baseline: no drop, no reduction.
    eval_script.main(
        [
            "--checkpoint",
            str(trained / "best_model.pth"),
            "--save-dir",
            str(out / "b"),
            "--baseline-metrics",
            str(out / "eval_metrics.yaml"),
        ]
    )
    vs = yaml.safe_load((out / "b" / "eval_metrics.yaml").read_text())["vs_baseline"]
    assert vs["accuracy_drop"] == pytest.approx(0.0) and vs["macs_reduction_pct"] == pytest.approx(0.0)


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, trained):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train:\n  epochs: [1\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  epoch: 3\n")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("train:\n  epochs: many\n")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes((trained / "best_model.pth").read_bytes()[:1000])
    cases = [
        (train_script.main, ["--config", str(tmp_path / "missing.yaml")], "config file .*missing.yaml not found"),
        (train_script.main, ["--config", str(bad_yaml)], "YAML syntax error in .*bad.yaml"),
        (train_script.main, ["--config", str(unknown)], "unknown key train.epoch .*did you mean train.epochs"),
        (train_script.main, ["--config", str(wrong)], "key train.epochs .* must be an integer"),
        (train_script.main, TINY + ["--set", "model.name=resnet19"], "resnet19"),
        (train_script.main, TINY + ["--set", "data.name=cifar11"], "cifar11"),
        (
            train_script.main,
            TINY + ["--set", "data.name=cifar10", f"data.root={tmp_path / 'nodata'}", "data.download=false"],
            "nodata",
        ),
        (eval_script.main, ["--checkpoint", str(tmp_path / "missing.pth")], "checkpoint .*missing.pth not found"),
        (eval_script.main, ["--checkpoint", str(corrupt)], "corrupt.pth is truncated or not a PyTorch file"),
        (
            eval_script.main,
            ["--checkpoint", str(trained / "best_model.pth"), "--set", "model.name=resnet32"],
            "does not match model resnet32",
        ),
        (
            eval_script.main,
            ["--checkpoint", str(trained / "best_model.pth"), "--set", "data.synthetic.num_classes=7"],
            "shape mismatch|predicts 4 classes but the data set has 7",
        ),
    ]
    for main, argv, pattern in cases:
        code, err = run_exit_code(main, argv, capsys)
        assert code == 2, (argv, err)
        assert "\n" not in err and "Traceback" not in err, err
        assert __import__("re").search(pattern, err), (pattern, err)


def test_cli_entry_point_exits_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.train", "--config", str(tmp_path / "nope.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: config file") and "Traceback" not in proc.stderr


def test_loader_speed_smoke(capsys):
    import scripts.loader_speed as loader_speed

    loader_speed.main(TINY + ["--batches", "1"])
    out = capsys.readouterr().out
    assert "loader only" in out and "training step" in out and "ratio" in out
