"""Keyword (BM25 over stemmed words) and hybrid search, on real collections with the bundled model."""

from __future__ import annotations

import json
import random
import sqlite3

import numpy as np
import pytest
from pytest import approx

from neartext import Collection, Record
from neartext.cli import main
from neartext.data.chargrams import (
    gram_total,
    grams,
    grams_of_padded,
    padded_words,
    shared_grams,
)
from neartext.data.lexical import index_text, match_expression, terms
from neartext.data.sentences import SENTENCE_CHARS, parse, sentences
from neartext.engine.hybrid import PHRASE_CHARS, _text_columns, chars_columns
from neartext.store.base import StoreBase

# Long support tickets: the identifier that tells them apart comes after the first 32 tokens,
# which is all the model reads in this collection (as in long documents with a signature or an
# order number at the end). Only the words can find them.
FILLER = ("Hello team, I am writing again about the problem with the delivery that I described "
          "on the phone last week, because nothing has changed since then and I still wait for "
          "an answer from your side. ")
TICKETS = {
    "t-kuz": FILLER + "Regards, Svetlana Kuznetsova.",
    "t-okon": FILLER + "Regards, Chidi Okonkwo.",
    "t-lind": FILLER + "Regards, Astrid Lindqvist.",
    "t-qz1": FILLER + "Order QZ-88-4127.",
    "t-qz2": FILLER + "Order QZ-31-9050.",
    "t-fw": FILLER + "The router runs firmware 3.14.159.",
    "t-typo": FILLER + "I did not recieve the confirmaton email.",
    "t-brand": FILLER + "It is about the Zorbex blender.",
}
KEYWORD_QUERIES = {"Kuznetsova": "t-kuz", "ticket from Okonkwo": "t-okon", "Lindqvist delivery": "t-lind",
                   "QZ-88-4127": "t-qz1", "order QZ-31-9050": "t-qz2", "firmware 3.14.159": "t-fw",
                   "recieve confirmaton": "t-typo", "Zorbex": "t-brand"}
# Paraphrases of demo feedback, each with the demo texts that say the same thing.
PARAPHRASES = {
    "I got charged two times for the annual subscription": {"fb-0066", "fb-0067"},
    "opening a note with a photo crashes the app": {"fb-0007", "fb-0008", "fb-0009"},
    "the app runs down my battery": {"fb-0090", "fb-0091"},
    "I never get the password reset email": {"fb-0050", "fb-0051"},
    "PDF export drops the last page": {"fb-0130", "fb-0131"},
    "search does not look inside PDF files": {"fb-0102", "fb-0103"},
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, encoder):
    """The demo corpus plus the long tickets, in a collection whose model reads 32 tokens."""
    import csv

    from conftest import DEMO

    path = tmp_path_factory.mktemp("hybrid") / "mixed"
    from neartext.encoders import EncoderSettings

    col = Collection.create(path, model=EncoderSettings(model="default", max_seq_length=32))
    with open(DEMO, encoding="utf-8") as f:
        demo = [Record(r["id"], r["text"], {"topic": r["topic"], "year": int(r["year"])})
                for r in csv.DictReader(f)]
    col.upsert(demo + [Record(i, t, {"topic": "ticket", "year": 2026}) for i, t in TICKETS.items()])
    yield col
    col.close()


def _top1(col, queries, **kw):
    return {q: (r[0].id if (r := col.search(q, k=1, **kw)) else None) for q in queries}


def test_words_are_stemmed_for_russian_and_english():
    assert terms("Мемы про котиков") == terms("мем про котики") == ["мем", "про", "котик"]
    assert terms("The app CRASHED") == ["app", "crash"] == terms("app crashes")
    assert terms("ёлка") == terms("елка")
    assert match_expression("the, and; of") == ""  # only stop words: nothing to match


def test_stemming_keeps_no_long_word_between_documents():
    """Stems are remembered for the next document, and long words (hashes, a data URI's
    base64) were remembered too: 50,000 documents holding 1,000 characters of base64 each
    grew a process by 55 MB. The same stems, nothing kept of a long word."""
    import base64
    import tracemalloc

    rng = random.Random(1)
    docs = [f"a photo of cats {base64.b16encode(rng.randbytes(300)).decode()}" for _ in range(200)]
    assert terms(docs[0]) == ["photo", "cat", docs[0].split()[-1].lower()]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for d in docs:
            terms(d)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 50_000, kept  # (kept before: 147 kB of these 200 words)


