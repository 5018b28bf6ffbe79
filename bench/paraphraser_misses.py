"""What the first results that "miss" on the ParaPhraser ranking set are (issue 35): the set of
bench_ranker.py (3,000 headline queries, one gold paraphrase each, 9,109 headlines), searched
with use-multilingual (no adapter) by the best fixed blend, semantic and keyword search. Each
query whose first result is not its gold is put in one class: the query's own text (another
pair's gold), a headline the file labels its paraphrase in another pair, one the file labels
not a paraphrase, or a headline the file says nothing of. MRR@10 is given with the set's gold
and with every labeled paraphrase (and the own text) as gold too (``bench_ranker --labeled``).

    python bench/paraphraser_misses.py   # ~3 min: embeds the headlines once
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ranker import paraphraser  # noqa: E402
from common import machine, machine_line, save  # noqa: E402

RANKINGS = {"hybrid blend alpha 0.5": {"mode": "hybrid", "fusion": "blend", "alpha": 0.5},
            "semantic": {"mode": "semantic"}, "keyword": {"mode": "keyword"}}
KINDS = ("the query's own text", "labeled a paraphrase in another pair",
         "labeled not a paraphrase", "not judged by the file")


def main() -> None:
    from neartext import Collection

    with tempfile.TemporaryDirectory() as tmp:
        path, cols, queries, gold = paraphraser(Path(tmp))
        (Path(tmp) / "again").mkdir()
        _, _, _, full = paraphraser(Path(tmp) / "again", labeled=True)
        negative = not_paraphrases()
        col, _ = Collection.from_file(Path(tmp) / "c", path, cols, "id", model="use-multilingual")
        qids = sorted(queries)
        texts = [queries[q][0] for q in qids]
        res: dict = {"machine": machine(), "queries": len(qids), "rankings": {}}
        with col:
            for name, how in RANKINGS.items():
                hits = col.search_many(texts, 10, **how)
                kinds: Counter[str] = Counter()
                mrr = {"gold": 0.0, "labeled": 0.0}
                for qid, q, h in zip(qids, texts, hits):
                    for which, g in (("gold", gold[qid]), ("labeled", full[qid])):
                        rank = next((i for i, x in enumerate(h) if x.id in g), None)
                        mrr[which] += 0.0 if rank is None else 1.0 / (rank + 1)
                    if h and h[0].id not in gold[qid]:
                        first = h[0]
                        kinds[KINDS[0] if first.text == q else KINDS[1] if first.id in full[qid]
                              else KINDS[2] if first.text in negative.get(q, ()) else KINDS[3]] += 1
                res["rankings"][name] = {
                    "misses": sum(kinds.values()), "kinds": {k: kinds[k] for k in KINDS},
                    "mrr_at_10": {k: round(v / len(qids), 4) for k, v in mrr.items()}}
    lines = [f"ParaPhraser ranking set ({len(qids)} queries), use-multilingual, no adapter: "
             "what the first result is where it is not the gold",
             "| ranking | first not gold | " + " | ".join(KINDS) +
             " | MRR@10 (set's gold) | MRR@10 (every labeled paraphrase gold) |",
             "|---|---|" + "---|" * len(KINDS) + "---|---|"]
    for name, r in res["rankings"].items():
        lines.append(f"| {name} | {r['misses']} | " + " | ".join(str(r["kinds"][k]) for k in KINDS)
                     + f" | {r['mrr_at_10']['gold']} | {r['mrr_at_10']['labeled']} |")
    lines += ["", machine_line(res["machine"])]
    text = "\n".join(lines)
    save("paraphraser-misses", res, text)
    print(text)


def not_paraphrases() -> dict[str, set[str]]:
    """Each headline's headlines the file labels not its paraphrase (class -1), both ways."""
    import xml.etree.ElementTree as ET

    from common import SHARED, need

    out: dict[str, set[str]] = {}
    root = ET.parse(need(SHARED / "paraphraser_ru" / "paraphrases.xml")).getroot()
    for p in root.iter("paraphrase"):
        v = {e.get("name"): (e.text or "").strip() for e in p.iter("value")}
        a, b = v.get("text_1"), v.get("text_2")
        if a and b and v.get("class") == "-1":
            out.setdefault(a, set()).add(b)
            out.setdefault(b, set()).add(a)
    return out


if __name__ == "__main__":
    main()
