"""Documents and passages as Milvus rows: a passage per row (the text, metadata and typed
metadata copies on a document's first passage), checked against Milvus' limits, sent in
requests of bounded size."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from neartext.data.address import Address
from neartext.data.filters import as_number
from neartext.data.lexical import index_text
from neartext.errors import InputError
from neartext.store.base import Document, Passage

MAX_VARCHAR = 65_535  # bytes in a Milvus VARCHAR field


MAX_JSON = 65_536  # bytes in a Milvus JSON value (the server's default limit)


MAX_ID = 1_024  # bytes in a document id


MAX_TOPK = 16_384  # Milvus' largest search limit and query window
REQUEST_BYTES = 8 << 20  # rows per insert request stay well under gRPC's 64 MB default


PASSAGE_FIELDS = ["doc_id", "seq", "start", "end", "hash", "vec"]  # a passage's fields


DOCUMENT_FIELDS = ["doc_id", "text", "meta", "doc_hash"]  # a document's (on its first passage)


def check_document(d: Document, address: Address | str) -> None:
    """Refuse, naming the document, what Milvus cannot store."""
    if len(d.id.encode("utf-8")) > MAX_ID:
        raise InputError(f"{address}: document id '{d.id[:40]}...' is over {MAX_ID} bytes")
    size = max(len(d.text.encode("utf-8")), len(d.text.casefold().encode("utf-8")))
    if size > MAX_VARCHAR:
        raise InputError(f"{address}: document '{d.id}' has {size:,} bytes of text; a Milvus "
                         f"text field holds at most {MAX_VARCHAR:,} (split it, or keep this "
                         "collection in a directory)")
    if len(json.dumps(d.metadata, ensure_ascii=False).encode("utf-8")) > MAX_JSON:
        raise InputError(f"{address}: document '{d.id}': metadata over {MAX_JSON:,} bytes")


def row_key(seq: int, doc_id: str) -> str:
    """The primary key of a document's ``seq``-th passage row."""
    return f"{seq}|{doc_id}"


def document_rows(d: Document, passages: list[Passage]) -> list[dict[str, Any]]:
    """The Milvus rows of one document: one per passage, the text on the first."""
    typed = typed_metadata(d.metadata)
    folded = d.text.casefold()
    return [{"pk": row_key(seq, d.id), "doc_id": d.id, "seq": seq, "start": p.start, "end": p.end,
             "hash": p.hash, "doc_hash": d.hash, "text": d.text if seq == 0 else "",
             "folded": folded if seq == 0 else "", "meta": d.metadata if seq == 0 else {},
             "terms": index_text(d.text) if seq == 0 else "",
             **typed, "vec": floats(p.vector)}
            for seq, p in enumerate(passages)]


def typed_metadata(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Copies of the metadata that Milvus can compare the way :func:`neartext.data.filters.matches`
    does: ``f_has`` (``b`` boolean, ``n`` a number or a string spelling one, ``s`` other),
    ``f_num`` (numbers), ``f_txt`` (text of every non-boolean), ``f_bool``. Nulls are absent."""
    has: dict[str, str] = {}
    num: dict[str, float] = {}
    txt: dict[str, str] = {}
    flag: dict[str, bool] = {}
    for k, v in metadata.items():
        if v is None:
            continue
        if isinstance(v, bool):
            has[k], flag[k] = "b", v
            continue
        n = as_number(v)
        if n is not None and math.isfinite(n):
            has[k], num[k] = "n", n
        else:
            has[k] = "s"
        txt[k] = (json.dumps(v, ensure_ascii=False, separators=(",", ":"))
                  if isinstance(v, (dict, list)) else str(v))
    return {"f_has": has, "f_num": num, "f_txt": txt, "f_bool": flag}


def document_of(row: dict[str, Any]) -> Document:
    return Document(row["doc_id"], row["text"], dict(row["meta"] or {}), row["doc_hash"])


def floats(v: np.ndarray) -> list[float]:
    out: list[float] = np.asarray(v, dtype=np.float32).tolist()
    return out


def as_vector(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float32)


def request_batches(groups: Iterable[list[dict[str, Any]]], dim: int
                     ) -> Iterator[list[dict[str, Any]]]:
    """Groups of rows (a document's) in requests of at most :data:`REQUEST_BYTES` (estimated),
    never splitting a group."""
    batch: list[dict[str, Any]] = []
    size = 0
    for group in groups:
        n = sum(dim * 8 + 2 * sum(len(r.get(f, "")) for f in ("text", "folded", "terms")) + 512
                for r in group)
        if batch and size + n > REQUEST_BYTES:
            yield batch
            batch, size = [], 0
        batch.extend(group)
        size += n
    if batch:
        yield batch
