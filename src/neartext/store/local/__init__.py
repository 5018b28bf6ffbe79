"""The embedded store: a collection in a directory, documents and vectors in SQLite, plus an
in-memory vector index (:class:`LocalStore`), and its :class:`~neartext.store.factory.StoreKind`
(:data:`LOCAL`).

    store.py        LocalStore: connections, transactions, reads, writes, semantic search
    index_cache.py  the in-memory vector index and its file (a cache of the database)
    keyword.py      keyword search (FTS5, BM25)
    sql.py          filters as SQL
    sqlite.py       schema, connections, SQLite's errors as one line
    files.py        the manifest written atomically; killed processes' temporary files
    kind.py         LocalKind: build, beside, swap, copy
"""

from neartext.store.local.index_cache import AUTO_ANN_ABOVE, INDEX_FILE
from neartext.store.local.kind import LOCAL, LocalKind
from neartext.store.local.sql import filter_to_sql, term_sql
from neartext.store.local.sqlite import copy_sqlite, storage_error
from neartext.store.local.store import INDEX_KINDS, MANIFEST, MANIFEST_LOCK, LocalStore

__all__ = ["AUTO_ANN_ABOVE", "INDEX_FILE", "INDEX_KINDS", "LOCAL", "MANIFEST", "MANIFEST_LOCK",
           "LocalKind", "LocalStore", "copy_sqlite", "filter_to_sql", "storage_error", "term_sql"]
