"""Reading YAML the strict way: a key written twice in one mapping is an error (PyYAML would keep
the last), and bad bytes, syntax errors and duplicates are one-line UserErrors naming the file.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "x.yaml"
    >>> _ = path.write_text("train:\\n  epochs: 3\\n  epochs: 4\\n")
    >>> read_yaml_file(path)
    Traceback (most recent call last):
    tools.core.errors.UserError: duplicate key 'epochs' in ...x.yaml at line 3 (first at line 2); keep one
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tools.core.errors import UserError


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(f"duplicate key {key!r}")
        self.where = f"at line {line} (first at line {first_line}); keep one"


class UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when installed
    """yaml.SafeLoader that rejects a key written twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        raise DuplicateKeyError(key, line, first[key])
                    first[key] = line
                except TypeError:  # an unhashable key: the base class reports it
                    continue
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path) -> Any:
    """The YAML document in `path`; one-line UserErrors for bytes that are not UTF-8, syntax
    errors and duplicate keys, each naming the file (and line)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as e:
        raise UserError(f"{e} in {path} {e.where}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise UserError(f"YAML syntax error in {path}{where}: {problem}; fix the file") from None


BASE_KEY = "base"  # `base: other.yaml` pulls in another file first


def read_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[dict, str]]:
    """The layers of a config file, its `base:` files first: (mapping, file name) each."""
    if not path.is_file():
        raise UserError(f"config file {path} not found; pass an existing file, e.g. --config cfgs/quickstart.yaml")
    resolved = path.resolve()
    if resolved in seen:
        raise UserError(f"config {path} extends itself through 'base:'; remove the cycle")
    tree = read_yaml_file(path)
    if tree is None:  # an empty file is more likely a mistake than a wish for every default
        raise UserError(
            f"config {path} is empty; write its sections (data:, model:, train:, ...) or pass another "
            "file, e.g. --config cfgs/quickstart.yaml"
        )
    if not isinstance(tree, dict):
        raise UserError(f"config {path} must be a mapping of sections (data:, model:, train:, ...)")
    layers: list[tuple[dict, str]] = []
    base = tree.pop(BASE_KEY, None)
    if base is not None:
        if not isinstance(base, str):
            raise UserError(f"'base' in {path} must be a file name, got {base!r}")
        layers += read_yaml_chain(path.parent / base, seen + (resolved,))
    layers.append((tree, str(path)))
    return layers


def parse_override(item: str) -> dict:
    """`--set a.b=value` as a nested mapping; the value parsed as YAML (a string when it is not)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set expects key=value (e.g. train.epochs=3), got {item!r}")
    try:
        value = yaml.load(raw, Loader=UniqueKeyLoader) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # an unparsable value stays a string; the type check will judge it
    tree: dict = {}
    set_dotted(tree, key.strip(), value)
    return tree


def set_dotted(tree: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def deep_merge(dst: dict, src: dict) -> None:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            deep_merge(dst[key], value)
        else:
            dst[key] = value
