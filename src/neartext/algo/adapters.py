"""Embedding adapters: a small transform learned on top of any encoder's vectors.

An adapter maps a query vector ``q`` to ``normalize(q @ W)`` and leaves the documents' stored
vectors alone (a query-side adapter: nothing is re-embedded). A both-side adapter (``side``
``both``, for symmetric tasks: paraphrase mining, dedup) maps the documents too: the stored
vectors are transformed by the same matrix product when it is promoted (the encoder does not
run), and back by its inverse on a rollback, so only the invertible kinds (``linear``,
``lowrank``, ``diagonal``) can be both-side. It needs only vectors, so it works
for every encoder neartext runs (sentence-transformers, ``use-multilingual``, ONNX, static).
Training follows the embedding-adapter recipe (Chroma's technical report "Embedding Adapters";
LlamaIndex's ``EmbeddingAdapterFinetuneEngine``): a softmax over each query's positive document
against the other positives of the batch and random documents of the collection, plus the
hard negatives users marked 👎. A full square matrix overfits a few hundred pairs within epochs,
so ``W`` is kept near the identity (a penalty on ``W - I``), training stops at the best held-out
MRR@10 (queries split into train and held-out groups), and two smaller kinds exist:

- ``linear``: ``W = I + D`` with ``D`` a full ``dim x dim`` matrix;
- ``lowrank``: ``W = I + U V^T`` of rank 16;
- ``diagonal``: ``W = diag(1 + d)``, a re-weighting of the dimensions;
- ``residual-mlp``: ``normalize(q + relu(q A + b) B)`` with a hidden layer of 256, ``B``
  starting at zero (the identity): a non-linear correction, for data a matrix cannot fit.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> docs = rng.standard_normal((200, 8)).astype(np.float32)
    >>> docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    >>> rows = np.arange(200)
    >>> c, s = np.cos(0.8), np.sin(0.8)      # a rotation by 0.8 rad in 4 planes
    >>> rotation = np.kron(np.eye(4), [[c, -s], [s, c]]).astype(np.float32)
    >>> queries = docs @ rotation.T          # each query is its document, rotated
    >>> result = train_adapter(queries, rows, docs, groups=rows, base_fingerprint="x", lr=3e-3)
    >>> result.after["mrr@10"] > result.before["mrr@10"] + 0.2
    True
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neartext.algo.metrics import retrieval_metrics
from neartext.errors import InputError, ModelMismatch
from neartext.util.atomic import staged_file
from neartext.util.linalg import one_torch_thread, top_k
from neartext.util.optional import optional

KINDS = ("linear", "lowrank", "diagonal", "residual-mlp")
SIDES = ("query", "both")
BOTH_KINDS = ("linear", "lowrank", "diagonal")  # invertible: a rollback maps the documents back
MAX_CONDITION = 1e4  # a both-side matrix less well-conditioned than this is not kept
MIN_PAIRS = 20  # fewer (query, document) pairs than this teach an adapter nothing measurable
RANK = 16
KIND_HELP = {"linear": "a full matrix kept near the identity", "lowrank": "the identity plus a "
             f"rank-{RANK} update", "diagonal": "one weight per dimension",
             "residual-mlp": "the identity plus a small non-linear network; query side only"}
HIDDEN = 256  # residual-mlp's hidden units
STEPS_PER_EPOCH = 10  # at least, between two held-out evaluations (small pair sets)
# Adam's step is about lr per weight: a full matrix moves all dim x dim of them at once. Chosen on
# ParaPhraser with all-MiniLM-L6-v2 (held-out MRR@10 from 0.664): linear 1e-4 -> 0.695 (3e-3:
# 0.672, 3e-5: 0.669), lowrank 1e-3 -> 0.672, diagonal 1e-3 -> 0.667
LEARNING_RATES = {"linear": 1e-4, "lowrank": 1e-3, "diagonal": 1e-3, "residual-mlp": 1e-3}
_FORMAT = "neartext-adapter 1"


@dataclass
class Adapter:
    """A learned map of query vectors: ``normalize(q @ matrix)``, plus for ``residual-mlp``
    ``relu(q @ hidden + bias) @ out`` added before normalizing (``mlp``: those three arrays).
    ``base_fingerprint`` is the fingerprint of the encoder whose vectors it was trained on."""

    kind: str
    side: str
    matrix: np.ndarray
    base_fingerprint: str
    info: dict[str, Any] = field(default_factory=dict)
    mlp: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """The adapted vectors, unit length (rows of ``vectors``)."""
        x = np.asarray(vectors, dtype=np.float32)
        v = x @ self.matrix
        if self.mlp is not None:
            hidden, bias, out = self.mlp
            v = v + np.maximum(x @ hidden + bias, 0) @ out
        norm: np.ndarray = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
        return norm.astype(np.float32)

    @property
    def documents_too(self) -> bool:
        """Whether it maps the documents' vectors as well (``side`` ``both``)."""
        return self.side == "both"

    def invert(self, vectors: np.ndarray) -> np.ndarray:
        """The unit vectors that :meth:`apply` maps to ``vectors`` (a both-side adapter's
        documents brought back to the encoder's space; within float precision).

        >>> a = Adapter("linear", "both", np.array([[2.0, 1.0], [0.0, 1.0]], np.float32), "x")
        >>> x = np.array([[0.6, 0.8]], np.float32)
        >>> bool(np.allclose(a.invert(a.apply(x)), x, atol=1e-6))
        True
        """
        if self.mlp is not None:
            raise InputError(f"a {self.kind} adapter cannot be inverted")
        inverse = np.linalg.inv(self.matrix.astype(np.float64))
        v = np.asarray(vectors, dtype=np.float64) @ inverse
        v /= np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
        return v.astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write the adapter to ``path`` (one ``.npz`` file, replaced atomically)."""
        meta = {"format": _FORMAT, "kind": self.kind, "side": self.side,
                "base_fingerprint": self.base_fingerprint, "info": self.info}
        arrays = {"matrix": self.matrix.astype(np.float32), "meta": np.array(json.dumps(meta))}
        if self.mlp is not None:
            arrays.update(zip(("hidden", "bias", "out"), (a.astype(np.float32) for a in self.mlp)))
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        # a full disk: the staged file is gone, the old one untouched, one line says so
        with staged_file(Path(path), what="the adapter", outcome="nothing was changed") as tmp:
            tmp.write_bytes(buf.getvalue())

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None) -> Adapter:
        """Read an adapter; :class:`InputError` naming the file when it does not load, and
        :class:`ModelMismatch` when ``fingerprint`` (the encoder's) is not the one it was
        trained on."""
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                matrix = np.asarray(z["matrix"], dtype=np.float32)
                meta = json.loads(str(z["meta"]))
                mlp = None
                if "hidden" in z.files:
                    mlp = tuple(np.asarray(z[k], dtype=np.float32)
                                for k in ("hidden", "bias", "out"))
            dim = matrix.shape[0] if matrix.ndim == 2 else -1
            if meta.get("format") != _FORMAT or matrix.ndim != 2 or matrix.shape[1] != dim or \
                    not np.isfinite(matrix).all():
                raise ValueError("not a neartext adapter")
            if mlp is not None:
                hidden, bias, out = mlp
                if hidden.ndim != 2 or hidden.shape[0] != dim or bias.shape != hidden.shape[1:] \
                        or out.shape != (hidden.shape[1], dim) or \
                        not all(np.isfinite(a).all() for a in mlp):
                    raise ValueError("its hidden layer does not fit its matrix")
            if meta.get("side") not in SIDES or (meta["side"] == "both" and mlp is not None):
                raise ValueError(f"unknown side {meta.get('side')!r}")
            adapter = cls(meta["kind"], meta["side"], matrix, meta["base_fingerprint"],
                          dict(meta.get("info") or {}), mlp)  # type: ignore[arg-type]
        except Exception as e:  # noqa: BLE001 - whatever the bytes are: not an adapter
            # (numpy raises EOFError for an empty file, BadZipFile for a damaged archive, ...)
            raise InputError(f"{p}: the adapter does not load ({type(e).__name__}: {e})"
                             ) from None
        if fingerprint is not None and fingerprint != adapter.base_fingerprint:
            raise ModelMismatch(
                f"{p}: the adapter was trained on vectors of model {adapter.base_fingerprint[:12]}, "
                f"this collection's model is {fingerprint[:12]}; tune it again")
        return adapter


@dataclass
class TuneResult:
    """An adapter and its held-out metrics before (no adapter) and after."""

    adapter: Adapter
    before: dict[str, float]
    after: dict[str, float]
    train_pairs: int
    held_out_pairs: int
    epochs: int
    best_epoch: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    rr_before: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rr_after: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def gain(self, metric: str = "mrr@10") -> float:
        return self.after[metric] - self.before[metric]

    def gain_interval(self) -> tuple[float, float]:
        """MRR@10 gain on the held-out queries and the lower end of its 95% interval."""
        return paired_gain(self.rr_before, self.rr_after)


def check_kind(kind: str, side: str) -> None:
    """An :class:`InputError` for an unknown kind or side, or a kind that cannot be both-side."""
    if kind not in KINDS:
        raise InputError(f"unknown adapter kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if side not in SIDES:
        raise InputError(f"unknown adapter side {side!r}; choose one of: {', '.join(SIDES)}")
    if side == "both" and kind not in BOTH_KINDS:
        raise InputError(f"a {kind} adapter cannot be both-side: the stored vectors are mapped "
                         "by it and back by its inverse on a rollback; use one of: "
                         f"{', '.join(BOTH_KINDS)}")


def split_groups(groups: Sequence[Any] | np.ndarray, held_out: float, seed: int) -> np.ndarray:
    """A boolean mask of the rows whose group is held out: pairs of one query stay on one
    side. Each group's side is its own, a seeded hash of it (held out below ``held_out``): as
    pairs are added (a pairs file that grows, ratings that arrive between two ``improve``
    runs), a query keeps its side, so a version trained on one side before is never measured
    on what it was trained on. (It was a seeded permutation of all the groups: the next run's
    held-out queries were partly the last one's training queries, and the version trained on
    them looked better there than it is.) At least one group is held out, and with two or more
    at least one is not.

    >>> queries = ["q0", "q1", "q0", "q2", "q3", "q4", "q5"]
    >>> mask = split_groups(queries, 0.5, seed=0)
    >>> mask.astype(int).tolist()  # q0's two pairs on one side
    [1, 0, 1, 1, 1, 1, 0]
    >>> more = split_groups(queries + ["q6", "q7"], 0.5, seed=0)
    >>> bool((more[:len(queries)] == mask).all())  # each query kept its side
    True
    """
    keys = list(dict.fromkeys(groups))
    draw = np.array([int.from_bytes(hashlib.blake2b(f"{seed}\0{k}".encode(), digest_size=8)
                                    .digest(), "big") / 2.0 ** 64 for k in keys])
    side = draw < held_out
    if not side.any():
        side[int(np.argmin(draw))] = True
    elif side.all() and len(keys) > 1:
        side[int(np.argmax(draw))] = False
    held = {k for k, h in zip(keys, side.tolist()) if h}
    return np.array([g in held for g in groups], dtype=bool)


def ranking_metrics(queries: np.ndarray, docs: np.ndarray, gold: Sequence[set[int]]
                    ) -> tuple[dict[str, float], np.ndarray]:
    """MRR@10, nDCG@10, Recall@k of the queries ranked against **all** ``docs``, and each
    query's reciprocal rank (0 outside the top 10), for paired comparisons."""
    k = min(100, len(docs))
    _, pos = top_k(np.asarray(queries, dtype=np.float32), docs, k)
    ranked = {str(i): [str(int(p)) for p in row] for i, row in enumerate(pos)}
    relevant = {str(i): {str(d): 1.0 for d in g} for i, g in enumerate(gold)}
    rr = np.array([next((1.0 / (r + 1) for r, p in enumerate(row[:10]) if int(p) in g), 0.0)
                   for row, g in zip(pos, gold)])
    return retrieval_metrics(ranked, relevant), rr


def paired_gain(before: np.ndarray, after: np.ndarray, *, rounds: int = 2000, seed: int = 0
                ) -> tuple[float, float]:
    """The mean per-query gain ``after - before`` and the lower end of its one-sided 95%
    bootstrap interval (resampling queries): a gain whose lower end is not above 0 could be
    the luck of which queries were held out."""
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    if len(diff) == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (rounds, len(diff)))].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 0.05))


