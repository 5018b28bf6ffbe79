"""``neartext embed --ray``: encoder actors on a real Ray (started here, and a two-node cluster
of separate ``ray start`` processes), against the single-process path."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO
from serving import free_port

from neartext.cli import main

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")


def _read(path: Path) -> tuple[list[str], list[str], np.ndarray, dict]:
    t = pq.read_table(path)
    return (t.column("id").to_pylist(), t.column("hash").to_pylist(),
            np.array(t.column("vector").to_pylist(), dtype=np.float32), t.schema.metadata)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("embed") / "single.parquet"
    assert main(["embed", str(DEMO), "-o", str(out), "--text", "text", "--id", "id", "-q"]) == 0
    return out


def test_ray_embeds_the_same_vectors_as_one_process(single, tmp_path, capsys):
    out = tmp_path / "ray.parquet"
    assert main(["embed", str(DEMO), "-o", str(out), "--text", "text", "--id", "id",
                 "--ray", "--actors", "2", "--batch-size", "64", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 247 and report["on"] == "Ray local, 2 actors"
    ids, hashes, vecs, meta = _read(out)
    ids1, hashes1, vecs1, meta1 = _read(single)
    assert ids == ids1 and hashes == hashes1 and meta == meta1
    assert vecs.shape == (247, 384) and float(np.abs(vecs - vecs1).max()) <= 1e-5


def test_bad_input_is_one_line_before_ray_starts(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "text": "also fine"}\n{oops\n',
                   encoding="utf-8")
    t = time.monotonic()
    assert main(["embed", str(bad), "-o", str(tmp_path / "o.parquet"), "--ray"]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "line 3" in err and len(err.strip().splitlines()) == 1, err
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
def test_a_two_node_cluster_of_separate_processes_embeds_the_same(single, tmp_path):
    """``ray start --head`` and ``ray start --address`` as separate processes (two nodes of one
    CPU each on this machine): the actors land on both, the vectors are the single process'."""
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_cli, "the ray command comes with neartext[ray]"
    port = free_port()
    import tempfile

    env_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must be short
    head = subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=1",
                           "--include-dashboard=false", f"--temp-dir={env_tmp}"],
                          capture_output=True, text=True, timeout=180)
    try:
        assert head.returncode == 0, head.stderr[-2000:]
        worker = subprocess.run([ray_cli, "start", f"--address=127.0.0.1:{port}",
                                 "--num-cpus=1"], capture_output=True, text=True, timeout=180)
        assert worker.returncode == 0, worker.stderr[-2000:]
        out = tmp_path / "cluster.parquet"
        done = subprocess.run([sys.executable, "-m", "neartext", "embed", str(DEMO), "-o",
                               str(out), "--text", "text", "--id", "id", "--ray",
                               f"127.0.0.1:{port}", "--actors", "2", "--json"],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        ids, hashes, vecs, _ = _read(out)
        ids1, hashes1, vecs1, _ = _read(single)
        assert ids == ids1 and hashes == hashes1
        assert float(np.abs(vecs - vecs1).max()) <= 1e-5
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(env_tmp, ignore_errors=True)
