"""One retry policy for calls to other servers (Milvus, the Telegram Bot API, a running neartext
service): a fixed number of attempts, exponential backoff with jitter (so that many clients
failing together do not retry in step), transient errors only, each retry logged.

Example:
    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionError("busy")
    ...     return "ok"
    >>> call(flaky, transient=lambda e: isinstance(e, ConnectionError), what="x", base=0.001)
    'ok'
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)

T = TypeVar("T")
log = logging.getLogger("neartext")
MAX_WAIT = 10.0  # seconds between two attempts at the most


def _policy(transient: Callable[[BaseException], bool], what: str, attempts: int, base: float,
            wait_for: Callable[[BaseException], float | None] | None) -> dict[str, Any]:
    # base, 2 base, 4 base ... (at most MAX_WAIT) plus up to ``base`` of random jitter
    backoff = wait_exponential(multiplier=base, max=MAX_WAIT) + wait_random(0, base)

    def wait(state: RetryCallState) -> float:
        e = state.outcome.exception() if state.outcome else None
        told = wait_for(e) if wait_for is not None and e is not None else None
        return float(told) if told is not None else float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        e = state.outcome.exception() if state.outcome else None
        log.warning("%s: %s; retrying (attempt %d of %d)", what,
                    type(e).__name__ if e is None or not str(e) else str(e).splitlines()[0],
                    state.attempt_number + 1, attempts)

    return {"stop": stop_after_attempt(attempts), "reraise": True,
            "retry": retry_if_exception(transient), "before_sleep": before_sleep,
            "wait": wait}


def call(fn: Callable[[], T], *, transient: Callable[[BaseException], bool], what: str,
         attempts: int = 5, base: float = 0.5) -> T:
    """``fn()``, retried while it raises a ``transient`` error; the last error is raised when
    every attempt failed (the caller words it), any other error at once."""
    for attempt in Retrying(**_policy(transient, what, attempts, base, None)):
        with attempt:
            return fn()
    raise AssertionError("unreachable")


async def acall(fn: Callable[[], Awaitable[T]], *, transient: Callable[[BaseException], bool],
                what: str, attempts: int = 5, base: float = 0.5,
                wait_for: Callable[[BaseException], float | None] | None = None) -> T:
    """:func:`call` for coroutines; ``wait_for(error)`` may give the seconds to wait instead of
    the backoff (a server's Retry-After), or None."""
    async for attempt in AsyncRetrying(**_policy(transient, what, attempts, base, wait_for)):
        with attempt:
            return await fn()
    raise AssertionError("unreachable")
