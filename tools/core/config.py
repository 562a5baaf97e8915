"""Typed run configuration: dataclass defaults < YAML file (may extend a base) < CLI flags.

    >>> cfg = load_config("cfgs/quickstart.yaml", overrides=["train.epochs=3"])   # from the repository root
    >>> cfg.train.epochs, cfg.model.name
    (3, 'resnet20')

    save_config(cfg, run_dir / CONFIG)   # feeding this file back reproduces the run

A YAML file is a mapping of sections (`data`, `model`, `train`, ...). Each section is a dataclass
with a `check` that lives in the layer whose code reads it (data in datasets/config.py, structured
in tools/pruning/config.py, ...) and registers itself here with `@config_section("name")`; the top
(tools.workflows.config, imported by every script and by tests/conftest.py) imports them all and
fixes their order with `compose`. This module only loads: `Config` holds whatever is registered.

`base: other.yaml` (relative to the file) pulls in another file first, so variants stay short.
Every layer is checked on its own against the schema, so an unknown key or a wrong type is
reported with the file (or `--set`) it came from, e.g.

    unknown key train.epoch in cfgs/x.yaml; did you mean train.epochs?

Each value is then range-checked once, by its section's `check` (next to the dataclass), with the
layer that set it: `train.lr must be > 0, got 0 in --set; fix it`. A key written twice in one
YAML mapping is an error, not "the last one wins" (tools.core.yaml_file).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from tools.core.errors import UserError
from tools.core.schema import Bound, all_keys, build, check_ranges, check_tree
from tools.core.yaml_file import BASE_KEY, deep_merge, parse_override, read_yaml_chain, read_yaml_file, set_dotted

__all__ = [
    "Bound",
    "Config",
    "config_section",
    "register_section",
    "compose",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "save_config",
    "stored_config",
    "read_yaml_file",
    "is_factory_name",
]


# ----------------------------------------------------------------------------- sections
_SECTIONS: dict[str, type] = {}  # name -> section dataclass, in config.yaml's order once composed
_composed = False


def config_section(name: str) -> Callable[[type], type]:
    """Class decorator: the dataclass below is the config section `name` (keys `name.*`)."""

    def register(cls: type) -> type:
        register_section(name, cls)
        return cls

    return register


def register_section(name: str, cls: type) -> None:
    """Add a section; one registered after `compose` (a plugin, a test) comes last in config.yaml."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"config section {name!r} must be a dataclass, got {cls!r}")
    if not name.isidentifier() or name == BASE_KEY:
        raise ValueError(f"{name!r} cannot name a config section (a Python identifier other than {BASE_KEY!r})")
    known = _SECTIONS.get(name)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"config section {name!r} is already {known.__module__}.{known.__qualname__}")
    _SECTIONS[name] = cls  # the same class again (a reloaded module) keeps its place


def compose(order: Sequence[str]) -> None:
    """The top's one call, after importing every layer's sections: their order in config.yaml (and
    in the resolved dict that benchmark fingerprints digest). Loading refuses to run before it."""
    global _composed
    missing = [name for name in order if name not in _SECTIONS]
    if missing:
        raise RuntimeError(f"config sections {missing} were never registered; import their modules before compose()")
    ordered = {name: _SECTIONS[name] for name in order} | _SECTIONS
    _SECTIONS.clear()
    _SECTIONS.update(ordered)
    _composed = True


def sections() -> dict[str, type]:
    """Name -> section dataclass, in order; a RuntimeError (a wiring bug) until the top composed them."""
    if not _composed:
        raise RuntimeError(
            "the config's sections are not composed: import tools.workflows.config first "
            "(every script and tests/conftest.py do)"
        )
    return dict(_SECTIONS)


class Config:
    """The whole configuration: one attribute per registered section (`cfg.train.epochs`)."""

    def __init__(self, **given: Any):
        known = sections()
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise TypeError(f"Config got unknown sections {unknown}")
        for name, cls in known.items():
            setattr(self, name, given[name] if name in given else cls())

    @staticmethod
    def section_types() -> dict[str, type]:  # what tools.core.schema checks a file's top level against
        return sections()

    def __eq__(self, other: object) -> bool:
        return type(other) is Config and vars(self) == vars(other)

    __hash__ = None  # mutable, like the dataclasses it holds

    def __repr__(self) -> str:
        return f"Config({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


