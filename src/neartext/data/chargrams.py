"""Character n-grams for the ``chars`` channel: word-bounded 3- and 4-grams of a text, hashed,
and an in-memory BM25 index over them.

Shared character runs catch what word stems miss: misspellings (``котейка`` / ``котека``),
Russian word forms a stemmer leaves apart, compounds and transliterations. Each word is padded
with ``_`` on both sides (``_кот_`` gives ``_ко``, ``кот``, ``от_``, ``_кот``, ``кот_``), so a
gram never spans two words; texts are NFKC-normalized and casefolded, ``ё`` read as ``е``.
Only a text's first :data:`MAX_CHARS` characters count (what one document costs is bounded).

A document's grams are stored as :func:`gram_counts` (32-bit hashes, CRC-32, with counts); a
:class:`CharIndex` is built from those rows and ranks documents by BM25 (k1 1.2, b 0.75, as
SQLite's FTS5 ranks the keyword channel) over the query's distinct grams.

Example:
    >>> grams("Кот")
    ['_ко', 'кот', 'от_', '_кот', 'кот_']
    >>> index = CharIndex.build([1, 2], [gram_counts("котики падают"), gram_counts("собака")])
    >>> [row for row, _ in index.search("котейки", k=2)]
    [1]
"""

from __future__ import annotations

import math
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from itertools import repeat

import numpy as np

#: characters of a text that count (its first ones)
MAX_CHARS = 10_000
SIZES = (3, 4)
K1, B = 1.2, 0.75
_WORD = re.compile(r"[^\W_]+")


def grams(text: str) -> list[str]:
    """The word-bounded 3- and 4-grams of ``text`` in order (with repeats)."""
    text = unicodedata.normalize("NFKC", text[:MAX_CHARS]).casefold().replace("ё", "е")
    out: list[str] = []
    for word in _WORD.findall(text):
        w = f"_{word}_"
        for n in SIZES:
            out += [w[i:i + n] for i in range(len(w) - n + 1)]
    return out


def padded_words(text: str) -> str:
    """``text``'s words as its grams see them (``_word_``), separated by spaces: a gram (which
    holds no space) is one of ``grams(text)`` exactly when it is a substring of this.

    >>> "_ко" in padded_words("Кот"), "т_к" in padded_words("кот кит")
    (True, False)
    """
    text = unicodedata.normalize("NFKC", text[:MAX_CHARS]).casefold().replace("ё", "е")
    words = _WORD.findall(text)  # (no word holds a space or "_": one join pads them all)
    return "_" + "_ _".join(words) + "_" if words else ""


def shared_grams(query: str, padded: Sequence[str]) -> np.ndarray:
    """How many of the distinct grams of ``query`` each of ``padded`` holds (both as
    :func:`padded_words` gives them): the same as intersecting gram sets text by text, computed
    for all texts at once over their characters' codes (a query's candidates, every query).

    >>> shared_grams(padded_words("cats"), [padded_words("The cat"), "", padded_words("cats")])
    array([3, 0, 7])
    """
    counts: np.ndarray = held_grams(query, padded).sum(axis=1)
    return counts


def held_grams(query: str, padded: Sequence[str]) -> np.ndarray:
    """Which of the distinct grams of ``query`` each of ``padded`` holds, a table of texts by
    the query's grams (both as :func:`padded_words` gives them; the grams in no fixed order):
    a row sums to the text's :func:`shared_grams`, and rows OR-ed together are the grams their
    texts hold together (a line's, from its sentences').

    >>> held_grams(padded_words("cat"), [padded_words("a cat"), padded_words("cab")]).sum(axis=1)
    array([5, 1])
    """
    if not query:
        return np.zeros((len(padded), 0), dtype=bool)
    # the query's characters (0 stands for any other)
    alphabet = np.array(sorted(map(ord, set(query) - {" "})), dtype=np.uint32)
    if len(alphabet) >= (1 << 16) - 1:  # four characters' ranks no longer fit in 64 bits
        wanted = sorted(set(grams_of_padded(query)))
        sets = [set(grams_of_padded(p)) for p in padded]
        return np.array([[g in s for g in wanted] for s in sets], dtype=bool).reshape(
            len(padded), len(wanted))
    # the query, then the texts, each after a line break (in no padded text and in no gram)
    codes = np.frombuffer("\n".join(["", query, *padded]).encode("utf-32-le"),
                          dtype=np.uint32)
    rank = _ranks(alphabet, codes)
    ok = rank > 0  # not a space, a line break or a character the query lacks
    # where each text starts (after its line break): a gram from a position before the first
    # is the query's (no gram spans a line break)
    starts = len(query) + 1 + np.concatenate(
        ([0], np.cumsum(np.fromiter(map(len, padded), dtype=np.int64, count=len(padded)) + 1)))
    first = int(starts[0])
    key, good = rank, ok
    tables = []
    for n in range(2, max(SIZES) + 1):  # the n characters from each position, 16 bits each
        key = (key[:-1] << np.uint64(16)) | rank[n - 1:]
        good = good[:-1] & ok[n - 1:]
        if n not in SIZES:
            continue
        mine = _distinct(key[:first][good[:first]])
        if not len(mine):
            continue
        at = first + np.flatnonzero(good[first:])
        pos = _places(mine, key[at])
        same = pos >= 0
        # the text of each position holding one of the query's grams
        w = np.searchsorted(starts, at[same], side="right") - 1
        # which of the query's grams each text holds (a table of texts x grams)
        held = np.zeros(len(padded) * len(mine), dtype=bool)
        held[w * len(mine) + pos[same]] = True
        tables.append(held.reshape(len(padded), len(mine)))
    if not tables:
        return np.zeros((len(padded), 0), dtype=bool)
    return np.concatenate(tables, axis=1)