def queries_needed(before: np.ndarray, after: np.ndarray) -> int | None:
    """How many held-out queries would put the lower end of :func:`paired_gain`'s interval
    above 0 for a gain like this one (the same mean and spread of per-query gains; normal
    approximation, one-sided 95%): ``(1.645 sd / mean)²``; None for a gain that is not
    positive.

    >>> queries_needed(np.zeros(10), np.array([0.5, -0.5] * 4 + [1.0, 0.0]))
    88
    """
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    mean = float(diff.mean()) if len(diff) else 0.0
    if mean <= 0:
        return None
    return int(math.ceil((1.645 * float(diff.std(ddof=1) if len(diff) > 1 else 0.0) / mean) ** 2))


class PassageRows:
    """Which rows of a collection's vectors (its passages, in store order) belong to which
    document: a chunked document has several. An adapter learns toward the passage of a pair's
    document nearest to its query (not its first: for a query about a document's third
    sentence, the first passage is another text), and the document's other passages are
    neither its target nor its negatives.

    >>> rows = PassageRows(["a", "a", "b"])
    >>> q = np.array([[0.0, 1.0]], dtype=np.float32)
    >>> docs = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    >>> rows.nearest(q, docs, [(0, "a"), (0, "b")]).tolist(), rows.groups.tolist()
    ([1, 2], [0, 0, 1])
    """

    def __init__(self, doc_ids: Sequence[str]) -> None:
        number: dict[str, int] = {}
        self.groups = np.fromiter((number.setdefault(d, len(number)) for d in doc_ids),
                                  dtype=np.int64, count=len(doc_ids))
        self.chunked = len(number) < len(doc_ids)
        self._number = number
        # each document's first row (documents are numbered in the order they first appear)
        self._first_row = np.unique(self.groups, return_index=True)[1].astype(np.int64)
        self._rows: dict[int, np.ndarray] | None = None

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._number

    def rows_of(self, doc_id: str) -> np.ndarray:
        """The rows of a document's passages."""
        return self._rows_of_number(self._number[doc_id])

    def siblings(self, row: int) -> np.ndarray:
        """The rows of the passages of the document ``row`` belongs to (``row`` included)."""
        return self._rows_of_number(int(self.groups[row]))

    def _rows_of_number(self, n: int) -> np.ndarray:
        if not self.chunked:
            return self._first_row[n:n + 1]
        if self._rows is None:
            order = np.argsort(self.groups, kind="stable")
            bounds = np.searchsorted(self.groups[order], np.arange(len(self._number) + 1))
            self._rows = {g: order[bounds[g]:bounds[g + 1]] for g in range(len(self._number))}
        return self._rows[n]

    def nearest(self, queries: np.ndarray, docs: np.ndarray,
                pairs: Sequence[tuple[int, str]]) -> np.ndarray:
        """For each (query row, document id) of ``pairs``, the row of that document's passage
        whose vector in ``docs`` is nearest (by dot product) to ``queries[query row]``."""
        if not self.chunked:
            return np.array([self._first_row[self._number[d]] for _, d in pairs],
                            dtype=np.int64)
        out = np.empty(len(pairs), dtype=np.int64)
        for k, (i, d) in enumerate(pairs):
            rows = self.rows_of(d)
            out[k] = rows[int(np.argmax(docs[rows] @ queries[i]))] if len(rows) > 1 else rows[0]
        return out


