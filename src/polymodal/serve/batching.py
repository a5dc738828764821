"""Dynamic micro-batching: concurrent requests share one forward pass.

Requests go into a bounded queue. One worker takes the oldest request and every request already waiting, up to
`max_batch` records; it waits (at most `max_wait_ms` since it took the first) only for requests known to be on
their way (`incoming()`: being read or decoded), so a lone request never waits. It runs the handler once on
the batch (in its own thread, so the event loop keeps accepting requests; requests arriving meanwhile form the
next batch) and resolves each request's future with its share of the results. A full queue refuses at once
(`QueueFull`) instead of letting latency grow unbounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

P = TypeVar("P")
R = TypeVar("R")


class QueueFull(RuntimeError):
    """The request queue holds `queue_size` requests already; the caller should retry later."""


@dataclass
class _Job(Generic[P]):
    payload: P
    size: int
    future: asyncio.Future[Any]


class MicroBatcher(Generic[P, R]):
    """Collects payloads from concurrent callers and hands them to `handler` in batches.

    Args:
        handler: takes the payloads of one batch and returns one result per payload, in order. Runs in a
            single worker thread, so it never runs twice at the same time.
        max_batch: most records per handler call (a payload of more records than this runs alone).
        max_wait_ms: longest time the first request of a batch waits for others to join it.
        queue_size: most requests waiting; one more raises `QueueFull`.
    """

    def __init__(self, handler: Callable[[Sequence[P]], Sequence[R]], max_batch: int = 32,
                 max_wait_ms: float = 5.0, queue_size: int = 256) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_ms >= 0")
        self.handler = handler
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.queue_size = queue_size
        self.batches = 0  # handler calls so far
        self._incoming = 0  # requests announced by `incoming()` and not yet submitted
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polymodal-batch")
        self._queue: asyncio.Queue[_Job[P]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def waiting(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Announce a request that is being read or decoded: a batch being collected may wait for it."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1

    def start(self) -> None:
        """Start the worker on the running event loop (again, if the loop changed since)."""
        loop = asyncio.get_running_loop()
        if self._task is not None and not self._task.done() and self._loop is loop:
            return
        self._loop = loop
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._task = loop.create_task(self._work())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None

    async def submit(self, payload: P, size: int, timeout: float) -> R:
        """The handler's result for `payload` (`size` records); raises QueueFull or TimeoutError."""
        self.start()
        assert self._queue is not None
        job: _Job[P] = _Job(payload, size, asyncio.get_running_loop().create_future())
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise QueueFull(f"{self.queue_size} requests are already waiting") from None
        return await asyncio.wait_for(job.future, timeout)  # cancels the future on timeout: the worker skips it

    async def _work(self) -> None:
        carry: _Job[P] | None = None
        while True:
            jobs, carry = await self._collect(carry)
            live = [j for j in jobs if not j.future.done()]  # requests that timed out are dropped
            if live:
                await self._run(live)

    async def _collect(self, first: _Job[P] | None) -> tuple[list[_Job[P]], _Job[P] | None]:
        """One batch, plus the job that did not fit in it (it opens the next batch)."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        jobs = [first if first is not None else await self._queue.get()]
        size, deadline = jobs[0].size, loop.time() + self.max_wait
        while size < self.max_batch:
            job = self._queue.get_nowait() if self._queue.qsize() else await self._wait(deadline - loop.time())
            if job is None:
                break
            if size + job.size > self.max_batch:
                return jobs, job
            jobs.append(job)
            size += job.size
        return jobs, None

    async def _wait(self, left: float) -> _Job[P] | None:
        """The next job if one is on its way and arrives within `left` seconds, else None at once."""
        assert self._queue is not None
        if left <= 0 or not self._incoming:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), left)
        except asyncio.TimeoutError:
            return None

    async def _run(self, jobs: list[_Job[P]]) -> None:
        loop = asyncio.get_running_loop()
        self.batches += 1
        try:
            results = await loop.run_in_executor(self._executor, self.handler, [j.payload for j in jobs])
        except Exception as err:  # noqa: BLE001 - every waiting request learns why its batch failed
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(err)
            return
        for j, result in zip(jobs, results):
            if not j.future.done():
                j.future.set_result(result)
