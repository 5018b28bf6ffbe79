"""A full disk and a read-only file system: commands report exactly what they did.

Real file systems: a small tmpfs mounted for each test (root is needed to mount; without it the
tests skip and say so), filled with a filler file to the point under test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from neartext import Collection
from neartext.cli import main

SIZE_MB = 12


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free."""
    filler = disk / "filler"
    filler.unlink(missing_ok=True)  # (its space counts as free)
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with filler.open("wb") as f:
        f.truncate(0)
        f.write(b"\0" * max(0, free - leave))
    return filler


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neartext", *map(str, args), "-q"],
                          capture_output=True, text=True, timeout=600)


def test_disk_full_after_a_delete_commits_is_a_warning_and_the_delete_stands(small_disk,
                                                                              encoder):
    # an HNSW index file holds its graph (flat and IVF files hold ids only, smaller than a
    # database page): over passages of two words (1,200+), large enough to fail alone
    from conftest import DEMO

    col = small_disk / "feedback"
    Collection.from_file(col, DEMO, ["text"], "id", model=encoder, index="hnsw", chunk=2,
                         overlap=0)[0].close()
    index_size = (col / "index.bin").stat().st_size
    assert index_size > 180_000
    # room for the delete's pages in the database's log (107 KB here), not for the index file
    fill(small_disk, index_size * 3 // 4)
    res = cli("delete", col, "fb-0001")
    assert res.returncode == 0, res.stderr
    assert "1 removed" in res.stdout
    warn = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(warn) == 1 and "warning" in warn[0] and "index" in warn[0], res.stderr
    assert not [f for f in col.iterdir() if ".tmp" in f.name]  # no half-written file left
    (small_disk / "filler").unlink()
    with Collection.open(col) as c:  # the stale index file is caught up on open
        assert len(c) == 246 and c.get(["fb-0001"]) == []
        assert "fb-0001" not in [r.id for r in c.search("fb-0001 text", k=246)]
        info = c.info().index
        assert info["vectors"] == info["passages"] and info["file"]["current"], str(info)


@pytest.mark.slow
def test_disk_full_during_an_upsert_changes_nothing(small_disk, demo_collection, tmp_path):
    col = small_disk / "feedback"
    shutil.copytree(demo_collection, col)
    more = tmp_path / "more.csv"
    more.write_text("id,text\n" + "".join(f"n{i},a new text about topic number {i} and more\n"
                                          for i in range(400)), encoding="utf-8")
    for leave in (0, 96 * 1024):  # nothing free (cannot even open), a little (the write fails)
        fill(small_disk, leave)
        res = cli("upsert", col, more, "--id", "id")
        assert res.returncode == 1
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "disk is full" in lines[0] and \
            "nothing was changed" in lines[0], res.stderr
        (small_disk / "filler").unlink()
    with Collection.open(col) as c:
        assert len(c) == 247 and c.get(["n0"]) == []
        assert len(c.search("sync crash", k=3)) == 3


@pytest.mark.slow
def test_a_full_disk_after_some_texts_were_embedded_says_they_are_kept_for_the_rerun(
        small_disk, demo_collection, tmp_path):
    """An upsert whose disk fills once some batches of its texts are embedded and staged:
    the collection's documents are as they were, and the one line says that those texts'
    vectors are kept (they take their space) and that the same command, run again once space is
    freed, embeds only the rest; it does."""
    import json
    import re

    col = small_disk / "feedback"
    shutil.copytree(demo_collection, col)
    more = tmp_path / "more.csv"
    more.write_text("id,text\n" + "".join(
        f"n{i},a new text about topic number {i} and the many other things it says {i % 7}\n"
        for i in range(1200)), encoding="utf-8")
    fill(small_disk, 1200 * 1024)  # room for a few batches' vectors, not for the documents
    res = cli("upsert", col, more, "--id", "id")
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "disk is full" in lines[0] and "nothing was changed" in lines[0]
    kept = re.search(r"the vectors of ([\d,]+) texts embedded before it are kept: run it "
                     r"again once space is freed, and only the rest are embedded", lines[0])
    assert kept, lines[0]
    staged = int(kept.group(1).replace(",", ""))
    assert 0 < staged < 1200
    with Collection.open(col) as c:
        assert len(c) == 247 and c.get(["n0"]) == []
    (small_disk / "filler").unlink()
    res = subprocess.run([sys.executable, "-m", "neartext", "upsert", str(col), str(more),
                          "--id", "id", "--json"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["added"] == 1200 and report["texts_embedded"] == 1200 - staged


@pytest.mark.parametrize("keeps", [True, False])
def test_what_a_failed_write_kept_is_said_only_where_the_store_keeps_it(demo_collection,
                                                                        tmp_path, monkeypatch,
                                                                        keeps):
    """The line names the texts whose vectors stay for the rerun only where the store keeps
    staged vectors (a Milvus collection reindexed to another dimension does not)."""
    from neartext import Record
    from neartext.errors import StorageError
    from neartext.store.local import LocalStore

    col = tmp_path / "feedback"
    shutil.copytree(demo_collection, col)

    def full(self, *a, **k):
        raise StorageError(f"{self.path}: the disk is full; nothing was changed", kind="full")

    monkeypatch.setattr(LocalStore, "write", full)
    monkeypatch.setattr(LocalStore, "keeps_staged", property(lambda self: keeps))
    with Collection.open(col) as c, pytest.raises(StorageError) as caught:
        c.upsert([Record(f"n{i}", f"a new text number {i}", {}) for i in range(5)])
    said = str(caught.value)
    assert said.startswith(f"{col}: the disk is full; nothing was changed")
    assert ("the vectors of 5 texts embedded before it are kept" in said) == keeps, said
    assert caught.value.kind == "full"


@pytest.mark.slow
def test_disk_full_during_index_leaves_nothing_at_the_target(small_disk, tmp_path):
    from conftest import DEMO

    fill(small_disk, 64 * 1024)
    res = cli("index", DEMO, "-c", small_disk / "new", "--id", "id")
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "disk is full" in lines[0] and "Traceback" not in res.stderr, \
        res.stderr
    assert not (small_disk / "new").exists()


@pytest.mark.slow
def test_read_only_file_system_searches_work_and_writes_are_refused(small_disk, demo_collection,
                                                                    tmp_path):
    col = small_disk / "feedback"
    shutil.copytree(demo_collection, col)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    res = cli("search", col, "refund for a double charge", "-k", "2")
    assert res.returncode == 0 and "fb-" in res.stdout, res.stderr
    more = tmp_path / "more.csv"
    more.write_text("id,text\nn1,a new text\n", encoding="utf-8")
    for args in (("upsert", col, more, "--id", "id"), ("delete", col, "fb-0001")):
        res = cli(*args)
        assert res.returncode == 1
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "read-only" in lines[0] and "nothing was changed" in lines[0]


def test_http_writes_to_a_read_only_collection_are_503_with_the_reason(small_disk,
                                                                       demo_collection):
    from serving import running

    from neartext.serve import ServeSettings

    col = small_disk / "feedback"
    shutil.copytree(demo_collection, col)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with running(ServeSettings.from_args([str(col)])) as client:
        status, body = client.call("POST", "/collections/feedback/documents",
                                   {"documents": [{"id": "n1", "text": "a new text"}]})
        assert status == 503 and "read-only" in body["detail"], body
        status, body = client.call("DELETE", "/collections/feedback/documents/fb-0001")
        assert status == 503 and "read-only" in body["detail"], body
        status, body = client.call("POST", "/collections/feedback/search", {"query": "refund"})
        assert status == 200


def test_http_writes_on_a_full_disk_are_507_and_the_service_carries_on(small_disk,
                                                                       demo_collection):
    from serving import running

    from neartext.serve import ServeSettings

    col = small_disk / "feedback"
    shutil.copytree(demo_collection, col)
    with running(ServeSettings.from_args([str(col)])) as client:
        fill(small_disk, 0)
        docs = [{"id": f"n{i}", "text": f"a new text about topic {i} " * 20} for i in range(50)]
        status, body = client.call("POST", "/collections/feedback/documents", {"documents": docs})
        assert status == 507 and "disk is full" in body["detail"], (status, body)
        status, body = client.call("POST", "/collections/feedback/search", {"query": "refund"})
        assert status == 200
        (small_disk / "filler").unlink()
        status, body = client.call("POST", "/collections/feedback/documents", {"documents": docs})
        assert status == 200 and body["added"] == 50 and body["documents"] == 297


@pytest.mark.slow
def test_an_http_upsert_stopped_by_a_full_disk_says_what_it_kept(small_disk, demo_collection):
    """The service's 507 carries what the failed write kept: the vectors of the texts embedded
    before the disk filled, which the same request, once space is freed, does not embed
    again."""
    import re

    from serving import running

    from neartext.serve import ServeSettings

    col = small_disk / "feedback"
    shutil.copytree(demo_collection, col)
    # a request's most texts (256: one batch embedded, staged, then written), long enough
    # that the write needs more room than the staged vectors
    docs = [{"id": f"m{i}", "text": f"a new text about topic number {i}, and more. " * 12}
            for i in range(256)]
    with running(ServeSettings.from_args([str(col)])) as client:
        fill(small_disk, 900 * 1024)
        status, body = client.call("POST", "/collections/feedback/documents", {"documents": docs})
        assert status == 507 and "disk is full" in body["detail"], (status, body)
        kept = re.search(r"the vectors of ([\d,]+) texts embedded before it are kept",
                         body["detail"])
        assert kept, body["detail"]
        staged = int(kept.group(1).replace(",", ""))
        assert staged == 256
        (small_disk / "filler").unlink()
        status, body = client.call("POST", "/collections/feedback/documents", {"documents": docs})
        assert status == 200 and body["added"] == 256, body
        assert body["texts_embedded"] == 0, body


@pytest.mark.slow
@pytest.mark.parametrize("leave_kb", [100, 400])
def test_disk_full_during_a_promotion_changes_nothing(small_disk, demo_collection, tmp_path,
                                                      leave_kb):
    """``tune --force`` on a full disk: with 100 KB free the keyword index tune builds does
    not fit, with 400 KB the adapter file (590 KB) does not: one line, the manifest, the
    versions and the searches as they were, no file left behind."""
    import csv

    col = small_disk / "feedback"
    shutil.copytree(demo_collection, col)
    with Collection.open(col) as c:
        docs = c.store.get(list(c.store.document_hashes()))
        before = [(r.id, r.score) for r in c.search("refund my money", k=5)]
    with (tmp_path / "pairs.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "passage"])
        w.writerows((" ".join(d.text.split()[:3]), d.text) for d in docs)
    manifest = (col / "manifest.json").read_text()
    fill(small_disk, leave_kb * 1024)
    res = cli("tune", col, "--pairs", tmp_path / "pairs.csv", "--force")
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    why = "the disk is full" if leave_kb == 100 else "adapter could not be written (No space"
    assert len(lines) == 1 and why in lines[0] and "nothing was changed" in lines[0], res.stderr
    (small_disk / "filler").unlink()
    assert (col / "manifest.json").read_text() == manifest
    assert not [p for p in (col / "adapters").iterdir()] if (col / "adapters").exists() else True
    with Collection.open(col) as c:
        assert c.manifest.version == 1 and c.adapter is None
        assert [(r.id, r.score) for r in c.search("refund my money", k=5)] == before


@pytest.mark.parametrize("output", ["pairs.csv", "pairs.parquet", "shards/"])
def test_disk_full_while_writing_results_is_one_line_and_leaves_nothing(small_disk,
                                                                       demo_collection, output):
    """A result table (or a directory of Parquet shards) that does not fit: one line naming the
    path and the cause, exit 1, nothing at the path and no temporary file left (it was a
    traceback before)."""
    fill(small_disk, 4 * 1024)
    res = cli("mine", demo_collection, "--threshold", "0.3", "-o", f"{small_disk}/{output}")
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr[-2000:]
    assert "could not be written (No space left on device)" in lines[0]
    assert "nothing was written there" in lines[0]
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def _adapter_pairs(col: Collection, path: Path) -> Path:
    """A pairs file of 80 of ``col``'s documents from templated queries: a both-side adapter
    learns from them, so ``tune --side both`` maps every stored vector (pairs of all 247
    documents' opening words took a tune ~8 s in the test's process)."""
    import csv

    from conftest import TEMPLATE

    rows = [(TEMPLATE + " ".join(d.text.split()[:3]), d.text)
            for d in col.store.get(sorted(col.store.document_hashes())[:80])]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("query", "passage"), *rows])
    return path


@pytest.mark.slow
def test_a_full_disk_while_a_milvus_lite_collection_maps_its_vectors_changes_nothing(
        small_disk, encoder, tmp_path):
    """``tune --side both`` on a Milvus Lite collection whose disk fills while the mapped copy
    is built: exit 1, one line naming the collection and saying nothing changed (and that the
    unfinished copy goes with the next run); the collection answers as before; with room
    again, the same command promotes and the copy left is gone."""
    pytest.importorskip("pymilvus", reason="needs neartext[milvus]")

    from conftest import DEMO

    from neartext.store.milvus import connect, disconnect

    address = f"milvus-lite:{small_disk / 'store.db'}#full"
    col, _ = Collection.from_file(address, DEMO, ["text"], "id", model=encoder, index="flat")
    with col:
        before = [r.id for r in col.search("refund my money", k=5)]
        pairs = _adapter_pairs(col, tmp_path / "pairs.csv")
    # room for tune's ranker files (about 100 KB of LightGBM text here), not for the mapped
    # copy of 247 vectors (370 KB of float32 alone)
    filler = fill(small_disk, 300_000)
    res = cli("tune", address, "--pairs", pairs, "--side", "both", "--force")
    filler.unlink()
    err = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(err) == 1, res.stderr
    assert err[0].startswith(f"neartext tune: error: {address}: its new version could not be "
                             "built beside it "
                             "(no space left") and "nothing changed" in err[0], err
    with Collection.open(address, model=encoder) as col:
        assert col.manifest.version == 1
        assert [r.id for r in col.search("refund my money", k=5)] == before
    # (in this process: the run that failed was the other process's)
    assert main(["tune", address, "--pairs", str(pairs), "--side", "both", "--force",
                 "-q"]) == 0
    with Collection.open(address, model=encoder) as col:
        assert col.manifest.version == 2 and col.store.count() == 247
    a = Collection.open(address).address
    client = connect(a)
    try:
        assert len([n for n in client.list_collections() if n.startswith("full")]) == 2
    finally:
        disconnect(a, client)


def test_a_full_disk_when_the_mapped_copy_is_created_on_milvus_lite_is_said_as_later_ones(
        encoder, tmp_path, monkeypatch, capsys):
    """The disk can fill as early as the creation of the mapped copy's Milvus collection (the
    test above, on a busy machine): the same line as a later failure, naming the collection
    and saying nothing changed. Before: "could not create the collection: <MilvusException:
    (code=1, message=[Errno 28] No space left on device)>", said of the copy, as if Milvus
    could not be reached."""
    pytest.importorskip("pymilvus", reason="needs neartext[milvus]")

    from conftest import DEMO

    import neartext.store.milvus.build as build

    address = f"milvus-lite:{tmp_path / 'store.db'}#full"
    col, _ = Collection.from_file(address, DEMO, ["text"], "id", model=encoder, index="flat")
    with col:
        pairs = _adapter_pairs(col, tmp_path / "pairs.csv")

    def no_space(*a, **k):
        raise RuntimeError("<MilvusException: (code=1, message=[Errno 28] No space left on "
                           "device)>")

    monkeypatch.setattr(build, "create_indexed", no_space)
    assert main(["tune", address, "--pairs", str(pairs), "--side", "both", "--force"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"neartext tune: error: {address}: its new version could not be built "
                   "beside it (no space left on the device Milvus writes to); nothing "
                   "changed"], err
    with Collection.open(address, model=encoder) as col:
        assert col.manifest.version == 1 and col.store.count() == 247


def test_a_failed_write_on_a_full_disk_gives_back_the_space_it_took(small_disk, encoder):
    """A write that fails for lack of space leaves the disk as free as before it: the pages it
    wrote to SQLite's log are given back. Before, each failed attempt kept them in the log
    file (3.1 -> 4.2 MB on one failed delete), so freeing space was never enough: a handle
    held open (as the service's) could not delete even with 4 MB freed."""
    from neartext import Record
    from neartext.errors import StorageError

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2000, encoder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    col = Collection.create(small_disk / "col", model=encoder)
    col.upsert([Record(f"d{i}", f"document {i} about {('billing', 'crash', 'ui')[i % 3]}",
                       {"topic": ("billing", "crash", "ui")[i % 3]}, vector=vectors[i])
                for i in range(2000)], vectors_from="same")
    col.close()
    col = Collection.open(small_disk / "col")  # as a service opens it: its log emptied
    wal = small_disk / "col" / "data.sqlite-wal"
    try:
        for topic in ("billing", "crash"):  # twice: the first success leaves a log behind
            fill(small_disk, 0)
            for freed_mb in range(0, 7):
                fill(small_disk, freed_mb << 20)
                free = shutil.disk_usage(small_disk).free
                try:
                    removed = col.delete_where(f"topic={topic}")
                    break
                except StorageError as e:
                    assert e.kind == "full", e
                    assert shutil.disk_usage(small_disk).free >= free - (64 << 10), freed_mb
                    assert not wal.exists() or wal.stat().st_size <= 64 << 10
            else:
                raise AssertionError(f"deleting {topic} failed with 6 MB freed")
            assert removed == 667 and freed_mb <= 5, (topic, freed_mb)
        (small_disk / "filler").unlink()
        assert len(col) == 666 and not col.matching("topic=billing")
    finally:
        col.close()


def test_a_full_disk_while_storing_tuning_queries_changes_nothing(small_disk):
    """`tune_index` writes the queries in one transaction: on a full disk it says so in one
    line, and the index keeps its setting; with room again it tunes."""
    from neartext.errors import StorageError
    from neartext.store import Document, Passage
    from neartext.store.local import LocalStore

    rng = np.random.default_rng(4)
    x = rng.standard_normal((3000, 16)).astype(np.float32)
    docs = [Document(f"d{i}", "t", {}, f"h{i}") for i in range(3000)]
    store = LocalStore.create(small_disk / "s", {"dim": 16, "index": "hnsw"})
    store.write(docs, [Passage(doc.id, 0, 1, doc.hash, v) for doc, v in zip(docs, x)], [])
    before = store.index_info()
    q = rng.standard_normal((2000, 16)).astype(np.float32)  # 128 KB of vectors
    fill(small_disk, 16 * 1024)
    with pytest.raises(StorageError, match="disk is full.*nothing was changed"):
        store.tune_index(q)
    assert store.index_info() == before
    (small_disk / "filler").unlink()
    assert store.tune_index(q)["tuned_on"] == "2000 given queries"
    store.close()

