"""The queries a version remembers (neartext.algo.known): what tune learned from its pairs and
the 👍 ratings, beyond a weighing of the channels: a document that answered queries like a new
one is found for it, even where no channel finds it."""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest

import neartext.engine.searching as searching
from neartext import Collection
from neartext.algo.known import KnownQueries, load_known, save_known
from neartext.algo.ranker import fit_linear, fit_ranker, from_text, score
from neartext.cli import main
from neartext.errors import CorruptCollection
from neartext.ops.tune import tune
from neartext.ops.versions import rollback

SYLLABLES = ["qor", "vex", "blin", "tam", "zur", "pok", "lim", "dra", "fen", "mul", "sak", "tix"]
ASKS = ["where is", "status of", "any news on", "please check", "still waiting for",
        "what happened to"]


def _codes(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return list(dict.fromkeys(" ".join("".join(rng.sample(SYLLABLES, 3)) for _ in range(2))
                              for _ in range(4 * n)))[:n]


def _pairs(path, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "doc_id"])
        w.writerows(rows)


@pytest.mark.slow
def test_a_document_that_answered_queries_like_a_new_one_is_found_for_it(demo_copy, tmp_path,
                                                                         monkeypatch, capsys):
    """The demo collection tuned on queries that name a made-up case code (two nonsense words),
    each code answered by one document it has nothing to do with: five asks per code, 40
    codes. No channel can find those documents for such a query; only what the pairs taught.
    (The adapter is diagonal, a weight per dimension: a linear one learns the 40 codes' way to
    their documents by heart, and the semantic channel finds them through it.)

    After tune, a new ask of a code (one none of its pairs used) finds the code's document
    first; the same version's ranker without its remembered queries, as before them, does not.
    The version names its remembered queries: all 200 pairs, the held-out ones too. A changed
    file is one line naming it; rolling back goes back to a version that remembers nothing."""
    with Collection.open(demo_copy) as col:
        docs = sorted(col.store.document_hashes())[:40]
    codes = _codes(len(docs))
    _pairs(tmp_path / "codes.csv",
           [(f"{ask} {code}", d) for code, d in zip(codes, docs) for ask in ASKS[:5]])
    with Collection.open(demo_copy) as col:
        report = tune(col, tmp_path / "codes.csv", gold_id_column="doc_id", kind="diagonal")
    assert report.promoted and report.ranking.startswith("hybrid learned"), report.summary()
    assert any("remembers the 200 pairs' 200 queries (the held-out ones too)" in n
               for n in report.notes), report.notes
    asked = [f"{ASKS[5]} {code}" for code in codes]

    def right(col, **how) -> int:
        return sum(bool(r) and r[0].id == d
                   for r, d in zip(col.search_many(asked, k=1, **how), docs))

    with Collection.open(demo_copy) as col:
        assert [right(col, mode=m) for m in ("semantic", "keyword", "chars")] == [0, 0, 0]
        assert right(col) >= 36
        first = [r[0].id for r in col.search_many(asked[:8], k=1)]
        with monkeypatch.context() as m:
            m.setattr(searching, "needs_known", lambda names: False)
            assert right(col) <= 2
        # a filtered search ranks only what passed the filter
        topic = {d.id: d.metadata["topic"] for d in col.store.get(docs)}
        other = [next(t for t in sorted(set(topic.values())) if t != topic[d]) for d in docs]
        for ask, t in zip(asked[:10], other):
            assert all(r.metadata["topic"] == t for r in col.search(ask, k=3, where=f"topic={t}"))
        ranking = col.manifest.ranking()
    known = ranking.known
    assert known is not None
    if ranking.ranker is not None:  # fitted with the remembered queries' features constrained
        text = (demo_copy / ranking.ranker).read_text()
        assert "\nmonotone_constraints=" + " ".join(["0"] * 20 + ["1", "1", "-1"]) in text
    memory = load_known(str(demo_copy / known))
    assert len(memory) == 200 and sorted(set(memory.doc_ids)) == sorted(docs)
    # measured on the very pairs it remembers: said, as no held-out measure
    assert main(["eval", "collection", str(demo_copy), "--pairs", str(tmp_path / "codes.csv"),
                 "--gold-id", "doc_id", "--json"]) == 0
    out, err = capsys.readouterr()
    said = "200 of the 200 queries are ones v2 (current) remembers"
    assert json.loads(out)["remembered"] == 200 and said in err, err
    assert said in json.loads(out)["warnings"][0]

    # the MLflow model carries the file with the version's rankers and ranks as the collection
    import mlflow

    out = tmp_path / "model"
    assert main(["export", "mlflow", str(demo_copy), "-o", str(out), "-q"]) == 0
    got = mlflow.pyfunc.load_model(str(out)).predict(asked[:8], params={"top_k": 1})
    assert list(got["id"]) == first and sum(a == b for a, b in zip(first, docs)) >= 6
    capsys.readouterr()

    file = demo_copy / known
    data = file.read_bytes()
    file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    load_known.cache_clear()
    assert main(["search", str(demo_copy), asked[0], "-k", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(file) in err[0] and "damaged" in err[0], err
    file.write_bytes(data)
    load_known.cache_clear()
    assert main(["search", str(demo_copy), asked[0], "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == docs[0]
    with Collection.open(demo_copy) as col:
        assert col.delete([docs[1]]) == 1  # a deleted answer is left out
        assert docs[1] not in [r.id for r in col.search(asked[1], k=5)]
        rollback(col)
        assert col.manifest.ranking().known is None and right(col) == 0


def test_a_training_querys_own_pairs_are_left_out_of_its_features():
    """The features a ranker is fitted on must look like a new query's: a training query's own
    pairs do not count (else the fit learns that a document it answered is always right)."""
    known = KnownQueries(np.eye(3, dtype=np.float32), ["a", "b", "a"], ["q1", "q2", "q3"])
    q = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    assert known.columns(q, ["a", "b"])["known_max"].tolist() == [1.0, 0.0]
    alone = known.columns(q, ["a", "b"], leave_out="q1")
    assert alone["known_max"].tolist() == [0.0, 0.0]
    assert alone["known_count"].round(3).tolist() == [0.693, 0.693]
    q2 = np.array([1.0, 0.5, 0.0], dtype=np.float32)
    assert known.recall(q2, 5) == ["a", "b"] and known.recall(q2, 5, leave_out="q1") == ["b", "a"]
    assert known.recall(q2, 1) == ["a"]
    with pytest.raises(CorruptCollection, match="3 dimensions, its queries 2"):
        known.columns(np.ones(2, dtype=np.float32), ["a"])


def test_what_the_remembered_queries_say_is_each_documents_best_pair_and_count():
    """An oracle: pairs in any order, repeated queries, tied likenesses and left-out queries;
    each document's highest likeness with the pairs it answered and their number, and the
    documents recalled in the order a sort of every document by that likeness gives (ties to
    the document remembered first)."""
    rng = np.random.default_rng(5)
    n, docs = 300, [f"d{i}" for i in range(40)]
    vecs = rng.integers(-2, 3, (n, 4)).astype(np.float32)  # (small integers: many ties)
    doc_ids = [docs[i] for i in rng.integers(0, len(docs), n)]
    queries = [f"q{i}" for i in rng.integers(0, 120, n)]
    known = KnownQueries(vecs, doc_ids, queries)
    first = list(dict.fromkeys(doc_ids))  # the documents in the order they were remembered
    for t in range(30):
        q = rng.integers(-2, 3, 4).astype(np.float32)
        out = f"q{t}" if t % 2 else None
        kept = [i for i in range(n) if queries[i] != out]
        best = {d: max((float(vecs[i] @ q) for i in kept if doc_ids[i] == d), default=None)
                for d in first}
        cols = known.columns(q, first, leave_out=out)
        assert cols["known_max"].tolist() == [b if b is not None else 0.0 for b in best.values()]
        assert cols["known_count"].tolist() == pytest.approx(
            [np.log1p(sum(doc_ids[i] == d for i in kept)) for d in first])
        # (a stable sort: ties in the order remembered; a document whose pairs are all left
        # out last, and not recalled)
        ranked = sorted(first, key=lambda d: -(best[d] if best[d] is not None else -np.inf))
        for k in (1, 5, 10, 40, 60):
            assert known.recall(q, k, leave_out=out) == [
                d for d in ranked[:k] if best[d] is not None], (t, k)


def test_a_file_of_remembered_queries_is_named_by_its_content(tmp_path):
    known = KnownQueries(np.eye(2, dtype=np.float32), ["a", "b"], ["q1", "q2"])
    name = save_known(tmp_path, known)
    assert save_known(tmp_path, known) == name and name.startswith("rankers/")
    back = load_known(str(tmp_path / name))
    assert back.doc_ids == ["a", "b"] and back.queries == ["q1", "q2"]
    assert np.array_equal(back.vectors, known.vectors)
    with pytest.raises(CorruptCollection, match="cannot be read"):
        load_known(str(tmp_path / "rankers" / "missing.npz"))


def test_answering_other_queries_never_counts_against_a_document():
    """Where each document answers one query (a pairs file of one situation per meme), every
    candidate that answered another training query is wrong for this one, so a free fit learns
    that having answered a query like this one counts against a document. The remembered
    queries' features are constrained (data.ranking.MONOTONE): the ranker's score never falls
    as a candidate's likeness to what it answered rises, nor does the linear weighing's."""
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for _ in range(200):
        x = rng.random((20, 2))
        y = np.zeros(20)
        y[0] = 1.0
        x[0, 1] = 0.0  # the relevant one answered nothing; the others did
        x[0, 0] = max(x[0, 0], 0.5)
        rows.append(x)
        labels.append(y)
    grid = np.array([[0.7, v] for v in np.linspace(0, 1, 21)])
    free = score(from_text(fit_ranker(rows, labels, seed=0).text), grid)
    assert (np.diff(free) < 0).any()  # the premise: a free fit learns it
    kept = score(from_text(fit_ranker(rows, labels, seed=0, monotone=[0, 1]).text), grid)
    assert (np.diff(kept) >= 0).all()
    assert fit_linear(rows, labels, seed=0)[1] < 0
    assert fit_linear(rows, labels, seed=0, monotone=[0, 1])[1] >= 0
