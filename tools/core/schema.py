"""What a config section may hold: its types (checked and coerced key by key, one-line errors) and
its ranges (`Bound`, run by the section's `check`). The sections themselves live in their layers;
tools.core.config loads and composes them.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Toy:
    ...     lr: float = 0.1
    ...     def check(self, bound):
    ...         bound("lr", gt=0)
    >>> check_tree({"lr": "5e-4"}, Toy, "--set", "toy.", every_key=["toy.lr"])  # YAML reads 5e-4 as a string
    >>> build(Toy, {"lr": "5e-4"}, "toy.").lr
    0.0005
    >>> check_ranges(Toy(lr=0), lambda key: "--set", "toy.")
    Traceback (most recent call last):
    tools.core.errors.UserError: toy.lr must be > 0, got 0 in --set; fix it
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from typing import Any, Callable

from tools.core.errors import UserError


# ----------------------------------------------------------------------------- range checks
class Bound:
    """The range checks of one config section, run once when the config loads. Every section
    dataclass has `check(self, bound)`; `bound("lr", gt=0)` raises a one-line UserError naming the
    key, the bad value, the allowed range and the layer that set it (file, --set, flags)."""

    def __init__(self, section: Any, prefix: str, origin: Callable[[str], str]):
        self.section, self.prefix, self.origin = section, prefix, origin

    def __call__(
        self,
        key: str,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
        lt: float | None = None,
        why: str = "",
    ) -> None:
        value = getattr(self.section, key)
        items = (
            value.items()
            if isinstance(value, dict)
            else (((f"[{i}]", v) for i, v in enumerate(value)) if isinstance(value, list) else [("", value)])
        )
        for sub, v in items:
            bad = (
                (ge is not None and v < ge)
                or (gt is not None and v <= gt)
                or (le is not None and v > le)
                or (lt is not None and v >= lt)
            )
            if bad:
                name = self.prefix + key + (f".{sub}" if isinstance(value, dict) else sub)
                note = f" ({why})" if why else ""
                raise UserError(
                    f"{name} must be {_allowed(ge, gt, le, lt)}{note}, got {v!r} in "
                    f"{self.origin(self.prefix + key)}; fix it"
                )


def _allowed(ge, gt, le, lt) -> str:
    def num(x) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    low = f"[{num(ge)}" if ge is not None else f"({num(gt)}" if gt is not None else None
    high = f"{num(le)}]" if le is not None else f"{num(lt)})" if lt is not None else None
    if low and high:
        return f"in {low}, {high}"
    if low:
        return f"{'>=' if ge is not None else '>'} {low[1:]}"
    return f"{'<=' if le is not None else '<'} {high[:-1]}"


def check_ranges(section: Any, origin: Callable[[str], str], prefix: str = "") -> None:
    """Every section's `check`, nested sections included."""
    if hasattr(section, "check"):
        section.check(Bound(section, prefix, origin))
    for name in hints(type(section)):
        value = getattr(section, name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, origin, prefix + name + ".")


# ----------------------------------------------------------------------------- types
def hints(cls: type) -> dict[str, Any]:
    """Key -> type of a section; the whole config (tools.core.config.Config) lists its sections."""
    sections = getattr(cls, "section_types", None)
    return sections() if sections else _type_hints(cls)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}


def is_section(hint: Any) -> bool:
    return dataclasses.is_dataclass(hint)


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of `cls`, sections before their keys."""
    keys = []
    for name, hint in hints(cls).items():
        keys.append(prefix + name)
        if is_section(hint):
            keys += all_keys(hint, prefix + name + ".")
    return keys


def check_tree(tree: dict, cls: type, source: str, prefix: str, every_key: list[str]) -> None:
    """A UserError naming the first unknown key (with the nearest of `every_key`) or wrong type."""
    known = hints(cls)
    for key, value in tree.items():
        full = prefix + str(key)
        if key not in known:
            raise UserError(f"unknown key {full} in {source}{_suggest(full, every_key)}")
        hint = known[key]
        if is_section(hint):
            if not isinstance(value, dict):
                raise UserError(f"key {full} in {source} must be a section (a mapping), got {value!r}")
            check_tree(value, hint, source, full + ".", every_key)
        else:
            coerce(value, hint, full, source)


def _suggest(full: str, every_key: list[str]) -> str:
    close = difflib.get_close_matches(full, every_key, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else "; see the config reference in docs/config.md"


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(typing.get_args(hint)[1])}"
    return {int: "an integer", float: "a finite number", bool: "true/false", str: "a string"}.get(hint, str(hint))


def coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """`value` as type `hint` (an int where a float goes becomes a float), else a one-line UserError."""

    def bad() -> UserError:
        return UserError(f"key {key} in {source} must be {_type_name(hint)}, got {value!r}")

    if hint is Any:  # free-form values (model.kwargs): YAML already limited them to plain data
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], key, source)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise bad()
        return [coerce(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        key_type, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise bad()
        return {coerce(k, key_type, key, source): coerce(v, item, f"{key}.{k}", source) for k, v in value.items()}
    if hint in (bool, int, str):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise bad()
    if hint is float:
        try:  # PyYAML reads 5e-4 (no dot) as a string
            number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float, str)) else None
        except (ValueError, OverflowError):
            number = None
        if number is None or not math.isfinite(number):
            raise bad()
        return number
    raise TypeError(f"unsupported config type {hint!r} for {key}")  # a schema bug, not user input


def build(cls: type, tree: dict, prefix: str) -> Any:
    """An instance of `cls` from a checked tree (missing keys keep their defaults)."""
    known = hints(cls)
    kwargs = {}
    for key, value in tree.items():
        hint = known[key]
        if is_section(hint):
            kwargs[key] = build(hint, value, prefix + key + ".")
        else:
            kwargs[key] = coerce(value, hint, prefix + key, "config")
    return cls(**kwargs)
