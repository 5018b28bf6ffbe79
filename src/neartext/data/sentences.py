"""A text's sentences as the learned ranking's character-gram features read them: the words of
each sentence (and line) of its first :data:`SENTENCE_CHARS` characters as their grams see
them (:func:`~neartext.data.chargrams.padded_words`), and how many of them make up its first
line (its title, when a collection was built from several text columns).

Made once per document where the store keeps them (:func:`parse` and :func:`stored` at each
write, beside the document's character grams; :func:`from_stored` at each search), else from
the text at each search (:func:`read`, which keeps the last :data:`KEPT` texts' between
queries).

Example:
    >>> s = read("Кот упал. Все смеются!\\nКогда на работе")
    >>> s.padded, s.lead
    (('_кот_ _упал_', '_все_ _смеются_', '_когда_ _на_ _работе_'), 2)
    >>> from_stored(*stored(s)) == s == parse("Кот упал. Все смеются!\\nКогда на работе")
    True
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from neartext.data.chargrams import padded_words

#: a text's sentences are looked for in its first characters only (what a query's candidates
#: cost stays bounded: a sentence further on does not count)
SENTENCE_CHARS = 500
#: texts whose sentences :func:`read` keeps between queries (at most this many times
#: :data:`SENTENCE_CHARS` characters: about 13 MB of Russian)
KEPT = 4096
# a sentence ends at a line break, or after ".", "!", "?" or "…" (and closing quotes or
# brackets) before a space
_SENTENCE_END = re.compile(r"\n|(?<=[.!?…])\s+|(?<=[.!?…][\"')»”])\s+")


def sentences(text: str) -> list[str]:
    """The sentences (and lines) of ``text``'s first :data:`SENTENCE_CHARS` characters.

    >>> sentences("Кот упал. Все смеются!\\nКогда на работе")
    ['Кот упал.', 'Все смеются!', 'Когда на работе']
    """
    return [s for s in _SENTENCE_END.split(text[:SENTENCE_CHARS]) if s.strip()]


class Sentences(NamedTuple):
    """A text's sentences: each one's words as its grams see them (``padded``), and how many
    of them make up its first line (``lead``; None when the first line is longer than the
    sentences read, so it is read on its own)."""

    padded: tuple[str, ...]
    lead: int | None


def read(text: str) -> Sentences:
    """The :class:`Sentences` of ``text``, kept between calls (by its first characters only,
    so what is kept stays bounded however long the texts are): a search's candidates."""
    return _kept(text[:SENTENCE_CHARS + 1])


def parse(text: str) -> Sentences:
    """:func:`read` without keeping them: a written document's."""
    return _parse(text[:SENTENCE_CHARS + 1])


def _parse(head: str) -> Sentences:
    """The sentences of a text whose first characters are ``head`` (one more than
    :data:`SENTENCE_CHARS`, to tell whether the text goes on)."""
    padded: list[str] = []
    lead = 0
    for i, part in enumerate(head[:SENTENCE_CHARS].split("\n")):
        padded += [p for p in map(padded_words, sentences(part)) if p]
        if i == 0:
            lead = len(padded)
    # the first line is read whole when it ends (or the text does) within what is read
    whole = "\n" in head[:SENTENCE_CHARS] or len(head) <= SENTENCE_CHARS
    return Sentences(tuple(padded), lead if whole else None)


_kept = lru_cache(maxsize=KEPT)(_parse)


def stored(s: Sentences) -> tuple[str, int | None]:
    """What a store keeps of a text's sentences: their padded words, a line each (they hold
    no line break), and the first line's count."""
    return "\n".join(s.padded), s.lead


def from_stored(padded: str, lead: int | None) -> Sentences:
    """The :class:`Sentences` a store kept (:func:`stored`)."""
    return Sentences(tuple(padded.split("\n")) if padded else (), lead)
