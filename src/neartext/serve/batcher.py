"""Micro-batching: requests that arrive together are processed together.

Each request puts a job on an asyncio queue and awaits its result. One worker takes the first job,
then whatever else is queued (waiting at most ``max_wait`` seconds for more while under load,
up to ``max_items``),
and hands the whole batch to ``handler`` in a single worker thread. While that batch runs, new
requests queue up and form the next batch, so batches grow with the load and an idle service
adds at most ``max_wait`` to a request.

Example::

    batcher = MicroBatcher(lambda jobs: [len(j) for j in jobs], max_items=64, max_wait=0.002)
    await batcher.start()
    await batcher.submit("hello")        # -> 5
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

J = TypeVar("J")


class MicroBatcher(Generic[J]):
    """Collect concurrent jobs into batches for ``handler(jobs) -> results`` (an Exception in
    the results fails only its own job). A batch holds at most ``max_items`` items (``size``
    of each job) and, with ``max_cost``, at most that much work (``cost`` of each job, e.g. the
    tokens it encodes); the first job of a batch is always taken."""

    def __init__(self, handler: Callable[[list[J]], Sequence[Any]], *, max_items: int = 64,
                 max_wait: float = 0.002, size: Callable[[J], int] = lambda _: 1,
                 max_cost: int | None = None, cost: Callable[[J], int] = lambda _: 0,
                 name: str = "neartext-batch") -> None:
        self.handler = handler
        self.max_items = max(1, max_items)
        self.max_wait = max(0.0, max_wait)
        self.size = size
        self.max_cost = max_cost
        self.cost = cost
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._queue: asyncio.Queue[tuple[J, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.jobs = 0
        self._last_batch = 0

    async def start(self) -> None:
        self.start_now()

    def start_now(self) -> None:
        """:meth:`start` from code running in the event loop that cannot await."""
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, job: J) -> Any:
        """Queue ``job`` and wait for its result (or its exception)."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, fut))
        return await fut

    def _isolated(self, jobs: list[J]) -> list[Any]:
        """``handler(jobs)``; if the whole batch fails, each job is run alone, so that one bad
        job fails only its own request, never the others batched with it."""
        try:
            return list(self.handler(jobs))
        except Exception as e:
            if len(jobs) == 1:
                return [e]
        out: list[Any] = []
        for j in jobs:
            try:
                out.append(self.handler([j])[0])
            except Exception as e:
                out.append(e)
        return out

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        pending: tuple[J, asyncio.Future] | None = None
        while True:
            first = pending or await self._queue.get()
            pending = None
            batch = [first]
            total = self.size(first[0])
            spent = self.cost(first[0])
            # Wait for company only under load (the last batch was shared): a lone client
            # pays no added latency, concurrent ones fill bigger batches.
            wait = self.max_wait if self._last_batch > 1 else 0.0
            deadline = time.monotonic() + wait
            while total < self.max_items and (self.max_cost is None or spent < self.max_cost):
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                size, cost = self.size(item[0]), self.cost(item[0])
                if total + size > self.max_items or (
                        self.max_cost is not None and spent + cost > self.max_cost):
                    pending = item  # starts the next batch
                    break
                batch.append(item)
                total += size
                spent += cost
            live = [(j, f) for j, f in batch if not f.done()]  # skip jobs whose client went away
            if not live:
                continue
            self.batches += 1
            self.jobs += len(live)
            self._last_batch = len(live)
            results = await loop.run_in_executor(self._executor, self._isolated,
                                                 [j for j, _ in live])
            for (_, fut), res in zip(live, results):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
