"""Paraphrase mining, paraphrases of a text, duplicate groups and dedup on ingest."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sentence_transformers import util

from neartext import Collection, Record
from neartext.algo.groups import duplicate_groups
from neartext.algo.mining import mine_pairs, sample_recall


def clustered(n, d=64, clusters=200, noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((clusters, d)).astype(np.float32)
    x = c[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(vectors, top_k, threshold):
    ref = util.paraphrase_mining_embeddings(torch.from_numpy(vectors), top_k=top_k,
                                            max_pairs=10**9, query_chunk_size=700,
                                            corpus_chunk_size=1500)
    return {(i, j): s for s, i, j in ref if s >= threshold}


@pytest.mark.parametrize("top_k,threshold", [(1, 0.5), (5, 0.6), (100, 0.6), (10, 0.9)])
def test_exact_equals_sentence_transformers(top_k, threshold):
    x = clustered(3000)
    want = reference(x, top_k, threshold)
    got = mine_pairs(x, threshold, top_k, method="exact")
    assert set(zip(got.i.tolist(), got.j.tolist())) == set(want)
    assert np.all(np.diff(got.score) <= 0)  # best first
    assert np.all(got.i < got.j)
    for a, b, s in zip(got.i[:50].tolist(), got.j[:50].tolist(), got.score[:50].tolist()):
        assert abs(want[(a, b)] - s) < 1e-4


def test_exact_equals_reference_on_real_embeddings(encoder):
    from conftest import DEMO

    texts = [line.split(",", 1)[1] for line in DEMO.read_text().splitlines()[1:]]
    x = encoder.encode(texts)
    want = reference(x, 10, 0.7)
    got = mine_pairs(x, 0.7, 10, method="exact")
    assert want and set(zip(got.i.tolist(), got.j.tolist())) == set(want)


def test_max_pairs_keeps_the_best():
    x = clustered(2000)
    full = mine_pairs(x, 0.6, 20)
    top = mine_pairs(x, 0.6, 20, max_pairs=100)
    assert len(top) == 100 and np.array_equal(top.score, full.score[:100])


@pytest.mark.slow
def test_approx_recall_on_clustered_data():
    x = clustered(20000, d=64, clusters=500, noise=0.25, seed=1)
    exact = mine_pairs(x, 0.75, 20, method="exact")
    approx = mine_pairs(x, 0.75, 20, method="approx")
    found = set(zip(approx.i.tolist(), approx.j.tolist()))
    gold = set(zip(exact.i.tolist(), exact.j.tolist()))
    assert len(gold) > 10000
    recall = len(found & gold) / len(gold)
    assert recall >= 0.95, recall
    assert found <= gold | found and approx.method == "approx"
    est = sample_recall(x, approx, 0.75, 20, sample=2000)
    assert abs(est["recall"] - recall) < 0.03


def test_groups_components_chain_but_communities_do_not():
    # 0~1, 1~2 (a chain), 0 and 2 are not close; 3~4
    i, j, s = np.array([0, 1, 3]), np.array([1, 2, 4]), np.array([0.9, 0.9, 0.95])
    comp = duplicate_groups(6, i, j, s, method="components", representative="first")
    assert [g.members.tolist() for g in comp] == [[0, 1, 2], [3, 4]]
    comm = duplicate_groups(6, i, j, s, method="community")
    assert [g.members.tolist() for g in comm] == [[0, 1, 2], [3, 4]] or \
        sorted(g.members.tolist() for g in comm) == [[0, 1, 2], [3, 4]]
    assert comm[0].representative == 1  # the centre is close to every member
    i2, j2, s2 = np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([0.9] * 3)  # path 0-1-2-3
    comm2 = duplicate_groups(4, i2, j2, s2, method="community")
    assert all(len(g.members) <= 3 for g in comm2)  # no member is two hops from its centre
    assert len(duplicate_groups(4, i2, j2, s2, method="components")) == 1


KNOWN = {
    "crash": ["The app crashes every time I open it.", "Every time I open the app it crashes.",
              "Opening the app makes it crash each time."],
    "refund": ["I want my money back for the subscription.",
               "Please refund my subscription payment."],
    "dark": ["Could you add a dark theme?", "Please add a dark theme to the app."],
}
OTHERS = ["The weather in the mountains was lovely.", "My cat sleeps on the keyboard.",
          "Our team meets on Tuesdays to plan the sprint.", "The bakery sells fresh bread at seven.",
          "He scored twice in the second half of the match.", "The museum opens a new exhibition."]


@pytest.fixture
def known_collection(tmp_path, encoder):
    f = tmp_path / "known.jsonl"
    rows = [{"id": f"{k}-{n}", "text": t, "topic": k} for k, ts in KNOWN.items()
            for n, t in enumerate(ts)] + [{"id": f"o-{n}", "text": t, "topic": "other"}
                                          for n, t in enumerate(OTHERS)]
    f.write_text("\n".join(json.dumps(r) for r in rows))
    col, _ = Collection.from_file(tmp_path / "c", f, id_column="id", model=encoder)
    yield col
    col.close()


def test_mine_and_dedup_recover_known_groups(known_collection):
    res = known_collection.mine(threshold=0.7)
    found = {frozenset((p["id1"], p["id2"])) for p in res.pairs}
    expected = {frozenset((f"{k}-{a}", f"{k}-{b}")) for k, ts in KNOWN.items()
                for a in range(len(ts)) for b in range(a + 1, len(ts))}
    assert found == expected, (found ^ expected)
    groups = known_collection.dedup(threshold=0.7)
    assert sorted(sorted(m.id for m in g.members) for g in groups.groups) == sorted(
        sorted(f"{k}-{n}" for n in range(len(ts))) for k, ts in KNOWN.items())
    assert groups.sizes == {2: 2, 3: 1} and groups.duplicates == 4
    crash = next(g for g in groups.groups if len(g.members) == 3)
    assert crash.representative in {m.id for m in crash.members}
    first = known_collection.dedup(threshold=0.7, representative="first")
    assert next(g for g in first.groups if len(g.members) == 3).representative == "crash-0"


def test_paraphrases_contract(tmp_path, encoder, counting):
    text = "The app crashes every time I open it."
    rows = [("a", text), ("b", "  the APP crashes every time I open it.  "),  # exact copies
            ("c", "Every time I open the app it crashes."),
            ("d", "Every time I open the app it crashes."),  # same paraphrase under another id
            ("e", "Opening the app makes it crash each time."),
            ("f", "The weather in the mountains was lovely.")]
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in rows))
    col, _ = Collection.from_file(tmp_path / "c", f, id_column="id", model=encoder,
                                  cleaning=__import__("neartext").CleaningOptions(
                                      drop_duplicates=False))
    col.close()
    col = Collection.open(tmp_path / "c", model=counting)
    res, notice = col.paraphrases(text, threshold=0.6)
    ids = [r.id for r in res]
    assert notice is None
    assert "a" not in ids and "b" not in ids  # the text itself and exact copies excluded
    assert len([i for i in ids if i in ("c", "d")]) == 1  # a distinct paraphrase once
    assert "e" in ids and "f" not in ids  # above / below the threshold
    assert [r.score for r in res] == sorted((r.score for r in res), reverse=True)
    assert counting.encoded == [text]  # only the given text is encoded, never the corpus
    none, notice = col.paraphrases(text, threshold=0.99)
    assert none == [] and "no paraphrases" in notice
    col.close()


def test_skip_near_duplicates_on_ingest(known_collection):
    new = [Record("n1", "Each time I open the app, it crashes."),   # ~ stored crash-*
           Record("n2", "Trains to the coast leave every hour."),
           Record("n3", "Departures to the seaside run hourly by train."),  # ~ n2 (incoming)
           Record("crash-0", "The app crashes every time I open it!")]  # update of itself: kept
    before = len(known_collection)
    rep = known_collection.upsert(new, skip_near_duplicates=0.8)
    skipped = {d["id"]: d["duplicate_of"] for d in rep.near_duplicates}
    assert skipped.get("n1", "").startswith("crash-")
    assert "n2" not in skipped and "crash-0" not in skipped
    assert rep.skipped_near_duplicates == len(skipped)
    ids_now = {d.id for d in known_collection.get(["n1", "n2", "n3"])}
    assert "n1" not in ids_now and "n2" in ids_now
    assert len(known_collection) == before + 1 + ("n3" not in skipped)
    assert ("n3" in skipped) == (skipped.get("n3") == "n2")
