"""The bad-input and fault audit (issue 15): every silent acceptance and every traceback it found
is one line and exit 2 here; extended and killed runs resume; random config mutations never
end in a traceback.

    uv run pytest tests/test_audit_input.py -q
"""

import errno
import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import datasets
import scripts.export_onnx as export_script
import scripts.prune_structured as structured_script
import scripts.prune_unstructured as unstructured_script
import scripts.sweep as sweep_script
import scripts.train as train_script
import tools.core.errors
import tools.core.io
import tools.training.fit
import tools.workflows.sweep as sweep_workflow
from datasets import build_data
from datasets.config import DataConfig
from tools.core.config import Config, _all_keys, config_to_dict, load_config
from tools.core.errors import UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "--config",
    str(ROOT / "cfgs" / "quickstart.yaml"),
    "--set",
    "data.synthetic.train_size=64",
    "data.synthetic.test_size=32",
    "data.synthetic.resolution=16",
    "data.synthetic.num_classes=4",
    "data.batch_size=32",
    "model.name=resnet20",
    "train.epochs=2",
    "train.deterministic=true",
    "train.device=cpu",
    "data.num_workers=0",
]


def exit_code(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    return exc.value.code, capsys.readouterr().err.strip()


def one_line_exit_2(main, argv, capsys, pattern: str) -> str:
    code, err = exit_code(main, argv, capsys)
    assert code == 2 and "\n" not in err and "Traceback" not in err, (argv, err)
    assert re.search(pattern, err), (pattern, err)
    return err


def at_epoch(epoch: int, action):
    """Patch for tools.training.fit._format_row: `action()` when `epoch` finishes, before its
    checkpoint is written, as a kill during that epoch would."""
    original = tools.training.fit._format_row

    def format_row(row, epochs, improved):
        if row["epoch"] == epoch:
            action()
        return original(row, epochs, improved)

    return format_row


def terminate():
    raise tools.core.errors.Terminated()  # what run_cli's SIGTERM handler raises


# ----------------------------------------------------------------------------- range checks
@pytest.mark.parametrize(
    "override, pattern",
    [
        ("train.lr=0", r"train.lr must be > 0, got 0.0 in --set"),
        ("train.lr=-0.1", r"train.lr must be > 0, got -0.1 in --set"),
        ("train.momentum=-0.9", r"train.momentum must be in \[0, 1\), got -0.9 in --set"),
        ("train.label_smoothing=1.0", r"train.label_smoothing must be in \[0, 1\), got 1.0"),
        ("finetune.label_smoothing=-0.1", r"finetune.label_smoothing must be in \[0, 1\), got -0.1"),
        ("train.epochs=0", r"train.epochs must be >= 1, got 0 in --set"),
        ("train.epochs=-1", r"train.epochs must be >= 1, got -1"),
        ("finetune.epochs=-1", r"finetune.epochs must be >= 0 \(0 = no fine-tuning\), got -1"),
        ("export.tolerance=-1", r"export.tolerance must be >= 0 .*got -1.0"),
        ("unstructured.n=4", r"unstructured.n must be in \[1, 4\) .*N = M prunes nothing.*got 4"),
        ("unstructured.layer_sparsity={conv1: 1.5}", r"unstructured.layer_sparsity.conv1 must be in \[0, 1\)"),
        ("train.milestones=[5, -1]", r"train.milestones\[1\] must be >= 0"),
        ("train.lr=.inf", r"key train.lr in --set must be a finite number"),
        ("data.batch_size=0", r"data.batch_size must be >= 1, got 0"),
    ],
)
def test_out_of_range_values_are_one_line_errors_naming_the_source(override, pattern):
    with pytest.raises(UserError, match=pattern) as exc:
        load_config(ROOT / "cfgs" / "quickstart.yaml", overrides=[override])
    assert "\n" not in str(exc.value)


def test_range_error_names_the_file_that_set_the_value(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: " + str(ROOT / "cfgs" / "quickstart.yaml") + "\ntrain:\n  lr: 0\n")
    with pytest.raises(UserError, match=rf"train.lr must be > 0, got 0.0 in {re.escape(str(bad))}"):
        load_config(bad)
    with pytest.raises(UserError, match=r"train.epochs must be >= 1, got 0 in command-line flags"):
        load_config(bad, overrides=["train.lr=0.1"], flags={"train.epochs": 0})


def test_every_shipped_config_passes_the_range_checks():
    for path in sorted((ROOT / "cfgs").rglob("*.yaml")):
        if "sweeps" not in path.parts:
            load_config(path)


# ----------------------------------------------------------------------------- the YAML loader
def test_duplicate_keys_and_non_utf8_configs_are_one_line_errors(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.2\n")
    with pytest.raises(UserError, match=rf"duplicate key 'lr' in {re.escape(str(dup))} at line 4 \(first at line 2\)"):
        load_config(dup)
    top = tmp_path / "top.yaml"
    top.write_text("train:\n  lr: 0.1\nmodel:\n  name: resnet20\ntrain:\n  epochs: 3\n")
    with pytest.raises(UserError, match=r"duplicate key 'train' .* at line 5"):
        load_config(top)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("model:\n  name: resnet20  # café\n".encode("latin-1"))
    with pytest.raises(UserError, match=rf"{re.escape(str(latin))} is not UTF-8 text") as exc:
        load_config(latin)
    assert "\n" not in str(exc.value)


def test_a_misspelt_sweep_metric_stops_before_reporting(tmp_path, capsys):
    root = tmp_path / "sweep"
    (root / "sparsity0.5").mkdir(parents=True)
    (root / "sparsity0.5" / "metrics.yaml").write_text("finetuned_top1: 80.0\nnonzero_macs: 1000\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"script: prune_unstructured\nconfig: {ROOT / 'cfgs' / 'quickstart.yaml'}\n"
        "grid:\n  unstructured.sparsity: [0.5]\nmetric: finetuned_top\ncost: nonzero_macs\n"
    )
    # the point counts as finished only with the sweep's own record of what it ran from
    from tools.workflows.sweep import point_fingerprint, read_sweep, record_point

    sweep = read_sweep(spec)
    command = sweep_workflow.point_command(sweep, {"unstructured.sparsity": 0.5}, root / "sparsity0.5", [])
    record_point(root / "sparsity0.5", point_fingerprint(sweep, command))
    one_line_exit_2(
        sweep_script.main,
        ["--sweep", str(spec), "--save-dir", str(root)],
        capsys,
        r"sweep metric 'finetuned_top' is not a number in .*metrics.yaml; did you mean 'finetuned_top1'\?",
    )
    assert not (root / "sweep.csv").exists()
    spec.write_text(spec.read_text() + "grid:\n  finetune.epochs: [1]\n")
    one_line_exit_2(sweep_script.main, ["--sweep", str(spec)], capsys, r"duplicate key 'grid' in .*s.yaml at line 7")


# ----------------------------------------------------------------------------- script flags
def test_bad_pruning_and_export_flags_are_one_line_errors(tiny_checkpoint, tmp_path, capsys):
    ck = ["--checkpoint", str(tiny_checkpoint)]
    for main, argv, pattern in [
        (unstructured_script.main, ["--epochs", "-1"], r"finetune.epochs must be >= 0 .*got -1 in command-line flags"),
        (unstructured_script.main, ["--method", "nm", "--nm", "4:4"], r"unstructured.n must be in \[1, 4\)"),
        (unstructured_script.main, ["--method", "global", "--nm", "2:4"], r"--nm 2:4 applies to --method nm only"),
        (unstructured_script.main, ["--nm", "2:4"], r"--nm 2:4 applies to --method nm only, but the method is"),
        (structured_script.main, ["--epochs", "-2"], r"finetune.epochs must be >= 0"),
        (export_script.main, ["--tolerance", "-1", "--verify"], r"export.tolerance must be >= 0 .*got -1.0"),
        (train_script.main, TINY[:2] + ["--epochs", "0"], r"train.epochs must be >= 1, got 0 in command-line flags"),
        (train_script.main, TINY[:2] + ["--lr", "-0.1"], r"train.lr must be > 0, got -0.1"),
    ]:
        save = tmp_path / "out"
        one_line_exit_2(
            main, (argv if main is train_script.main else ck + argv) + ["--save-dir", str(save)], capsys, pattern
        )
        assert not save.exists(), argv


# ----------------------------------------------------------------------------- OS errors and data
def test_disk_full_and_permission_denied_are_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tools.core.io.os, "fsync", disk_full)
    run_dir = tmp_path / "full"
    one_line_exit_2(
        train_script.main,
        TINY + ["--save-dir", str(run_dir)],
        capsys,
        rf"cannot use {re.escape(str(run_dir))}/\S+: No space left on device \[ENOSPC\]; free disk space",
    )
    assert not list(run_dir.glob(".*.tmp")), "no temp file left behind"
    monkeypatch.undo()

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tools.core.io.tempfile, "mkstemp", denied)
    one_line_exit_2(
        train_script.main,
        TINY + ["--save-dir", str(tmp_path / "ro")],
        capsys,
        r"cannot use .*ro/config.yaml: Permission denied \[EACCES\]; check the permissions",
    )


def test_corrupt_jpeg_on_the_dataloader_path_is_one_line(tmp_path):
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (20, 20), (40 * i, 90, 200)).save(tmp_path / split / name / f"{i}.jpg")
    bad = tmp_path / "train" / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError) as exc:  # at the statistics' sample (data.normalize=dataset) or at the batch
        data = build_data(
            DataConfig(
                name="imagefolder", root=str(tmp_path), image_size=16, fast_path=False, batch_size=8, num_workers=1
            )
        )
        list(data.train)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"cannot read image {bad}"), message


