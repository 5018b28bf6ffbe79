"""Metadata and keyword filters, parsed once and translated by each store.

A filter is a conjunction (AND) of terms on metadata fields plus a list of words every matching
text must contain. A term is a :class:`Condition` (``field op value``), or a combination of terms:
:class:`AnyOf` (OR), :class:`AllOf` (AND) and :class:`Not`. Stores translate it: the local store
to SQL, a server store to its own expression language; :func:`matches` is the reference meaning.

The ``--where`` grammar (several ``--where`` are joined with AND)::

    expr      := any
    any       := all ("|" all)*              OR
    all       := unary ("&" unary)*          AND
    unary     := "!" unary | "(" expr ")" | condition
    condition := FIELD OP VALUE              OP: = == != >= <= > <

A VALUE holding ``| & ( )`` or spaces at its ends is quoted (``'...'`` or ``"..."``). ``!``
negates what follows; a document without the field matches no condition, so ``!topic=x`` does
match it (``topic!=x`` does not).

Example:
    >>> f = parse_filter(["topic=sync", "year>=2023"], contains=["offline"])
    >>> [(c.field, c.op, c.value) for c in f.conditions], f.contains
    ([('topic', '=', 'sync'), ('year', '>=', 2023)], ['offline'])
    >>> parse_filter("(topic=billing|topic=refund)&!platform=ios").conditions[0]
    AllOf(terms=(AnyOf(terms=(Condition(field='topic', op='=', value='billing'), \
Condition(field='topic', op='=', value='refund'))), Not(term=Condition(field='platform', op='=', \
value='ios'))))
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from neartext.errors import InputError

OPERATORS = ("=", "!=", ">=", "<=", ">", "<")  # and "==", the same as "="
#: the grammar in a line, for help texts and errors
WHERE_HELP = ("metadata filter: FIELD OP VALUE with OP one of = (or ==) != >= <= > <; combine "
              "with | (or), & (and), ! (not) and parentheses; repeat for AND "
              "(e.g. \"(topic=billing|topic=refund)&!platform=ios\")")
_EXPR = re.compile(r"^\s*([^\s=!<>]+)\s*(==|!=|>=|<=|=|>|<)\s*(.*?)\s*$", re.DOTALL)
_HEAD = re.compile(r"\s*[^\s=!<>|&()]+\s*(?:==|!=|>=|<=|=|>|<)\s*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Condition:
    """``field op value``; numbers compare numerically, everything else as exact text."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class AnyOf:
    """At least one of ``terms`` holds (OR)."""

    terms: tuple[Term, ...]


@dataclass(frozen=True)
class AllOf:
    """Every one of ``terms`` holds (AND)."""

    terms: tuple[Term, ...]


@dataclass(frozen=True)
class Not:
    """``term`` does not hold."""

    term: Term


Term = Condition | AnyOf | AllOf | Not


def term_fields(term: Term) -> set[str]:
    """The metadata fields a term reads."""
    if isinstance(term, Condition):
        return {term.field}
    if isinstance(term, Not):
        return term_fields(term.term)
    return set().union(*(term_fields(t) for t in term.terms))


@dataclass
class Filter:
    """All terms of ``conditions`` must hold and the text must contain every word of
    ``contains``."""

    conditions: list[Term] = field(default_factory=list)
    contains: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.conditions or self.contains)

    @property
    def fields(self) -> set[str]:
        return set().union(*(term_fields(t) for t in self.conditions))


