"""The examples in public docstrings run and are true."""

from __future__ import annotations

import doctest
import importlib

import pytest
from conftest import ROOT

MODULES = ["neartext.corpus", "neartext.cleaning", "neartext.filters", "neartext.store.local",
           "neartext.store.vector_index", "neartext.encoders.registry", "neartext.collection",
           "neartext.mining", "neartext.groups", "neartext.analysis", "neartext.metrics",
           "neartext.evaluate", "neartext.lexical", "neartext.hybrid", "neartext.serve.settings",
           "neartext.topics", "neartext.backends", "neartext.readers", "neartext.validate",
           "neartext.locking", "neartext.manifest", "neartext.searching", "neartext.ingest",
           "neartext.store.factory"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples use paths relative to the repository
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
