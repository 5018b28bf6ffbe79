"""Where a collection lives: a local directory, a Milvus server, or a Milvus Lite file.

Every command that takes a collection takes an *address*:

- ``feedback/`` — a directory (the embedded store: SQLite + a vector index);
- ``milvus://db-host:19530/feedback`` — collection ``feedback`` on a Milvus server or cluster
  (``milvus+https://`` for TLS; credentials from ``NEARTEXT_MILVUS_TOKEN``, ``user:password``
  or an API key; a Milvus database other than ``default`` as ``milvus://host:port/db/name``);
- ``milvus-lite:./feedback.db`` — Milvus Lite, embedded, in a local file; the collection is
  named after the file (``feedback``) unless given as ``milvus-lite:./data.db#feedback``.

Example:
    >>> a = parse_address("milvus://db-host:19530/feedback")
    >>> a.kind, a.uri, a.name
    ('milvus', 'http://db-host:19530', 'feedback')
    >>> parse_address("milvus-lite:./store.db#memes").name
    'memes'
    >>> parse_address("feedback/").kind
    'local'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from neartext.errors import InputError

MILVUS_SCHEMES = ("milvus://", "milvus+https://", "milvus+http://")
LITE_PREFIX = "milvus-lite:"
# Milvus collection names: a letter or underscore, then letters, digits and underscores.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")


AddressKind = Literal["local", "milvus", "milvus-lite"]


@dataclass(frozen=True)
class Address:
    """A parsed collection address; ``str(address)`` gives it back as the user wrote it."""

    kind: AddressKind
    text: str
    path: Path | None = None  # the directory (local) or the Milvus Lite file
    uri: str | None = None  # what pymilvus connects to
    name: str | None = None  # the Milvus collection
    db_name: str = ""

    def __str__(self) -> str:
        return self.text

    def same_as(self, other: Address) -> bool:
        """Whether both name the same collection (directories compared resolved)."""
        if self.kind == other.kind == "local":
            assert self.path is not None and other.path is not None
            return self.path.resolve() == other.path.resolve()
        return (self.kind, self.uri, self.db_name, self.name) == \
            (other.kind, other.uri, other.db_name, other.name)

    def state_dir(self) -> Path:
        """A local directory for what is not kept in the store itself (feedback ratings, map
        caches): the collection directory, or a directory per Milvus collection."""
        if self.kind == "local":
            assert self.path is not None
            return self.path
        if self.kind == "milvus-lite":
            assert self.path is not None and self.name is not None
            return self.path.with_name(self.path.name + ".neartext") / self.name
        home = Path(os.environ.get("NEARTEXT_STATE_DIR") or
                    Path.home() / ".local" / "share" / "neartext")
        assert self.uri is not None and self.name is not None
        host = re.sub(r"[^A-Za-z0-9.-]+", "_", urlsplit(self.uri).netloc)
        return home / "milvus" / host / (self.db_name or "default") / self.name


def parse_address(address: str | Path | Address) -> Address:
    """Parse a collection address (see the module docstring); :class:`InputError` if malformed."""
    if isinstance(address, Address):
        return address
    if isinstance(address, Path):
        return Address("local", str(address), path=address)
    text = address.strip()
    low = text.lower()
    if low.startswith(LITE_PREFIX):
        rest = text[len(LITE_PREFIX):]
        file, _, name = rest.partition("#")
        if not file:
            raise InputError(f"'{text}': give a file after milvus-lite:, e.g. milvus-lite:./feedback.db")
        path = Path(file).expanduser()
        name = name or path.stem
        _check_name(text, name, hint=f"{LITE_PREFIX}{file}#a_name")
        return Address("milvus-lite", text, path=path, uri=str(path.absolute()), name=name)
    if low.startswith(MILVUS_SCHEMES):
        parts = urlsplit(text)
        if not parts.hostname:
            raise InputError(f"'{text}': no host; write milvus://HOST:PORT/COLLECTION")
        try:
            port = parts.port or 19530
        except ValueError:
            raise InputError(f"'{text}': the port is not a number") from None
        segments = [s for s in parts.path.split("/") if s]
        if len(segments) not in (1, 2):
            raise InputError(f"'{text}': write milvus://HOST:PORT/COLLECTION "
                             "(or milvus://HOST:PORT/DATABASE/COLLECTION)")
        name = segments[-1]
        db = segments[0] if len(segments) == 2 else ""
        _check_name(text, name, hint="milvus://HOST:PORT/a_name")
        if db:
            _check_name(text, db, hint="milvus://HOST:PORT/a_database/a_name", what="database")
        scheme = "https" if parts.scheme == "milvus+https" else "http"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return Address("milvus", text, uri=f"{scheme}://{host}:{port}", name=name, db_name=db)
    if "://" in text:
        raise InputError(f"'{text}': unknown address scheme; use a directory, milvus://HOST:PORT/NAME "
                         "or milvus-lite:FILE")
    return Address("local", text, path=Path(text))


def _check_name(text: str, name: str, *, hint: str, what: str = "collection") -> None:
    if not _NAME.match(name):
        raise InputError(
            f"'{text}': '{name}' is not a valid Milvus {what} name (letters, digits and "
            f"underscores, not starting with a digit); name it explicitly, e.g. {hint}")
