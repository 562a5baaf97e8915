"""One precedence for scripts that start from a checkpoint: dataclass defaults < the checkpoint's
stored config < --config YAML < --set < flags, with one printed line naming the keys kept from the
checkpoint (e.g. its export.tolerance and train.nesterov under a --config that does not set them).
And a stored relative data.root is recorded absolute, so the stored config works from elsewhere."""

import torch
import yaml
from torch import nn

from tools.core.config import Config, config_to_dict, load_config, save_config
from tools.modeling.checkpoint import save_checkpoint

SOURCE = "checkpoint results/train/x/best_model.pth"


def stored() -> dict:
    tree = config_to_dict(Config())
    tree["export"]["tolerance"] = 1e-3
    tree["train"]["nesterov"] = True
    tree["train"]["lr"] = 0.05
    return tree


def test_checkpoint_keys_are_kept_under_a_config_and_named(tmp_path, capsys):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("train:\n  lr: 0.2\n")
    cfg = load_config(yaml_file, base=(stored(), SOURCE))
    assert cfg.export.tolerance == 1e-3 and cfg.train.nesterov is True and cfg.train.lr == 0.2
    (line,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("config: kept from")]
    assert line == (
        f"config: kept from {SOURCE} (defaults < checkpoint < --config < --set < flags; override any with "
        f"--set): train.nesterov=True, export.tolerance=0.001"
    )  # not train.lr: the YAML set it


def test_set_beats_the_config_and_flags_beat_set(tmp_path, capsys):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("export:\n  tolerance: 0.01\ntrain:\n  epochs: 3\n")
    cfg = load_config(
        yaml_file,
        overrides=["export.tolerance=0.02", "train.epochs=4"],
        flags={"train.epochs": 5},
        base=(stored(), SOURCE),
    )
    assert cfg.export.tolerance == 0.02 and cfg.train.epochs == 5 and cfg.train.lr == 0.05
    line = capsys.readouterr().out
    assert "train.lr=0.05" in line and "train.nesterov=True" in line and "export.tolerance" not in line


def test_nothing_inherited_says_so(capsys):
    load_config(None, base=(config_to_dict(Config()), SOURCE))
    out = capsys.readouterr().out
    assert f"config: kept from {SOURCE}" in out and out.rstrip().endswith("none besides the defaults")
    load_config(None)  # no checkpoint: no line
    assert "config: kept from" not in capsys.readouterr().out


def test_relative_data_root_is_stored_absolute(tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "data").mkdir(parents=True), elsewhere.mkdir()
    monkeypatch.chdir(work)
    cfg = load_config(None, overrides=["data.root=./data"])
    save_config(cfg, work / "config.yaml")
    save_checkpoint(work / "model.pth", model=nn.Linear(2, 2), config=config_to_dict(cfg))
    assert cfg.data.root == "./data"  # the running config is untouched
    monkeypatch.chdir(elsewhere)  # a later script, run from another folder
    from_file = load_config(work / "config.yaml")
    from_ckpt = torch.load(work / "model.pth", weights_only=True)["config"]
    assert from_file.data.root == from_ckpt["data"]["root"] == str(work / "data")
    assert yaml.safe_load((work / "config.yaml").read_text())["data"]["root"] == str(work / "data")
    for root in ("/abs/data", "~/data"):  # absolute and home roots stay as given
        save_config(load_config(None, overrides=[f"data.root={root}"]), tmp_path / "c2.yaml")
        assert yaml.safe_load((tmp_path / "c2.yaml").read_text())["data"]["root"] == root
