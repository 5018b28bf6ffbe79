"""A Telegram bot over a collection (or a running service): top-k answers with 👍/👎 buttons
whose ratings land in the collection's feedback store (``neartext feedback export``).

Example::

    from neartext.bot import BotSettings, LocalBackend, run_polling
    asyncio.run(run_polling(LocalBackend("memes/"), BotSettings(k=5), token))
"""

from __future__ import annotations

from neartext.bot.core import Backend, LocalBackend, RateLimiter, Ratings, ServiceBackend, format_result
from neartext.bot.telegram import BotSettings, build_dispatcher, run_polling, run_webhook

__all__ = ["Backend", "BotSettings", "LocalBackend", "RateLimiter", "Ratings",
           "ServiceBackend", "build_dispatcher", "format_result", "run_polling", "run_webhook"]
