"""reindex (new version, atomic swap, resume), eval collection and eval pairs --plot."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import DEMO

from neartext import Collection, load_encoder
from neartext.cli import main
from neartext.encoders import EncoderSettings
from neartext.errors import InputError
from neartext.reindex import reindex


def demo_rows() -> list[dict]:
    with DEMO.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_reindex_swaps_to_the_new_model(demo_copy, tiny_model_dir):
    with Collection.open(demo_copy) as col:
        n = len(col)
        old_fp = col.manifest.model.fingerprint
        col.manifest.threshold = 0.8
        col.save_manifest()
    report = reindex(demo_copy, str(tiny_model_dir))
    assert report.documents == n and report.embedded == n and report.version == 2
    assert "threshold" in report.notes[0]
    with Collection.open(demo_copy) as col:
        m = col.manifest
        assert m.model.name == str(tiny_model_dir) and m.dim == 32
        assert m.history[0]["fingerprint"] == old_fp and m.threshold is None
        assert len(col) == n
        # The e5-style name gives the new model its prefixes; the old settings did not carry over.
        assert m.model.settings["query_prefix"] == "query: "
        top = col.search("I was charged twice for one month", k=3)
        assert len(top) == 3
        docs = {d.id: d for d in col.get([r["id"] for r in demo_rows()[:5]])}
    assert [docs[r["id"]].metadata["topic"] for r in demo_rows()[:5]] == [r["topic"] for r in demo_rows()[:5]]
    assert not demo_copy.with_name("feedback.reindex").exists()
    assert not demo_copy.with_name("feedback.previous").exists()


def test_reindex_refuses_the_same_model_and_keeps_previous(demo_copy, tiny_model_dir):
    with pytest.raises(InputError, match="already embedded with this model"):
        reindex(demo_copy, "default")
    reindex(demo_copy, str(tiny_model_dir), keep_previous=True)
    prev = demo_copy.with_name("feedback.previous")
    with Collection.open(prev) as old:
        assert old.manifest.model.name == "all-MiniLM-L6-v2"


def test_killed_reindex_leaves_the_collection_and_resumes(demo_copy, tiny_model_dir):
    """SIGKILL during reindex: the old version answers as before; the next run resumes."""
    code = (
        "import sys, neartext.ingest as c\n"
        "c.EMBED_CHUNK = 16\n"
        "from neartext.reindex import reindex\n"
        "import neartext.encoders.sbert as s\n"
        "orig = s.SentenceTransformerEncoder.encode\n"
        "calls = [0]\n"
        "def slow(self, texts, kind='document', **kw):\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 4:\n"
        "        print('ready', flush=True)\n"
        "        import time; time.sleep(60)\n"
        "    return orig(self, texts, kind, **kw)\n"
        "s.SentenceTransformerEncoder.encode = slow\n"
        f"reindex({str(demo_copy)!r}, {str(tiny_model_dir)!r})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.kill()
    proc.wait()
    with Collection.open(demo_copy) as col:
        assert col.manifest.model.name == "all-MiniLM-L6-v2"
        assert col.search("double charge", k=1)
    scratch = demo_copy.with_name("feedback.reindex")
    assert scratch.is_dir()
    report = reindex(demo_copy, str(tiny_model_dir))
    assert report.resumed and report.embedded < report.documents
    with Collection.open(demo_copy) as col:
        assert col.manifest.model.name == str(tiny_model_dir) and len(col) == report.documents


def test_cli_reindex(demo_copy, tiny_model_dir, capsys):
    assert main(["reindex", str(demo_copy), "--model", str(tiny_model_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["version"] == 2 and out["new_model"] == str(tiny_model_dir)
    assert main(["reindex", str(demo_copy.parent / "nope"), "--model", "default"]) == 1
    assert "no collection here" in capsys.readouterr().err


# --- eval collection ------------------------------------------------------------------------------

def test_eval_collection_by_text_and_by_id(demo_collection, tmp_path, encoder, capsys):
    rows = demo_rows()
    held = tmp_path / "held.csv"
    with held.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "passage", "doc"])
        w.writerow(["I was billed two times this month", rows[65]["text"], rows[65]["id"]])
        w.writerow(["the app closes when I open a note", rows[0]["text"], rows[0]["id"]])
        w.writerow(["something about nothing", "a passage that is not in the corpus", "no-such-id"])
    assert main(["eval", "collection", str(demo_collection), "--pairs", str(held), "--json"]) == 0
    by_text = json.loads(capsys.readouterr().out)
    assert by_text["queries"] == 2 and by_text["skipped"] == 1
    # Same as ranking the collection by hand with the same model.
    with Collection.open(demo_collection) as col:
        ranks = []
        for q, gold in (("I was billed two times this month", rows[65]["id"]),
                        ("the app closes when I open a note", rows[0]["id"])):
            ids = [r.id for r in col.search(q, k=100)]
            ranks.append(ids.index(gold) + 1 if gold in ids else None)
    expected_mrr = np.mean([1 / r if r and r <= 10 else 0 for r in ranks])
    assert by_text["mrr@10"] == pytest.approx(expected_mrr)
    assert main(["eval", "collection", str(demo_collection), "--pairs", str(held),
                 "--gold-id", "doc", "--json"]) == 0
    by_id = json.loads(capsys.readouterr().out)
    assert by_id["mrr@10"] == pytest.approx(expected_mrr) and by_id["queries"] == 2


def test_eval_collection_without_overlap(demo_collection, tmp_path, capsys):
    held = tmp_path / "other.csv"
    held.write_text("query,passage\nhello,a text nobody indexed\n")
    assert main(["eval", "collection", str(demo_collection), "--pairs", str(held)]) == 1
    err = capsys.readouterr().err
    assert str(held) in err and "no overlap" in err


# --- eval pairs --plot ----------------------------------------------------------------------------

def test_eval_pairs_plot(tmp_path, capsys):
    f = tmp_path / "labeled.csv"
    rows = demo_rows()
    with f.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text1", "text2", "label"])
        w.writerow([rows[65]["text"], rows[66]["text"], 1])
        w.writerow(["my card was charged twice", "I was billed two times", 1])
        w.writerow(["dark mode is too bright", "the dark theme hurts my eyes", 1])
        w.writerow(["my card was charged twice", "the widget is blank", 0])
        w.writerow(["dark mode is too bright", "export to PDF please", 0])
    png = tmp_path / "hist.png"
    assert main(["eval", "pairs", str(f), "--plot", str(png), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]["default"]
    assert res["average_precision"] == pytest.approx(1.0)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert main(["eval", "pairs", str(f), "--plot", str(tmp_path / "hist.jpg")]) == 1
    assert "must end in .png" in capsys.readouterr().err


def test_encoder_wrap_matches_loaded(encoder):
    from neartext.encoders.sbert import SentenceTransformerEncoder

    wrapped = SentenceTransformerEncoder.wrap(encoder.model, encoder.settings, encoder.model_dir)
    a = wrapped.encode(["same text"])
    b = load_encoder(EncoderSettings(model="default")).encode(["same text"])
    assert np.allclose(a, b, atol=1e-6) and wrapped.fingerprint != encoder.fingerprint
