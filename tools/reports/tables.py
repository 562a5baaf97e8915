"""Markdown tables: the one implementation every report uses (report, findings, at_init, and the
benchmark page).

    >>> from tools.reports.tables import markdown_table, values_table, records_table
    >>> print(markdown_table(["pruner", "top-1 (%)"], [["snip", "91.20"]]))
    | pruner | top-1 (%) |
    | --- | --- |
    | snip | 91.20 |
    >>> print(values_table(["run", "drop (pts)", "goal"], [["a", 0.456, True], ["b", None, False]]))
    | run | drop (pts) | goal |
    | --- | --- | --- |
    | a | 0.46 | MET |
    | b |  | NOT MET |
    >>> print(records_table([{"model": "resnet20", "note": "a|b"}, {"model": "vgg16"}], ["model", "note"]))
    | model | note |
    | --- | --- |
    | resnet20 | a/b |
    | vgg16 | - |
"""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub Markdown table; each cell as str() writes it (format numbers before)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def value_text(value) -> str:
    """A report cell: a goal's bool as MET / NOT MET, floats to 2 decimals, a missing value empty."""
    if isinstance(value, bool):
        return "MET" if value else "NOT MET"
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def values_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """markdown_table of raw values, each written by value_text (scripts.report's tables)."""
    return markdown_table(header, [[value_text(v) for v in row] for row in rows])


def records_table(records: Sequence[dict], columns: Sequence[str], *, missing: str = "-") -> str:
    """markdown_table of dicts, one row each, `missing` where a record lacks a column; a "|" inside a
    cell becomes "/" so it cannot split the cell (docs/benchmarks.md's tables)."""
    return markdown_table(columns, [[str(r.get(c, missing)).replace("|", "/") for c in columns] for r in records])
