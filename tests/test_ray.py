"""``--ray`` in this process: encoder actors, Ray tasks reading corpora and mining's cell
joins on a real local Ray, against the single-process path. Every test here runs in one Ray
session that the module starts once (``ray_session`` keeps a process's connection), as a
notebook that called ``ray.init`` would; tests/test_ray_processes.py runs commands as processes
of their own (each starting its Ray), kills them, and joins a two-node cluster."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO

from neartext.cli import main

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from raying import (  # noqa: E402
    _by_id,
    _one_error_line,
    _rows,
    drop_logging_errors,
)
from serving import free_port  # noqa: E402

# One pytest-xdist worker runs this file and test_ray_processes.py (make test: --dist loadgroup):
# one local Ray at a time, each sized to the machine's cores.
pytestmark = pytest.mark.xdist_group("ray")



@pytest.fixture(autouse=True)
def _ray_logs_to_a_closed_capture_are_dropped(monkeypatch):
    drop_logging_errors(monkeypatch)


@pytest.fixture(scope="module", autouse=True)
def _one_ray_session():
    """One local Ray (2 CPUs) for the module: each command joins it rather than starting and
    stopping its own (seconds each), and leaves it running. Its session directory is in the
    suite's own (conftest: RAY_TMPDIR), not in /tmp/ray."""
    from neartext.engine.compute import ray_session

    with ray_session("local", cpus=2) as ray:
        assert (Path(os.environ["RAY_TMPDIR"]) / "ray" / "session_latest").exists()
        yield ray
    assert not ray.is_initialized()


def test_a_process_connected_to_ray_keeps_its_connection(_one_ray_session, tmp_path, capsys):
    """A process connected to Ray already (this module's session, as a notebook's ``ray.init``):
    ``local`` and ``auto`` use that connection and leave it open (``ray.init`` refused before:
    "called ray.init twice"); another cluster's address is one line, before anything runs."""
    import socket

    from neartext.engine.compute import ray_session

    ray = _one_ray_session
    for address in ("local", "auto"):
        with ray_session(address) as inner:
            assert inner is ray and ray.is_initialized()
        assert ray.is_initialized()
    with socket.create_server(("127.0.0.1", 0)) as other:  # a reachable address
        port = other.getsockname()[1]
        assert main(["embed", str(DEMO), "-o", str(tmp_path / "v.parquet"), "--id", "id",
                     "--ray", f"ray://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert "connected to a Ray cluster already" in err and _one_error_line(err), err
    assert ray.is_initialized() and not (tmp_path / "v.parquet").exists()


@pytest.mark.slow
def test_ray_embeds_the_same_vectors_as_one_process(single, tmp_path, capsys):
    out = tmp_path / "ray.parquet"
    assert main(["embed", str(DEMO), "-o", str(out), "--text", "text", "--id", "id",
                 "--ray", "--actors", "2", "--batch-size", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 247 and report["on"] == "Ray local, 2 actors"
    ids, hashes, vecs, meta = _by_id(out)
    ids1, hashes1, vecs1, meta1 = _by_id(single)
    assert ids == ids1 and hashes == hashes1 and meta == meta1
    assert vecs.shape == (247, 384) and float(np.abs(vecs - vecs1).max()) <= 1e-5
    lengths = pq.read_table(out).column("end").to_pylist()
    assert lengths == sorted(lengths, reverse=True)  # on Ray: longest first


def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, capsys):
    """A bad row (found by Ray's reading task, before any embedding), a missing model and an
    address nobody answers (both before Ray starts): one line each, no output file."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": "also fine"}\n{oops\n',
                   encoding="utf-8")
    t = time.monotonic()
    assert main(["embed", str(bad), "-o", str(tmp_path / "o.parquet"), "--ray"]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "line 3" in err and _one_error_line(err), err
    assert main(["embed", str(DEMO), "-o", str(tmp_path / "o.parquet"), "--text", "text",
                 "--model", str(tmp_path / "no-such-model"), "--ray"]) == 1
    err = capsys.readouterr().err
    assert "no-such-model" in err and len(err.strip().splitlines()) == 1, err
    port = free_port()
    assert main(["embed", str(DEMO), "-o", str(tmp_path / "o.parquet"), "--text", "text",
                 "--ray", f"ray://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert "no Ray cluster answers there" in err and len(err.strip().splitlines()) == 1, err
    assert time.monotonic() - t < 60  # no Ray was started, no retries waited out
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.slow
def test_index_with_ray_builds_the_same_collection_and_reruns_embed_nothing(tmp_path,
                                                                          demo_collection,
                                                                          capsys):
    out = tmp_path / "ray_col"
    assert main(["index", str(DEMO), "-c", str(out), "--text", "text", "--id", "id", "--ray",
                 "--actors", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 247 and report["texts_embedded"] == 247
    docs, vecs = _rows(out)
    docs1, vecs1 = _rows(demo_collection)
    assert docs == docs1 and float(np.abs(vecs - vecs1).max()) <= 1e-5
    assert main(["index", str(DEMO), "-c", str(out), "--text", "text", "--id", "id", "--ray",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["unchanged"] == 247 and again["texts_embedded"] == 0
    more = tmp_path / "more.csv"
    more.write_text("id,text\nn1,a brand new complaint about sync\nn2,another new one\n",
                    encoding="utf-8")
    assert main(["upsert", str(out), str(more), "--ray", "--actors", "1", "--json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["added"] == 2 and added["texts_embedded"] == 2
    assert main(["upsert", str(out), str(more), "--ray", "--actors", "0"]) == 1
    assert "--actors must be at least 1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> Path:
    """A collection of 4,000 stored vectors in 250 tight groups (many pairs above 0.9, few
    across groups): enough rows for the approximate path's 102 cells."""
    rng = np.random.default_rng(7)
    dim, groups, n = 384, 250, 4000
    centres = rng.normal(size=(groups, dim))
    rows = centres[rng.integers(0, groups, size=n)] + rng.normal(scale=0.012, size=(n, dim)) * \
        np.sqrt(dim) * rng.uniform(0.2, 1.0, size=(n, 1))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    corpus = tmp_path_factory.mktemp("mine") / "vectors.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"v{i}", "text": f"text number {i}",
                                          "vector": [round(float(x), 6) for x in r]}) + "\n"
                              for i, r in enumerate(rows)), encoding="utf-8")
    out = corpus.parent / "col"
    assert main(["index", str(corpus), "-c", str(out), "--vectors", "vector", "--vectors-from",
                 "all-MiniLM-L6-v2", "--id", "id", "-q"]) == 0
    return out


