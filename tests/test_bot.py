"""The Telegram bot against a local stand-in for the Bot API (tests/fake_telegram.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time

import pytest

pytest.importorskip("aiogram", reason="the bot extra (aiogram) is not installed: pip install 'neartext[bot]'")

from fake_telegram import TOKEN, FakeTelegram, reply_markup  # noqa: E402

from neartext.bot import BotSettings, LocalBackend, RateLimiter, ServiceBackend, run_polling  # noqa: E402
from neartext.cli import main  # noqa: E402
from neartext.engine.feedback import FEEDBACK_DB  # noqa: E402

QUERY = "the app crashes when I open a note with a picture"


@contextlib.contextmanager
def bot_running(backend, settings, api_server):
    loop = asyncio.new_event_loop()
    task: list[asyncio.Task] = []
    errors: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(run_polling(backend, settings, TOKEN, api_server,
                                                 handle_signals=False)))
        try:
            loop.run_until_complete(task[0])
        except asyncio.CancelledError:
            pass
        except BaseException as e:  # surfaced to the test
            errors.append(e)
        finally:  # let aiogram's own tasks finish their cancellation
            rest = asyncio.all_tasks(loop)
            for t in rest:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield
    finally:
        while not task:
            pass
        loop.call_soon_threadsafe(task[0].cancel)
        t.join(20)
        loop.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def tg():
    with FakeTelegram() as fake:
        yield fake


def test_a_query_gets_answers_and_a_rating_is_stored(tg, demo_copy, caplog):
    caplog.set_level(logging.DEBUG)
    backend = LocalBackend(demo_copy)
    settings = BotSettings(k=3, show=["text", "link"])
    with bot_running(backend, settings, tg.base):
        tg.push_message(42, "/start")
        tg.push_message(42, QUERY)
        tg.wait_for(lambda calls: len([c for c in calls if c["method"] == "sendMessage"
                                       and c.get("chat_id") == "42"]) >= 4)
        sent = tg.sent("sendMessage", 42)
        assert "Describe a situation" in sent[0]["text"]
        answers = sent[1:4]
        assert answers[0]["text"].startswith("1. The app crashes every time I open a note with a picture")
        assert "https://help.lumen-notes.example/topics/crash" in answers[0]["text"]
        buttons = reply_markup(answers[0])["inline_keyboard"][0]
        assert [b["text"] for b in buttons] == ["👍", "👎"]
        tg.push_callback(42, buttons[0]["callback_data"])
        tg.wait_for(lambda calls: any(c["method"] == "answerCallbackQuery" for c in calls))
        assert tg.sent("answerCallbackQuery")[-1]["text"] == "Thanks! 👍 saved."
    backend.close()
    with sqlite3.connect(demo_copy / FEEDBACK_DB) as db:
        assert db.execute("SELECT query, doc_id, relevant FROM feedback").fetchall() == [
            (QUERY, "fb-0007", 1)]
    assert not [r for r in caplog.records if TOKEN in r.getMessage()]


@pytest.mark.slow
def test_bad_updates_limits_and_network_errors(tg, demo_copy):
    backend = LocalBackend(demo_copy)
    settings = BotSettings(k=1, per_minute=3, max_chars=100)
    with bot_running(backend, settings, tg.base):
        tg.push_message(7, None, sticker={"file_id": "s", "file_unique_id": "u", "type": "regular",
                                          "width": 1, "height": 1, "is_animated": False,
                                          "is_video": False})
        tg.push({"edited_message": {"message_id": 5, "date": 0, "text": "edited",
                                    "chat": {"id": 7, "type": "private"}}})
        tg.push_callback(7, "garbage")
        tg.push_callback(7, "r:fffff:1")  # an answer the bot does not know (any more)
        tg.push_message(7, "x" * 300)
        tg.wait_for(lambda calls: len(tg.sent("sendMessage", 7)) >= 2
                    and len(tg.sent("answerCallbackQuery")) >= 2)
        texts = [c["text"] for c in tg.sent("sendMessage", 7)]
        assert any("I understand text only" in t for t in texts)
        assert any("at most 100" in t for t in texts)
        assert any(c.get("text") == "This answer is too old to rate, sorry."
                   for c in tg.sent("answerCallbackQuery"))
        # a burst from one chat: the 4th question within a minute is refused (the long one above
        # counted as the first)
        before = len(tg.sent("sendMessage", 7))
        for q in ("refund please", "dark mode", "sync is slow"):
            tg.push_message(7, q)
        tg.wait_for(lambda calls: len(tg.sent("sendMessage", 7)) >= before + 3)
        new = [c["text"] for c in tg.sent("sendMessage", 7)[before:]]
        assert sum("Too many questions" in t for t in new) == 1, new
        # Telegram failing twice in a row: the answer still arrives
        tg.fail_next["sendMessage"] = 2
        tg.push_message(8, "I was charged twice")
        tg.wait_for(lambda calls: len(tg.sent("sendMessage", 8)) >= 1, timeout=60)
        assert tg.sent("sendMessage", 8)[0]["text"].startswith("1. ")
    backend.close()


def test_photos_and_a_service_backend(tg, demo_copy, tmp_path):
    from serving import running

    from neartext.serve import ServeSettings

    with running(ServeSettings.from_args([f"memes={demo_copy}"])) as server:
        backend = ServiceBackend(server.base + "/collections/memes")
        settings = BotSettings(k=1, show=["text"], photo_column="link")
        with bot_running(backend, settings, tg.base):
            tg.push_message(9, "charged twice for my subscription")
            tg.wait_for(lambda calls: len(tg.sent("sendPhoto", 9)) >= 1)
            photo = tg.sent("sendPhoto", 9)[0]
            assert photo["photo"] == "https://help.lumen-notes.example/topics/billing"
            assert photo["caption"].startswith("1. ")
            key = reply_markup(photo)["inline_keyboard"][0][1]["callback_data"]
            tg.push_callback(9, key)
            tg.wait_for(lambda calls: any(c.get("text") == "Thanks! 👎 saved."
                                          for c in tg.sent("answerCallbackQuery")))
        status, rows = server.call("GET", "/collections/memes/feedback")
        assert status == 200 and rows["feedback"][0]["relevant"] is False


def test_rate_limiter_window():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.allow(1) and limiter.allow(1) and not limiter.allow(1)
    assert limiter.allow(2)  # another chat is not affected
    now[0] = 61
    assert limiter.allow(1)


def test_the_rate_limiter_forgets_chats_silent_for_a_minute():
    """A deque per chat that ever wrote was kept for the bot's whole life (a public bot's
    users, one by one); now what is kept follows the chats of the last minute."""
    import tracemalloc

    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    tracemalloc.start()
    try:
        for minute in range(5):  # 5,000 new chats a minute, each writing once
            now[0] = 61.0 * minute
            for chat in range(5000):
                assert limiter.allow(minute * 5000 + chat)
            if minute == 0:
                one_minute = tracemalloc.get_traced_memory()[0]
        five_minutes = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert five_minutes < 2 * one_minute, (one_minute, five_minutes)
    assert limiter.allow(24_999) and not limiter.allow(24_999)  # the last minute's still count
    closed = RateLimiter(0, clock=lambda: now[0])  # (the library's; the bot refuses 0)
    assert not any(closed.allow(chat) for chat in range(3000))  # chats with nothing to sweep


def test_cli_refusals(demo_copy, monkeypatch, capsys):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    assert main(["bot", str(demo_copy)]) == 1
    assert "set TELEGRAM_BOT_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    assert main(["bot", str(demo_copy), "--show", "title,link"]) == 1
    err = capsys.readouterr().err
    assert "unknown field 'title'" in err and TOKEN not in err
    assert main(["bot"]) == 1
    assert "give a collection directory or --url" in capsys.readouterr().err
    assert main(["bot", "--url", "http://127.0.0.1:9/collections/x"]) == 1
    assert "cannot reach the service" in capsys.readouterr().err


@pytest.mark.slow
def test_webhook_mode_through_the_cli(tg, demo_copy):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from serving import free_port

    port = free_port()
    env = {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN}
    exe = Path(sys.executable).with_name("neartext")
    proc = subprocess.Popen(
        [str(exe), "bot", str(demo_copy), "-k", "1", "--webhook", f"http://127.0.0.1:{port}/hook",
         "--host", "127.0.0.1", "--port", str(port), "--secret", "s3cret", "--api-server", tg.base],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tg.wait_for(lambda calls: any(c["method"] == "setWebhook" for c in calls), timeout=90)
        assert tg.sent("setWebhook")[-1]["url"] == f"http://127.0.0.1:{port}/hook"
        update = {"update_id": 1, "message": {
            "message_id": 1, "date": int(time.time()), "text": "charged twice",
            "chat": {"id": 77, "type": "private"}, "from": {"id": 77, "is_bot": False, "first_name": "T"}}}
        req = urllib.request.Request(f"http://127.0.0.1:{port}/hook", data=json.dumps(update).encode(),
                                     headers={"Content-Type": "application/json",
                                              "X-Telegram-Bot-Api-Secret-Token": "s3cret"})
        for _ in range(100):  # the server may still be binding
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    assert r.status == 200
                break
            except OSError:
                time.sleep(0.2)
        tg.wait_for(lambda calls: len(tg.sent("sendMessage", 77)) >= 1)
        assert tg.sent("sendMessage", 77)[0]["text"].startswith("1. ")
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/hook", data=b"{}",
                                     headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
        try:
            urllib.request.urlopen(bad, timeout=10)
            raise AssertionError("a wrong secret was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert TOKEN not in err


@pytest.mark.slow
def test_a_bad_token_or_an_unreachable_api_is_one_line(tg, demo_copy, monkeypatch, capsys):
    from serving import free_port

    import neartext.util.retry as retry

    # the unreachable server is still tried five times, without the backoff's 7.5 s between
    # the tries (their jitter, up to 0.5 s each, is left)
    monkeypatch.setattr(retry, "MAX_WAIT", 0.0)

    cases = [("not-a-token", tg.base, "is not a bot token"),
             ("123456:WRONGwrongWRONGwrongWRONGwrong12345", tg.base, "refused TELEGRAM_BOT_TOKEN"),
             (TOKEN, f"http://127.0.0.1:{free_port()}", "cannot reach the Telegram Bot API")]
    for token, server, needle in cases:
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
        assert main(["bot", str(demo_copy), "--api-server", server]) == 1
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if "error" in ln]
        assert len(lines) == 1 and needle in lines[0], err
        assert "Traceback" not in err and "Unclosed client session" not in err
        assert token not in err or token == "not-a-token"


def test_help_names_the_token_variable(capsys):
    with pytest.raises(SystemExit):
        main(["bot", "--help"])
    assert "TELEGRAM_BOT_TOKEN" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("where", ["directory", "milvus-lite"])
def test_the_bot_answers_from_a_version_another_process_swapped_in(demo_copy, tmp_path, encoder,
                                                                    where):
    """A both-side adapter promoted by another process swaps the stored vectors: the bot's
    next answer is the new version's (it served the old one in a directory, and failed on
    Milvus once the old passages were dropped)."""
    import asyncio

    import numpy as np

    from neartext import Collection
    from neartext.algo.adapters import Adapter
    from neartext.ops.versions import promote

    address = str(demo_copy)
    if where == "milvus-lite":
        pytest.importorskip("pymilvus", reason="needs neartext[milvus]")
        from neartext.ops.migrate import migrate

        address = f"milvus-lite:{tmp_path / 'store.db'}#feedback"
        migrate(demo_copy, address)
    backend = LocalBackend(address)
    try:
        before = asyncio.run(backend.search(QUERY, 5))
        rng = np.random.default_rng(0)
        m = np.eye(encoder.dim, dtype=np.float32) + 0.05 * rng.standard_normal(
            (encoder.dim, encoder.dim)).astype(np.float32)
        with Collection.open(address, model=encoder) as col:  # as another process would
            assert promote(col, Adapter("linear", "both", m, encoder.fingerprint), {}) == 2
            want = [(r.id, round(r.score, 4)) for r in col.search(QUERY, k=5)]
        time.sleep(1.1)  # a Milvus handle reads the manifest again after a second
        after = [(r.id, round(r.score, 4)) for r in asyncio.run(backend.search(QUERY, 5))]
        assert after == want and after != [(r.id, round(r.score, 4)) for r in before]
    finally:
        backend.close()
