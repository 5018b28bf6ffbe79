"""The Milvus store: a collection on a Milvus server or cluster, or in a Milvus Lite file
(:class:`MilvusStore`), and its :class:`~neartext.store.factory.StoreKind` (:data:`MILVUS`).

    store.py        MilvusStore: reads, writes, search, the manifest row
    build.py        creating a collection and its life until published
    leases.py       holding the writes of every process (lease rows)
    connection.py   clients, gRPC settings, retries
    layout.py       collection names and index settings
    rows.py         documents and passages as rows
    expressions.py  filters as Milvus boolean expressions
    kind.py         MilvusKind: build, beside, swap, copy
"""

from neartext.store.milvus.connection import GRPC_OPTIONS, connect, disconnect, held, load_pymilvus, retry
from neartext.store.milvus.expressions import conditions_expression, contains_expression, term_expression
from neartext.store.milvus.kind import MILVUS, MilvusKind
from neartext.store.milvus.store import MilvusStore

__all__ = ["GRPC_OPTIONS", "MILVUS", "MilvusKind", "MilvusStore", "conditions_expression", "connect",
           "contains_expression", "disconnect", "held", "load_pymilvus", "retry", "term_expression"]
