"""The ONNX query encoder a search leaves beside a collection: made once after a search that
loaded the model, used by the next processes (no torch), its query vectors and answers the
model's, and never used for another model's collection or when it cannot be read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from neartext import Collection
from neartext.engine import query_encoder as qe
from neartext.export import query_encoder as making
from neartext.export.query_encoder import prepare_query_encoder

pytest.importorskip("onnxruntime", reason="needs neartext[onnx]")

QUERIES = ["the app crashes when I open it", "I was charged twice", "Кошка спит на окне",
           "dark mode please", " ".join(["sync is slow and notes appear twice"] * 60), "ok"]
# a search as a new process runs it, saying afterwards whether torch was imported
SEARCH = ("import sys\nfrom neartext.cli import main\ncode = main(sys.argv[1:])\n"
          "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(code)\n")


@pytest.fixture(autouse=True)
def own_cache(monkeypatch, tmp_path):
    """A user's cache with no twin of the model (neartext.encoders.twin), which would encode
    queries before any export of these tests could."""
    monkeypatch.setenv("NEARTEXT_CACHE_DIR", str(tmp_path / "user-cache"))


@pytest.fixture
def auto(monkeypatch):
    """The default, whatever the caller set."""
    monkeypatch.setenv(qe.ENV, "auto")


def _search(col, *extra: str, env: dict[str, str] | None = None) -> tuple[list, str]:
    done = subprocess.run([sys.executable, "-c", SEARCH, "search", str(col), QUERIES[0], "-k", "5",
                           "--json", *extra], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, qe.ENV: "auto", **(env or {})})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout), done.stderr


@pytest.fixture(scope="module")
def first_search(demo_collection, tmp_path_factory) -> tuple[Path, list, str]:
    """The first CLI search of a copy of the demo collection, with a user's cache of its own:
    it loads the model (its description recorded in that cache), answers, and leaves the
    export. Made once for the tests that start from there (``searched``)."""
    base = tmp_path_factory.mktemp("first-search")
    col = shutil.copytree(demo_collection, base / "feedback")
    first, err = _search(col, env={"NEARTEXT_CACHE_DIR": str(base / "user-cache")})
    return base, first, err


@pytest.fixture
def searched(first_search, tmp_path) -> tuple[Path, list, str]:
    """A copy of the collection and the user's cache as the first search left them (the
    cache at the ``own_cache`` path), with that search's results and stderr."""
    base, first, err = first_search
    shutil.copytree(base / "user-cache", tmp_path / "user-cache")
    return shutil.copytree(base / "feedback", tmp_path / "feedback"), first, err


# the tests that start from the one first search run in turn on one worker (``first_search``)
@pytest.mark.slow
@pytest.mark.xdist_group("first-search")
def test_a_search_in_a_new_process_answers_alike_without_torch_once_one_loaded_the_model(
        searched, monkeypatch):
    """The first CLI search loads the model, answers, then leaves the export (one line on
    stderr); the next process answers the same (ids, scores) without importing torch.
    --quiet keeps the line off; with NEARTEXT_QUERY_ENCODER=model the model answers (in this
    process, which holds the model already: a third process importing torch took ~9 s)."""
    demo_copy, first, err = searched
    assert "torch imported: True" in err and "exported to ONNX for queries" in err
    [made] = [p for p in qe.cache_dir(demo_copy).iterdir()]
    assert made.name == Collection.open(demo_copy).manifest.model.fingerprint
    fast, err = _search(demo_copy, "-q")
    assert "torch imported: False" in err and "ONNX" not in err
    assert [r["id"] for r in fast] == [r["id"] for r in first]
    assert np.allclose([r["score"] for r in fast], [r["score"] for r in first], atol=1e-5)
    monkeypatch.setenv(qe.ENV, "model")
    with Collection.open(demo_copy) as col:
        assert qe.cached_query_encoder(col.path, col.manifest) is None
        slow = col.search(QUERIES[0], k=5)
    assert [r.id for r in slow] == [r["id"] for r in first]
    assert np.allclose([r.score for r in slow], [r["score"] for r in first], atol=1e-6)


