"""A version loads on a thread of its own that ends with the load: no executor thread lingers with the
OpenMP team the load used (whose idle workers make libgomp stop spinning for the model's own thread)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lmforge.serve._loading import on_own_thread


def test_the_value_comes_back_and_the_loading_thread_has_ended() -> None:
    seen: list[threading.Thread] = []

    def load(x: int) -> int:
        seen.append(threading.current_thread())
        return x * 2

    assert asyncio.run(on_own_thread(load, 21)) == 42
    (thread,) = seen
    assert thread is not threading.main_thread() and thread.name == "lmforge-load"
    thread.join(timeout=5)  # a pool worker (asyncio.to_thread) would still be alive here
    assert not thread.is_alive()


def test_the_loaders_exception_is_raised_in_the_caller() -> None:
    def load() -> None:
        raise ValueError("bad weights in model/")

    with pytest.raises(ValueError, match="bad weights in model/"):
        asyncio.run(on_own_thread(load))


def test_a_cancelled_wait_leaves_the_load_to_finish_without_error() -> None:
    release, done = threading.Event(), threading.Event()

    def load() -> str:
        release.wait(5)
        done.set()
        return "engine"

    errors: list[dict[str, object]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        task = asyncio.create_task(on_own_thread(load))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.to_thread(done.wait, 5)
        await asyncio.sleep(0.05)  # the result arrives on a cancelled future: dropped, no callback fails

    asyncio.run(main())
    assert done.is_set() and errors == []
