"""The learned ranker: LightGBM's LambdaRank over the features of each query's candidates
(:data:`neartext.data.ranking.RANKER_FEATURES`), trained by ``neartext tune`` and kept as a file
in the collection's state directory; and a linear weighing of the same candidates' features
(:func:`fit_linear`), which ``tune`` measures beside it: with a couple of thousand pairs the
trees can find less than a weighted sum does (STS-B in Russian, bench/bench_ranker.py).

A ranker file is named by its content (``rankers/<sha256 prefix>.txt``, LightGBM's text
format): written once, never rewritten, so every version that names it ranks the same way and a
damaged file is caught when it is loaded. A process loads each file once.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> rows = [rng.random((30, 2)) for _ in range(60)]
    >>> labels = [(r[:, 0] == r[:, 0].max()).astype(float) for r in rows]  # column 0 decides
    >>> fitted = fit_ranker(rows, labels, seed=0)
    >>> booster = from_text(fitted.text)
    >>> test = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> bool(score(booster, test)[0] > score(booster, test)[1])
    True
"""

from __future__ import annotations

import ctypes
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from neartext.errors import CorruptCollection
from neartext.util.atomic import staged_file
from neartext.util.optional import lightgbm, lightgbm_library, optional

RANKERS = "rankers"
#: most boosting rounds; early stopping on the validation queries ends most fits far sooner
MAX_ROUNDS = 400
PATIENCE = 100


@dataclass(frozen=True)
class FittedRanker:
    """A trained ranker: LightGBM's model ``text``, its boosting ``rounds`` (the best on the
    validation queries), the validation NDCG@10 at those rounds, and the seconds it took."""

    text: str
    rounds: int
    valid_ndcg: float | None
    seconds: float
    queries: int


