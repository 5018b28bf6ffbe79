"""Filter parsing, and the SQL translation agreeing with the reference Python semantics."""

from __future__ import annotations

import random

import numpy as np
import pytest

from neartext.data.filters import Condition, matches, parse_condition, parse_filter
from neartext.errors import InputError
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


# -- OR, NOT and grouping ---------------------------------------------------------------------

@pytest.mark.parametrize("expr,want", [
    ("topic=billing|topic=refund", "AnyOf"),
    ("!platform=ios", "Not"),
    ("(topic=billing|topic=refund)&!platform=ios", "AllOf"),
    ("title='a|b&(c)'", "Condition"),
    ("name=O'Brien", "Condition"),
    ("topic = 'sup port'", "Condition"),
])
def test_parse_expressions(expr, want):
    from neartext.data.filters import parse_expression

    assert type(parse_expression(expr)).__name__ == want


@pytest.mark.parametrize("expr,message", [
    ("a=1|", "position 5: a condition is missing at the end"),
    ("(a=1", "position 1: '(' is not closed"),
    ("a=1)", "position 4: unexpected ')'"),
    ("|a=1", "position 1: a condition is missing before '|'"),
    ("name=AT&T", "position 9: 'T' is not FIELD OP VALUE"),
    ("x>=abc|y=1", "position 1: 'x>=abc': '>=' needs a number"),
    ("t='open", "position 3: the quote ' is not closed"),
    ("", "empty filter"),
])
def test_unbalanced_or_broken_expressions_name_the_position(expr, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("|", r"\|")):
        parse_filter([expr])


def random_term(rng: random.Random, depth: int = 0) -> str:
    """A random --where expression over the fields and values of the tests here."""
    roll = rng.random()
    if depth >= 2 or roll < 0.4:
        f = rng.choice(["year", "topic", "flag"])
        op = rng.choice(["=", "!=", ">=", "<"])
        v = rng.choice(["2022", "2.5", "abc", "true", "'2022'", "0"])
        if op in (">=", "<") and v in ("abc", "true", "'2022'"):
            op = "="
        return f"{f}{op}{v}"
    if roll < 0.6:
        return "!" + random_term(rng, depth + 1)
    joiner = "|" if roll < 0.8 else "&"
    parts = [random_term(rng, depth + 1) for _ in range(rng.randint(2, 3))]
    return "(" + joiner.join(parts) + ")"


def test_or_not_in_sql_agree_with_python_reference(tmp_path):
    rng = random.Random(7)
    values = [None, 0, 1, 2022, 2023, 2.5, "2022", "abc", "", True, False]
    docs = []
    for i in range(300):
        meta = {f: rng.choice(values) for f in ("year", "topic", "flag") if rng.random() < 0.7}
        docs.append(Document(f"d{i}", rng.choice(["Crash on start", "SYNC fails"]), meta, f"h{i}"))
    store = LocalStore.create(tmp_path / "s", {"dim": 2})
    vec = np.array([1.0, 0.0], dtype=np.float32)
    store.write(docs, [Passage(d.id, 0, 1, d.hash, vec) for d in docs], [])
    nonempty = 0
    for _ in range(150):
        expr = random_term(rng)
        flt = parse_filter([expr, random_term(rng)] if rng.random() < 0.3 else [expr])
        want = {d.id for d in docs if matches(flt, d.text, d.metadata)}
        assert {h.doc_id for h in store.search(vec[None, :], k=1000, flt=flt)[0]} == want, expr
        nonempty += 0 < len(want) < len(docs)
    assert nonempty > 50  # most expressions select some documents, not all or none
    # a document without the field: 'topic!=abc' does not match it, '!topic=abc' does
    missing = {d.id for d in docs if "topic" not in d.metadata}
    got_not = {h.doc_id for h in store.search(vec[None, :], 1000, parse_filter("!topic=abc"))[0]}
    got_ne = {h.doc_id for h in store.search(vec[None, :], 1000, parse_filter("topic!=abc"))[0]}
    assert missing <= got_not and not missing & got_ne


def test_cli_delete_by_filter_counts_asks_and_deletes(demo_copy, capsys):
    from neartext import Collection
    from neartext.cli import main

    with Collection.open(demo_copy) as col:
        total = len(col)
        selected = {d.id for d in col.get(col.store.document_hashes()) if matches(
            parse_filter(["topic=billing|topic=refund", "!platform=ios"]), d.text, d.metadata)}
    assert selected
    argv = ["delete", str(demo_copy), "--where", "topic=billing|topic=refund",
            "--where", "!platform=ios"]
    # no terminal to ask on, no --yes: refused, nothing deleted
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"the filter selects {len(selected)} documents; nothing deleted (pass --yes" in err
    assert main(["delete", str(demo_copy), "--where", "topic=billing|"]) == 1
    assert "position 15: a condition is missing at the end" in capsys.readouterr().err
    assert main(["delete", str(demo_copy), "--where", "colour=red", "--yes"]) == 1
    assert "unknown metadata field 'colour'" in capsys.readouterr().err
    assert main(["delete", str(demo_copy), "fb-0001", "--where", "topic=x"]) == 1
    with Collection.open(demo_copy) as col:
        assert len(col) == total
    assert main([*argv, "--yes", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert out["removed"] == len(selected) and out["documents"] == total - len(selected)
    with Collection.open(demo_copy) as col:
        assert not col.get(sorted(selected)) and len(col) == total - len(selected)
