"""Write to a temporary place, publish when complete: the one home of all-or-nothing outputs.

A killed process leaves the previous file or directory (and at worst a temporary file named
``.NAME.tmpPID``, which :func:`neartext.store.local.remove_orphan_temp_files` clears), never a
half-written one.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> with staged_file(out) as tmp:
    ...     _ = tmp.write_text("complete")
    >>> out.read_text()
    'complete'
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from .errors import NeartextError, StorageError

#: the names staged_file uses; a file matching this whose process is gone is an orphan
TEMP_NAME = re.compile(r"^\..+\.tmp(\d+)(\.\w+)?$")


_WRITE_ERRNOS = {errno.ENOSPC: "full", errno.EDQUOT: "full", errno.EFBIG: "full",
                 errno.EROFS: "read-only", errno.EACCES: "read-only", errno.EPERM: "read-only",
                 errno.EIO: "io"}


def write_error(path: Path, e: OSError, what: str = "the output",
                outcome: str = "nothing was written there") -> StorageError | None:
    """A failed write (a full disk, a read-only file system, an I/O error) as one line naming
    ``path``, the cause and what happened; None for any other error (a neartext error, a file
    the block could not find), which is raised as it is."""
    if isinstance(e, NeartextError):
        return None
    text = f"{e.strerror or e}"
    kind = _WRITE_ERRNOS.get(e.errno or 0)
    if kind is None and "No space left" in text:  # pyarrow's errors carry no errno
        kind = "full"
    if kind is None:
        return None
    if kind == "full":
        text = "No space left on device"
    return StorageError(f"{path}: {what} could not be written ({text}); {outcome}", kind)


@contextlib.contextmanager
def staged_file(path: Path, suffix: str = "", *, what: str = "the output",
                outcome: str = "nothing was written there") -> Iterator[Path]:
    """A temporary path beside ``path`` (``.NAME.tmpPID`` + ``suffix``, for writers that
    insist on an extension); when the block completes its data is synced to disk and it replaces
    ``path`` in one rename; if the block fails it is removed. A write that fails for lack of
    space or permission is a :class:`StorageError` naming ``path`` (``what`` and ``outcome``
    word it)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        error = write_error(path, e, what, outcome)
        if error is None:
            raise
        raise error from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged_dir(out: Path, *, make: bool = True) -> Iterator[Path]:
    """An empty ``<out>.partial`` directory (not yet made with ``make=False``, for writers that
    create it themselves); when the block completes it replaces ``out`` (renamed into place, an
    existing ``out`` moved aside first and then removed); if the block fails it is removed."""
    staged = out.with_name(out.name + ".partial")
    shutil.rmtree(staged, ignore_errors=True)
    if make:
        staged.mkdir()
    try:
        yield staged
    except OSError as e:
        shutil.rmtree(staged, ignore_errors=True)
        error = write_error(out, e)
        if error is None:
            raise
        raise error from None
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    publish_dir(staged, out)


def publish_dir(staged: Path, out: Path) -> None:
    """Move a completed ``staged`` directory to ``out``, replacing what was there."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)
