"""The learned ranker (issue 35): LightGBM's LambdaRank over every channel's features against
the linear learned fusion it replaced and the fixed rankings (semantic, keyword, chars, RRF,
blends), on the same held-out queries in one run.

Data (../shared/datasets), each built as a neartext collection:
  - Cranfield (BEIR layout): 1,400 abstracts built from two text columns, title and body (the
    body with the title it repeats removed), 225 queries with graded judgements;
  - Quora duplicates (eval.csv): the first 3,000 duplicate pairs, question1 -> question2, among
    other questions of the file as distractors (20,000 documents), one column;
  - ParaPhraser (ru): the first 3,000 pairs of classes 0 and 1 as queries (text_1) and their
    paraphrases (text_2), among the headlines of the other pairs as distractors (9,109
    documents: every headline of the file but the queries' own), with a linear query-side
    adapter trained on each fold's training queries with the hard negatives ``tune`` mines from
    the fused ranking (``learning.confusions``), as ``tune`` trains it, used by every ranking; a row
    gives the semantic ranking of an adapter trained on the pairs alone, for comparison. As in
    ``tune``, the learned rankings are fitted on features each training query gets from an
    adapter trained on the other half of the training queries (``learning.crossfit``).
  - STS-B in Russian (machine-translated, stsb_multi_mt): pairs scored 4 or more of 5 as
    queries (sentence1) and their documents (sentence2), 1,832 of them, among every other
    sentence of the files as distractors (13,000 documents in all), with an adapter as
    ParaPhraser: about as many pairs as the memes user has, and near neighbours to tell apart;
  - ParaPhraser in descriptions (ru; the issue's suggestion, the memes user's shape): the same
    3,000 queries, each gold document its paraphrase among two other headlines (three
    sentences, the paraphrase in a seeded random place), 3,036 documents, adapter as above;
  - ParaPhraser in titles (ru): the same documents as two fields, title and description, the
    paraphrase the gold document's title (``paraphraser_in_descriptions(titled=True)``);
  - situations (ru): STS-B in Russian, pairs scored 3 or more of 5 as queries and their gold
    sentences, each among two other sentences of the files (``situations_ru``): the same shape,
    further from the ceiling, with near-identical neighbours.
Queries are split into 5 folds by query (seeded); the rankers (and the adapter) are fitted on
four folds' queries (their candidates, as ``tune`` fits them) and every query is measured once,
held out, through the real search path; the fixed rankings are measured on the same folds.
The baseline learned fusion is the pairwise logistic fit ``tune`` shipped before (kept here,
as the baseline, in ``baselines.py``). Gains are paired per query with a 95% bootstrap interval.

    python bench/bench_ranker.py [--only cranfield|quora|paraphraser|stsb|descriptions|titles|
                                         situations]
                                 [--model M] [--out ranker]
                                 [--adapter]  # an adapter on every set, as tune trains one
                                 [--labeled]  # ParaPhraser: every labeled paraphrase is gold
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, held_out_split, machine, machine_line, need, save  # noqa: E402

FOLDS = 5
BEFORE = "learned linear (pairwise logistic, before)"
SHIPPED = "learned ranker (LightGBM LambdaRank)"
LINEAR = "learned linear (tune's: with the sentence likeness)"
# the same run's baseline for the sentence likeness: the ranker and tune's linear weighing as
# they were before it (every other feature the same, the same folds and candidates)
RANKER_BEFORE = "learned ranker, without the sentence likeness"
NO_ADAPTER = "semantic, the model alone (no adapter)"
DISTRACTORS = 12_033  # documents of the ParaPhraser set at most, distractor headlines included
QUORA_DOCS = 20_000  # documents of the Quora set, distractor questions included
PAIRS_ONLY = "semantic, an adapter trained on the pairs alone (no mined negatives)"


def cranfield(tmp: Path) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """A two-column corpus file (title, body), its text columns, the queries and their gold."""
    c = SHARED / "cranfield"
    rows = []
    for line in need(c / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        title, text = d.get("title", "").strip(), d.get("text", "").strip()
        body = text[len(title):].strip() if title and text.startswith(title) else text
        rows.append((d["_id"], title, body))
    path = tmp / "cranfield.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "title", "body"])
        w.writerows(rows)
    queries = {}
    for line in need(c / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    gold: dict[str, dict] = {}
    with need(c / "qrels" / "test.tsv").open(encoding="utf-8") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            gold.setdefault(r["query-id"], {})[r["corpus-id"]] = float(r["score"])
    return path, ["title", "body"], {q: [queries[q]] for q in gold}, gold


def one_column(path: Path, ids: dict[str, str]) -> Path:
    """Write the passages (text -> id) as an (id, text) corpus file."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows((pid, text) for text, pid in ids.items())
    return path


