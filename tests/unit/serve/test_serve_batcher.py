"""The micro-batcher: merging, limits, deadlines, failures and draining, with an engine the test holds.

Every composition is driven by events, never by sleeps: :class:`GatedEngine` records each call
and holds it in a worker thread until the test opens its gate, so "these requests queue while
the model is busy" is a state the test creates, not a race it hopes to win.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from lmforge.serve._batcher import BatcherClosed, DeadlineExceeded, MicroBatcher

HANG = 30.0  # seconds: only bounds a hang (a call that never starts, a gate never opened)


class GatedEngine:
    """Answers row i of a call with [len(text), i], in a worker thread, once the test opens the gate."""

    def __init__(self, fail_on: str | None = None, *, open_gate: bool = False) -> None:
        self.fail_on = fail_on
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self._gate = threading.Event()
        if open_gate:
            self._gate.set()
        self._called = asyncio.Event()

    def open(self) -> None:
        """Let every held call and every later one finish."""
        self._gate.set()

    async def wait_calls(self, n: int) -> None:
        """Until ``n`` calls have started (each may still be held at the gate)."""
        async with asyncio.timeout(HANG):
            while len(self.calls) < n:
                self._called.clear()
                await self._called.wait()

    def _run(self, texts: list[str]) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        if not self._gate.wait(HANG):
            raise TimeoutError("the test never opened the gate")
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model exploded")
        return np.array([[len(t), i] for i, t in enumerate(texts)], dtype=np.float32)

    async def infer(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self._called.set()
        return await asyncio.to_thread(self._run, texts)


async def settle() -> None:
    """Give every ready task on the loop its turn (the batcher reacts to a submit in a few steps)."""
    for _ in range(20):
        await asyncio.sleep(0)


def run(coro):  # noqa: ANN001, ANN201 - a coroutine in, its result out
    return asyncio.run(coro)


def rows_for(*texts: str) -> list[list[float]]:
    """What GatedEngine answers for one call of ``texts``."""
    return [[len(t), i] for i, t in enumerate(texts)]


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    async def main() -> tuple[GatedEngine, list[np.ndarray]]:
        engine = GatedEngine()
        batcher = MicroBatcher(engine.infer, max_batch_size=64)
        batcher.start()
        loop = asyncio.get_running_loop()
        first = batcher.submit(["warm"], loop.time() + HANG)
        await engine.wait_calls(1)  # the model is busy with "warm"...
        tickets = [batcher.submit(["x" * (i + 1)] * 2, loop.time() + HANG) for i in range(10)]  # ...these queue
        await settle()
        assert len(engine.calls) == 1 and batcher.queued_texts == 20
        engine.open()
        results = await asyncio.gather(first.future, *(t.future for t in tickets))
        await batcher.close()
        return engine, results

    engine, results = run(main())
    assert [len(c) for c in engine.calls] == [1, 20]  # the 10 queued requests went as one call
    assert results[0].tolist() == rows_for("warm")
    for i, rows in enumerate(results[1:]):
        # each request got the rows of its own texts: positions 2i and 2i+1 of the merged call
        assert rows.tolist() == [[i + 1, 2 * i], [i + 1, 2 * i + 1]]
    assert threading.main_thread().name not in engine.threads


def test_batches_respect_max_batch_size_but_never_split_a_request() -> None:
    async def main() -> GatedEngine:
        engine = GatedEngine()
        batcher = MicroBatcher(engine.infer, max_batch_size=8)
        batcher.start()
        loop = asyncio.get_running_loop()
        blocker = batcher.submit(["b"], loop.time() + HANG)
        await engine.wait_calls(1)
        tickets = [batcher.submit(["t"] * 3, loop.time() + HANG) for _ in range(5)]
        big = batcher.submit(["big"] * 20, loop.time() + HANG)
        engine.open()
        await asyncio.gather(blocker.future, big.future, *(t.future for t in tickets))
        await batcher.close()
        return engine

    engine = run(main())
    # Oldest first, whole requests up to 8 texts: 3+3, 3+3, then 3 (3+20 > 8), then the 20 alone.
    assert [len(c) for c in engine.calls] == [1, 6, 6, 3, 20]


def test_max_wait_collects_requests_that_arrive_later() -> None:
    async def main() -> tuple[GatedEngine, list[int]]:
        engine = GatedEngine(open_gate=True)
        # The wait is long enough never to run out here: the batch is sent when 4 texts are queued.
        batcher = MicroBatcher(engine.infer, max_batch_size=4, max_wait_s=HANG)
        batcher.start()
        loop = asyncio.get_running_loop()
        tickets, calls_seen = [], []
        for _ in range(4):
            tickets.append(batcher.submit(["a"], loop.time() + HANG))
            await settle()  # the batcher has seen this request and keeps waiting for more
            calls_seen.append(len(engine.calls))
        await asyncio.gather(*(t.future for t in tickets))
        await batcher.close()
        return engine, calls_seen

    engine, calls_seen = run(main())
    assert calls_seen == [0, 0, 0, 1]
    assert engine.calls == [["a"] * 4]


def test_max_wait_sends_a_lone_request_once_it_has_waited() -> None:
    async def main() -> tuple[GatedEngine, np.ndarray]:
        engine = GatedEngine(open_gate=True)
        batcher = MicroBatcher(engine.infer, max_batch_size=64, max_wait_s=0.05)
        batcher.start()
        loop = asyncio.get_running_loop()
        rows = await asyncio.wait_for(batcher.submit(["alone"], loop.time() + HANG).future, HANG)
        await batcher.close()
        return engine, rows

    engine, rows = run(main())
    assert engine.calls == [["alone"]] and rows.tolist() == rows_for("alone")


def test_without_max_wait_an_idle_batcher_sends_at_once() -> None:
    async def main() -> tuple[GatedEngine, list[int]]:
        engine = GatedEngine(open_gate=True)
        batcher = MicroBatcher(engine.infer, max_batch_size=64)
        batcher.start()
        loop = asyncio.get_running_loop()
        ticket = batcher.submit(["now"], loop.time() + HANG)
        await settle()
        seen = [len(engine.calls)]
        await ticket.future
        await batcher.close()
        return engine, seen

    engine, seen = run(main())
    assert seen == [1] and engine.calls == [["now"]]


def test_deadline_passed_in_queue_never_reaches_the_model() -> None:
    async def main() -> tuple[GatedEngine, BaseException | None, np.ndarray]:
        engine = GatedEngine()
        batcher = MicroBatcher(engine.infer, max_batch_size=64)
        batcher.start()
        loop = asyncio.get_running_loop()
        busy = batcher.submit(["busy"], loop.time() + HANG)
        await engine.wait_calls(1)
        late = batcher.submit(["late"], loop.time() + 0.05)
        # "busy" is held at the gate until the deadline of "late" has passed on the loop's clock.
        await asyncio.sleep(late.deadline - loop.time() + 0.01)
        assert loop.time() > late.deadline and not late.future.done()
        engine.open()
        rows = await busy.future
        try:
            await late.future
            error = None
        except DeadlineExceeded as exc:
            error = exc
        await batcher.close()
        return engine, error, rows

    engine, error, rows = run(main())
    assert isinstance(error, DeadlineExceeded) and error.queued
    assert engine.calls == [["busy"]] and rows.tolist() == rows_for("busy")


def test_a_failing_call_fails_only_its_own_batch() -> None:
    async def main() -> tuple[list[object], np.ndarray]:
        engine = GatedEngine(fail_on="boom")
        batcher = MicroBatcher(engine.infer, max_batch_size=2)
        batcher.start()
        loop = asyncio.get_running_loop()
        blocker = batcher.submit(["x"], loop.time() + HANG)
        await engine.wait_calls(1)
        bad = [batcher.submit(["boom"], loop.time() + HANG), batcher.submit(["ok"], loop.time() + HANG)]
        good = batcher.submit(["fine", "also"], loop.time() + HANG)
        engine.open()
        outcomes = await asyncio.gather(*(t.future for t in bad), return_exceptions=True)
        rows = await good.future
        await blocker.future
        await batcher.close()
        assert engine.calls == [["x"], ["boom", "ok"], ["fine", "also"]]
        return outcomes, rows

    outcomes, rows = run(main())
    assert [(type(o), str(o)) for o in outcomes] == [(RuntimeError, "model exploded")] * 2
    assert rows.tolist() == rows_for("fine", "also")


def test_close_finishes_queued_work_then_refuses() -> None:
    async def main() -> tuple[list[list[list[float]]], bool, bool]:
        engine = GatedEngine()
        batcher = MicroBatcher(engine.infer, max_batch_size=1)
        batcher.start()
        loop = asyncio.get_running_loop()
        tickets = [batcher.submit([f"t{i}"], loop.time() + HANG) for i in range(5)]
        await engine.wait_calls(1)
        closing = loop.create_task(batcher.close())
        await settle()
        waited = not closing.done() and not any(t.future.done() for t in tickets)  # close waits for the work
        try:
            batcher.submit(["after"], loop.time() + HANG)
            refused = False
        except BatcherClosed:
            refused = True
        engine.open()
        await asyncio.wait_for(closing, HANG)
        return [t.future.result().tolist() for t in tickets], waited, refused

    results, waited, refused = run(main())
    assert waited and refused
    assert results == [rows_for(f"t{i}") for i in range(5)]


def test_event_loop_stays_responsive_during_inference() -> None:
    async def main() -> tuple[bool, list[str], GatedEngine]:
        engine = GatedEngine()
        batcher = MicroBatcher(engine.infer, max_batch_size=64)
        batcher.start()
        loop = asyncio.get_running_loop()
        ticket = batcher.submit(["slow"], loop.time() + HANG)
        await engine.wait_calls(1)
        # The call is held in its thread; the loop still runs another task to completion meanwhile.
        ran: list[str] = []

        async def other() -> None:
            ran.append("other")

        await asyncio.wait_for(loop.create_task(other()), HANG)
        still_running = not ticket.future.done()
        engine.open()
        await ticket.future
        await batcher.close()
        return still_running, ran, engine

    still_running, ran, engine = run(main())
    assert still_running and ran == ["other"]
    assert threading.main_thread().name not in engine.threads


def test_concurrency_runs_calls_in_parallel() -> None:
    async def main() -> list[list[str]]:
        engine = GatedEngine()
        batcher = MicroBatcher(engine.infer, max_batch_size=1, concurrency=2)
        batcher.start()
        loop = asyncio.get_running_loop()
        tickets = [batcher.submit([f"t{i}"], loop.time() + HANG) for i in range(3)]
        await engine.wait_calls(2)  # both held at the gate at once: two calls in flight
        await settle()
        in_flight = [list(c) for c in engine.calls]  # the third waits for a free slot
        engine.open()
        await asyncio.gather(*(t.future for t in tickets))
        await batcher.close()
        return in_flight

    assert run(main()) == [["t0"], ["t1"]]


def test_concurrency_one_runs_one_call_at_a_time() -> None:
    async def main() -> tuple[list[list[str]], list[list[str]]]:
        engine = GatedEngine()
        batcher = MicroBatcher(engine.infer, max_batch_size=1, concurrency=1)
        batcher.start()
        loop = asyncio.get_running_loop()
        tickets = [batcher.submit([f"t{i}"], loop.time() + HANG) for i in range(2)]
        await engine.wait_calls(1)
        await settle()
        in_flight = [list(c) for c in engine.calls]
        engine.open()
        await asyncio.gather(*(t.future for t in tickets))
        await batcher.close()
        return in_flight, engine.calls

    in_flight, calls = run(main())
    assert in_flight == [["t0"]] and calls == [["t0"], ["t1"]]


def test_on_batch_reports_texts_requests_and_errors() -> None:
    seen: list[tuple[int, int, str | None]] = []

    async def main() -> None:
        engine = GatedEngine(fail_on="bad")
        batcher = MicroBatcher(engine.infer, max_batch_size=4,
                               on_batch=lambda n, r, _s, e: seen.append((n, r, None if e is None else str(e))))
        batcher.start()
        loop = asyncio.get_running_loop()
        blocker = batcher.submit(["first"], loop.time() + HANG)
        await engine.wait_calls(1)
        queued = [batcher.submit(["q", "r"], loop.time() + HANG) for _ in range(2)]
        failing = batcher.submit(["bad"], loop.time() + HANG)
        engine.open()
        await asyncio.gather(blocker.future, *(t.future for t in queued), failing.future, return_exceptions=True)
        await batcher.close()

    run(main())
    # (texts, requests, error) per call: the blocker, two 2-text requests filling 4, the failing one alone
    assert seen == [(1, 1, None), (4, 2, None), (1, 1, "model exploded")]