@pytest.mark.slow
def test_the_exports_query_vectors_and_answers_are_the_models(demo_copy, encoder, auto):
    """Query vectors within 1e-5 of the model's (several languages, one past the model's
    length, one at a time and together) and the same answers in every mode."""
    with Collection.open(demo_copy, model=encoder) as col:
        assert prepare_query_encoder(col.encoder, col.path) is not None
        want = {m: col.search_many(QUERIES, k=5, mode=m) for m in ("semantic", "hybrid")}
    with Collection.open(demo_copy) as col:
        onnx = col.query_encoder
        assert onnx.settings.model == str(qe.export_dir(demo_copy, col.manifest.model.fingerprint))
        got = onnx.encode(QUERIES, kind="query")
        assert np.abs(got - encoder.encode(QUERIES, kind="query")).max() <= 1e-5
        one = np.concatenate([onnx.encode([q], kind="query") for q in QUERIES])
        assert np.abs(one - got).max() <= 1e-5
        for mode, rows in want.items():
            for a, b in zip(col.search_many(QUERIES, k=5, mode=mode), rows):
                assert [r.id for r in a] == [r.id for r in b]
                assert np.allclose([r.score for r in a], [r.score for r in b], atol=1e-5)
        assert col._encoder is None  # the model itself was never loaded


def test_the_export_keeps_the_models_prefixes(tiny_demo_copy, tiny_model_dir, auto):
    """A model whose queries take a prefix (an e5-style name): the export applies it too."""
    with Collection.open(tiny_demo_copy) as col:
        model = col.encoder
        assert model.settings.query_prefix == "query: "
        prepare_query_encoder(model, col.path)
    with Collection.open(tiny_demo_copy) as col:
        onnx = col.query_encoder
        assert onnx is not model and onnx.settings.query_prefix == "query: "
        assert np.abs(onnx.encode(QUERIES, kind="query") -
                      model.encode(QUERIES, kind="query")).max() <= 1e-5


@pytest.mark.slow
def test_an_export_of_another_model_or_an_unreadable_one_is_not_used(demo_copy, tiny_demo,
                                                                     tmp_path, encoder, auto):
    """An export made from another model, even under this model's name, is not used; a
    damaged one neither (the model answers); the next export replaces what it finds of other
    models and of killed preparations."""
    tiny_demo_copy = shutil.copytree(tiny_demo, tmp_path / "tiny")
    with Collection.open(tiny_demo_copy) as col:
        prepare_query_encoder(col.encoder, col.path)
        tiny_fp = col.manifest.model.fingerprint
    with Collection.open(demo_copy) as col:
        fp = col.manifest.model.fingerprint
    forged = qe.export_dir(demo_copy, fp)
    forged.parent.mkdir(parents=True)
    shutil.copytree(qe.export_dir(tiny_demo_copy, tiny_fp), forged)
    with Collection.open(demo_copy) as col:
        assert qe.cached_query_encoder(col.path, col.manifest) is None
        assert col.query_encoder.fingerprint == fp  # the model itself
    shutil.rmtree(forged)
    shutil.copytree(qe.export_dir(tiny_demo_copy, tiny_fp), qe.export_dir(demo_copy, tiny_fp))
    stale = qe.cache_dir(demo_copy) / f".{fp}.999999999-dead.partial"
    stale.mkdir()
    with Collection.open(demo_copy, model=encoder) as col:
        want = col.search("refund please", k=3)
        prepare_query_encoder(col.encoder, col.path)
    assert sorted(p.name for p in qe.cache_dir(demo_copy).iterdir()) == [fp]
    (forged / "model.onnx").write_bytes(b"not a model")
    with Collection.open(demo_copy) as col:
        got = col.search("refund please", k=3)
        assert col._encoder is not None  # the damaged export was passed over
    assert [(r.id, round(r.score, 5)) for r in got] == [(r.id, round(r.score, 5)) for r in want]


def test_a_model_whose_export_differs_is_marked_once_and_not_tried_again(demo_copy, encoder, auto,
                                                                        monkeypatch):
    """When the export's query vectors are further from the model's than allowed, nothing is
    kept, the reason is said once, and later searches do not try again."""
    monkeypatch.setattr(making, "MAX_DIFFERENCE", -1.0)
    with Collection.open(demo_copy, model=encoder) as col:
        note = prepare_query_encoder(col.encoder, col.path)
        assert note and "no fast query encoder was made" in note and "differ" in note
        assert prepare_query_encoder(col.encoder, col.path) is None
        fp = col.manifest.model.fingerprint
    assert [p.name for p in qe.cache_dir(demo_copy).iterdir()] == [f"{fp}.failed"]
    with Collection.open(demo_copy) as col:
        assert col.query_encoder is col.encoder


