"""Evaluation metrics, each returning ``dict[str, float]`` with a named primary metric.

Pure numpy, so they can be checked against hand-computed values.

Example:
    >>> sts_correlation([0.1, 0.5, 0.9], [1, 3, 5])["spearman"]
    100.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Numbers = Sequence[float] | np.ndarray

PRIMARY = {"sts": "spearman", "pairs": "average_precision", "retrieval": "mrr@10"}


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties get their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den else 0.0


def sts_correlation(predicted: Numbers, gold: Numbers) -> dict[str, float]:
    """Spearman and Pearson correlation x100 between predicted similarities and gold scores."""
    p, g = np.asarray(predicted, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    return {"spearman": 100 * _pearson(rankdata(p), rankdata(g)), "pearson": 100 * _pearson(p, g)}


def pair_classification(
    scores: Numbers, labels: Numbers, min_precision: float | None = None
) -> dict[str, float]:
    """Metrics of similarity scores as a classifier of labeled pairs (1 = same meaning).

    Returns average precision, the threshold with the best F1 (with its precision and recall),
    the threshold with the best accuracy, and mean scores of positive and negative pairs. With
    ``min_precision``, also the lowest threshold reaching that precision (most recall).
    A threshold ``t`` means: a pair is positive when its score ``>= t``.
    """
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    pos = int(y.sum())
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    # only cut where the next score differs, so tied scores fall on one side together
    last = np.r_[s[1:] != s[:-1], True]
    tp, fp, thr = tp[last], fp[last], s[last]
    precision = tp / (tp + fp)
    recall = tp / pos if pos else np.zeros_like(tp, dtype=np.float64)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
    tn = (len(y) - pos) - fp
    accuracy = (tp + tn) / len(y)
    # AP: sum over positives of precision at their rank (ties handled by the cut points)
    ap = float(np.sum(np.diff(np.r_[0, recall]) * precision)) if pos else 0.0
    b = int(np.argmax(f1))
    a = int(np.argmax(accuracy))
    out = {
        "average_precision": ap,
        "best_f1": float(f1[b]), "best_f1_threshold": float(thr[b]),
        "precision_at_best_f1": float(precision[b]), "recall_at_best_f1": float(recall[b]),
        "best_accuracy": float(accuracy[a]), "best_accuracy_threshold": float(thr[a]),
        "mean_score_positive": float(s[y == 1].mean()) if pos else float("nan"),
        "mean_score_negative": float(s[y == 0].mean()) if pos < len(y) else float("nan"),
    }
    if min_precision is not None:
        ok = np.flatnonzero(precision >= min_precision)
        if len(ok):
            k = int(ok[np.argmax(recall[ok])])
            out.update({"min_precision_threshold": float(thr[k]),
                        "precision_at_min_precision": float(precision[k]),
                        "recall_at_min_precision": float(recall[k])})
    return out


def retrieval_metrics(
    ranked: Mapping[str, Sequence[str]], relevant: Mapping[str, Mapping[str, float]]
) -> dict[str, float]:
    """MRR@10, nDCG@10, Recall@1/5/10 and MAP@100 of ranked ids per query.

    Args:
        ranked: query id -> document ids, best first (at least 100 for MAP@100).
        relevant: query id -> {document id: relevance > 0}.
    """
    qs = [q for q in relevant if relevant[q]]
    if not qs:
        return {k: 0.0 for k in ("mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10",
                                 "map@100")}
    mrr, ndcg, r1, r5, r10, ap = [], [], [], [], [], []
    for q in qs:
        rel = relevant[q]
        docs = list(ranked.get(q, []))
        hits = [d in rel for d in docs]
        first = next((i for i, h in enumerate(hits[:10]) if h), None)
        mrr.append(0.0 if first is None else 1.0 / (first + 1))
        gains = [rel.get(d, 0.0) for d in docs[:10]]
        dcg = sum(g / np.log2(i + 2) for i, g in enumerate(gains))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(g / np.log2(i + 2) for i, g in enumerate(ideal))
        ndcg.append(dcg / idcg if idcg else 0.0)
        n_rel = len(rel)
        r1.append(sum(hits[:1]) / n_rel)
        r5.append(sum(hits[:5]) / n_rel)
        r10.append(sum(hits[:10]) / n_rel)
        found, total = 0, 0.0
        for i, h in enumerate(hits[:100]):
            if h:
                found += 1
                total += found / (i + 1)
        ap.append(total / min(n_rel, 100))
    return {"mrr@10": float(np.mean(mrr)), "ndcg@10": float(np.mean(ndcg)),
            "recall@1": float(np.mean(r1)), "recall@5": float(np.mean(r5)),
            "recall@10": float(np.mean(r10)), "map@100": float(np.mean(ap))}