# ----------------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("audit") / "run"
    train_script.main(TINY + ["--set", "train.scheduler=cosine", "--save-dir", str(run_dir)])
    return run_dir


def test_resume_of_another_architecture_writes_nothing(trained, capsys):
    before = {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()}
    one_line_exit_2(
        train_script.main,
        ["--resume", str(trained / "last.pth"), "--model", "resnet32"],
        capsys,
        r"last.pth does not match model resnet32",
    )
    one_line_exit_2(
        train_script.main,
        ["--resume", str(trained / "last.pth"), "--epochs", "1"],
        capsys,
        r"last.pth has already trained 2 epochs; resume with epochs >= 2 \(got 1\)",
    )
    one_line_exit_2(
        train_script.main,
        ["--resume", str(trained / "last.pth"), "--epochs", "3", "--set", "train.scheduler=onecycle"],
        capsys,
        r"was trained with scheduler cosine, this resume has onecycle",
    )
    assert {p.name: p.read_bytes() for p in trained.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine", "multistep"])
def test_resume_with_more_epochs_follows_the_longer_schedule(tmp_path, scheduler):
    sets = ["--set", f"train.scheduler={scheduler}", "train.milestones=[2]"]
    train_script.main(TINY + sets + ["--save-dir", str(tmp_path / "short")])
    train_script.main(["--resume", str(tmp_path / "short" / "last.pth"), "--epochs", "3"])
    train_script.main(TINY + sets + ["--epochs", "3", "--save-dir", str(tmp_path / "long")])
    extended, straight = (yaml.safe_load((tmp_path / r / "config.yaml").read_text()) for r in ("short", "long"))
    assert (
        extended["train"]["epochs"] == 3
        and torch.load(tmp_path / "short" / "last.pth", weights_only=False)["epoch"] == 3
    )
    lrs = [
        [float(line.split(",")[1]) for line in (tmp_path / r / "log.csv").read_text().splitlines()[1:]]
        for r in ("short", "long")
    ]
    # The third epoch runs on the 3-epoch schedule at the same step as an uninterrupted 3-epoch run.
    assert lrs[0][2] == pytest.approx(lrs[1][2], rel=1e-9), lrs


def test_sigterm_prints_one_line_and_leaves_the_run_resumable(tmp_path, monkeypatch, capsys):
    def unhandled(signum, frame):  # only reached if run_cli installs no handler of its own
        raise AssertionError("SIGTERM reached no handler of run_cli")

    run_dir = tmp_path / "run"
    monkeypatch.setattr(tools.training.fit, "_format_row", at_epoch(2, lambda: os.kill(os.getpid(), signal.SIGTERM)))
    previous = signal.signal(signal.SIGTERM, unhandled)
    try:
        code, err = exit_code(train_script.main, TINY + ["--save-dir", str(run_dir)], capsys)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 143 and re.fullmatch(r"terminated by SIGTERM .*--resume.*", err), err
    assert torch.load(run_dir / "last.pth", weights_only=False)["epoch"] == 1
    monkeypatch.undo()
    train_script.main(["--resume", str(run_dir / "last.pth")])
    assert yaml.safe_load((run_dir / "metrics.yaml").read_text())["epochs"] == 2


@pytest.mark.parametrize(
    "script, args",
    [
        (unstructured_script, ["--method", "l1", "--sparsity", "0.5"]),
        (structured_script, ["--method", "l2", "--sparsity", "0.3", "--set", "finetune.kd.alpha=0.5"]),
    ],
)
def test_killed_prune_runs_resume_their_fine_tuning_exactly(
    tiny_checkpoint, tmp_path, monkeypatch, script, args, capsys
):
    argv = ["--checkpoint", str(tiny_checkpoint), *args, "--epochs", "2", "--set", "train.deterministic=true"]
    script.main(argv + ["--save-dir", str(tmp_path / "straight")])
    monkeypatch.setattr(tools.training.fit, "_format_row", at_epoch(2, terminate))
    code, err = exit_code(script.main, argv + ["--save-dir", str(tmp_path / "killed")], capsys)
    assert code == 143 and "SIGTERM" in err
    monkeypatch.undo()
    last = torch.load(tmp_path / "killed" / "last.pth", weights_only=False)
    assert last["epoch"] == 1 and not (tmp_path / "killed" / "metrics.yaml").exists()
    run_cli(
        script.main, argv + ["--save-dir", str(tmp_path / "killed"), "--resume", str(tmp_path / "killed" / "last.pth")]
    )
    assert "pruning is not redone" in capsys.readouterr().out

    def weights(run: str) -> dict:
        model = torch.load(tmp_path / run / "pruned_model.pth", weights_only=False)
        return model["model"] if isinstance(model, dict) else model.state_dict()

    straight, resumed = weights("straight"), weights("killed")
    assert straight.keys() == resumed.keys() and all(torch.equal(straight[k], resumed[k]) for k in straight)
    figures = [yaml.safe_load((tmp_path / r / "metrics.yaml").read_text()) for r in ("straight", "killed")]
    for key in ("baseline_top1", "pruned_top1", "accuracy_drop"):
        assert figures[0][key] == figures[1][key], key
    one_line_exit_2(
        script.main,
        ["--resume", str(tmp_path / "killed" / "last.pth"), "--sparsity", "0.4"],
        capsys,
        r"was pruned as .*, these settings make",
    )


# ----------------------------------------------------------------------------- property-based
KEYS = _all_keys(Config)
LEAVES = [k for k in KEYS if not any(o.startswith(k + ".") for o in KEYS)]
DEFAULTS = {k: eval("cfg." + k, {"cfg": Config()}) for k in LEAVES}  # noqa: S307 (dotted attribute access)
TEXT = st.text(st.characters(max_codepoint=0xFFFF), max_size=8)  # JSON escapes of astral characters are not YAML
VALUES = st.one_of(
    st.sampled_from([0, -1, 1, 0.5, 1.0, -0.5, 4, 10**9, 1e-12]),  # around the usual bounds
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(),
    st.booleans(),
    st.none(),
    TEXT,
    st.lists(st.one_of(st.integers(-5, 10**6), st.floats(), TEXT), max_size=3),
    st.dictionaries(TEXT, st.one_of(st.integers(), st.floats()), max_size=2),
)
KEY = st.one_of(
    st.sampled_from(LEAVES),
    st.sampled_from(KEYS).map(lambda k: k + "x"),
    st.sampled_from(KEYS).map(lambda k: k.rsplit(".", 1)[0] + "._"),
    TEXT.filter(bool),
)
# A known key with its default (the rest of the file stays valid, so one bad value is what decides)
# or any key with any value.
ENTRY = st.one_of(st.sampled_from(LEAVES).map(lambda k: (k, DEFAULTS[k])), st.tuples(KEY, VALUES))


def yaml_text(entries: list[tuple[str, object]], duplicate: bool) -> str:
    """One `section:` block per section, its keys as flow-style JSON (valid YAML); `duplicate`
    writes the first key of the first block twice."""
    sections: dict[str, dict] = {}
    for key, value in entries:
        section, _, rest = key.partition(".")
        node = sections.setdefault(section, {})
        *parents, leaf = rest.split(".") if rest else ["_"]
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[leaf] = value
    lines = []
    for i, (section, body) in enumerate(sections.items()):
        items = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in body.items()]
        lines += [f"{json.dumps(section)}:", *items, *(items[:1] if duplicate and i == 0 else [])]
    return "\n".join(lines) + "\n"


