"""Many processes on one collection: each sees the others' committed writes, none loses them.

Real processes (a served collection in a ``neartext serve`` subprocess, CLI upserts and deletes in
others, HTTP upserts meanwhile) and several handles in one process. The oracle: every document
whose write was acknowledged is found by its own text as the best hit, by the server, by a fresh
process and after a restart; deleted ones are found by nobody.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from serving import free_port, serve_process

from neartext import Collection, Record
from neartext.store.index_file import save_index
from neartext.store.local import INDEX_FILE
from neartext.store.vector_index import ExactIndex

WORDS = ("amber basil cobalt dune ember fjord garnet harbor indigo jasper kelp lumen mango "
         "nectar onyx pepper quartz raven saffron tundra umber violet willow xenon yarrow zephyr "
         "anchor beacon cactus delta falcon glacier hazel island jungle kettle lantern meadow").split()


def sentence(rng: random.Random, tag: str) -> str:
    return f"{tag} " + " ".join(rng.choice(WORDS) for _ in range(9))


def write_csv(path: Path, docs: dict[str, str]) -> Path:
    lines = ["id,text"] + [f"{i},{t}" for i, t in docs.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neartext", *map(str, args), "-q", "--json"],
                          capture_output=True, text=True, timeout=600)


def http(base: str, method: str, path: str, body: object = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def top_ids(base: str, name: str, texts: list[str]) -> list[str | None]:
    out: list[str | None] = []
    for i in range(0, len(texts), 8):
        status, body = http(base, "POST", f"/collections/{name}/search",
                            {"queries": texts[i:i + 8], "k": 1})
        assert status == 200, body
        out += [row[0]["id"] if row else None for row in body["results"]]  # type: ignore[index]
    return out


def test_two_handles_see_each_others_writes_and_lose_nothing(demo_copy, encoder):
    rng = random.Random(1)
    a = Collection.open(demo_copy, model=encoder)
    b = Collection.open(demo_copy, model=encoder)
    assert a.search("anything", k=1)  # a's index is loaded before b writes
    new = {f"b-{i}": sentence(rng, f"bee{i}") for i in range(3)}
    b.upsert([Record(i, t) for i, t in new.items()])
    for i, t in new.items():  # a sees b's committed write at its next search
        assert a.search(t, k=1)[0].id == i
    a.upsert([Record("a-0", sentence(rng, "ay0"))])  # a writes after b: b's rows must survive
    gone = next(iter(new))
    b.delete([gone])
    assert gone not in [r.id for r in a.search(new[gone], k=5)]
    a.close()
    b.close()
    with Collection.open(demo_copy, model=encoder) as c:  # and after a restart
        for i, t in new.items():
            if i != gone:
                assert c.search(t, k=1)[0].id == i
        info = c.info().index
        assert info["vectors"] == info["passages"] == len(c) == 247 + 3
        assert info["file"]["current"] and info["file"]["vectors"] == info["vectors"]


def test_a_read_sees_writes_committed_before_it_while_another_thread_reads_in_a_snapshot(
        demo_copy, encoder):
    """A service's request threads share one handle. A thread reading in a snapshot (a long
    read, such as an index rebuilt from the database) does not hold the other threads' reads
    in its snapshot: a write another handle committed before a thread's search is found by
    that search. (It was not: the handle's threads shared one reader connection, and with it
    the open read transaction.)"""
    a = Collection.open(demo_copy, model=encoder)
    b = Collection.open(demo_copy, model=encoder)
    assert a.search("anything", k=1)  # a's index is loaded before b writes
    held, release = threading.Event(), threading.Event()

    def long_read() -> None:
        with a.store._snapshot():
            a.store.count()  # the snapshot is taken at its first read
            held.set()
            release.wait(60)

    reader = threading.Thread(target=long_read)
    reader.start()
    try:
        assert held.wait(60)
        text = sentence(random.Random(2), "late")
        b.upsert([Record("late-0", text)])  # committed before a's search below
        assert a.search(text, k=1)[0].id == "late-0"
        assert [d.id for d in a.get(["late-0"])] == ["late-0"]
    finally:
        release.set()
        reader.join()
        a.close()
        b.close()


def test_a_thread_after_a_swap_reads_the_version_its_handle_opened(demo_copy, encoder):
    """Each thread reads through a connection of its own, opened at its first read; once the
    path holds another version (a swap: the directory replaced by a copy with one document
    fewer, as reindex and promote replace it), a thread's first read goes to the version the
    handle opened, as its index does, never to the new one (the service reopens a replaced
    handle); once the handle is closed, a new thread's read is SQLite's error, as before."""
    import os
    import shutil
    import sqlite3

    a = Collection.open(demo_copy, model=encoder)
    n = len(a)
    seen: list[tuple[int, bool]] = []

    def read() -> None:
        seen.append((a.store.count(), a.store.conn is a.store._readers.first))

    before = threading.Thread(target=read)
    before.start()
    before.join()
    nxt = demo_copy.with_name("next")
    shutil.copytree(demo_copy, nxt)
    c = sqlite3.connect(nxt / "data.sqlite")
    c.execute("DELETE FROM documents WHERE id = 'fb-0001'")
    c.commit()
    c.close()
    os.rename(demo_copy, demo_copy.with_name("old"))
    os.rename(nxt, demo_copy)
    after = threading.Thread(target=read)
    after.start()
    after.join()
    assert a.store.replaced() and seen == [(n, False), (n, True)]
    a.store.close()
    failed: list[str] = []

    def read_closed() -> None:  # a closed handle opens no connection for a new thread
        try:
            a.store.count()
        except sqlite3.ProgrammingError as e:
            failed.append(str(e))

    late = threading.Thread(target=read_closed)
    late.start()
    late.join()
    assert failed and "closed" in failed[0], failed
    with Collection.open(demo_copy, model=encoder) as b:  # the new version, for a new handle
        assert len(b) == n - 1


def test_an_index_file_missing_vectors_is_caught_on_open_and_repaired(demo_copy, encoder):
    """What the old bug left behind: an index file labelled current that lacks some vectors."""
    with Collection.open(demo_copy, model=encoder) as col:
        target = col.search("refund for a double charge", k=1)[0]
        ix = col.store.index
        gen = col.store.generation()
    with Collection.open(demo_copy, model=encoder) as col:
        pid = col.store.conn.execute("SELECT pid FROM passages WHERE doc_id = ?",
                                     (target.id,)).fetchone()[0]
    keep = ix.ids != pid
    broken = ExactIndex(ix.dim)
    broken.add(ix.vectors[keep], ix.ids[keep])
    save_index(broken, demo_copy / INDEX_FILE, {"generation": gen})
    with Collection.open(demo_copy, model=encoder) as col:
        assert col.search(target.text, k=1)[0].id == target.id
    assert cli("info", demo_copy).returncode == 0
    res = cli("repair", demo_copy)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["passages"] == report["documents"] == 247 and report["database"] == "ok"


def test_orphan_temporary_files_of_killed_processes_are_removed_on_open(demo_copy):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = demo_copy / f".{INDEX_FILE}.tmp{dead.pid}"
    orphan.write_bytes(b"half an index")
    with Collection.open(demo_copy):
        pass
    assert not orphan.exists()


@pytest.mark.slow
def test_server_and_cli_writers_interleaved_lose_nothing(demo_copy, tmp_path):
    """A served collection (two names for the same directory in one server process), CLI
    upserts and deletes in other processes, HTTP upserts meanwhile, in a random order; then
    every acknowledged document is found by its own text everywhere."""
    rng = random.Random(7)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "neartext", "serve", str(demo_copy), f"twin={demo_copy}",
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180
        while True:
            try:
                if http(base, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.time() < deadline, server.stderr.read()
            time.sleep(0.2)
        acked: dict[str, str] = {}
        deleted: set[str] = set()
        errors: list[str] = []

        def http_writer(name: str, prefix: str, n: int) -> None:
            local = random.Random(prefix)
            for i in range(n):
                doc = {"id": f"{prefix}-{i}", "text": sentence(local, f"{prefix}{i}")}
                status, body = http(base, "POST", f"/collections/{name}/documents",
                                    {"documents": [doc]})
                if status == 200:
                    acked[doc["id"]] = doc["text"]
                else:
                    errors.append(f"{status} {body}")
                time.sleep(local.uniform(0, 0.3))

        for rnd in range(3):
            batch = {f"cli{rnd}-{i}": sentence(rng, f"cli{rnd}x{i}") for i in range(20)}
            csv = write_csv(tmp_path / f"more{rnd}.csv", batch)
            threads = [threading.Thread(target=http_writer, args=(n, f"h{rnd}{n}", 6))
                       for n in ("feedback", "twin")]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0, 1.0))
            res = cli("upsert", demo_copy, csv, "--id", "id")
            assert res.returncode == 0, res.stderr
            acked.update(batch)
            victim = rng.choice(sorted(acked))
            res = cli("delete", demo_copy, victim)
            assert res.returncode == 0 and json.loads(res.stdout)["removed"] == 1, res.stderr
            deleted.add(victim)
            for t in threads:
                t.join()
            assert not errors, errors
            # the server sees the CLI's writes at once, through either name
            ids, texts = list(batch), list(batch.values())
            for name in ("feedback", "twin"):
                got = top_ids(base, name, texts)
                assert [g for g, i in zip(got, ids) if i not in deleted] == \
                    [i for i in ids if i not in deleted]
        live = {i: t for i, t in acked.items() if i not in deleted}
        assert len(live) == 3 * (20 + 12) - 3
        got = top_ids(base, "feedback", list(live.values()))
        assert got == list(live), [i for i, g in zip(live, got) if i != g]
        status, info = http(base, "GET", "/collections/feedback")
        assert info["documents"] == 247 + len(live)  # type: ignore[index]
        assert info["index"]["vectors"] == info["index"]["passages"] == info["documents"]  # type: ignore[index]
    finally:
        server.terminate()
        server.wait(60)
    with Collection.open(demo_copy) as col:  # a fresh process's view, after the server is gone
        for i, t in live.items():
            assert col.search(t, k=1)[0].id == i
        for i in deleted:
            assert col.get([i]) == []


@pytest.mark.slow
def test_a_write_waiting_behind_a_swap_freezes_neither_health_nor_searches(demo_copy, tmp_path):
    """Another process holds the collection's writes (as a swap does for its catch-up and the
    switch) while a client's upsert waits for them: the service's other requests go on. The
    writer thread used to hold the store's one SQLite connection (and its lock) while waiting,
    and the event loop waited on it: /health and searches stalled for the whole hold."""
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
from neartext.store.local import LocalStore
store = LocalStore({str(demo_copy)!r})
sys.stdin.readline()
with store.hold_writes():
    print("held", flush=True)
    time.sleep(5)
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with serve_process(str(demo_copy)) as (base, _):
        http(base, "POST", "/collections/feedback/search", {"query": "warm up"})
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "held"
        upserted: list[tuple[int, float]] = []

        def upsert() -> None:
            t0 = time.perf_counter()
            status, _ = http(base, "POST", "/collections/feedback/documents", {"documents": [
                {"id": "behind-the-swap", "text": "written once the hold is over"}]})
            upserted.append((status, time.perf_counter() - t0))

        writer = threading.Thread(target=upsert)
        writer.start()
        time.sleep(0.3)  # the upsert is now waiting for the held writes
        times: dict[str, list[float]] = {"health": [], "search": []}
        end = time.time() + 3
        while time.time() < end:
            for what, method, path, body in (
                    ("health", "GET", "/health", None),
                    ("search", "POST", "/collections/feedback/search",
                     {"query": "refund my money", "k": 5})):
                t0 = time.perf_counter()
                status, _ = http(base, method, path, body)
                times[what].append(time.perf_counter() - t0)
                assert status == 200
        assert writer.is_alive(), ("the upsert did not wait for the hold", upserted, times)
        writer.join(60)
        holder.wait(30)
        assert upserted and upserted[0][0] == 200 and upserted[0][1] > 3, upserted
        for what, ts in times.items():
            ts.sort()
            p99 = ts[min(len(ts) - 1, int(len(ts) * 0.99))]
            assert p99 <= 0.2, f"{what}: p99 {p99 * 1000:.0f} ms over {len(ts)} requests"
        status, body = http(base, "POST", "/collections/feedback/search",
                            {"query": "written once the hold is over", "k": 1})
        assert body["results"][0][0]["id"] == "behind-the-swap"
