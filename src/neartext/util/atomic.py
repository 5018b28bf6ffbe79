"""Write to a temporary place, publish when complete: the one home of all-or-nothing outputs.

A killed process leaves the previous file or directory (and at worst a temporary file named
``.NAME.tmpPID-N``, which :func:`neartext.store.local.files.remove_orphan_temp_files` clears), never a
half-written one. A directory that replaces another (a collection's new version) does so in
one step, :func:`swap_dirs`, and a swap a kill interrupted is finished or undone by the next
process that looks (:func:`settle_swap`).

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
import ctypes
import errno
import fcntl
import itertools
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from neartext.errors import CorruptCollection, NeartextError, StorageError

#: the names staged_file uses (``.NAME.tmpPID-N``, N unique in the process, so that threads
#: writing the same file at once never share one); a file matching this whose process is gone
#: is an orphan
TEMP_NAME = re.compile(r"^\..+\.tmp(\d+)(-\d+)?(\.\w+)?$")
_TEMP_SERIAL = itertools.count()
_TEMP_SERIAL_LOCK = threading.Lock()


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


def temp_path(path: Path, suffix: str = "") -> Path:
    """A temporary name beside ``path`` that no other thread or process uses."""
    with _TEMP_SERIAL_LOCK:
        n = next(_TEMP_SERIAL)
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{n}{suffix}")


@contextlib.contextmanager
def staged_file(path: Path, suffix: str = "", *, what: str = "the output",
                outcome: str = "nothing was written there") -> Iterator[Path]:
    """A temporary path beside ``path`` (``.NAME.tmpPID`` + ``suffix``, for writers that
    insist on an extension); when the block completes its data is synced to disk and it replaces
    ``path`` in one rename; if the block fails it is removed. A write that fails for lack of
    space or permission is a :class:`StorageError` naming ``path`` (``what`` and ``outcome``
    word it)."""
    tmp = temp_path(path, suffix)
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
    """Move a completed ``staged`` directory to ``out``, replacing what was there in one step
    (exchanged where the file system can, so ``out`` is never missing; the old one, then at
    ``staged``, is removed)."""
    if out.exists() and exchange(staged, out):
        fsync_dir(out.parent)
        shutil.rmtree(staged, ignore_errors=True)
        return
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    staged.rename(out)
    fsync_dir(out.parent)
    shutil.rmtree(old, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    """Make the renames in directory ``path`` durable (best effort: some file systems refuse)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc: ctypes.CDLL | None = None


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` (both exist) in one atomic step (Linux'
    ``renameat2(RENAME_EXCHANGE)``); False where the system or file system cannot, and nothing
    was done."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(_libc, "renameat2", None)
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


# -- replacing a directory by another in one step -------------------------------------------------
#
# ``swap_dirs(target, new)`` first writes a journal beside the target (``.NAME.swap``: the
# directories' inodes and where the old one goes), then exchanges the two directories in one
# rename (two renames where the file system cannot exchange), moves the old one aside and
# removes the journal. A process killed anywhere in between leaves the journal, and whoever
# next looks at ``target`` (:func:`settle_swap`: opening, creating, building beside) reads
# where things are by their inodes and finishes the swap (the new directory was in place, or
# the old one had already left ``target``) or undoes it (the old one was still in place: the
# journal goes, the new directory stays where it was built). ``target`` is therefore never
# without a collection, and never one half swapped.


def _journal(target: Path) -> Path:
    return target.with_name(f".{target.name}.swap")


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


@contextlib.contextmanager
def _journal_lock(target: Path, create: bool, wait: bool = True) -> Iterator[int | None]:
    """The journal's ``flock`` (made with ``create``), held for the block; yields its file
    descriptor, or None when there is no journal (and ``create`` is false) or, without
    ``wait``, when a live process holds it."""
    path = _journal(target)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        except FileNotFoundError:
            yield None
            return
        except OSError as e:  # a read-only place: look, without changing anything
            if create or e.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise
            fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield None
            return
        if _inode(path) == os.fstat(fd).st_ino:  # still the journal at the path
            break
        os.close(fd)  # the swap it guarded finished (and removed it) while this one waited
    try:
        yield fd
    finally:
        os.close(fd)


def swap_dirs(target: Path, new: Path, previous: Path, keep_previous: bool = False) -> None:
    """Put the directory ``new`` in the place of ``target`` in one step; the old one goes to
    ``previous`` (what was there is removed first), which is removed at the end unless
    ``keep_previous``. Crash-safe: see :func:`settle_swap`."""
    if previous.exists():  # an older one kept, or one a kill left (it may be large)
        shutil.rmtree(previous)
    while True:
        settle_swap(target)  # an earlier swap a kill interrupted
        with _journal_lock(target, create=True) as fd:
            assert fd is not None
            if os.fstat(fd).st_size:  # another one's record, left since: settled first
                continue
            _swap_locked(target, new, previous, keep_previous, fd)
            return


def _swap_locked(target: Path, new: Path, previous: Path, keep_previous: bool, fd: int) -> None:
    entry = {"new": new.name, "new_inode": _inode(new), "old_inode": _inode(target),
             "previous": previous.name, "keep_previous": keep_previous}
    if entry["new_inode"] is None or entry["old_inode"] is None:
        raise FileNotFoundError(errno.ENOENT, "nothing to swap",
                                str(new if entry["new_inode"] is None else target))
    os.pwrite(fd, json.dumps(entry).encode(), 0)
    os.fsync(fd)
    fsync_dir(target.parent)
    if exchange(new, target):  # the old one is now at ``new``
        fsync_dir(target.parent)
        new.rename(previous)
    else:
        target.rename(previous)
        new.rename(target)
    fsync_dir(target.parent)
    if not keep_previous:  # before the record goes: a kill meanwhile, and the next one does it
        shutil.rmtree(previous, ignore_errors=True)
    _journal(target).unlink()
    fsync_dir(target.parent)


def settle_swap(target: Path) -> None:
    """Finish or undo a :func:`swap_dirs` of ``target`` that a killed process left. One
    ``stat`` when there is none. A swap under way in another process is waited for only when
    nothing is at ``target`` (between its two renames, where the file system cannot
    exchange); otherwise what is there is a whole version, the old or the new."""
    if not _journal(target).exists():
        return
    whole = (target / "manifest.json").is_file()
    if whole and not os.access(target.parent, os.W_OK):
        return  # a read-only copy: what is there is searched as it is
    with _journal_lock(target, create=False, wait=not whole) as fd:
        if fd is not None:
            _settle(target, fd, remove_empty=True)


def _settle(target: Path, fd: int, remove_empty: bool = False) -> None:
    """What :func:`settle_swap` does, holding the journal's lock."""
    journal = _journal(target)
    raw = os.pread(fd, 4096, 0)
    if not raw:  # made, nothing written yet: no swap began
        if remove_empty:
            with contextlib.suppress(OSError):
                journal.unlink()
        return
    try:
        entry = json.loads(raw)
        new = target.with_name(entry["new"])
        previous = target.with_name(entry["previous"])
        old_ino, new_ino = int(entry["old_inode"]), int(entry["new_inode"])
        keep = bool(entry.get("keep_previous"))
    except (ValueError, KeyError, TypeError):
        raise CorruptCollection(f"{journal}: the record of an interrupted swap of {target} is "
                                "unreadable; look at it and at the directories beside "
                                f"{target.name} before removing it") from None
    try:
        at_target = _inode(target)
        if at_target == old_ino:
            pass  # killed before the exchange: undone (the new version stays where it was built)
        elif at_target == new_ino:  # exchanged: the old one goes aside
            if _inode(new) == old_ino:
                shutil.rmtree(previous, ignore_errors=True)
                new.rename(previous)
        elif at_target is None and _inode(new) == new_ino and _inode(previous) == old_ino:
            new.rename(target)  # killed between the two renames: the second one
        else:
            raise CorruptCollection(
                f"{target}: a swap of versions was interrupted and the directories beside it "
                f"are not as its record {journal} says; nothing was changed: look at "
                f"{target.name}, {new.name} and {previous.name} before removing that record")
        fsync_dir(target.parent)
        if not keep and at_target != old_ino:
            shutil.rmtree(previous, ignore_errors=True)
        journal.unlink()
        fsync_dir(target.parent)
    except OSError as e:
        raise StorageError(f"{target}: a swap of versions was interrupted and could not be "
                           f"finished here ({e.strerror or e}); nothing was changed", "io") \
            from None
