"""Hostile and malformed input: each gives one clear line (exit 1) or a 4xx, and changes nothing.

Each test here reproduces a failure found by hostile testing (issue 17) that ended in a
traceback, a 500 or another user's failed request before it was fixed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from serving import running

from neartext import Collection, Record
from neartext.corpus import read_corpus
from neartext.errors import InputError
from neartext.serve import ServeSettings
from neartext.serve.engine import Engine

SURROGATE = "\ud800"


def run_cli(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "neartext", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=600)


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> None:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# -- lone surrogates ------------------------------------------------------------------------------

def test_surrogates_are_refused_by_the_library_and_change_nothing(demo_copy, encoder, tmp_path):
    with Collection.open(demo_copy, model=encoder) as col:
        gen = col.store.generation()
        for rec in (Record("x", "bad " + SURROGATE), Record("x", "ok", {"tag": [SURROGATE]}),
                    Record(SURROGATE, "ok")):
            with pytest.raises(InputError, match="lone surrogate"):
                col.upsert([Record("fine", "a fine text"), rec])
        with pytest.raises(InputError, match="query"):
            col.search("crash " + SURROGATE)
        assert col.store.generation() == gen and len(col) == 247
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "fine"}\n{"text": "bad \\ud800", "id": "2"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"c.jsonl: line 2: field 'text'.*surrogate"):
        read_corpus(jsonl)


def test_surrogates_over_http_are_422_naming_the_field(demo_copy):
    settings = ServeSettings.from_args([str(demo_copy)])
    with running(settings) as client:
        cases = [
            ("/collections/feedback/search", '{"query": "crash \\ud800"}', "query"),
            ("/collections/feedback/search", '{"queries": ["ok", "\\udfff x"]}', "queries[1]"),
            ("/embed", '{"texts": ["\\ud800"]}', "texts[0]"),
            ("/collections/feedback/documents",
             '{"documents": [{"id": "s1", "text": "fine", "metadata": {"k": "\\ud800"}}]}',
             "documents[0].metadata.k"),
        ]
        for path, raw, field in cases:
            status, body = client.call("POST", path, raw=raw.encode())
            assert status == 422, (path, status, body)
            assert field in body["detail"] and "surrogate" in body["detail"]
        status, body = client.call("GET", "/collections/feedback")
        assert body["documents"] == 247
        status, body = client.call("POST", "/collections/feedback/search", {"query": "refund"})
        assert status == 200  # the connection and the service carry on


def test_one_failing_request_never_fails_the_others_batched_with_it(demo_copy):
    """Past the HTTP checks (a library caller, or a text the encoder rejects): the batch is
    retried job by job, so only the bad request fails."""
    engine = Engine(ServeSettings.from_args([str(demo_copy)], max_wait_ms=50))

    async def scenario() -> list:
        await engine.start()
        try:
            jobs = [engine.encode([f"innocent request {i}"]) for i in range(12)]
            jobs.insert(5, engine.encode(["bad " + SURROGATE]))
            jobs += [engine.search("feedback", [f"refund {i}"], k=3) for i in range(6)]
            return await asyncio.gather(*jobs, return_exceptions=True)
        finally:
            await engine.stop()

    results = asyncio.run(scenario())
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [5], results[5]
    assert all(r.shape == (1, 384) for r in results[:5] + results[6:13])
    assert all(len(r[0]) == 3 for r in results[13:])


def test_mlflow_queries_with_a_surrogate_are_refused():
    from neartext.export.mlflow_model import queries_of

    with pytest.raises(InputError, match="query 2.*surrogate"):
        queries_of(["fine", SURROGATE])


def test_cli_surrogate_in_a_jsonl_corpus_is_one_line(tmp_path):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text('{"text": "fine"}\n{"text": "bad \\ud800"}\n', encoding="utf-8")
    one_line_error(run_cli("index", jsonl, "-c", tmp_path / "col"), "line 2", "surrogate")
    assert not (tmp_path / "col").exists() and not (tmp_path / "col.partial").exists()
