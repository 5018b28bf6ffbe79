"""Progress of long steps, one policy for all of them: a tqdm bar when stderr is a terminal, and
otherwise (a redirected run, a cron job, a CI log) one plain line every
``NEARTEXT_PROGRESS_SECONDS`` (default 10) with the count, the rate and the time left, and one
final line. A step that cannot count (loading a model) says what it is doing once it has taken
more than a second (:func:`slow_step`), in the commands that show progress (:data:`SHOWN`).

Example::

    with progress_bar(len(texts), "embedding", "text", enabled=True) as bar:
        for batch in batches:
            ...
            bar.update(len(batch))

On a terminal this is a bar; redirected to a file it writes lines such as
``embedding: 4,096/20,000 texts (20%), 612.4 texts/s, 26 s left``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from types import TracebackType
from typing import IO, Any, Protocol, cast

from tqdm.auto import tqdm

INTERVAL_ENV = "NEARTEXT_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0
SLOW_STEP_SECONDS = 1.0  # a step that has not ended by then is announced
SHOWN: ContextVar[bool] = ContextVar("neartext_progress_shown", default=False)  # set by the CLI


class Progress(Protocol):
    """What the long steps use of a progress display (tqdm's names)."""

    n: int

    def update(self, n: int = 1) -> Any: ...
    def set_postfix(self, **values: Any) -> Any: ...
    def write(self, line: str) -> Any: ...
    def close(self) -> Any: ...
    def __enter__(self) -> Progress: ...
    def __exit__(self, *exc: Any) -> Any: ...


def interval() -> float:
    """Seconds between log lines (``NEARTEXT_PROGRESS_SECONDS``; 30 by default)."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 01 min``.

    >>> duration(42.4), duration(185), duration(7290)
    ('42 s', '3 min 05 s', '2 h 01 min')
    """
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class LogLines:
    """Progress as plain lines for logs: the first after ``every`` seconds, then every ``every``
    seconds, and a last one on close (when anything was shown)."""

    def __init__(self, total: int | None, desc: str, unit: str, *, initial: int = 0,
                 every: float | None = None, stream: IO[str] | None = None) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every = interval() if every is None else every
        self.stream = stream or sys.stderr
        self.start = self.last = time.monotonic()
        self.start_n = initial
        self.postfix = ""
        self.shown = False
        self.shown_n: int | None = None  # the count the last line showed

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        done = self.n - self.start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        units = f"{self.unit}s"
        if self.total:
            head = f"{self.n:,}/{self.total:,} {units} ({100 * self.n / self.total:.0f}%)"
        else:
            head = f"{self.n:,} {units}"
        speed = (f"{rate:,.1f} {units}/s" if rate >= 1 or rate == 0
                 else f"{1 / rate:,.1f} s/{self.unit}")  # slow steps: seconds per step
        parts = [f"{self.desc}: {head}", speed]
        if self.total and rate > 0 and self.n < self.total:
            parts.append(f"{duration((self.total - self.n) / rate)} left")
        elif self.n and (not self.total or self.n >= self.total):
            parts.append(f"{duration(elapsed)} in all")
        if self.postfix:
            parts.append(self.postfix)
        return ", ".join(parts)

    def _emit(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.shown, self.shown_n = True, self.n
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= self.every:
            self._emit()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def write(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """The final line (when any was shown, and unless the last one already said it)."""
        if self.shown and self.shown_n != self.n:
            self._emit()

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.close()


class _Off:
    """Nothing shown (``-q``, ``--json``, or progress not asked for)."""

    def __init__(self, initial: int = 0) -> None:
        self.n = initial

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        pass

    def write(self, line: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def on_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (stderr) is a terminal: where other libraries' own bars
    (``verbose=``) may draw; in logs they would be carriage-return noise."""
    return (stream or sys.stderr).isatty()


def progress_bar(total: int | None, desc: str, unit: str, *, enabled: bool, initial: int = 0,
                 stream: IO[str] | None = None) -> Progress:
    """A tqdm bar on a terminal, :class:`LogLines` elsewhere, nothing when not ``enabled``."""
    stream = stream or sys.stderr
    if not enabled:
        return _Off(initial)
    if on_terminal(stream):
        return cast(Progress, tqdm(total=total, desc=desc, unit=unit, initial=initial,
                                   file=stream))
    return LogLines(total, desc, unit, initial=initial, stream=stream)


@contextlib.contextmanager
def slow_step(what: str, *, after: float = SLOW_STEP_SECONDS,
              stream: IO[str] | None = None) -> Iterator[None]:
    """Say ``what ...`` on stderr if the step inside takes more than ``after`` seconds, in a
    command that shows progress (:data:`SHOWN`); nothing for a quick step or a quiet one.

    >>> with slow_step("loading the model all-MiniLM-L6-v2"):  # doctest: +SKIP
    ...     model = load()
    """
    if not SHOWN.get():
        yield
        return
    out = stream or sys.stderr
    timer = threading.Timer(after, lambda: print(f"{what} ...", file=out, flush=True))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