# ----------------------------------------------------------------------------- loading
def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    base: tuple[dict, str] | None = None,
) -> Config:
    """Defaults < `base` (a config dict and where it came from, e.g. a checkpoint's) < YAML at
    `path` (and its bases) < `overrides` ("a.b=value") < `flags` (dotted key -> value, from a
    script's own options; None values are ignored)."""
    layers: list[tuple[dict, str]] = [_without_trust(base)] if base else []
    if path is not None:
        layers += read_yaml_chain(Path(path))
    for item in overrides or []:
        layers.append((parse_override(item), "--set"))
    flag_tree: dict = {}
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(flag_tree, key, value)
    if flag_tree:
        layers.append((flag_tree, "command-line flags"))

    if base:  # a stored config from an older version: each section's static `upgrade` keeps its meaning
        layers[0] = (_through(layers[0][0], "upgrade"), base[1])  # layers[0] is the stored config less its trust
    merged: dict = {}
    origins: dict[str, str] = {}  # dotted key -> the last layer that set it, for range errors
    for tree, source in layers:
        check_tree(tree, Config, source, "", _all_keys(Config))
        deep_merge(merged, tree)
        _record_origins(tree, source, "", origins)
    cfg = build(Config, merged, "")
    check_ranges(cfg, lambda key: origins.get(key, "the defaults"))
    if base:
        _refuse_factory_from_file(cfg, base[1], layers[1:])
        print(inherited_line(cfg, origins, base[1]))
    return cfg


def is_factory_name(name: str) -> bool:
    """Whether model.name names code to import and call (`package.module:factory`, `file.py:factory`);
    every other form (registry, torchvision) is a plain name, and none of those holds a colon.

    >>> is_factory_name("tests/assets/cifar_resnet.py:resnet"), is_factory_name("resnet20")
    (True, False)
    """
    return ":" in name


def _without_trust(base: tuple[dict, str]) -> tuple[dict, str]:
    """`base` (a checkpoint's stored config) minus model.trust_checkpoint: a file never grants
    itself (or the files it names) the right to run code; only the user's config or flags do."""
    tree, source = base
    model = tree.get("model") if isinstance(tree, dict) else None
    if isinstance(model, dict) and "trust_checkpoint" in model:
        tree = {**tree, "model": {k: v for k, v in model.items() if k != "trust_checkpoint"}}
    return tree, source


def _refuse_factory_from_file(cfg: Config, source: str, user_layers: list[tuple[dict, str]]) -> None:
    """A model.name that imports and calls code is taken from the user's own config or command line
    (or with --trust-checkpoint), never from the stored config of a file (`source`), which anyone
    can edit without unpickling anything: `os:system` with kwargs {command: ...} would run there."""
    name = cfg.model.name
    if not is_factory_name(name) or cfg.model.trust_checkpoint:
        return
    if any(isinstance(tree.get("model"), dict) and "name" in tree["model"] for tree, _ in user_layers):
        return  # the user named it (the same or another factory)
    raise UserError(
        f"model.name {name!r} comes from the config stored in {source}; a module:factory name runs code, "
        f"so it is taken only from your own config or command line: pass --set model.name={name} "
        "(or a --config naming it) if you trust that code, or --trust-checkpoint if you trust the file"
    )


def inherited_line(cfg: Config, origins: dict[str, str], source: str) -> str:
    """One line naming the keys whose value comes from `source` (the checkpoint's stored config:
    --config, --set and flags did not set them) and differs from the defaults."""
    ours, default = _leaves(config_to_dict(cfg)), _leaves(config_to_dict(Config()))
    every = _all_keys(Config)
    parents = {k.rsplit(".", 1)[0] for k in every if "." in k}  # their keys are listed one by one
    keys = [k for k in every if k not in parents and origins.get(k) == source and ours[k] != default.get(k)]
    listed = ", ".join(f"{k}={ours[k]}" for k in keys) or "none besides the defaults"
    return (
        f"config: kept from {source} (defaults < checkpoint < --config < --set < flags; "
        f"override any with --set): {listed}"
    )


def _leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        out[prefix + key] = value
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
    return out


def stored_config(config: dict) -> dict:
    """`config` as a run folder or checkpoint stores it: each section through its dataclass's
    optional static `stored` (data: a relative root made absolute, so it works from any folder)."""
    return _through(config, "stored")


def _through(tree: Any, hook: str) -> Any:
    """`tree` with each section's mapping passed through its dataclass's static `hook`, if it has one."""
    if not isinstance(tree, dict):
        return tree
    known = sections()
    return {
        name: getattr(known[name], hook)(value) if hasattr(known.get(name), hook) and isinstance(value, dict) else value
        for name, value in tree.items()
    }


def config_to_dict(cfg: Config) -> dict:
    return {name: dataclasses.asdict(section) for name, section in vars(cfg).items()}


def config_from_dict(tree: dict, source: str = "checkpoint") -> Config:
    check_tree(tree, Config, source, "", _all_keys(Config))
    cfg = build(Config, tree, "")
    check_ranges(cfg, lambda key: source)
    return cfg


def _record_origins(tree: dict, source: str, prefix: str, origins: dict[str, str]) -> None:
    for key, value in tree.items():
        origins[prefix + str(key)] = source
        if isinstance(value, dict):
            _record_origins(value, source, f"{prefix}{key}.", origins)


def save_config(cfg: Config, path: str | Path) -> None:
    from tools.core.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(stored_config(config_to_dict(cfg)), sort_keys=False))


_all_keys = all_keys  # _all_keys(Config): every dotted key, sections before their keys