def test_hybrid_finds_names_and_codes_that_semantic_search_misses(mixed):
    semantic = _top1(mixed, KEYWORD_QUERIES)
    keyword = _top1(mixed, KEYWORD_QUERIES, mode="keyword")
    hybrid = _top1(mixed, KEYWORD_QUERIES, mode="hybrid")
    right = {name: sum(got[q] == want for q, want in KEYWORD_QUERIES.items())
             for name, got in (("semantic", semantic), ("keyword", keyword), ("hybrid", hybrid))}
    assert right["keyword"] == len(KEYWORD_QUERIES)
    assert right["hybrid"] == len(KEYWORD_QUERIES) > right["semantic"] + 3, right


def test_hybrid_does_not_lose_on_paraphrases(mixed):
    semantic = _top1(mixed, PARAPHRASES)
    hybrid = _top1(mixed, PARAPHRASES, mode="hybrid")
    rrf = _top1(mixed, PARAPHRASES, mode="hybrid", fusion="rrf")
    right = {name: sum(got[q] in gold for q, gold in PARAPHRASES.items())
             for name, got in (("semantic", semantic), ("hybrid", hybrid), ("rrf", rrf))}
    assert right["semantic"] == len(PARAPHRASES)
    assert right["hybrid"] == len(PARAPHRASES), (right, hybrid)
    assert right["rrf"] == len(PARAPHRASES), (right, rrf)


