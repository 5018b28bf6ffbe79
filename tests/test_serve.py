"""The HTTP service against a real collection, the real model and a real uvicorn server."""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from serving import running

from neartext import Collection
from neartext.cli import main
from neartext.engine.feedback import FEEDBACK_DB
from neartext.errors import InputError
from neartext.serve import ServeSettings
from neartext.training import load_training_data

QUERY = "the app crashes when I open it"


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_collection):
    import shutil

    root = tmp_path_factory.mktemp("served")
    shutil.copytree(demo_collection, root / "feedback")
    settings = ServeSettings.from_args([str(root / "feedback"), f"second={root / 'feedback'}"],
                                       max_texts=8, max_text_chars=500, max_k=50,
                                       max_body_bytes=20_000)
    with running(settings) as client:
        client.path = root / "feedback"
        yield client


def test_health_and_collections(served):
    assert served.call("GET", "/health") == (200, {"status": "ok", "version": served.call(
        "GET", "/health")[1]["version"], "collections": 2})
    status, cols = served.call("GET", "/collections")
    assert status == 200 and [c["name"] for c in cols] == ["feedback", "second"]
    status, info = served.call("GET", "/collections/feedback")
    assert status == 200 and info["documents"] == cols[0]["documents"] > 100
    assert "path" not in info and info["model"] == "all-MiniLM-L6-v2"


def test_search_matches_the_library(served, demo_collection):
    status, body = served.call("POST", "/collections/feedback/search", {"query": QUERY, "k": 5})
    assert status == 200
    with Collection.open(demo_collection) as col:
        expected = col.search(QUERY, k=5)
        filtered = col.search(QUERY, k=3, where="year>=2024", threshold=0.3)
    got = body["results"][0]
    assert [h["id"] for h in got] == [r.id for r in expected]
    assert [h["score"] for h in got] == pytest.approx([r.score for r in expected], abs=1e-5)
    status, body = served.call("POST", "/collections/feedback/search",
                               {"queries": [QUERY, "refund please"], "k": 3,
                                "where": ["year>=2024"], "threshold": 0.3})
    assert status == 200 and len(body["results"]) == 2
    assert [h["id"] for h in body["results"][0]] == [r.id for r in filtered]
    assert all(h["metadata"]["year"] >= 2024 and h["score"] >= 0.3 for h in body["results"][0])
    # one condition as a string, as the library and the CLI take it (a 422 before)
    status, one = served.call("POST", "/collections/feedback/search",
                              {"query": QUERY, "k": 3, "where": "year>=2024", "threshold": 0.3})
    assert status == 200 and one["results"][0] == body["results"][0]


@pytest.mark.parametrize("mode", ["keyword", "chars", "hybrid"])
def test_keyword_and_hybrid_modes_match_the_library(served, demo_collection, mode):
    body = {"queries": [QUERY, "charged twice"], "k": 4, "mode": mode, "where": ["year>=2022"]}
    status, got = served.call("POST", "/collections/feedback/search", body)
    assert status == 200
    with Collection.open(served.path) as col:
        expected = col.search_many([QUERY, "charged twice"], 4, mode=mode, where="year>=2022")
    assert [[h["id"] for h in row] for row in got["results"]] == [[r.id for r in row]
                                                                  for row in expected]
    status, err = served.call("POST", "/collections/feedback/search",
                              {"query": QUERY, "mode": mode, "threshold": 0.5})
    assert status == 422 and "threshold applies to cosine" in err["detail"]


def test_upsert_then_search_and_delete_then_search(served):
    doc = {"id": "new-1", "text": "The zebra-striped theme makes the calendar unreadable.",
           "metadata": {"topic": "themes", "year": 2026}}
    status, rep = served.call("POST", "/collections/second/documents", {"documents": [doc]})
    assert status == 200 and rep["added"] == 1 and rep["texts_embedded"] == 1
    q = {"query": "calendar unreadable with zebra stripes", "k": 1}
    assert served.call("POST", "/collections/second/search", q)[1]["results"][0][0]["id"] == "new-1"
    with Collection.open(served.path) as col:  # persisted on disk, not only in memory
        assert [d.id for d in col.get(["new-1"])] == ["new-1"]
    status, rep = served.call("DELETE", "/collections/second/documents/new-1")
    assert status == 200 and rep["deleted"] == "new-1"
    assert served.call("POST", "/collections/second/search", q)[1]["results"][0][0]["id"] != "new-1"
    status, err = served.call("DELETE", "/collections/second/documents/new-1")
    assert status == 404 and set(err) == {"error", "detail"} and "new-1" in err["detail"]


