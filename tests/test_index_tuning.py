"""The vector index's search setting chosen on queries like the users' (``--tune-queries``,
``Collection.tune_index``) instead of rows held out of the collection: reached with a margin,
kept for rebuilds and other processes, refused in one line when the queries are not usable."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO

from neartext import Collection
from neartext.cli import main
from neartext.errors import InputError
from neartext.store import Document, Passage
from neartext.store.local import LocalStore


def clustered(rng: np.random.Generator, n: int, d: int = 32) -> np.ndarray:
    centers = rng.standard_normal((max(2, n // 100), d)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.5 * rng.standard_normal((n, d)).astype(
        np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def graph_of(path: Path, x: np.ndarray) -> LocalStore:
    """A new store at ``path`` holding ``x`` (document ``d{row}``) in an HNSW graph."""
    docs = [Document(f"d{i}", "t", {}, f"h{i}") for i in range(len(x))]
    store = LocalStore.create(path, {"dim": x.shape[1], "index": "hnsw"})
    store.write(docs, [Passage(doc.id, 0, 1, doc.hash, v) for doc, v in zip(docs, x)], [])
    return store


def recalls(store: LocalStore, x: np.ndarray, q: np.ndarray, ef: int) -> np.ndarray:
    """Each query's recall@10 at ``ef`` against numpy's exact top 10 (ids ``d{row}``)."""
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    chosen, store.index.ef_search = store.index.ef_search, ef
    try:
        got = [{h.doc_id for h in row} for row in store.search(q, 10)]
    finally:
        store.index.ef_search = chosen
    return np.array([len(g & {f"d{i}" for i in t}) / 10 for g, t in zip(got, truth)])


def test_a_setting_tuned_on_given_queries_is_the_cheapest_that_reaches_the_bound(tmp_path):
    """Queries far from the rows need more search than the rows held out at build: the setting
    chosen on them is the cheapest whose recall@10 reaches 0.99 as a one-sided 95% lower bound
    over them (numpy's exact neighbours as the oracle), with a step below it falling short;
    other queries like them get 0.99 too. Every later handle, and a rebuild, tunes on them."""
    rng = np.random.default_rng(1)
    n, d = 30_000, 32
    x = clustered(rng, n, d)
    store = graph_of(tmp_path / "s", x)
    held_out = store.index_info()
    assert held_out["tuned_on"] == "the collection's rows"
    other = LocalStore(tmp_path / "s")  # another handle, open before the tuning
    assert other.index_info()["ef_search"] == held_out["ef_search"]
    q = rng.standard_normal((400, d)).astype(np.float32)  # between clusters: harder
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    info = store.tune_index(q[:200])
    ef = info["ef_search"]
    assert info["tuned_on"] == "200 given queries" and ef > held_out["ef_search"], (info, held_out)

    def bound(r: np.ndarray) -> float:
        return float(r.mean() - 1.645 * r.std(ddof=1) / math.sqrt(len(r)))

    assert bound(recalls(store, x, q[:200], ef)) >= 0.99
    assert bound(recalls(store, x, q[:200], ef - max(1, ef // 8))) < 0.99  # the cheapest
    assert recalls(store, x, q[200:], ef).mean() >= 0.99  # queries it was not tuned on
    # the other handle catches up at its next search; a new one reads it from the index file
    other.search(q[:1], 10)
    assert other.index_info()["ef_search"] == ef and other.index.tuned_on == 200
    third = LocalStore(tmp_path / "s")
    assert third.index_info()["ef_search"] == ef and third.index_info()["tuned_on"] == \
        "200 given queries"
    third.close()
    # past a quarter of the rows deleted the graph is rebuilt: tuned on the same queries
    store.write([], [], [f"d{i}" for i in range(0, n, 3)])
    after = store.index_info()
    assert after["removed_nodes"] == 0 and after["tuned_on"] == "200 given queries"
    assert after["ef_search"] > held_out["ef_search"]
    store.close()
    other.close()


def test_bad_tuning_queries_are_one_line_and_change_nothing(tmp_path):
    rng = np.random.default_rng(2)
    store = graph_of(tmp_path / "s", clustered(rng, 3000, 16))
    before = store.index_info()
    q = clustered(rng, 120, 16)
    for bad, message in [
        (q[:99], "99 queries to tune the search on: give at least 100"),
        (q[:, :8], r"must have 16 numbers each \(got shape \(120, 8\)\)"),
        (np.where(np.arange(16) == 3, np.nan, q), "query vector 1: nan at position 4"),
        (np.vstack([q, np.zeros((1, 16))]), "query vector 121: all zeros"),
    ]:
        with pytest.raises(InputError, match=message):
            store.tune_index(bad)
    assert store.index_info() == before
    assert store.conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'index_queries'"
                              ).fetchone()[0] == 0
    store.close()


@pytest.fixture(scope="module")
def queries(tmp_path_factory) -> dict[str, Path]:
    """The demo's texts cut short, as a user's queries would be: .txt, .csv and .npy."""
    with DEMO.open(encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    short = [" ".join(t.split()[:4]) for t in texts[:120]]
    d = tmp_path_factory.mktemp("queries")
    (d / "q.txt").write_text("\n".join(short) + "\n", encoding="utf-8")
    (d / "few.txt").write_text("\n".join(short[:10]) + "\n", encoding="utf-8")
    with (d / "pairs.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "id"])
        w.writerows([q, i] for i, q in enumerate(short))
    with (d / "no_query.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "id"])
        w.writerows([q, i] for i, q in enumerate(short))
    np.save(d / "wrong_dim.npy", np.ones((120, 12), dtype=np.float32))
    (d / "q.xlsx").write_bytes(b"PK\x03\x04")
    return {p.stem + p.suffix: p for p in d.iterdir()}


def test_index_tune_queries_from_a_text_or_pairs_file(tmp_path, queries, capsys):
    """`index --tune-queries` encodes the queries as searches do and says what was chosen;
    `info` shows it; re-indexing an existing collection with another file tunes it again."""
    col = tmp_path / "c"
    assert main(["index", str(DEMO), "-c", str(col), "--id", "id", "--index", "hnsw",
                 "--tune-queries", str(queries["q.txt"])]) == 0
    out = capsys.readouterr().out
    assert "search tuned on 120 given queries: ef_search" in out, out
    assert main(["info", str(col), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert "120 given queries" in json.dumps(info)
    assert main(["index", str(DEMO), "-c", str(col), "--id", "id", "--json",
                 "--tune-queries", str(queries["pairs.csv"])]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unchanged"] > 200 and report["index"]["tuned_on"] == "120 given queries"
    with Collection.open(col) as c:  # searches as before
        assert c.search("the app crashes", 3)


@pytest.mark.parametrize("name,message", [
    ("few.txt", "10 queries to tune the search on: give at least 100"),
    ("no_query.csv", "no_query.csv: no 'query' column; columns: text, id"),
    ("wrong_dim.npy", r"query vectors must have 384 numbers each \(got shape \(120, 12\)\)"),
    ("q.xlsx", "q.xlsx: give queries as .txt"),
])
def test_index_with_unusable_tuning_queries_builds_nothing(tmp_path, queries, capsys, name,
                                                            message):
    col = tmp_path / "c"
    assert main(["index", str(DEMO), "-c", str(col), "--id", "id", "--index", "hnsw",
                 "--tune-queries", str(queries[name])]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and __import__("re").search(message, err), err
    assert not col.exists()  # (c.partial keeps the texts' vectors for a rerun, as always)


def test_an_existing_collection_is_left_alone_when_its_tuning_queries_are_refused(
        demo_copy, queries, capsys):
    """The queries are checked before the corpus is written: a wrong dimension leaves the
    documents and the setting as they were."""
    with Collection.open(demo_copy) as c:
        before = (len(c), c.store.index_info())
    changed = demo_copy.parent / "changed.csv"
    with DEMO.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    rows[0]["text"] = "an entirely new complaint about the billing page"
    with changed.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["index", str(changed), "-c", str(demo_copy), "--id", "id",
                 "--tune-queries", str(queries["wrong_dim.npy"])]) == 1
    assert "must have 384 numbers each" in capsys.readouterr().err
    with Collection.open(demo_copy) as c:
        assert (len(c), c.store.index_info()) == before
        assert c.get([rows[0]["id"]])[0].text != rows[0]["text"]


def test_a_crash_before_the_index_file_is_saved_leaves_the_queries_for_the_next_open(
        tmp_path, monkeypatch):
    """The queries are committed first, the index file saved after: a process killed between
    the two leaves a file chosen on the rows, which the next handle recognises (its header
    names other queries) and tunes on the stored ones."""
    rng = np.random.default_rng(3)
    n, d = 25_000, 16
    x = clustered(rng, n, d)
    store = graph_of(tmp_path / "s", x)
    q = rng.standard_normal((150, d)).astype(np.float32)

    def killed(self, quiet=False):
        raise KeyboardInterrupt  # as the kill arrives

    monkeypatch.setattr(LocalStore, "_persist_index", killed)
    with pytest.raises(KeyboardInterrupt):
        store.tune_index(q)
    monkeypatch.undo()
    store.close()
    again = LocalStore(tmp_path / "s")
    info = again.index_info()
    assert info["tuned_on"] == "150 given queries" and info["file"]["current"], info
    chosen = info["ef_search"]
    again.close()
    third = LocalStore(tmp_path / "s")  # saved by the second: read as it is
    assert third.index_info()["ef_search"] == chosen
    third.close()