def _gold_mask(batch: np.ndarray, cand: np.ndarray, group_of: Sequence[Any],
               gold_by_group: dict[Any, set[int]]) -> np.ndarray:
    """``[i, j]``: candidate row ``cand[j]`` is a gold row of the query ``batch[i]``'s group
    (looked up by gold row: a query has few, a batch many candidates)."""
    columns: dict[int, list[int]] = {}
    for j, row in enumerate(cand.tolist()):
        columns.setdefault(row, []).append(j)
    mask = np.zeros((len(batch), len(cand)), dtype=bool)
    for i, query in enumerate(batch.tolist()):
        for row in gold_by_group[group_of[query]]:
            mask[i, columns.get(row, [])] = True
    return mask


def train_adapter(
    queries: np.ndarray,
    positives: np.ndarray,
    docs: np.ndarray,
    *,
    groups: Sequence[Any] | np.ndarray,
    base_fingerprint: str,
    hard_negatives: Sequence[tuple[int, int]] = (),
    kind: str = "linear",
    side: str = "query",
    held_out: float = 0.2,
    epochs: int = 60,
    batch_size: int = 64,
    random_negatives: int = 64,
    identity_weight: float = 1e-3,
    patience: int = 8,
    lr: float | None = None,
    baseline: Adapter | None = None,
    seed: int = 0,
    passages: PassageRows | None = None,
) -> TuneResult:
    """Learn an adapter from (query vector, positive document row) pairs: query-side, or with
``side="both"`` applied to the documents as well (then its matrix must stay invertible).

    ``queries`` (n, dim) are the queries' vectors (repeated per pair), ``positives`` (n,) the
    row in ``docs`` (the collection's vectors) of each pair's document, ``groups`` the query each
    pair belongs to (the held-out split keeps a query's pairs together), ``hard_negatives``
    (pair index, doc row) rows marked not relevant. Held-out queries are ranked against all
    ``docs`` before and after; the adapter kept is the one of the best held-out MRR@10 epoch.
    ``passages``: which rows are passages of one document (a chunked collection's): a
    query's gold is then every passage of its documents (none of them a negative; the first
    ranked counts), its target the row given in ``positives``
    (:meth:`PassageRows.nearest`).
    """
    torch = optional("torch", "sbert", "torch (to train an adapter)")  # (searching needs none)
    check_kind(kind, side)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    d = np.ascontiguousarray(docs, dtype=np.float32)
    pos = np.asarray(positives, dtype=np.int64)
    if len(q) != len(pos) or len(q) != len(groups):
        raise ValueError("queries, positives and groups must be aligned")
    if len(q) < MIN_PAIRS:
        raise InputError(f"{len(q)} (query, document) pairs are too few to learn from; "
                         f"at least {MIN_PAIRS} are needed")
    group_of = list(groups)
    held = split_groups(group_of, held_out, seed)
    if held.all() or not held.any():
        raise InputError("the pairs come from too few distinct queries to hold some out; "
                         "at least 2 are needed")
    t0 = time.perf_counter()
    dim = q.shape[1]
    held_idx, train_idx = np.flatnonzero(held), np.flatnonzero(~held)
    gold_by_group: dict[Any, set[int]] = {}
    for g, p in zip(group_of, pos):
        gold = gold_by_group.setdefault(g, set())
        if passages is not None and passages.chunked:
            gold.update(passages.siblings(int(p)).tolist())
        else:
            gold.add(int(p))
    # one held-out query per group (its vector), its gold rows: every positive of that query
    first: dict[Any, int] = {}
    for i in held_idx.tolist():
        first.setdefault(group_of[i], i)
    eval_rows = list(first.values())
    eval_gold = [gold_by_group[group_of[i]] for i in eval_rows]
    q_eval = q[eval_rows]

    def evaluate(adapter: Adapter | None) -> tuple[dict[str, float], np.ndarray]:
        if adapter is None:
            return ranking_metrics(q_eval, d, eval_gold)
        return ranking_metrics(adapter.apply(q_eval),
                               adapter.apply(d) if adapter.documents_too else d, eval_gold)

    before, rr_before = evaluate(baseline)
    gen = torch.Generator().manual_seed(seed)
    torch_q = torch.from_numpy(q)
    torch_d = torch.from_numpy(d)
    if kind == "linear":
        params = [torch.zeros(dim, dim)]
    elif kind == "lowrank":
        params = [torch.randn(dim, RANK, generator=gen) * 0.01, torch.zeros(RANK, dim)]
    elif kind == "residual-mlp":
        params = [torch.randn(dim, HIDDEN, generator=gen) * dim ** -0.5, torch.zeros(HIDDEN),
                  torch.zeros(HIDDEN, dim)]
    else:
        params = [torch.zeros(dim)]
    for p in params:
        p.requires_grad_(True)
    eye = torch.eye(dim)

    def weight() -> Any:
        if kind == "linear":
            return eye + params[0]
        if kind == "lowrank":
            return eye + params[0] @ params[1]
        if kind == "residual-mlp":
            return eye
        return torch.diag(1 + params[0])

    def forward(x: Any) -> Any:
        v = x @ weight()
        if kind == "residual-mlp":
            v = v + torch.relu(x @ params[0] + params[1]) @ params[2]
        return torch.nn.functional.normalize(v, dim=1)

    def penalty() -> Any:
        # the pull toward the identity: on the matrix, or on the correction's output layer
        if kind == "residual-mlp":
            return (params[2] ** 2).sum()
        return ((weight() - eye) ** 2).sum()

    def snapshot() -> Adapter:
        with torch.no_grad():
            mlp = None if kind != "residual-mlp" else tuple(
                p.detach().numpy().astype(np.float32).copy() for p in params)
            return Adapter(kind, side, weight().detach().numpy().astype(np.float32).copy(),
                           base_fingerprint, {}, mlp)  # type: ignore[arg-type]

    negatives_of: dict[int, list[int]] = {}
    for pair, row in hard_negatives:
        negatives_of.setdefault(int(pair), []).append(int(row))
    with one_torch_thread(torch):  # small tensors: a second thread only costs
        opt = torch.optim.Adam(params, lr=lr or LEARNING_RATES[kind])
        rng = np.random.default_rng(seed)
        best: tuple[float, int, Adapter | None] = (before["mrr@10"], 0, baseline)
        history, stale, epoch = [], 0, 0
        scale = 20.0
        steps = max(STEPS_PER_EPOCH, -(-len(train_idx) // batch_size))
        for epoch in range(1, epochs + 1):
            order = rng.permutation(train_idx)
            for step in range(steps):
                at = (step * batch_size) % len(order)
                batch = order[at:at + batch_size]
                if len(batch) < min(batch_size, len(order)):
                    batch = np.concatenate([batch, order[:min(batch_size, len(order)) - len(batch)]])
                cand_rows = list(pos[batch])
                hard = [r for i in batch for r in negatives_of.get(int(i), [])]
                rand = rng.integers(0, len(d), random_negatives).tolist()
                cand = np.array(cand_rows + hard + rand, dtype=np.int64)
                qa = forward(torch_q[batch])
                da = forward(torch_d[cand]) if side == "both" else torch_d[cand]
                logits = scale * qa @ da.T
                # another query's positive that is also this query's positive is not a negative
                same = torch.from_numpy(_gold_mask(batch, cand, group_of, gold_by_group))
                target = torch.arange(len(batch))
                own = torch.zeros_like(same)
                own[target, target] = True
                logits = logits.masked_fill(same & ~own, float("-inf"))
                loss = torch.nn.functional.cross_entropy(logits, target)
                loss = loss + identity_weight * penalty()
                opt.zero_grad()
                loss.backward()
                opt.step()
            candidate = snapshot()
            metrics, _ = evaluate(candidate)
            history.append({"epoch": float(epoch), **metrics})
            # (the condition number only where it matters: an SVD per epoch is not free)
            if metrics["mrr@10"] > best[0] + 1e-6 and (
                    side == "query" or np.linalg.cond(candidate.matrix) < MAX_CONDITION):
                best, stale = (metrics["mrr@10"], epoch, candidate), 0
            else:
                stale += 1
                if stale >= patience:
                    break
    _, best_epoch, kept = best
    after, rr_after = evaluate(kept) if best_epoch else (before, rr_before)
    if kept is None or not best_epoch:  # no epoch beat the start: the start, as this kind
        kept = Adapter(kind, side, np.eye(dim, dtype=np.float32), base_fingerprint, {},
                       None if kind != "residual-mlp" else (
                           np.zeros((dim, HIDDEN), np.float32), np.zeros(HIDDEN, np.float32),
                           np.zeros((HIDDEN, dim), np.float32)))
        if baseline is not None:
            kept = Adapter(baseline.kind, baseline.side, baseline.matrix, base_fingerprint, {},
                           baseline.mlp)
    kept.info = {"best_epoch": best_epoch, "train_pairs": len(train_idx),
                 "held_out_pairs": len(held_idx)}
    adapter = kept
    return TuneResult(adapter, before, after, len(train_idx), len(held_idx), epoch, best_epoch,
                      time.perf_counter() - t0, history, rr_before, rr_after)
