"""Adaptive micro-batching: concurrent requests merged into one model call, off the event loop.

Requests are queued; whenever a worker slot is free, the batcher takes queued requests (whole
requests, oldest first) up to ``max_batch_size`` texts and runs them as one call of the
engine's ``infer`` (a worker thread for the local backend, a Ray replica for ``ray``). While
a call runs, new requests queue up, so batches grow with load and stay at one request when
the server is idle: no fixed wait is needed (``max_wait_s`` adds one for engines that profit).

A request whose deadline passes while it is queued is failed with
:class:`DeadlineExceeded` (``queued=True``) and never reaches the model; a request cancelled
by its caller is skipped. :meth:`MicroBatcher.close` stops taking new requests and finishes
every queued and running one first, which is what a hot swap relies on.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["BatcherClosed", "DeadlineExceeded", "MicroBatcher", "Ticket"]


class BatcherClosed(RuntimeError):
    """The batcher is closing (its model is being swapped out); route the request again."""


class DeadlineExceeded(Exception):
    """A request ran out of time; ``queued`` says whether it was still waiting for the model."""

    def __init__(self, queued: bool) -> None:
        super().__init__("deadline exceeded while queued" if queued else "deadline exceeded during inference")
        self.queued = queued


@dataclass(eq=False)
class Ticket:
    """One submitted request: its texts, its future (resolves to (N, C) probabilities) and state."""

    texts: list[str]
    future: asyncio.Future[np.ndarray]
    deadline: float
    """Event-loop time after which it is not worth running."""
    enqueued: float = 0.0
    """Event-loop time it was queued."""
    started: bool = False
    """Taken into a batch (the model is running on it)."""

    def cancel(self) -> None:
        """Give up on this request; the batcher skips it if it is still queued."""
        self.future.cancel()


BatchCallback = Callable[[int, int, float, BaseException | None], None]
"""Called after each model call with (texts, requests, seconds, error or None)."""


class MicroBatcher:
    """Queue of requests for one model, drained in batches by up to ``concurrency`` concurrent calls.

    Args:
        infer: async function from a list of texts to their (N, C) probabilities.
        max_batch_size: most texts per call (a single larger request still runs alone).
        max_wait_s: once a request is queued, how long to wait for more before calling (0: none).
        concurrency: model calls in flight at once.
        on_batch: called after each call (metrics, throughput estimate).
    """

    def __init__(
        self,
        infer: Callable[[list[str]], Awaitable[np.ndarray]],
        *,
        max_batch_size: int,
        max_wait_s: float = 0.0,
        concurrency: int = 1,
        on_batch: BatchCallback | None = None,
    ) -> None:
        self.infer = infer
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.concurrency = concurrency
        self.on_batch = on_batch
        self._queue: collections.deque[Ticket] = collections.deque()
        self._queued_texts = 0
        self._running_texts = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queued_texts(self) -> int:
        """Texts waiting for a model call."""
        return self._queued_texts

    @property
    def running_texts(self) -> int:
        """Texts inside model calls right now."""
        return self._running_texts

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        """Start draining the queue (call from the event loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="lmforge-batcher")

    def submit(self, texts: list[str], deadline: float) -> Ticket:
        """Queue ``texts``; the returned ticket's future resolves to their probabilities.

        Raises:
            BatcherClosed: the batcher no longer takes requests.
        """
        if self._closing:
            raise BatcherClosed("this model version is being swapped out")
        loop = asyncio.get_running_loop()
        ticket = Ticket(list(texts), loop.create_future(), deadline, enqueued=loop.time())
        self._queue.append(ticket)
        self._queued_texts += len(ticket.texts)
        self._wake.set()
        return ticket

    async def close(self) -> None:
        """Refuse new requests, finish every queued and running one, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    # -- the drain loop --------------------------------------------------------------------------
    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        while True:
            if not self._queue:
                if self._closing:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            await slots.acquire()
            if self.max_wait_s > 0 and not self._closing:
                await self._fill(loop)
            batch = self._take(loop)
            if not batch:
                slots.release()
                continue
            task = loop.create_task(self._run(batch, slots))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait until ``max_batch_size`` texts are queued or the oldest has waited ``max_wait_s``."""
        if not self._queue:
            return
        until = self._queue[0].enqueued + self.max_wait_s
        while self._queued_texts < self.max_batch_size and not self._closing:
            remaining = until - loop.time()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                break

    def _take(self, loop: asyncio.AbstractEventLoop) -> list[Ticket]:
        """Oldest live requests up to ``max_batch_size`` texts (at least one); expired ones are failed."""
        batch: list[Ticket] = []
        size = 0
        now = loop.time()
        while self._queue:
            ticket = self._queue[0]
            if ticket.future.done():  # cancelled by its caller
                self._pop()
                continue
            if ticket.deadline <= now:
                self._pop()
                ticket.future.set_exception(DeadlineExceeded(queued=True))
                continue
            if batch and size + len(ticket.texts) > self.max_batch_size:
                break
            self._pop()
            ticket.started = True
            batch.append(ticket)
            size += len(ticket.texts)
        return batch

    def _pop(self) -> None:
        ticket = self._queue.popleft()
        self._queued_texts -= len(ticket.texts)

    async def _run(self, batch: list[Ticket], slots: asyncio.Semaphore) -> None:
        texts = [t for ticket in batch for t in ticket.texts]
        self._running_texts += len(texts)
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            proba = await self.infer(texts)
            if proba.shape[0] != len(texts):
                raise RuntimeError(f"the model returned {proba.shape[0]} rows for {len(texts)} texts")
            offset = 0
            for ticket in batch:
                rows = proba[offset : offset + len(ticket.texts)]
                offset += len(ticket.texts)
                if not ticket.future.done():
                    ticket.future.set_result(rows)
        except Exception as exc:  # the model failed: every request of the batch learns why
            error = exc
            for ticket in batch:
                if not ticket.future.done():
                    ticket.future.set_exception(exc)
        finally:
            self._running_texts -= len(texts)
            slots.release()
            if self.on_batch is not None:
                self.on_batch(len(texts), len(batch), time.perf_counter() - start, error)
