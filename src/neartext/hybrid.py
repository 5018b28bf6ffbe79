"""Fusing a semantic and a keyword ranking into one (hybrid search).

Two ways, both per query over the candidates each side returned:

- ``rrf``: reciprocal rank fusion, ``score = sum(1 / (60 + rank))`` over the lists a
  document appears in (Cormack et al., 2009). Needs no score calibration; scores are small.
- ``blend`` (default, ``alpha`` 0.7): ``alpha * cosine + (1 - alpha) * min(1, bm25 / norm)``,
  where ``norm`` is what a document holding every query word once would score: keyword evidence
  counts by how much of the query it covers, not relative to the best keyword match (which may
  be a poor one). A document missing from the keyword list counts 0 there; its cosine is
  computed for every candidate.

Example:
    >>> [(d, round(s, 4)) for d, s in rrf(["a", "b", "c"], ["c", "d"], k=3)]
    [('c', 0.0323), ('a', 0.0164), ('b', 0.0161)]
    >>> blend({"a": 0.9, "b": 0.5}, {"b": 6.0}, norm=12.0, alpha=0.5, k=2)
    [('b', 0.5), ('a', 0.45)]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from .errors import InputError

MODES = ("semantic", "keyword", "hybrid")
FUSIONS = ("rrf", "blend")
RRF_K = 60
# Chosen on Cranfield and 3,000 Quora duplicate pairs with all-MiniLM-L6-v2 (bench/bench_multilingual.py):
# blend at 0.7 beat semantic search on both (nDCG@10 0.42 vs 0.38; 0.894 vs 0.891), while
# RRF lost on the Quora paraphrases (0.887).
Mode = Literal["semantic", "keyword", "hybrid"]
Fusion = Literal["blend", "rrf"]
DEFAULT_FUSION: Fusion = "blend"
DEFAULT_ALPHA = 0.7


def candidates(k: int) -> int:
    """How many results each side contributes to a fusion for the final top ``k``."""
    return max(50, 3 * k)


def check_mode(mode: str, fusion: str, alpha: float) -> None:
    if mode not in MODES:
        raise InputError(f"unknown search mode '{mode}'; choose one of: {', '.join(MODES)}")
    if fusion not in FUSIONS:
        raise InputError(f"unknown fusion '{fusion}'; choose one of: {', '.join(FUSIONS)}")
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
