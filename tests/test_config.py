"""Config merge, precedence, strict errors and round trip."""

from pathlib import Path

import pytest
import yaml

from tools.core.config import Config, config_to_dict, load_config, save_config
from tools.core.errors import UserError

CFGS = Path(__file__).resolve().parents[1] / "cfgs"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_file():
    cfg = load_config(None)
    assert cfg == Config()
    assert cfg.train.milestones == [50, 75]


def test_precedence_defaults_yaml_set_flags(tmp_path):
    write(tmp_path / "base.yaml", "train:\n  epochs: 7\n  lr: 0.05\nmodel:\n  name: resnet20\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\ntrain:\n  lr: 0.02\n")
    cfg = load_config(child)
    assert (cfg.train.epochs, cfg.train.lr, cfg.model.name) == (7, 0.02, "resnet20")
    assert cfg.train.momentum == 0.9  # default survives
    cfg = load_config(child, overrides=["train.epochs=3", "data.synthetic.num_classes=4"])
    assert cfg.train.epochs == 3 and cfg.data.synthetic.num_classes == 4
    cfg = load_config(child, overrides=["train.epochs=3"], flags={"train.epochs": 9, "train.lr": None})
    assert cfg.train.epochs == 9 and cfg.train.lr == 0.02  # None flags leave the value alone


def test_lists_ints_to_floats_and_yaml_exponent_strings(tmp_path):
    cfg = load_config(write(tmp_path / "x.yaml", "train:\n  weight_decay: 5e-4\n  lr: 1\n  milestones: [3, 6]\n"))
    assert cfg.train.weight_decay == 5e-4 and isinstance(cfg.train.lr, float) and cfg.train.milestones == [3, 6]
    cfg = load_config(None, overrides=["train.milestones=[1,2]"])
    assert cfg.train.milestones == [1, 2]


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    path = write(tmp_path / "x.yaml", "train:\n  epoch: 3\n")
    with pytest.raises(UserError, match=r"unknown key train.epoch in .*x.yaml; did you mean train.epochs\?"):
        load_config(path)


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    write(tmp_path / "base.yaml", "modle:\n  name: resnet20\n")
    child = write(tmp_path / "child.yaml", "base: base.yaml\n")
    with pytest.raises(UserError, match=r"unknown key modle in .*base.yaml; did you mean model\?"):
        load_config(child)


def test_unknown_key_from_set():
    with pytest.raises(UserError, match=r"unknown key data.batchsize in --set; did you mean data.batch_size\?"):
        load_config(None, overrides=["data.batchsize=3"])


@pytest.mark.parametrize(
    "text,match",
    [
        ("train:\n  epochs: three\n", r"key train.epochs in .*x.yaml must be an integer, got 'three'"),
        ("train:\n  epochs: 2.5\n", r"key train.epochs .* must be an integer"),
        ("train:\n  nesterov: 1\n", r"key train.nesterov .* must be true/false"),
        ("train:\n  milestones: 5\n", r"key train.milestones .* must be a list of an integer"),
        ("train: 5\n", r"key train in .* must be a section"),
    ],
)
def test_wrong_types(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load_config(write(tmp_path / "x.yaml", text))


def test_missing_file_and_syntax_error(tmp_path):
    with pytest.raises(UserError, match=r"config file .*nope.yaml not found"):
        load_config(tmp_path / "nope.yaml")
    bad = write(tmp_path / "bad.yaml", "train:\n  epochs: [1, 2\n")
    with pytest.raises(UserError, match=r"YAML syntax error in .*bad.yaml at line \d+"):
        load_config(bad)


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\n")
    write(tmp_path / "b.yaml", "base: a.yaml\n")
    with pytest.raises(UserError, match="extends itself"):
        load_config(tmp_path / "a.yaml")


def test_bad_set_syntax():
    with pytest.raises(UserError, match="--set expects key=value"):
        load_config(None, overrides=["train.epochs"])


def test_round_trip(tmp_path):
    cfg = load_config(CFGS / "cifar10_resnet20.yaml", overrides=["train.epochs=2", "output.name=rt"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    cfg.data.root = str(Path(cfg.data.root).resolve())  # stored absolute: the file works from any folder
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == config_to_dict(cfg)


@pytest.mark.parametrize("path", sorted(CFGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    load_config(path)


def test_config_reference_documents_every_key():
    from tools.core.config import _all_keys

    reference = (CFGS.parent / "docs" / "config.md").read_text()  # the config reference the README links to
    leaves = [k for k in _all_keys(Config) if not any(o.startswith(k + ".") for o in _all_keys(Config))]
    missing = [k for k in leaves if f"`{k}`" not in reference]
    assert not missing, f"docs/config.md config reference lacks {missing}"
