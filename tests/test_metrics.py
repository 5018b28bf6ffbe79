"""Metrics equal hand-computed values (and scipy / scikit-learn where installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neartext.algo.metrics import pair_classification, rankdata, retrieval_metrics, sts_correlation


def test_rankdata_ties_average():
    assert rankdata(np.array([10, 20, 20, 5])).tolist() == [2.0, 3.5, 3.5, 1.0]


def test_sts_correlation_by_hand():
    # predicted ranks 1,2,3,4 vs gold ranks 1,3,2,4: d^2 = 0+1+1+0 = 2 -> 1 - 6*2/(4*15) = 0.8
    r = sts_correlation([0.1, 0.2, 0.3, 0.4], [1, 3, 2, 5])
    assert r["spearman"] == pytest.approx(80.0)
    assert sts_correlation([1, 2, 3], [2, 4, 6])["pearson"] == pytest.approx(100.0)


def test_sts_matches_scipy():
    stats = pytest.importorskip("scipy.stats", reason="scipy not installed")
    rng = np.random.default_rng(0)
    p, g = rng.random(200), np.round(rng.random(200) * 5, 1)
    r = sts_correlation(p, g)
    assert r["spearman"] == pytest.approx(100 * stats.spearmanr(p, g)[0])
    assert r["pearson"] == pytest.approx(100 * stats.pearsonr(p, g)[0])


def test_pair_classification_by_hand():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = [1, 1, 0, 1, 0, 0]
    r = pair_classification(scores, labels)
    # AP = (1/1 + 2/2 + 3/4) / 3
    assert r["average_precision"] == pytest.approx((1 + 1 + 0.75) / 3)
    # cut at 0.8: P=1, R=2/3, F1=0.8; cut at 0.6: P=3/4, R=1, F1=6/7 (best)
    assert r["best_f1"] == pytest.approx(6 / 7) and r["best_f1_threshold"] == 0.6
    assert r["precision_at_best_f1"] == pytest.approx(0.75) and r["recall_at_best_f1"] == 1.0
    assert r["best_accuracy"] == pytest.approx(5 / 6) and r["best_accuracy_threshold"] in (0.8, 0.6)
    assert r["mean_score_positive"] == pytest.approx(2.3 / 3)
    r = pair_classification(scores, labels, min_precision=1.0)
    assert r["min_precision_threshold"] == 0.8 and r["recall_at_min_precision"] == pytest.approx(2 / 3)


def test_average_precision_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn not installed")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + 0.3 * y, 2)  # with ties
    assert pair_classification(s, y)["average_precision"] == pytest.approx(
        metrics.average_precision_score(y, s))


def test_retrieval_metrics_by_hand():
    ranked = {"q1": ["a", "b", "c"], "q2": ["x", "y", "z"]}
    relevant = {"q1": {"b": 1.0}, "q2": {"x": 1.0, "z": 1.0}}
    r = retrieval_metrics(ranked, relevant)
    assert r["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert r["recall@1"] == pytest.approx((0 + 0.5) / 2)
    assert r["recall@5"] == pytest.approx(1.0)
    ndcg_q1 = (1 / math.log2(3)) / 1.0
    ndcg_q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert r["ndcg@10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2)
    assert r["map@100"] == pytest.approx((0.5 + (1 + 2 / 3) / 2) / 2)