def _pairs(table) -> dict[tuple[str, str], float]:
    return {(a, b): s for a, b, s in zip(table.column("id1").to_pylist(),
                                         table.column("id2").to_pylist(),
                                         table.column("score").to_pylist())}


@pytest.mark.slow
def test_mine_and_dedup_on_ray_find_the_same_as_one_process(clustered, tmp_path, capsys):
    """The cell self-joins as Ray tasks: the same pairs (and scores) as the approximate path in
    one process with the same cells; written as Parquet shards; dedup's groups the same."""
    one = tmp_path / "one.parquet"
    assert main(["mine", str(clustered), "--threshold", "0.9", "--method", "approx", "-o",
                 str(one), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    shards = tmp_path / "pairs"
    assert main(["mine", str(clustered), "--threshold", "0.9", "--ray", "-o", f"{shards}/",
                 "--json"]) == 0
    on_ray = json.loads(capsys.readouterr().out)
    assert on_ray["method"] == "approx" and on_ray["details"]["on"] == "Ray"
    assert on_ray["details"]["nlist"] == single["details"]["nlist"] == 102
    files = sorted(p.name for p in shards.iterdir())
    assert files == ["part-00000.parquet"]
    a, b = _pairs(pq.read_table(one)), _pairs(pq.read_table(shards))
    assert len(a) > 5000 and a.keys() == b.keys()
    assert max(abs(a[k] - b[k]) for k in a) <= 1e-5
    assert main(["dedup", str(clustered), "--threshold", "0.9", "--json"]) == 0
    exact = json.loads(capsys.readouterr().out)
    assert main(["dedup", str(clustered), "--threshold", "0.9", "--ray", "--json"]) == 0
    ray_groups = json.loads(capsys.readouterr().out)
    key = lambda r: sorted(sorted(m["id"] for m in g["members"]) for g in r["groups"])  # noqa: E731
    assert key(exact) == key(ray_groups) and len(exact["groups"]) > 100
    # bad input stays one line; an existing directory of other files is not replaced
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["mine", str(clustered), "--ray", "-o", str(tmp_path / "mine")]) == 1
    err = capsys.readouterr().err
    assert "notes.txt" in err and len(err.strip().splitlines()) == 1
    assert main(["mine", str(clustered), "--ray", "--method", "exact"]) == 1
    err = capsys.readouterr().err
    assert "--method approx" in err and _one_error_line(err), err


@pytest.mark.slow
def test_index_a_directory_with_ray_into_milvus_lite_matches_one_process(tmp_path,
                                                                        demo_collection,
                                                                        capsys):
    """A corpus of several files (csv and jsonl, nested) indexed with ``--ray`` into a Milvus Lite
    target: the same documents and vectors as the single-process local build of one file; a rerun
    embeds nothing."""
    pytest.importorskip("pymilvus", reason="needs neartext[milvus]")
    import csv

    from neartext import Collection

    with DEMO.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    d = tmp_path / "corpus"
    (d / "later").mkdir(parents=True)
    with (d / "a.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:100])
    (d / "later" / "b.jsonl").write_text(
        "".join(json.dumps({k: (int(v) if v.isdigit() else v)
                            for k, v in r.items()}, ensure_ascii=False) + "\n"
                for r in rows[100:]), encoding="utf-8")
    target = f"milvus-lite:{tmp_path / 'm.db'}"
    assert main(["index", str(d), "-c", target, "--text", "text", "--id", "id", "--ray",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added"] == 247 and report["texts_embedded"] == 247
    with Collection.open(target) as col, Collection.open(demo_collection) as local:
        ids = sorted(local.store.document_hashes())
        assert sorted(col.store.document_hashes()) == ids
        assert [(d.text, d.metadata) for d in col.get(ids)] == \
            [(d.text, d.metadata) for d in local.get(ids)]
        mv, lv = col.store.doc_vectors(ids), local.store.doc_vectors(ids)
        assert max(float(np.abs(mv[i][0] - lv[i][0]).max()) for i in ids) <= 1e-5
    assert main(["index", str(d), "-c", target, "--text", "text", "--id", "id", "--ray",
                 "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["unchanged"] == 247 and again["texts_embedded"] == 0


@pytest.mark.slow
def test_a_model_the_workers_cannot_load_is_named_and_stdout_stays_clean(tmp_path, capfd):
    """The driver had the model; the workers do not (a path only on the driver's machine): the
    actors' failure comes back as one error naming the path, and Ray's retry tracebacks do not
    land on stdout, which carries a command's ``--json``."""
    from neartext.encoders import EncoderSettings
    from neartext.engine.compute import embed_on_ray, embed_stream, ray_session
    from neartext.errors import InputError

    only_on_driver = tmp_path / "model-on-the-driver-only"
    with ray_session("local", cpus=2):
        with pytest.raises(InputError) as e:
            embed_on_ray(["a text", "another"], EncoderSettings(model=str(only_on_driver)))
        message = str(e.value)
        assert "model-on-the-driver-only" in message and "\n" not in message
        # a node whose copy of the model differs from this process' (another fingerprint)
        with pytest.raises(InputError, match="an encoder actor loaded a different model"):
            list(embed_stream(["a text"], EncoderSettings(model="default"), actors=1,
                              fingerprint="0" * 64))
    out, err = capfd.readouterr()
    assert out == "", out[:2000]
    assert "Traceback" not in err, err[:2000]


@pytest.mark.slow
def test_a_directory_is_read_by_ray_tasks_with_the_same_rows_and_checks(single, tmp_path,
                                                                       capsys):
    """``embed DIR --ray``: files read by Ray tasks (a file each) give the rows and vectors of
    the one-file corpus; an id given in two files is one line naming both rows."""
    lines = DEMO.read_text(encoding="utf-8").splitlines(keepends=True)
    d = tmp_path / "parts"
    (d / "z").mkdir(parents=True)
    (d / "a.csv").write_text("".join(lines[:1] + lines[1:90]), encoding="utf-8")
    (d / "b.csv").write_text("".join(lines[:1] + lines[90:200]), encoding="utf-8")
    (d / "z" / "c.csv").write_text("".join(lines[:1] + lines[200:]), encoding="utf-8")
    out = tmp_path / "parts.parquet"
    assert main(["embed", str(d), "-o", str(out), "--text", "text", "--id", "id", "--ray",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 247
    ids, hashes, vecs, _ = _by_id(out)
    ids1, hashes1, vecs1, _ = _by_id(single)
    assert ids == ids1 and hashes == hashes1 and float(np.abs(vecs - vecs1).max()) <= 1e-5
    (d / "z" / "c.csv").write_text("".join(lines[:1] + lines[200:] + lines[5:6]),
                                   encoding="utf-8")
    dup = lines[5].split(",")[0]
    assert main(["embed", str(d), "-o", str(tmp_path / "dup.parquet"), "--text", "text",
                 "--id", "id", "--ray"]) == 1
    err = capsys.readouterr().err
    assert f"duplicate ids: '{dup}' (rows a.csv:6 and z/c.csv:50)" in err, err
    assert _one_error_line(err) and not (tmp_path / "dup.parquet").exists()


@pytest.mark.slow
def test_index_on_ray_reads_and_embeds_on_the_cluster_as_one_process_would(tmp_path,
                                                                           monkeypatch):
    """``index --ray``: Ray's tasks read the corpus (a directory, texts normalized there), the
    actors embed the new texts from the rows kept on the cluster (no text is sent from this
    process: ``embed_stream`` is not called), and the collection is the one a single process
    builds: ids, texts, metadata of every type, cleaning report, vectors. An update embeds only
    the changed and new texts."""
    import neartext.engine.compute as compute
    from neartext import Collection
    from neartext.data.cleaning import CleaningOptions
    from neartext.engine.compute import RayCompute, ray_session

    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    rows = [{"id": f"r{i}", "text": f"<p>Refund &amp; invoice   problem number {i}</p>",
             "stars": i % 5, "price": i / 4, "tags": ["a", str(i)], "note": None}
            for i in range(120)]
    rows[7]["text"] = rows[3]["text"]  # a duplicate text: kept (--keep-duplicates), once embedded
    rows[9]["text"] = "   "  # dropped as empty, in either path
    rows[11]["text"] = "&amp;lt;b&amp;gt;"  # normalized once, not twice
    (d / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:50]),
                               encoding="utf-8")
    (d / "sub" / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[50:]),
                                       encoding="utf-8")
    cleaning = CleaningOptions(strip_html=True, drop_duplicates=False)
    one, report1 = Collection.from_file(tmp_path / "one", d, ["text"], "id", cleaning=cleaning)

    def no_texts_from_here(*a, **k):
        raise AssertionError("texts were sent from the driver")

    monkeypatch.setattr(compute, "embed_stream", no_texts_from_here)
    with ray_session("local", cpus=2):
        ray_col, report = Collection.from_file(tmp_path / "ray", d, ["text"], "id",
                                               cleaning=cleaning, compute=RayCompute(actors=2))
        assert (report.dropped, report.dropped_example_rows) == \
            (report1.dropped, report1.dropped_example_rows) == ({"empty": 1}, {"empty": ["a.jsonl:10"]})
        assert report.added == report1.added == 119
        assert report.texts_embedded == report1.texts_embedded == 118
        ids = sorted(one.store.document_hashes())
        assert sorted(ray_col.store.document_hashes()) == ids
        assert [(x.text, x.metadata) for x in ray_col.get(ids)] == \
            [(x.text, x.metadata) for x in one.get(ids)]
        assert ray_col.get(["r11"])[0].text == "&lt;b&gt;"
        a, b = ray_col.store.doc_vectors(ids), one.store.doc_vectors(ids)
        assert max(float(np.abs(a[i][0] - b[i][0]).max()) for i in ids) <= 1e-5
        rows[60]["text"] = "a changed text about a late refund"
        rows.append({"id": "new", "text": "<b>a new</b> text", "stars": 1, "price": 0.5,
                     "tags": [], "note": "x"})
        (d / "sub" / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[50:]),
                                           encoding="utf-8")
        ray_col.compute = RayCompute(actors=2)
        again = ray_col.index_file(d, sync=True)
        assert (again.added, again.updated, again.texts_embedded) == (1, 1, 2)
        assert ray_col.get(["new"])[0].text == "a new text"
        ray_col.close()
    one.close()


@pytest.mark.slow
def test_a_build_on_ray_in_parts_is_the_build_of_the_whole_corpus(tmp_path, monkeypatch,
                                                                  capsys):
    """A directory built on Ray in parts (here a file per part, two parts): each part read, cleaned and
    written before the next is read, yet the collection is the one-process build of the whole
    corpus (a text repeated in a later part dropped as a duplicate, the cleaning report, the
    vectors); a rerun embeds nothing; an id given in two parts is one line naming both rows,
    and nothing is published."""
    import neartext.engine.ingest as ingest
    from neartext import Collection

    lines = DEMO.read_text(encoding="utf-8").splitlines(keepends=True)
    d = tmp_path / "parts"
    d.mkdir()
    for n, (a, b) in enumerate(((1, 124), (124, len(lines)))):
        (d / f"{n}.csv").write_text("".join(lines[:1] + lines[a:b]), encoding="utf-8")
    # a later part repeats a text of the first (a new id): dropped, as in one process
    first_text = lines[3].split(",", 1)[1]
    with (d / "1.csv").open("a", encoding="utf-8") as f:
        f.write(f"again-1,{first_text}")
    one = tmp_path / "one"
    assert main(["index", str(d), "-c", str(one), "--text", "text", "--id", "id", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    monkeypatch.setattr(ingest, "PART_BYTES", 1)  # a part per file
    seen_parts: list[int] = []
    upsert = ingest.upsert
    monkeypatch.setattr(ingest, "upsert", lambda col, kept, **k: (
        seen_parts.append(len(kept)), upsert(col, kept, **k))[1])
    out = tmp_path / "ray"
    assert main(["index", str(d), "-c", str(out), "--text", "text", "--id", "id", "--ray",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(seen_parts) == 2 and sum(seen_parts) == 247
    assert single["dropped"] == report["dropped"] == {"duplicate text": 1}
    for key in ("rows_read", "added", "texts_embedded", "dropped_example_rows"):
        assert report[key] == single[key], key
    docs, vecs = _rows(out)
    docs1, vecs1 = _rows(one)
    assert docs == docs1 and float(np.abs(vecs - vecs1).max()) <= 1e-5
    assert main(["index", str(d), "-c", str(out), "--text", "text", "--id", "id", "--ray",
                 "--json"]) == 0  # an existing collection: one part, one atomic write
    assert json.loads(capsys.readouterr().out)["texts_embedded"] == 0
    # an id of the first part given again in the last: one line naming both rows
    dup = lines[5].split(",")[0]
    with (d / "1.csv").open("a", encoding="utf-8") as f:
        f.write(f"{dup},a new text under an old id\n")
    seen_parts.clear()
    bad = tmp_path / "bad"
    assert main(["index", str(d), "-c", str(bad), "--text", "text", "--id", "id",
                 "--ray"]) == 1
    err = capsys.readouterr().err
    assert f"duplicate ids: '{dup}' (rows 0.csv:6 and 1.csv:" in err and _one_error_line(err)
    assert not bad.exists() and len(seen_parts) == 1  # found reading the last part
    # the parts written before are kept for a rerun: it embeds nothing they had
    (d / "1.csv").write_text("".join(lines[:1] + lines[124:]), encoding="utf-8")
    assert main(["index", str(d), "-c", str(bad), "--text", "text", "--id", "id", "--ray",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["texts_embedded"] == 247 - 123
    with Collection.open(out) as col:
        assert len(col) == 247
