"""What the Ray tests share (tests/test_ray.py in one Ray session of the test process,
tests/test_ray_processes.py with commands run and killed as processes): reading the vector
files, corpora, the one-process reference, and killing a run once it wrote enough."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pq = pytest.importorskip("pyarrow.parquet")


def _read(path: Path) -> tuple[list[str], list[str], np.ndarray, dict]:
    t = pq.read_table(path)
    return (t.column("id").to_pylist(), t.column("hash").to_pylist(),
            np.array(t.column("vector").to_pylist(), dtype=np.float32), t.schema.metadata)


def drop_logging_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's loggers get their stream handler when ``ray`` is first imported: in this session
    that is the capture of the test that imported it, closed since. A warning Ray logs later
    (say "the cluster currently does not have any available CPUs" while the previous command's
    actors are let go) then makes ``logging`` print "--- Logging error ---" and a traceback to the
    current test's stderr. In a command's own process stderr stays open; here such a record is
    dropped, as ``logging.raiseExceptions = False`` does in production."""
    import logging

    monkeypatch.setattr(logging, "raiseExceptions", False)


def _one_error_line(err: str) -> bool:
    """neartext said what failed in one line, without a traceback. Once Ray has started, Ray's
    own start-up notices may stand beside it on stderr (seen in a long test session: "Failed to
    start the dashboard", although neartext asks for none), which neartext does not print."""
    ours = [ln for ln in err.splitlines() if ln.startswith("neartext ")]
    return len(ours) == 1 and "Traceback" not in err


def _by_id(path: Path) -> tuple[list[str], list[str], np.ndarray, dict]:
    """:func:`_read` in the order of the ids (on Ray the rows come longest text first); each
    id once."""
    ids, hashes, vecs, meta = _read(path)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    assert len(set(ids)) == len(ids)
    return [ids[i] for i in order], [hashes[i] for i in order], vecs[order], meta


def _word_corpus(path: Path, rows: int, words: int, *, seed: int, prefix: str) -> Path:
    """A CSV of ``rows`` distinct texts of ``words`` random product words (ids ``prefix``N)."""
    import random

    vocabulary = ("sync crash login refund invoice editor search export reminder battery "
                  "tablet phone laptop notebook template calendar offline widget password").split()
    rng = random.Random(seed)
    path.write_text("id,text\n" + "".join(
        f"{prefix}{i},{' '.join(rng.choice(vocabulary) for _ in range(words))} {i}\n"
        for i in range(rows)), encoding="utf-8")
    return path


def _rows(path: Path) -> tuple[dict, np.ndarray]:
    from neartext import Collection

    with Collection.open(path) as col:
        ids = sorted(col.store.document_hashes())
        docs = {d.id: (d.text, d.metadata) for d in col.get(ids)}
        vecs = col.store.doc_vectors(ids)
        return docs, np.stack([vecs[i][0] for i in ids])


def _kill_once_written(cmd: list[str], db: Path, table: str, rows: int) -> int:
    """Run ``cmd``, SIGKILL it once ``table`` of the build database ``db`` holds ``rows`` rows,
    and the Ray it started with it; the rows there when it was killed.

    The command runs in a process group of its own, which the local Ray it starts joins (its
    GCS, raylet, agents); the kill takes the group, so nothing of that Ray is left (its
    dashboard and runtime-env agents outlived the driver alone) and no other Ray of the machine
    is touched (``ray stop --force``, used before, stops every one: a developer's own too)."""
    import os
    import signal
    import sqlite3

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    count, deadline = 0, time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and count < rows:
        time.sleep(0.3)
        if db.exists():
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as c:
                    count = c.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            except sqlite3.Error:
                pass
    if proc.poll() is not None:
        out, err = proc.communicate()
        raise AssertionError(f"the run ended (exit {proc.returncode}) with {count} {table} rows, "
                             f"before it could be killed:\n{err[-3000:]}{out[-1000:]}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return count


def ray_processes_of(marker: str) -> list[int]:
    """The processes whose command line names ``marker`` (a Ray's temporary directory or
    address)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out
