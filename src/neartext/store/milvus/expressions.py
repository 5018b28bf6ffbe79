"""Filters as Milvus boolean expressions, with the meaning of
:func:`neartext.data.filters.matches`: numbers through ``f_num``, text through ``f_txt``,
booleans through ``f_bool``, ``!=`` only on fields present (``f_has``).

Example:
    >>> from neartext.data.filters import parse_filter
    >>> conditions_expression(parse_filter("year>=2023").conditions)
    '(f_num["year"] >= 2023)'
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from neartext.data.filters import AllOf, Condition, Not, Term
from neartext.errors import InputError, Unsupported


def conditions_expression(conditions: Sequence[Term],
                          resolve_not: Callable[[str], str | bool] | None = None) -> str | bool:
    """A Milvus expression true where every term holds (as in :func:`neartext.data.filters.matches`),
    or ``True``/``False`` when that is decided without one.

    Milvus cannot be asked ``not`` portably: its C++ engine (2.5) refuses the operator, and where
    it is accepted a JSON key a document lacks makes the comparison null and ``not null`` null, so
    ``!topic=x`` would leave out documents without a topic. ``resolve_not(expr)`` turns the
    negation of ``expr`` into an expression over document ids (the store queries which documents
    ``expr`` selects); without it a negation is refused.

    >>> from neartext.data.filters import parse_filter
    >>> conditions_expression(parse_filter(["year>=2023", "topic=sync|topic=x"]).conditions)
    '((f_num["year"] >= 2023) and ((f_txt["topic"] == "sync") or (f_txt["topic"] == "x")))'
    """
    return combine(True, [term_expression(t, resolve_not) for t in conditions])


def term_expression(term: Term, resolve_not: Callable[[str], str | bool] | None = None
                    ) -> str | bool:
    """One filter term as a parenthesised Milvus expression (or ``True``/``False``)."""
    if isinstance(term, Condition):
        return f"({condition_expression(term)})"
    if isinstance(term, Not):
        inner = term_expression(term.term, resolve_not)
        if isinstance(inner, bool):
            return not inner
        if resolve_not is None:
            raise Unsupported("a negated filter (!) needs the collection to resolve it")
        return resolve_not(inner)
    return combine(isinstance(term, AllOf), [term_expression(t, resolve_not)
                                              for t in term.terms])


def combine(every: bool, parts: list[str | bool]) -> str | bool:
    """AND (``every``) or OR of expressions, with ``True``/``False`` folded in."""
    if every and False in parts or not every and True in parts:
        return not every
    kept = [p for p in parts if not isinstance(p, bool)]
    if not kept:
        return every
    joined = (" and " if every else " or ").join(kept)
    return joined if len(kept) == 1 else f"({joined})"


def condition_expression(c: Condition) -> str:
    key = literal(c.field)
    has = f"f_has[{key}]"
    if isinstance(c.value, bool):
        if c.op == "=":
            return f"f_bool[{key}] == {literal(c.value)}"
        return f'{has} == "n" or {has} == "s" or f_bool[{key}] == {literal(not c.value)}'
    if isinstance(c.value, (int, float)):
        if not math.isfinite(c.value):
            raise InputError(f"filter {c.field}{c.op}{c.value}: the number is out of range")
        if c.op == "!=":
            return (f'{has} == "b" or {has} == "s" or '
                    f'({has} == "n" and f_num[{key}] != {literal(c.value)})')
        op = "==" if c.op == "=" else c.op
        return f"f_num[{key}] {op} {literal(c.value)}"
    if c.op == "=":
        return f"f_txt[{key}] == {literal(c.value)}"
    return f'{has} == "b" or (({has} == "n" or {has} == "s") and f_txt[{key}] != {literal(c.value)})'


def contains_expression(words: Sequence[str]) -> str:
    """Case-insensitive substring conditions on the case-folded text (``like``)."""
    parts = []
    for w in words:
        if "\\" in w:
            raise Unsupported(f"--contains '{w}': a backslash cannot be matched in a Milvus "
                              "'like' pattern; leave it out of the word")
        pat = w.casefold().replace("%", "\\%").replace("_", "\\_")
        parts.append(f"folded like {literal('%' + pat + '%')}")
    return " and ".join(parts)


def all_of(*parts: str) -> str:
    return " and ".join(f"({p})" for p in parts if p)


def literal(v: Any) -> str:
    """A Milvus expression literal (strings double-quoted with JSON escapes)."""
    return json.dumps(v, ensure_ascii=False)
