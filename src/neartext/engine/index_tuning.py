"""The vector index's search setting chosen on queries like the users' (``index --tune-queries``,
:meth:`neartext.collection.Collection.tune_index`) instead of rows held out of the collection:
the queries checked before anything is written, encoded as searches encode them (the current
version's query adapter applied), and handed to the store, which keeps them for later rebuilds.

Example::

    info = tune_index(col, queries)   # {'ef_search': 144, 'tuned_on': '1000 given queries', ...}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neartext.data.address import Address
from neartext.data.vectors import check_tuning_count, tuning_vectors
from neartext.engine.parts import Parts
from neartext.engine.searching import check_queries
from neartext.errors import Unsupported
from neartext.store.base import TUNING_UNSUPPORTED

Queries = Sequence[str] | np.ndarray  # texts, or query vectors of the collection's model


def check_tuning(address: Address, queries: Queries | None) -> None:
    """Before a new collection is built: its store can tune (a local one), and the queries are
    enough (their vectors' dimension is checked once the collection's is known)."""
    if queries is None:
        return
    if address.kind != "local":
        raise Unsupported(TUNING_UNSUPPORTED)
    check_tuning_count(len(queries))


def as_searched(col: Parts, queries: Queries) -> np.ndarray:
    """``queries`` checked, as the vector index is searched with them."""
    if not col.store.tunes_index():
        raise Unsupported(TUNING_UNSUPPORTED)
    m, adapter = col.current()
    if isinstance(queries, np.ndarray):
        vecs = tuning_vectors(queries, m.dim)
    else:
        check_tuning_count(len(queries))
        check_queries(queries)
        vecs = col.query_encoder.encode(list(queries), kind="query")
    if adapter is not None:  # the index is searched with the adapter's query vectors
        vecs = adapter.apply(vecs)
    return vecs


def tune_index(col: Parts, queries: Queries) -> dict[str, Any]:
    """Choose the search setting on ``queries`` and keep them (the store's ``tune_index``);
    the index's info after."""
    return col.store.tune_index(as_searched(col, queries))
