"""A model's ONNX twin in the user's cache (neartext.encoders.twin): made by the CLI once a
model is loaded a second time on the machine, then used instead of the model for documents and
queries (no torch in the process), its vectors the model's within 1e-5; never used when made
from another model, damaged, or turned off for a kind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import DEMO

from neartext import Collection
from neartext.cli import main
from neartext.encoders import EncoderSettings, load_encoder
from neartext.encoders.deferred import DeferredEncoder
from neartext.encoders.onnx import OnnxEncoder
from neartext.encoders.twin import ONNX_META, load_twin, twins_dir
from neartext.export.query_encoder import prepare_model_twin

pytest.importorskip("onnxruntime", reason="needs neartext[onnx]")

# a command as a new process runs it, saying afterwards whether torch was imported
RUN = ("import sys\nfrom neartext.cli import main\ncode = main(sys.argv[1:])\n"
       "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(code)\n")
QUERIES = ["the app crashes when I open it", "I was charged twice", "Кошка спит на окне"]


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    """A user's cache of this test only (no twin, nothing recorded)."""
    monkeypatch.setenv("NEARTEXT_CACHE_DIR", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.slow
def test_a_model_loaded_again_gets_a_twin_and_later_builds_embed_without_torch(
        own_cache, tmp_path, encoder, capsys, monkeypatch):
    """The first build records the model; the second loads it again and leaves its twin (one
    line on stderr); a third build in a new process embeds without importing torch (before:
    every build imported torch and sentence-transformers, 6-8 s), and its vectors are the
    model's: searched with the model, both collections answer alike. With
    NEARTEXT_DOCUMENT_ENCODER=model the model embeds again."""
    assert main(["index", str(DEMO), "-c", str(tmp_path / "one"), "--text", "text",
                 "--id", "id"]) == 0
    assert "exported to ONNX" not in capsys.readouterr().err
    fp = encoder.fingerprint
    # an export a kill stopped earlier left its temporary directory: the export made now
    # removes it (its process is gone)
    stale = twins_dir() / f".{fp}.999999999-dead.partial"
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"half")
    assert main(["index", str(DEMO), "-c", str(tmp_path / "two"), "--text", "text",
                 "--id", "id"]) == 0
    assert "later runs start fast: the model was exported to ONNX" in capsys.readouterr().err
    assert [p.name for p in twins_dir().iterdir()] == [fp]
    err = _run("index", str(DEMO), "-c", str(tmp_path / "twin"), "--text", "text", "--id", "id")
    assert "torch imported: False" in err and "247 texts embedded" in err
    with Collection.open(tmp_path / "one", model=encoder) as a, \
            Collection.open(tmp_path / "twin", model=encoder) as b:
        for q in QUERIES:
            x, y = a.search(q, k=5), b.search(q, k=5)
            assert [r.id for r in x] == [r.id for r in y]
            assert np.allclose([r.score for r in x], [r.score for r in y], atol=1e-5)
    # (in this process, which imported torch already: a fourth process took ~9 s to say so)
    for setting in ("model", "auto"):
        monkeypatch.setenv("NEARTEXT_DOCUMENT_ENCODER", setting)
        enc = load_encoder(EncoderSettings(model="default"), deferred=True)
        assert isinstance(enc, DeferredEncoder)
        assert isinstance(enc.encoding("document"), OnnxEncoder) == (setting == "auto")


@pytest.mark.slow
def test_a_first_search_that_makes_the_twin_leaves_no_second_export(own_cache, tmp_path,
                                                                    monkeypatch, capsys):
    """`make demo`'s order on a new machine: an index (the model recorded), then a search that
    loads the model again: it leaves the model's twin and no query encoder beside the
    collection, which the twin serves (before: two exports of the model, 87 MB each)."""
    monkeypatch.setenv("NEARTEXT_QUERY_ENCODER", "auto")
    col = tmp_path / "demo"
    assert main(["index", str(DEMO), "-c", str(col), "--text", "text", "--id", "id", "-q"]) == 0
    assert main(["search", str(col), QUERIES[0], "-k", "3"]) == 0
    err = capsys.readouterr().err
    assert "later runs start fast" in err and "for queries" not in err, err
    assert not (col / "cache" / "query-encoder").exists()
    err = _run("search", str(col), QUERIES[0], "-k", "3")
    assert "torch imported: False" in err