def test_paraphrases(served):
    status, body = served.call("POST", "/collections/feedback/paraphrases",
                               {"text": "App keeps crashing on startup since the last update.",
                                "threshold": 0.6, "top_k": 5})
    assert status == 200 and 0 < len(body["results"]) <= 5 and body["threshold"] == 0.6
    assert all(h["score"] >= 0.6 for h in body["results"])
    assert "App keeps crashing on startup since the last update." not in [
        h["text"] for h in body["results"]]  # the text itself is not its own paraphrase


def test_embed_similarity_and_openai(served, encoder):
    texts = ["I want a refund", "Please give my money back", "The sky is blue"]
    status, body = served.call("POST", "/embed", {"texts": texts, "kind": "query"})
    assert status == 200 and body["dim"] == 384 and body["model"] == "all-MiniLM-L6-v2"
    assert np.allclose(body["embeddings"], encoder.encode(texts, kind="query"), atol=1e-5)
    status, body = served.call("POST", "/similarity", {"texts_a": texts[:1], "texts_b": texts[1:]})
    vecs = encoder.encode(texts)
    assert status == 200 and np.allclose(body["scores"], vecs[:1] @ vecs[1:].T, atol=1e-5)
    assert body["scores"][0][0] > body["scores"][0][1]
    status, body = served.call("POST", "/v1/embeddings", {"input": texts[0], "model": "default"})
    assert status == 200 and body["object"] == "list" and body["model"] == "default"
    assert body["data"][0]["object"] == "embedding" and len(body["data"][0]["embedding"]) == 384
    assert body["usage"]["prompt_tokens"] > 0
    status, err = served.call("POST", "/v1/embeddings", {"input": "x", "model": "gpt-9"})
    assert status == 404 and "available:" in err["detail"]


def test_feedback_is_stored_with_a_timestamp(served):
    fb = {"query": QUERY, "doc_id": "fb-0007", "relevant": True}
    status, row = served.call("POST", "/collections/feedback/feedback", fb)
    assert status == 201 and row["relevant"] is True and row["created"].startswith("20")
    status, body = served.call("GET", "/collections/feedback/feedback")
    assert status == 200 and body["total"] >= 1 and body["feedback"][0]["doc_id"] == "fb-0007"
    with sqlite3.connect(served.path / FEEDBACK_DB) as db:
        assert (QUERY, "fb-0007", 1) in db.execute("SELECT query, doc_id, relevant FROM feedback")
    status, err = served.call("POST", "/collections/feedback/feedback",
                              {**fb, "doc_id": "no-such-doc"})
    assert status == 404 and "no-such-doc" in err["detail"]


@pytest.mark.parametrize("method,path,body,status,detail", [
    ("POST", "/collections/feedback/search", {"query": "x", "k": 51}, 422, "k is 51; the limit is 50"),
    ("POST", "/collections/feedback/search", {"queries": ["q"] * 9}, 413, "the limit is 8 per request"),
    ("POST", "/collections/feedback/search", {"query": "x" * 501}, 422, "the limit is 500"),
    ("POST", "/collections/feedback/search", {"query": "x", "q": 1}, 422, "q: Extra inputs"),
    ("POST", "/collections/feedback/search", {"query": "x", "queries": ["y"]}, 422, "either"),
    ("POST", "/collections/feedback/search", {"query": "  "}, 422, "queries[0] is empty"),
    ("POST", "/collections/feedback/search", {"query": "x", "where": ["colour=red"]}, 422,
     "unknown metadata field 'colour'"),
    ("POST", "/embed", {"texts": []}, 422, "at least one text"),
    ("POST", "/collections/feedback/documents", {"documents": [{"id": "a", "text": "y" * 600}]},
     422, "the limit is 500"),
    ("POST", "/collections/feedback/paraphrases", {"text": "x", "top_k": 0}, 422, "top_k"),
    ("GET", "/collections/nope", None, 404, "no collection named 'nope'; served: feedback, second"),
])
def test_limits_and_bad_requests_answer_json(served, method, path, body, status, detail):
    got, err = served.call(method, path, body)
    assert got == status and set(err) == {"error", "detail"} and detail in err["detail"]


