"""Every `>>>` example in the docstrings of tools/ and datasets/ runs and prints what it shows
(doctest, from the repository root, so example paths like cfgs/quickstart.yaml resolve).

    uv run pytest tests/test_docstrings.py -q
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for package in ("tools", "datasets")
    for p in (ROOT / package).rglob("*.py")
    if ">>> " in p.read_text()
)


def test_some_modules_have_examples():
    assert {"tools.core.config", "tools.training.engine", "tools.measure.metrics"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, monkeypatch):
    monkeypatch.chdir(ROOT)
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
