"""Filters as SQL over the metadata JSON of ``documents d``: the local store's translation of
:class:`neartext.data.filters.Filter`, in two-valued logic, with the meaning of
:func:`neartext.data.filters.matches` (tests compare the two on random data).

Example:
    >>> from neartext.data.filters import parse_filter
    >>> filter_to_sql(parse_filter("topic=billing"))[1]
    ['$."topic"', '$."topic"', 'billing']
"""

from __future__ import annotations

from typing import Any

from neartext.data.filters import AnyOf, Condition, Filter, Not, Term


def filter_to_sql(flt: Filter) -> tuple[str, list[Any]]:
    """SQL for :class:`Filter` over ``documents d``; agrees with :func:`neartext.data.filters.matches`."""
    parts: list[str] = []
    params: list[Any] = []
    for w in flt.contains:
        parts.append("instr(nt_fold(d.text), ?) > 0")
        params.append(w.casefold())
    for t in flt.conditions:
        sql, ps = term_sql(t)
        parts.append(sql)
        params += ps
    return (" AND ".join(parts) or "1"), params


def term_sql(term: Term) -> tuple[str, list[Any]]:
    """SQL for one filter term, in two-valued logic: each condition is wrapped so that a missing
    field gives false, not NULL, and ``NOT`` of it gives true, as :func:`neartext.data.filters.matches`
    has it."""
    if isinstance(term, Condition):
        sql, ps = _condition_sql(term)
        return f"COALESCE(({sql}), 0)", ps
    if isinstance(term, Not):
        sql, ps = term_sql(term.term)
        return f"(NOT {sql})", ps
    parts, params = [], []
    for t in term.terms:
        sql, ps = term_sql(t)
        parts.append(sql)
        params += ps
    return "(" + (" OR " if isinstance(term, AnyOf) else " AND ").join(parts) + ")", params


def _condition_sql(c: Condition) -> tuple[str, list[Any]]:
    path = '$."' + c.field.replace('"', '\\"') + '"'
    val = "json_extract(d.metadata, ?)"
    typ = "json_type(d.metadata, ?)"
    if isinstance(c.value, bool):
        want = "true" if c.value else "false"
        if c.op == "=":
            return f"{typ} = ?", [path, want]
        if c.op == "!=":
            return f"({typ} IS NOT NULL AND {typ} != 'null' AND {typ} != ?)", [path, path, path, want]
        return "0", []
    if isinstance(c.value, (int, float)):
        if c.op == "!=":
            return (f"({typ} IS NOT NULL AND {typ} != 'null' AND COALESCE("
                    f"nt_num(IIF({typ} IN ('true','false'), NULL, {val})) != ?, 1))",
                    [path, path, path, path, float(c.value)])
        # JSON true/false come out of json_extract as 1/0: they are not numbers here.
        return (f"nt_num(IIF({typ} IN ('true','false'), NULL, {val})) {c.op} ?",
                [path, path, float(c.value)])
    txt = f"CAST({val} AS TEXT)"
    if c.op == "=":
        return f"({typ} NOT IN ('true','false','null') AND {txt} = ?)", [path, path, c.value]
    return (f"({typ} IS NOT NULL AND {typ} != 'null' AND ({typ} IN ('true','false') OR {txt} != ?))",
            [path, path, path, path, c.value])
