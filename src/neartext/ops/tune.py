"""``neartext tune``: learn a query-side adapter from a collection's own data, measure it on
held-out queries, and promote it only when it beats the current version.

Training data comes from the collection: a (query, passage) file whose passages are stored
documents (matched by text, or by id), and/or the ratings users gave (👍 = relevant, 👎 = a hard
negative). Documents are represented by their stored vectors, so only the queries are encoded.

Example:
    >>> from neartext.ops.tune import tune                            # doctest: +SKIP
    >>> report = tune(col, pairs="pairs.csv")                       # doctest: +SKIP
    >>> report.promoted, report.after["mrr@10"] - report.before["mrr@10"]  # doctest: +SKIP
    (True, 0.08)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neartext.algo.adapters import (
    MIN_PAIRS,
    Adapter,
    PassageRows,
    check_kind,
    paired_gain,
    queries_needed,
    split_groups,
    train_adapter,
)
from neartext.algo.metrics import retrieval_metrics
from neartext.data.evaldata import load_retrieval_pairs
from neartext.data.ranking import TEXT_MODES, Ranking
from neartext.engine.feedback import FeedbackStore
from neartext.engine.searching import search_vectors
from neartext.errors import InputError
from neartext.ops.evaluation import documents_of
from neartext.ops.learning import (
    Measured,
    against_fixed,
    choose_row,
    confusions,
    crossfit,
    fit_fusion,
    model_side,
    remember,
)
from neartext.ops.reports import TuneReport
from neartext.ops.versions import between_spaces, keep_candidate, promote
from neartext.store.base import Hit, Store, StoreBase
from neartext.util.linalg import top_k
from neartext.util.progress import progress_bar

if TYPE_CHECKING:
    from neartext.collection import Collection

# MRR@10 an adapter must gain over the current version on held-out queries to be promoted, on
# average, with the lower end of the gain's 95% bootstrap interval above 0 as well
DEFAULT_MARGIN = 0.005
# the ranking settings tried on the held-out queries (mode, fusion, alpha)
SETTINGS: list[Ranking] = [
    Ranking("semantic"), Ranking("keyword"), Ranking("chars"), Ranking("hybrid", "rrf"),
    *(Ranking("hybrid", "blend", a) for a in (0.3, 0.5, 0.7, 0.9))]


def settings_for(store: Store) -> list[Ranking]:
    """The fixed :data:`SETTINGS` ``store`` can rank with (chars only where it has the channel)."""
    return [s for s in SETTINGS if s.mode != "chars" or store.has_chars_channel]


#: documents whose vectors a ``tune`` keeps once read (its candidates'; beyond, read again)
MEMO_DOCUMENTS = 100_000


class _SearchMemo:
    """The collection's store with each query's hits and each candidate's vectors kept:
    ``tune`` ranks the same queries under every setting, and the keyword and chars sides
    depend on no adapter (on 100,000 documents the repeated searches were four fifths of a
    ``tune``'s time; with 2,000 pairs the candidates' vectors were read 7,856 times, one read
    per query and setting). Searches without a filter only."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._keyword: dict[tuple[str, int], list[Hit]] = {}
        self._chars: dict[tuple[str, int], list[Hit]] = {}
        self._semantic: dict[tuple[bytes, int], list[Hit]] = {}
        self._vectors: dict[str, np.ndarray] = {}
        self._weights: dict[str, dict[str, float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def keyword_search(self, queries: Sequence[str], k: int, flt: Any = None) -> list[list[Hit]]:
        assert flt is None  # tuning ranks the whole collection
        return self._by_text(self._keyword, self._store.keyword_search, queries, k)

    def chars_search(self, queries: Sequence[str], k: int, flt: Any = None) -> list[list[Hit]]:
        assert flt is None
        return self._by_text(self._chars, self._store.chars_search, queries, k)

    def keyword_weights(self, queries: Sequence[str]) -> list[dict[str, float]]:
        """Each query's word weights as first counted in this run, like its keyword hits: one
        state of the collection for every setting measured (the store counts a query's words
        again after any write, and under a writer's stream of them ``tune`` on Milvus spent
        most of its time recounting)."""
        missing = [q for q in dict.fromkeys(queries) if q not in self._weights]
        if missing:
            self._weights.update(zip(missing, self._store.keyword_weights(missing)))
        return [self._weights[q] for q in queries]

    @staticmethod
    def _by_text(kept: dict[tuple[str, int], list[Hit]],
                 search: Callable[[list[str], int, Any], list[list[Hit]]],
                 queries: Sequence[str], k: int) -> list[list[Hit]]:
        missing = [q for q in dict.fromkeys(queries) if (q, k) not in kept]
        if missing:
            for q, row in zip(missing, search(missing, k, None)):
                kept[(q, k)] = row
        return [kept[(q, k)] for q in queries]

    def doc_vectors(self, doc_ids: Sequence[str]) -> dict[str, np.ndarray]:
        missing = [d for d in dict.fromkeys(doc_ids) if d not in self._vectors]
        found = self._store.doc_vectors(missing) if missing else {}
        if len(self._vectors) < MEMO_DOCUMENTS:
            self._vectors.update(found)
        return {d: v for d in doc_ids
                if (v := self._vectors.get(d, found.get(d))) is not None}

    def search(self, queries: np.ndarray, k: int, flt: Any = None) -> list[list[Hit]]:
        assert flt is None
        vecs = np.ascontiguousarray(queries, dtype=np.float32)
        keys = [(v.tobytes(), k) for v in vecs]
        missing = [i for i, key in enumerate(keys) if key not in self._semantic]
        if missing:
            for i, row in zip(missing, self._store.search(vecs[missing], k, None)):
                self._semantic[keys[i]] = row
        return [self._semantic[key] for key in keys]


class _MovedStore:
    """The collection's store as a search would see it with the documents' vectors in another
    space (a both-side adapter not current yet): semantic search and document vectors over the
    moved vectors, held in memory; the rest (keyword search, documents) from the store. A
    document written since (found by a keyword search) has its stored vectors moved by
    ``move`` when asked for."""

    def __init__(self, store: Store, doc_ids: list[str], vectors: np.ndarray,
                 move: Callable[[np.ndarray], np.ndarray]) -> None:
        self._store = store
        self._move = move
        self._ids = doc_ids
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._rows: dict[str, list[int]] = {}
        for row, d in enumerate(doc_ids):
            self._rows.setdefault(d, []).append(row)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def search(self, queries: np.ndarray, k: int, flt: Any = None) -> list[list[Hit]]:
        assert flt is None  # tuning ranks the whole collection
        n = min(len(self._ids), 4 * k)
        scores, pos = top_k(np.asarray(queries, dtype=np.float32), self._vectors, n)
        rows = ([Hit(self._ids[int(p)], float(v)) for v, p in zip(sv, sp)]
                for sv, sp in zip(scores, pos))
        return StoreBase.best_per_document(rows, k)

    def doc_vectors(self, doc_ids: list[str]) -> dict[str, np.ndarray]:
        out = {d: self._vectors[self._rows[d]] for d in doc_ids if d in self._rows}
        newer = [d for d in doc_ids if d not in self._rows]
        for d, vecs in (self._store.doc_vectors(newer).items() if newer else ()):
            out[d] = self._move(np.asarray(vecs, dtype=np.float32))
        return out


def _check_both(col: Collection) -> None:
    """An :class:`InputError` (or :class:`Unsupported`) when the collection cannot hold a
    both-side adapter."""
    if not col.manifest.model.settings.get("normalize", True):
        raise InputError(f"{col.address}: its vectors are not normalized (normalize: false); "
                         "a both-side adapter maps unit vectors: use --side query")


def evaluate_setting(col: Collection, queries: list[str], base: np.ndarray,
                     gold: list[set[str]], adapter: Adapter | None,
                     setting: Ranking | Mapping[str, Any],
                     store: Any = None) -> tuple[dict[str, float], np.ndarray]:
    """Retrieval metrics of the queries as a search with ``adapter`` and ``setting`` ranks the
    documents (not passages), and each query's reciprocal rank (0 outside the top 10).
    ``store``: the documents as that adapter's version would store them (default: as now)."""

    ranking = Ranking.from_dict(setting) if isinstance(setting, Mapping) else setting
    opts = ranking.options(10, state=col.path)
    vecs = None if opts.mode in TEXT_MODES else (
        base if adapter is None else adapter.apply(base))
    hits = search_vectors(store or col.store, bool(col.manifest.chunking), vecs, queries, None,
                          opts, model_side(adapter, base))
    rr = np.array([next((1.0 / (i + 1) for i, r in enumerate(row) if r.id in g), 0.0)
                   for row, g in zip(hits, gold)])
    metrics = retrieval_metrics({str(i): [r.id for r in row] for i, row in enumerate(hits)},
                                {str(i): {d: 1.0 for d in g} for i, g in enumerate(gold)})
    return metrics, rr


@dataclass
class TrainingData:
    """(query, document) pairs from a file and the ratings, with what was left out and why."""

    queries: list[str]  # one per pair
    doc_ids: list[str]  # the pair's relevant document
    hard: list[tuple[int, str]]  # (pair index, document rated not relevant)
    from_file: int
    from_feedback: int
    notes: list[str]
    ratings_through: int = 0  # the newest rating id read
    columns: list[str] = field(default_factory=list)  # the pairs file's columns read

    def gold(self, held: Sequence[bool] | np.ndarray, side: bool = True
             ) -> tuple[list[str], list[set[str]]]:
        """The distinct queries of the pairs whose ``held`` is ``side`` (in the order first
        seen) and each one's relevant documents.

        >>> data = TrainingData(["a", "b", "a"], ["1", "2", "3"], [], 3, 0, [])
        >>> queries, golds = data.gold([True, False, True])
        >>> queries, [sorted(g) for g in golds], data.gold([True, False, True], False)
        (['a'], [['1', '3']], (['b'], [{'2'}]))
        """
        found: dict[str, set[str]] = {}
        for q, d, h in zip(self.queries, self.doc_ids, held):
            if h == side:
                found.setdefault(q, set()).add(d)
        return list(found), list(found.values())


def gather(col: Collection, pairs: str | Path | None, feedback: bool,
           query_column: str | None, passage_column: str | None,
           gold_id_column: str | None = None) -> TrainingData:
    """The training pairs of ``pairs`` (passages matched to stored documents by id or text,
    :func:`neartext.ops.evaluation.documents_of`; ``gold_id_column``: by id only) and, with
    ``feedback``, of the ratings (👍 pairs; 👎 hard negatives of a query with a 👍)."""

    queries: list[str] = []
    doc_ids: list[str] = []
    notes: list[str] = []
    columns: list[str] = []
    from_file = 0
    if pairs is not None:
        if gold_id_column is not None and passage_column is not None:
            raise InputError("give --passage (a document's text or id) or --gold-id (its id), "
                             "not both")
        data = load_retrieval_pairs(pairs, query_column, gold_id_column or passage_column)
        columns = list(data.columns)
        found = documents_of(col, data.corpus.values(), ids_only=gold_id_column is not None,
                             field=data.columns[1])
        missing: list[str] = []
        for qid, rel in data.qrels.items():
            for pid in rel:
                passage = data.corpus[pid]
                if not found[passage]:
                    missing.append(passage)
                    continue
                queries.append(data.queries[qid])
                doc_ids.append(found[passage][0])
                from_file += 1
        if missing:
            field = data.columns[1] if data.columns[1] in col.store.metadata_fields() else None
            what = ("an id" if gold_id_column else
                    f"a passage (a text, an id or a document's '{field}')" if field else
                    "a passage (a text or an id)")
            notes.append(f"{len(missing)} pairs of {pairs} name {what} that is not in the "
                         f"collection, e.g. {missing[0][:80]!r}; left out")
    hard: list[tuple[int, str]] = []
    from_feedback = 0
    through = 0
    if feedback:
        store = FeedbackStore(col.path)
        through = store.newest_id()
        ratings = store.latest()
        store.close()
        known = set(col.store.document_hashes()) if ratings else set()
        gone = 0
        down: list[tuple[str, str]] = []
        for (q, doc), relevant in ratings.items():
            if doc not in known:
                gone += 1
            elif relevant:
                queries.append(q)
                doc_ids.append(doc)
                from_feedback += 1
            else:
                down.append((q, doc))
        first: dict[str, int] = {}
        for i, q in enumerate(queries):
            first.setdefault(q, i)
        for q, doc in down:
            if q in first:  # a 👎 teaches only next to a 👍 of the same query
                hard.append((first[q], doc))
        if gone:
            notes.append(f"{gone} ratings name documents no longer in the collection; left out")
    return TrainingData(queries, doc_ids, hard, from_file, from_feedback, notes, through, columns)


def without_gone(data: TrainingData, stored: Container[str]) -> TrainingData:
    """``data`` without the pairs whose document was deleted by another writer between
    reading the pairs and reading the stored vectors (said in a note)."""
    keep = [i for i, d in enumerate(data.doc_ids) if d in stored]
    if len(keep) == len(data.doc_ids):
        return data
    if len(keep) < MIN_PAIRS:
        raise InputError(f"{len(data.doc_ids) - len(keep)} of the pairs' documents were "
                         f"deleted while tuning read the collection; {len(keep)} pairs are "
                         f"left, at least {MIN_PAIRS} are needed: run it again")
    new_index = {old: new for new, old in enumerate(keep)}
    return dataclasses.replace(
        data, queries=[data.queries[i] for i in keep], doc_ids=[data.doc_ids[i] for i in keep],
        hard=[(new_index[i], d) for i, d in data.hard if i in new_index],
        notes=[*data.notes, f"{len(data.doc_ids) - len(keep)} pairs name documents deleted "
                            "while tuning read the collection; left out"])


def tune(
    col: Collection,
    pairs: str | Path | None = None,
    *,
    feedback: bool = False,
    kind: str = "linear",
    side: str = "query",
    held_out: float = 0.2,
    margin: float = DEFAULT_MARGIN,
    force: bool = False,
    query_column: str | None = None,
    passage_column: str | None = None,
    gold_id_column: str | None = None,
    seed: int = 0,
    encode: Callable[[list[str]], np.ndarray] | None = None,
    progress: bool = False,
) -> TuneReport:
    """Train an adapter on ``pairs`` and/or the ratings, evaluate it on held-out queries
    against the current version, promote it when MRR@10 gains at least ``margin`` (or
    ``force``), else keep it as a candidate. Nothing changes unless it is promoted.
    ``side="both"``: the adapter maps the documents too (their stored vectors are mapped when
    it is promoted; for paraphrases, mining and dedup).

    ``encode``: how to get query vectors (default: the collection's encoder; the service
    passes its batcher, so tuning shares the model with live searches). ``progress``: show
    the rankings measured (the long part on a large collection) as they go."""
    if pairs is None and not feedback:
        raise InputError("give training pairs (--pairs FILE), --feedback, or both")
    if not math.isfinite(margin):
        raise InputError(f"--margin must be a finite number (got {margin})")
    if not 0 < held_out < 1:
        raise InputError(f"--held-out must be a share between 0 and 1 (got {held_out})")
    check_kind(kind, side)
    if side == "both":
        _check_both(col)
    data = gather(col, pairs, feedback, query_column, passage_column, gold_id_column)
    if len(data.queries) < MIN_PAIRS:
        raise InputError(
            f"{col.address}: {len(data.queries)} usable (query, document) pairs "
            f"({data.from_file} from the file, {data.from_feedback} 👍 ratings); at least "
            f"{MIN_PAIRS} are needed to learn from" + "".join(f"; {n}" for n in data.notes))
    col.refresh()
    # (a collection whose n-grams were made before the sentences' table existed gets it now:
    # its searches then read the candidates' sentences instead of making them each time)
    col.store.ensure_chars()
    measured_version = col.manifest.version
    current = col.adapter
    current_setting = col.manifest.ranking().setting()
    doc_ids: list[str] = []
    parts: list[np.ndarray] = []
    for ids, vecs in col.store.iter_vectors():
        doc_ids += ids
        parts.append(vecs)
    stored = np.concatenate(parts).astype(np.float32, copy=False)
    del parts
    # the documents as the encoder gives them (a current both-side adapter's mapping undone)
    docs = between_spaces(current, None)(stored)
    passages = PassageRows(doc_ids)
    data = without_gone(data, passages)
    unique = list(dict.fromkeys(data.queries))
    vectors = encode(unique) if encode else col.encoder.encode(unique, kind="query")
    vec_of = dict(zip(unique, vectors))
    q = np.stack([vec_of[t] for t in data.queries]).astype(np.float32)
    # a document's passage nearest to the query is its target (and, for a negative, the one
    # that confused it), in the current version's space: its stored vectors, and the queries
    # as it maps them (only a collection built in passages has a choice to make)
    near = q if current is None or not passages.chunked else current.apply(q)
    pos = passages.nearest(near, stored, list(enumerate(data.doc_ids)))
    # each query's keyword hits, kept from the mining search for the ranker's fit
    memo = _SearchMemo(col.store)
    confused = [(i, d) for i, d in confusions(memo, bool(col.manifest.chunking), q,
                                              data.queries, data.doc_ids, current)
                if d in passages]
    given = [(i, d) for i, d in data.hard if d in passages]
    hard = list(zip((i for i, _ in given), passages.nearest(near, stored, given).tolist()))
    mined = list(zip((i for i, _ in confused),
                     passages.nearest(near, stored, confused).tolist()))
    result = train_adapter(q, pos, docs, groups=data.queries,
                           base_fingerprint=col.encoder.fingerprint,
                           hard_negatives=hard + mined, kind=kind, side=side, held_out=held_out,
                           seed=seed, baseline=current, passages=passages)
    # the new adapter's documents, where they differ from the stored ones
    moved = None
    if result.adapter.documents_too or (current is not None and current.documents_too):
        moved = _MovedStore(memo, doc_ids, between_spaces(None, result.adapter)(docs),
                            between_spaces(current, result.adapter))
    store_of = {"current": memo, "new": moved or memo}
    # the same held-out queries (the split is by query, seeded), now at document level and
    # through the real search path: the adapter, and the ranking settings, chosen together
    held = split_groups(data.queries, held_out, seed)
    held_queries, golds = data.gold(held)
    base = np.stack([vec_of[t] for t in held_queries]).astype(np.float32)

    def measure(which: str, adapter: Adapter | None, setting: Ranking
                ) -> tuple[dict, np.ndarray]:
        return evaluate_setting(col, held_queries, base, golds, adapter, setting, store_of[which])

    # the learned fusion, fitted for each adapter on the training queries' candidates
    train_queries, train_golds = data.gold(held, False)
    learned_something = result.best_epoch > 0
    if not learned_something:  # the start (identity, or the current adapter) came back
        data.notes.append(f"the {kind} adapter learned nothing: none of its {result.epochs} "
                          "epochs ranked the training split's own held-out pairs better than "
                          "the start, so it is no candidate; only rankings were measured")
    adapters = [("current", current)] + [("new", result.adapter)] * learned_something
    fixed = [(which, adapter, setting) for setting in settings_for(col.store)
             for which, adapter in adapters
             if not (setting.mode in TEXT_MODES and which == "new")]  # these ignore vectors
    rows: list[Measured] = []
    with progress_bar(1 + len(fixed) + len(adapters) * bool(train_queries),
                      f"measuring rankings on {len(held_queries)} held-out queries", "ranking",
                      enabled=progress) as bar:
        now_metrics, now_rr = measure("current", current, current_setting)
        bar.update(1)
        for which, adapter, setting in fixed:
            m, rr = measure(which, adapter, setting)
            rows.append((which, setting, m, rr))
            bar.update(1)
        if train_queries:
            train_base = np.stack([vec_of[t] for t in train_queries]).astype(np.float32)
            folds = None
            if learned_something and not result.adapter.documents_too:
                folds = crossfit(q, pos, docs, data.queries, ~held, hard + mined, kind, seed,
                                 col.encoder.fingerprint, current, passages)
            for which, adapter in adapters:
                for learned in fit_fusion(col, train_queries, train_base,
                                          train_golds, adapter, seed,
                                          store_of[which], folds if which == "new" else None):
                    m, rr = measure(which, adapter, learned)
                    rows.append((which, learned, m, rr))
                bar.update(1)
    candidates = [{"adapter": w, "ranking": st.describe(), **{k: round(v, 4) for k, v in m.items()
                   if k in ("mrr@10", "ndcg@10", "recall@10")}} for w, st, m, _ in rows]
    best = choose_row(rows)
    if force and learned_something:  # the new adapter, with the ranking chosen for it
        new = [i for i in range(len(rows)) if rows[i][0] == "new"]
        best = new[choose_row([rows[i] for i in new])]
    which, setting, after, rr = rows[best]
    best_metrics = after
    gain, low = paired_gain(now_rr, rr)
    over_fixed = against_fixed(rows, best)
    chosen = (result.adapter if which == "new" else current), setting
    unchanged = which == "current" and setting.setting() == current_setting
    summary = {"metrics": after, "previous_metrics": now_metrics, "gain_lower_95": round(low, 4),
               "ratings_through": data.ratings_through,
               "ranking": setting.describe(), "pairs": len(data.queries),
               "queries": len(unique), "from_file": data.from_file,
               "from_feedback": data.from_feedback, "hard_negatives": len(hard)}
    what = ("the new adapter" if which == "new" else "the current adapter" if current
            else "no adapter") + f" with {setting.describe()} ranking"
    measured = (f"{what}: MRR@10 {gain:+.4f} on {len(held_queries)} held-out queries "
                f"(95% lower bound {low:+.4f})")
    if force or (not unchanged and gain >= margin and low > 0):
        # measured remembering the training queries, it remembers the held-out ones too
        everyone, their_golds = data.gold(np.ones(len(data.queries), dtype=bool))
        setting = remember(col, setting, everyone, their_golds,
                           np.stack([vec_of[t] for t in everyone]).astype(np.float32),
                           chosen[0])
        if setting.known is not None:
            data.notes.append(f"the chosen ranking ({setting.describe()}) remembers the "
                              f"{setting.details['remembered']} pairs' {len(everyone)} queries "
                              "(the held-out ones too): the documents that answered queries "
                              "like a new one rank higher for it")
        threshold = col.manifest.threshold
        version = promote(col, chosen[0], summary, search=setting,
                          measured_against=measured_version)
        if which == "new" and moved is not None:
            data.notes.append(f"the stored vectors ({len(doc_ids)} passages) were mapped into "
                              "the new version's space (the encoder did not run); paraphrases, "
                              "mining and dedup compare them there")
            if threshold is not None:
                data.notes.append(f"the calibrated threshold {threshold:.4f} belonged to the "
                                  "old space and was dropped; run 'neartext calibrate' again")
        reason = f"promoted as version {version}: {measured}" + (
            "" if gain >= margin and low > 0 else " (forced)")
        promoted = True
    else:
        version = col.manifest.version
        why = ("the current version ranks best" if unchanged else
               f"below the margin {margin}" if gain < margin else
               "not above 0 at its lower bound: it could be the luck of the split")
        needed = queries_needed(now_rr, rr) if not unchanged and gain >= margin else None
        if needed is not None and needed > len(held_queries):
            why += (f"; {len(held_queries)} held-out queries are too few to tell a gain like "
                    f"this from luck: about {needed} would ({math.ceil(needed / held_out)} "
                    f"queries in all at --held-out {held_out})")
        if learned_something:
            path = keep_candidate(col, result.adapter)
            kept = f"the new adapter is kept as a candidate in {path} (--force promotes it)"
        else:
            kept = "no adapter to keep"
        reason = f"not promoted: {measured}; {why}; {kept}"
        promoted = False
        after = now_metrics
    return TuneReport(
        str(col.address), len(data.queries), len(unique), data.from_file, data.from_feedback,
        now_metrics, after, promoted, version, reason, kind=kind, hard_negatives=len(hard),
        seconds=result.seconds, epochs=result.epochs, notes=data.notes,
        ranking=setting.describe(), candidates=candidates,
        chosen={"adapter": which, "search": setting.to_dict()}, gain=round(gain, 4),
        gain_lower_95=round(low, 4), side=side, adapter_learned=learned_something,
        best=best_metrics, columns=data.columns, mined_negatives=len(mined),
        over_fixed=over_fixed)

