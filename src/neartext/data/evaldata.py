"""Labeled data to measure with: pairs (STS scores or 0/1 labels) and retrieval judgements
(queries, a corpus, relevance), read from CSV/TSV or JSONL files (through
:mod:`neartext.util.readers`) with or without a header, or from a BEIR folder.

Columns are found by name (``sentence1``/``sentence2``/``score``/``label`` and common
variants) or given by name or 1-based position; without a header, the two longest text columns
and the numeric column are used.

Example:
    >>> from neartext.data.evaldata import load_pairs                    # doctest: +SKIP
    >>> load_pairs("sts-test.csv").columns                               # doctest: +SKIP
    ['sentence1', 'sentence2', 'score']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neartext.errors import InputError
from neartext.util.readers import delimited_rows, jsonl_values, lines, read_text

TEXT1 = ("sentence1", "text1", "question1", "s1", "text_a", "anchor", "query", "sentence_a")


TEXT2 = ("sentence2", "text2", "question2", "s2", "text_b", "positive", "sentence_b", "passage")


VALUE = ("score", "label", "similarity", "is_duplicate", "gold", "quality", "relevant")


@dataclass
class PairData:
    """Two aligned lists of texts and a value per pair (a score or a 0/1 label)."""

    text1: list[str]
    text2: list[str]
    value: np.ndarray
    source: str
    columns: tuple[str, str, str]


def load_pairs(
    path: str | Path,
    text1: str | None = None,
    text2: str | None = None,
    value: str | None = None,
    *,
    encoding: str = "utf-8",
) -> PairData:
    """Read a file of text pairs with a score or label per pair (see the module docstring)."""
    p = Path(path)
    names, table, has_header = read_table(p, encoding)
    c1, c2, cv = _pick_columns(p, names, table, has_header, text1, text2, value)
    t1, t2, vals = [], [], []
    for n, row in enumerate(table, 2 if has_header else 1):
        try:
            a, b, v = row[c1], row[c2], row[cv]
        except IndexError:
            raise InputError(f"{p}: line {n}: expected at least {max(c1, c2, cv) + 1} fields, "
                             f"got {len(row)}") from None
        try:
            vals.append(float(v))
        except (TypeError, ValueError):
            raise InputError(f"{p}: line {n}: '{names[cv]}' is not a number: {v!r}") from None
        t1.append(str(a or ""))
        t2.append(str(b or ""))
    return PairData(t1, t2, np.array(vals), str(p), (names[c1], names[c2], names[cv]))


def read_table(p: Path, encoding: str = "utf-8") -> tuple[list[str], list[list], bool]:
    """``(column names, rows, has_header)`` of a CSV/TSV/JSONL file (read by
    :mod:`neartext.util.readers`); names are 1-based positions when there is no header."""
    raw = read_text(p, encoding)
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        rows = [v for _, v in jsonl_values(p, raw)]
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
        if bad is not None:
            raise InputError(f"{p}: row {bad + 1}: expected a JSON object, got "
                             f"{type(rows[bad]).__name__}")
        header = list(rows[0]) if rows else []
        table: list[list] = [[r.get(h) for h in header] for r in rows]
        has_header = True
    else:
        table = [values for _, values in delimited_rows(p, raw)]
        header = table[0] if table else []
        has_header = (bool(table) and not _looks_numeric_row(table[0], table[1:6])
                      and all(_looks_like_name(c) for c in table[0]))
        if has_header:
            table = table[1:]
    if not table:
        raise InputError(f"{p}: the file is empty" if not raw.strip() else f"{p}: no rows in the file")
    names = [str(h).strip() for h in header] if has_header else [
        str(i + 1) for i in range(len(table[0]))]
    return names, table, has_header


def is_number(x: object) -> bool:
    try:
        float(str(x))
        return True
    except ValueError:
        return False


def _looks_like_name(cell: str) -> bool:
    """Column names are short labels; a sentence in the first row means there is no header."""
    return len(cell) <= 40 and len(cell.split()) <= 3


def _looks_numeric_row(first: list[str], rest: list[list[str]]) -> bool:
    """A first row is data (not a header) if it is numeric where the following rows are."""
    numeric_cols = [i for i in range(len(first)) if rest and all(
        i < len(r) and is_number(r[i]) for r in rest)]
    return any(is_number(first[i]) for i in numeric_cols)


def named_column(p: Path, names: list[str], given: str, what: str) -> int:
    """A column given by name or 1-based position; an error listing the columns otherwise."""
    if given in names:
        return names.index(given)
    if given.isdecimal() and 1 <= int(given) <= len(names):
        return int(given) - 1
    raise InputError(f"{p}: unknown {what} column '{given}'; available columns: {', '.join(names)}")


def _pick_columns(p: Path, names: list[str], table: list[list[Any]], has_header: bool,
                  text1: str | None, text2: str | None, value: str | None
                  ) -> tuple[int, int, int]:
    def find(given: str | None, candidates: Sequence[str], what: str) -> int | None:
        if given is not None:
            return named_column(p, names, given, what)
        if has_header:
            lowered = [n.lower() for n in names]
            for c in candidates:
                if c in lowered:
                    return lowered.index(c)
        return None

    c1, c2, cv = find(text1, TEXT1, "text"), find(text2, TEXT2, "text"), find(value, VALUE, "score")
    sample = table[:200]
    if cv is None:
        numeric = [i for i in range(len(names)) if all(i < len(r) and is_number(r[i])
                                                        for r in sample)]
        if not numeric:
            raise InputError(f"{p}: no score or label column found; name it with --score "
                             f"(columns: {', '.join(names)})")
        cv = numeric[-1]
    if c1 is None or c2 is None:
        lengths = {i: np.mean([len(str(r[i])) if i < len(r) else 0 for r in sample])
                   for i in range(len(names)) if i != cv and not all(
                       i < len(r) and is_number(r[i]) for r in sample)}
        longest = sorted(lengths, key=lambda i: -lengths[i])
        if len(longest) < 2:
            raise InputError(f"{p}: need two text columns; name them with --text1/--text2 "
                             f"(columns: {', '.join(names)})")
        picked = sorted(longest[:2])
        c1 = c1 if c1 is not None else picked[0]
        c2 = c2 if c2 is not None else (picked[1] if picked[1] != c1 else picked[0])
    return c1, c2, cv


@dataclass
class RetrievalData:
    """Queries, a corpus and graded relevance: ``qrels[query_id][doc_id] = relevance``."""

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, float]]
    source: str
    columns: tuple[str, ...] = ()  # the query and passage columns read (a pairs file)


QUERY = ("query", "anchor", "question", "question1", "sentence1", "text1", "situation")


PASSAGE = ("passage", "positive", "document", "description", "answer", "question2", "sentence2",
           "text2", "text", "meaning",
           "doc_id", "document_id", "passage_id", "gold_id", "docid", "id")  # a document's id


def id_column(lowered: Sequence[str], avoid: int | None) -> int | None:
    """Where no header is a known passage name: the one column named like an id of what is
    found (``meme_id``, ``product_id``), not of the query (``query_id``, ``question_id``).

    >>> id_column(["situation", "meme_id"], 0), id_column(["query_id", "query", "x"], 1)
    (1, None)
    >>> id_column(["query", "a_id", "b_id"], 0) is None  # two: which one is not said
    True
    """
    found = [i for i, n in enumerate(lowered) if i != avoid and n.endswith("_id")
             and not n.startswith(QUERY + ("q_", "qid"))]
    return found[0] if len(found) == 1 else None


def load_retrieval_pairs(
    path: str | Path, query: str | None = None, passage: str | None = None, *,
    encoding: str = "utf-8",
) -> RetrievalData:
    """(query, passage) rows: each query's gold is its passage; all passages form the corpus.
    Columns: as given (name or position), else recognised by name (:data:`QUERY`,
    :data:`PASSAGE`, else one column named like an id, :func:`id_column`), else, in a file
    without a header, the first two. A header naming neither is refused: a corpus file is not
    taken for pairs."""
    p = Path(path)
    names, table, has_header = read_table(p, encoding)
    lowered = [n.lower() for n in names]

    def pick(given: str | None, candidates: Sequence[str], what: str,
             avoid: int | None = None) -> int | None:
        if given is not None:
            return named_column(p, names, given, what)
        for c in candidates:
            if c in lowered and lowered.index(c) != avoid:
                return lowered.index(c)
        if has_header and candidates is PASSAGE:
            return id_column(lowered, avoid)
        if not has_header and len(names) >= 2:
            return 0 if avoid != 0 else 1
        return None

    cq = pick(query, QUERY, "query")
    cp = pick(passage, PASSAGE, "passage", avoid=cq)
    if cq is None or cp is None:
        missing = " and ".join(w for w, c in (("query", cq), ("passage", cp)) if c is None)
        raise InputError(
            f"{p}: no {missing} column (columns: {', '.join(names)}): name them like "
            f"{'/'.join(QUERY[:3])} and {'/'.join(PASSAGE[:3])} (or doc_id), or give --query "
            "COL and --passage COL (a document's text or id; --gold-id COL: ids only); is this "
            "a pairs file?")
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    qrels: dict[str, dict[str, float]] = {}
    by_text_q: dict[str, str] = {}
    by_text_p: dict[str, str] = {}
    for row in table:
        q, ps = str(row[cq] or "").strip(), str(row[cp] or "").strip()
        if not q or not ps:
            continue
        qid = by_text_q.setdefault(q, f"q{len(by_text_q)}")
        pid = by_text_p.setdefault(ps, f"p{len(by_text_p)}")
        queries[qid], corpus[pid] = q, ps
        qrels.setdefault(qid, {})[pid] = 1.0
    if not qrels:
        raise InputError(f"{p}: no (query, passage) rows with both texts")
    return RetrievalData(queries, corpus, qrels, str(p), (names[cq], names[cp]))


def with_distractors(data: RetrievalData, texts: Iterable[str], source: str) -> RetrievalData:
    """``data`` with ``texts`` added to its corpus as documents no query is about (a text the
    corpus holds already is not added twice), so each query is ranked against them too.

    >>> d = RetrievalData({"q0": "a"}, {"p0": "b"}, {"q0": {"p0": 1.0}}, "f.csv")
    >>> sorted(with_distractors(d, ["b", "c"], "more").corpus.values())
    ['b', 'c']
    """
    corpus = dict(data.corpus)
    have = set(corpus.values())
    for t in texts:
        t = t.strip()
        if t and t not in have:
            have.add(t)
            corpus[f"d{len(corpus)}"] = t
    return RetrievalData(data.queries, corpus, data.qrels, f"{data.source} + {source}")


def load_beir(corpus: str | Path, queries: str | Path, qrels: str | Path) -> RetrievalData:
    """BEIR layout: corpus.jsonl (``_id``, ``title``, ``text``), queries.jsonl, qrels TSV."""
    cnames, crow, _ = read_table(Path(corpus))
    docs = {}
    for r in crow:
        d = dict(zip(cnames, r))
        docs[str(d.get("_id"))] = " ".join(x for x in (d.get("title"), d.get("text")) if x)
    qnames, qrows, _ = read_table(Path(queries))
    qs = {str(dict(zip(qnames, r)).get("_id")): str(dict(zip(qnames, r)).get("text")) for r in qrows}
    rnames, rrows, has_header = read_table(Path(qrels))
    rel: dict[str, dict[str, float]] = {}
    for r in rrows:
        if len(r) >= 3 and float(r[2]) > 0:
            rel.setdefault(str(r[0]), {})[str(r[1])] = float(r[2])
    return RetrievalData(qs, docs, rel, str(qrels))


def load_queries(path: str | Path, encoding: str = "utf-8") -> list[str] | np.ndarray:
    """Queries like the users', from ``path``: a ``.npy`` file of query vectors (one a row),
    a ``.txt`` file (one query a line), or a CSV/TSV/JSONL file whose ``query`` column (or
    only column) holds them, as a pairs file does.

    >>> load_queries("queries.txt")[:1]  # doctest: +SKIP
    ['my parcel never came']
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        try:
            v: np.ndarray = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: not a NumPy array of query vectors ({e})") from None
        if v.ndim != 2 or not np.issubdtype(v.dtype, np.number):
            raise InputError(f"{p}: expected a 2-D array of numbers, one query vector a row "
                             f"(got shape {v.shape}, {v.dtype})")
        return v
    if suffix == ".txt":
        out = [t.strip() for t in lines(read_text(p, encoding)) if t.strip()]  # as search's
    elif suffix in (".csv", ".tsv", ".jsonl", ".ndjson"):
        names, table, _ = read_table(p, encoding)
        lowered = [n.lower() for n in names]
        if "query" in lowered:
            col = lowered.index("query")
        elif len(names) == 1:
            col = 0
        else:
            raise InputError(f"{p}: no 'query' column; columns: {', '.join(names)}")
        out = [str(r[col]).strip() for r in table if col < len(r) and r[col] is not None
               and str(r[col]).strip()]
    else:
        raise InputError(f"{p}: give queries as .txt (one a line), .csv/.tsv/.jsonl (a 'query' "
                         "column) or .npy (query vectors)")
    if not out:
        raise InputError(f"{p}: no queries in the file")
    return out

