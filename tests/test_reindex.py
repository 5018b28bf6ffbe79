"""reindex (new version, atomic swap, resume), eval collection and eval pairs --plot."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import DEMO

from neartext import Collection, load_encoder
from neartext.cli import main
from neartext.encoders import EncoderSettings
from neartext.errors import InputError
from neartext.ops.reindex import reindex


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
        assert m.history[0].fingerprint == old_fp and m.threshold is None
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


@pytest.mark.slow
def test_killed_reindex_leaves_the_collection_and_resumes(demo_copy, tiny_model_dir):
    """SIGKILL during reindex: the old version answers as before; the next run resumes."""
    code = (
        "import sys, neartext.engine.ingest as c\n"
        "c.EMBED_CHUNK = 16\n"
        "from neartext.ops.reindex import reindex\n"
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
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "NEARTEXT_DOCUMENT_ENCODER": "model"})  # (hooked)
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


WRITER = r"""
import sys, time
from pathlib import Path
from neartext import Collection, Record
from neartext.errors import CollectionReplaced
from neartext.engine.feedback import FeedbackStore
path, stop = sys.argv[1], Path(sys.argv[2])
col = Collection.open(path)
fb = FeedbackStore(path)
i = refused = 0
while not stop.exists():
    try:
        col.upsert([Record(f"w{i}", f"written during the reindex, number {i}", {})])
    except CollectionReplaced:
        refused += 1            # a well-behaved client: open the new version, write again
        col.close()
        col = Collection.open(path)
        continue
    fb.add(f"query {i}", f"w{i}", True)
    print(f"w{i}", flush=True)  # reported written only once committed
    i += 1
    time.sleep(0.01)
print(f"refused {refused}", flush=True)
"""


@pytest.mark.slow
def test_a_reindex_loses_no_write_of_another_process(demo_copy, tiny_model_dir):
    """Another process writes documents and ratings without pause while the collection is
    re-embedded: every write it was told succeeded is in the new version (a write that met the
    swap was refused, and succeeded again on the new version), and so is every rating."""
    stop = demo_copy.parent / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(demo_copy), str(stop)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout and writer.stdout.readline().strip() == "w0"
        report = reindex(demo_copy, str(tiny_model_dir))
        # a few more writes on the new version, then stop
        with Collection.open(demo_copy) as col:
            start = len(col)
        deadline = time.monotonic() + 120
        while writer.poll() is None and time.monotonic() < deadline:
            with Collection.open(demo_copy) as col:
                if len(col) >= start + 3:
                    break
            time.sleep(0.05)
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    written = ["w0"] + [ln for ln in out.split() if ln.startswith("w")]
    assert len(written) > 5
    with Collection.open(demo_copy) as col:
        assert col.manifest.version == report.version == 2
        present = {d.id for d in col.get(written)}
    assert present == set(written), sorted(set(written) - present)[:5]
    from neartext.engine.feedback import FeedbackStore

    fb = FeedbackStore(demo_copy)
    rated = {r["doc_id"] for r in fb.list()}
    fb.close()
    assert set(written) <= rated, sorted(set(written) - rated)[:5]


@pytest.mark.parametrize("command", ["upsert", "index"])
def test_a_cli_write_that_meets_a_swap_is_made_on_the_new_version(demo_copy, tmp_path, capsys,
                                                                  monkeypatch, command):
    """A new version swapped in (a both-side mapping here, by the real code) after the CLI
    opened the collection and before it wrote: the store refuses the write (nothing written),
    the CLI says so and makes it on the new version; the documents are there (exit 1 with
    "repeat the change" before)."""
    from neartext.ops.reindex import remap

    rows = tmp_path / "new.csv"
    with rows.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        w.writerows([("n1", "The widget freezes when I rotate the phone."),
                     ("n2", "Please add an export to calendar files.")])
    if command == "index":  # a sync: the file and the collection's documents
        with rows.open("a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows((r["id"], r["text"]) for r in demo_rows())
    original = Collection.index_file
    swapped: list[bool] = []

    def swap_first(self, *args, **kw):
        if not swapped:
            swapped.append(True)
            remap(demo_copy, lambda v: v, lambda m: None)  # another process's swap
        return original(self, *args, **kw)

    monkeypatch.setattr(Collection, "index_file", swap_first)
    args = (["upsert", str(demo_copy), str(rows)] if command == "upsert"
            else ["index", str(rows), "-c", str(demo_copy)])
    assert main([*args, "--id", "id", "-q"]) == 0, capsys.readouterr().err
    assert swapped and "making the change on the new version" in capsys.readouterr().err
    with Collection.open(demo_copy) as col:
        assert [d.id for d in col.get(["n1", "n2"])] == ["n1", "n2"]
        assert len(col) == 249
