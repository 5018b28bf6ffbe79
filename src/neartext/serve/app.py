"""The HTTP adapter: FastAPI routes over :class:`~neartext.serve.engine.Engine`.

Example::

    from neartext.serve import ServeSettings, create_app
    app = create_app(ServeSettings.from_args(["demo/feedback"]))
    # uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neartext.data.corpus import Record
from neartext.data.results import SearchResult
from neartext.engine.analysis import resolve_threshold
from neartext.errors import InputError, NeartextError, StorageError
from neartext.ops.maps import colour_groups, hover_texts, map_payload, place, project, projected
from neartext.serve import schemas as S
from neartext.serve.engine import Busy, Engine, Named, NotFound
from neartext.serve.settings import ServeSettings
from neartext.version import __version__

log = logging.getLogger("neartext.serve")
STATIC = Path(__file__).parent / "static"
OPEN_PATHS = ("/health", "/docs", "/openapi.json", "/static/")  # besides "/" itself


class ApiError(Exception):
    """An error answered as JSON ``{"error", "detail"}`` with ``status``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before any handler
    reads it (by Content-Length when given, else while it streams in)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.limit:
                await _too_large(send, self.limit)
                return
            await self.app(scope, receive, send)  # the server stops reading at Content-Length
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        # No Content-Length (a streamed body): read it here, up to the limit, then replay it.
        chunks: list[bytes] = []
        total = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunk = msg.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                await _too_large(send, self.limit)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class CatchAll:
    """ASGI middleware: an unexpected error is logged and answered 500 without details. Here
    rather than as an exception handler for ``Exception``: Starlette re-raises after such a
    handler answers, and the server then drops the keep-alive connection. (Plain ASGI, not an
    ``@app.middleware``: those cost about 2 ms per request.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            log.exception("unhandled error")
            if started:
                raise  # half a response is out: only closing the connection is left
            await _error(500, "internal error; the server log has the details")(
                scope, receive, send)


async def _too_large(send: Send, limit: int) -> None:
    resp = JSONResponse({"error": "payload too large",
                         "detail": f"request body over the limit of {limit} bytes"}, status_code=413)
    await resp({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _error(status: int, detail: str) -> JSONResponse:
    title = HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else "error"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": title, "detail": detail}, status_code=status, headers=headers)


def _hit(r: SearchResult) -> S.SearchHit:
    return S.SearchHit(id=r.id, text=r.text, score=round(float(r.score), 6), metadata=r.metadata,
                 passage=r.passage)


def _map_payload(col: Any, color_by: str | None, sample: int | None, method: str,
                 threshold: float | None, k: int | None, min_size: int) -> dict[str, Any]:

    proj, clusters = projected(col, color_by=color_by, sample=sample, method=method,
                               threshold=threshold, k=k, min_size=min_size)
    names, colours = colour_groups(col, proj, color_by, clusters)
    return map_payload(proj, names, colours, hover_texts(col, proj.ids, None))


def _summary(name: str, col: Any) -> S.CollectionSummary:
    """A served collection in a line: size, model, and its current version."""

    m = col.manifest
    details = m.details()
    return S.CollectionSummary(
        name=name, documents=len(col), model=m.model.name, version=m.version,
        adapter=m.adapter.kind if m.adapter else None, ranking=m.ranking().describe(),
        mrr_at_10=(details.get("metrics") or {}).get("mrr@10"),
        text_fields=m.text_fields())


def create_app(settings: ServeSettings, engine: Engine | None = None) -> FastAPI:
    """Build the service: collections opened and the model loaded once, here, at start-up."""
    engine = engine or Engine(settings)
    limits = settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = FastAPI(title="neartext", version=__version__, lifespan=lifespan,
                  description="Semantic search, paraphrases and relevance feedback over your "
                              "collections. Errors are JSON {error, detail}.",
                  responses={k: {"model": S.Error, "description": why}
                             for k, why in S.ERRORS.items()})
    app.state.engine = engine
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)

    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if settings.api_key and path != "/" and not path.startswith(OPEN_PATHS):
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                     settings.api_key.encode()):
                return _error(401, "missing or wrong API key: send 'Authorization: Bearer <key>'")
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.detail)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, e: NotFound) -> JSONResponse:
        return _error(404, str(e))

    @app.exception_handler(Busy)
    async def _busy(_: Request, e: Busy) -> JSONResponse:
        return _error(409, str(e))

    @app.exception_handler(InputError)
    async def _input_error(_: Request, e: InputError) -> JSONResponse:
        return _error(422, str(e))

    @app.exception_handler(StorageError)
    async def _storage_error(_: Request, e: StorageError) -> JSONResponse:
        # the request was fine; the server cannot store it now (507: no space; 503 otherwise)
        return _error(507 if e.kind == "full" else 503, str(e))

    @app.exception_handler(NeartextError)
    async def _neartext_error(_: Request, e: NeartextError) -> JSONResponse:
        return _error(409, str(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        parts = []
        for err in e.errors()[:5]:
            if err.get("type") == "json_invalid":
                parts.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', '')})")
                continue
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        if e.status_code == 400 and "parsing the body" in str(e.detail):
            # FastAPI's answer when the JSON parser itself fails (nesting too deep): the same
            # 422 as any other body that is not valid JSON
            return _error(422, "the body is not valid JSON (malformed or nested too deeply)")
        return _error(e.status_code, str(e.detail))

    app.add_middleware(CatchAll)

    def check_texts(texts: list[str], what: str = "texts") -> None:
        if not texts:
            raise ApiError(422, f"{what}: give at least one text")
        if len(texts) > limits.max_texts:
            raise ApiError(413, f"{what}: {len(texts)} texts; the limit is {limits.max_texts} "
                                "per request")
        for i, t in enumerate(texts):
            if not t.strip():
                raise ApiError(422, f"{what}[{i}] is empty")
            if len(t) > limits.max_text_chars:
                raise ApiError(422, f"{what}[{i}] is {len(t)} characters; the limit is "
                                    f"{limits.max_text_chars}")

    def within_max_k(k: int, what: str = "k") -> None:
        if k > limits.max_k:
            raise ApiError(422, f"{what} is {k}; the limit is {limits.max_k}")

    # -- routes ----------------------------------------------------------------------------------

    @app.get("/health", tags=["service"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "collections": len(engine.collections)}

    @app.get("/collections", tags=["collections"])
    async def list_collections() -> list[S.CollectionSummary]:
        served = list(engine.collections.items())
        rows: list[S.CollectionSummary] = await engine.in_thread(
            lambda: [_summary(n, s.collection) for n, s in served])
        return rows

    @app.get("/collections/{name}", tags=["collections"])
    async def collection_info(name: str) -> dict[str, Any]:
        served = await engine.get(name)
        info = (await engine.in_thread(served.collection.info)).to_dict()
        info.pop("path", None)  # the server's file system is not the client's business
        return {"name": name, **info, "feedback": served.feedback.count()}

    @app.post("/collections/{name}/search", tags=["search"])
    async def search(name: str, body: S.SearchRequest) -> S.SearchResponse:
        if (body.query is None) == (body.queries is None):
            raise ApiError(422, "give either 'query' or 'queries'")
        queries = [body.query] if body.query is not None else list(body.queries or [])
        check_texts(queries, "queries")
        within_max_k(body.k)
        if len(queries) * body.k > limits.max_results:
            raise ApiError(413, f"{len(queries)} queries x k={body.k} = {len(queries) * body.k} "
                                f"results; the limit is {limits.max_results} per request "
                                "(send fewer queries or a smaller k)")
        # checked now (a bad combination is a 422 before any work); what the request leaves
        # out comes from the collection's tuned ranking, as current when the search runs
        (await engine.get(name)).collection.search_options(body.k, body.threshold, body.mode,
                                                           body.fusion, body.alpha)
        named = Named(body.k, body.threshold, body.mode, body.fusion, body.alpha)
        rows = await engine.search(name, queries, named, body.where, body.contains)
        return S.SearchResponse(results=[[_hit(r) for r in row] for row in rows])

    @app.post("/collections/{name}/paraphrases", tags=["search"])
    async def paraphrases(name: str, body: S.ParaphrasesRequest) -> S.ParaphrasesResponse:
        served = await engine.get(name)
        check_texts([body.text], "text")
        within_max_k(body.top_k, "top_k")

        found, notice = await engine.in_thread(served.collection.paraphrases, body.text,
                                               body.threshold, body.top_k)
        t = resolve_threshold(served.collection, body.threshold, "paraphrases")
        return S.ParaphrasesResponse(results=[_hit(r) for r in found], threshold=t, notice=notice)

    @app.post("/collections/{name}/documents", tags=["documents"])
    async def upsert(name: str, body: S.UpsertRequest) -> S.UpsertResponse:
        await engine.get(name)
        check_texts([d.text for d in body.documents], "documents")

        records = [Record(d.id, d.text, d.metadata, n) for n, d in enumerate(body.documents, 1)]
        served, report = await engine.write_to(name, "upsert", records)
        return S.UpsertResponse(added=report.added, updated=report.updated,
                                unchanged=report.unchanged, texts_embedded=report.texts_embedded,
                                documents=await engine.in_thread(len, served.collection))

    @app.delete("/collections/{name}/documents/{doc_id:path}", tags=["documents"])
    async def delete(name: str, doc_id: str) -> S.DeleteResponse:
        served, removed = await engine.write_to(name, "delete", [doc_id])
        if not removed:
            raise NotFound(f"no document {doc_id!r} in {name!r}")
        return S.DeleteResponse(deleted=doc_id,
                                documents=await engine.in_thread(len, served.collection))

    @app.post("/collections/{name}/delete", tags=["documents"])
    async def delete_where(name: str, body: S.DeleteWhereRequest) -> S.DeleteWhereResponse:
        """Delete every document the filter selects (at least one condition or word)."""
        served, removed = await engine.write_to(name, "delete_where", body.where, body.contains)
        return S.DeleteWhereResponse(deleted=removed,
                                     documents=await engine.in_thread(len, served.collection))

    @app.post("/similarity", tags=["embeddings"])
    async def similarity(body: S.SimilarityRequest) -> S.SimilarityResponse:
        check_texts(body.texts_a, "texts_a")
        check_texts(body.texts_b, "texts_b")
        vecs = await engine.encode(body.texts_a + body.texts_b, "document")
        a, b = vecs[:len(body.texts_a)], vecs[len(body.texts_a):]
        return S.SimilarityResponse(scores=(a @ b.T).round(6).tolist())

    @app.post("/embed", tags=["embeddings"])
    async def embed(body: S.EmbedRequest) -> S.EmbedResponse:
        check_texts(body.texts)
        key = engine.encoder_key(body.model)
        vecs = await engine.encode(body.texts, body.kind, body.model)
        return S.EmbedResponse(model=engine.encoders[key].settings.model, dim=int(vecs.shape[1]),
                               embeddings=vecs.tolist())

    @app.post("/v1/embeddings", tags=["embeddings"])
    async def openai_embeddings(body: S.OpenAIEmbeddingsRequest) -> S.OpenAIEmbeddingsResponse:
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        check_texts(texts, "input")
        vecs = await engine.encode(texts, "document", body.model)
        tokens = sum(len(t.split()) for t in texts)
        return S.OpenAIEmbeddingsResponse(
            data=[S.OpenAIEmbedding(index=i, embedding=v) for i, v in enumerate(vecs.tolist())],
            model=body.model, usage=S.OpenAIUsage(prompt_tokens=tokens, total_tokens=tokens))

    @app.post("/collections/{name}/feedback", tags=["feedback"], status_code=201)
    async def add_feedback(name: str, body: S.FeedbackIn) -> S.FeedbackRow:
        served = await engine.get(name)
        check_texts([body.query], "query")

        def rate() -> dict[str, Any]:
            if not served.collection.get([body.doc_id]):
                raise NotFound(f"no document {body.doc_id!r} in {name!r}")
            return served.feedback.add(body.query, body.doc_id, body.relevant)

        row = await engine.in_thread(rate)
        await engine.improve_soon(name)  # with --improve-every: learn in the background
        return S.FeedbackRow(**row)

    @app.post("/collections/{name}/improve", tags=["feedback"])
    async def improve(name: str, body: S.ImproveRequest) -> Any:
        """Learn from the ratings that came in since the current version (``neartext
        improve``): an adapter and ranking are tuned (with ``full``: the model is fine-tuned
        and the documents re-embedded, ``neartext improve --full``) and promoted only if
        held-out MRR@10 gains. Searches go on meanwhile and switch to the new version at once.
        Needs the service's API key."""
        if not settings.api_key:
            raise ApiError(403, "improve changes what every search returns: start the service "
                                "with an API key (NEARTEXT_API_KEY or --api-key-file) to allow it")
        await engine.get(name)
        options: dict[str, Any] = {"min_new": body.min_new, "force": body.force}
        if body.full:
            adapter_only = sorted({"kind", "side"} & body.model_fields_set)
            if adapter_only:
                raise InputError(f"full fine-tunes the model: {', '.join(adapter_only)} "
                                 "are adapter options")
            options.update(full=True, epochs=body.epochs)
        else:
            if "epochs" in body.model_fields_set:
                raise InputError("epochs is an option of full (fine-tuning the model)")
            options.update(kind=body.kind, side=body.side)
        if not body.wait:
            return JSONResponse(await engine.start_improve(name, **options), status_code=202)
        result: dict[str, Any] = await engine.improve(name, **options)
        return result

    @app.get("/collections/{name}/improve", tags=["feedback"])
    async def improve_status(name: str) -> dict[str, Any]:
        """The improve under way, or the last one this service ran: ``state`` is ``running``,
        ``done`` (``result``: its report, promoted or not and why), ``failed`` (``error``: the
        reason, nothing changed) or ``none``."""
        return await engine.improve_status(name)

    @app.get("/collections/{name}/feedback", tags=["feedback"])
    async def list_feedback(name: str, limit: int = Query(100, ge=1, le=10_000),
                            offset: int = Query(0, ge=0, le=2**63 - 1)) -> S.FeedbackList:
        served = await engine.get(name)
        rows = await engine.in_thread(served.feedback.list, limit, offset)
        return S.FeedbackList(total=await engine.in_thread(served.feedback.count),
                              feedback=[S.FeedbackRow(**r) for r in rows])

    # -- the web UI (same origin, no CDN) -------------------------------------------------------

    @app.get("/collections/{name}/map", tags=["map"])
    async def collection_map(
        name: str, color_by: str | None = None,
        sample: int | None = Query(None, ge=3, le=10_000_000),
        method: Literal["kmeans", "community", "hdbscan"] = "kmeans",
        threshold: float | None = Query(None, ge=-1, le=1),
        k: int | None = Query(None, ge=2, le=1000), min_size: int = Query(3, ge=1, le=1_000_000),
    ) -> dict[str, Any]:
        """2-D map points (UMAP, computed once and cached in the collection), coloured by
        ``cluster`` (k-means with about sqrt(n/2) clusters, at most 20, unless told otherwise)
        or a metadata field: ``{points: [[x, y, group, id, text]], groups, labels}``."""
        served = await engine.get(name)
        payload: dict[str, Any] = await engine.in_thread(
            _map_payload, served.collection, color_by, sample, method, threshold, k, min_size)
        return payload

    @app.post("/collections/{name}/map/place", tags=["map"])
    async def place_on_map(name: str, body: S.PlaceRequest) -> S.PlaceResponse:
        """Where ``query`` lands on the map: the weighted mean position of its nearest documents."""
        served = await engine.get(name)
        check_texts([body.query], "query")

        def run() -> tuple[float, float]:
            proj = project(served.collection, sample=body.sample)
            x, y = place(served.collection, proj, [body.query])[0]
            return float(x), float(y)

        x, y = await engine.in_thread(run)
        return S.PlaceResponse(x=x, y=y)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
