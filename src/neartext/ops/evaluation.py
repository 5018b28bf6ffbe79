"""Measure retrieval through a collection: a model on (query, passage) files in any search
mode (keyword and hybrid go through a temporary collection, ranked as ``Collection.search``
ranks), a model with a version's adapter, and an existing collection on held-out queries
(``neartext eval retrieval`` and ``eval collection``). Semantic retrieval alone needs no
collection: :func:`neartext.engine.modeleval.semantic_retrieval`.

Example:
    >>> from neartext.data.evaldata import load_retrieval_pairs          # doctest: +SKIP
    >>> data = load_retrieval_pairs("pairs.csv")                          # doctest: +SKIP
    >>> evaluate_retrieval_modes("default", data, ["hybrid"])["hybrid"]["mrr@10"]  # doctest: +SKIP
    0.81...
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from neartext.algo.adapters import Adapter
from neartext.algo.known import load_known
from neartext.algo.metrics import retrieval_metrics
from neartext.collection import Collection
from neartext.data.address import parse_address
from neartext.data.corpus import Record, read_corpus
from neartext.data.evaldata import RetrievalData, load_retrieval_pairs
from neartext.data.hashing import text_hash
from neartext.data.ranking import DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_MODE, Fusion, Mode, SearchOptions
from neartext.encoders import Encoder, load_encoder
from neartext.engine.hybrid import needs_known
from neartext.engine.modeleval import judged, semantic_retrieval
from neartext.errors import InputError
from neartext.ops.versions import version_view
from neartext.store.factory import store_exists


def evaluate_retrieval(model: str | Encoder, data: RetrievalData, mode: Mode = DEFAULT_MODE, *,
                       fusion: Fusion = DEFAULT_FUSION, alpha: float = DEFAULT_ALPHA
                       ) -> dict[str, float]:
    """MRR@10, nDCG@10, Recall@1/5/10, MAP@100 (primary: mrr@10) of one search ``mode``."""
    return evaluate_retrieval_modes(model, data, [mode], fusion=fusion, alpha=alpha)[mode]


def model_with_adapter(spec: str) -> tuple[str | Encoder, Any]:
    """A ``--model`` value of ``eval retrieval``: a model (name or path), ``MODEL+ADAPTER.npz``
    (that model with a query adapter), or ``COLLECTION@VERSION`` (a collection's model with
    that version's adapter, e.g. ``memes/@v2``). Returns the model and the adapter (or None)."""
    if "+" in spec and spec.endswith(".npz"):
        name, _, file = spec.rpartition("+")
        enc = load_encoder(name)
        return enc, Adapter.load(file, enc.fingerprint)
    where, at, version = spec.rpartition("@")
    if at and where and (version.lstrip("vV").isdecimal() or version in ("current", "base")):
        with Collection.open(where) as col:
            _, _, adapter = version_view(col, version, in_place=False)
            return col.encoder, adapter
    return spec, None


def evaluate_retrieval_modes(model: str | Encoder, data: RetrievalData,
                             modes: Sequence[Mode], *, fusion: Fusion = DEFAULT_FUSION,
                             alpha: float = DEFAULT_ALPHA, adapter: Any = None
                             ) -> dict[str, dict[str, float]]:
    """:func:`evaluate_retrieval` for several modes, encoding the corpus once. Semantic alone
    runs an exact vector search; with keyword or hybrid the corpus goes into a temporary
    collection searched as ``Collection.search`` does. ``adapter``: an adapter
    (:mod:`neartext.algo.adapters`) applied to the query vectors (and to the documents' when it is
    both-side)."""
    for mode in modes:
        SearchOptions(mode=mode, fusion=fusion, alpha=alpha)  # checked before any encoding
    qrels = judged(data)
    if list(modes) == [DEFAULT_MODE]:
        return {DEFAULT_MODE: semantic_retrieval(model, data, adapter)}
    enc = model if isinstance(model, Encoder) else load_encoder(model)
    doc_ids = list(data.corpus)
    qids = list(qrels)
    texts = [data.queries[q] for q in qids]
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="neartext-eval-") as tmp, \
            Collection.create(Path(tmp) / "corpus", model=enc) as col:
        if adapter is not None and adapter.documents_too:  # stored as its version stores them
            vecs = adapter.apply(enc.encode([data.corpus[d] for d in doc_ids], kind="document"))
            col.upsert([Record(d, data.corpus[d], {}, vector=v) for d, v in zip(doc_ids, vecs)])
        else:
            col.upsert([Record(d, data.corpus[d], {}) for d in doc_ids])
        for mode in modes:
            rows = col.search_many(texts, 100, mode=mode, fusion=fusion, alpha=alpha,
                                   version=(col.manifest, adapter))
            out[mode] = retrieval_metrics({q: [r.id for r in row] for q, row in zip(qids, rows)},
                                          qrels)
    return out


