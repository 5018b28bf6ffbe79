"""Baselines the benchmarks measure neartext against that neartext no longer ships.

``choose_best``: how ``tune`` chose among the rankings it measured before
``neartext.ops.learning.choose_row``: the best held-out MRR@10 of all.

``fit_pairwise``: the linear learned fusion ``neartext tune`` fitted until the LightGBM ranker
replaced it (issue 35): a pairwise logistic regression (RankNet's loss with a linear scorer)
over each query's candidates, fitted by Newton's method.
"""

from __future__ import annotations

import numpy as np


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, rounds: int = 50
                 ) -> np.ndarray:
    """Logistic regression of ``y`` (0/1) on the columns of ``x`` by Newton's method, the
    classes weighted to count equally and an L2 penalty on the standardized weights; returns
    the weights on the raw columns followed by the intercept."""
    mu, sd = x.mean(axis=0), x.std(axis=0)
    sd[sd == 0] = 1.0
    z = np.column_stack([(x - mu) / sd, np.ones(len(x))])
    pos = max(1.0, float(y.sum()))
    sample = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * max(1.0, len(y) - pos)))
    w = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(rounds):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (sample * (p - y)) + reg * w
        hess = (z * (sample * p * (1 - p))[:, None]).T @ z + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    raw = w[:-1] / sd
    return np.append(raw, w[-1] - float(mu @ raw))


def fit_pairwise(rows: list[np.ndarray], labels: list[np.ndarray], per_positive: int = 50,
                 seed: int = 0) -> np.ndarray:
    """Ranking weights from each query's candidates (``rows``: one feature row per candidate;
    ``labels``: 1 relevant, 0 not): a logistic regression of "the first of two candidates of
    one query is the relevant one" on their feature difference (RankNet's pairwise loss with
    a linear scorer), up to ``per_positive`` sampled irrelevant candidates per relevant one.
    Returns the weights followed by a zero intercept (a ranking needs none); all zeros when no
    query has both kinds.

    >>> x = [np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])]
    >>> w = fit_pairwise(x, [np.array([1.0, 0.0, 0.0])])
    >>> bool(w[0] > 0 > w[1]), float(w[2])
    (True, 0.0)
    """
    rng = np.random.default_rng(seed)
    diffs = []
    for x, y in zip(rows, labels):
        pos, neg = np.flatnonzero(y > 0), np.flatnonzero(y <= 0)
        for p in pos:
            if len(neg):
                pick = neg if len(neg) <= per_positive else rng.choice(neg, per_positive, False)
                diffs.append(x[p] - x[pick])
    if not diffs:
        return np.zeros((rows[0].shape[1] if rows else 0) + 1)
    d = np.concatenate(diffs)
    w = fit_logistic(np.concatenate([d, -d]), np.repeat([1.0, 0.0], len(d)))
    return np.append(w[:-1], 0.0)


def choose_best(rows: list) -> int:
    """How ``neartext tune`` chose among the rankings it measured until issue 35's choice rule
    (``neartext.ops.learning.choose_row``): the best held-out MRR@10 of all of them, fixed or
    learned (ties: the current adapter, then the earlier setting)."""
    from neartext.ops.learning import best_row

    return best_row(rows, range(len(rows)))