@settings(max_examples=120, deadline=None, database=None)
@given(entries=st.lists(ENTRY, min_size=1, max_size=4), duplicate=st.booleans(), sets=st.lists(ENTRY, max_size=2))
def test_random_config_mutations_never_raise_anything_but_one_user_error(tmp_path_factory, entries, duplicate, sets):
    path = tmp_path_factory.mktemp("fuzz", numbered=True) / "c.yaml"
    path.write_text(yaml_text(entries, duplicate))
    try:
        cfg = load_config(path, overrides=[f"{k}={json.dumps(v)}" for k, v in sets])
    except UserError as e:
        assert "\n" not in str(e), str(e)
        assert not duplicate or re.match("duplicate key|YAML syntax error", str(e)), str(e)  # found while parsing
        return
    assert not duplicate, "a duplicate key was accepted"
    t, f, u = cfg.train, cfg.finetune, cfg.unstructured
    assert t.lr > 0 and t.epochs >= 1 and 0 <= t.momentum < 1 and 0 <= t.label_smoothing < 1 and f.epochs >= 0
    assert 0 <= u.sparsity < 1 and 1 <= u.n < u.m and cfg.export.tolerance >= 0 and cfg.data.batch_size >= 1


class _Stop(BaseException):
    """Raised where a script would start loading data: its input was accepted."""