def parse_condition(expr: str) -> Condition:
    """Parse ``"year>=2022"`` or ``"topic = 'billing'"`` into a :class:`Condition`."""
    m = _EXPR.match(expr)
    if not m or not m.group(3) or m.group(3)[0] in "=<>!":
        raise InputError(
            f"bad filter '{expr}'; write FIELD OP VALUE with OP one of: {', '.join(OPERATORS)} "
            "(= may be written ==; e.g. --where \"year>=2022\")"
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
    return Filter([parse_expression(w) for w in (where or [])], [w.strip() for w in words])


def parse_expression(expr: str) -> Term:
    """One ``--where`` expression (see the module docs) as a :class:`Term`; an
    :class:`InputError` naming the position of what is wrong otherwise.

    >>> parse_expression("!platform=ios")
    Not(term=Condition(field='platform', op='=', value='ios'))
    """
    return _Parser(expr).parse()


class _Parser:
    """Recursive descent over the grammar in the module docs; conditions are the runs of text
    between operators (quotes protect operator characters inside values)."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def fail(self, what: str, at: int | None = None) -> InputError:
        at = self.i if at is None else at
        return InputError(f"bad filter '{self.text}' at position {at + 1}: {what}")

    def skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.i] if self.i < len(self.text) else ""

    def parse(self) -> Term:
        if not self.text.strip():
            raise InputError("empty filter; write FIELD OP VALUE (e.g. --where \"year>=2022\")")
        term = self.any()
        if self.peek():
            raise self.fail("unexpected ')'" if self.peek() == ")" else
                            f"unexpected '{self.peek()}'")
        return term

    def any(self) -> Term:
        terms = [self.all()]
        while self.peek() == "|":
            self.i += 1
            terms.append(self.all())
        return terms[0] if len(terms) == 1 else AnyOf(tuple(terms))

    def all(self) -> Term:
        terms = [self.unary()]
        while self.peek() == "&":
            self.i += 1
            terms.append(self.unary())
        return terms[0] if len(terms) == 1 else AllOf(tuple(terms))

    def unary(self) -> Term:
        c = self.peek()
        if c == "!":
            self.i += 1
            return Not(self.unary())
        if c == "(":
            start = self.i
            self.i += 1
            term = self.any()
            if self.peek() != ")":
                raise self.fail("'(' is not closed", start)
            self.i += 1
            return term
        if c in ("", "|", "&", ")"):
            raise self.fail(f"a condition is missing before '{c}'" if c else
                            "a condition is missing at the end")
        return self.condition()

    def condition(self) -> Condition:
        start = self.i
        m = _HEAD.match(self.text, self.i)  # FIELD OP, then the value
        if m is None:
            raise self.fail(f"'{self._run(start)}' is not FIELD OP VALUE (OP one of: "
                            f"{', '.join(OPERATORS)}; quote a value that holds | & ( or ), "
                            "e.g. name='AT&T')", start)
        self.i = m.end()
        if self.i < len(self.text) and self.text[self.i] in "'\"":  # a quoted value
            end = self.text.find(self.text[self.i], self.i + 1)
            if end < 0:
                raise self.fail(f"the quote {self.text[self.i]} is not closed", self.i)
            self.i = end + 1
        else:
            while self.i < len(self.text) and self.text[self.i] not in "|&()":
                self.i += 1
        run = self.text[start:self.i].strip()
        try:
            return parse_condition(run)
        except InputError as e:
            if run == self.text.strip():
                raise
            reason = str(e).removeprefix(f"bad filter '{run}'").lstrip(":; ")
            raise self.fail(f"'{run}': {reason}", start) from None

    def _run(self, start: int) -> str:
        end = start
        while end < len(self.text) and self.text[end] not in "|&()":
            end += 1
        return self.text[start:end].strip()


def matches(flt: Filter, text: str, metadata: dict[str, Any]) -> bool:
    """Evaluate ``flt`` in Python: the reference semantics every store must agree with."""
    folded = text.casefold()
    if any(w.casefold() not in folded for w in flt.contains):
        return False
    return all(term_holds(t, metadata) for t in flt.conditions)


def term_holds(term: Term, metadata: dict[str, Any]) -> bool:
    """Whether ``term`` holds for a document's metadata (the reference meaning)."""
    if isinstance(term, Condition):
        return _holds(term, metadata.get(term.field))
    if isinstance(term, Not):
        return not term_holds(term.term, metadata)
    if isinstance(term, AnyOf):
        return any(term_holds(t, metadata) for t in term.terms)
    return all(term_holds(t, metadata) for t in term.terms)


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
