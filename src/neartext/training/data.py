"""Training files: read them, detect their format from the columns, split and balance them.

Four formats, each with a default loss (see :mod:`neartext.training.losses`):

- ``pairs``: (anchor, positive): texts that belong together, e.g. (query, description);
- ``triplets``: (anchor, positive, negative): a hard negative per pair;
- ``scored``: (sentence1, sentence2, score) with scores in [0, 1] or [0, 5] (scaled to [0, 1]);
- ``labeled``: (sentence1, sentence2, label) with labels 0 or 1.

Columns are found by name (``anchor``/``query``/``question1``…, ``positive``/``description``…,
``negative``, ``score``/``label``…) or given explicitly; a file with unnamed columns is read by
position: two text columns are pairs, three are triplets, two texts and a number are scored or
labeled pairs.

Example:
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "train.csv"
    >>> _ = f.write_text("query,description\\ncat on a keyboard,a cat sleeps on a laptop\\n"
    ...                  "dog in rain,a wet dog looks sad\\n")
    >>> data = load_training_data(f)
    >>> data.format, len(data), data.texts["anchor"][0]
    ('pairs', 2, 'cat on a keyboard')
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from neartext.data.evaldata import (
    PASSAGE,
    QUERY,
    TEXT1,
    TEXT2,
    VALUE,
    PairData,
    RetrievalData,
    is_number,
    named_column,
    read_table,
)
from neartext.errors import InputError

Format = Literal["pairs", "triplets", "scored", "labeled"]
FORMATS: dict[str, str] = {
    "pairs": "(anchor, positive) texts that belong together",
    "triplets": "(anchor, positive, negative)",
    "scored": "(sentence1, sentence2, score in [0,1] or [0,5])",
    "labeled": "(sentence1, sentence2, label 0 or 1)",
}
# Dataset column names per format, in the order the losses read them.
TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "pairs": ("anchor", "positive"),
    "triplets": ("anchor", "positive", "negative"),
    "scored": ("sentence1", "sentence2"),
    "labeled": ("sentence1", "sentence2"),
}
_LABEL_NAMES = ("label", "is_duplicate", "duplicate", "relevant", "is_paraphrase")
_ID_NAMES = ("id", "_id", "idx", "index", "row")
NEGATIVE = ("negative", "hard_negative", "negative_1", "neg")
ANCHOR = tuple(dict.fromkeys(("anchor",) + QUERY + TEXT1))
POSITIVE = tuple(dict.fromkeys(("positive",) + TEXT2 + PASSAGE))


@dataclass
class TrainingData:
    """Aligned training columns: ``texts[name]`` per column of :data:`TEXT_COLUMNS`, and
    ``values`` (scores scaled to [0, 1], or 0/1 labels) for scored and labeled data."""

    format: Format
    texts: dict[str, list[str]]
    values: np.ndarray | None
    source: str
    columns: tuple[str, ...]  # the file's column names that were used, in order
    score_scale: float = 1.0  # 5.0 when [0, 5] scores were scaled to [0, 1]
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(next(iter(self.texts.values())))

    def subset(self, rows: Sequence[int]) -> TrainingData:
        """The same data restricted to ``rows`` (in that order)."""
        idx = list(rows)
        return replace(
            self, texts={k: [v[i] for i in idx] for k, v in self.texts.items()},
            values=None if self.values is None else self.values[idx], notes=list(self.notes))

    def as_columns(self) -> dict[str, list]:
        """Columns as the sentence-transformers trainer reads them (texts, then score/label)."""
        cols: dict[str, list] = dict(self.texts)
        if self.format == "scored":
            cols["score"] = [float(v) for v in self.values]  # type: ignore[union-attr]
        elif self.format == "labeled":
            cols["label"] = [int(v) for v in self.values]  # type: ignore[union-attr]
        return cols

    def positive_pairs(self) -> TrainingData:
        """(anchor, positive) pairs: as they are, triplets without negatives, or the label-1 rows."""
        if self.format in ("pairs", "triplets"):
            return replace(self, format="pairs", texts={k: self.texts[k] for k in ("anchor", "positive")},
                           values=None)
        keep = [i for i in range(len(self)) if self.values is not None and self.values[i] >= 0.5]
        sub = self.subset(keep)
        return replace(sub, format="pairs", values=None,
                       texts={"anchor": sub.texts["sentence1"], "positive": sub.texts["sentence2"]})

    def split(self, fraction: float, seed: int = 42) -> tuple[TrainingData, TrainingData]:
        """``(train, held_out)``; rows sharing a first text stay on one side, so no query leaks."""
        if not 0 < fraction < 1:
            raise InputError(f"the evaluation fraction must be in (0, 1) (got {fraction})")
        first = next(iter(self.texts.values()))
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(first):
            groups.setdefault(t, []).append(i)
        keys = list(groups)
        random.Random(seed).shuffle(keys)
        n_eval = max(1, round(len(keys) * fraction))
        if n_eval >= len(keys):
            raise InputError(f"{self.source}: too few distinct texts ({len(keys)}) to hold out "
                             f"{fraction:.0%} for evaluation")
        held = sorted(i for k in keys[:n_eval] for i in groups[k])
        train = sorted(i for k in keys[n_eval:] for i in groups[k])
        return self.subset(train), self.subset(held)

    def balanced(self, seed: int = 42) -> TrainingData:
        """Labeled data with the smaller class repeated (randomly) until both classes are equal."""
        if self.format != "labeled" or self.values is None:
            raise InputError("balanced sampling applies to labeled (0/1) pairs only")
        rng = random.Random(seed)
        pos = [i for i, v in enumerate(self.values) if v == 1]
        neg = [i for i, v in enumerate(self.values) if v == 0]
        small, big = sorted((pos, neg), key=len)
        extra = [rng.choice(small) for _ in range(len(big) - len(small))]
        rows = pos + neg + extra
        rng.shuffle(rows)
        out = self.subset(rows)
        out.notes.append(f"balanced: {len(extra)} rows of the smaller class repeated")
        return out

    def pair_data(self) -> PairData:
        """Scored or labeled rows as :class:`~neartext.engine.evaluate.PairData` for evaluation."""
        t1, t2 = TEXT_COLUMNS[self.format][:2]
        if self.format in ("pairs", "triplets"):
            raise InputError(f"{self.source}: {self.format} carry no scores or labels")
        return PairData(self.texts[t1], self.texts[t2], np.asarray(self.values, dtype=np.float64),
                        self.source, (self.columns[0], self.columns[1], self.columns[-1]))

    def retrieval_data(self) -> RetrievalData:
        """Each anchor's gold is its positive; every positive (and negative) is in the corpus."""
        pairs = self.positive_pairs()
        queries: dict[str, str] = {}
        corpus: dict[str, str] = {}
        qrels: dict[str, dict[str, float]] = {}
        by_q: dict[str, str] = {}
        by_p: dict[str, str] = {}
        extra = self.texts.get("negative", [])
        for q, p in zip(pairs.texts["anchor"], pairs.texts["positive"]):
            qid = by_q.setdefault(q, f"q{len(by_q)}")
            pid = by_p.setdefault(p, f"p{len(by_p)}")
            queries[qid], corpus[pid] = q, p
            qrels.setdefault(qid, {})[pid] = 1.0
        for n in extra:
            corpus.setdefault(by_p.setdefault(n, f"p{len(by_p)}"), n)
        if not qrels:
            raise InputError(f"{self.source}: no positive pairs to evaluate retrieval on")
        return RetrievalData(queries, corpus, qrels, self.source)


