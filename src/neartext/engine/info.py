"""What ``neartext info`` and the service's ``GET /collections/{name}`` show of a collection:
its size, model and settings, index, fields and scripts.

Example::

    collection_info(Collection.open("feedback/")).documents   # -> 247
"""

from __future__ import annotations

from neartext.data.results import CollectionInfo
from neartext.engine.parts import Parts
from neartext.store.factory import kind_of


def collection_info(col: Parts) -> CollectionInfo:
    """:class:`CollectionInfo` of ``col`` (the texts' scripts are counted once per write)."""
    m, store = col.manifest, col.store
    return CollectionInfo(
        path=str(col.address),
        store=col.address.kind,
        documents=store.count(),
        passages=store.passage_count(),
        model=m.model.name,
        fingerprint=m.model.fingerprint,
        dim=m.dim,
        metric=m.metric,
        index=store.index_info(),
        chunking=m.chunking,
        prefixes={"query": m.model.settings.get("query_prefix"),
                  "document": m.model.settings.get("document_prefix")},
        pooling=m.model.settings.get("pooling"),
        max_seq_length=m.model.settings.get("max_seq_length"),
        metadata_fields=sorted(store.metadata_fields()),
        scripts=store.script_shares(),
        keyword_index=store.has_keyword_index(),
        source=m.source,
        threshold=m.threshold,
        created=m.created,
        neartext_version=m.neartext_version,
        bytes_on_disk=kind_of(col.address).bytes_on_disk(col.address),
    )
