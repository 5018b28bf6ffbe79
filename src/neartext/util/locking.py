"""Exclusive locks between processes: one run at a time builds a given collection.

The lock is an ``flock`` on a file inside the directory it guards, so it is released by the
kernel when its holder exits or is killed (no stale lock to clear by hand), and the file says who
holds it for the message the next run prints.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "col.partial"
    >>> with exclusive(d, "building col"):
    ...     (d / "build.lock").is_file()
    True
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from neartext.errors import CollectionBusy

LOCK_FILE = "build.lock"


@contextlib.contextmanager
def exclusive(directory: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (made if needed) for the block; another process
    asking meanwhile gets :class:`CollectionBusy` naming the holder. ``what`` describes the work
    for that message. The lock file is removed by :func:`release_file` before the directory is
    renamed or deleted."""
    path = directory / LOCK_FILE
    while True:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise CollectionBusy(f"{directory}: {what} is already under way ({holder}); wait for "
                                 "it to finish or stop it, then run this again") from None
        try:  # the file locked must still be the one at the path (a finished run renames it)
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)
    try:
        yield
    finally:
        os.close(fd)


def release_file(directory: Path) -> None:
    """Remove the lock file (while still holding the lock) before ``directory`` is renamed or
    deleted, so that a waiting run does not lock a file at a path that no longer exists."""
    (directory / LOCK_FILE).unlink(missing_ok=True)


@contextlib.contextmanager
def waiting(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` (made if needed) for the block, waiting
    for another holder to finish: for short critical sections between processes, such as a
    manifest's read-modify-write."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
