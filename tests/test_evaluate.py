"""eval sts / eval pairs / calibrate with the real bundled model."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import SHARED

from neartext import Collection
from neartext.algo.metrics import sts_correlation
from neartext.cli import main
from neartext.data.evaldata import load_pairs
from neartext.engine.modeleval import evaluate_pairs, evaluate_sts
from neartext.errors import InputError

STS_ROWS = [
    ("A man is playing a guitar.", "A man plays the guitar.", 4.8),
    ("A woman is slicing an onion.", "Someone is cutting an onion.", 4.2),
    ('He said "no" to the offer.', "He declined the offer.", 3.9),
    ("A dog runs in the park.", "A cat sleeps on the sofa.", 1.0),
    ("The stock market fell today.", "A child is riding a bike.", 0.0),
    ("Two kids play football.", "Children are playing soccer.", 4.5),
]


def test_tsv_without_header_and_bare_quotes(tmp_path, encoder):
    f = tmp_path / "sts.csv"
    f.write_text("".join(f"genre\tfile\t2012\t{i:04d}\t{s}\t{a}\t{b}\n"
                         for i, (a, b, s) in enumerate(STS_ROWS)), encoding="utf-8")
    data = load_pairs(f)
    assert data.columns == ("6", "7", "5") and data.text1[2] == 'He said "no" to the offer.'
    res = evaluate_sts(encoder, data)
    a, b = encoder.encode(data.text1), encoder.encode(data.text2)
    assert res == pytest.approx(sts_correlation((a * b).sum(axis=1), data.value))
    assert res["spearman"] > 80  # the model ranks these easy pairs well


def test_csv_header_by_name_and_position(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("q_a,q_b,dup\nhello,hi,1\nbye,hello,0\n")
    with pytest.raises(InputError, match="unknown text column 'x'; available columns: q_a, q_b, dup"):
        load_pairs(f, text1="x")
    d = load_pairs(f, text1="q_a", text2="2", value="dup")
    assert d.text1 == ["hello", "bye"] and d.value.tolist() == [1, 0]


def test_label_and_content_errors(tmp_path, encoder):
    f = tmp_path / "p.csv"
    f.write_text("sentence1,sentence2,label\na,b,1\nc,d,2\n")
    with pytest.raises(InputError, match="labels must be 0 or 1; pair 2 has 2"):
        evaluate_pairs(encoder, load_pairs(f))
    f.write_text("sentence1,sentence2,label\na,b,1\nc,d,1\n")
    with pytest.raises(InputError, match="need both 0 and 1"):
        evaluate_pairs(encoder, load_pairs(f))
    f.write_text("sentence1,sentence2,label\na,b,yes\n")
    with pytest.raises(InputError, match="line 2: 'label' is not a number: 'yes'"):
        load_pairs(f)


def constructed_pairs(tmp_path):
    pos = [("The app crashes when I open it.", "Opening the app makes it crash."),
           ("I want a refund.", "Please give me my money back."),
           ("Add a dark theme please.", "Could you add a dark mode?"),
           ("Sync does not work.", "My notes do not sync.")]
    neg = [("The app crashes when I open it.", "Please give me my money back."),
           ("I want a refund.", "Could you add a dark mode?"),
           ("Add a dark theme please.", "My notes do not sync."),
           ("Sync does not work.", "The weather is nice today.")]
    f = tmp_path / "labeled.csv"
    f.write_text("sentence1,sentence2,label\n" + "".join(
        f'"{a}","{b}",{y}\n' for y, rows in ((1, pos), (0, neg)) for a, b in rows))
    return f


def test_calibrate_finds_separating_threshold_and_mine_uses_it(tmp_path, demo_copy, encoder):
    f = constructed_pairs(tmp_path)
    data = load_pairs(f)
    a, b = encoder.encode(data.text1), encoder.encode(data.text2)
    sims = (a * b).sum(axis=1)
    assert sims[data.value == 1].min() > sims[data.value == 0].max()  # separable by design
    with Collection.open(demo_copy) as col:
        cal = col.calibrate(data)
        assert cal.threshold == pytest.approx(sims[data.value == 1].min(), abs=1e-5)
        assert cal.precision == 1.0 and cal.recall == 1.0
    with Collection.open(demo_copy) as col:
        assert col.manifest.threshold == pytest.approx(cal.threshold)
        assert col.mine().threshold == pytest.approx(cal.threshold)  # the default now


def test_cli_eval_and_calibrate(capsys, tmp_path, demo_copy):
    f = constructed_pairs(tmp_path)
    assert main(["eval", "pairs", str(f), "--model", "default", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["pairs"] == 8 and res["results"]["default"]["average_precision"] == 1.0
    assert main(["calibrate", str(demo_copy), "--pairs", str(f), "--min-precision", "0.9"]) == 0
    assert "stored" in capsys.readouterr().out
    assert main(["eval", "sts", str(tmp_path / "missing.csv")]) == 1
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "stsbenchmark" / "sts-test.csv").exists(),
                    reason="../shared/datasets/stsbenchmark is absent")
@pytest.mark.slow
def test_sts_benchmark_published_figure(encoder):
    res = evaluate_sts(encoder, load_pairs(SHARED / "stsbenchmark" / "sts-test.csv"))
    assert res["spearman"] == pytest.approx(82.03, abs=0.3)
    assert not np.isnan(res["pearson"])


def test_eval_retrieval_pairs_and_beir(capsys, tmp_path):
    f = tmp_path / "heldout.csv"
    f.write_text("query,description\n"
                 "my app crashes at start,The application closes immediately after launch\n"
                 "I want money back,Refund requests for subscriptions\n"
                 "night theme,Dark mode for the interface\n")
    assert main(["eval", "retrieval", "--pairs", str(f), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["queries"] == 3 and res["documents"] == 3
    assert res["results"]["default"]["mrr@10"] == 1.0  # each query finds its own passage first
    corpus, queries, qrels = tmp_path / "c.jsonl", tmp_path / "q.jsonl", tmp_path / "qrels.tsv"
    corpus.write_text('{"_id": "d1", "title": "Refunds", "text": "How to get your money back"}\n'
                      '{"_id": "d2", "title": "Themes", "text": "Switch to dark mode"}\n')
    queries.write_text('{"_id": "1", "text": "refund my payment"}\n')
    qrels.write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n")
    assert main(["eval", "retrieval", "--corpus", str(corpus), "--queries", str(queries),
                 "--qrels", str(qrels), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"]["default"]["recall@1"] == 1.0
    qrels.write_text("query-id\tcorpus-id\tscore\n9\tx\t1\n")
    assert main(["eval", "retrieval", "--corpus", str(corpus), "--queries", str(queries),
                 "--qrels", str(qrels)]) == 1
    assert "no relevance judgement names a query and a document" in capsys.readouterr().err
    assert main(["eval", "retrieval", "--pairs", str(f), "--qrels", str(qrels)]) == 1
    assert "give --pairs FILE, or all of" in capsys.readouterr().err


def test_eval_retrieval_on_a_small_file_warns_and_ranks_against_a_corpus_when_given(
        capsys, tmp_path, demo_collection):
    """Before: 3 queries against their own 3 passages scored 1.000 for every model, silently.
    Now the output says how many documents each query was ranked against, warns that so few
    cannot tell models apart, and --corpus adds a collection's (or a file's) texts."""
    from conftest import DEMO

    f = tmp_path / "heldout.csv"
    f.write_text("query,passage\n"
                 "my app crashes at start,The application closes immediately after launch\n"
                 "I want money back,Refunds for subscriptions\n"
                 "night theme,Dark mode for the interface\n")
    assert main(["eval", "retrieval", "--pairs", str(f), "--mode", "semantic", "--mode",
                 "hybrid"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{f}: 3 queries, each ranked against 3 documents"
    assert [ln for ln in err.splitlines() if ln] == [
        "neartext eval: warning: each query was ranked against only 3 passages (those of "
        "heldout.csv), too few to tell models apart; rank against more with --corpus (a "
        "collection or a corpus file)",
        "neartext eval: warning: all 2 columns score the same (MRR@10 1.000): this test cannot "
        "tell them apart"], err
    assert main(["eval", "retrieval", "--pairs", str(f), "--corpus", str(demo_collection),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["documents"] == 3 + 247 and res["warnings"] == []
    assert res["results"]["default"]["mrr@10"] < 1.0  # the demo's texts compete now
    assert main(["eval", "retrieval", "--pairs", str(f), "--corpus", str(DEMO), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["documents"] == 3 + 247
    assert main(["eval", "retrieval", "--pairs", str(f), "--corpus",
                 str(tmp_path / "none.csv")]) == 1
    assert "none.csv: no such file" in capsys.readouterr().err


def test_eval_retrieval_compares_search_modes(capsys, tmp_path):
    f = tmp_path / "heldout.csv"
    f.write_text("query,passage\n"
                 "Kuznetsova,Regards from Svetlana Kuznetsova about the delivery\n"
                 "Okonkwo,Regards from Chidi Okonkwo about the delivery\n"
                 "my app crashes at start,The application closes immediately after launch\n"
                 "night theme,Dark mode for the interface\n")
    assert main(["eval", "retrieval", "--pairs", str(f), "--mode", "semantic", "--mode", "keyword",
                 "--mode", "hybrid", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert set(res) == {"default [semantic]", "default [keyword]", "default [hybrid]"}
    assert res["default [hybrid]"]["mrr@10"] == 1.0
    assert res["default [keyword]"]["mrr@10"] < 1.0  # "night theme" shares no word with its passage
    with pytest.raises(SystemExit) as e:
        main(["eval", "retrieval", "--pairs", str(f), "--mode", "fuzzy"])
    assert e.value.code == 2 and "invalid choice: 'fuzzy'" in capsys.readouterr().err


def test_eval_collection_by_text_and_by_id(capsys, tmp_path, demo_collection, demo_copy):
    f = tmp_path / "heldout.csv"
    f.write_text("query,passage,doc\n"
                 "offline error page,As soon as the connection is lost I get an error screen.,fb-0191\n"
                 "app takes too much disk space,"
                 "It uses   more than a gigabyte of storage for a few hundred notes.,fb-0092\n"
                 "new phone lost notes,I replaced my phone and all my notes are gone.,fb-0235\n"
                 "this is not in the collection,No document has this text at all.,fb-9999\n")
    assert main(["eval", "collection", str(demo_collection), "--pairs", str(f), "--json"]) == 0
    by_text = json.loads(capsys.readouterr().out)
    # the extra whitespace in row 2 still matches; row 4 names no document and is counted as skipped
    assert by_text["queries"] == 3 and by_text["skipped"] == 1
    assert 0 < by_text["mrr@10"] <= 1 and by_text["recall@10"] > 0
    assert main(["eval", "collection", str(demo_collection), "--pairs", str(f), "--gold-id", "doc",
                 "--json"]) == 0
    by_id = json.loads(capsys.readouterr().out)
    assert by_id["queries"] == 3 and by_id["mrr@10"] == pytest.approx(by_text["mrr@10"])
    assert by_id["ranking"] == "semantic" and "alpha" not in by_id
    # the ranking measured, named in full: a blend's weight, none for a fusion without one (on
    # a copy: a first keyword search builds the shared collection's keyword index)
    assert main(["eval", "collection", str(demo_copy), "--pairs", str(f), "--mode",
                 "hybrid", "--alpha", "0.3"]) == 0
    assert re.search(r"\nranking +hybrid blend alpha 0.3\n", capsys.readouterr().out)
    assert main(["eval", "collection", str(demo_copy), "--pairs", str(f), "--mode",
                 "hybrid", "--fusion", "rrf", "--json"]) == 0
    rrf = json.loads(capsys.readouterr().out)
    assert (rrf["ranking"], rrf["fusion"], rrf["alpha"]) == ("hybrid rrf", "rrf", None)
    g = tmp_path / "other.csv"
    g.write_text("query,passage\nhello,Nothing like this is indexed.\n")
    assert main(["eval", "collection", str(demo_collection), "--pairs", str(g)]) == 1
    assert "no overlap to evaluate" in capsys.readouterr().err


def test_eval_pairs_plot_writes_png(capsys, tmp_path):
    f = constructed_pairs(tmp_path)
    png = tmp_path / "out" / "hist.png"
    assert main(["eval", "pairs", str(f), "--plot", str(png)]) == 1  # missing folder: refused
    assert "hist.png" in capsys.readouterr().err and not png.exists()
    png.parent.mkdir()
    assert main(["eval", "pairs", str(f), "--plot", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert str(png) in capsys.readouterr().err + capsys.readouterr().out
    assert main(["eval", "pairs", str(f), "--plot", str(tmp_path / "hist.txt")]) == 1
    assert ".png" in capsys.readouterr().err
