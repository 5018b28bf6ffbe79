"""The examples in public docstrings run and are true: every module of the package that shows
one (found, not listed, so a new module's examples are checked too)."""

from __future__ import annotations

import doctest
import importlib
import tempfile

import pytest
from conftest import ROOT

PACKAGE = ROOT / "src" / "neartext"
MODULES = sorted(
    ".".join(("neartext", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py") if ">>>" in p.read_text(encoding="utf-8"))


def test_examples_are_found() -> None:
    assert len(MODULES) > 50 and "neartext.collection" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # examples use paths relative to the repository
    # examples make their directories with tempfile.mkdtemp(): under this test's own, which
    # pytest removes, not in /tmp (a dozen left there at each run of the suite)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
    if name == "neartext.util.atomic":  # (its example's directory is found here)
        assert any(tmp_path.glob("*/a.txt"))