def load_training_data(
    path: str | Path,
    *,
    anchor: str | None = None,
    positive: str | None = None,
    negative: str | None = None,
    score: str | None = None,
    encoding: str = "utf-8",
) -> TrainingData:
    """Read a training file and detect its format (see the module docstring).

    Columns may be given by name or 1-based position: ``anchor``/``positive`` are the two texts
    (sentence1/sentence2 for scored and labeled data), ``negative`` a hard negative, ``score`` a
    score or label.
    """
    p = Path(path)
    names, table, has_header = read_table(p, encoding)
    lowered = [n.lower() for n in names]
    numeric = [i for i in range(len(names))
               if all(i < len(r) and r[i] not in (None, "") and is_number(r[i]) for r in table)]

    def by_name(given: str | None, candidates: Sequence[str], what: str, taken: set[int]) -> int | None:
        if given is not None:
            return named_column(p, names, given, what)
        if not has_header:
            return None
        for c in candidates:
            if c in lowered and lowered.index(c) not in taken:
                return lowered.index(c)
        return None

    cv = by_name(score, VALUE, "score", set())
    scores = [i for i in numeric if lowered[i] not in _ID_NAMES
              and all(0 <= float(r[i]) <= 5 for r in table)]
    if cv is None and (len(scores) == 1 or (scores and not has_header)):
        cv = scores[-1]  # the number column whose values a score could take
    taken = {cv} if cv is not None else set()
    ca = by_name(anchor, ANCHOR, "anchor", taken)
    taken |= {ca} if ca is not None else set()
    cp = by_name(positive, POSITIVE, "positive", taken)
    taken |= {cp} if cp is not None else set()
    cn = by_name(negative, NEGATIVE, "negative", taken) if cv is None else None
    texts = [i for i in range(len(names)) if i not in numeric and i != cv]
    if ca is None or cp is None:
        rest = [i for i in texts if i not in (ca, cp, cn)]
        named = [c for c in (ca, cp, cn) if c is not None]
        # Unnamed columns are read by position only when the layout leaves no doubt.
        want = 2 - sum(c is not None for c in (ca, cp))
        if cv is None and cn is None and not named and len(rest) == 3:
            ca, cp, cn = rest
        elif len(rest) == want or (cv is not None and not has_header and len(rest) > want):
            # Headerless scored files (STS Benchmark) carry other text columns: the longest win.
            mean = {i: sum(len(str(r[i])) for r in table[:200] if i < len(r)) for i in rest}
            fill = iter(sorted(sorted(rest, key=lambda i: -mean[i])[:want]))
            ca = ca if ca is not None else next(fill)
            cp = cp if cp is not None else next(fill)
        else:
            raise _no_format(p, names)
    fmt: Format
    values = None
    scale = 1.0
    notes: list[str] = []
    if cv is not None:
        values, fmt, scale = _values(p, names[cv], [r[cv] if cv < len(r) else None for r in table],
                                     has_header)
        if fmt == "labeled" and values.min() == 1:  # positives only: plain pairs
            values, fmt = None, "pairs"
            notes.append(f"every '{names[cv]}' is 1: read as (anchor, positive) pairs")
    else:
        fmt = "triplets" if cn is not None else "pairs"
    used = [c for c in (ca, cp, cn, cv) if c is not None]
    out_names = TEXT_COLUMNS[fmt]
    cols: dict[str, list[str]] = {k: [] for k in out_names}
    src_cols = [ca, cp, cn][: len(out_names)]
    first = 2 if has_header else 1
    for n, row in enumerate(table, first):
        for key, c in zip(out_names, src_cols):
            v = row[c] if c is not None and c < len(row) else None
            text = "" if v is None else str(v).strip()
            if not text:
                raise InputError(f"{p}: line {n}: empty text in column '{names[c]}'")  # type: ignore[index]
            cols[key].append(text)
    return TrainingData(fmt, cols, values, str(p), tuple(names[c] for c in used), scale, notes)


