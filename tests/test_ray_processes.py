"""``--ray`` commands as processes of their own (each starting its own local Ray, or joining a
two-node cluster of ``ray start`` processes), killed mid-run: the driver, an encoder actor, a
build in parts. Kept apart from tests/test_ray.py, whose tests share one Ray session. What a
test started of Ray it stops itself (the killed driver's process group; the cluster's processes
by its address), never every Ray of the machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO, STAGE_THEN_WAIT, patched_cli
from serving import free_port

from neartext.cli import main

pytest.importorskip("ray")
pytest.importorskip("pyarrow.parquet")

from raying import (  # noqa: E402
    _by_id,
    _kill_once_written,
    _word_corpus,
    drop_logging_errors,
    ray_processes_of,
)

# One pytest-xdist worker runs this file and test_ray.py (make test: --dist loadgroup): one local
# Ray at a time, each sized to the machine's cores.
pytestmark = pytest.mark.xdist_group("ray")



@pytest.fixture(autouse=True)
def _ray_logs_to_a_closed_capture_are_dropped(monkeypatch):
    drop_logging_errors(monkeypatch)


@pytest.mark.slow
def test_a_two_node_cluster_of_separate_processes_embeds_the_same(single, tmp_path):
    """``ray start --head`` and ``ray start --address`` as separate processes (two nodes of one
    CPU each on this machine): the actors land on both, the vectors are the single process'."""
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_cli, "the ray command comes with neartext[ray]"
    port = free_port()
    import tempfile

    env_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must be short
    # One authentication mode for the three processes: `ray start --head` turns tokens on when
    # ~/.ray/auth_token exists (any local ray.init writes one), `ray start --address` only
    # when RAY_AUTH_MODE says so, which an in-process ray.init sets in this process' own
    # environment: the test passed after tests/test_ray.py and failed alone.
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    head = subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=1",
                           "--include-dashboard=false", f"--temp-dir={env_tmp}"],
                          capture_output=True, text=True, timeout=180, env=env)
    try:
        assert head.returncode == 0, head.stderr[-2000:]
        worker = subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}",
                                 "--num-cpus=1"], capture_output=True, text=True, timeout=180,
                                env=env)
        assert worker.returncode == 0, worker.stderr[-2000:]
        out = tmp_path / "cluster.parquet"
        done = subprocess.run([sys.executable, "-m", "neartext", "embed", str(DEMO), "-o",
                               str(out), "--text", "text", "--id", "id", "--ray",
                               f"127.0.0.1:{port}", "--actors", "2", "--json"],
                              capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        ids, hashes, vecs, _ = _by_id(out)
        ids1, hashes1, vecs1, _ = _by_id(single)
        assert ids == ids1 and hashes == hashes1
        assert float(np.abs(vecs - vecs1).max()) <= 1e-5
    finally:  # this cluster's processes only (`ray stop` stops every Ray of the machine)
        for _ in range(50):
            pids = ray_processes_of(env_tmp) + ray_processes_of(f"127.0.0.1:{port}")
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        shutil.rmtree(env_tmp, ignore_errors=True)
    assert not pids, "processes of the cluster were left"


@pytest.mark.slow
def test_a_killed_ray_index_reruns_to_the_same_collection_embedding_only_the_rest(tmp_path,
                                                                                 monkeypatch):
    """SIGKILL the driver of ``index --ray`` once some batches are done: nothing is at the
    target; the rerun embeds only what the first run had not staged and every row is there
    exactly once."""

    from neartext import Collection

    rows = 600
    corpus = _word_corpus(tmp_path / "big.csv", rows, 20, seed=0, prefix="b")
    target = tmp_path / "big"
    args = ["index", str(corpus), "-c", str(target), "--text", "text", "--id", "id", "--ray",
            "--actors", "1", "--batch-size", "64", "--json"]  # (one actor: the driver is killed)
    # the first run stops for good once it staged its first batch, and is killed there: the
    # kill's moment depends on nothing else (polling for 500 staged rows of 3,000 raced the
    # run's end on a loaded machine, which staged its batches in a burst)
    monkeypatch.setenv("NEARTEXT_TEST_GO_ON", str(tmp_path / "never"))
    staged = _kill_once_written([*patched_cli(STAGE_THEN_WAIT), *args],
                                tmp_path / "big.partial" / "data.sqlite", "staged", 1)
    cmd = [sys.executable, "-m", "neartext", *args]
    assert not target.exists() and 0 < staged < rows
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["added"] == rows and report["texts_embedded"] <= rows - staged
    with Collection.open(target) as col:
        assert len(col) == rows and col.store.passage_count() == rows


@pytest.mark.slow
def test_an_encoder_actor_killed_mid_run_is_restarted_and_every_row_embedded_once(tmp_path):
    """SIGKILL one of the encoder actors' processes while ``embed --ray`` runs: Ray restarts it
    and retries its batch; the run succeeds and each row is in the output once, with the single
    process' vector."""
    rows = 400  # the kill comes at the first progress line (after 32-64 rows)
    corpus = _word_corpus(tmp_path / "big.csv", rows, 24, seed=1, prefix="k")
    out = tmp_path / "ray.parquet"
    cmd = [sys.executable, "-m", "neartext", "embed", str(corpus), "-o", str(out), "--text",
           "text", "--id", "id", "--ray", "--actors", "2", "--batch-size", "32"]
    env = {**os.environ, "NEARTEXT_PROGRESS_SECONDS": "0.2"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    killed = None
    deadline = time.monotonic() + 300
    lines: list[str] = []
    assert proc.stderr is not None
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        line = proc.stderr.readline()
        lines.append(line)
        if line.startswith("embedding: ") and not line.startswith("embedding: 0/"):
            ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
            actors = [int(ln.split()[0]) for ln in ps.splitlines() if "MapWorker" in ln
                      and "_Embedder" in ln]
            if actors:
                killed = actors[0]
                os.kill(killed, signal.SIGKILL)
                at = line
    assert killed, "no encoder actor was found running:\n" + "".join(lines[-20:])
    done = int(at.split()[1].split("/")[0].replace(",", ""))
    assert done < rows, at  # killed mid-run
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert f"wrote {rows} vectors" in stdout, stdout
    one = tmp_path / "single.parquet"
    assert main(["embed", str(corpus), "-o", str(one), "--text", "text", "--id", "id",
                 "-q"]) == 0
    ids, hashes, vecs, _ = _by_id(out)
    ids1, hashes1, vecs1, _ = _by_id(one)
    assert ids == ids1 and len(ids) == rows and hashes == hashes1
    assert float(np.abs(vecs - vecs1).max()) <= 1e-5
    assert (np.linalg.norm(vecs, axis=1) > 0.99).all()  # no row left as zeros


#: a patch (:func:`patched_cli`): a build on Ray in a part per corpus file
IN_PARTS = "import neartext.engine.ingest as ingest\ningest.PART_BYTES = 1\n"
#: a patch (:func:`patched_cli`) after which a build in parts on Ray, once it wrote its first
#: part, waits until the file named by NEARTEXT_TEST_GO_ON exists (a test kills it there); a part
#: per corpus file
FIRST_PART_THEN_WAIT = (
    f"import os, time\n{IN_PARTS}upsert, done = ingest.upsert, []\n"
    "def upsert_then_wait(*a, **k):\n    report = upsert(*a, **k)\n    done.append(1)\n"
    "    while len(done) == 1 and not os.path.exists(os.environ['NEARTEXT_TEST_GO_ON']):\n"
    "        time.sleep(0.05)\n    return report\n"
    "ingest.upsert = upsert_then_wait\n")


@pytest.mark.slow
def test_a_build_in_parts_killed_after_some_parts_reruns_to_the_whole_corpus(tmp_path,
                                                                            monkeypatch):
    """SIGKILL the driver of a build in parts once a part is written: nothing is at the
    target; the rerun embeds only what that part had not, and every row is there exactly
    once."""

    from neartext import Collection

    d = tmp_path / "corpus"
    d.mkdir()
    for n in range(2):  # a part per file: each part's actor loads the model anew
        _word_corpus(d / f"{n}.csv", 400, 12, seed=n, prefix=f"p{n}-")
    target = tmp_path / "built"
    args = ["index", str(d), "-c", str(target), "--text", "text", "--id", "id", "--ray",
            "--actors", "1", "--json"]
    # the first run stops for good once its first part is written, and is killed there (one
    # actor: the parts, not the actors, are what this test is about)
    monkeypatch.setenv("NEARTEXT_TEST_GO_ON", str(tmp_path / "never"))
    written = _kill_once_written([*patched_cli(FIRST_PART_THEN_WAIT), *args],
                                 tmp_path / "built.partial" / "data.sqlite", "documents", 400)
    assert not target.exists() and written == 400
    done = subprocess.run([*patched_cli(IN_PARTS), *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    # the build starts over, reusing the vectors of the part written (and staged) before
    assert report["added"] == 800 and report["texts_embedded"] <= 800 - written
    with Collection.open(target) as col:
        assert len(col) == 800 and col.store.passage_count() == 800
        assert sorted(col.store.document_hashes()) == sorted(
            f"p{n}-{i}" for n in range(2) for i in range(400))
