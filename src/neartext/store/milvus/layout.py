"""Where a collection lives in Milvus and how it is indexed: the passages collection (the one
the manifest names after a swap), the meta collection beside it, a new version's name, and
the index and search settings resolved once at creation."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from neartext.data.address import Address
from neartext.errors import InputError
from neartext.store.base import StoreSettings

META_SUFFIX = "__neartext"


# A collection's passages live in a Milvus collection named by its manifest (``milvus.passages``;
# absent: the collection's own name). A new version (reindex, a both-side adapter, rollback) is
# built beside it as a whole collection under ``<name>__neartext_<what>_<hex>`` and swapped in
# by pointing the manifest at its passages (see MilvusKind.swap).
BESIDE_INFIX = META_SUFFIX + "_"


# Index types by neartext's --index names; "auto" lets a server choose (AUTOINDEX, Milvus'
# recommended default) and is exact (FLAT) on Milvus Lite, which is meant for small data.
INDEX_TYPES = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT"}


DEFAULT_INDEX_PARAMS = {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 1024}}


DEFAULT_SEARCH_PARAMS = {"HNSW": {"ef": 64}, "IVF_FLAT": {"nprobe": 16}}


METRICS = ("IP", "COSINE")  # both give "higher is closer" scores; L2 would break thresholds


def resolve_settings(address: Address, index: str, index_params: dict[str, Any],
                     search_params: dict[str, Any]) -> dict[str, Any]:
    """Milvus index type, metric and parameters from neartext's ``--index`` and the
    ``--index-param``/``--search-param`` options (unknown values are refused)."""
    if index == "auto":
        index_type = "FLAT" if address.kind == "milvus-lite" else "AUTOINDEX"
    elif index in INDEX_TYPES:
        index_type = INDEX_TYPES[index]
    else:
        raise InputError(f"unknown index '{index}'; choose one of: auto, {', '.join(INDEX_TYPES)}")
    params = dict(index_params)
    metric = str(params.pop("metric_type", "IP")).upper()
    if metric not in METRICS:
        raise InputError(f"metric_type {metric} is not supported; use IP (the default; equal to "
                         "cosine on the normalized vectors neartext stores) or COSINE")
    return {"index_type": index_type, "metric_type": metric,
            "index_params": {**DEFAULT_INDEX_PARAMS.get(index_type, {}), **params},
            "search_params": {**DEFAULT_SEARCH_PARAMS.get(index_type, {}), **search_params}}


def same_build(left: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether an unfinished build's manifest describes the build ``new`` describes (the same
    model, dimension, index and options; only when it was started differs)."""
    when = ("created", "neartext_version")
    stored = json.loads(json.dumps(new, ensure_ascii=False))  # as the manifest is stored
    return {k: v for k, v in left.items() if k not in when} == \
        {k: v for k, v in stored.items() if k not in when}


def names_of(address: Address) -> tuple[str, str]:
    """The Milvus collections named after a neartext collection: its first passages (where its
    manifest names no others) and its manifest and state."""
    return str(address.name), f"{address.name}{META_SUFFIX}"


def passages_name(manifest: dict[str, Any], address: Address) -> str:
    """The Milvus collection holding the passages of the collection at ``address``."""
    return str(StoreSettings.of(address, manifest).milvus.get("passages") or address.name)


def vector_dim(description: dict[str, Any]) -> int | None:
    """The dimension of the vector field in a ``describe_collection`` answer."""
    for f in description.get("fields") or []:
        dim = (f.get("params") or {}).get("dim")
        if f.get("name") == "vec" and dim is not None:
            return int(dim)
    return None


def renamed(address: Address, name: str) -> Address:
    """``address`` with another collection name (its text too)."""
    assert address.name is not None
    text = address.text[:-len(address.name)] if address.text.endswith(address.name) else \
        address.text + "/"
    return dataclasses.replace(address, name=name, text=text + name)