FLAGS = {
    train_script: ["--epochs", "--lr", "--batch-size", "--seed", "--model"],
    unstructured_script: ["--method", "--mode", "--sparsity", "--nm", "--epochs", "--num-iterations", "--schedule"],
    structured_script: ["--method", "--granularity", "--sparsity", "--target-macs-reduction", "--epochs"],
    export_script: ["--opset", "--tolerance", "--format"],
}
FLAG_VALUE = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats().map(str),
    st.text(max_size=6),
    st.sampled_from(["2:4", "4:4", "0:4", "nm", "global", "l1", "0.5", "1", "0", "-1"]),
)


@pytest.fixture(scope="module")
def fake_checkpoint(tmp_path_factory) -> Path:
    """A checkpoint with a config and no weights: the scripts stop before they would need them."""
    cfg = load_config(ROOT / "cfgs" / "quickstart.yaml", overrides=["train.device=cpu"])
    path = tmp_path_factory.mktemp("fake") / "model.pth"
    torch.save({"config": config_to_dict(cfg), "model": {}}, path)
    return path


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.sampled_from(list(FLAGS)), data=st.data())
def test_random_script_arguments_exit_0_or_2_without_a_traceback(fake_checkpoint, script, data):
    flags = data.draw(st.lists(st.tuples(st.sampled_from(FLAGS[script]), FLAG_VALUE), max_size=3))
    sets = data.draw(st.lists(ENTRY, max_size=2))
    argv = (
        ["--config", str(ROOT / "cfgs" / "quickstart.yaml")]
        if script is train_script
        else ["--checkpoint", str(fake_checkpoint)]
    )
    argv += [a for flag, value in flags for a in (flag, value)] + ["--set", "train.device=cpu"]
    argv += [f"{k}={json.dumps(v)}" for k, v in sets]

    def stop(*args, **kwargs):
        raise _Stop

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    saved = script.__dict__.get("build_data"), datasets.build_data
    if saved[0] is not None:
        script.build_data = stop
    datasets.build_data = stop
    try:
        run_cli(script.main, argv)
    except SystemExit as e:
        assert e.code in (0, 2), (argv, e.code)
    except _Stop:
        pass
    finally:
        if saved[0] is not None:
            script.build_data = saved[0]
        datasets.build_data = saved[1]
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
