"""Errors raised by neartext.

Every error is a :class:`NeartextError`; each specific one also subclasses the matching builtin,
so ``except ValueError`` keeps working for callers who do not know neartext's types.
Front ends (CLI, service) print ``str(error)``: messages are one line and name the file, row or
value at fault.
"""

from __future__ import annotations

from typing import Any


class NeartextError(Exception):
    """Base class of all neartext errors."""


class Interrupted(NeartextError):
    """Work stopped on request (Ctrl-C) after saving what it could; the message says what."""


class InputError(NeartextError, ValueError):
    """Bad user input: a corpus file, a column, an option value."""


class CorpusFileNotFound(NeartextError, FileNotFoundError):
    """A corpus file that does not exist."""


class CollectionNotFound(NeartextError, FileNotFoundError):
    """A collection that does not exist at the given location."""


class CollectionExists(NeartextError, FileExistsError):
    """Creating a collection where one already exists."""


class ModelMismatch(NeartextError, ValueError):
    """A collection opened with a model other than the one it was built with."""


class ModelNotFound(NeartextError, FileNotFoundError):
    """A model name or path that cannot be resolved locally."""


class MissingExtra(NeartextError, ImportError):
    """An optional dependency is not installed; the message names the install command."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"{module} is not installed; install it with: pip install 'neartext[{extra}]'"
        )
        self.module = module
        self.extra = extra


class CorruptCollection(NeartextError, RuntimeError):
    """A collection whose files are unreadable or inconsistent."""


class StoreUnavailable(NeartextError, ConnectionError):
    """A store server (Milvus) that cannot be reached or keeps failing; the message names it."""


class Unsupported(NeartextError, ValueError):
    """An operation the collection's store cannot do; the message says what to use instead."""


class StorageError(NeartextError, OSError):
    """A collection's files could not be written (disk full, read-only, locked); the message
    says what happened to the change. ``kind``: ``full``, ``read-only``, ``locked`` or ``io``."""

    def __init__(self, message: str, kind: str = "io") -> None:
        super().__init__(message)
        self.kind = kind


class CollectionReplaced(NeartextError):
    """The collection this process opened was replaced by a new version (another process's
    ``reindex`` swapped in a re-embedded copy): a write to the old one is refused, nothing
    written. The service and the CLI make such a write again on the new version, at most
    :data:`SWAP_RETRIES` times (each swap is minutes of work: a second one meanwhile is rare,
    a third means something else is wrong).

    On Milvus a swap may begin while a write runs: the write is then made on the old version
    and found out after; ``done`` is what it did there (the store's write result), so that
    the repeat on the new one, which may find it done already, reports the change all the
    same."""

    def __init__(self, message: str, done: Any = None) -> None:
        super().__init__(message)
        self.done = done


SWAP_RETRIES = 2


class CollectionBusy(NeartextError, BlockingIOError):
    """Another process holds a lock this operation needs (a build of the same collection)."""


class ServerUnreachable(NeartextError, ConnectionError):
    """A server neartext depends on (the Telegram Bot API) could not be reached after retries;
    the message names it."""