def gram_total(padded: str) -> int:
    """How many grams a :func:`padded_words` text has, repeats counted (``len(grams(text))``).

    >>> gram_total(padded_words("The cat sat")), len(grams("The cat sat"))
    (15, 15)
    """
    return int(gram_totals([padded])[0]) if padded else 0


def gram_totals(padded: Sequence[str]) -> np.ndarray:
    """:func:`gram_total` of each of ``padded`` (none of them empty), at once.

    >>> gram_totals([padded_words("The cat sat"), padded_words("кот")]).tolist()
    [15, 5]
    """
    n = len(padded)
    length = np.fromiter(map(len, padded), dtype=np.int64, count=n)
    words = np.fromiter(map(str.count, padded, repeat(" ", n)), dtype=np.int64, count=n) + 1
    # a word of L letters, padded to L + 2, has L 3-grams and L - 1 4-grams: 2 * letters -
    # words, the letters being what is neither a space between words nor their padding
    letters = length - (words - 1) - 2 * words
    return 2 * letters - words


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / the golden ratio: Knuth's multiplicative hash


def _places(mine: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Each of ``keys``' place in the sorted distinct ``mine``, -1 where it is none of them: a
    multiplicative hash into a table of at least 64 slots per key of ``mine`` (a step per key
    where a binary search takes one per halving); the few keys whose slot two of ``mine``
    share are searched for.

    >>> _places(np.array([3, 9, 40], dtype=np.uint64), np.array([9, 4, 40, 3], dtype=np.uint64))
    array([ 1, -1,  2,  0])
    """
    bits = max(8, len(mine).bit_length() + 6)
    shift = np.uint64(64 - bits)
    slots = ((mine * _GOLDEN) >> shift).astype(np.int64)
    table = np.full(1 << bits, -1, dtype=np.int64)
    table[slots] = np.arange(len(mine))
    crowded = np.bincount(slots, minlength=1 << bits) > 1
    at = ((keys * _GOLDEN) >> shift).astype(np.int64)
    out = table[at]
    out[(out >= 0) & (mine[np.maximum(out, 0)] != keys)] = -1
    shared = crowded[at]
    if shared.any():
        some = keys[shared]
        pos = np.minimum(np.searchsorted(mine, some), len(mine) - 1)
        out[shared] = np.where(mine[pos] == some, pos, -1)
    return out


def _distinct(values: np.ndarray) -> np.ndarray:
    """The distinct ``values``, ascending (``np.unique`` without its overhead on a few)."""
    v = np.sort(values)
    return v[np.concatenate(([True], v[1:] != v[:-1]))] if len(v) else v


def _ranks(alphabet: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Each code's place in the sorted ``alphabet`` plus one, 0 where it is not in it (a
    table for the Basic Multilingual Plane, a search for the rest)."""
    table = np.zeros(1 << 16, dtype=np.uint16)
    bmp = alphabet < (1 << 16)
    table[alphabet[bmp]] = np.flatnonzero(bmp) + 1
    rank: np.ndarray = table[np.minimum(codes, (1 << 16) - 1)].astype(np.uint64)
    far = codes >= (1 << 16)
    if far.any():
        at = np.minimum(np.searchsorted(alphabet, codes[far]), len(alphabet) - 1)
        rank[far] = np.where(alphabet[at] == codes[far], at + 1, 0)
    return rank


def grams_of_padded(padded: str) -> list[str]:
    """The grams of a :func:`padded_words` text (as :func:`grams` of the text)."""
    return [w[i:i + n] for w in padded.split() for n in SIZES for i in range(len(w) - n + 1)]


def gram_hashes(text: str) -> Counter[int]:
    """The hashes of ``text``'s grams with how often each occurs."""
    return Counter(zlib.crc32(g.encode()) for g in grams(text))


@lru_cache(maxsize=64)  # a query's search and its norm ask for them in turn
def query_keys(query: str) -> np.ndarray:
    """The distinct gram hashes of ``query``, ascending (read-only: shared by callers)."""
    keys = np.array(sorted(gram_hashes(query)), dtype=np.uint32)
    keys.flags.writeable = False
    return keys


def gram_counts(text: str) -> tuple[bytes, bytes]:
    """What is stored for a document: its distinct gram hashes (uint32, ascending) and their
    counts (uint16, capped), as two blobs."""
    counts = gram_hashes(text)
    keys = np.array(sorted(counts), dtype=np.uint32)
    tf = np.minimum([counts[int(k)] for k in keys], 65535).astype(np.uint16)
    return keys.tobytes(), tf.tobytes()


class CharIndex:
    """BM25 over documents' gram hashes, in memory: postings sorted by gram, each with its
    document's whole BM25 part for that gram (IDF included), so a query sums a few slices
    (``np.bincount``). Built from the stored rows (:meth:`build`); rebuilt when the collection
    changes."""

    def __init__(self, rows: np.ndarray, vocab: np.ndarray, starts: np.ndarray,
                 post_docs: np.ndarray, post_vals: np.ndarray) -> None:
        self.rows = rows            # the documents' row keys (ascending)
        self.vocab = vocab          # distinct gram hashes (ascending)
        self.starts = starts        # postings of vocab[i]: starts[i]:starts[i + 1]
        self.post_docs = post_docs  # index into rows
        n = len(rows)
        df = np.diff(starts)
        # Lucene's non-negative IDF: a gram in most documents still counts a little
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5))
        # each posting's whole BM25 part, IDF included: a query sums slices of it
        self.post_weights = (np.repeat(self.idf, df) * post_vals).astype(np.float32)

    @classmethod
    def build(cls, rows: Sequence[int], blobs: Sequence[tuple[bytes, bytes]]) -> CharIndex:
        """The index of documents ``rows`` (row keys) from their stored :func:`gram_counts`."""
        order = np.argsort(np.asarray(rows, dtype=np.int64), kind="stable")
        keys = np.asarray(rows, dtype=np.int64)[order]
        hashes = [np.frombuffer(blobs[i][0], dtype=np.uint32) for i in order]
        counts = [np.frombuffer(blobs[i][1], dtype=np.uint16) for i in order]
        sizes = np.array([len(h) for h in hashes], dtype=np.int64)
        if not sizes.sum():
            return cls(keys, np.zeros(0, np.uint32), np.zeros(1, np.int64),
                       np.zeros(0, np.int64), np.zeros(0, np.float64))
        h = np.concatenate(hashes)
        tf = np.concatenate(counts).astype(np.float64)
        doc = np.repeat(np.arange(len(keys)), sizes)
        length = np.bincount(doc, weights=tf, minlength=len(keys))
        avg = max(float(length.mean()), 1e-9)
        vals = tf * (K1 + 1) / (tf + K1 * (1 - B + B * length[doc] / avg))
        by_gram = np.argsort(h, kind="stable")
        h, doc, vals = h[by_gram], doc[by_gram], vals[by_gram]
        vocab, starts = np.unique(h, return_index=True)
        return cls(keys, vocab, np.append(starts, len(h)).astype(np.int64), doc, vals)

    def weights(self, query: str) -> dict[int, float]:
        """The IDF of each distinct gram of ``query`` (grams no document has included, at the
        IDF of a gram in none)."""
        n = len(self.rows)
        keys = query_keys(query)
        at = np.minimum(np.searchsorted(self.vocab, keys), max(len(self.vocab) - 1, 0))
        found = (self.vocab[at] == keys) if len(self.vocab) else np.zeros(len(keys), bool)
        idf = np.where(found, self.idf[at] if len(self.vocab) else 0.0,
                       math.log1p((n + 0.5) / 0.5))
        return dict(zip(keys.tolist(), idf.tolist()))

    def norm(self, query: str) -> float:
        """What a document of average length holding each of the query's grams once scores:
        dividing a score by it puts queries on one scale (about 1 = every gram shared)."""
        return sum(self.weights(query).values())

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every document (aligned with :attr:`rows`)."""
        grams_ = query_keys(query)
        at = np.searchsorted(self.vocab, grams_)
        ok = at < len(self.vocab)
        ok[ok] = self.vocab[at[ok]] == grams_[ok]
        at = at[ok]
        if not len(at):
            return np.zeros(len(self.rows), dtype=np.float64)
        # the query's postings as slices (a common gram's runs through most documents: one
        # copy of each slice, no index array as long as all of them)
        spans = list(zip(self.starts[at].tolist(), self.starts[at + 1].tolist()))
        docs = np.concatenate([self.post_docs[a:b] for a, b in spans])
        w = np.concatenate([self.post_weights[a:b] for a, b in spans])
        return np.bincount(docs, weights=w, minlength=len(self.rows))

    def search(self, query: str, k: int, allowed: np.ndarray | None = None
               ) -> list[tuple[int, float]]:
        """The best ``k`` documents (row key, BM25 score) sharing a gram with ``query``, best
        first; ``allowed``: the row keys a filter selects (None: all)."""
        s = self.scores(query)
        if allowed is not None:
            mask = np.isin(self.rows, allowed)
            s = np.where(mask, s, 0.0)
        if k < 1 or not len(s):
            return []
        # the k best of all (a query's common grams reach most documents) and any tied with
        # the k-th, of those sharing a gram; ties go to the lower row key
        top = (np.flatnonzero(s >= -np.partition(-s, k - 1)[k - 1]) if k < len(s)
               else np.arange(len(s)))
        top = top[s[top] > 0]
        top = top[np.lexsort((self.rows[top], -s[top]))][:k]
        return [(int(self.rows[i]), float(s[i])) for i in top]
