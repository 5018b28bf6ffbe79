"""Caches keyed by texts that stay small: what a function made of a text is remembered only for
short texts, so that a long-running process (a service, a bot) does not hold long ones.

Example::

    @kept_when_short(40, 200_000)
    def stem(word: str) -> str: ...
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, wraps
from typing import TypeVar

T = TypeVar("T")


def kept_when_short(max_chars: int, maxsize: int) -> Callable[[Callable[[str], T]],
                                                              Callable[[str], T]]:
    """``fn(text)`` remembered (least recently used first out, ``maxsize`` of them) for texts
    of at most ``max_chars`` characters, worked out each time for longer ones.

    >>> calls = []
    >>> @kept_when_short(3, 10)
    ... def upper(text: str) -> str:
    ...     calls.append(text)
    ...     return text.upper()
    >>> [upper(t) for t in ("ab", "ab", "abcd", "abcd")], calls
    (['AB', 'AB', 'ABCD', 'ABCD'], ['ab', 'abcd', 'abcd'])
    """

    def wrap(fn: Callable[[str], T]) -> Callable[[str], T]:
        kept = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(text: str) -> T:
            return kept(text) if len(text) <= max_chars else fn(text)

        return call

    return wrap
