"""The chat bot without Telegram: where answers come from, how they read, who may ask how often.

A :class:`Backend` answers queries and stores ratings: :class:`LocalBackend` over a collection
opened once in this process, or :class:`ServiceBackend` over a running ``neartext serve`` (its
``/search`` and ``/feedback`` routes). :func:`format_result` turns a hit into a message,
:class:`RateLimiter` keeps one chat from flooding the bot, :class:`Ratings` maps the short ids in
👍/👎 buttons (Telegram allows 64 bytes of callback data) back to (query, document).

Example::

    backend = LocalBackend("memes/")
    hits = await backend.search("when the exam is postponed", k=5)
    text = format_result(1, hits[0], show=["title", "link"])
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from neartext.collection import Collection
from neartext.data.results import SearchResult
from neartext.engine.feedback import FeedbackStore
from neartext.engine.searching import check_fields
from neartext.errors import InputError, ModelMismatch, NeartextError
from neartext.util.retry import call as retry_call

if TYPE_CHECKING:
    from neartext.collection import Collection

MAX_QUERY_CHARS = 500
DEFAULT_START = ("Hi! Describe a situation in a few words and I will find the closest matches. "
                 "Rate each answer with 👍 or 👎: it helps to make the search better.")
DEFAULT_HELP = ("Send me a short text (up to {max_chars} characters) and I answer with the {k} "
                "closest matches. 👍/👎 under an answer rates it.")
DEFAULT_NOTHING = "Nothing close enough this time. Try other words?"


class Backend(Protocol):
    name: str

    async def search(self, query: str, k: int, threshold: float | None = None) -> list[SearchResult]: ...

    async def rate(self, query: str, doc_id: str, relevant: bool) -> None: ...

    def close(self) -> None: ...


class LocalBackend:
    """A collection opened (and its model loaded) once, searched in a worker thread."""

    def __init__(self, path: str | Path) -> None:

        self.collection = Collection.open(path)
        # what encodes queries, now rather than at the first message: the ONNX export a search
        # left beside the collection when there is one (no torch), else the model
        self.collection.query_encoder  # noqa: B018
        self.feedback = FeedbackStore(self.collection.path)
        self.name = self.collection.path.name
        self._lock = threading.Lock()
        self._retired: list[Collection] = []  # old versions: searches of them may be running

    def check_fields(self, fields: list[str]) -> None:
        """Fields an answer shows (``--show``, ``--photo-column``): ``text`` or metadata."""
        try:
            check_fields(self.collection.store, fields, "--show/--photo-column")
        except InputError:
            self.close()
            raise

    async def search(self, query: str, k: int, threshold: float | None = None) -> list[SearchResult]:
        def run() -> list[SearchResult]:
            return list(self._current().search(query, k, threshold=threshold))

        return await asyncio.to_thread(run)

    def _current(self) -> Collection:
        """The collection, opened again when another process swapped a new version in (a
        reindex, a both-side adapter, a rollback across models): its model is kept when the
        new version has the same one."""

        with self._lock:
            old = self.collection
            if old.store.replaced():
                new = Collection.open(old.address)
                with contextlib.suppress(ModelMismatch):
                    new.use_encoder(old.encoder)
                self.collection = new
                self._retired.append(old)
            return self.collection

    async def rate(self, query: str, doc_id: str, relevant: bool) -> None:
        await asyncio.to_thread(self.feedback.add, query, doc_id, relevant)

    def close(self) -> None:
        self.feedback.close()
        for c in [*self._retired, self.collection]:
            c.close()


class ServiceError(NeartextError):
    """A neartext service answered with an error (``status``) or could not be reached (None)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def _transient(e: BaseException) -> bool:
    return isinstance(e, ServiceError) and e.status in (None, 502, 503, 504)


