"""Keyword search on Milvus: Milvus' BM25 function over the ``terms`` field (the same stems as
the local store's FTS5 gets), k1 1.2 and b 0.75 as FTS5's; document frequencies counted by
``text_match`` for the weights of a query's words.

Part of :class:`neartext.store.milvus.MilvusStore` (a mixin).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from neartext.data.filters import Filter
from neartext.data.lexical import terms
from neartext.errors import StoreUnavailable
from neartext.store.base import Hit
from neartext.store.milvus.expressions import all_of, literal
from neartext.store.milvus.rows import MAX_TOPK


class KeywordSearch:
    """Keyword search (see the module docs); what it needs of the store is declared here and
    provided by :class:`MilvusStore`."""

    name: str  # the passages collection
    _text_match: bool  # whether the server answers text_match (else counted by search)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _count(self, expr: str) -> int:
        raise NotImplementedError

    def _search_expression(self, flt: Filter) -> str | None:
        raise NotImplementedError

    def keyword_search(self, queries: Sequence[str], k: int,
                       flt: Filter | None = None) -> list[list[Hit]]:
        """Top ``k`` documents per query by Milvus' BM25 over neartext's stems of the texts."""
        out: list[list[Hit]] = [[] for _ in queries]
        texts = [" ".join(terms(q)) for q in queries]
        asked = [i for i, t in enumerate(texts) if t]
        if k < 1 or not asked:
            return out
        expr = self._search_expression(flt) if flt else ""
        if expr is None:
            return out
        res = self._call("search", self.name, data=[texts[i] for i in asked],
                         limit=min(k, MAX_TOPK), filter=all_of("seq == 0", expr),
                         anns_field="sparse", output_fields=["doc_id"],
                         search_params={"metric_type": "BM25", "params": {}})
        for i, row in zip(asked, res):
            out[i] = [Hit(h["entity"]["doc_id"], abs(float(h["distance"]))) for h in row]
        return out

    def _document_frequencies(self, words: list[str]) -> dict[str, int]:
        return {w: self._document_frequency(w) for w in words}

    @staticmethod
    def _idf(n: int, df: int) -> float:
        return math.log(1 + (n - df + 0.5) / (df + 0.5))  # Milvus' BM25 IDF

    def _document_frequency(self, word: str) -> int:
        """Documents whose stems include ``word``: a ``text_match`` count where the deployment
        has it (Milvus 2.5+ servers, Milvus Lite 3), else the BM25 hits of the word alone,
        counted up to Milvus' largest limit (an IDF floor for words in more documents)."""
        if self._text_match:
            try:
                return self._count(f"seq == 0 and text_match(terms, {literal(word)})")
            except StoreUnavailable:
                raise
            except Exception:  # e.g. C++ Milvus Lite 2.5: "invalid parameter"
                self._text_match = False
        res = self._call("search", self.name, data=[word], limit=MAX_TOPK, filter="seq == 0",
                         anns_field="sparse", output_fields=[],
                         search_params={"metric_type": "BM25", "params": {}})
        return len(res[0]) if res else 0

    def has_keyword_index(self) -> bool:
        return True  # kept by Milvus with every write
