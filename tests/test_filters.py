"""Filter parsing, and the SQL translation agreeing with the reference Python semantics."""

from __future__ import annotations

import random

import numpy as np
import pytest

from neartext.errors import InputError
from neartext.filters import Condition, matches, parse_condition, parse_filter
from neartext.store import Document, Passage
from neartext.store.local import LocalStore


@pytest.mark.parametrize("expr,cond", [
    ("topic=support", Condition("topic", "=", "support")),
    ("topic == 'sup port'", Condition("topic", "=", "sup port")),
    ("year>=2022", Condition("year", ">=", 2022)),
    ("score<0.5", Condition("score", "<", 0.5)),
    ("code='007'", Condition("code", "=", "007")),
    ("flag!=true", Condition("flag", "!=", True)),
])
def test_parse(expr, cond):
    assert parse_condition(expr) == cond


@pytest.mark.parametrize("expr", ["year", "year>=", ">=3", "year>=abc", "a=>b"])
def test_parse_errors(expr):
    with pytest.raises(InputError, match="filter"):
        parse_condition(expr)


def test_sql_translation_agrees_with_python_reference(tmp_path):
    rng = random.Random(1)
    values = [None, 0, 1, 2022, 2023, 2.5, "2022", "abc", "", "sup port", True, False, "007"]
    fields = ["year", "topic", "flag"]
    docs = []
    for i in range(300):
        meta = {f: rng.choice(values) for f in fields if rng.random() < 0.8}
        meta = {k: v for k, v in meta.items()}
        text = rng.choice(["Crash on start", "Ёлка и Sync", "refund please", "SYNC fails"])
        docs.append(Document(f"d{i}", text, meta, f"h{i}"))
    store = LocalStore.create(tmp_path / "s", {"dim": 2})
    vec = np.array([1.0, 0.0], dtype=np.float32)
    store.write(docs, [Passage(d.id, 0, 1, d.hash, vec) for d in docs], [])
    exprs = [f"{f}{op}{v}" for f in fields for op in ["=", "!=", ">=", "<", ">", "<="]
             for v in ["2022", "2.5", "0"]]
    exprs += [f"{f}{op}{v}" for f in fields for op in ["=", "!="]
              for v in ["abc", "'2022'", "true", "false", "''", "'sup port'", "007"]]
    for expr in exprs:
        for contains in ([], ["sync"], ["ёЛКА"]):
            flt = parse_filter([expr], contains)
            want = {d.id for d in docs if matches(flt, d.text, d.metadata)}
            hits = store.search(vec[None, :], k=1000, flt=flt)[0]
            assert {h.doc_id for h in hits} == want, (expr, contains)
