"""The Telegram front end (aiogram 3) over a :class:`~neartext.bot.core.Backend`.

Long polling by default, or a webhook served by aiohttp. ``api_server`` points the client at
another Bot API server (a local ``telegram-bot-api``, or the stand-in the tests run).

Example::

    backend = LocalBackend("memes/")
    asyncio.run(run_polling(backend, BotSettings(k=5, show=["title", "link"]), token))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlparse

from aiogram import Bot, Dispatcher, F
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandStart
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message
from aiogram.utils.token import TokenValidationError
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from neartext.bot.core import (
    DEFAULT_HELP,
    DEFAULT_NOTHING,
    DEFAULT_START,
    MAX_QUERY_CHARS,
    Backend,
    RateLimiter,
    Ratings,
    format_result,
    photo_url,
)
from neartext.errors import InputError, ServerUnreachable
from neartext.util.retry import acall as retry_acall

log = logging.getLogger("neartext.bot")
T = TypeVar("T")


@dataclass
class BotSettings:
    """What the bot answers and how."""

    k: int = 5
    show: list[str] = field(default_factory=lambda: ["text"])
    threshold: float | None = None
    photo_column: str | None = None
    start_text: str = DEFAULT_START
    help_text: str = DEFAULT_HELP
    nothing_text: str = DEFAULT_NOTHING
    per_minute: int = 20
    max_chars: int = MAX_QUERY_CHARS
    retries: int = 4

    def __post_init__(self) -> None:
        for flag, value in (("-k", self.k), ("--per-minute", self.per_minute),
                            ("--max-chars", self.max_chars)):
            if value < 1:
                raise InputError(f"{flag} must be at least 1")


class RedactToken(logging.Filter):
    """Replaces the bot token wherever it would appear in a log record (URLs in errors)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            msg = record.getMessage()
            if self.token in msg:
                record.msg = msg.replace(self.token, "<token>")
                record.args = ()
        return True


def protect_token(token: str) -> None:
    """Install :class:`RedactToken` on the root handlers and on aiogram's and neartext's loggers."""
    f = RedactToken(token)
    for name in ("", "aiogram", "aiogram.dispatcher", "aiogram.event", "neartext", "aiohttp"):
        logging.getLogger(name).addFilter(f)
    for h in logging.getLogger().handlers:
        h.addFilter(f)


async def with_retries(call: Callable[[], Awaitable[T]], retries: int = 4) -> T:
    """Run a Bot API call with neartext's retry policy (:mod:`neartext.util.retry`): network and
    server errors retried with backoff, flood limits (``RetryAfter``) waited out as told."""

    def told(e: BaseException) -> float | None:
        return min(float(e.retry_after), 30) if isinstance(e, TelegramRetryAfter) else None

    return await retry_acall(
        call, what="Telegram call", attempts=retries + 1, wait_for=told,
        transient=lambda e: isinstance(e, (TelegramRetryAfter, TelegramNetworkError,
                                           TelegramServerError)))


def make_bot(token: str, api_server: str | None = None) -> Any:

    session = AiohttpSession(api=TelegramAPIServer.from_base(api_server)) if api_server else None
    try:
        return Bot(token, session=session, default=DefaultBotProperties(parse_mode="HTML"))
    except TokenValidationError:
        raise InputError("TELEGRAM_BOT_TOKEN is not a bot token (it looks like "
                         "123456789:AA..., as @BotFather gives it)") from None


async def check_bot(bot: Any, settings: BotSettings, api_server: str | None) -> str:
    """Ask the Bot API who the bot is before answering anything: a refused token or an
    unreachable server is one clear error here, not a traceback from the polling loop.
    Returns the bot's username."""

    where = api_server or "https://api.telegram.org"
    try:
        me = await with_retries(bot.get_me, settings.retries)
    except TelegramUnauthorizedError:
        raise InputError("the Bot API refused TELEGRAM_BOT_TOKEN (401 Unauthorized): check the "
                         "token @BotFather gave you") from None
    except (TelegramNetworkError, TelegramServerError) as e:
        raise ServerUnreachable(f"cannot reach the Telegram Bot API at {where} after "
                                f"{settings.retries + 1} tries ({type(e).__name__}: "
                                f"{str(e).replace(bot.token, '<token>')})") from None
    return str(me.username)


