"""Vectors in and out: rows that bring their own vectors, query vectors with filters, export."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO

from neartext import Collection, Record
from neartext.cli import main
from neartext.errors import InputError

TEXTS = {
    "a": ("My card was charged twice this month.", "billing"),
    "b": ("The app crashes when I open a photo.", "crash"),
    "c": ("Please add a dark mode for night reading.", "feature"),
    "d": ("I want a refund for the accidental upgrade.", "billing"),
    "e": ("Sync never finishes on my phone.", "sync"),
}


def write_jsonl(path: Path, encoder, *, vector=lambda i, v: v) -> Path:
    vecs = encoder.encode([t for t, _ in TEXTS.values()], kind="document")
    with path.open("w", encoding="utf-8") as f:
        for i, ((doc, (text, topic)), v) in enumerate(zip(TEXTS.items(), vecs)):
            row = {"id": doc, "text": text, "topic": topic, "emb": vector(i, v.tolist())}
            if row["emb"] is None:
                del row["emb"]
            f.write(json.dumps(row) + "\n")
    return path


def test_rows_with_vectors_are_stored_without_encoding_and_search_alike(tmp_path, encoder,
                                                                         capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", encoder)
    assert main(["index", str(corpus), "-c", str(tmp_path / "given"), "--id", "id",
                 "--vectors", "emb", "--vectors-from", "same", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["texts_embedded"] == 0 and report["vectors_given"] == 5 and report["added"] == 5
    plain = write_jsonl(tmp_path / "plain.jsonl", encoder, vector=lambda i, v: None)
    assert main(["index", str(plain), "-c", str(tmp_path / "encoded"), "--id", "id", "-q"]) == 0
    capsys.readouterr()
    with Collection.open(tmp_path / "given") as given, \
            Collection.open(tmp_path / "encoded") as encoded:
        for q in ("charged two times", "night theme"):
            a, b = given.search(q, k=3), encoded.search(q, k=3)
            assert [r.id for r in a] == [r.id for r in b]
            assert np.allclose([r.score for r in a], [r.score for r in b], atol=1e-5)
        # query vectors with a filter given as text
        qv = encoder.encode(["money back"], kind="query")
        hits = given.search_vectors(qv, k=5, where="topic=billing|topic=sync")
        assert {r.id for r in hits[0]} == {"a", "d", "e"}
        with pytest.raises(InputError, match="must have 384 numbers each"):
            given.search_vectors(np.ones((1, 3)), k=1)
        with pytest.raises(InputError, match="query vector 1: nan at position 2"):
            given.search_vectors(np.array([[0.1, np.nan] + [0.0] * 382]), k=1)


def test_vectors_from_takes_the_names_model_takes(tmp_path, encoder, capsys):
    """``--vectors-from`` resolves like ``--model``: ``default`` and ``minilm`` name the
    collection's all-MiniLM-L6-v2 (refused before); another model's alias is still refused."""
    corpus = write_jsonl(tmp_path / "c.jsonl", encoder)
    for n, name in enumerate(("default", "minilm")):
        assert main(["index", str(corpus), "-c", str(tmp_path / f"c{n}"), "--id", "id",
                     "--vectors", "emb", "--vectors-from", name, "--json"]) == 0, \
            capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["vectors_given"] == 5
    assert main(["index", str(corpus), "-c", str(tmp_path / "u"), "--id", "id", "--vectors",
                 "emb", "--vectors-from", "use"]) == 1
    assert "vectors from use-multilingual cannot go into a collection of all-MiniLM-L6-v2" in \
        capsys.readouterr().err


def test_a_new_vector_for_the_same_text_replaces_the_old_one(tmp_path, encoder):
    corpus = write_jsonl(tmp_path / "c.jsonl", encoder)
    col, _ = Collection.from_file(tmp_path / "col", corpus, id_column="id", vectors="emb",
                                  vectors_from="same", model=encoder)
    with col:
        same = col.index_file(corpus, vectors="emb", vectors_from="same")
        assert same.unchanged == 5 and same.updated == 0
        v = np.zeros(384, dtype=np.float32)
        v[0] = 1.0
        rep = col.upsert([Record("a", TEXTS["a"][0], {"topic": "billing"}, vector=v * 2)],
                         vectors_from=col.manifest.model.name)
        assert rep.updated == 1 and rep.texts_embedded == 0
        assert np.allclose(col.store.doc_vectors(["a"])["a"][0], v)  # stored at unit length


@pytest.mark.parametrize("vector,argv,message", [
    (lambda i, v: v, [], "say which model made them with --vectors-from"),
    (lambda i, v: v, ["--vectors-from", "use-multilingual"],
     "vectors from use-multilingual cannot go into a collection of all-MiniLM-L6-v2"),
    (lambda i, v: v[:3] if i == 2 else v, ["--vectors-from", "same"],
     "c.jsonl: row 3: the vector has 3 numbers; the collection's have 384"),
    (lambda i, v: [None] + v[1:] if i == 1 else v, ["--vectors-from", "same"],
     "c.jsonl: line 2: column 'emb': the vector has no value at position 1"),
    (lambda i, v: "abc" if i == 1 else v, ["--vectors-from", "same"],
     "c.jsonl: line 2: column 'emb': the vector is not a list of numbers"),
    # the vector column is not walked for bad text any more: a lone surrogate there is caught
    # as what it is, not a vector
    (lambda i, v: ["\ud800"] + v[1:] if i == 1 else v, ["--vectors-from", "same"],
     "c.jsonl: line 2: column 'emb': the vector is not a list of numbers"),
    (lambda i, v: [1e999] + v[1:] if i == 1 else v, ["--vectors-from", "same"],
     "c.jsonl: row 2: the vector holds inf at position 1"),
    (lambda i, v: None if i == 3 else v, ["--vectors-from", "same"],
     "c.jsonl: line 4: no vector in column 'emb'"),
    (lambda i, v: [0.0] * 384 if i == 0 else v, ["--vectors-from", "same"],
     "c.jsonl: row 1: the vector is all zeros"),
    (lambda i, v: v, ["--vectors-from", "same", "--chunk", "3"],
     "this collection is chunked: each chunk has its own vector"),
])
def test_bad_vectors_are_one_line_and_nothing_is_written(tmp_path, encoder, capsys, vector, argv,
                                                         message):
    corpus = write_jsonl(tmp_path / "c.jsonl", encoder, vector=vector)
    out = tmp_path / "col"
    assert main(["index", str(corpus), "-c", str(out), "--id", "id", "--vectors", "emb",
                 *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and not out.with_name("col.partial").exists()


def test_a_column_of_vectors_without_vectors_is_refused_with_the_option_to_pass(
        tmp_path, encoder, capsys):
    """Before, a Parquet `vector` column indexed without --vectors was embedded again and its
    384 numbers a row stored as JSON metadata (212 MB instead of 38 at 20k rows)."""
    pq = pytest.importorskip("pyarrow.parquet", reason="needs neartext[parquet]")
    import pyarrow as pa

    vecs = encoder.encode([t for t, _ in TEXTS.values()], kind="document")
    f = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": [t for t, _ in TEXTS.values()],
                             "vector": [v.tolist() for v in vecs],
                             "tags": [[1, 2, 3]] * len(TEXTS)}), f)
    out = tmp_path / "col"
    assert main(["index", str(f), "-c", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"neartext index: error: {f}: row 1: column 'vector' holds a list of 384 "
                   "numbers, which looks like vectors: pass --vectors vector --vectors-from "
                   "MODEL to store them as the rows' vectors, or drop the column (a metadata "
                   "field holds at most 32 numbers)"], err
    assert not out.exists() and not out.with_name("col.partial").exists()
    # with the option it is what it is; a short list of numbers stays metadata
    assert main(["index", str(f), "-c", str(out), "--vectors", "vector", "--vectors-from",
                 "same", "-q"]) == 0
    with Collection.open(out) as col:
        assert col.get([col.search("refund", k=1)[0].id])[0].metadata == {"tags": [1, 2, 3]}
        with pytest.raises(InputError, match="document 'x': metadata field 'emb' holds a list of "
                                             "384 numbers, which looks like a vector"):
            col.upsert([Record("x", "some text", {"emb": vecs[0].tolist()})])
        assert len(col) == 5


def test_vectors_in_a_csv_are_refused(tmp_path, capsys):
    (tmp_path / "c.csv").write_text("text,emb\nhello,\"[1, 2]\"\n")
    assert main(["index", str(tmp_path / "c.csv"), "-c", str(tmp_path / "x"), "--vectors",
                 "emb", "--vectors-from", "same"]) == 1
    assert "vectors come in a list column of a .jsonl or .parquet file" in capsys.readouterr().err


def test_export_vectors_round_trip_with_the_model_recorded(tmp_path, encoder, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    corpus = write_jsonl(tmp_path / "c.jsonl", encoder, vector=lambda i, v: None)
    assert main(["index", str(corpus), "-c", str(tmp_path / "col"), "--id", "id", "-q"]) == 0
    capsys.readouterr()
    out = tmp_path / "v.parquet"
    assert main(["export", "vectors", str(tmp_path / "col"), "-o", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    table = pq.read_table(out)
    assert res["vectors"] == table.num_rows == 5
    assert table.column_names == ["id", "start", "end", "hash", "vector"]
    meta = table.schema.metadata
    assert meta[b"neartext.model_fingerprint"].decode() == res["fingerprint"]
    with Collection.open(tmp_path / "col") as col:
        stored = col.store.doc_vectors(["b"])["b"][0]
    row = next(r for r in table.to_pylist() if r["id"] == "b")
    assert np.allclose(row["vector"], stored)
    # a corpus file that carries the exporting model's fingerprint needs no --vectors-from ...
    texts = {d: t for d, (t, _) in TEXTS.items()}
    joined = pa.table({"id": table["id"], "text": [texts[i] for i in table["id"].to_pylist()],
                       "emb": table["vector"]}).replace_schema_metadata(meta)
    pq.write_table(joined, tmp_path / "j.parquet")
    assert main(["index", str(tmp_path / "j.parquet"), "-c", str(tmp_path / "again"), "--id",
                 "id", "--vectors", "emb", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["texts_embedded"] == 0
    # naming the model that the file records is fine too, by any name --model takes (an
    # alias was refused: "vectors from default cannot go into a collection of all-MiniLM-L6-v2");
    # naming another is a contradiction
    assert main(["index", str(tmp_path / "j.parquet"), "-c", str(tmp_path / "named"), "--id",
                 "id", "--vectors", "emb", "--vectors-from", "all-MiniLM-L6-v2", "-q"]) == 0
    assert main(["index", str(tmp_path / "j.parquet"), "-c", str(tmp_path / "alias"), "--id",
                 "id", "--vectors", "emb", "--vectors-from", "default", "-q"]) == 0
    assert main(["index", str(tmp_path / "j.parquet"), "-c", str(tmp_path / "contra"), "--id",
                 "id", "--vectors", "emb", "--vectors-from", "use-multilingual"]) == 1
    assert "made by all-MiniLM-L6-v2 (fingerprint" in capsys.readouterr().err
    assert Record("a", "t", vector=np.ones(2)) == Record("a", "t", vector=np.zeros(2))
    # ... and one recording another model is refused, whatever the caller says
    other = {**meta, b"neartext.model_fingerprint": b"0123456789abcdef"}
    pq.write_table(joined.replace_schema_metadata(other), tmp_path / "o.parquet")
    assert main(["index", str(tmp_path / "o.parquet"), "-c", str(tmp_path / "other"), "--id",
                 "id", "--vectors", "emb", "--vectors-from", "same"]) == 1
    assert "vectors from 0123456789abcdef cannot go into a collection" in capsys.readouterr().err


@pytest.mark.parametrize("precision", ["float16", "int8"])
def test_vectors_stored_at_lower_precision_search_alike_in_less_space(tmp_path, encoder,
                                                                      precision, demo_copy):
    """float16/int8 storage: the same best documents as float32 (the session's demo
    collection, built from the same file at float32), scores within the codec's error, a
    smaller database; the setting lives in the manifest, survives reopen and migrate, and is
    a creation-only option."""
    from conftest import DEMO

    from neartext.ops.migrate import migrate

    full = Collection.open(demo_copy, model=encoder)
    assert full.manifest.precision == "float32"
    small, _ = Collection.from_file(tmp_path / precision, DEMO, ["text"], "id", model=encoder,
                                    precision=precision)
    assert small.manifest.precision == precision
    queries = ["app crashes on startup", "refund please", "dark mode", "password reset email",
               "slow sync between devices", "billing charged twice"]
    tol = 2e-3 if precision == "float16" else 2e-2
    kept = []
    for q in queries:
        a, b = full.search(q, k=5), small.search(q, k=5)
        assert a[0].id == b[0].id
        assert abs(a[0].score - b[0].score) < tol
        kept.append([(r.id, r.score) for r in b])
    small.close()
    ratio = (tmp_path / precision / "data.sqlite").stat().st_size / \
        (demo_copy / "data.sqlite").stat().st_size
    assert ratio < (0.75 if precision == "float16" else 0.6), ratio
    again = Collection.open(tmp_path / precision, model=encoder)  # decoded the same way
    assert [[(r.id, r.score) for r in again.search(q, k=5)] for q in queries] == kept
    again.close()
    report = migrate(demo_copy, tmp_path / "copy", precision=precision)
    assert report.documents == len(full)
    with Collection.open(tmp_path / "copy", model=encoder) as copy:
        assert copy.manifest.precision == precision
        assert copy.search(queries[1], k=1)[0].id == full.search(queries[1], k=1)[0].id
    full.close()
    with pytest.raises(InputError, match="unknown vector precision 'int4'"):
        Collection.create(tmp_path / "bad", model=encoder, precision="int4")
    assert not (tmp_path / "bad").exists()
    assert main(["index", str(DEMO), "-c", str(tmp_path / precision), "--id", "id",
                 "--precision", "float32", "-q"]) == 1  # the collection exists: creation-only


@pytest.mark.slow
def test_a_build_whose_rows_bring_their_vectors_never_loads_the_model(tmp_path, encoder):
    """Once the model was loaded with these settings (its description recorded), a build of
    rows with their own vectors creates the collection without importing torch (before: 20 s
    of a 20k build went to importing and loading sentence-transformers, for nothing)."""
    import os
    import subprocess
    import sys

    corpus = write_jsonl(tmp_path / "c.jsonl", encoder)
    env = {**os.environ, "NEARTEXT_CACHE_DIR": str(tmp_path / "cache")}
    build = ("import sys; from neartext.cli import main; code = main(sys.argv[1:]); "
             "print('torch' in sys.modules, file=sys.stderr); sys.exit(code)")

    def run(target: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", build, "index", str(corpus), "-c",
                               str(tmp_path / target), "--id", "id", "--vectors", "emb",
                               "--vectors-from", "same", "-q"], env=env, capture_output=True,
                              text=True, timeout=300)

    first = run("first")  # nothing recorded yet: the model loads (and is recorded)
    assert first.returncode == 0 and first.stderr.strip().endswith("True"), first.stderr
    again = run("again")
    assert again.returncode == 0 and again.stderr.strip().endswith("False"), again.stderr
    with Collection.open(tmp_path / "first") as a, Collection.open(tmp_path / "again") as b:
        assert a.manifest.model.fingerprint == b.manifest.model.fingerprint
        assert a.manifest.to_dict()["model"] == b.manifest.to_dict()["model"]
        assert [r.id for r in b.search("charged two times", k=2)] == [
            r.id for r in a.search("charged two times", k=2)]


def test_a_deferred_encoder_loads_at_its_first_text_and_checks_it_is_the_recorded_model(
        tmp_path, monkeypatch):
    import json

    from neartext.encoders import EncoderSettings, load_encoder, resolve_model_path
    from neartext.encoders.deferred import DeferredEncoder, _record_path, cache_dir
    from neartext.errors import ModelMismatch

    monkeypatch.setenv("NEARTEXT_CACHE_DIR", str(tmp_path))
    loaded = load_encoder("default")  # records
    deferred = load_encoder("default", deferred=True)
    assert isinstance(deferred, DeferredEncoder) and not deferred.loaded
    assert (deferred.fingerprint, deferred.dim, deferred.max_tokens) == (
        loaded.fingerprint, loaded.dim, loaded.max_tokens) and not deferred.loaded
    assert deferred.encode([]).shape == (0, 384) and not deferred.loaded
    assert np.allclose(deferred.encode(["hello"]), loaded.encode(["hello"]), atol=1e-6)
    assert deferred.loaded
    # recorded as given and as collections record its settings (resolved)
    assert len(list((cache_dir() / "encoders").glob("*.json"))) == 2
    record = _record_path("sbert", EncoderSettings(model="default"), resolve_model_path("default"))
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "fingerprint": "0" * 24}))
    stale = load_encoder("default", deferred=True)
    with pytest.raises(ModelMismatch, match="now gives other vectors .* the record is removed"):
        stale.encode(["hello"])
    assert not record.exists()
    load_encoder("default")
    record.write_text("{not json")
    assert not isinstance(load_encoder("default", deferred=True), DeferredEncoder)
    assert isinstance(load_encoder("default", deferred=True), DeferredEncoder)  # recorded again


def test_a_model_files_digest_is_kept_per_state_of_the_file_and_a_rewrite_is_hashed_again(
        tmp_path, monkeypatch):
    """A cold start does not re-read a model's weights to know them: each file's digest is
    kept in the user's cache, keyed by the file's state. A file rewritten in place (same size,
    same inode, its modification time set back) gets its new digest; a file changed a moment
    ago is not recorded (its next change could land in the same clock tick)."""
    import hashlib
    import os

    from neartext.encoders import base

    monkeypatch.setenv("NEARTEXT_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"a" * 1000)
    (model / "config.json").write_text("{}")
    base.weights_digest(model)
    assert not (tmp_path / "cache" / "digests").exists()  # just written: not recorded
    monkeypatch.setattr(base, "SETTLED_S", 0.0)
    base._digest_cache.clear()  # as a later process, once the files have settled
    first = base.weights_digest(model)
    assert base.file_digest(weights) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert len(list((tmp_path / "cache" / "digests").iterdir())) == 2

    def read(f: Path) -> str:
        raise AssertionError(f"{f} was read again")

    base._digest_cache.clear()  # as a new process
    with monkeypatch.context() as m:
        m.setattr(base, "_hash_file", read)
        assert base.weights_digest(model) == first
    time.sleep(0.05)  # past the clock tick of the first write
    before = weights.stat()
    with weights.open("r+b") as f:
        f.write(b"b" * 1000)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = weights.stat()
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (
        before.st_size, before.st_ino, before.st_mtime_ns)
    assert base.file_digest(weights) == hashlib.sha256(b"b" * 1000).hexdigest()
    assert base.weights_digest(model) != first


def _demo_parquet(path: Path, encoder, *, bad_row: int | None = None,
                  same_id: tuple[int, int] | None = None) -> Path:
    """The demo corpus with its vectors as a Parquet file of small row groups."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from neartext.data.corpus import read_corpus

    records = read_corpus(DEMO, ["text"], "id")
    vecs = encoder.encode([r.text for r in records], kind="document").tolist()
    ids = [r.id for r in records]
    if bad_row is not None:
        vecs[bad_row - 1][3] = float("nan")
    if same_id is not None:
        ids[same_id[1] - 1] = ids[same_id[0] - 1]
    pq.write_table(pa.table({"id": ids, "text": [r.text for r in records], "vector": vecs}),
                   path, row_group_size=64)
    return path


