"""The service's library side: open collections, share encoders, batch concurrent work.

:class:`Engine` knows nothing about HTTP; :mod:`neartext.serve.app` is a thin FastAPI adapter
over it. Collections that use the same model share one encoder and one micro-batcher, so the
queries of concurrent searches (and texts of ``/embed`` calls) are encoded in one call, and
searches of the same collection with the same filter run as one vector-index search.

Example::

    engine = Engine(ServeSettings.from_args(["demo/feedback"]))
    await engine.start()
    hits = await engine.search("feedback", ["app crashes"], SearchOptions(k=5))
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from neartext.algo.adapters import Adapter
from neartext.collection import Collection
from neartext.data.address import Address
from neartext.data.filters import Filter
from neartext.data.manifest import Manifest
from neartext.data.ranking import TEXT_MODES, Fusion, Mode, SearchOptions
from neartext.data.results import SearchResult
from neartext.encoders import Encoder, EncoderSettings, load_encoder
from neartext.encoders.deferred import DeferredEncoder
from neartext.engine.feedback import FeedbackStore
from neartext.engine.query_encoder import cached_query_encoder
from neartext.errors import SWAP_RETRIES, CollectionReplaced, InputError
from neartext.ops.improve import improve, last_ratings_used
from neartext.serve.batcher import MicroBatcher
from neartext.serve.settings import ServeSettings

log = logging.getLogger("neartext.serve")


class NotFound(LookupError):
    """A collection or document the request names does not exist (HTTP 404)."""


class Busy(RuntimeError):
    """The work asked for is already under way (HTTP 409)."""


Kind = Literal["query", "document"]


@dataclass
class EncodeJob:
    texts: list[str]
    kind: Kind


@dataclass
class SearchJob:
    collection: Collection  # the one served when the request came (a reindex may replace it)
    queries: list[str]
    options: SearchOptions | Named  # Named: resolved in the batch against the version then
    filter: Filter


@dataclass(frozen=True)
class Named:
    """What a request named of its ranking; the rest comes from the collection's version
    current when the search runs (so a promotion switches every search at once)."""

    k: int = 10
    threshold: float | None = None
    mode: Mode | None = None
    fusion: Fusion | None = None
    alpha: float | None = None


Job = EncodeJob | SearchJob


@dataclass
class Served:
    """One served collection."""

    name: str
    collection: Collection
    feedback: FeedbackStore
    model_key: str


def _job_size(job: Job) -> int:
    return len(_job_texts(job))


def _job_texts(job: Job) -> list[str]:
    return job.texts if isinstance(job, EncodeJob) else job.queries


#: characters per token when a text's cost is estimated (wordpieces of English run to about
#: four characters; the estimate only shapes turns and batches)
CHARS_PER_TOKEN = 4


def text_cost(text: str, max_tokens: int | None) -> int:
    """The work of encoding ``text`` in estimated tokens (a model truncates at
    ``max_tokens``)."""
    tokens = len(text) // CHARS_PER_TOKEN + 2
    return tokens if max_tokens is None else min(tokens, max_tokens)


def _model_key(settings: dict[str, Any], name: str) -> str:
    return json.dumps({**settings, "model": name}, sort_keys=True)


class Engine:
    """Collections, encoders and batchers of one service process."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.collections: dict[str, Served] = {}
        # per model: the encoder (deferred: loaded at the first document to encode) and what
        # encodes queries (a collection's cached ONNX export when there is one: no torch)
        self.encoders: dict[str, Encoder] = {}
        self.query_encoders: dict[str, Encoder] = {}
        self.batchers: dict[str, MicroBatcher[Job]] = {}
        self.default_key = ""
        # One writer for every collection: writes never race, reads go on meanwhile.
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="neartext-writer")
        # ``improve`` runs (seconds of training) have a thread of their own, one at a time
        self.improver = ThreadPoolExecutor(1, thread_name_prefix="neartext-improve")
        self.improving: dict[str, asyncio.Future[Any]] = {}
        self.improve_runs: dict[str, dict[str, Any]] = {}  # the last run of each, or this one
        self.tasks: set[asyncio.Task[None]] = set()
        self.retired: list[Served] = []  # replaced by a reindex elsewhere; closed at stop
        self._replacing: dict[str, asyncio.Lock] = {}  # one opening of a new version at a time
        try:
            for name, path in settings.collections.items():
                self.collections[name] = self._open(name, path)
        except BaseException:
            for s in self.collections.values():
                s.feedback.close()
                s.collection.close()
            raise
        if settings.model is not None or not self.encoders:
            enc = _served_encoder(EncoderSettings(model=settings.model or "default",
                                                  batch_size=settings.forward_batch))
            key = _model_key(enc.settings.to_dict(), enc.settings.model)
            self.encoders.setdefault(key, enc)
            self.default_key = key
        else:
            self.default_key = next(iter(self.encoders))

    def _open(self, name: str, path: str) -> Served:
        """Open a collection once; collections of the same model share one encoder."""
        col = Collection.open(path)
        col.shared = True  # a version swapped in by an improve here is opened anew (get)
        try:
            key = self._encoder_of(col.manifest, col.path)
            col.use_encoder(self.encoders[key])  # checks the fingerprint
            return Served(name, col, FeedbackStore(col.path), key)
        except BaseException:
            col.close()
            raise

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        for key, enc in self.encoders.items():
            self._start_batcher(key, enc)
        # The model, torch and the web stack are half a million long-lived objects; a full
        # garbage collection walking them stalls every request for ~200 ms (measured on the
        # 2-core benchmark machine). Frozen, they are left out of collections for good.
        gc.collect()
        gc.freeze()

    def _start_batcher(self, key: str, enc: Encoder) -> None:
        """The micro-batcher of one model (called in the event loop)."""
        cap = enc.max_tokens
        b: MicroBatcher[Job] = MicroBatcher(
            functools.partial(self._handle, key), max_items=self.settings.max_batch,
            max_wait=self.settings.max_wait_ms / 1000, size=_job_size,
            max_cost=self.settings.max_batch_tokens,
            cost=lambda job: sum(text_cost(t, cap) for t in _job_texts(job)))
        b.start_now()
        self.batchers[key] = b

    async def stop(self) -> None:
        gc.unfreeze()
        # an improve under way finishes first (it encodes through the batchers)
        await asyncio.gather(*self.improving.values(), return_exceptions=True)
        self.improver.shutdown(wait=True)
        for b in self.batchers.values():
            await b.stop()
        self.writer.shutdown(wait=True)
        for s in [*self.collections.values(), *self.retired]:
            s.feedback.close()
            s.collection.close()

    # -- lookups ---------------------------------------------------------------------------------

    async def get(self, name: str) -> Served:
        """The served collection ``name`` as it is now: a new version another process swapped
        in is opened (in a thread: opening and loading a model must not stall the event loop),
        a version promoted elsewhere adopted (a ``stat`` of the manifest)."""
        served = self.collections.get(name)
        if served is None:
            listed = ", ".join(sorted(self.collections)) or "none"
            raise NotFound(f"no collection named {name!r}; served: {listed}")
        if served.collection.store.replaced():
            async with self._replacing.setdefault(name, asyncio.Lock()):
                served = self.collections[name]
                if served.collection.store.replaced():  # (not already by another request)
                    served = await self._replace(name)  # a reindex elsewhere: the new version
        served.collection.refresh()  # a version promoted by another process is served at once
        return served

    async def _replace(self, name: str) -> Served:
        """Open the collection ``name`` again, after another process swapped in a new version
        (``reindex``): its model is loaded if no served collection uses it yet. The old
        collection stays open until the service stops (searches of it may still be running)."""
        old = self.collections[name]
        path = self.settings.collections[name]
        served: Served = await self.in_thread(self._open, name, path)
        if served.model_key not in self.batchers:
            self._start_batcher(served.model_key, self.encoders[served.model_key])
        self.collections[name] = served
        self.retired.append(old)
        log.info("%s: another process replaced it with version %s (%s); serving that",
                 name, served.collection.manifest.version, served.collection.manifest.model.name)
        return served

    def model_names(self) -> dict[str, str]:
        """Names a request may give as ``model``: each encoder's name, ``default``, and
        collection names (their collection's model)."""
        names = {self.encoders[k].settings.model: k for k in self.encoders}
        names.update({n: s.model_key for n, s in self.collections.items()})
        names["default"] = self.default_key
        return names

    def encoder_key(self, model: str | None) -> str:
        if model is None:
            return self.default_key
        key = self.model_names().get(model)
        if key is None:
            raise NotFound(f"no model {model!r} here; available: {', '.join(sorted(self.model_names()))}")
        return key

    # -- batched work ----------------------------------------------------------------------------

    async def encode(self, texts: list[str], kind: Kind = "document", model: str | None = None
                     ) -> np.ndarray:
        """Vectors of ``texts``, encoded together with concurrent requests (in turns of
        ``max_batch`` texts, so that other requests go between the turns of a large one)."""
        return await self._encode_with(self.encoder_key(model), texts, kind)

    async def _encode_with(self, key: str, texts: list[str], kind: Kind) -> np.ndarray:
        batcher = self.batchers[key]
        parts = [await batcher.submit(EncodeJob(part, kind)) for part in self._turns(texts, key)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _turns(self, items: list[str], key: str) -> list[list[str]]:
        """``items`` in turns of at most ``max_batch`` texts costing at most
        ``max_batch_tokens`` (a turn holds one text at least): the work one request gets
        before other clients' requests go next."""
        n, budget = max(1, self.settings.max_batch), self.settings.max_batch_tokens
        cap = self.encoders[key].max_tokens
        turns: list[list[str]] = []
        turn: list[str] = []
        spent = 0
        for text in items:
            cost = text_cost(text, cap)
            if turn and (len(turn) == n or spent + cost > budget):
                turns.append(turn)
                turn, spent = [], 0
            turn.append(text)
            spent += cost
        return [*turns, turn] if turn or not turns else turns

    async def search(self, name: str, queries: list[str], options: SearchOptions | Named,
                     where: Sequence[str] | None = None, contains: Sequence[str] | None = None
                     ) -> list[list[SearchResult]]:
        served = await self.get(name)
        flt = (await self.in_thread(served.collection.make_filter, list(where or []), list(
            contains or [])) if where or contains else Filter())
        out: list[list[SearchResult]] = []
        for part in self._turns(queries, served.model_key):  # other clients go between turns
            out += await self.batchers[served.model_key].submit(
                SearchJob(served.collection, part, options, flt))
        return out

    def _handle(self, model_key: str, jobs: list[Job]) -> list[Any]:
        """Runs in the batcher's thread: one encode call per kind, one index search per
        (collection, filter) group."""
        enc = self.encoders[model_key]
        by_kind: dict[Kind, dict[str, int]] = {"query": {}, "document": {}}
        for j in jobs:
            if isinstance(j, SearchJob) and j.options.mode in TEXT_MODES:
                continue  # no vectors needed (a mode left to the version may need them)
            kind: Kind = j.kind if isinstance(j, EncodeJob) else "query"
            for t in (j.texts if isinstance(j, EncodeJob) else j.queries):
                by_kind[kind].setdefault(t, len(by_kind[kind]))
        encoder_of = {"query": self.query_encoders.get(model_key, enc), "document": enc}
        vectors = {kind: encoder_of[kind].encode(list(texts), kind=kind)
                   for kind, texts in by_kind.items() if texts}
        results: list[Any] = [None] * len(jobs)
        groups: dict[tuple, list[tuple[int, SearchJob, SearchOptions]]] = defaultdict(list)
        # each collection's version, taken once for the batch: every search of it ranks with
        # the same version's settings and adapter
        versions: dict[int, tuple[Manifest, Adapter | None]] = {}
        for i, j in enumerate(jobs):
            if isinstance(j, EncodeJob):
                results[i] = vectors[j.kind][[by_kind[j.kind][t] for t in j.texts]]
                continue
            col = j.collection
            try:
                if id(col) not in versions:
                    versions[id(col)] = col.current()
                o = j.options if isinstance(j.options, SearchOptions) else col.search_options(
                    j.options.k, j.options.threshold, j.options.mode, j.options.fusion,
                    j.options.alpha, manifest=versions[id(col)][0])
            except Exception as e:
                results[i] = e
                continue
            groups[(id(col), repr(j.filter), o.mode, o.fusion, o.alpha, o.weights,
                    o.features)].append((i, j, o))
        for (key, *_), members in groups.items():
            col = members[0][1].collection
            first = members[0][2]
            texts = [t for _, j, _ in members for t in j.queries]
            vecs = (None if first.mode in TEXT_MODES
                    else vectors["query"][[by_kind["query"][t] for t in texts]])
            # one search for the group: the largest k, thresholds applied per job below
            opts = dataclasses.replace(first, k=max(o.k for _, _, o in members), threshold=None)
            try:
                hits = col.search_vectors(vecs, where=members[0][1].filter, texts=texts,
                                          options=opts, version=versions[key])
            except Exception as e:
                for i, _, _ in members:
                    results[i] = e
                continue
            pos = 0
            for i, j, o in members:
                mine = hits[pos:pos + len(j.queries)]
                pos += len(j.queries)
                floor = o.threshold
                results[i] = [[r for r in row[:o.k] if floor is None or r.score >= floor]
                              for row in mine]
        return results

    # -- improving from ratings ------------------------------------------------------------------

    async def improve(self, name: str, **options: Any) -> dict[str, Any]:
        """Run :func:`neartext.ops.improve.improve` on a served collection in the improver thread,
        its queries encoded through the batcher (searches go on meanwhile, and switch to the
        new version at once if it is promoted). ``options``: improve's. One run per collection
        at a time: :class:`Busy` while one is under way."""
        return await self._finish_improve(name, *await self._begin_improve(name, options))

    async def start_improve(self, name: str, **options: Any) -> dict[str, Any]:
        """Start :meth:`improve` in the background and return its status at once (what
        :meth:`improve_status` gives until it ends). :class:`Busy` while one is under way."""
        future, status = await self._begin_improve(name, options)

        async def background() -> None:
            try:
                result = await self._finish_improve(name, future, status)
                log.info("improve %s: %s", name, result.get("reason"))
            except Exception as e:  # kept in the status, nothing changed
                log.warning("improve %s: %s", name, e)

        task = asyncio.get_running_loop().create_task(background())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return status

    async def _begin_improve(self, name: str, options: dict[str, Any]
                             ) -> tuple[asyncio.Future[Any], dict[str, Any]]:
        """Start the run in the improver thread (in the event loop); its future and status."""
        served = await self.get(name)
        if name in self.improving:
            raise Busy(f"an improve of {name!r} is already running; wait for it to finish")
        loop = asyncio.get_running_loop()

        def encode(texts: list[str]) -> np.ndarray:
            return asyncio.run_coroutine_threadsafe(
                self._encode_with(served.model_key, texts, "query"), loop).result()

        def run() -> dict[str, Any]:

            full = bool(options.get("full"))
            extra: dict[str, Any] = {} if full else {"encode": encode}
            report, line = improve(served.collection, **options, **extra)
            if full and report is not None and report.promoted:
                self._load_model_of(served.collection.address)
            return report.to_dict() if report else {
                "collection": str(served.collection.address), "promoted": False,
                "version": served.collection.manifest.version, "reason": line}

        future = loop.run_in_executor(self.improver, run)
        self.improving[name] = future
        status = self.improve_runs[name] = {
            "collection": name, "state": "running", "started": _now(), "finished": None,
            "options": dict(options), "result": None, "error": None}
        return future, status

    async def _finish_improve(self, name: str, future: asyncio.Future[Any],
                              status: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await future
        except Exception as e:
            status.update(state="failed", finished=_now(),
                          error=str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise
        finally:
            self.improving.pop(name, None)
        status.update(state="done", finished=_now(), result=result)
        await self.get(name)  # a version swapped in whole (a fine-tuned model) is served from now on
        return result

    async def improve_status(self, name: str) -> dict[str, Any]:
        """The improve of ``name`` under way, or the last one this service ran (state
        ``running``, ``done`` with its report, ``failed`` with the reason, or ``none``)."""
        await self.get(name)
        return self.improve_runs.get(name) or {"collection": name, "state": "none"}

    def _load_model_of(self, path: Address) -> None:
        """Load the model of the collection now at ``path`` (a fine-tune swapped in) if no
        served collection uses it yet: in the improver thread, so that the swap to it in the
        event loop (:meth:`get`) does not stall searches while a model loads."""
        with Collection.open(path) as col:
            enc = self.encoders[self._encoder_of(col.manifest, col.path)]
            if isinstance(enc, DeferredEncoder):
                enc.real()  # here, not in the batcher's thread at the first document

    def _encoder_of(self, manifest: Manifest, state: Path | None = None) -> str:
        """The key of the encoder of ``manifest``'s model, made if no collection uses it yet
        (collections of the same model share one): deferred when the model was loaded on this
        machine before (:mod:`neartext.encoders.deferred`), so the service starts without
        loading it and loads it at the first document to encode; queries go through the ONNX
        export a search left beside a collection of it (``state``), when there is one."""
        key = _model_key(manifest.model.settings, manifest.model.name)
        if key not in self.encoders:
            self.encoders[key] = _served_encoder(dataclasses.replace(
                manifest.encoder_settings(), batch_size=self.settings.forward_batch))
        if key not in self.query_encoders and state is not None:
            found = cached_query_encoder(state, manifest)
            if found is not None:
                self.query_encoders[key] = found
        return key

    async def improve_soon(self, name: str) -> None:
        """After a rating: with ``improve_every`` set, start an improve of ``name`` in the
        background when that many ratings came in since its version learned."""
        every = self.settings.improve_every
        if not every or name in self.improving:
            return

        served = await self.get(name)
        if served.feedback.count_after(last_ratings_used(served.collection)) < every:
            return

        await self.start_improve(name, min_new=every)

    # -- other work (threads) --------------------------------------------------------------------

    async def in_thread(self, fn: Any, *args: Any, **kw: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kw))

    async def write(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """Run a write through the single writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self.writer, lambda: fn(*args, **kw))

    async def write_to(self, name: str, operation: str, *args: Any) -> tuple[Served, Any]:
        """Run the :class:`Collection` method ``operation`` of the collection ``name`` through
        the writer thread; returns the served collection it wrote to and the result. A write
        that meets a new version swapped in (an improve with ``full`` or both sides here, a
        reindex or rollback elsewhere: nothing was written) is made again on that version."""
        done = 0  # documents a delete removed from a version swapped out after it wrote
        for attempt in range(SWAP_RETRIES + 1):
            served = await self.get(name)  # follows a swap
            try:
                result = await self.write(getattr(served.collection, operation), *args)
            except CollectionReplaced as e:
                if attempt == SWAP_RETRIES:
                    raise
                if operation in ("delete", "delete_where") and e.done is not None:
                    done = max(done, e.done.removed)
                log.info("%s: a write met a new version swapped in; made again on it", name)
                continue
            # the repeat finds gone what the swap carried over of the first attempt's deletes
            return served, max(result, done) if isinstance(result, int) else result
        raise AssertionError("unreachable")

    def check_text(self, text: str, what: str = "text") -> None:
        if len(text) > self.settings.max_text_chars:
            raise InputError(f"{what} is {len(text)} characters; the limit is "
                             f"{self.settings.max_text_chars}")


def _served_encoder(settings: EncoderSettings) -> Encoder:
    """The service's encoder of ``settings``: deferred when the model was loaded on this machine
    before, its objects frozen out of garbage collection once it loads."""
    enc = load_encoder(settings, deferred=True)
    if isinstance(enc, DeferredEncoder):
        enc.when_loaded.append(_freeze_again)
    return enc


def _freeze_again() -> None:
    """After a model loaded while serving (its first document): its objects left out of garbage
    collections too, as those loaded at start are (:meth:`Engine.start`)."""
    gc.collect()
    gc.freeze()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
