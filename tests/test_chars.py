"""The chars channel (BM25 over word-bounded character 3- and 4-grams): an oracle for its
scores, what it finds that stems miss, and a collection's n-gram table kept in step with every
writer."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neartext import Collection, Record
from neartext.cli import main
from neartext.data.chargrams import K1, B, CharIndex, gram_counts, grams
from neartext.errors import InputError


def _oracle(texts: list[str], query: str) -> list[float]:
    """BM25 over grams, written out from the formula (k1 1.2, b 0.75, Lucene's IDF)."""
    docs = [Counter(grams(t)) for t in texts]
    n = len(docs)
    avg = sum(sum(d.values()) for d in docs) / n
    out = []
    for d in docs:
        dl = sum(d.values())
        s = 0.0
        for g in set(grams(query)):
            df = sum(1 for x in docs if g in x)
            if g not in d:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = d[g]
            s += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / max(avg, 1e-9)))
        out.append(s)
    return out


words = st.text(alphabet="абвгдеёжзкотилмнпрсaeiouxyz ,.-ЁКОТ", min_size=0, max_size=40)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(words, min_size=1, max_size=8), query=words)
def test_scores_are_bm25_over_the_grams(texts, query):
    index = CharIndex.build(list(range(10, 10 + len(texts))), [gram_counts(t) for t in texts])
    want = _oracle(texts, query)
    got = index.scores(query)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-5)
    hits = index.search(query, k=3)
    best = sorted((s, -i) for i, s in enumerate(want) if s > 0)[::-1][:3]
    assert [r for r, _ in hits] == [10 - i for _, i in best]


def test_a_filter_keeps_only_the_allowed_rows():
    index = CharIndex.build([1, 2, 3], [gram_counts(t) for t in ("кот", "коты", "котик")])
    assert {r for r, _ in index.search("кот", 3)} == {1, 2, 3}
    assert [r for r, _ in index.search("кот", 3, allowed=np.array([2]))] == [2]
    assert index.search("кот", 3, allowed=np.array([], dtype=np.int64)) == []
    assert index.search("", 3) == [] and index.search("!!", 3) == []


def test_ties_at_the_last_place_go_to_the_lower_row_key():
    """Documents scoring alike at the k-th place: the lower row keys come, whichever way the
    top k is found (the search partitions all scores, then sorts the few it keeps)."""
    rows = [40, 7, 31, 12, 25, 3]
    texts = ["кот", "кот", "собака", "кот", "кот", "котик и кот"]
    index = CharIndex.build(rows, [gram_counts(t) for t in texts])
    assert [r for r, _ in index.search("кот", 3)] == [7, 12, 25]  # four tie, 3 comes last
    assert [r for r, _ in index.search("кот", 6)] == [7, 12, 25, 40, 3]  # 31 shares no gram


# misspelled and inflected forms: words the stemmer leaves apart, grams the texts share
TYPOS = {"комппютер завис": "pc", "телефончик разрядился": "phone",
         "recieving confirmaton": "mail", "Zorbexx blendr": "blender"}
TEXTS = {"pc": "Компьютер завис при загрузке, помогите",
         "phone": "Телефон быстро разряжается за ночь",
         "mail": "I am not receiving the confirmation email",
         "blender": "The Zorbex blender stopped working",
         "other": "Доставка пришла вовремя, спасибо"}


@pytest.fixture
def typo_col(tmp_path, encoder):
    col = Collection.create(tmp_path / "c", model="default")
    col.upsert([Record(i, t, {"lang": "ru" if i in ("pc", "phone", "other") else "en"})
                for i, t in TEXTS.items()])
    yield col
    col.close()


def test_chars_finds_misspellings_the_keyword_mode_misses(typo_col):
    kw_found = chars_found = 0
    for q, want in TYPOS.items():
        kw = typo_col.search(q, k=1, mode="keyword")
        ch = typo_col.search(q, k=1, mode="chars")
        kw_found += bool(kw) and kw[0].id == want
        chars_found += ch[0].id == want
    assert chars_found == len(TYPOS)
    assert kw_found < len(TYPOS)  # the stems miss at least one of them
    # filtered: only the allowed documents
    hits = typo_col.search("компьютер", k=5, mode="chars", where="lang=en")
    assert all(TEXTS[h.id].isascii() for h in hits)


def test_the_table_follows_every_write_of_every_process(typo_col, tmp_path):
    assert typo_col.search("блендер Zorbex", k=1, mode="chars")[0].id == "blender"
    typo_col.upsert([Record("blender", "Our kettle leaks", {"lang": "en"}),
                     Record("new", "Zorbex blender: the lid cracked", {"lang": "en"})])
    assert typo_col.search("Zorbex", k=5, mode="chars")[0].id == "new"
    assert "blender" not in {h.id for h in typo_col.search("Zorbex", k=5, mode="chars")}
    # another process writes: this handle's in-memory index is rebuilt at the next search
    code = ("from neartext import Collection, Record\n"
            f"c = Collection.open({str(typo_col.path)!r})\n"
            "c.upsert([Record('far', 'Zorbexxx lid again', {'lang': 'en'})])\n"
            "c.delete(['new'])\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    ids = [h.id for h in typo_col.search("Zorbex lid", k=5, mode="chars")]
    assert ids[0] == "far" and "new" not in ids
    # a copy made by a fresh open holds the same table (stored, not only in memory)
    again = Collection.open(typo_col.path)
    assert [h.id for h in again.search("Zorbex lid", k=5, mode="chars")] == ids
    again.close()


def test_cli_chars_mode_and_its_refusals(typo_col, tmp_path, capsys):
    path = str(typo_col.path)
    assert main(["search", path, "комппютер", "--mode", "chars", "--json", "-k", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == "pc"
    assert main(["search", path, "комп", "--mode", "chars", "--threshold", "0.5"]) == 1
    assert "threshold" in capsys.readouterr().err
    with pytest.raises(InputError, match="threshold"):
        typo_col.search("x", mode="chars", threshold=0.2)


def test_a_collection_made_before_the_channel_gets_its_table_at_the_first_chars_search(
        demo_collection, tmp_path):
    dst = tmp_path / "old"
    shutil.copytree(demo_collection, dst)
    col = Collection.open(dst)
    assert not col.store.has_chars_index()
    assert col.search("the app crashs when I opn it", k=3, mode="chars")
    assert col.store.has_chars_index()
    col.close()


@pytest.mark.slow
def test_the_first_chars_search_while_other_threads_search_finds_its_table(demo_collection,
                                                                          tmp_path):
    """The chars table made by the first chars search while three threads search the same
    collection (a service tuning while it serves): the search reads the table it made (before:
    `no such table: chargrams` in 2 of 15 tries, when another thread's document fetch held the
    reader's connection in an older snapshot)."""
    import threading

    errors: list[str] = []
    for trial in range(20):
        path = shutil.copytree(demo_collection, tmp_path / f"c{trial}")
        with Collection.open(path) as col:  # (queries by the model's twin, as a service's)
            col.search("warm up", k=3)
            stop = threading.Event()

            def hammer(c: Collection = col, done: threading.Event = stop) -> None:
                while not done.is_set():
                    c.search("the app crashes", k=5)

            threads = [threading.Thread(target=hammer) for _ in range(3)]
            for t in threads:
                t.start()
            try:
                assert col.search("app crashes", k=5, mode="chars")
            except Exception as e:  # noqa: BLE001 (counted, then asserted)
                errors.append(repr(e))
            finally:
                stop.set()
                for t in threads:
                    t.join()
    assert not errors, errors