def test_a_build_reads_a_large_file_in_parts_and_builds_its_index_once(tmp_path, encoder,
                                                                        monkeypatch):
    """A build of a new collection reads its corpus a part at a time (here 100 rows; 50,000
    by default), writes each part, and builds the vector index once at the end, tuned for all
    of it: the same collection as a build of the file in one part."""
    from neartext.engine import ingest
    from neartext.store.local import index_cache

    corpus = _demo_parquet(tmp_path / "demo.parquet", encoder)
    kw = {"vectors": "vector", "vectors_from": "same", "index": "hnsw", "model": encoder}
    whole, whole_report = Collection.from_file(tmp_path / "whole", corpus, ["text"], "id", **kw)
    monkeypatch.setattr(ingest, "BATCH_ROWS", 100)
    parts: list[int] = []
    events: list[str] = []
    real_upsert = ingest.upsert
    monkeypatch.setattr(ingest, "upsert", lambda col, records, **k: parts.append(len(records))
                        or events.append("part") or real_upsert(col, records, **k))
    real_release = ingest.release_freed_memory
    monkeypatch.setattr(ingest, "release_freed_memory",
                        lambda: events.append("release") or real_release())
    saves: list[int] = []
    real_save = index_cache.save_index

    def save(*a, **k):
        saves.append(a[0].ntotal)
        events.append("index")
        if a[0].ntotal:
            time.sleep(0.5)  # the index, built and saved at the end, counts in the report's time
        return real_save(*a, **k)

    monkeypatch.setattr(index_cache, "save_index", save)
    streamed, report = Collection.from_file(tmp_path / "streamed", corpus, ["text"], "id", **kw)
    with whole, streamed:
        assert len(parts) == 3 and sum(parts) == len(whole) == len(streamed)
        assert [n for n in saves if n] == [len(whole)]  # one index of everything, saved once
        # what reading the parts freed is given back before the index is built (100,000 given
        # vectors: a peak of 995 MB before, 776 MB after)
        assert events[-2:] == ["release", "index"] and events.count("release") == 1, events
        assert (report.added, report.dropped) == (whole_report.added, whole_report.dropped)
        assert report.seconds >= 0.5
        info = streamed.store.index_info()
        assert info["kind"] == "hnsw" and info["vectors"] == len(whole)
        for q in ("the app crashes when I open it", "refund for a double charge", "dark mode"):
            assert [r.id for r in streamed.search(q, k=5)] == [r.id for r in whole.search(q, k=5)]


@pytest.mark.parametrize("bad", ["nan", "id"])
def test_bad_input_in_a_later_part_publishes_nothing(tmp_path, encoder, monkeypatch, bad):
    from neartext.engine import ingest

    monkeypatch.setattr(ingest, "BATCH_ROWS", 100)
    corpus = _demo_parquet(tmp_path / "demo.parquet", encoder,
                           **({"bad_row": 230} if bad == "nan" else {"same_id": (5, 230)}))
    target = tmp_path / "col"
    with pytest.raises(InputError) as e:
        Collection.from_file(target, corpus, ["text"], "id", vectors="vector",
                             vectors_from="same", model=encoder)
    assert str(e.value).startswith(f"{corpus}: ")
    assert ("row 230: the vector holds nan" if bad == "nan" else "rows 5 and 230") in str(e.value)
    assert not target.exists()  # (what the parts wrote stays in col.partial for a rerun)
    fixed = _demo_parquet(tmp_path / "fixed.parquet", encoder)
    col, report = Collection.from_file(target, fixed, ["text"], "id", vectors="vector",
                                       vectors_from="same", model=encoder)
    with col:
        assert len(col) == report.added + report.unchanged == 247
        assert not (tmp_path / "col.partial").exists()
