"""The CLI: each command's output and every bad-input case (one line, exit 1, nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import DEMO

from neartext.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_upsert_delete_info_json(capsys, tmp_path):
    col = tmp_path / "fb"
    code, out, _ = run(capsys, "index", DEMO, "-c", col, "--text", "text", "--id", "id", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["added"] == 247 and rep["texts_embedded"] == 247
    assert set(rep) >= {"rows_read", "dropped", "added", "updated", "unchanged", "removed",
                        "texts_embedded"}

    code, out, _ = run(capsys, "search", col, "charged twice for my plan", "-k", "3", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 3
    assert set(hits[0]) == {"id", "text", "score", "metadata"}
    assert hits[0]["id"] in {"fb-0066", "fb-0067"}

    new = tmp_path / "new.csv"
    new.write_text("id,text,topic\nn-1,The calendar view should start on Monday.,ui\n")
    code, out, _ = run(capsys, "upsert", col, new, "--json")  # columns remembered from index
    assert code == 0 and json.loads(out)["added"] == 1 and json.loads(out)["texts_embedded"] == 1

    code, out, _ = run(capsys, "search", col, "week starts on Monday", "-k", "1")
    assert code == 0 and "n-1" in out and "topic=ui" in out

    code, out, _ = run(capsys, "delete", col, "n-1", "--json")
    assert code == 0 and json.loads(out) == {"collection": str(col), "removed": 1,
                                             "not_found": 0, "documents": 247}

    code, out, _ = run(capsys, "info", col, "--json")
    info = json.loads(out)
    assert code == 0 and info["documents"] == 247 and info["model"] == "all-MiniLM-L6-v2"

    code, out, _ = run(capsys, "index", DEMO, "-c", col, "--json")  # re-index: nothing new
    rep = json.loads(out)
    assert rep["unchanged"] == 247 and rep["texts_embedded"] == 0


def test_search_filters_threshold_and_queries_file(capsys, demo_collection, tmp_path):
    code, out, _ = run(capsys, "search", demo_collection, "app crashes", "-k", "20",
                       "--where", "topic=crash", "--where", "year>=2024", "--json")
    hits = json.loads(out)
    assert code == 0 and hits
    assert all(h["metadata"]["topic"] == "crash" and h["metadata"]["year"] >= 2024 for h in hits)
    code, out, _ = run(capsys, "search", demo_collection, "app crashes", "--threshold", "0.99")
    assert code == 0 and "no results" in out
    qf = tmp_path / "q.txt"
    qf.write_text("refund\n\ndark mode\n")
    code, out, _ = run(capsys, "search", demo_collection, "--queries", qf, "-k", "2", "--json")
    res = json.loads(out)
    assert [r["query"] for r in res] == ["refund", "dark mode"] and len(res[1]["results"]) == 2


def _bad_files(tmp_path):
    (tmp_path / "empty.csv").write_text("text\n\n   \nN/A\n")
    (tmp_path / "cols.csv").write_text("a,b\nx,y\n")
    (tmp_path / "enc.csv").write_bytes(b"text\nok\n\xff\xfe bad\n")
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": "b",}\n')
    (tmp_path / "dup.csv").write_text("id,text\n1,a\n2,b\n1,c\n")


BAD = [
    (["index", "missing.csv", "-c", "out"], "missing.csv: no such file"),
    (["index", "empty.csv", "-c", "out"], "empty.csv: nothing to index"),
    (["index", "cols.csv", "-c", "out", "--text", "body"],
     "unknown text column 'body'; available columns: a, b"),
    (["index", "enc.csv", "-c", "out"], "enc.csv: line 3:.*--encoding"),
    (["index", "bad.jsonl", "-c", "out"], "bad.jsonl: line 2: malformed JSON"),
    (["index", "dup.csv", "-c", "out", "--id", "id"], r"duplicate ids: '1' \(rows 2 and 4\)"),
    (["index", "cols.csv", "-c", "out", "--text", "a", "--model", "no/such/model"],
     "model 'no/such/model': not a built-in name"),
    (["search", "{demo}", "hello", "-k", "0"], "k must be a whole number >= 1"),
    (["search", "{demo}", "hello", "-k", "-2"], "k must be a whole number >= 1"),
    (["search", "{demo}", "hello", "--threshold", "1.5"], "threshold must be between -1 and 1"),
    (["search", "{demo}", "hello", "--threshold", "-2"], "threshold must be between -1 and 1"),
    (["search", "out", "hello"], "out: no collection here"),
    (["search", "{demo}", "hello", "--where", "yaer>=2020"], "unknown metadata field 'yaer'"),
    (["upsert", "out", "cols.csv"], "out: no collection here"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a[:2]) + "|" + m[:25] for a, m in BAD])
def test_bad_input_one_line_exit_1_nothing_written(capsys, tmp_path, monkeypatch, demo_collection,
                                                   argv, message):
    import re

    _bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    demo_before = sorted((p.name, p.stat().st_mtime_ns) for p in demo_collection.iterdir())
    code, out, err = run(capsys, *[a.replace("{demo}", str(demo_collection)) for a in argv])
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), err
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, no partial collection
    assert sorted((p.name, p.stat().st_mtime_ns) for p in demo_collection.iterdir()) == demo_before


def test_reindex_after_upsert_keeps_the_upserted_documents_unless_pruned(capsys, demo_copy,
                                                                         tmp_path):
    """The README tour: upsert, then index the original file again. The upserted documents are
    kept and counted (before, the re-index said "2 removed" and they were gone); --prune
    removes them."""
    more = tmp_path / "more.csv"
    more.write_text("id,text,topic\nn-1,The calendar view should start on Monday.,ui\n"
                    "n-2,Please let me export my notes as PDF.,export\n")
    assert run(capsys, "upsert", demo_copy, more, "-q")[0] == 0
    code, out, err = run(capsys, "index", DEMO, "-c", demo_copy)
    assert code == 0 and "0 removed" in out, out + err
    assert "2 stored documents not in the corpus kept (--prune removes them)" in out
    code, out, _ = run(capsys, "index", DEMO, "-c", demo_copy, "--json")
    rep = json.loads(out)
    assert (rep["removed"], rep["kept_absent"], rep["unchanged"]) == (0, 2, 247)
    code, out, _ = run(capsys, "info", demo_copy, "--json")
    assert json.loads(out)["documents"] == 249
    code, out, _ = run(capsys, "index", DEMO, "-c", demo_copy, "--prune", "--json")
    rep = json.loads(out)
    assert code == 0 and (rep["removed"], rep["kept_absent"]) == (2, 0)
    code, out, _ = run(capsys, "info", demo_copy, "--json")
    assert json.loads(out)["documents"] == 247


def test_creation_options_on_existing_collection_are_refused(capsys, demo_copy):
    code, _, err = run(capsys, "index", DEMO, "-c", demo_copy, "--chunk", "50")
    assert code == 1 and "--chunk only apply when creating" in err


def test_console_script_exit_codes(tmp_path):
    exe = [sys.executable, "-m", "neartext"]
    ok = subprocess.run([*exe, "--version"], capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("neartext ")
    bad = subprocess.run([*exe, "search", str(tmp_path / "x"), "q"], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    usage = subprocess.run([*exe, "search"], capture_output=True, text=True)
    assert usage.returncode == 2


@pytest.mark.slow
def test_output_into_a_closed_pipe_stops_quietly(demo_collection):
    """`neartext search ... | head -1`: no traceback when the reader leaves early."""
    r = subprocess.run(["bash", "-c", f"{sys.executable} -m neartext search {demo_collection} "
                        "'crash' -k 247 --json | head -1; exit ${PIPESTATUS[0]}"],
                       capture_output=True, text=True)  # 76 kB: more than a pipe holds
    assert r.stdout.count("\n") == 1 and r.stderr == ""
    assert r.returncode == 141  # 128 + SIGPIPE


def test_every_choice_of_every_option_is_named_in_its_help():
    """Help texts made from the home of each set of choices: before, `--fusion` omitted
    `learned`, `tune --kind` omitted `residual-mlp`, and five more options named none."""
    import argparse

    from neartext.cli import build_parser

    def walk(p, path):
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif a.choices and a.help not in (None, argparse.SUPPRESS):
                missing = [c for c in a.choices if str(c) not in a.help]
                if missing:
                    yield path, a.option_strings, missing
    assert list(walk(build_parser(), "neartext")) == []
    from neartext.data.filters import WHERE_HELP

    assert all(s in WHERE_HELP for s in ("|", "&", "!", "(")), WHERE_HELP


def test_the_readmes_filters_name_fields_of_the_demo():
    """The README's `--where` examples on feedback/ name fields the demo has (one named `lang`,
    which it lacks)."""
    import csv
    import re
    from pathlib import Path

    from neartext.data.filters import parse_filter

    def fields(term):
        if hasattr(term, "field"):
            return {term.field}
        inner = getattr(term, "terms", None) or (getattr(term, "term", None),)
        return set().union(*(fields(t) for t in inner if t is not None))

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    columns = set(next(csv.reader(DEMO.open(encoding="utf-8"))))
    found = 0
    for line in readme.splitlines():
        if "feedback" not in line:
            continue
        for expr in re.findall(r'--where "([^"]+)"', line):
            named = set().union(*(fields(t) for t in parse_filter(expr).conditions))
            assert named <= columns, (expr, named - columns)
            found += 1
    assert found >= 3


def test_each_text_column_stays_a_field_shown_filtered_and_shown_by_the_bot(capsys, tmp_path,
                                                                           encoder):
    """--text title,description: the searched text is their join, and title and description
    are fields of the document (before: the title was no field, so `bot --show title,link`
    failed with "unknown field 'title'"). A collection made before re-indexes to the fields
    without encoding anything."""
    from neartext import Collection, Record

    memes = tmp_path / "memes.csv"
    memes.write_text("title,link,description\n"
                     "Кот в ванной,https://m.example/1,Когда понял что завтра понедельник\n"
                     "Собака у окна,https://m.example/2,Ждёшь доставку весь день а курьер не "
                     "пришёл\n"
                     "Сова с кофе,https://m.example/3,Утро после бессонной ночи перед "
                     "экзаменом\n", encoding="utf-8")
    col = tmp_path / "memes"
    # as a collection built before the fields: the joined text, link only
    with Collection.create(col, model=encoder) as c:
        rows = [ln.split(",") for ln in memes.read_text(encoding="utf-8").splitlines()[1:]]
        c.upsert([Record(f"m{i}", f"{t}\n{d}", {"link": u}) for i, (t, u, d) in enumerate(rows)])
        c.update_manifest(lambda m: m.source.update(text=["title", "description"], id=None))
    code, out, _ = run(capsys, "index", memes, "-c", col, "--prune", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["texts_embedded"] == 0 and rep["vectors_reused"] == 3, rep
    code, out, _ = run(capsys, "search", col, "жду курьера", "-k", "1", "--json")
    hit = json.loads(out)[0]
    assert hit["text"] == "Собака у окна\nЖдёшь доставку весь день а курьер не пришёл"
    assert hit["metadata"] == {"title": "Собака у окна", "link": "https://m.example/2",
                               "description": "Ждёшь доставку весь день а курьер не пришёл"}
    code, out, _ = run(capsys, "search", col, "утро", "--where", "title=Сова с кофе", "--json")
    assert code == 0 and [h["metadata"]["title"] for h in json.loads(out)] == ["Сова с кофе"]
    # what each result shows, as the bot's --show: the first field on its line, the rest below
    code, out, _ = run(capsys, "search", col, "жду курьера", "-k", "1", "--show", "title,link")
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith("Собака у окна") and \
        lines[1].strip() == "link=https://m.example/2" and len(lines) == 2, out
    code, out, _ = run(capsys, "search", col, "жду курьера", "-k", "1", "--show", "text")
    assert out.splitlines()[0].endswith("Собака у окна Ждёшь доставку весь день а курьер не "
                                        "пришёл") and len(out.splitlines()) == 1, out
    code, out, err = run(capsys, "search", col, "жду курьера", "--show", "title,titel")
    assert code == 1 and out == "" and err.strip().endswith(
        "unknown field 'titel' for --show; fields: text, description, link, title"), err
    pytest.importorskip("aiogram", reason="the bot extra is not installed")
    from neartext.bot import LocalBackend

    backend = LocalBackend(col)
    try:
        backend.check_fields(["title", "link"])  # refused before
    finally:
        backend.close()
