"""A stand-in for the Telegram Bot API on 127.0.0.1: serves queued updates to getUpdates and
records what the bot sends (sendMessage, sendPhoto, answerCallbackQuery, ...).

    with FakeTelegram() as tg:
        tg.push_message(42, "hello")
        ... point the bot at tg.base ...
        tg.wait_for(lambda calls: any(c["method"] == "sendMessage" for c in calls))
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token-that-must-not-leak"


class FakeTelegram:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail_next: dict[str, int] = {}  # method -> how many calls answer 502 first
        self._updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._messages = itertools.count(1000)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.base = ""

    # -- what tests call ---------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        with self._lock:
            uid = next(self._ids)
            self._updates.append({"update_id": uid, **update})
        return uid

    def push_message(self, chat: int, text: str | None = None, **extra: Any) -> int:
        msg = {"message_id": next(self._messages), "date": int(time.time()),
               "chat": {"id": chat, "type": "private"},
               "from": {"id": chat, "is_bot": False, "first_name": "Test"}, **extra}
        if text is not None:
            msg["text"] = text
        return self.push({"message": msg})

    def push_callback(self, chat: int, data: str) -> str:
        cid = f"cb{next(self._ids)}"
        self.push({"callback_query": {
            "id": cid, "chat_instance": "ci", "data": data,
            "from": {"id": chat, "is_bot": False, "first_name": "Test"},
            "message": {"message_id": 1, "date": int(time.time()),
                        "chat": {"id": chat, "type": "private"}, "text": "an answer"}}})
        return cid

    def sent(self, method: str, chat: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if c["method"] == method
                    and (chat is None or str(c.get("chat_id")) == str(chat))]

    def wait_for(self, cond: Any, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                calls = list(self.calls)
            if cond(calls):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; calls so far: {[c['method'] for c in self.calls]}")

    # -- the server ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != "bot" + TOKEN:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"},
                                     status=401)
        form = dict(await request.post()) if request.can_read_body else {}
        params = {k: (v if isinstance(v, str) else str(v)) for k, v in form.items()}
        with self._lock:
            failing = self.fail_next.get(method, 0)
            if failing:
                self.fail_next[method] = failing - 1
        if failing:
            return web.json_response({"ok": False, "error_code": 502, "description": "Bad Gateway"},
                                     status=502)
        if method == "getUpdates":
            return web.json_response({"ok": True, "result": await self._get_updates(params)})
        with self._lock:
            self.calls.append({"method": method, **params})
        return web.json_response({"ok": True, "result": self._result(method, params)})

    async def _get_updates(self, params: dict[str, str]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        end = time.monotonic() + min(float(params.get("timeout") or 0), 0.5)
        while True:
            with self._lock:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = list(self._updates)
            if ready or time.monotonic() >= end:
                return ready
            await asyncio.sleep(0.02)

    def _result(self, method: str, p: dict[str, str]) -> Any:
        if method == "getMe":
            return {"id": 123456, "is_bot": True, "first_name": "neartext", "username": "nt_bot"}
        if method in ("sendMessage", "sendPhoto"):
            msg: dict[str, Any] = {"message_id": next(self._messages), "date": int(time.time()),
                                   "chat": {"id": int(p.get("chat_id", 0)), "type": "private"}}
            if method == "sendPhoto":
                msg["photo"] = [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
                msg["caption"] = p.get("caption", "")
            else:
                msg["text"] = p.get("text", "")
            return msg
        return True

    def __enter__(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/{token}/{method}", self._handle)
        runner = web.AppRunner(app)

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.base = f"http://127.0.0.1:{port}"
            self._ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(runner.cleanup())

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def reply_markup(call: dict[str, Any]) -> dict[str, Any]:
    return json.loads(call.get("reply_markup") or "{}")
