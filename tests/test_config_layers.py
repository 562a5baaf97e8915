"""Each layer owns its config: a section is a dataclass with `check` beside the code that reads it,
registered with tools.core.config; tools.workflows.config composes them. A toy structured method
with a section of its own is added here the way docs/architecture.md says, touching no core file,
and loads, validates, saves and prunes like the built-in ones.

    uv run pytest tests/test_config_layers.py -q
"""

from __future__ import annotations

import ast
import copy
import dataclasses
from dataclasses import dataclass

import pytest
import torch
import torch_pruning as tp
import yaml

import tools.core.config as core_config
from tests.conftest import ROOT
from tools.core.config import Bound, Config, config_section, config_to_dict, load_config, save_config
from tools.core.errors import UserError
from tools.modeling.registry import build_model
from tools.pruning import structured as st
from tools.runs.prune_structured import check_structured_config

CORE = ROOT / "tools" / "core"


@dataclass
class ToyMethodConfig:
    power: int = 2  # the norm the toy importance ranks channels by
    note: str = ""

    def check(self, bound: Bound) -> None:
        bound("power", ge=1, why="a norm")


@pytest.fixture
def toy(monkeypatch):
    """The toy method and its section registered as a plugin would (both registries restored after)."""
    monkeypatch.setattr(core_config, "_SECTIONS", dict(core_config._SECTIONS))
    monkeypatch.setattr(st, "IMPORTANCES", dict(st.IMPORTANCES))
    config_section("toy_method")(ToyMethodConfig)
    power = {"p": 2}
    st.register_structured_method("toy", lambda: tp.importance.GroupMagnitudeImportance(p=power["p"]))
    return power


def test_a_toy_method_is_unknown_until_registered():
    cfg = load_config(None, overrides=["structured.method=toy"])  # the section only holds the name
    with pytest.raises(UserError, match=r"unknown structured.method 'toy'; choose one of: l1, l2, bn_scale"):
        check_structured_config(cfg)
    with pytest.raises(UserError, match=r"unknown key toy_method in --set"):
        load_config(None, overrides=["toy_method.power=3"])


def test_a_toy_method_and_its_section_load_validate_and_save(toy, tmp_path):
    cfg = load_config(None, overrides=["structured.method=toy", "toy_method.power=3"])
    check_structured_config(cfg)
    assert (cfg.structured.method, cfg.toy_method.power, cfg.toy_method.note) == ("toy", 3, "")
    with pytest.raises(UserError, match=r"^toy_method.power must be >= 1 \(a norm\), got 0 in --set; fix it$"):
        load_config(None, overrides=["toy_method.power=0"])
    with pytest.raises(UserError, match=r"^unknown key toy_method.powr in --set; did you mean toy_method.power\?$"):
        load_config(None, overrides=["toy_method.powr=3"])
    with pytest.raises(UserError, match=r"^key toy_method.power in --set must be an integer, got 'two'$"):
        load_config(None, overrides=["toy_method.power=two"])
    save_config(cfg, tmp_path / "config.yaml")
    stored = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert list(stored)[-2:] == ["pipeline", "toy_method"] and stored["toy_method"] == {"power": 3, "note": ""}
    again = load_config(tmp_path / "config.yaml")
    assert (again.toy_method, again.structured) == (cfg.toy_method, cfg.structured)
    assert Config().toy_method == ToyMethodConfig()


def test_a_toy_method_prunes_channels(toy):
    torch.manual_seed(0)
    example = torch.zeros(1, 3, 16, 16)
    model = build_model("resnet20", num_classes=4, image_size=16).eval()
    ignored = st.output_layer_names(model, example)
    toy["p"] = load_config(None, overrides=["toy_method.power=1"]).toy_method.power
    pruned = copy.deepcopy(model)
    table = st.importance_table(pruned, example, method="toy", ignored_layers=ignored)
    l1 = st.importance_table(model, example, method="l1", ignored_layers=ignored)
    assert table.keys() == l1.keys() and all(torch.equal(table[k], l1[k]) for k in l1)  # power 1 ranks as l1
    st.prune_channels(pruned, example, ratio=0.3, table=table, round_to=8, ignored_layers=ignored)
    st.verify_forward(pruned, example, 4)
    assert sum(st.channel_counts(pruned).values()) < sum(st.channel_counts(model).values())


def test_the_toy_registrations_are_gone_after_the_test():
    assert "toy_method" not in vars(Config()) and "toy" not in st.IMPORTANCES


def test_core_holds_no_section():
    """The loader, types, bounds and YAML reading are core; every section lives in a higher layer."""
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        decorated = [
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and any("config_section" in ast.unparse(d) for d in node.decorator_list)
        ]
        assert not decorated, f"{path.name} defines config sections {decorated}"
    config_py = (CORE / "config.py").read_text()
    assert "@dataclass" not in config_py and len(config_py.splitlines()) < 300
    owners = {name: cls.__module__ for name, cls in core_config.sections().items()}
    assert not [name for name, module in owners.items() if module.startswith("tools.core")], owners
    assert owners["structured"] == "tools.pruning.config" and owners["data"] == "datasets.config"
    assert all(dataclasses.is_dataclass(cls) for cls in core_config.sections().values())


def test_registering_a_second_class_under_a_taken_name_fails(toy):
    @dataclass
    class Other:
        x: int = 0

    with pytest.raises(
        ValueError, match="config section 'structured' is already tools.pruning.config.StructuredConfig"
    ):
        config_section("structured")(Other)
    with pytest.raises(TypeError, match="must be a dataclass"):
        config_section("plain")(object)


def test_every_entry_point_composes_and_core_alone_refuses_to_load(monkeypatch):
    """`python -m scripts.<name>` runs scripts/__init__.py first, `python scripts/<name>.py`
    scripts/_file_form.py, pytest tests/conftest.py: each imports the composer. The core loader
    alone says what to import instead of loading a config with sections missing."""
    for entry in ("scripts/__init__.py", "scripts/_file_form.py", "tests/conftest.py"):
        tree = ast.parse((ROOT / entry).read_text())
        imported = {alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
        assert "tools.workflows.config" in imported, entry
    assert list(config_to_dict(Config()))[:3] == ["data", "model", "train"]
    monkeypatch.setattr(core_config, "_composed", False)
    with pytest.raises(RuntimeError, match="import tools.workflows.config first"):
        load_config(None)