def _values(p: Path, name: str, raw: list, has_header: bool) -> tuple[np.ndarray, Format, float]:
    first = 2 if has_header else 1
    vals = []
    for n, v in enumerate(raw, first):
        try:
            vals.append(float(v))
        except (TypeError, ValueError):
            raise InputError(f"{p}: line {n}: '{name}' is not a number: {v!r}") from None
    arr = np.array(vals, dtype=np.float64)
    if np.isin(arr, (0, 1)).all():
        return arr, "labeled", 1.0
    if name.lower() in _LABEL_NAMES:
        bad = np.flatnonzero(~np.isin(arr, (0, 1)))
        raise InputError(f"{p}: line {bad[0] + first}: label {arr[bad[0]]:g} in '{name}' is not 0 or 1 "
                         "(use a column named 'score' for graded similarity)")
    bad = np.flatnonzero((arr < 0) | (arr > 5) | ~np.isfinite(arr))
    if len(bad):
        raise InputError(f"{p}: line {bad[0] + first}: score {arr[bad[0]]:g} in '{name}' is out of "
                         "range; scores must lie in [0, 1] or [0, 5], labels must be 0 or 1")
    scale = 1.0 if arr.max() <= 1 else 5.0
    return arr / scale, "scored", scale


def _no_format(p: Path, names: list[str]) -> InputError:
    formats = "; ".join(f"{k}: {v}" for k, v in FORMATS.items())
    return InputError(
        f"{p}: columns ({', '.join(names)}) fit no known training format. Known formats: {formats}. "
        "Name the columns (e.g. anchor,positive[,negative] or sentence1,sentence2,score) or pick "
        "them with --anchor/--positive/--negative/--score")
