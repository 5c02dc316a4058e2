"""Handle concurrent requests of one kind as a batch, in one worker-thread hop.

A request's database work runs on a worker thread so the event loop never blocks, but a hop to a thread and back
costs more than a one-row insert (about 70-120 µs of thread wake-ups and GIL hand-offs), and single-record creates
also wait for their group commit on a thread of their own. Under load that overhead, not the database, bounded
how many creates one process could serve. ``RequestBatcher`` keeps the waiting on the event loop: requests queue
as futures, one drain task hands everything queued so far to ``handle`` in a single hop, and requests that arrive
meanwhile make the next batch. An idle server pays nothing extra: the first request is a batch of one.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
R = TypeVar("R")


class _LoopQueue(Generic[T, R]):
    def __init__(self) -> None:
        self.items: list[tuple[T, asyncio.Future[R]]] = []
        self.drains: set[asyncio.Task[None]] = set()  # running; a finished drain removes itself


class RequestBatcher(Generic[T, R]):
    """``await submit(item)`` answers ``handle(batch)[i]`` for the item's place in its batch. ``handle`` runs on
    a worker thread, must return one result per item, and should turn per-item failures into results; an
    exception it raises fails every request of that batch. Work done for one item should run in that request's
    context (capture ``contextvars.copy_context()`` into the item), because the batch runs in none."""

    def __init__(self, handle: Callable[[Sequence[T]], list[R]], max_batch: int = 200, max_inflight: int = 1,
                 ) -> None:
        """``max_inflight`` batches run at once: one where the database has a single writer (SQLite), more where
        writers run in parallel (PostgreSQL), so one slow batch does not hold up every other user's creates."""
        self._handle = handle
        self._max = max_batch
        self._inflight = max_inflight
        # One queue per event loop: tests run several apps' clients on loops of their own.
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue[T, R]] = (
            weakref.WeakKeyDictionary())

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            q = self._queues[loop] = _LoopQueue()
        fut: asyncio.Future[R] = loop.create_future()
        q.items.append((item, fut))
        if len(q.drains) < self._inflight:
            # A context of its own: the request that happens to start the drain must not lend its context
            # variables (its request id in logs) to work done for the whole batch.
            task = loop.create_task(self._drain(q), context=contextvars.Context())
            q.drains.add(task)
            task.add_done_callback(q.drains.discard)  # also when the drain fails or is cancelled
        return await fut

    async def _drain(self, q: _LoopQueue[T, R]) -> None:
        try:
            while q.items:
                batch, q.items = q.items[:self._max], q.items[self._max:]
                try:
                    results = await run_in_threadpool(self._handle, [item for item, _ in batch])
                except Exception as e:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():  # a request cancelled (client gone) while its batch ran
                        fut.set_result(result)
        finally:
            # Leave the set now, with no await since the queue was found empty. The done callback runs later,
            # after the callers just answered have resumed: one that submits at once would otherwise see this
            # drain still running, start none, and wait for somebody else's request to start one.
            task = asyncio.current_task()
            if task is not None:
                q.drains.discard(task)