def test_two_searches_preparing_at_once_leave_one_export(tiny_demo_copy, auto):
    """Two preparations of the same model at once (two first searches): one export is kept,
    the other's temporary directory removed, and the export is used."""
    import threading

    with Collection.open(tiny_demo_copy) as col:
        model, state = col.encoder, col.path
        notes: list[str | None] = []
        threads = [threading.Thread(target=lambda: notes.append(
            prepare_query_encoder(model, state))) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(notes) == 2 and any(notes)
        fp = col.manifest.model.fingerprint
    assert [p.name for p in qe.cache_dir(tiny_demo_copy).iterdir()] == [fp]
    with Collection.open(tiny_demo_copy) as col:
        assert col.query_encoder.settings.model == str(qe.export_dir(tiny_demo_copy, fp))


def test_a_both_side_promotion_keeps_the_export(demo_copy, encoder, auto):
    """A new version of the same model swapped in (a both-side adapter's promotion) keeps the
    query encoder (hard links): no export again, and its answers are the model's."""
    from neartext.algo.adapters import Adapter
    from neartext.ops.versions import promote

    rng = np.random.default_rng(0)
    m = np.eye(384, dtype=np.float32) + 0.02 * rng.standard_normal((384, 384)).astype(np.float32)
    with Collection.open(demo_copy, model=encoder) as col:
        prepare_query_encoder(col.encoder, col.path)
        fp = col.manifest.model.fingerprint
        promote(col, Adapter("linear", "both", m, fp), {})
    with Collection.open(demo_copy, model=encoder) as col:
        assert col.manifest.version == 2
        want = col.search_many(QUERIES, k=5)
    with Collection.open(demo_copy) as col:
        assert col.query_encoder.settings.model == str(qe.export_dir(demo_copy, fp))
        for a, b in zip(col.search_many(QUERIES, k=5), want):
            assert [r.id for r in a] == [r.id for r in b]
            assert np.allclose([r.score for r in a], [r.score for r in b], atol=1e-5)


@pytest.mark.slow
@pytest.mark.xdist_group("first-search")
def test_the_service_starts_and_searches_without_torch_and_loads_the_model_at_its_first_document(
        searched, auto):
    """With the export a search left and the model's description recorded, `neartext serve`
    answers its first search without loading torch (before: the model loaded before the
    service was ready, ~4.4 s on this machine, against ~0.9 s now); the first document to
    encode loads it, once, and is then found."""
    from serving import post as call
    from serving import serve_process, torch_mapped

    demo_copy, first, _ = searched  # the model loaded (recorded), the export left

    # the served process inherits NEARTEXT_QUERY_ENCODER=auto (the ``auto`` fixture)
    with serve_process(f"fb={demo_copy}") as (base, proc):
        hits = call(base, "/collections/fb/search", {"query": QUERIES[0], "k": 5})
        assert not torch_mapped(proc.pid)
        assert [h["id"] for h in hits["results"][0]] == [r["id"] for r in first]
        assert np.allclose([h["score"] for h in hits["results"][0]],
                           [r["score"] for r in first], atol=1e-5)
        added = call(base, "/collections/fb/documents", {"documents": [
            {"id": "new-1", "text": "Tags disappear from notes after the sync finishes."}]})
        assert added["texts_embedded"] == 1 and torch_mapped(proc.pid)
        found = call(base, "/collections/fb/search", {"query": "my tags vanish after sync",
                                                      "k": 1})
        assert found["results"][0][0]["id"] == "new-1"


@pytest.mark.slow
@pytest.mark.xdist_group("first-search")
def test_the_bot_answers_without_torch_once_a_search_left_the_export(searched):
    """The bot's backend encoded queries with the model, loaded at start (6.7 s to a ready
    backend on this machine, against 2.7 s now)."""
    pytest.importorskip("aiogram", reason="the bot extra is not installed")
    demo_copy, first, _ = searched
    bot = ("import asyncio, sys\nfrom neartext.bot import LocalBackend\n"
           "b = LocalBackend(sys.argv[1])\n"
           "hits = asyncio.run(b.search(sys.argv[2], 5))\n"
           "print(' '.join(h.id for h in hits))\n"
           "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", bot, str(demo_copy), QUERIES[0]],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, qe.ENV: "auto"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch imported: False" in done.stderr
    assert done.stdout.split() == [r["id"] for r in first]
