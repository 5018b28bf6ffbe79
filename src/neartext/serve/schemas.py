"""Typed request and response bodies of the HTTP API (they make the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from neartext.data.ranking import DEFAULT_ALPHA, DEFAULT_FUSION, DEFAULT_MODE, Fusion, Mode
from neartext.util.validate import invalid_text_path


class _Text(BaseModel):
    """A request whose strings are checked: lone surrogates (valid JSON escapes, not text)
    are refused with the field's path (422), wherever they are."""

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        """Lone surrogates (valid JSON escapes, not text) are refused with the field's path."""
        bad = invalid_text_path(data)
        if bad is not None:
            raise PydanticCustomError("invalid_text", "{path}: not valid Unicode text (a lone "
                                      "surrogate)", {"path": bad or "body"})
        return data


class _Body(_Text):
    model_config = ConfigDict(extra="forbid")


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


#: conditions or words: a list, or one as a string (as the library and the CLI take them)
Strings = Annotated[list[str] | str, BeforeValidator(_listed)]


class SearchRequest(_Body):
    query: str | None = Field(None, description="one query (or give `queries`)")
    queries: list[str] | None = Field(None, description="several queries, answered in order")
    k: int = Field(10, ge=1, description="results per query")
    threshold: float | None = Field(None, ge=-1, le=1, description="drop results scoring below this")
    where: Strings = Field(default_factory=list, description='metadata conditions, e.g. '
                           '["year>=2023"] (one may be given as a string)')
    contains: Strings = Field(default_factory=list, description="words every result must "
                              "contain (one may be given as a string)")
    mode: Mode | None = Field(
        None, description="vectors, BM25 over stemmed words, or both fused; default: the "
                          "collection's tuned ranking (neartext tune), else semantic")
    fusion: Fusion | None = Field(None, description=f"hybrid: how the two rankings merge "
                                                    f"(default {DEFAULT_FUSION})")
    alpha: float | None = Field(None, ge=0, le=1, description=f"blend: weight of the cosine "
                                                              f"score (default {DEFAULT_ALPHA})")


class SearchHit(BaseModel):
    id: str
    text: str
    score: float
    metadata: dict[str, Any]
    passage: str | None = None


class SearchResponse(BaseModel):
    results: list[list[SearchHit]] = Field(description="one list per query, best first")


class ParaphrasesRequest(_Body):
    text: str
    threshold: float | None = Field(None, ge=-1, le=1,
                                    description="default: the collection's calibrated threshold")
    top_k: int = Field(100, ge=1)


class ParaphrasesResponse(BaseModel):
    results: list[SearchHit]
    threshold: float
    notice: str | None = None


class DocumentIn(_Body):
    id: str = Field(min_length=1)
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class UpsertRequest(_Body):
    documents: list[DocumentIn]


class UpsertResponse(BaseModel):
    added: int
    updated: int
    unchanged: int
    texts_embedded: int
    documents: int


class DeleteResponse(BaseModel):
    deleted: str
    documents: int


class DeleteWhereRequest(_Body):
    where: Strings = Field(default_factory=list, description='metadata conditions: FIELD OP '
                           'VALUE, "|" or, "&" and, "!" not, parentheses; all must hold (one '
                           'may be given as a string)')
    contains: Strings = Field(default_factory=list, description="words every document must "
                              "contain (one may be given as a string)")


class DeleteWhereResponse(BaseModel):
    deleted: int = Field(description="documents the filter selected and deleted")
    documents: int


class SimilarityRequest(_Body):
    texts_a: list[str]
    texts_b: list[str]


class SimilarityResponse(BaseModel):
    scores: list[list[float]] = Field(description="scores[i][j] = cosine(texts_a[i], texts_b[j])")


class EmbedRequest(_Body):
    texts: list[str]
    kind: Literal["query", "document"] = "document"
    model: str | None = None


class EmbedResponse(BaseModel):
    model: str
    dim: int
    embeddings: list[list[float]]


class OpenAIEmbeddingsRequest(_Text):  # (other fields OpenAI's clients send are let be)
    input: str | list[str]
    model: str = "default"
    encoding_format: Literal["float"] = "float"
    user: str | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float]


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class FeedbackIn(_Body):
    query: str = Field(min_length=1)
    doc_id: str = Field(min_length=1)
    relevant: bool


class ImproveRequest(_Body):
    min_new: int = Field(1, ge=1, le=10_000_000,
                         description="ratings needed since the current version learned")
    force: bool = Field(False, description="promote the new adapter even without a gain")
    kind: Literal["linear", "lowrank", "diagonal", "residual-mlp"] = Field(
        "linear", description="adapter kind")
    side: Literal["query", "both"] = Field(
        "query", description="query: the documents' vectors stay; both: they are mapped too "
                             "(linear, lowrank or diagonal)")
    full: bool = Field(False, description="fine-tune the collection's model on the ratings and "
                                          "re-embed the documents (minutes; at least 200 "
                                          "rated pairs) instead of learning an adapter")
    epochs: float = Field(1.0, gt=0, le=100, description="with full: passes over the pairs")
    wait: bool = Field(True, description="false: answer 202 at once and run in the background; "
                                         "GET /collections/{name}/improve says how it went")


class FeedbackRow(BaseModel):
    id: int
    query: str
    doc_id: str
    relevant: bool
    created: str


class FeedbackList(BaseModel):
    total: int
    feedback: list[FeedbackRow]


class CollectionSummary(BaseModel):
    name: str
    documents: int
    model: str
    version: int = Field(1, description="the current version (neartext tune / rollback)")
    adapter: str | None = Field(None, description="its adapter kind, if any")
    ranking: str = Field(DEFAULT_MODE, description="its ranking when a search names no mode")
    mrr_at_10: float | None = Field(None, description="held-out MRR@10 measured when promoted")
    text_fields: list[str] = Field(
        default_factory=list, description="the text columns each document keeps as fields, in "
        "order, when it was built from several (--text title,description); the text is their "
        "join. The web UI shows the first as a result's title")


class Error(BaseModel):
    error: str
    detail: str


#: every status the API answers an error with, and when (the OpenAPI schema and the docs list these)
ERRORS: dict[int, str] = {
    400: "a request the HTTP parser cannot read (a malformed request line, a negative length)",
    401: "the API key is missing or wrong",
    403: "an action the service was not started to allow (improve without an API key)",
    404: "no such collection, document, model or route",
    409: "a collection-level refusal (a write while another is being swapped in, a busy job)",
    413: "over a limit: body size, texts per request, queries × k",
    422: "invalid: validation, text length, k, invalid or too deeply nested JSON, lone "
         "surrogates, naming the field",
    500: "an unexpected error, without details (the connection stays open)",
    503: "the collection cannot be written now: read-only, locked",
    507: "the disk is full",
}


class PlaceRequest(_Body):
    query: str = Field(min_length=1)
    sample: int | None = Field(None, ge=3, description="the map's sample size, if it has one")


class PlaceResponse(BaseModel):
    x: float
    y: float
