"""Readable labels for groups of texts: their most distinctive words (class-based TF-IDF).

A word scores high for a cluster when it is frequent in the cluster's texts and rare across the
other clusters: ``tf(word, cluster) * log(1 + mean_words_per_cluster / total_count(word))``, the
weighting BERTopic popularised. Words are lowercase, stop words of English and Russian
(:data:`neartext.data.lexical.STOP_WORDS`) and one-letter words are left out; inflected forms are
counted together by their stem and shown as their most frequent form.

Example:
    >>> labels([["The app crashes on start", "Crashes when I open the app"],
    ...         ["Refund my payment", "I want a refund for the payment"]], n_words=2)
    [['app', 'crashes'], ['payment', 'refund']]
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from collections.abc import Sequence

from neartext.data.lexical import STOP_WORDS, WORD, stem

# Words too common in any corpus to name a theme (on top of the search stop words).
FILLERS = frozenset("""
let lets need needs make makes made want wants would like please really keep keeps way lot thing
things use using used new get also much many well back even time times see way always never
""".split())


def _words(text: str) -> list[tuple[str, str]]:
    """``(stem, surface form)`` of the label-worthy words of ``text``."""
    text = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    out = []
    for w in WORD.findall(text):
        if len(w) < 2 or w in STOP_WORDS or w in FILLERS or w.isdigit():
            continue
        out.append((stem(w.replace("ё", "е")), w))
    return out


def labels(groups: Sequence[Sequence[str]], n_words: int = 4) -> list[list[str]]:
    """The ``n_words`` most distinctive words of each group of texts (best first)."""
    counts: list[Counter[str]] = []
    forms: dict[str, Counter[str]] = {}
    for texts in groups:
        c: Counter[str] = Counter()
        for t in texts:
            for s, w in _words(t):
                c[s] += 1
                forms.setdefault(s, Counter())[w] += 1
        counts.append(c)
    total: Counter[str] = Counter()
    for c in counts:
        total.update(c)
    mean_words = sum(total.values()) / max(len(counts), 1)
    out = []
    for c in counts:
        size = sum(c.values()) or 1
        score = {s: (n / size) * math.log(1 + mean_words / total[s]) for s, n in c.items()}
        best = sorted(score, key=lambda s: (-score[s], s))[:n_words]
        out.append([forms[s].most_common(1)[0][0] for s in best])
    return out
