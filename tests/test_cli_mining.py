"""CLI of mine / paraphrases / dedup / --skip-near-duplicates, and their bad input."""

from __future__ import annotations

import csv
import json
import os
import re

import pytest

from neartext import Collection
from neartext.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_mine_writes_every_format(capsys, demo_collection, tmp_path, suffix):
    out = tmp_path / f"pairs{suffix}"
    code, stdout, err = run(capsys, "mine", demo_collection, "--threshold", "0.8", "-o", out, "--json")
    res = json.loads(stdout)
    assert code == 0 and out.exists() and res["method"] == "exact" and len(res["pairs"]) == 11
    if suffix == ".csv":
        rows = list(csv.DictReader(out.open()))
    elif suffix == ".jsonl":
        rows = [json.loads(x) for x in out.read_text().splitlines()]
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(out).to_pylist()
    assert [(r["id1"], r["id2"]) for r in rows] == [(p["id1"], p["id2"]) for p in res["pairs"]]
    assert float(rows[0]["score"]) >= float(rows[-1]["score"]) >= 0.8
    assert set(rows[0]) == {"id1", "id2", "score", "text1", "text2"}


def test_mine_verify_reports_recall(capsys, demo_collection):
    code, _, err = run(capsys, "mine", demo_collection, "--threshold", "0.7", "--method", "approx",
                       "--verify", "247")
    assert code == 0 and "approx" in err
    m = re.search(r"recall vs exact on 247 sampled texts: ([\d.]+) \((\d+) pairs\)", err)
    assert m, err
    with Collection.open(demo_collection) as col:  # the oracle: exact mining of every text
        exact = col.mine(0.7, method="exact")
    # every text is sampled, so each exact pair is counted from both of its ends
    assert int(m.group(2)) == 2 * len(exact.pairs) and float(m.group(1)) >= 0.99


def test_paraphrases_json_and_notice(capsys, demo_collection):
    code, out, _ = run(capsys, "paraphrases", demo_collection, "The app keeps crashing",
                       "--threshold", "0.65", "--json")
    res = json.loads(out)
    assert code == 0 and res["notice"] is None and res["paraphrases"][0]["id"] == "fb-0010"
    code, out, err = run(capsys, "paraphrases", demo_collection, "The app keeps crashing",
                         "--threshold", "0.99")
    assert code == 0 and "no paraphrases scoring >= 0.99" in err


def test_dedup_groups_and_clean_corpus(capsys, demo_collection, tmp_path):
    groups, clean = tmp_path / "groups.csv", tmp_path / "clean.csv"
    code, out, err = run(capsys, "dedup", demo_collection, "--threshold", "0.85", "-o", groups,
                         "--write-clean", clean, "--json")
    res = json.loads(out)
    assert code == 0 and res["duplicates"] == 6 and res["sizes"] == {"2": 6}
    g_rows = list(csv.DictReader(groups.open()))
    assert len(g_rows) == 12 and sum(r["representative"] == "True" for r in g_rows) == 6
    # cosines as reports give them: a representative's with itself is 1 (it was written as
    # 1.000000238418579 or 0.9999997615814209), every score within [-1, 1], to 6 decimals
    assert all(r["score"] == "1.0" for r in g_rows if r["representative"] == "True"), g_rows
    assert all(len(r["score"].split(".")[1]) <= 6 for r in g_rows)
    c_rows = list(csv.DictReader(clean.open()))
    assert len(c_rows) == 247 - 6 and {"id", "text", "topic", "year"} <= set(c_rows[0])
    mapping = {r["id"]: r["kept_id"] for r in csv.DictReader(
        (tmp_path / "clean.mapping.csv").open())}
    assert len(mapping) == 247
    kept = {r["id"] for r in c_rows}
    assert all(v in kept for v in mapping.values())
    dropped = {r["id"] for r in g_rows if r["representative"] == "False"}
    assert dropped.isdisjoint(kept) and all(mapping[d] != d for d in dropped)


