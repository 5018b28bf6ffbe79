"""The exact numpy index agrees with faiss's exact flat index; ANN indexes reach high recall."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from neartext.store.vector_index import ExactIndex, FaissIndex


def unit(rng, n, d=32):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_matches_faiss_flat_with_updates_and_filters():
    rng = np.random.default_rng(0)
    vecs, ids = unit(rng, 3000), np.arange(10, 3010, dtype=np.int64)
    ix = ExactIndex(32)
    ix.add(vecs[:2000], ids[:2000])
    ix.add(vecs[2000:], ids[2000:])
    ref = faiss.IndexIDMap2(faiss.IndexFlatIP(32))
    ref.add_with_ids(vecs, ids)
    gone = rng.choice(ids, 500, replace=False)
    ix.remove(gone)
    ref.remove_ids(faiss.IDSelectorBatch(gone))
    q = unit(rng, 300)
    s1, i1 = ix.search(q, 10)
    s2, i2 = ref.search(q, 10)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert (i1 == i2).mean() > 0.999  # ties aside
    allowed = rng.choice(np.setdiff1d(ids, gone), 200, replace=False)
    p = faiss.SearchParameters()
    p.sel = faiss.IDSelectorBatch(allowed)
    s1, i1 = ix.search(q, 5, allowed)
    s2, i2 = ref.search(q, 5, params=p)
    np.testing.assert_allclose(s1, s2, atol=1e-5)
    assert set(i1.ravel()) <= set(allowed.tolist())


def test_exact_pads_when_fewer_than_k_and_keeps_ids_sorted():
    ix = ExactIndex(2)
    ix.add(np.eye(2, dtype=np.float32), np.array([7, 3]))
    assert ix.ids.tolist() == [3, 7]
    s, i = ix.search(np.array([[1, 0]], dtype=np.float32), 4)
    assert i.tolist() == [[7, 3, -1, -1]] and np.isneginf(s[0, 2:]).all()
    assert ix.search(np.array([[1, 0]], dtype=np.float32), 2, np.array([99]))[1].tolist() == [[-1, -1]]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_recall_on_clustered_data(kind):
    rng = np.random.default_rng(1)
    centers = unit(rng, 50, 64)
    x = centers[rng.integers(0, 50, 20000)] + 0.12 * rng.standard_normal((20000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = np.arange(20000)
    exact = ExactIndex(64)
    exact.add(x, ids)
    ann = FaissIndex.build(kind, 64, x)
    ann.add(x, ids)
    q = x[rng.choice(20000, 200, replace=False)]
    _, want = exact.search(q, 10)
    _, got = ann.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(want, got)])
    assert recall >= 0.95, recall