def evaluate_collection(
    collection: Any, path: str | Path, query: str | None = None, passage: str | None = None,
    gold_id: str | None = None, *, encoding: str = "utf-8", mode: Mode | None = None,
    fusion: Fusion | None = None, alpha: float | None = None, version: Any = None,
) -> dict[str, Any]:
    """Retrieval metrics of an existing collection (its model, index and chunking) for held-out
    (query, passage) rows. Each passage is found in the collection by ``gold_id`` column, else
    by its text (exact, then with whitespace collapsed); rows whose passage is not there are
    skipped and counted. Without a ``mode``, the version ranks as it was tuned (its adapter
    applies either way). ``version``: rank as that version (a manifest and adapter from
    :func:`neartext.ops.versions.version_view`) instead of the current one. Returns the metrics
    plus ``queries``, ``skipped``, the ranking used (``mode``; for hybrid its ``fusion`` and
    the blend's ``alpha``, None for another fusion), the ``ranking`` in a few words
    (``hybrid learned linear``) and how many of the queries the version ``remembered`` (the
    pairs and ratings it was tuned on: for them the figures are no held-out measure).
    """
    p = Path(path)
    if gold_id is not None and passage is not None:
        raise InputError("give --passage (a document's text or id) or --gold-id (its id), not both")
    data = load_retrieval_pairs(p, query, gold_id or passage, encoding=encoding)
    found = documents_of(collection, data.corpus.values(), ids_only=gold_id is not None,
                         field=data.columns[1])
    gold: dict[str, dict[str, float]] = {}
    for qid, rel in data.qrels.items():
        for pid in rel:
            for i in found[data.corpus[pid]]:
                gold.setdefault(qid, {})[i] = 1.0
    queries = data.queries
    if not gold:
        raise InputError(f"{p}: none of its passages is in the collection {collection.path}: "
                         "no overlap to evaluate (check the file, or give --gold-id with document ids)")
    qids = list(gold)
    if version is None:
        collection.refresh()
        version = collection.current()
    opts = collection.search_options(100, None, mode, fusion, alpha, manifest=version[0])
    results = collection.search_many([queries[q] for q in qids], options=opts, version=version)
    ranked = {q: [r.id for r in rows] for q, rows in zip(qids, results)}
    hybrid = {"fusion": opts.fusion, "alpha": opts.alpha if opts.fusion == "blend" else None}
    remembered = 0
    if opts.known and needs_known(opts.features):
        known = set(load_known(opts.known).queries)
        remembered = sum(queries[q] in known for q in qids)
    return {**retrieval_metrics(ranked, gold), "queries": len(qids),
            "skipped": len(queries) - len(qids), "mode": opts.mode,
            **(hybrid if opts.mode == "hybrid" else {}), "ranking": opts.describe(),
            "remembered": remembered}


MIN_CANDIDATES = 100  # fewer documents to rank against and most models score near the ceiling


def distractor_texts(source: str | Path, encoding: str = "utf-8") -> Iterator[str]:
    """The texts of ``source`` to rank queries against besides their own passages: a
    collection's documents (a directory or a Milvus address), else a corpus file's texts
    (:func:`neartext.data.corpus.read_corpus`, its text column by the usual rules)."""
    address = parse_address(source)
    if store_exists(address):
        with Collection.open(address) as col:
            yield from col.store.iter_texts()
        return
    yield from (r.text for r in read_corpus(source, encoding=encoding))


def retrieval_warnings(data: RetrievalData, results: dict[str, dict[str, float]]) -> list[str]:
    """What makes a retrieval test unable to tell models apart: too few candidates per query,
    or every column scoring the same."""
    out = []
    if len(data.corpus) < MIN_CANDIDATES:
        out.append(f"each query was ranked against only {len(data.corpus)} passages (those of "
                   f"{Path(data.source).name}), too few to tell models apart; rank against more "
                   "with --corpus (a collection or a corpus file)")
    scores = {tuple(sorted(r.items())) for r in results.values()}
    if len(results) > 1 and len(scores) == 1:
        mrr = next(iter(results.values())).get("mrr@10", float("nan"))
        out.append(f"all {len(results)} columns score the same (MRR@10 {mrr:.3f}): this test "
                   "cannot tell them apart")
    return out


def documents_of(collection: Any, passages: Iterable[str], *, ids_only: bool = False,
                 field: str | None = None) -> dict[str, list[str]]:
    """The documents of ``collection`` each passage of a pairs file names: the document whose
    id it is, else (unless ``ids_only``: a ``--gold-id`` column) those whose text it is (exact,
    then with whitespace collapsed), else, when the passages' column is named like a field of
    the documents (``field``: a text column such as ``title``, or metadata such as ``link``),
    those whose field holds it (whitespace collapsed); ``[]`` for a passage found nowhere. The
    one rule by which ``tune``, ``improve`` and ``eval collection`` read gold passages.

    Example: memes built with ``--text title,description`` and pairs whose ``title`` column
    names them (``tune --passage title``)::

        documents_of(col, ["Кот и огурец"], field="title")   # {"Кот и огурец": ["t-3f…"]}
    """
    known = collection.store.document_hashes()
    wanted = list(dict.fromkeys(passages))
    out = {t: [t] if t in known else [] for t in wanted}
    if ids_only or all(out.values()):
        return out
    if field is not None and field not in collection.store.metadata_fields():
        field = None
    by_hash: dict[str, list[str]] = {}
    for doc_id, h in known.items():
        by_hash.setdefault(h, []).append(doc_id)
    by_text: dict[str, list[str]] = {}
    by_field: dict[str, list[str]] = {}
    for doc in all_documents(collection):
        by_text.setdefault(" ".join(doc.text.split()), []).append(doc.id)
        value = (doc.metadata or {}).get(field) if field is not None else None
        if value is not None:
            by_field.setdefault(" ".join(str(value).split()), []).append(doc.id)
    for t in wanted:
        if not out[t]:
            flat = " ".join(t.split())
            out[t] = (by_hash.get(text_hash(t)) or by_text.get(flat)
                      or by_field.get(flat, []))
    return out


def all_documents(collection: Any, batch: int = 5000) -> Any:
    """Every stored document of ``collection``, read ``batch`` at a time."""
    ids = list(collection.store.document_hashes())
    for start in range(0, len(ids), batch):
        yield from collection.store.get(ids[start:start + batch])