def test_index_skip_near_duplicates(capsys, demo_copy, tmp_path):
    f = tmp_path / "new.csv"
    f.write_text("id,text\nn1,My card was charged two times for the same yearly plan.\n"
                 "n2,Please add an export to spreadsheet option.\n")
    code, out, _ = run(capsys, "upsert", demo_copy, f, "--skip-near-duplicates", "0.85", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["skipped_near_duplicates"] == 1 and rep["added"] == 1
    assert rep["near_duplicates"][0]["id"] == "n1"
    assert rep["near_duplicates"][0]["duplicate_of"] in {"fb-0066", "fb-0067"}


@pytest.fixture
def one_doc(tmp_path, encoder):
    f = tmp_path / "one.txt"
    f.write_text("only one text here\n")
    col, _ = Collection.from_file(tmp_path / "one", f, model=encoder)
    col.close()
    return tmp_path / "one"


@pytest.fixture
def empty_col(tmp_path, encoder):
    Collection.create(tmp_path / "empty", model=encoder).close()
    return tmp_path / "empty"


BAD = [
    (["mine", "{demo}", "--threshold", "1.5"], "threshold must be between -1 and 1"),
    (["mine", "{demo}", "--threshold", "-1.01"], "threshold must be between -1 and 1"),
    (["mine", "{demo}", "--top-k", "0"], "top-k must be a whole number >= 1"),
    (["mine", "{demo}", "--max-pairs", "0"], "max-pairs must be >= 1"),
    (["mine", "{one}"], "at least 2 documents (this one has 1)"),
    (["mine", "{empty}"], "at least 2 documents (this one has 0)"),
    (["dedup", "{one}"], "at least 2 documents"),
    (["mine", "{demo}", "-o", "nofolder/pairs.csv"], "the folder nofolder does not exist"),
    (["dedup", "{demo}", "-o", "groups.csv", "--write-clean", "nofolder/c.csv"],
     "the folder nofolder does not exist"),
    (["mine", "{demo}", "-o", "pairs.xlsx"], "output must end in .csv, .jsonl, .parquet"),
    (["paraphrases", "{demo}", "crash", "--threshold", "2"], "threshold must be between"),
    (["paraphrases", "{demo}", "crash", "--top-k", "-1"], "top-k must be"),
    (["dedup", "{demo}", "--threshold", "7"], "threshold must be between"),
    (["upsert", "{demo}", "x.csv", "--skip-near-duplicates", "3"], "threshold must be between"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[:1] + a[2:4]) for a, _ in BAD])
def test_bad_input(capsys, tmp_path, monkeypatch, demo_collection, one_doc, empty_col, argv,
                   message):
    work = tmp_path / "work"
    work.mkdir()
    (work / "x.csv").write_text("text\nhello\n")
    monkeypatch.chdir(work)
    subs = {"{demo}": str(demo_collection), "{one}": str(one_doc), "{empty}": str(empty_col)}
    before = sorted(os.listdir(work))
    demo_before = sorted((p.name, p.stat().st_mtime_ns) for p in demo_collection.iterdir())
    code, _, err = run(capsys, *[subs.get(a, a) for a in argv])
    assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, err
    assert sorted(os.listdir(work)) == before
    assert sorted((p.name, p.stat().st_mtime_ns) for p in demo_collection.iterdir()) == demo_before


def test_an_id_column_not_passed_as_id_is_pointed_out_and_never_duplicated(capsys, tmp_path):
    """A CSV with an 'id' column indexed without --id: index says to pass it, and the clean
    corpus of dedup has each column once, its ids those of the mapping file."""
    src = tmp_path / "fb.csv"
    rows = ["id,text,topic"] + [f"r{i},{t},t{i % 3}" for i, t in enumerate(
        ["the app crashes when I open it", "the app crashes whenever I open it",
         "please add a dark mode", "I was billed twice this month", "refund my money please"])]
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    code, _, err = run(capsys, "index", src, "-c", tmp_path / "col")
    assert code == 0 and "column 'id' looks like ids; pass --id id" in err
    clean = tmp_path / "clean.csv"
    code, _, _ = run(capsys, "dedup", tmp_path / "col", "--threshold", "0.9", "--write-clean",
                     clean, "--json")
    assert code == 0
    header = clean.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert len(header) == len(set(header)) and {"id", "text", "topic"} <= set(header)
    c_rows = list(csv.DictReader(clean.open(encoding="utf-8")))
    mapping = list(csv.DictReader((tmp_path / "clean.mapping.csv").open(encoding="utf-8")))
    id_col = next(c for c in mapping[0] if c != "kept_id")
    kept = {r[id_col] for r in c_rows}
    assert len(c_rows) == 4 and all(m["kept_id"] in kept for m in mapping)
    assert {r["id"] for r in c_rows} <= {f"r{i}" for i in range(5)}  # the file's own ids kept
    code, _, err = run(capsys, "index", src, "-c", tmp_path / "col2", "--id", "id")
    assert code == 0 and "looks like ids" not in err
