"""The micro-batcher: merging, limits, deadlines, failures and draining, with an engine that records its calls."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from lmforge.serve._batcher import BatcherClosed, DeadlineExceeded, MicroBatcher


class RecordingEngine:
    """Answers row i with [len(text), i] after ``delay`` seconds in a worker thread, like a model call."""

    def __init__(self, delay: float = 0.05, fail_on: str | None = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()

    def _run(self, texts: list[str]) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in texts:
            raise RuntimeError("model exploded")
        return np.array([[len(t), i] for i, t in enumerate(texts)], dtype=np.float32)

    async def infer(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return await asyncio.to_thread(self._run, texts)


def run(coro):  # noqa: ANN001, ANN201 - a coroutine in, its result out
    return asyncio.run(coro)


def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    async def main() -> tuple[RecordingEngine, list[np.ndarray]]:
        engine = RecordingEngine(delay=0.1)
        batcher = MicroBatcher(engine.infer, max_batch_size=64)
        batcher.start()
        loop = asyncio.get_running_loop()
        first = batcher.submit(["warm"], loop.time() + 10)  # occupies the model...
        await asyncio.sleep(0.02)
        tickets = [
            batcher.submit(["x" * (i + 1)] * 2, loop.time() + 10) for i in range(10)
        ]  # ...while these queue
        results = await asyncio.gather(first.future, *(t.future for t in tickets))
        await batcher.close()
        return engine, results

    engine, results = run(main())
    assert [len(c) for c in engine.calls] == [1, 20]  # the 10 queued requests went as one call
    for i, rows in enumerate(results[1:]):
        assert rows.shape == (2, 2)
        assert (rows[:, 0] == i + 1).all()  # each request got the rows of its own texts
    assert threading.main_thread().name not in engine.threads


def test_batches_respect_max_batch_size_but_never_split_a_request() -> None:
    async def main() -> RecordingEngine:
        engine = RecordingEngine(delay=0.05)
        batcher = MicroBatcher(engine.infer, max_batch_size=8)
        batcher.start()
        loop = asyncio.get_running_loop()
        blocker = batcher.submit(["b"], loop.time() + 10)
        await asyncio.sleep(0.01)
        tickets = [batcher.submit(["t"] * 3, loop.time() + 10) for _ in range(5)]
        big = batcher.submit(["big"] * 20, loop.time() + 10)
        await asyncio.gather(blocker.future, big.future, *(t.future for t in tickets))
        await batcher.close()
        return engine

    engine = run(main())
    sizes = [len(c) for c in engine.calls]
    assert sizes[0] == 1
    assert max(sizes[1:-1]) <= 8 and 20 in sizes  # merged up to 8; a 20-text request runs whole
    assert sum(sizes) == 1 + 15 + 20


def test_max_wait_collects_requests_that_arrive_later() -> None:
    async def main() -> RecordingEngine:
        engine = RecordingEngine(delay=0.0)
        batcher = MicroBatcher(engine.infer, max_batch_size=64, max_wait_s=0.2)
        batcher.start()
        loop = asyncio.get_running_loop()
        tickets = []
        for _ in range(4):
            tickets.append(batcher.submit(["a"], loop.time() + 10))
            await asyncio.sleep(0.02)
        await asyncio.gather(*(t.future for t in tickets))
        await batcher.close()
        return engine

    engine = run(main())
    assert [len(c) for c in engine.calls] == [4]


def test_deadline_passed_in_queue_never_reaches_the_model() -> None:
    async def main() -> tuple[RecordingEngine, BaseException | None]:
        engine = RecordingEngine(delay=0.3)
        batcher = MicroBatcher(engine.infer, max_batch_size=64)
        batcher.start()
        loop = asyncio.get_running_loop()
        busy = batcher.submit(["busy"], loop.time() + 10)
        await asyncio.sleep(0.02)
        late = batcher.submit(["late"], loop.time() + 0.05)  # expires while "busy" runs
        await busy.future
        try:
            await late.future
            error = None
        except DeadlineExceeded as exc:
            error = exc
        await batcher.close()
        return engine, error

    engine, error = run(main())
    assert isinstance(error, DeadlineExceeded) and error.queued
    assert all("late" not in c for c in engine.calls)


def test_a_failing_call_fails_only_its_own_batch() -> None:
    async def main() -> tuple[list[object], np.ndarray]:
        engine = RecordingEngine(delay=0.05, fail_on="boom")
        batcher = MicroBatcher(engine.infer, max_batch_size=2)
        batcher.start()
        loop = asyncio.get_running_loop()
        blocker = batcher.submit(["x"], loop.time() + 10)
        await asyncio.sleep(0.01)
        bad = [batcher.submit(["boom"], loop.time() + 10), batcher.submit(["ok"], loop.time() + 10)]
        good = batcher.submit(["fine", "also"], loop.time() + 10)
        outcomes = await asyncio.gather(*(t.future for t in bad), return_exceptions=True)
        rows = await good.future
        await blocker.future
        await batcher.close()
        return outcomes, rows

    outcomes, rows = run(main())
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert rows.shape == (2, 2)


def test_close_finishes_queued_work_then_refuses() -> None:
    async def main() -> tuple[list[np.ndarray], bool]:
        engine = RecordingEngine(delay=0.05)
        batcher = MicroBatcher(engine.infer, max_batch_size=1)
        batcher.start()
        loop = asyncio.get_running_loop()
        tickets = [batcher.submit([f"t{i}"], loop.time() + 10) for i in range(5)]
        await batcher.close()
        refused = False
        try:
            batcher.submit(["after"], loop.time() + 10)
        except BatcherClosed:
            refused = True
        return [t.future.result() for t in tickets], refused

    results, refused = run(main())
    assert len(results) == 5 and refused


def test_event_loop_stays_responsive_during_inference() -> None:
    async def main() -> float:
        engine = RecordingEngine(delay=0.5)
        batcher = MicroBatcher(engine.infer, max_batch_size=64)
        batcher.start()
        loop = asyncio.get_running_loop()
        ticket = batcher.submit(["slow"], loop.time() + 10)
        worst = 0.0
        while not ticket.future.done():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - start)
        await batcher.close()
        return worst

    assert run(main()) < 0.25  # the 0.5 s call ran off the loop


@pytest.mark.parametrize("concurrency", [2])
def test_concurrency_runs_calls_in_parallel(concurrency: int) -> None:
    async def main() -> float:
        engine = RecordingEngine(delay=0.3)
        batcher = MicroBatcher(engine.infer, max_batch_size=1, concurrency=concurrency)
        batcher.start()
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        tickets = [batcher.submit([f"t{i}"], loop.time() + 10) for i in range(2)]
        await asyncio.gather(*(t.future for t in tickets))
        await batcher.close()
        return time.perf_counter() - start

    assert run(main()) < 0.55  # two 0.3 s calls overlapped
