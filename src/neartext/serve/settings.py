"""What ``neartext serve`` is told: the collections to serve, the key, the limits.

Example:
    >>> s = ServeSettings.from_args(["memes=data/memes", "feedback/"])
    >>> s.collections
    {'memes': 'data/memes', 'feedback': 'feedback/'}
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from neartext.data.address import parse_address
from neartext.errors import InputError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
API_KEY_ENV = "NEARTEXT_API_KEY"


def check_port(port: int) -> int:
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: give a port between 1 and 65535")
    return port


def check_name(name: str) -> str:
    """A collection name is a URL path segment: letters, digits, ``_ . -``; no ``..``."""
    if not NAME.match(name) or ".." in name:
        raise InputError(f"invalid collection name {name!r}: use letters, digits, '_', '.' and '-' "
                         "(at most 64, starting with a letter or digit)")
    return name


@dataclass
class ServeSettings:
    """Everything :func:`neartext.serve.create_app` needs.

    Limits are answered with 413 (body size, texts per request, queries x k above
    ``max_results``) or 422 (text length, k). A request with more texts than ``max_batch``, or
    texts costing more than ``max_batch_tokens`` (tokens estimated from the characters, at
    most the model's limit per text), is encoded and searched in turns of that much, so
    requests of other clients go between them: a client sending long texts cannot hold the
    model for longer than a turn (on the 2-core machine a turn of 1,024 tokens is four long
    texts, about a quarter of a second).
    ``max_batch``/``max_wait_ms`` shape micro-batching: concurrent requests are encoded together
    in batches of up to ``max_batch`` texts, waiting at most ``max_wait_ms`` for more to arrive;
    ``max_batch=1`` encodes each request on its own. A micro-batch is encoded in forward passes
    of ``forward_batch`` texts, sorted by length: small passes pad short queries less (on the
    2-core benchmark machine 8 texts per pass encoded 32 Quora questions in 70 ms mean / 96 ms
    worst against 85 / 179 ms in one pass of 32).
    ``improve_every``: after this many new ratings of a collection, the service runs
    ``neartext improve`` on it in the background (searches go on; the new version, if the
    gate lets it through, serves every search from then on).
    """

    collections: dict[str, str] = field(default_factory=dict)
    api_key: str | None = None
    model: str | None = None
    max_body_bytes: int = 2_000_000
    max_texts: int = 256
    max_text_chars: int = 10_000
    max_k: int = 1000
    max_results: int = 10_000  # queries x k in one search request
    max_batch: int = 64
    max_batch_tokens: int = 1024
    max_wait_ms: float = 2.0
    forward_batch: int = 8
    improve_every: int | None = None  # run ``improve`` after this many new ratings

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_texts", "max_text_chars", "max_k", "max_results",
                     "max_batch", "max_batch_tokens", "forward_batch"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1 "
                                 f"(got {getattr(self, name)})")
        if self.improve_every is not None and self.improve_every < 1:
            raise InputError(f"--improve-every must be at least 1 (got {self.improve_every})")
        if self.max_wait_ms < 0:
            raise InputError(f"--max-wait-ms must be 0 or more (got {self.max_wait_ms})")

    @classmethod
    def from_args(cls, specs: Sequence[str], **kw: object) -> ServeSettings:
        """Build from ``name=path`` or ``path`` arguments (the name is then the directory's)."""
        cols: dict[str, str] = {}
        for spec in specs:
            name, sep, path = spec.partition("=")
            if not sep:
                path = spec
                address = parse_address(spec)
                name = address.name or Path(spec.rstrip("/\\")).name
            check_name(name)
            if name in cols:
                raise InputError(f"two collections are named {name!r}; give one as NAME=PATH")
            cols[name] = path
        if kw.get("api_key") is None:
            kw["api_key"] = os.environ.get(API_KEY_ENV) or None
        return cls(collections=cols, **kw)  # type: ignore[arg-type]