def build_dispatcher(backend: Backend, settings: BotSettings) -> Any:
    """An aiogram ``Dispatcher`` with the bot's handlers."""

    dp = Dispatcher()
    limiter = RateLimiter(settings.per_minute)
    ratings = Ratings()
    fill = {"k": settings.k, "max_chars": settings.max_chars}

    def send(call: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return with_retries(call, settings.retries)

    @dp.message(CommandStart())
    async def start(message: Message) -> None:
        await send(lambda: message.answer(settings.start_text.format(**fill), parse_mode=None))

    @dp.message(Command("help"))
    async def help_(message: Message) -> None:
        await send(lambda: message.answer(settings.help_text.format(**fill), parse_mode=None))

    @dp.message(F.text)
    async def query(message: Message) -> None:
        text = " ".join((message.text or "").split())
        if not text:
            return
        if not limiter.allow(message.chat.id):
            await send(lambda: message.answer(
                f"Too many questions at once: at most {settings.per_minute} a minute. "
                "Please wait a little.", parse_mode=None))
            return
        if len(text) > settings.max_chars:
            await send(lambda: message.answer(
                f"That is {len(text)} characters; please describe it in at most "
                f"{settings.max_chars}.", parse_mode=None))
            return
        try:
            hits = await backend.search(text, settings.k, settings.threshold)
        except Exception:
            log.exception("search failed")
            await send(lambda: message.answer("Sorry, the search failed. Please try again later.",
                                              parse_mode=None))
            return
        if not hits:
            await send(lambda: message.answer(settings.nothing_text, parse_mode=None))
            return
        for rank, hit in enumerate(hits, 1):
            key = ratings.put(text, hit.id)
            buttons = InlineKeyboardMarkup(inline_keyboard=[[
                InlineKeyboardButton(text="👍", callback_data=f"r:{key}:1"),
                InlineKeyboardButton(text="👎", callback_data=f"r:{key}:0")]])
            body = format_result(rank, hit, settings.show)
            photo = photo_url(hit, settings.photo_column)
            if photo:
                await send(lambda b=body, p=photo, m=buttons: message.answer_photo(  # type: ignore[misc]
                    p, caption=b[:1024], reply_markup=m))
            else:
                await send(lambda b=body, m=buttons: message.answer(  # type: ignore[misc]
                    b[:4096], reply_markup=m, disable_web_page_preview=True))

    @dp.message()
    async def not_text(message: Message) -> None:
        await send(lambda: message.answer(
            "I understand text only: describe in words what you are looking for.", parse_mode=None))

    @dp.callback_query(F.data.startswith("r:"))
    async def rate(cb: CallbackQuery) -> None:
        parts = (cb.data or "").split(":")
        item = ratings.get(parts[1]) if len(parts) == 3 and parts[2] in ("0", "1") else None
        if item is None:
            await send(lambda: cb.answer("This answer is too old to rate, sorry."))
            return
        relevant = parts[2] == "1"
        try:
            await backend.rate(item[0], item[1], relevant)
        except Exception:
            log.exception("storing a rating failed")
            await send(lambda: cb.answer("Sorry, the rating was not saved."))
            return
        await send(lambda: cb.answer("Thanks! 👍 saved." if relevant else "Thanks! 👎 saved."))

    @dp.callback_query()
    async def other_callback(cb: CallbackQuery) -> None:
        await send(lambda: cb.answer())

    return dp


async def run_polling(backend: Backend, settings: BotSettings, token: str,
                      api_server: str | None = None, *, handle_signals: bool = True) -> None:
    """Answer messages by long polling until stopped (Ctrl-C or task cancellation)."""
    protect_token(token)
    bot = make_bot(token, api_server)
    try:
        await check_bot(bot, settings, api_server)
        dp = build_dispatcher(backend, settings)
        await with_retries(lambda: bot.delete_webhook(drop_pending_updates=False),
                           settings.retries)
        await dp.start_polling(bot, handle_signals=handle_signals, polling_timeout=10)
    finally:
        await bot.session.close()


def run_webhook(backend: Backend, settings: BotSettings, token: str, url: str, *,
                host: str = "0.0.0.0", port: int = 8443, secret: str | None = None,
                api_server: str | None = None) -> None:
    """Register ``url`` with Telegram and answer updates POSTed to its path by an aiohttp server."""


    protect_token(token)
    bot = make_bot(token, api_server)

    async def preflight() -> None:
        try:
            await check_bot(bot, settings, api_server)
        finally:
            await bot.session.close()  # the server's loop opens its own

    asyncio.run(preflight())
    dp = build_dispatcher(backend, settings)
    path = urlparse(url).path or "/"

    async def on_startup(*_: Any) -> None:
        await with_retries(lambda: bot.set_webhook(url, secret_token=secret), settings.retries)

    dp.startup.register(on_startup)
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret).register(app, path=path)
    setup_application(app, dp, bot=bot)
    web.run_app(app, host=host, port=port, print=None)
