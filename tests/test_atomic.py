"""Killing a real neartext process mid-write leaves the previous collection intact and usable."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO, STAGE_THEN_WAIT, patched_cli

from neartext import Collection
from neartext.cli import main

WORDS = (
    "sync crash login refund invoice editor search export reminder battery tablet phone laptop "
    "notebook template calendar offline widget password subscription font table image upload "
    "download backup share team folder tag archive theme dark slow fast"
).split()


STAGED = 256  # the kill tests kill a run once it staged its first chunk of vectors (and waits)
ROWS = 400  # their corpora: some left to embed after the kill


def big_corpus(path, n, seed=0):
    rng = random.Random(seed)
    lines = ["id,text"]
    for i in range(n):
        lines.append(f"big-{i},{' '.join(rng.choice(WORDS) for _ in range(24))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def staged_count(col_dir):
    try:
        con = sqlite3.connect(f"file:{col_dir / 'data.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM staged").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def start(*args, go_on: Path | None = None):
    """``neartext ARGS -q`` as a process of its own; with ``go_on``, one that waits after it
    staged its first chunk of vectors until that file exists (:data:`conftest.STAGE_THEN_WAIT`):
    the moment of a kill, or of another process' attempt, is then the test's, not a race with
    the run's end (before, corpora of 1,400 texts, killed at 1,024 staged, bought the time)."""
    cmd = ([*patched_cli(STAGE_THEN_WAIT)] if go_on else [sys.executable, "-m", "neartext"])
    env = {**os.environ, "NEARTEXT_TEST_GO_ON": str(go_on)} if go_on else None
    return subprocess.Popen([*cmd, *map(str, args), "-q"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def wait_until(cond, proc, timeout=120.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_kill_during_upsert_keeps_previous_state_and_work(demo_copy, tmp_path):
    big = tmp_path / "big.csv"
    big_corpus(big, ROWS)  # killed once the first STAGED vectors are staged, before the end
    with Collection.open(demo_copy) as col:
        want = [r.id for r in col.search("refund for a double charge", k=5)]
    proc = start("upsert", demo_copy, big, go_on=tmp_path / "never")
    assert wait_until(lambda: staged_count(demo_copy) >= STAGED, proc), \
        proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    with Collection.open(demo_copy) as col:  # previous state, fully usable
        assert len(col) == 247
        assert [r.id for r in col.search("refund for a double charge", k=5)] == want
        assert col.get(["big-0"]) == []
        rep = col.index_file(big)  # the vectors computed before the kill are not recomputed
        assert rep.vectors_reused >= STAGED and rep.texts_embedded <= ROWS - STAGED
        assert rep.added == ROWS and len(col) == 247 + ROWS
        assert staged_count(demo_copy) == 0


@pytest.mark.slow
def test_kill_at_random_moments_never_leaves_half_a_write(demo_copy, tmp_path):
    big = tmp_path / "big.csv"
    big_corpus(big, 3000, seed=1)
    rng = random.Random(3)
    for _ in range(3):
        proc = start("upsert", demo_copy, big)
        time.sleep(rng.uniform(0.5, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Collection.open(demo_copy) as col:
            n = len(col)
            assert n in (247, 3247)
            assert len(col.search("sync crash", k=3)) == 3
            assert col.store.passage_count() == n


def kill_a_build(tmp_path, rows: int, seed: int):
    """Start ``neartext index`` of ``rows`` texts into a new collection, SIGKILL it once
    :data:`STAGED` vectors are staged; returns (corpus, target, the build directory it left)."""
    big = tmp_path / "big.csv"
    big_corpus(big, rows, seed=seed)
    target = tmp_path / "newcol"
    proc = start("index", big, "-c", target, go_on=tmp_path / "never")
    partial = tmp_path / "newcol.partial"
    assert wait_until(lambda: staged_count(partial) >= STAGED, proc), \
        proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return big, target, partial


@pytest.mark.slow
def test_kill_during_creation_leaves_nothing_at_the_target(tmp_path):
    big, target, partial = kill_a_build(tmp_path, ROWS, seed=2)
    assert not target.exists()
    with pytest.raises(FileNotFoundError):
        Collection.open(target)
    done = subprocess.run([sys.executable, "-m", "neartext", "index", str(big), "-c", str(target),
                           "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not partial.exists()
    report = json.loads(done.stdout)  # the vectors computed before the kill were kept
    assert report["vectors_reused"] >= STAGED and report["texts_embedded"] <= ROWS - STAGED
    with Collection.open(target) as col:
        assert len(col) == ROWS and col.store.passage_count() == ROWS


@pytest.mark.slow  # a killed build, then a build of its texts with the tiny model
def test_a_killed_build_is_not_resumed_with_another_model(tmp_path, tiny_model_dir, capsys):
    big, target, _ = kill_a_build(tmp_path, ROWS, seed=4)
    # the rerun in this process (the killed one was another): a new process importing torch
    # for the tiny model: a call of 10.0 s, against 2.3 s
    assert main(["index", str(big), "-c", str(target), "--model", str(tiny_model_dir),
                 "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["vectors_reused"] == 0
    with Collection.open(target) as col:
        assert col.info().dim == 32 and len(col) == ROWS


@pytest.mark.slow  # a real build of ROWS texts
def test_two_builds_of_one_new_collection_one_runs_the_other_is_refused(tmp_path):
    """Two 'neartext index' runs into the same new directory: the second says who is building
    and exits 1; the collection holds exactly the first run's corpus."""
    big = tmp_path / "big.csv"
    big_corpus(big, ROWS, seed=5)
    target = tmp_path / "newcol"
    go_on = tmp_path / "go-on"
    first = start("index", big, "-c", target, "--id", "id", go_on=go_on)
    lock = tmp_path / "newcol.partial" / "build.lock"
    assert wait_until(lambda: lock.is_file() and b"process" in lock.read_bytes()
                      and staged_count(lock.parent) >= STAGED, first)
    second = subprocess.run([sys.executable, "-m", "neartext", "index", str(DEMO), "-c",
                             str(target), "--id", "id"], capture_output=True, text=True)
    go_on.touch()
    assert second.returncode == 1
    assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    assert f"process {first.pid}" in second.stderr and "already under way" in second.stderr
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    with Collection.open(target) as col:
        assert len(col) == ROWS and col.get(["fb-0001"]) == []
    again = subprocess.run([sys.executable, "-m", "neartext", "index", str(DEMO), "-c",
                            str(target) + "/", "--id", "id", "--chunk", "5"],
                           capture_output=True, text=True)  # a creation option on an existing one
    assert again.returncode == 1 and "exists" in again.stderr


@pytest.mark.slow
def test_kill_during_tune_leaves_one_version_or_the_next(demo_copy, tmp_path, capsys):
    """``tune --force`` killed at random moments (encoding, training, evaluating, promoting):
    the collection opens at version 1, or at version 2 with its adapter file whole; a run
    left to finish promotes."""
    import csv

    with Collection.open(demo_copy) as col:
        docs = col.store.get(list(col.store.document_hashes()))
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "passage"])
        w.writerows((" ".join(d.text.split()[:3]), d.text) for d in docs)
    rng = random.Random(5)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-m", "neartext", "tune", str(demo_copy),
                                 "--pairs", str(pairs), "--force", "-q"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 8.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Collection.open(demo_copy) as col:
            assert col.manifest.version in (1, 2)
            assert (col.adapter is not None) == (col.manifest.version == 2)
            assert len(col.search("sync crash", k=3)) == 3
        if col.manifest.version == 2:
            break
    # (the run left to finish in this process, which holds torch already)
    assert main(["tune", str(demo_copy), "--pairs", str(pairs), "--force", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["promoted"]


def test_only_write_failures_are_reworded_by_the_staged_writers(tmp_path):
    """A full disk inside a staged block is one StorageError naming the output; an error that is
    not a failed write (a neartext error, a file the block could not find) passes unchanged."""
    import errno

    from neartext.errors import CorpusFileNotFound, StorageError
    from neartext.util.atomic import staged_dir, staged_file

    full = r"out.csv: the output could not be written \(No space"
    with pytest.raises(StorageError, match=full), staged_file(tmp_path / "out.csv"):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(CorpusFileNotFound, match="^corpus.csv: no such file$"), \
            staged_dir(tmp_path / "col"):
        raise CorpusFileNotFound("corpus.csv: no such file")
    with pytest.raises(FileNotFoundError, match="gone"), staged_file(tmp_path / "out.csv"):
        raise FileNotFoundError(errno.ENOENT, "gone")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