def test_body_size_limit_with_and_without_content_length(served):
    big = json.dumps({"query": "x" * 30_000}).encode()
    status, err = served.call("POST", "/collections/feedback/search", raw=big)
    assert status == 413 and "20000 bytes" in err["detail"]
    host, port = served.base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/collections/feedback/search")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for i in range(0, len(big), 4096):
        part = big[i:i + 4096]
        conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 413 and "20000 bytes" in json.loads(resp.read())["detail"]
    status, _ = served.call("POST", "/collections/feedback/search", {"query": "x", "k": 1})
    assert status == 200  # the server is fine afterwards


def test_bad_json_is_a_clear_422(served):
    status, err = served.call("POST", "/collections/feedback/search", raw=b"{bad")
    assert status == 422 and "not valid JSON" in err["detail"]


@pytest.mark.parametrize("path", [
    "/collections/..", "/collections/%2e%2e", "/collections/..%2F..%2Fetc%2Fpasswd",
    "/collections/feedback%2F..%2Fsecond", "/collections/%2Fetc", "/collections/feedback/../../etc",
])
def test_path_traversal_finds_nothing(served, path):
    status, body = served.call("GET", path)
    assert status in (404, 422) and set(body) == {"error", "detail"}


def test_collection_names_are_validated():
    with pytest.raises(InputError, match="invalid collection name '..'"):
        ServeSettings.from_args(["..=/tmp"])
    with pytest.raises(InputError, match="invalid collection name"):
        ServeSettings.from_args(["a/b=/tmp"])
    with pytest.raises(InputError, match="two collections are named 'x'"):
        ServeSettings.from_args(["x=/a", "x=/b"])


