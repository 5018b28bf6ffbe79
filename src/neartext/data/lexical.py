"""Words for keyword search: Unicode-aware tokenization and stemming for Russian and English.

Texts become lowercase word stems: Cyrillic words through the Snowball Russian stemmer, Latin
words through the Snowball English one, digits and other scripts as they are (``ё`` is read as
``е``); common function words (:data:`STOP_WORDS`) are left out. The same function makes the
terms stored in the collection's full-text index and the terms of a query, so ``мемы`` finds
``мемов`` and ``crashed`` finds ``crashes``.

Example:
    >>> terms("Котики падают; the app CRASHED twice (XJ-4000)")
    ['котик', 'пада', 'app', 'crash', 'twice', 'xj', '4000']
    >>> match_expression("crashes, XJ-4000!")
    '"crash" OR "xj" OR "4000"'
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import Stemmer

from neartext.util.caching import kept_when_short

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters/digits; "doesn't" is one word
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[a-z]")
_ASCII_LETTER = re.compile(r"[A-Za-z]")


# Function words left out of the index and of queries: they match nearly every text, and a
# query's "when" or "the" would otherwise pull unrelated documents into a hybrid ranking.
STOP_WORDS = frozenset("""
a about after again all also am an and any are as at be because been before being but by can
could did do does doing each even ever every for from get gets got had has have he her here his
how i if in into is it its just me more most my no not now of on once one only or other our out
over same she should so some still such than that the their them then there these they this
those through to too until up us very was we were what when where which while who why will with
would yet you your can't cannot didn't doesn't don't i'd i'll i'm i've isn't it's let's
that's there's won't wasn't aren't weren't you're they're we're
а без бы был была были было в вам вас во вот все всё вы где да для до его ее её если есть еще ещё
же за и из или им их к как ко когда кто ли мне мы на над не нет ни но о об от по под при с со так
там то тоже только ты у уже чем что чтобы эта эти это я меня мой моя мои очень после себя
свой своя свои тут этот этого этой них нас нам ему ей сам сама раз при через
""".split())


@lru_cache(maxsize=1)
def _stemmers() -> tuple[object, object]:

    return Stemmer.Stemmer("russian"), Stemmer.Stemmer("english")


#: words up to this long are remembered once stemmed (200,000 of them); a longer one (a hash, a
#: data URI's base64) is stemmed each time. Kept too, 50,000 documents holding 1,000 characters
#: of base64 each grew a process by 55 MB (200,000 words of 10,000 characters: some 2 GB)
CACHED_WORD_CHARS = 40


@kept_when_short(CACHED_WORD_CHARS, 200_000)
def stem(word: str) -> str:
    """The stem of one lowercase word (Russian or English by its script; others unchanged).

    >>> stem("кошками"), stem("running"), stem("x1")
    ('кошк', 'run', 'x1')
    """
    ru, en = _stemmers()
    if _CYRILLIC.search(word):
        return ru.stemWord(word)  # type: ignore[attr-defined, no-any-return]
    if _LATIN.search(word) and word.replace("'", "").isalpha():
        return en.stemWord(word)  # type: ignore[attr-defined, no-any-return]
    return word


def terms(text: str) -> list[str]:
    """The stems of the words of ``text``, in order, without :data:`STOP_WORDS`."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    return [stem(w.replace("ё", "е")) for w in WORD.findall(text) if w not in STOP_WORDS]


def index_text(text: str) -> str:
    """What the full-text index stores for ``text``: its stems separated by spaces."""
    return " ".join(terms(text))


def match_expression(query: str) -> str:
    """An FTS5 MATCH expression for ``query``: any of its stems (BM25 ranks documents with more
    and rarer ones higher); ``""`` when the query has no words."""
    seen = dict.fromkeys(terms(query))
    return " OR ".join(f'"{t}"' for t in seen)


def script_shares(texts: Iterable[str]) -> dict[str, float]:
    """Share of ``texts`` written mostly in Cyrillic, mostly in Latin, or neither.

    >>> script_shares(["привет мир", "hello", "123"])
    {'cyrillic': 0.333, 'latin': 0.333, 'other': 0.333}
    """
    counts = {"cyrillic": 0, "latin": 0, "other": 0}
    for t in texts:
        cyr = len(_CYRILLIC.findall(t))
        lat = len(_ASCII_LETTER.findall(t))
        counts["cyrillic" if cyr > lat else "latin" if lat > cyr else "other"] += 1
    n = max(sum(counts.values()), 1)
    return {k: round(v / n, 3) for k, v in counts.items()}
