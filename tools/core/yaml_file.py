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