class ServiceBackend:
    """A running ``neartext serve``: ``url`` like ``http://127.0.0.1:8000/collections/memes``."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        if "/collections/" not in self.url:
            raise InputError(f"{url}: give the collection's URL, e.g. "
                             "http://127.0.0.1:8000/collections/memes")
        self.name = self.url.rsplit("/", 1)[-1]
        self.api_key = api_key
        self.timeout = timeout
        self._call("GET", "")  # fail now, with the URL, if the service is not there

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("detail", "")
            except Exception:
                detail = ""
            raise ServiceError(f"{self.url}{path}: HTTP {e.code} {detail}".strip(),
                               e.code) from None
        except (urllib.error.URLError, OSError) as e:
            raise ServiceError(f"{self.url}: cannot reach the service ({e})", None) from None

    def _retried(self, method: str, path: str, body: Any = None) -> Any:
        """:meth:`_call` with the retry policy: the service restarting or overloaded (no
        connection, 502/503/504) is retried; a refusal (4xx) is not."""
        return retry_call(lambda: self._call(method, path, body), transient=_transient,
                          what=f"{self.url}{path}", attempts=4)

    async def search(self, query: str, k: int, threshold: float | None = None) -> list[SearchResult]:
        body = {"query": query, "k": k, "threshold": threshold}
        data = await asyncio.to_thread(self._retried, "POST", "/search", body)
        return [SearchResult(h["id"], h["text"], float(h["score"]), h.get("metadata") or {})
                for h in data["results"][0]]

    async def rate(self, query: str, doc_id: str, relevant: bool) -> None:
        await asyncio.to_thread(self._retried, "POST", "/feedback",
                                {"query": query, "doc_id": doc_id, "relevant": relevant})

    def close(self) -> None:
        pass


def format_result(rank: int, hit: SearchResult, show: list[str] | None = None) -> str:
    """HTML message text for one answer: the ``show`` fields (``text`` is the document's text,
    other names are metadata columns; default: the text), links made clickable."""
    parts = []
    for f in show or ["text"]:
        value = hit.text if f == "text" else hit.metadata.get(f)
        if value is None or value == "":
            continue
        value = str(value)
        if value.startswith(("http://", "https://")):
            parts.append(f'<a href="{html.escape(value, quote=True)}">{html.escape(value)}</a>')
        elif f in ("title", "name", "header"):
            parts.append(f"<b>{html.escape(value)}</b>")
        else:
            parts.append(html.escape(value))
    body = "\n".join(parts) or html.escape(hit.text)
    return f"{rank}. {body}"


def photo_url(hit: SearchResult, column: str | None) -> str | None:
    """The image URL in ``column`` of the hit's metadata, if there is one."""
    if not column:
        return None
    value = str(hit.metadata.get(column) or "")
    return value if value.startswith(("http://", "https://")) else None


class RateLimiter:
    """At most ``per_minute`` queries per chat in any 60-second window. What it keeps of the
    chats grows with those seen in the last minute, not with every chat the bot ever had (a
    chat silent for a minute is forgotten at the next sweep).

    >>> limiter = RateLimiter(2)
    >>> limiter.allow(1), limiter.allow(1), limiter.allow(1), limiter.allow(2)
    (True, True, False, True)
    """

    def __init__(self, per_minute: int = 20, clock: Any = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._seen: dict[int, deque[float]] = {}
        self._sweep_at = 1024  # chats kept when the silent ones are forgotten next

    def allow(self, chat: int) -> bool:
        now = self.clock()
        if len(self._seen) >= self._sweep_at:
            self._seen = {c: q for c, q in self._seen.items() if q and now - q[-1] < 60}
            self._sweep_at = max(1024, 2 * len(self._seen))  # (a sweep per as many new chats)
        q = self._seen.setdefault(chat, deque())
        while q and now - q[0] >= 60:
            q.popleft()
        if len(q) >= self.per_minute:
            return False
        q.append(now)
        return True


class Ratings:
    """Short ids for (query, document) pairs shown with 👍/👎 buttons; the oldest are forgotten
    after ``size`` (a rating of a forgotten answer is refused politely)."""

    def __init__(self, size: int = 50_000) -> None:
        self.size = size
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._next = 0

    def put(self, query: str, doc_id: str) -> str:
        self._next += 1
        key = format(self._next, "x")
        self._items[key] = (query, doc_id)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return key

    def get(self, key: str) -> tuple[str, str] | None:
        return self._items.get(key)