def test_api_key(demo_collection, monkeypatch):
    monkeypatch.setenv("NEARTEXT_API_KEY", "s3cret")
    with running(ServeSettings.from_args([str(demo_collection)])) as c:
        assert c.call("GET", "/health")[0] == 200  # open: health and the UI
        assert c.call("GET", "/")[0] == 200 and c.call("GET", "/static/app.js")[0] == 200
        status, err = c.call("GET", "/collections")
        assert status == 401 and "API key" in err["detail"]
        assert c.call("POST", "/embed", {"texts": ["a"]})[0] == 401
        assert c.call("GET", "/collections", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert c.call("GET", "/collections", headers={"Authorization": "s3cret"})[0] == 401
        c.key = "s3cret"
        assert c.call("GET", "/collections")[0] == 200
        assert c.call("POST", "/collections/feedback/search", {"query": QUERY})[0] == 200


def test_without_key_everything_is_open(served):
    assert served.call("GET", "/collections")[0] == 200
    assert served.call("GET", "/docs")[0] == 200
    status, schema = served.call("GET", "/openapi.json")
    assert status == 200 and "/collections/{name}/search" in schema["paths"]


def test_every_error_status_the_service_answers_is_listed_in_the_schema_and_the_docs(served):
    """One home for the error statuses (403 was missing from the docs and the schema)."""
    import re

    from neartext.serve import app as app_module
    from neartext.serve.schemas import ERRORS

    source = Path(app_module.__file__).read_text(encoding="utf-8")
    raised = {int(c) for c in re.findall(r"(?:_error|ApiError)\((\d{3})", source)}
    raised |= {int(c) for c in re.findall(r"_error\((\d{3}) if .*? else (\d{3})", source)[0]}
    assert raised <= set(ERRORS), raised - set(ERRORS)
    schema = served.call("GET", "/openapi.json")[1]
    listed = {int(k) for k in schema["paths"]["/collections/{name}/search"]["post"]["responses"]}
    assert set(ERRORS) <= listed
    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    for code, why in ERRORS.items():
        assert f"| {code} | {why} |" in docs, code


def test_concurrent_requests_are_batched_and_answered_correctly(served, demo_collection):
    queries = [f"{w} problem with the app" for w in
               ("sync", "login", "crash", "refund", "theme", "export", "search", "widget")] * 3
    engine = served.app.state.engine
    before = {k: (b.batches, b.jobs) for k, b in engine.batchers.items()}
    out: dict[int, list[str]] = {}

    def ask(i: int) -> None:
        status, body = served.call("POST", "/collections/feedback/search", {"query": queries[i], "k": 3})
        assert status == 200
        out[i] = [h["id"] for h in body["results"][0]]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batches = sum(b.batches for b in engine.batchers.values()) - sum(v[0] for v in before.values())
    jobs = sum(b.jobs for b in engine.batchers.values()) - sum(v[1] for v in before.values())
    assert jobs == len(queries) and batches <= jobs  # how many share depends on timing;
    # that concurrent jobs do share a batch is checked deterministically in
    # test_jobs_queued_while_a_batch_runs_form_one_batch
    with Collection.open(demo_collection) as col:
        for i, q in enumerate(queries):
            assert out[i] == [r.id for r in col.search(q, k=3)]


def test_feedback_export_trains(tmp_path, demo_copy, capsys):
    from neartext.engine.feedback import FeedbackStore

    fb = FeedbackStore(demo_copy)
    fb.add("app crashes at start", "fb-0007", True)
    fb.add("app crashes at start", "fb-0191", False)
    fb.add("I lost my notes on a new phone", "fb-0235", True)
    fb.add("I lost my notes on a new phone", "fb-0235", True)  # the latest rating counts once
    fb.add("storage is huge", "fb-0092", False)  # only a 👎: no row
    fb.close()
    out = tmp_path / "train.csv"
    assert main(["feedback", "export", str(demo_copy), "-o", str(out)]) == 0
    assert "2 training rows (triplets)" in capsys.readouterr().out
    data = load_training_data(out)
    assert data.format == "triplets" and len(data) == 2
    with Collection.open(demo_copy) as col:
        crash, offline, phone = (d.text for d in col.get(["fb-0007", "fb-0191", "fb-0235"]))
    rows = list(zip(data.texts["anchor"], data.texts["positive"], data.texts["negative"]))
    assert ("app crashes at start", crash, offline) in rows
    assert ("I lost my notes on a new phone", phone, crash) in rows  # another query's passage
    assert main(["feedback", "list", str(demo_copy), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 5
    empty = tmp_path / "empty"
    import shutil

    shutil.copytree(demo_copy, empty)
    (empty / FEEDBACK_DB).unlink()
    assert main(["feedback", "export", str(empty), "-o", str(tmp_path / "x.csv")]) == 1
    assert "no feedback stored yet" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_reindex_keeps_feedback(demo_copy, tiny_model_dir):
    from neartext.engine.feedback import FeedbackStore
    from neartext.ops.reindex import reindex

    fb = FeedbackStore(demo_copy)
    fb.add("q", "fb-0007", True)
    fb.close()
    reindex(demo_copy, str(tiny_model_dir))
    assert [r["doc_id"] for r in FeedbackStore(demo_copy).list()] == ["fb-0007"]


@pytest.mark.slow
def test_cli_serve_prints_url_and_stops_on_ctrl_c(demo_collection, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    from serving import free_port

    port = free_port()
    exe = Path(sys.executable).with_name("neartext")
    proc = subprocess.Popen([str(exe), "serve", f"demo={demo_collection}", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the socket accepts requests
        assert f"at http://127.0.0.1:{port}" in line and "web UI" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/collections", timeout=30) as r:
            assert json.loads(r.read())[0]["name"] == "demo"
    finally:
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode in (0, 130)
    bad = subprocess.run([str(exe), "serve", "a/b=" + str(demo_collection)], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1 and "invalid collection name 'a/b'" in bad.stderr


@pytest.mark.parametrize("option", ["--max-k", "--forward-batch", "--max-batch"])
def test_cli_serve_refuses_non_positive_settings(demo_collection, option, capsys):
    from neartext.cli import main

    assert main(["serve", str(demo_collection), option, "0"]) == 1
    assert f"{option} must be at least 1" in capsys.readouterr().err


def test_map_and_placing_a_query(served):
    status, data = served.call("GET", "/collections/feedback/map?color_by=topic")
    assert status == 200 and len(data["points"]) > 200
    assert {g["name"] for g in data["groups"]} >= {"crash", "billing"}
    xs = [p[0] for p in data["points"]]
    status, at = served.call("POST", "/collections/feedback/map/place", {"query": "charged twice"})
    assert status == 200 and min(xs) <= at["x"] <= max(xs)
    billing = [p for p in data["points"] if data["groups"][p[2]]["name"] == "billing"]
    mean = (sum(p[0] for p in billing) / len(billing), sum(p[1] for p in billing) / len(billing))
    spread = max(xs) - min(xs)
    assert abs(at["x"] - mean[0]) < spread / 3 and abs(at["y"] - mean[1]) < spread / 3
    status, err = served.call("GET", "/collections/feedback/map?color_by=nope")
    assert status == 422 and "unknown metadata column 'nope'" in err["detail"]


def test_concurrent_map_requests_after_a_write_all_succeed(served):
    """After a write the map is computed again: three map requests and a placement at once
    (threads of one process used to share one temporary file name: 200, 500, 500, 500)."""
    from concurrent.futures import ThreadPoolExecutor

    status, _ = served.call("POST", "/collections/second/documents", {"documents": [
        {"id": "map-new", "text": "the map moved after this write"}]})
    assert status == 200
    calls = [("GET", "/collections/second/map", None)] * 3 + [
        ("POST", "/collections/second/map/place", {"query": "charged twice"})]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda c: served.call(*c), calls))
    assert [s for s, _ in answers] == [200] * 4, answers
    assert len({json.dumps(b["points"]) for _, b in answers[:3]}) == 1  # one projection
    assert not [f for f in (served.path / "cache").iterdir() if ".tmp" in f.name]
    served.call("DELETE", "/collections/second/documents/map-new")


def test_jobs_queued_while_a_batch_runs_form_one_batch():
    """While the worker runs one batch, the jobs that arrive meanwhile are handed over together."""
    import asyncio

    from neartext.serve.batcher import MicroBatcher

    release = threading.Event()
    seen: list[list[int]] = []

    def handler(jobs: list[int]) -> list[int]:
        seen.append(list(jobs))
        if len(seen) == 1:
            release.wait(10)  # the first batch holds the worker until the rest are queued
        return [j * 10 for j in jobs]

    async def scenario() -> list[int]:
        b: MicroBatcher[int] = MicroBatcher(handler, max_items=64, max_wait=0.0)
        await b.start()
        try:
            first = asyncio.ensure_future(b.submit(0))
            while not seen:
                await asyncio.sleep(0.001)
            rest = [asyncio.ensure_future(b.submit(i)) for i in range(1, 9)]
            await asyncio.sleep(0.05)
            release.set()
            return await asyncio.gather(first, *rest)
        finally:
            await b.stop()

    assert asyncio.run(scenario()) == [i * 10 for i in range(9)]
    assert seen == [[0], list(range(1, 9))]


def test_delete_by_filter_over_http(demo_copy, monkeypatch):
    """POST /collections/{name}/delete removes what the filter selects (OR and NOT included);
    a broken filter is a 422 (as all bad input here) naming the position and changes nothing;
    the API key applies."""
    with Collection.open(demo_copy) as col:
        want = set(col.matching(["topic=billing|topic=sync", "!platform=ios"]))
        total = len(col)
    assert want
    monkeypatch.setenv("NEARTEXT_API_KEY", "k")
    with running(ServeSettings.from_args([str(demo_copy)])) as c:
        body = {"where": ["topic=billing|topic=sync", "!platform=ios"]}
        assert c.call("POST", "/collections/feedback/delete", body)[0] == 401
        c.key = "k"
        status, err = c.call("POST", "/collections/feedback/delete", {"where": ["(topic=billing"]})
        assert status == 422 and "position 1: '(' is not closed" in err["detail"]
        status, err = c.call("POST", "/collections/feedback/delete", {})
        assert status == 422 and "a filter that selects documents is needed" in err["detail"]
        assert c.call("GET", "/collections/feedback")[1]["documents"] == total
        status, rep = c.call("POST", "/collections/feedback/delete", body)
        assert status == 200 and rep == {"deleted": len(want), "documents": total - len(want)}
    with Collection.open(demo_copy) as col:
        assert not set(col.get(sorted(want))) and len(col) == total - len(want)


def test_cli_serve_on_a_busy_port_is_one_line_before_anything_loads(demo_collection, capsys):
    """Before: the collections and the model loaded (~10 s), then uvicorn's `[Errno 98]` and
    exit 3. Now the address is taken first: one line, exit 1, nothing loaded."""
    import socket
    import time

    from neartext.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        t0 = time.perf_counter()
        assert main(["serve", str(demo_collection), "--port", str(port)]) == 1
        took = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"neartext serve: error: --host 127.0.0.1 --port {port}: cannot listen: "
                   "another process is listening there; choose another --port"], err
    assert took < 1.0
