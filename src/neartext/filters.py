"""Metadata and keyword filters, parsed once and translated by each store.

A filter is a conjunction (AND) of :class:`Condition` objects on metadata fields plus a list of
words every matching text must contain. Stores translate it: the local store to SQL, a server
store to its own expression language.

Example:
    >>> f = parse_filter(["topic=sync", "year>=2023"], contains=["offline"])
    >>> [(c.field, c.op, c.value) for c in f.conditions], f.contains
    ([('topic', '=', 'sync'), ('year', '>=', 2023)], ['offline'])
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

OPERATORS = ("=", "!=", ">=", "<=", ">", "<")
_EXPR = re.compile(r"^\s*([^\s=!<>]+)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$", re.DOTALL)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Condition:
    """``field op value``; numbers compare numerically, everything else as exact text."""

    field: str
    op: str
    value: Any


@dataclass
class Filter:
    """All conditions must hold and the text must contain every word of ``contains``."""

    conditions: list[Condition] = field(default_factory=list)
    contains: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.conditions or self.contains)

    @property
    def fields(self) -> set[str]:
        return {c.field for c in self.conditions}


def parse_condition(expr: str) -> Condition:
    """Parse ``"year>=2022"`` or ``"topic = 'billing'"`` into a :class:`Condition`."""
    m = _EXPR.match(expr)
    if not m or not m.group(3) or m.group(3)[0] in "=<>!":
        raise InputError(
            f"bad filter '{expr}'; write FIELD OP VALUE with OP one of: {', '.join(OPERATORS)} "
            "(e.g. --where \"year>=2022\")"
        )
    name, op, raw = m.group(1), m.group(2), m.group(3)
    op = "=" if op == "==" else op
    value: Any
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        value = raw[1:-1]
    elif _NUMBER.fullmatch(raw):
        value = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
        if not math.isfinite(value) or abs(value) > 2**63:
            raise InputError(f"bad filter '{expr}': {raw} is out of range")
    elif raw.lower() in ("true", "false"):
        value = raw.lower() == "true"
    else:
        value = raw
    if op in (">", "<", ">=", "<=") and not isinstance(value, (int, float)):
        raise InputError(f"bad filter '{expr}': '{op}' needs a number, got '{raw}'")
    return Condition(name, op, value)


def parse_filter(
    where: Sequence[str] | str | None = None, contains: Iterable[str] | None = None
) -> Filter:
    """Build a :class:`Filter` from ``--where`` expressions and ``--contains`` words."""
    if isinstance(where, str):
        where = [where]
    words = [w for w in (contains or []) if w.strip()]
    return Filter([parse_condition(w) for w in (where or [])], [w.strip() for w in words])


def matches(flt: Filter, text: str, metadata: dict[str, Any]) -> bool:
    """Evaluate ``flt`` in Python: the reference semantics every store must agree with."""
    folded = text.casefold()
    if any(w.casefold() not in folded for w in flt.contains):
        return False
    return all(_holds(c, metadata.get(c.field)) for c in flt.conditions)


def as_number(v: Any) -> float | None:
    """A metadata value as a number, if it is one (or a string that spells one)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
        return float(v)
    return None


def _holds(c: Condition, v: Any) -> bool:
    if v is None:
        return False  # a missing field matches no condition, not even '!='
    if isinstance(c.value, bool):
        ok = isinstance(v, bool) and v == c.value
        return ok if c.op == "=" else (not ok if c.op == "!=" else False)
    if isinstance(c.value, (int, float)):
        n = as_number(v)
        if n is None:
            return c.op == "!="
        return {"=": n == c.value, "!=": n != c.value, ">=": n >= c.value, "<=": n <= c.value,
                ">": n > c.value, "<": n < c.value}[c.op]
    s = str(v)
    return bool(s == c.value) if c.op == "=" else bool(s != c.value)