def test_the_twins_vectors_are_the_models_for_both_kinds(encoder, monkeypatch):
    """The suite's twin (conftest) against the model: documents and queries, batched and one
    at a time, within 1e-5; prefixes applied as the model applies them."""
    monkeypatch.setenv("NEARTEXT_QUERY_ENCODER", "auto")  # (the default, whatever the caller set)
    enc = load_encoder(EncoderSettings(model="default"), deferred=True)
    assert isinstance(enc, DeferredEncoder)
    texts = [*QUERIES, " ".join(["sync is slow and notes appear twice"] * 60), "ok"]
    for kind in ("document", "query"):
        got = enc.encode(texts, kind=kind)
        assert np.abs(got - encoder.encode(texts, kind=kind)).max() < 1e-5
    assert not enc.loaded  # the model itself was never needed
    twin = enc.encoding("document")
    assert twin.settings.model == str(twins_dir() / encoder.fingerprint)
    assert enc.count_truncated(texts) == encoder.count_truncated(texts) == 1


def test_a_twin_of_another_model_or_a_damaged_one_is_passed_over(own_cache, tiny_model_dir,
                                                                 encoder):
    """A twin whose source is another model, even under this model's fingerprint, is not used;
    a damaged one neither: the model itself encodes (and its fingerprint is checked)."""
    tiny = load_encoder(str(tiny_model_dir))
    load_encoder(str(tiny_model_dir))  # again: as the CLI would, it gets a twin
    assert prepare_model_twin(tiny) is not None
    load_encoder(EncoderSettings(model="default"))  # the default model recorded here
    forged = twins_dir() / encoder.fingerprint
    shutil.copytree(twins_dir() / tiny.fingerprint, forged)
    settings = EncoderSettings(model="default")
    assert load_twin(encoder.fingerprint, settings, load_encoder) is None
    enc = load_encoder(settings, deferred=True)
    want = encoder.encode(QUERIES, kind="document")
    assert np.abs(enc.encode(QUERIES) - want).max() < 1e-6 and enc.loaded
    meta = json.loads((forged / ONNX_META).read_text())
    meta["source_fingerprint"] = encoder.fingerprint
    (forged / ONNX_META).write_text(json.dumps(meta))
    (forged / meta["file"]).write_bytes(b"not a model")
    assert load_twin(encoder.fingerprint, settings, load_encoder) is None
    enc = load_encoder(settings, deferred=True)
    assert np.abs(enc.encode(QUERIES) - want).max() < 1e-6 and enc.loaded


def test_a_model_whose_twin_differs_is_marked_and_not_tried_again(own_cache, tiny_model_dir,
                                                                  monkeypatch):
    """When the export's vectors are further from the model's than allowed, nothing is kept,
    the reason is said once, and no later run tries again."""
    from neartext.export import query_encoder as making

    monkeypatch.setattr(making, "MAX_DIFFERENCE", -1.0)
    tiny = load_encoder(str(tiny_model_dir))
    note = prepare_model_twin(tiny)
    assert note and "no ONNX twin was made" in note and "differ" in note
    assert prepare_model_twin(tiny) is None
    assert [p.name for p in twins_dir().iterdir()] == [f"{tiny.fingerprint}.failed"]


@pytest.mark.slow
def test_the_service_embeds_documents_without_torch_when_the_model_has_a_twin(demo_copy,
                                                                            encoder,
                                                                            monkeypatch):
    """`neartext serve` with the suite's twin: searches and the first document to encode
    run without loading torch (before: the first document loaded it, seconds and 400 MB), and
    the document is then found; its vector is the model's."""
    from serving import post as call
    from serving import serve_process, torch_mapped

    monkeypatch.setenv("NEARTEXT_QUERY_ENCODER", "auto")  # (the default, whatever the caller set)
    text = "Tags disappear from notes after the sync finishes."
    with serve_process(f"fb={demo_copy}") as (base, proc):
        added = call(base, "/collections/fb/documents", {"documents": [{"id": "new-1",
                                                                        "text": text}]})
        found = call(base, "/collections/fb/search", {"query": "my tags vanish after sync",
                                                      "k": 1})
        assert added["texts_embedded"] == 1 and not torch_mapped(proc.pid)
    assert found["results"][0][0]["id"] == "new-1"
    with Collection.open(demo_copy, model=encoder) as col:
        [hit] = col.search_vectors(encoder.encode([text], kind="document"), k=1)[0]
        assert hit.id == "new-1" and hit.score > 1 - 1e-5
