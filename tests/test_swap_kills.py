"""A swap of versions killed at every rename and fsync leaves the old version or the new one.

``reindex`` and a both-side ``rollback`` (and ``tune --side both``, ``improve --full``, which
swap the same way) build the new version beside the collection and put it in its place. The
real CLI runs under strace, which kills it (SIGKILL) at the Nth call of one of the syscalls that
make files durable or move them; every N of each is tried. Afterwards a fresh look at the path
finds the old version or the new one, whole, never "no collection here"; nothing an
interrupted swap left stays beside it; and the next run completes.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import TEMPLATE

from neartext import Collection
from neartext.cli import main

STRACE = shutil.which("strace")
SYSCALLS = ("rename", "renameat", "renameat2", "fsync", "fdatasync")
NEARTEXT = [sys.executable, "-m", "neartext"]

pytestmark = pytest.mark.skipif(STRACE is None and not os.environ.get("CI"),
                                reason="strace is not installed (make system-packages)")


def calls(cmd: list[str], cwd: Path, extra: list[str]) -> Counter:
    """How many times a complete run of ``cmd`` makes each of :data:`SYSCALLS`."""
    log = cwd / "strace.log"
    subprocess.run([STRACE, "-f", "-qq", "-o", str(log), "-e", "trace=" + ",".join(SYSCALLS),
                    *extra, *cmd], check=True, capture_output=True, timeout=300)
    counts = Counter(line.split()[1].split("(")[0] for line in log.read_text().splitlines()
                     if "(" in line and "resumed>" not in line)
    log.unlink()
    return counts


def killed_at(cmd: list[str], syscall: str, n: int, extra: list[str]) -> int:
    res = subprocess.run([STRACE, "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall},renameat2", "-e",
                          f"inject={syscall}:signal=SIGKILL:when={n}", *extra, *cmd],
                         capture_output=True, timeout=300)
    return res.returncode


#: strace arguments that make renameat2 fail as on a file system that cannot exchange
NO_EXCHANGE = ["-e", "inject=renameat2:error=EINVAL"]


def sweep(base: Path, work: Path, args: list[str], check, *, extra: list[str] = (),
          syscalls: tuple[str, ...] = SYSCALLS) -> list[tuple[str, int, int]]:
    """Run ``neartext ARGS`` on a fresh copy of ``base`` killed at each point; ``check(col,
    info)`` looks at the collection afterwards and returns its version. Returns (syscall, n,
    version) for each point (two at a time: two cores). ``extra``: more strace arguments."""
    extra = list(extra)

    def command(col: Path) -> list[str]:
        return [*NEARTEXT, *[a.replace("COL", str(col)) for a in args]]

    probe = work / "probe"
    shutil.copytree(base, probe / "col")
    # once before counting: a first load of a model writes the user's cache (4 more renames
    # for use-multilingual), which the runs counted and killed then do not (alone, the sweep
    # counted 10 renames and the run killed at the 7th finished: only 6 were left)
    subprocess.run(command(probe / "col"), check=True, capture_output=True, timeout=300)
    shutil.rmtree(probe)
    shutil.copytree(base, probe / "col")
    counts = calls(command(probe / "col"), probe, extra)
    shutil.rmtree(probe)
    points = [(s, n) for s in syscalls for n in range(1, counts[s] + 1)]
    assert len(points) > 10, counts

    def one(point: tuple[str, int]) -> tuple[str, int, int]:
        syscall, n = point
        here = work / f"{syscall}-{n}"
        shutil.copytree(base, here / "col")
        code = killed_at(command(here / "col"), syscall, n, extra)
        assert code == -9, f"{syscall} #{n}: not killed ({code})"
        # a fresh look, as `neartext info` takes it (the same call; in this process, which
        # saves a Python start per point): a swap cut between its two renames is finished here
        try:
            with Collection.open(here / "col") as col:
                info = col.info().to_dict()
        except Exception as e:  # (named by its point, as the CLI's one line did)
            raise AssertionError(f"{syscall} #{n}: {e}") from e
        version = check(here / "col", info)
        # nothing of the interrupted swap is left beside the collection but a new version
        # that never went in (kept where it was built: reindex resumes it)
        left = sorted(p.name for p in here.iterdir() if p.name != "col")
        assert not [x for x in left if x.endswith((".swap", ".previous"))], (syscall, n, left)
        return syscall, n, version

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, points))


@pytest.fixture(scope="module")
def small_collection(tmp_path_factory, encoder) -> Path:
    """40 demo documents (MiniLM), built once."""
    from conftest import DEMO

    root = tmp_path_factory.mktemp("swap")
    with DEMO.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:40]
    corpus = root / "small.csv"
    with corpus.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    Collection.from_file(root / "col", corpus, ["text"], "id", model=encoder)[0].close()
    return root / "col"


@pytest.mark.slow
def test_a_reindex_killed_at_every_rename_and_fsync_leaves_one_version(small_collection,
                                                                     tmp_path):
    """The issue's case: ``neartext reindex COL --model use-multilingual`` killed between the
    two renames of the old swap left no collection at COL (and advised building a new one)."""
    def check(col: Path, info: dict) -> int:
        assert info["documents"] == 40 and info["index"]["vectors"] == 40, info
        with Collection.open(col) as c:
            version = c.manifest.version
            assert (version, c.manifest.model.name) in ((1, "all-MiniLM-L6-v2"),
                                                        (2, "use-multilingual")), version
            assert info["dim"] == (384 if version == 1 else 512)
            assert len(c.search("sync crash", k=3, mode="keyword")) == 3
        return version

    seen = sweep(small_collection, tmp_path, ["reindex", "COL", "--model", "use-multilingual",
                                              "-q"], check)
    assert {v for _, _, v in seen} == {1, 2}  # the kills fell both before and after the swap
    # a run killed before its swap resumes, after it nothing is left to do
    for syscall, n, version in seen:
        if version == 1 and (tmp_path / f"{syscall}-{n}" / "col.reindex").exists():
            col = tmp_path / f"{syscall}-{n}" / "col"
            done = subprocess.run([*NEARTEXT, "reindex", str(col), "--model",
                                   "use-multilingual", "--json"], capture_output=True,
                                  text=True, timeout=300)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["version"] == 2
            assert sorted(p.name for p in col.parent.iterdir()) == ["col"]
            break


@pytest.mark.slow
def test_a_both_side_rollback_killed_at_every_rename_and_fsync_leaves_one_version(
        small_collection, tmp_path, encoder):
    base = tmp_path / "base" / "col"
    shutil.copytree(small_collection, base)
    with Collection.open(base) as col:
        docs = col.store.get(list(col.store.document_hashes()))
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["query", "passage"])
        # templated queries: an adapter learns from them (one that learned nothing is never
        # promoted, not even with --force)
        w.writerows((TEMPLATE + " ".join(d.text.split()[:3]), d.text) for d in docs)
    assert main(["tune", str(base), "--pairs", str(pairs), "--side", "both", "--force",
                 "-q"]) == 0
    with Collection.open(base, model=encoder) as col:
        assert col.manifest.version == 2 and col.adapter.side == "both"
        want = {2: [r.id for r in col.search("the app crashes", k=5, mode="semantic")]}
    def check(path: Path, info: dict) -> int:
        assert info["documents"] == 40 and info["index"]["vectors"] == 40, info
        with Collection.open(path, model=encoder) as c:
            version = c.manifest.version
            assert version in (1, 2)
            assert (c.adapter is not None) == (version == 2)
            got = [r.id for r in c.search("the app crashes", k=5, mode="semantic")]
            if version in want:
                assert got == want[version], version  # the stored vectors of that version
        return version

    with Collection.open(small_collection, model=encoder) as col:
        want[1] = [r.id for r in col.search("the app crashes", k=5, mode="semantic")]
    seen = sweep(base, tmp_path / "exchange", ["rollback", "COL", "-q"], check)
    assert {v for _, _, v in seen} == {1, 2}
    # where the file system cannot exchange two directories: two renames, the second one
    # finished by whoever looks next if a kill falls between them
    seen = sweep(base, tmp_path / "renames", ["rollback", "COL", "-q"], check,
                 extra=NO_EXCHANGE, syscalls=("rename", "fsync"))
    assert {v for _, _, v in seen} == {1, 2}