def test_keyword_search_filters_and_scores(mixed):
    hits = mixed.search("crash", k=50, mode="keyword", where="year>=2024")
    assert hits and all(h.metadata["year"] >= 2024 for h in hits)
    assert all("crash" in " ".join(terms(h.text)) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert mixed.search("zzzqqq", k=5, mode="keyword") == []
    with pytest.raises(ValueError, match="threshold applies to cosine"):
        mixed.search("crash", k=5, mode="keyword", threshold=0.5)
    with pytest.raises(ValueError, match="unknown search mode"):
        mixed.search("crash", mode="fuzzy")


def test_keyword_index_follows_upserts_and_deletes(demo_copy):
    col = Collection.open(demo_copy)
    assert not col.store.has_keyword_index()
    assert col.search("crash", k=3, mode="keyword")  # built on first use
    assert col.store.has_keyword_index()
    col.upsert([Record("new-1", "The walrus theme is lovely.", {"topic": "themes"})])
    assert [h.id for h in col.search("walrus", k=3, mode="keyword")] == ["new-1"]
    col.upsert([Record("new-1", "The penguin theme is lovely.", {"topic": "themes"})])  # text changed
    assert col.search("walrus", k=3, mode="keyword") == []
    assert [h.id for h in col.search("penguins", k=3, mode="keyword")] == ["new-1"]
    col.delete(["new-1"])
    assert col.search("penguin", k=3, mode="keyword") == []
    col.close()
    # the full-text rows are exactly the documents, each with its current text's words
    conn = sqlite3.connect(demo_copy / "data.sqlite")
    rows = conn.execute("SELECT d.text, l.terms FROM documents d "
                        "LEFT JOIN lexical l ON l.rowid = d.rowid").fetchall()
    assert len(rows) == conn.execute("SELECT COUNT(*) FROM lexical").fetchone()[0]
    assert all(t == index_text(text) for text, t in rows)
    conn.close()


def test_hybrid_searches_count_the_documents_once_per_generation(demo_copy, monkeypatch):
    """The keyword weights need the number of documents (BM25's IDF): it is counted once per
    generation, like the words' frequencies, not by every search (before: a COUNT(*) per
    search, a scan of every document, 6 ms at a million). Another process's write moves the
    generation: the next search counts again and weighs with the new number."""
    col = Collection.open(demo_copy)
    counted: list[int] = []
    count = type(col.store).count

    def spy(store):
        counted.append(n := count(store))
        return n

    monkeypatch.setattr(type(col.store), "count", spy)
    first = col.store.keyword_weights(["refund my money"])
    for q in ("refund my money", "app crashes on start", "refund"):
        col.search(q, k=3, mode="hybrid")
    assert counted == [247]
    with Collection.open(demo_copy) as other:
        other.upsert([Record(f"x{i}", f"walrus number {i}") for i in range(3)])
    after = col.store.keyword_weights(["refund my money"])
    assert counted == [247, 250]
    assert after[0]["refund"] > first[0]["refund"]  # one more document without the word
    col.close()


def test_a_word_no_document_has_is_counted_once_per_generation(demo_copy, monkeypatch):
    """Its weight is remembered like any other word's: before, a word absent from every
    document was counted again at each search (and by ``tune``, for each query holding it)."""
    col = Collection.open(demo_copy)
    asked: list[str] = []
    count = type(col.store)._document_frequencies
    monkeypatch.setattr(type(col.store), "_document_frequencies",
                        lambda self, w: (asked.extend(w), count(self, w))[1])
    first = col.store.keyword_weights(["refund my zyzzyvas", "the zyzzyvas"])
    assert sorted(asked) == ["refund", "zyzzyva"]
    assert col.store.keyword_weights(["zyzzyvas refund"]) == [
        {w: first[0][w] for w in terms("zyzzyvas refund")}]
    assert len(asked) == 2  # nothing counted again
    col.close()


def test_the_word_counts_kept_between_writes_are_bounded(demo_copy, monkeypatch):
    """A store keeps each query word's document count until the next write, and kept every
    word a read-only service was ever asked (50,000 random words: 13.3 MB). At most DF_WORDS
    are kept now, long words never; the weights are the same as counted afresh."""
    import neartext.store.base as base

    monkeypatch.setattr(base, "DF_WORDS", 100, raising=False)
    rng = random.Random(2)
    queries = [" ".join("".join(rng.choice("abcdefgh") for _ in range(6)) for _ in range(7))
               + " refund crash " + "x" * 60 for _ in range(40)]
    with Collection.open(demo_copy) as col:
        got = []
        for q in queries:
            got.append(col.store.keyword_weights([q])[0])
            _, _, kept = col.store._df
            assert len(kept) <= 100 and not any(len(w) > 40 for w in kept)
    with Collection.open(demo_copy) as fresh:
        assert got == [fresh.store.keyword_weights([q])[0] for q in queries]
        assert got[0]["x" * 60] == fresh.store.keyword_weights(["x" * 60])[0]["x" * 60] > 0


def test_a_keyword_index_built_by_another_process_is_kept_in_sync(demo_copy):
    service = Collection.open(demo_copy)  # opened before the index exists
    other = Collection.open(demo_copy)
    other.search("crash", k=1, mode="keyword")
    other.close()
    service.upsert([Record("new-2", "A flamingo sticker pack, please.", {})])
    assert [h.id for h in service.search("flamingo", k=1, mode="keyword")] == ["new-2"]
    service.close()


def test_cli_modes_and_info(demo_copy, capsys):
    assert main(["search", str(demo_copy), "charged twice", "--mode", "hybrid", "-k", "2",
                 "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {h["id"] for h in hits} <= {"fb-0066", "fb-0067", "fb-0068", "fb-0069"}
    assert main(["search", str(demo_copy), "crash", "--mode", "keyword", "--threshold", "0.3"]) == 1
    assert "threshold applies to cosine scores" in capsys.readouterr().err
    assert main(["info", str(demo_copy), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["scripts"] == {"cyrillic": 0.0, "latin": 1.0, "other": 0.0}
    assert info["keyword_index"] is True


def test_lead_chars_is_the_share_of_the_querys_grams_in_the_first_line():
    """Worked by hand: "cats" has 7 distinct grams (_ca cat ats ts_ _cat cats ats_); the title
    "The cat" holds 3 of them (_ca cat _cat); only the first line counts, case and ё folded."""
    assert len(set(grams("cats"))) == 7
    texts = ["Falling CATS\nthe body", "The cat\ncats cats cats", "\ncats", "dogs", ""]
    assert chars_columns("cats", texts)["lead_chars"].tolist() == [1.0, 3 / 7, 0.0, 0.0, 0.0]
    assert chars_columns("", ["cats"])["lead_chars"].tolist() == [0.0]
    assert chars_columns("ёж", ["ЕЖ и другие"])["lead_chars"].tolist() == [1.0]


def test_the_title_features_keep_no_long_first_line_between_queries():
    """A learned ranking reads each candidate's first line (its title) query after query, and
    keeps what it made of short ones. Lines up to PHRASE_CHARS long were kept too: 4,096 of
    them, 185 MB for Russian one-line documents in a service. The same features, nothing
    kept of a long line; of its sentences, only what its first SENTENCE_CHARS characters make
    (at most 4,096 texts' worth: about 13 MB of Russian)."""
    import tracemalloc

    words = ["кошка", "собака", "понедельник", "работа", "кофе", "ситуация"]
    rng = random.Random(0)
    lines = [f"{i} " + " ".join(rng.choice(words) for _ in range(300)) for i in range(100)]
    cols = _text_columns({"кошк": 1.0, "кофе": 2.0}, lines[:3])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for line in lines:  # (the stems as a store gives them with the texts, as a search does)
            chars_columns("кошка пьёт кофе", [line], ["lead_chars"])
            _text_columns({"кошк": 1.0}, [line + "\nbody"], [index_text(line + "\nbody")])
        kept = tracemalloc.get_traced_memory()[0] - before
        for line in lines:
            chars_columns("кошка пьёт кофе", [line + line])  # (twice as long: kept the same)
        sentences_kept = tracemalloc.get_traced_memory()[0] - before - kept
    finally:
        tracemalloc.stop()
    assert kept < 200_000, kept  # (kept before: 1.2 MB of these 100 lines)
    assert sentences_kept < len(lines) * 8 * SENTENCE_CHARS, sentences_kept
    again = _text_columns({"кошк": 1.0, "кофе": 2.0}, lines[:3])  # (the same features)
    assert all(np.array_equal(cols[k], again[k]) for k in cols) and cols.keys() == again.keys()


def test_sentence_chars_scores_a_paraphrase_among_other_sentences_as_the_paraphrase_alone():
    """Worked by hand: "cats fall" has 14 distinct grams; "cat" has 5 grams, 3 of them the
    query's (_ca cat _cat): 3 / (14 + 5 - 3). A document that holds the query as one of its
    sentences scores 1, as the sentence alone does, where the whole text's share of it cannot
    tell the two apart; a sentence's repeated grams count each time."""
    assert sentences("Кот упал. «Все смеются!» Да…\nКогда на работе; ну и ну") == [
        "Кот упал.", "«Все смеются!»", "Да…", "Когда на работе; ну и ну"]
    assert sentences("v1.2 and e.g.this") == ["v1.2 and e.g.this"]
    texts = ["Dogs bark loudly. Cats fall!", "Cats fall", "cat", "fall cats fall", "dogs", ""]
    cols = chars_columns("cats fall", texts)
    assert cols["sentence_chars"].tolist() == [1.0, 1.0, 3 / 16, 14 / 21, 0.0, 0.0]
    # the first line holds all of the query's grams in both of the first two: no difference
    assert cols["lead_chars"][:2].tolist() == [1.0, 1.0]
    assert chars_columns("", texts)["sentence_chars"].tolist() == [0.0] * len(texts)
    assert chars_columns("cats", [], ["sentence_chars"])["sentence_chars"].tolist() == []
    assert chars_columns("cats", texts, []) == {}


def test_a_first_lines_grams_read_from_its_sentences_are_the_lines_own():
    """An oracle: with sentence_chars, lead_chars comes from the first line's sentences taken
    together (one pass over the texts); it equals the share the line holds read on its own,
    lines longer than the sentences read included; sentence_chars is the best over each
    sentence's own gram sets."""
    rng = random.Random(1)
    pieces = ["кот", "Cats", "fall", ".", "!", "?", " ", "  ", "\n", "…", "»", "ёж", "e.g.", "_"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randrange(0, 40))) for _ in range(300)]
    texts += ["кот упал. " * 300 + "\nfall", "\n\nкот", "cats " * 500]  # 3,000 + characters
    for q in ["кот fall", "Cats", "ёж e.g.", "fall fall. кот"]:
        both = chars_columns(q, texts)
        alone = chars_columns(q, texts, ["lead_chars"])["lead_chars"]
        assert both["lead_chars"] == approx(alone)
        query = set(grams(q))
        best = [max((len(query & set(grams(x))) / (len(query) + len(grams(x))
                                                   - len(query & set(grams(x))))
                     for x in sentences(t)), default=0.0) for t in texts]
        assert both["sentence_chars"] == approx(best)


def test_the_grams_shared_with_many_texts_at_once_are_those_of_each_text_alone():
    """An oracle: the size of the intersection of the gram sets, text by text (also for a
    query of more distinct characters than the fast way handles)."""
    rng = random.Random(0)
    alphabet = "ab cёЕ_-\nкот\u2019ß"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
             for _ in range(300)]
    sets = [set(grams(t)) for t in texts]
    padded = [padded_words(t) for t in texts]
    for q in texts[:20] + [texts[0] + " " + texts[1]]:
        query = set(grams(q))
        assert set(grams_of_padded(padded_words(q))) == query
        assert shared_grams(padded_words(q), padded).tolist() == [len(query & g) for g in sets]
        assert [gram_total(p) for p in padded] == [len(grams(t)) for t in texts]
    letters = [*range(0x4E00, 0xA000), *range(0xAC00, 0xD7A4), *range(0x20000, 0x2A6E0)]
    rng.shuffle(letters)
    words = ["".join(map(chr, letters[i:i + 700])) for i in range(0, 70_000, 700)]
    wide = " ".join(f"_{w}_" for w in words)  # padded, as a text longer than MAX_CHARS is not
    pool = [padded_words(words[0][:4] + " " + words[5][-3:]), padded[3], ""]
    assert shared_grams(wide, pool).tolist() == [8, 0, 0]  # _ab abc bcd _abc abcd xyz yz_ xyz_


def test_the_stems_a_local_store_reads_from_its_keyword_index_are_those_of_the_texts(demo_copy):
    """The learned fusion's text features read each candidate's stems from the keyword index
    instead of stemming its text at every query: the same stems, written or changed since."""
    with Collection.open(demo_copy) as col:
        store = col.store
        col.search("battery", k=1, mode="keyword")  # the keyword index exists
        col.upsert([Record("fb-0090", "Ёлки, the battery drains while the app is CLOSED")])
        ids = sorted(store.document_hashes())
        read = store.candidate_texts(ids, PHRASE_CHARS)
        made = StoreBase.candidate_texts(store, ids, PHRASE_CHARS)
        assert read == made and len(read) == len(ids) > 100
        assert read["fb-0090"] == ("Ёлки, the battery drains while the app is CLOSED",
                                   "елк batteri drain app close", None)


def test_the_sentences_a_local_store_keeps_are_those_of_the_texts(demo_copy):
    """The learned ranking's sentence features read each candidate's sentences from the store
    (made with the n-grams, kept in step with every write) instead of splitting its text at
    every query: the same sentences, and the same features, for texts written, changed and
    deleted since; a collection whose n-grams were made before the table existed reads its
    texts, as before, until ``ensure_chars`` (run by ``tune``) makes it."""
    with Collection.open(demo_copy) as col:
        store = col.store
        assert not store.has_sentences()
        col.search("battery", k=1, mode="chars")  # made with the n-grams
        assert store.has_sentences()
        col.upsert([Record("fb-0090", "Ёлки! The battery drains.\nWhile the app is CLOSED…"),
                    Record("new-1", "«Кот упал.» Все смеются\n\nx " + "y " * 400)])
        col.delete(["fb-0001"])
        ids = sorted(store.document_hashes())
        read = store.candidate_texts(ids, PHRASE_CHARS)
        assert "fb-0001" not in read and len(read) == len(ids) > 100
        assert all(c.sentences == parse(c.text) for c in read.values())
        assert read["fb-0090"].sentences.padded == (
            "_елки_", "_the_ _battery_ _drains_", "_while_ _the_ _app_ _is_ _closed_")
        assert read["new-1"].sentences.lead == 2
        texts = [c.text for c in read.values()]
        kept = chars_columns("battery drains", texts, parsed=[c.sentences for c in read.values()])
        made = chars_columns("battery drains", texts)
        assert all(np.array_equal(kept[k], made[k]) for k in made)
        # a collection from before the table: its texts are read until tune makes it
        db = sqlite3.connect(demo_copy / "data.sqlite", isolation_level=None)
        db.execute("DROP TABLE sentences")
        db.close()
        assert not store.has_sentences()
        assert all(c.sentences is None for c in store.candidate_texts(ids, PHRASE_CHARS).values())
        col.search("battery", k=1, mode="chars")  # (a search does not write it)
        assert not store.has_sentences()
        assert store.ensure_chars() and not store.ensure_chars()
        assert store.candidate_texts(ids, PHRASE_CHARS) == read


def test_the_phrase_feature_holds_whole_stems_in_order_within_the_first_characters():
    words = {"cat": 2.0, "fall": 1.0}
    phrase = {t: _text_columns(words, [t])["phrase"][0]
              for t in ("The cats fall", "the bobcat falls", "falls, cats", "cat\nfalling",
                        "x " * 6_000 + "cat falls", "cat falls " + "x " * 6_000)}
    assert phrase == {"The cats fall": 1.0, "the bobcat falls": 0.0, "falls, cats": 0.0,
                      "cat\nfalling": 1.0, "x " * 6_000 + "cat falls": 0.0,
                      "cat falls " + "x " * 6_000: 1.0}
    # stems given (as a store reads them) count the same way, cut to whole stems
    assert _text_columns(words, [""], ["cat fall"])["phrase"][0] == 1.0
    assert _text_columns(words, [""], ["x" * (PHRASE_CHARS - 5) + " cat fall"])["phrase"][0] == 0.0


def test_a_candidates_cosine_is_its_best_passages_and_so_before_an_adapter(tmp_path, encoder):
    """The cosines the fusion computes for candidates the semantic side did not score (and,
    given the query before its adapter, for all of them) are each document's best passage's,
    also where documents have several passages (a chunked collection)."""
    from neartext.engine.searching import _cosines
    from neartext.store import Hit

    col = Collection.create(tmp_path / "c", model=encoder, chunk=8, overlap=2, index="flat")
    col.upsert([Record(f"d{i}", " ".join(f"theme{i} note{j} sync" for j in range(4 + i)))
                for i in range(6)])
    rng = np.random.default_rng(0)
    q, before = rng.standard_normal((2, col.manifest.dim)).astype(np.float32)
    vectors = col.store.doc_vectors([f"d{i}" for i in range(6)])
    assert min(len(v) for v in vectors.values()) > 1  # several passages each
    cosine, model, _ = _cosines(col.store, q, [Hit("d0", 0.5)], [Hit(d, 1.0) for d in vectors],
                                before)
    assert cosine["d0"] == 0.5  # the semantic side's own score stays
    for d, v in vectors.items():
        if d != "d0":
            assert cosine[d] == pytest.approx(float(np.max(v @ q)), abs=1e-6)
        assert model is not None and model[d] == pytest.approx(float(np.max(v @ before)), abs=1e-6)
    col.close()


def test_a_search_ranked_by_a_learned_ranker_loads_no_lightgbm_package_sklearn_or_pandas(demo_copy):
    """A CLI search of a collection whose version ranks with a LightGBM ranker (what ``tune``
    promotes) loads LightGBM's library, not its Python package (with scipy.sparse and narwhals)
    nor the scikit-learn and pandas bridges that package imports when they are installed:
    1.3 s of its 2.3 s, then 0.1–0.2 s more, for a search that answers the same."""
    import subprocess
    import sys

    from conftest import promote_a_learned_ranker

    with Collection.open(demo_copy) as col:
        promote_a_learned_ranker(col)
        want = [r.id for r in col.search("the app crashes", k=5)]
    script = ("import sys\nfrom neartext.cli import main\ncode = main(sys.argv[1:])\n"
              "print(*[m for m in ('lightgbm', 'sklearn', 'pandas', 'scipy') if m in sys.modules], "
              "file=sys.stderr)\nsys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script, "search", str(demo_copy),
                           "the app crashes", "-k", "5", "--json"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1:] == [], done.stderr
    assert [r["id"] for r in json.loads(done.stdout)] == want


def test_the_bridges_kept_from_lightgbm_are_refused_on_its_thread_only():
    """What keeps scikit-learn and pandas from loading with LightGBM refuses them to the
    thread importing it, never to another one (a service's other requests)."""
    import threading

    from neartext.util.optional import _Refuse

    mine = _Refuse(["sklearn"], threading.get_ident())
    with pytest.raises(ImportError, match="not loaded with lightgbm"):
        mine.find_spec("sklearn.base")
    assert mine.find_spec("sklearnish") is None and mine.find_spec("numpy") is None
    seen: list[object] = []
    other = threading.Thread(target=lambda: seen.append(mine.find_spec("sklearn")))
    other.start()
    other.join()
    assert seen == [None]
