"""Giving freed memory back to the system, so that a long job's next phase does not stack on
memory its last phase no longer uses.

glibc keeps freed heap memory for reuse, and pyarrow's memory pool (mimalloc) keeps what a
thread freed until asked; both count in the process' resident memory and its peak. Example::

    release_freed_memory()  # after reading a corpus, before building an index
"""

from __future__ import annotations

import contextlib
import ctypes
import sys

__all__ = ["malloc_trim", "release_freed_memory"]


def malloc_trim() -> None:
    """Hand memory the heap holds free back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def release_freed_memory() -> None:
    """:func:`malloc_trim`, and the freed memory pyarrow's pool holds (when pyarrow was
    imported; this thread's share of it: call it from the thread that freed it)."""
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        with contextlib.suppress(Exception):  # (an old pyarrow, another pool)
            pa.default_memory_pool().release_unused()
    malloc_trim()
