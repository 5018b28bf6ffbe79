"""Fusing a semantic and a keyword ranking into one (hybrid search).

Three ways, each per query over the candidates each side returned:

- ``rrf``: reciprocal rank fusion, ``score = sum(1 / (60 + rank))`` over the lists a
  document appears in (Cormack et al., 2009). Needs no score calibration; scores are small.
- ``blend`` (default, ``alpha`` 0.7): ``alpha * cosine + (1 - alpha) * min(1, bm25 / norm)``,
  where ``norm`` is what a document holding every query word once would score: keyword evidence
  counts by how much of the query it covers, not relative to the best keyword match (which may
  be a poor one). A document missing from the keyword list counts 0 there; its cosine is
  computed for every candidate.
- ``learned``: a linear score over a handful of features of each candidate (:data:`FEATURES`:
  its cosine, keyword coverage as in blend, the reciprocal of its rank on each side, and
  whether every query word is in it), with weights ``neartext tune`` fits on the collection's
  own pairs and ratings (logistic regression) and keeps only when they beat the fixed fusions
  on held-out queries. The weights live with the version (its ranking settings).

Example:
    >>> [(d, round(s, 4)) for d, s in rrf(["a", "b", "c"], ["c", "d"], k=3)]
    [('c', 0.0323), ('a', 0.0164), ('b', 0.0161)]
    >>> blend({"a": 0.9, "b": 0.5}, {"b": 6.0}, norm=12.0, alpha=0.5, k=2)
    [('b', 0.5), ('a', 0.45)]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from .errors import InputError

MODES = ("semantic", "keyword", "hybrid")
FUSIONS = ("rrf", "blend", "learned")
FEATURES = ("cosine", "coverage", "semantic_rr", "keyword_rr", "all_words")
RRF_K = 60
# Chosen on Cranfield and 3,000 Quora duplicate pairs with all-MiniLM-L6-v2 (bench/bench_multilingual.py):
# blend at 0.7 beat semantic search on both (nDCG@10 0.42 vs 0.38; 0.894 vs 0.891), while
# RRF lost on the Quora paraphrases (0.887).
Mode = Literal["semantic", "keyword", "hybrid"]
Fusion = Literal["blend", "rrf", "learned"]
DEFAULT_FUSION: Fusion = "blend"
DEFAULT_ALPHA = 0.7


def candidates(k: int) -> int:
    """How many results each side contributes to a fusion for the final top ``k``."""
    return max(50, 3 * k)


def check_mode(mode: str, fusion: str, alpha: float,
               weights: Sequence[float] | None = None) -> None:
    if mode not in MODES:
        raise InputError(f"unknown search mode '{mode}'; choose one of: {', '.join(MODES)}")
    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion '{fusion}'; choose one of: {', '.join(FUSIONS)}")
    if fusion == "learned" and mode == "hybrid" and (
            weights is None or len(weights) != len(FEATURES) + 1
            or not all(math.isfinite(w) for w in weights)):
        raise InputError("the learned fusion ranks with weights 'neartext tune' fits on a "
                         "collection's pairs or ratings; this version has none: use blend or rrf")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be between 0 and 1 (got {alpha})")


def rrf(semantic: Sequence[str], keyword: Sequence[str], k: int) -> list[tuple[str, float]]:
    """Reciprocal rank fusion of two rankings of document ids; the best ``k`` with scores."""
    score: dict[str, float] = {}
    for ranking in (semantic, keyword):
        for rank, doc in enumerate(ranking, start=1):
            score[doc] = score.get(doc, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(score.items(), key=lambda x: (-x[1], x[0]))[:k]


def blend(cosine: dict[str, float], bm25: dict[str, float], norm: float, alpha: float, k: int
          ) -> list[tuple[str, float]]:
    """``alpha * cosine + (1 - alpha) * min(1, bm25 / norm)`` for every document in ``cosine``
    (which must cover the keyword candidates too); the best ``k``. ``norm`` is the query's
    full-match BM25 score (:meth:`LocalStore.keyword_norms`), so a document matching one common
    word of a long query gains little and one matching every word gains ``1 - alpha``."""
    score = {d: alpha * c + (1 - alpha) * (min(1.0, bm25.get(d, 0.0) / norm) if norm > 0 else 0.0)
             for d, c in cosine.items()}
    return sorted(score.items(), key=lambda x: (-x[1], x[0]))[:k]


def features(semantic: Sequence[str], keyword: Sequence[str], cosine: dict[str, float],
             bm25: dict[str, float], norm: float) -> tuple[list[str], np.ndarray]:
    """The candidates of both rankings (semantic first) and their :data:`FEATURES`, one row
    each; ``cosine`` covers every candidate (as for :func:`blend`) but one whose vectors were
    gone when asked for (deleted by another writer meanwhile), which is left out.

    >>> docs, rows = features(["a"], ["b", "gone"], {"a": 0.9, "b": 0.4}, {"b": 3.0}, norm=3.0)
    >>> docs, rows[:, 1].tolist()
    (['a', 'b'], [0.0, 1.0])
    """
    docs = [d for d in dict.fromkeys([*semantic, *keyword]) if d in cosine]
    s_rank = {d: i for i, d in enumerate(semantic)}
    k_rank = {d: i for i, d in enumerate(keyword)}
    rows = np.zeros((len(docs), len(FEATURES)), dtype=np.float64)
    for i, d in enumerate(docs):
        cover = min(1.0, bm25.get(d, 0.0) / norm) if norm > 0 else 0.0
        rows[i] = (cosine[d], cover, 1.0 / (1 + s_rank[d]) if d in s_rank else 0.0,
                   1.0 / (1 + k_rank[d]) if d in k_rank else 0.0, float(cover >= 0.999))
    return docs, rows


def learned(docs: Sequence[str], rows: np.ndarray, weights: Sequence[float], k: int
            ) -> list[tuple[str, float]]:
    """The best ``k`` candidates by ``rows @ weights[:-1] + weights[-1]`` (the fitted
    log-odds of relevance)."""
    w = np.asarray(weights, dtype=np.float64)
    score = rows @ w[:-1] + w[-1] if len(docs) else np.zeros(0)
    return sorted(zip(docs, score.tolist()), key=lambda x: (-x[1], x[0]))[:k]