def quora(tmp: Path) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """The first 3,000 duplicate pairs (question1 -> question2) among other questions of the
    file as distractors, 20,000 documents in all (no query's own text among them)."""
    with need(SHARED / "quora_duplicates" / "eval.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    ids: dict[str, str] = {}
    queries, gold = {}, {}
    for r in rows:
        if r.get("is_duplicate", "1") != "1" or r["question1"] in ids:
            continue
        pid = ids.setdefault(r["question2"], f"p{len(ids)}")
        queries[f"q{len(queries)}"] = [r["question1"]]
        gold[f"q{len(gold)}"] = {pid: 1.0}
        if len(queries) == 3000:
            break
    asked = {q[0] for q in queries.values()}
    for r in rows:
        for t in (r["question1"], r["question2"]):
            if t not in ids and t not in asked and len(ids) < QUORA_DOCS:
                ids[t] = f"p{len(ids)}"
    return one_column(tmp / "quora.csv", ids), ["text"], queries, gold


def paraphraser(tmp: Path, labeled: bool = False
                ) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """ParaPhraser (ru) headline paraphrases, classes 0 and 1: text_1 -> text_2 (one column).

    ``labeled``: a query's gold is also every document the file labels a paraphrase of it
    (class 0 or 1) in another pair, and its own text where that is another query's gold: a
    headline often comes in several pairs, and ranked first it counted as a miss."""
    import xml.etree.ElementTree as ET

    root = ET.parse(need(SHARED / "paraphraser_ru" / "paraphrases.xml")).getroot()
    ids: dict[str, str] = {}
    queries: dict[str, list[str]] = {}
    gold: dict[str, dict] = {}
    para: dict[str, set[str]] = {}  # each headline's labeled paraphrases, in any pair
    for p in root.iter("paraphrase"):
        v = {e.get("name"): (e.text or "").strip() for e in p.iter("value")}
        if v.get("class") in ("0", "1") and v.get("text_1") and v.get("text_2"):
            para.setdefault(v["text_1"], set()).add(v["text_2"])
            para.setdefault(v["text_2"], set()).add(v["text_1"])
    for p in root.iter("paraphrase"):
        v = {e.get("name"): (e.text or "").strip() for e in p.iter("value")}
        if v.get("class") in ("0", "1") and v.get("text_1") and v.get("text_2"):
            pid = ids.setdefault(v["text_2"], f"p{len(ids)}")
            qid = f"q{len(queries)}"
            queries[qid] = [v["text_1"]]
            gold[qid] = {pid: 1.0}
            if len(queries) == 3000:
                break
    asked = {q[0] for q in queries.values()}  # a query's own text is no distractor
    for p in root.iter("paraphrase"):  # the other pairs' headlines, as distractors
        v = {e.get("name"): (e.text or "").strip() for e in p.iter("value")}
        for t in (v.get("text_1"), v.get("text_2")):
            if t and t not in ids and t not in asked and len(ids) < DISTRACTORS:
                ids[t] = f"p{len(ids)}"
    if labeled:
        for qid, (q,) in queries.items():
            gold[qid].update({ids[t]: 1.0 for t in para.get(q, set()) | {q} if t in ids})
    return one_column(tmp / "paraphraser.csv", ids), ["text"], queries, gold


def paraphraser_in_descriptions(tmp: Path, titled: bool = False
                                ) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """The issue's suggestion for a Russian set with room to improve, and the memes user's
    shape (a short query, a document of several sentences that it describes only in part): the
    same 3,000 ParaPhraser queries (text_1), each gold document its paraphrase (text_2) among
    two other headlines of the file (:func:`in_descriptions`).

    ``titled``: the same documents as two fields, a title and a description (``--text
    title,description``, as the memes user builds hers): a gold document's title is the
    paraphrase and its description the two other headlines; a distractor's title is its first
    headline. The query then paraphrases a title, which per-field features can see and a
    ranking of the joined text cannot."""
    pairs, heads = paraphraser_pairs(3000)
    return in_descriptions(tmp / ("paraphraser_titles.csv" if titled else "paraphraser_docs.csv"),
                           pairs, heads, titled)


def paraphraser_pairs(n: int) -> tuple[list[tuple[str, str]], list[str]]:
    """The first ``n`` ParaPhraser pairs of classes 0 and 1 (text_1, text_2), and every
    headline of the file."""
    import xml.etree.ElementTree as ET

    root = ET.parse(need(SHARED / "paraphraser_ru" / "paraphrases.xml")).getroot()
    pairs: list[tuple[str, str]] = []
    heads: dict[str, None] = {}
    for p in root.iter("paraphrase"):
        v = {e.get("name"): (e.text or "").strip() for e in p.iter("value")}
        if (len(pairs) < n and v.get("class") in ("0", "1") and v.get("text_1")
                and v.get("text_2")):
            pairs.append((v["text_1"], v["text_2"]))
        for t in (v.get("text_1"), v.get("text_2")):
            if t:
                heads[t] = None
    return pairs, list(heads)


def paraphraser_in_long_descriptions(tmp: Path
                                     ) -> tuple[Path, list[str], dict[str, list[str]],
                                                dict[str, dict]]:
    """Long descriptions: the first 1,000 ParaPhraser queries, each gold headline among eleven
    other headlines (:func:`in_descriptions` with ``size=12``: about 700 characters, a
    description of many sentences, of which the learned ranking's sentence features read the
    first :data:`~neartext.data.sentences.SENTENCE_CHARS`). The file holds headlines for
    about that many documents."""
    pairs, heads = paraphraser_pairs(1000)
    return in_descriptions(tmp / "paraphraser_long.csv", pairs, heads, size=12)


def situations_ru(tmp: Path) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """A harder Russian set of the memes user's shape, where no channel comes near the ceiling:
    STS-B in Russian (stsb_multi_mt, train, dev and test), pairs scored 3 or more of 5 ("roughly
    equivalent": a scene described with some details different, as a situation describes a
    meme) as queries (sentence1) and their gold sentences (sentence2), the first 3,000 with a
    query and a gold not seen before, each gold among two other sentences of the files
    (:func:`in_descriptions`). STS-B's sentences come in near-identical families ("a man plays
    the guitar" in a dozen forms), so the documents around a gold are hard to tell apart."""
    rows = stsb_ru_rows()
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for a, b, score in rows:
        a, b = a.strip(), b.strip()
        if (len(pairs) < 3000 and float(score) >= 3.0 and a and b and a != b
                and a not in seen and b not in seen):
            pairs.append((a, b))
            seen.update((a, b))
    heads = list(dict.fromkeys(t.strip() for a, b, _ in rows for t in (a, b) if t.strip()))
    return in_descriptions(tmp / "situations_ru.csv", pairs, heads)


def stsb_ru_rows() -> list[list[str]]:
    """Every (sentence1, sentence2, score) row of STS-B in Russian: train, dev and test."""
    rows: list[list[str]] = []
    for part in ("train", "dev", "test"):
        path = need(SHARED / "stsb_multi_mt" / f"stsb-ru-{part}.csv")
        with path.open(encoding="utf-8", newline="") as f:
            rows.extend(csv.reader(f))
    return rows


def in_descriptions(path: Path, pairs: list[tuple[str, str]], heads: list[str],
                    titled: bool = False, size: int = 3
                    ) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """Documents of ``size`` sentences from ``pairs`` (query, gold sentence) and ``heads``
    (every sentence of the source): each gold document its gold sentence among ``size - 1``
    others of ``heads``, in a seeded random place; the other sentences, ``size`` to a document,
    as distractors (no query's own text anywhere, no gold sentence twice). One column; each
    sentence closed by a full stop. ``titled``: two fields, the gold sentence (or a distractor's
    first) the title, the others the description."""
    import random

    asked = {q for q, _ in pairs}
    golds = {d for _, d in pairs}
    fillers = [t for t in heads if t not in asked and t not in golds]
    rng = random.Random(0)
    rng.shuffle(fillers)

    def sentence(t: str) -> str:
        return t if t[-1:] in ".!?…" else t + "."

    docs: dict[tuple[str, ...], str] = {}  # fields -> id
    doc_of: dict[str, str] = {}  # gold sentence -> its document's id

    def fields(parts: list[str]) -> tuple[str, ...]:
        if titled:
            return parts[0], " ".join(sentence(t) for t in parts[1:])
        return (" ".join(sentence(t) for t in parts),)

    queries: dict[str, list[str]] = {}
    gold: dict[str, dict] = {}
    at = 0
    for q, d in pairs:
        if d not in doc_of:  # a sentence given for two queries: one document
            parts = fillers[at:at + size - 1]
            at += size - 1
            parts.insert(0 if titled else rng.randrange(size), d)
            doc_of[d] = docs.setdefault(fields(parts), f"d{len(docs)}")
        pid = doc_of[d]
        qid = f"q{len(queries)}"
        queries[qid], gold[qid] = [q], {pid: 1.0}
    while at + size <= len(fillers):
        docs.setdefault(fields(fillers[at:at + size]), f"d{len(docs)}")
        at += size
    columns = ["title", "description"] if titled else ["text"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", *columns])
        w.writerows((pid, *texts) for texts, pid in docs.items())
    return path, columns, queries, gold


def stsb_ru(tmp: Path) -> tuple[Path, list[str], dict[str, list[str]], dict[str, dict]]:
    """STS-B, machine-translated to Russian (stsb_multi_mt: train, dev and test): each pair
    scored 4 or more of 5 (sentence1 -> sentence2, 1,832 queries), among every other sentence
    of the files as distractors (no query's own text among them): short captions, headlines and
    forum lines, many of them near one another ("a man plays the guitar" in a dozen forms)."""
    rows = stsb_ru_rows()
    ids: dict[str, str] = {}
    queries: dict[str, list[str]] = {}
    gold: dict[str, dict] = {}
    asked: set[str] = set()
    for a, b, score in rows:
        a, b = a.strip(), b.strip()
        if float(score) >= 4.0 and a and b and a != b and a not in asked and a not in ids:
            pid = ids.setdefault(b, f"p{len(ids)}")
            qid = f"q{len(queries)}"
            queries[qid], gold[qid] = [a], {pid: 1.0}
            asked.add(a)
    for a, b, _ in rows:
        for t in (a.strip(), b.strip()):
            if t and t not in ids and t not in asked:
                ids[t] = f"p{len(ids)}"
    return one_column(tmp / "stsb_ru.csv", ids), ["text"], queries, gold


def folds_of(qids: list[str], split: int = 0) -> np.ndarray:
    """Each query's fold (0..FOLDS-1), split by query, seeded (``split``: another seeded split
    of the same queries; 0 is the one every result so far was measured on)."""
    fold = np.zeros(len(qids), dtype=int)
    rest = np.ones(len(qids), dtype=bool)
    for f in range(FOLDS - 1):  # each fold takes 1/(folds left) of what is not assigned
        idx = np.flatnonzero(rest)
        held = held_out_split([qids[i] for i in idx], 1.0 / (FOLDS - f), seed=f + 1000 * split)
        chosen = idx[np.asarray(held, dtype=bool)]
        fold[chosen] = f
        rest[chosen] = False
    fold[rest] = FOLDS - 1
    return fold


def run(name: str, data, tmp: Path, model: str = "default", adapter: bool = False,
        chunk: int | None = None, overlap: int = 0) -> dict:
    """Every ranking on every query held out once (5 folds); with ``adapter``, a linear
    query-side adapter trained on each fold's training queries is applied throughout."""
    from baselines import fit_pairwise

    from neartext import Collection
    from neartext.algo.adapters import PassageRows, train_adapter
    from neartext.algo.ranker import fit_linear, fit_ranker, save_ranker
    from neartext.data.ranking import FEATURES, LINEAR_FEATURES, RANKER_FEATURES, Ranking
    from neartext.engine.searching import fusion_features
    from neartext.ops.learning import confusions, crossfit
    from neartext.ops.tune import SETTINGS, evaluate_setting

    path, columns, queries, gold = data(tmp)
    t0 = time.perf_counter()
    col, _ = Collection.from_file(tmp / name, path, columns, "id", model=model, chunk=chunk,
                                  overlap=overlap)
    build = time.perf_counter() - t0
    qids = sorted(queries)
    texts = [queries[q][0] for q in qids]
    golds = [set(gold[q]) for q in qids]
    fold = folds_of(qids)
    with col:
        vecs = col.encoder.encode(texts, kind="query")
        doc_ids, doc_vecs = [], []
        if adapter:
            for ids, v in col.store.iter_vectors():
                doc_ids.extend(ids)
                doc_vecs.append(v)
        # as in tune: a document's passage nearest to the query is its target
        passages = PassageRows(doc_ids)
        chunked = bool(col.manifest.chunking)
        docs = np.concatenate(doc_vecs) if doc_vecs else None
        out: dict = {"documents": len(col), "queries": len(qids), "columns": columns,
                     "chunking": col.manifest.chunking,
                     "model": col.manifest.model.name, "adapter": adapter,
                     "build_s": round(build, 1)}
        rr = {s.describe(): np.zeros(len(qids)) for s in SETTINGS}
        rr.update({BEFORE: np.zeros(len(qids)), SHIPPED: np.zeros(len(qids)),
                   LINEAR: np.zeros(len(qids)), RANKER_BEFORE: np.zeros(len(qids))})
        if adapter:
            rr[NO_ADAPTER] = np.zeros(len(qids))
            rr[PAIRS_ONLY] = np.zeros(len(qids))
        ndcg = {k: 0.0 for k in rr}
        first: dict[str, list[str | None]] = {k: [None] * len(qids) for k in SINGLES}
        fit_s = {BEFORE: 0.0, SHIPPED: 0.0, LINEAR: 0.0}
        trees: list[int] = []
        rankers: list[str] = []
        for f in range(FOLDS):
            train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
            ad = plain = None
            test_texts, test_golds = [texts[i] for i in test], [golds[i] for i in test]
            if adapter:
                # each query's gold in the data's order (a set's order of strings changes
                # with every process's hash seed, and the adapter with it)
                given = [(i, d) for i in train for d in gold[qids[i]] if d in passages]
                pair_q = [texts[i] for i, _ in given]
                pair_v = vecs[[i for i, _ in given]]
                pos = list(zip((i for i, _ in given), passages.nearest(
                    pair_v, docs, list(enumerate(d for _, d in given))).tolist()))
                mined = confusions(col.store, chunked, pair_v, pair_q, [d for _, d in given])
                mined_rows = list(zip((j for j, _ in mined),
                                      passages.nearest(pair_v, docs, mined).tolist()))
                for negatives in ([], mined_rows):
                    trained = train_adapter(
                        pair_v, np.array([r for _, r in pos]), docs,
                        groups=[i for i, _ in pos], base_fingerprint=col.encoder.fingerprint,
                        hard_negatives=negatives, held_out=0.1, passages=passages).adapter
                    plain, ad = (trained, ad) if not negatives else (plain, trained)
                m, r = evaluate_setting(col, test_texts, vecs[test], test_golds, plain,
                                        {"mode": "semantic"})
                rr[PAIRS_ONLY][test] = r
                ndcg[PAIRS_ONLY] += m["ndcg@10"] * len(test) / len(qids)

            def measure(label: str, setting, test=test, test_texts=test_texts,
                        test_golds=test_golds, ad=ad) -> None:
                m, r = evaluate_setting(col, test_texts, vecs[test], test_golds, ad, setting)
                rr[label][test] = r
                ndcg[label] += m["ndcg@10"] * len(test) / len(qids)
                if label in SINGLES:
                    for i, d in zip(test, first_results(col, test_texts, vecs[test], ad,
                                                        setting)):
                        first[label][i] = d

            for setting in SETTINGS:
                measure(setting.describe(), setting)
            if adapter:  # where the loop starts: the model alone, semantic
                m, r = evaluate_setting(col, test_texts, vecs[test], test_golds, None,
                                        {"mode": "semantic"})
                rr[NO_ADAPTER][test] = r
                ndcg[NO_ADAPTER] += m["ndcg@10"] * len(test) / len(qids)
            qv = vecs[train] if ad is None else ad.apply(vecs[train])
            if adapter:  # each training query's features from an adapter not trained on it
                folds = crossfit(vecs[[i for i, _ in pos]], np.array([r for _, r in pos]), docs,
                                 [str(i) for i, _ in pos], np.ones(len(pos), bool),
                                 mined_rows, "linear", f, col.encoder.fingerprint,
                                 passages=passages)
                qv = np.stack([vecs[i] if (a := folds.get(str(i))) is None
                               else a.apply(vecs[i][None])[0] for i in train])
            t0 = time.perf_counter()
            rows = fusion_features(col.store, qv, [texts[i] for i in train],
                                   names=RANKER_FEATURES,
                                   model_vectors=None if ad is None else vecs[train])
            feature_s = time.perf_counter() - t0
            ys = [np.array([d in golds[i] for d in docs_], dtype=np.float64)
                  for (docs_, _), i in zip(rows, train)]
            # the baseline: the linear fit over FEATURES (the first columns), as tune did
            t0 = time.perf_counter()
            w = fit_pairwise([x[:, :len(FEATURES)] for _, x in rows], ys)
            fit_s[BEFORE] += time.perf_counter() - t0 + feature_s
            measure(BEFORE, {"mode": "hybrid", "fusion": "learned",
                             "weights": [float(v) for v in w], "features": list(FEATURES)})
            t0 = time.perf_counter()
            fitted = fit_ranker([x for _, x in rows], ys, seed=f)
            fit_s[SHIPPED] += time.perf_counter() - t0 + feature_s
            trees.append(fitted.rounds)
            rankers.append(save_ranker(col.path, fitted.text))
            measure(SHIPPED, Ranking("hybrid", "learned", features=RANKER_FEATURES,
                                     ranker=rankers[-1]))
            # the linear weighing tune fits beside the ranker (and keeps when it ranks better)
            t0 = time.perf_counter()
            cols = [RANKER_FEATURES.index(n) for n in LINEAR_FEATURES]
            lw = fit_linear([x[:, cols] for _, x in rows], ys, seed=f)
            fit_s[LINEAR] += time.perf_counter() - t0 + feature_s
            measure(LINEAR, Ranking("hybrid", "learned", weights=tuple(float(v) for v in lw),
                                    features=LINEAR_FEATURES))
            old = [i for i, n in enumerate(RANKER_FEATURES) if n != "sentence_chars"]
            measure(RANKER_BEFORE, Ranking(
                "hybrid", "learned", features=tuple(RANKER_FEATURES[i] for i in old),
                ranker=save_ranker(col.path, fit_ranker([x[:, old] for _, x in rows], ys,
                                                        seed=f).text)))
        out["mrr@10"] = {k: round(float(v.mean()), 4) for k, v in rr.items()}
        out["ndcg@10"] = {k: round(v, 4) for k, v in ndcg.items()}
        out["fit_s_per_fold"] = {k: round(v / FOLDS, 2) for k, v in fit_s.items()}
        out["training_queries_per_fold"] = int(round(len(qids) * (FOLDS - 1) / FOLDS))
        out["ranker_trees"] = trees
        fixed = [k for k in rr if not k.startswith("learned") and k not in (NO_ADAPTER,
                                                                             PAIRS_ONLY)]
        out["best_fixed"] = max(fixed, key=lambda k: float(rr[k].mean()))
        singles = [k for k in fixed if not k.startswith("hybrid")]
        out["best_single"] = max(singles, key=lambda k: float(rr[k].mean()))
        out["gains"] = {}
        pairs = [(SHIPPED, BEFORE), (SHIPPED, out["best_fixed"]), (SHIPPED, out["best_single"]),
                 (LINEAR, out["best_fixed"]), (LINEAR, out["best_single"]),
                 (SHIPPED, RANKER_BEFORE), (LINEAR, BEFORE)]
        if adapter:
            pairs += [(SHIPPED, NO_ADAPTER), ("semantic", PAIRS_ONLY)]
        for new, old in pairs:
            out["gains"][f"{new} vs {old}"] = paired_gain(rr[new] - rr[old])
        out["where_channels_disagree"] = disagreement(rr, first, out)
        # latency of one search (k 10, one query at a time): the ranker's version against the
        # same version without it (blend), alternating, the same queries
        lat: dict[str, list[float]] = {"blend": [], "ranker": []}
        settings = {"blend": Ranking("hybrid", "blend", alpha=0.5),
                    "ranker": Ranking("hybrid", "learned", features=RANKER_FEATURES,
                                      ranker=rankers[-1])}
        for i in range(min(300, len(texts))):
            for label in ("blend", "ranker") if i % 2 else ("ranker", "blend"):
                t0 = time.perf_counter()
                evaluate_setting(col, [texts[i]], vecs[i:i + 1], [golds[i]], None,
                                 settings[label])
                lat[label].append(time.perf_counter() - t0)
        out["search_p50_ms"] = {k: round(float(np.median(v)) * 1000, 2) for k, v in lat.items()}
    print(name, json.dumps(out, ensure_ascii=False), flush=True)
    return out


SINGLES = ("semantic", "keyword", "chars")  # the single channels, as Ranking.describe names them


def first_results(col, texts: list[str], base: np.ndarray, ad, setting) -> list[str | None]:
    """Each query's first document as ``setting`` ranks them (the search evaluate_setting
    makes, its first result kept)."""
    from neartext.data.ranking import TEXT_MODES, Ranking
    from neartext.engine.searching import search_vectors
    from neartext.ops.learning import model_side

    ranking = Ranking.from_dict(setting) if isinstance(setting, dict) else setting
    opts = ranking.options(10, state=col.path)
    vecs = None if opts.mode in TEXT_MODES else (base if ad is None else ad.apply(base))
    hits = search_vectors(col.store, bool(col.manifest.chunking), vecs, texts, None, opts,
                          model_side(ad, base))
    return [row[0].id if row else None for row in hits]


def paired_gain(d: np.ndarray) -> dict:
    """The mean of per-query differences with a 95% bootstrap interval (2,000 resamples)."""
    boots = np.random.default_rng(0).choice(d, (2000, len(d))).mean(axis=1)
    return {"mrr@10": round(float(d.mean()), 4),
            "ci95": [round(float(np.quantile(boots, 0.025)), 4),
                     round(float(np.quantile(boots, 0.975)), 4)]}


def disagreement(rr: dict[str, np.ndarray], first: dict[str, list[str | None]],
                 out: dict) -> dict:
    """The rankings on the queries where the single channels disagree, two ways: their first
    results are not one document (no label used), or they rank the gold differently. Where the
    three put one document first, every fixed fusion of them puts it first too; the best single
    and fixed rankings are chosen again on each subset (the harder comparison for the learned
    ones)."""
    n = len(first[SINGLES[0]])
    firsts = np.array([len({first[c][i] for c in SINGLES}) > 1 for i in range(n)])
    ranks = np.array([len({float(rr[c][i]) for c in SINGLES}) > 1 for i in range(n)])
    fixed = [k for k in rr if not k.startswith("learned") and k not in (NO_ADAPTER, PAIRS_ONLY)]
    res = {}
    for name, keep in (("first results differ", firsts), ("gold ranked differently", ranks)):
        if not keep.any():
            continue
        mean = {k: float(v[keep].mean()) for k, v in rr.items()}
        single = max(SINGLES, key=mean.__getitem__)
        best = max(fixed, key=mean.__getitem__)
        res[name] = {"queries": int(keep.sum()), "share": round(float(keep.mean()), 3),
                     "mrr@10": {k: round(v, 4) for k, v in mean.items()},
                     "best_single": single, "best_fixed": best,
                     "gains": {f"{new} vs {old}": paired_gain(rr[new][keep] - rr[old][keep])
                               for new in (SHIPPED, LINEAR, BEFORE)
                               for old in (single, best)}
                     | {f"{new} vs {old}": paired_gain(rr[new][keep] - rr[old][keep])
                        for new, old in ((SHIPPED, RANKER_BEFORE), (LINEAR, BEFORE))
                        if new in rr and old in rr}}
    return res


def table(res: dict) -> str:
    lines = []
    for name, r in res["data"].items():
        lines.append(f"{name}: {r['documents']} documents ({', '.join(r['columns'])}), "
                     f"{r['queries']} queries, {r['model']}"
                     + (", a linear query adapter trained on each fold" if r["adapter"] else "")
                     + (f", passages of {c['size']} words ({c['overlap']} shared)"
                        if (c := r.get("chunking")) else ""))
        lines.append("| ranking | MRR@10 | nDCG@10 | vs best fixed (MRR@10) |")
        lines.append("|---|---|---|---|")
        best = r["mrr@10"][r["best_fixed"]]
        for k, v in r["mrr@10"].items():
            lines.append(f"| {k} | {v:.4f} | {r['ndcg@10'][k]:.4f} | {v / best:.3f} |")
        for what, g in r["gains"].items():
            lines.append(f"- {what}: MRR@10 {g['mrr@10']:+.4f} (95% CI {g['ci95'][0]:+.4f} .. "
                         f"{g['ci95'][1]:+.4f})")
        lines.append(f"- training per fold ({r['training_queries_per_fold']} queries, features "
                     f"included): ranker {r['fit_s_per_fold'][SHIPPED]} s, linear "
                     f"{r['fit_s_per_fold'][BEFORE]} s, tune's linear "
                     f"{r['fit_s_per_fold'].get(LINEAR, '-')} s; trees {r['ranker_trees']}")
        for subset, d in r.get("where_channels_disagree", {}).items():
            lines.append(f"- where the channels disagree ({subset}: {d['queries']} queries, "
                         f"{d['share']:.0%}): best single {d['best_single']} "
                         f"{d['mrr@10'][d['best_single']]:.4f}, best fixed {d['best_fixed']} "
                         f"{d['mrr@10'][d['best_fixed']]:.4f}, linear {d['mrr@10'][BEFORE]:.4f}, "
                         f"ranker {d['mrr@10'][SHIPPED]:.4f}"
                         + (f", tune's linear {d['mrr@10'][LINEAR]:.4f}"
                            if LINEAR in d["mrr@10"] else "")
                         + (f", ranker without the sentence likeness "
                            f"{d['mrr@10'][RANKER_BEFORE]:.4f}"
                            if RANKER_BEFORE in d["mrr@10"] else ""))
            for what, g in d["gains"].items():
                lines.append(f"  - {what}: MRR@10 {g['mrr@10']:+.4f} (95% CI "
                             f"{g['ci95'][0]:+.4f} .. {g['ci95'][1]:+.4f})")
        lines.append(f"- one search p50: {r['search_p50_ms']['ranker']} ms with the ranker vs "
                     f"{r['search_p50_ms']['blend']} ms for blend (ratio "
                     f"{r['search_p50_ms']['ranker'] / r['search_p50_ms']['blend']:.2f})")
        lines.append("")
    lines.append(machine_line(res["machine"]))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("cranfield", "quora", "paraphraser", "stsb", "descriptions",
                                        "titles", "situations"))
    ap.add_argument("--out", default="ranker")
    ap.add_argument("--model", default="default",
                    help="the model of every collection (default: all-MiniLM-L6-v2)")
    ap.add_argument("--adapter", action="store_true",
                    help="a query adapter on Cranfield and Quora too (the Russian sets have one)")
    ap.add_argument("--chunk", type=int, help="passages of N words (as index --chunk)")
    ap.add_argument("--overlap", type=int, default=0, help="words shared by passages")
    ap.add_argument("--labeled", action="store_true",
                    help="ParaPhraser: a query's gold also every headline the file labels its "
                         "paraphrase in other pairs, and its own text (see paraphraser)")
    args = ap.parse_args()
    res: dict = {"machine": machine(), "data": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, data, model, adapter in (
                ("cranfield", cranfield, args.model, False),
                ("quora_20000", quora, args.model, False),
                ("paraphraser_ru_12033 + adapter" + " (labeled gold)" * args.labeled,
                 functools.partial(paraphraser, labeled=args.labeled), args.model, True),
                ("stsb_ru + adapter", stsb_ru, args.model, True),
                ("descriptions_ru + adapter", paraphraser_in_descriptions, args.model, True),
                ("titles_ru + adapter", functools.partial(paraphraser_in_descriptions,
                                                          titled=True), args.model, True),
                ("situations_ru + adapter", situations_ru, args.model, True)):
            if args.only and not name.startswith(args.only):
                continue
            adapter = adapter or args.adapter
            res["data"][name + " + adapter" * (adapter and "adapter" not in name)] = run(
                name.split()[0], data, Path(tmp), model, adapter, args.chunk, args.overlap)
    text = table(res)
    save(args.out, res, text)
    print(text)


if __name__ == "__main__":
    main()