def fit_ranker(rows: list[np.ndarray], labels: list[np.ndarray], *, seed: int = 0,
               valid: float = 0.2, monotone: Sequence[int] | None = None) -> FittedRanker:
    """LambdaRank on each query's candidate ``rows`` (one feature row each) with ``labels`` (1
    relevant, 0 not): trees of few leaves, early stopping on a seeded ``valid`` share of the
    queries (by query). Queries without a relevant candidate, or with nothing else, teach
    nothing and are left out. ``monotone``: per column, 1 (the score may only rise with it), -1
    (only fall) or 0 (free): LightGBM's ``monotone_constraints``."""
    lgb = lightgbm()
    start = time.perf_counter()
    keep = [i for i, y in enumerate(labels) if 0 < y.sum() < len(y)]
    if not keep:
        raise ValueError("no query has both a relevant and an irrelevant candidate")
    order = np.random.default_rng(seed).permutation(keep)
    n_valid = int(round(len(order) * valid)) if len(order) >= 10 else 0
    parts = {"valid": sorted(order[:n_valid]), "train": sorted(order[n_valid:])}

    def dataset(ids: list[int], reference: Any = None) -> Any:
        x = np.concatenate([rows[i] for i in ids]).astype(np.float64)
        y = np.concatenate([labels[i] for i in ids])
        return lgb.Dataset(x, y, group=[len(rows[i]) for i in ids], reference=reference,
                           free_raw_data=True)

    train = dataset(parts["train"])
    positives = int(sum(labels[i].sum() for i in parts["train"]))
    params = {
        "objective": "lambdarank", "metric": "ndcg", "eval_at": [10],
        "learning_rate": 0.05, "num_leaves": 15,
        # a leaf holds enough candidates to mean something, fewer on small data
        "min_data_in_leaf": int(np.clip(positives // 4, 5, 50)),
        "feature_fraction": 0.9, "bagging_fraction": 0.8, "bagging_freq": 1,
        # threads: OpenMP's default (OMP_NUM_THREADS, else every core); the same trees on
        # any number (deterministic), and a second thread on a busy machine only waits
        "lambdarank_truncation_level": 20, "num_threads": 0, "deterministic": True,
        "force_row_wise": True, "seed": seed, "verbosity": -1,
    }
    if monotone is not None and any(monotone):
        params["monotone_constraints"] = [int(m) for m in monotone]
    kw: dict[str, Any] = {}
    if parts["valid"]:
        kw = {"valid_sets": [dataset(parts["valid"], train)], "valid_names": ["valid"],
              "callbacks": [lgb.early_stopping(PATIENCE, verbose=False)]}
    booster = lgb.train(params, train, num_boost_round=MAX_ROUNDS if kw else 100, **kw)
    best = booster.best_iteration or booster.current_iteration()
    valid_ndcg = None
    if parts["valid"]:
        valid_ndcg = float(booster.best_score["valid"]["ndcg@10"])
    text = booster.model_to_string(num_iteration=best)
    return FittedRanker(text, int(best), valid_ndcg, time.perf_counter() - start, len(keep))


def fit_linear(rows: list[np.ndarray], labels: list[np.ndarray], *, seed: int = 0,
               per_positive: int = 50, l2: float = 0.5, monotone: Sequence[int] | None = None
               ) -> np.ndarray | None:
    """Weights of a linear score over each query's candidate ``rows`` (``labels``: 1 relevant,
    0 not): the pairwise logistic loss of "the relevant one scores above an irrelevant one of
    the same query" (RankNet's, with a linear scorer) on up to ``per_positive`` seeded
    irrelevant candidates per relevant one, an L2 penalty on the standardized weights, minimized
    by scipy's L-BFGS (``monotone``: per column, 1 for a weight of at least 0, -1 for one of at
    most 0, 0 for a free one). Returns the weights on the raw columns followed by a zero
    intercept (the form of a version's learned weights), or None when no query has both kinds.

    >>> x = [np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])] * 3
    >>> w = fit_linear(x, [np.array([1.0, 0.0, 0.0])] * 3)
    >>> bool(w[0] > 0 > w[1]), float(w[2])
    (True, 0.0)
    """
    rng = np.random.default_rng(seed)
    diffs = []
    for x, y in zip(rows, labels):
        pos, neg = np.flatnonzero(y > 0), np.flatnonzero(y <= 0)
        if len(neg):
            for p in pos:
                pick = neg if len(neg) <= per_positive else rng.choice(neg, per_positive, False)
                diffs.append(x[p] - x[pick])
    if not diffs:
        return None
    d = np.concatenate(diffs).astype(np.float64)
    scale = np.sqrt((d * d).mean(axis=0))  # (differences are scaled, not centred: the loss
    scale[scale == 0] = 1.0  # of a difference and of its opposite are one pair's two sides)
    z = d / scale
    minimize = optional("scipy.optimize", "core", "scipy (the linear ranking's fit)").minimize

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        m = z @ w  # log(1 + exp(-m)) per pair: the relevant one should score higher
        value = float(np.logaddexp(0.0, -m).sum()) + 0.5 * l2 * float(w @ w)
        grad = -(z.T @ (1.0 / (1.0 + np.exp(np.clip(m, -30, 30))))) + l2 * w
        return value, grad

    bounds = [(0.0, None) if m > 0 else (None, 0.0) if m < 0 else (None, None)
              for m in (monotone or [0] * z.shape[1])]
    w = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds).x
    out: np.ndarray = np.append(w / scale, 0.0)
    return out


def save_ranker(state: Path, text: str) -> str:
    """Write a ranker's ``text`` into ``state``'s rankers directory (atomically; a file of the
    same content is already there); its name relative to ``state``."""
    return save_named(state, text.encode(), ".txt", "the ranker")


def save_named(state: Path, data: bytes, suffix: str, what: str) -> str:
    """Write ``data`` into ``state``'s rankers directory as a file named by its content
    (``rankers/<sha256 prefix><suffix>``; atomically, once: a file of the same content is
    already there): the files versions name, never rewritten, carried wherever the collection
    goes. Its name relative to ``state``; ``what`` names it in a storage error."""
    name = f"{RANKERS}/{hashlib.sha256(data).hexdigest()[:20]}{suffix}"
    path = state / name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with staged_file(path, what=what, outcome="nothing was promoted") as tmp:
            tmp.write_bytes(data)
    return name


def read_named(path: str | Path, what: str) -> bytes:
    """The content of a file :func:`save_named` wrote; one missing, unreadable or whose
    content is not the one its name was made from is a :class:`CorruptCollection` naming it
    (``what``: how)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CorruptCollection(f"{p}: {what} cannot be read ({e}); roll back to another "
                                "version or tune again") from None
    if hashlib.sha256(data).hexdigest()[:20] != p.stem:
        raise CorruptCollection(f"{p}: {what} was changed or damaged (its content is not the "
                                "one its name was made from); roll back to another version or "
                                "tune again")
    return data


@lru_cache(maxsize=16)
def load_ranker(path: str) -> Booster:
    """The booster in the ranker file ``path`` (loaded once per process); a file that is
    missing or whose content is not the one its name was made from is a
    :class:`CorruptCollection` naming it."""
    return from_text(read_named(path, "the version's ranker file").decode("utf-8"))


class Booster:
    """A trained LightGBM model, loaded from its text and applied through LightGBM's C API
    (``c_api.h``), as its Python package does, without importing that package (see
    :func:`neartext.util.optional.lightgbm_library`); its scores equal ``lightgbm.Booster``'s
    (tests/test_tuning.py holds them side by side)."""

    def __init__(self, text: str) -> None:
        self._lib = lightgbm_library()
        self._handle = ctypes.c_void_p()
        rounds, features = ctypes.c_int(), ctypes.c_int()
        self._call(self._lib.LGBM_BoosterLoadModelFromString(
            text.encode("utf-8"), ctypes.byref(rounds), ctypes.byref(self._handle)))
        self._call(self._lib.LGBM_BoosterGetNumFeature(self._handle, ctypes.byref(features)))
        self.features = features.value

    def _call(self, status: int) -> None:
        if status != 0:
            raise CorruptCollection("LightGBM: " + self._lib.LGBM_GetLastError().decode())

    def num_feature(self) -> int:
        """The number of features (columns) the model was trained on."""
        return self.features

    def split_counts(self) -> np.ndarray:
        """How many splits of the model's trees test each feature (0: a feature it never
        weighs)."""
        out = np.zeros(self.features, dtype=np.float64)
        self._call(self._lib.LGBM_BoosterFeatureImportance(
            self._handle, ctypes.c_int(0), ctypes.c_int(_IMPORTANCE_SPLIT),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
        return out

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """The raw score of each row (its every tree), on one thread."""
        x = np.ascontiguousarray(rows, dtype=np.float64)
        out, written = np.zeros(len(x), dtype=np.float64), ctypes.c_int64()
        self._call(self._lib.LGBM_BoosterPredictForMat(
            self._handle, x.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(_FLOAT64),
            ctypes.c_int32(x.shape[0]), ctypes.c_int32(x.shape[1]), ctypes.c_int(1),
            ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0), ctypes.c_int(-1),
            b"num_threads=1 verbosity=-1", ctypes.byref(written),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
        if written.value != len(x):
            raise CorruptCollection(f"LightGBM scored {written.value} rows of {len(x)}")
        return out

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None and self._handle.value:
            self._lib.LGBM_BoosterFree(self._handle)


# c_api.h: C_API_DTYPE_FLOAT64, C_API_PREDICT_NORMAL, C_API_FEATURE_IMPORTANCE_SPLIT
_FLOAT64, _PREDICT_NORMAL, _IMPORTANCE_SPLIT = 1, 0, 0


def from_text(text: str) -> Booster:
    """A booster from LightGBM's model text."""
    return Booster(text)


def score(booster: Booster, rows: np.ndarray) -> np.ndarray:
    """The ranking score of each row (only their order within one query means anything); a
    row of another width than the booster was trained on is an error naming both."""
    if rows.shape[1] != booster.num_feature():
        raise CorruptCollection(f"the ranker weighs {booster.num_feature()} features; the "
                                f"search computed {rows.shape[1]}: tune again")
    if not len(rows):
        return np.zeros(0)
    return booster.predict(rows)
