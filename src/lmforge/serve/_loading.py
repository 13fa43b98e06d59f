"""Loading a model version to serve, and freeing it.

A version is verified again at every load (:func:`lmforge.guard.trust_run`, and its manifest
must be the one registered), loaded by the backend on a thread of its own that ends with the
load (:func:`on_own_thread`), then checked once more:
no file the verification hashed may have changed by the time the backend has loaded (and
copied) the model, so what serves is what was verified. Each version gets its own
micro-batcher. A version that failed to load is not tried again for a minute (the registry
poller would otherwise retry it at every sync), unless an admin action asks for it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from lmforge.errors import LmforgeError
from lmforge.guard import IntegrityError, trust_run
from lmforge.serve._admission import Admission
from lmforge.serve._batcher import MicroBatcher
from lmforge.serve._errors import ServeError
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._registry import ModelRegistry
from lmforge.serve._registry_queries import VersionInfo
from lmforge.serve._slots import Loaded

__all__ = ["VersionLoader", "free", "on_own_thread"]

log = logging.getLogger("lmforge.serve")
_RETRY_FAILED_LOAD_S = 60.0
T = TypeVar("T")


async def on_own_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a new thread that ends when it returns; its value (or its exception).

    Why not the default executor: loading runs torch ops on several cores, and the OpenMP team a
    thread used lives as long as that thread. A pool worker lives on, and with its idle team
    libgomp counts more threads than cores and stops spinning between parallel regions, so every
    parallel op of the model's own thread pays a wake-up. Measured on 2 cores, SmolLM2-135M
    decoding at batch 1 with 2 threads: 18.5 tokens/s after a load on a pool worker, 32.1 after
    a load on a thread that ended (and 32.0 loading on the decoding thread itself).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # the awaiting request was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def run() -> None:
        try:
            value, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting coroutine, raised there
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop closed while loading: nobody is waiting any more
            pass

    threading.Thread(target=run, name="lmforge-load", daemon=True).start()
    return await future


class VersionLoader:
    """Verifies and loads versions with ``backend``; their batchers report to ``admission`` and ``metrics``."""

    def __init__(
        self,
        settings: Any,
        *,
        registry: ModelRegistry,
        backend: Any,
        admission: Admission,
        metrics: ServeMetrics,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.backend = backend
        self.admission = admission
        self.metrics = metrics
        self._failed: dict[tuple[str, int], tuple[str, float]] = {}

    def forget_failure(self, name: str, version: int) -> None:
        """Let the next :meth:`load` of this version try again at once (an explicit request)."""
        self._failed.pop((name, version), None)

    async def load(self, name: str, version: int) -> Loaded:
        """Verify and load one version (in a worker thread), and start its batcher."""
        failed = self._failed.get((name, version))
        if failed is not None and time.monotonic() - failed[1] < _RETRY_FAILED_LOAD_S:
            raise ServeError(failed[0])
        info = await asyncio.to_thread(self.registry.get_version, name, version)
        try:
            engine = await on_own_thread(self._load_blocking, info)
        except LmforgeError as exc:
            self._failed[(name, version)] = (f"version {version} failed to load: {exc}", time.monotonic())
            raise ServeError(self._failed[(name, version)][0]) from None
        b = self.settings.batching
        holder: dict[str, Loaded] = {}
        batcher = MicroBatcher(
            engine.infer,
            max_batch_size=b.max_batch_size,
            max_wait_s=b.max_wait_ms / 1e3,
            concurrency=engine.concurrency,
            on_batch=lambda n, r, sec, err: self._on_batch(holder["x"], n, sec, err),
        )
        window = max(self.settings.canary.window, self.settings.canary.min_requests)
        loaded = Loaded(info, engine, batcher, collections.deque(maxlen=window))
        holder["x"] = loaded
        batcher.start()
        log.info("loaded model %s version %d (%s, variant %s)", name, version, info.run_path, info.variant)
        return loaded

    def _load_blocking(self, info: VersionInfo) -> Any:
        s = self.settings
        run = Path(info.run_path)
        check = trust_run(run, s.public_key, allow_unsigned=s.allow_unsigned)
        if check.manifest_sha256 != info.manifest_sha256:
            raise IntegrityError(
                f"{run} changed since it was registered as {info.model} version {info.version} "
                "(its manifest differs); register it again as a new version."
            )
        engine = self.backend.load(info.model, info.version, run, info.variant)
        try:
            check.check_unchanged()  # what the backend read (threads set, session reopened) is what was verified
        except IntegrityError:
            asyncio.run(engine.close())  # a worker thread: no event loop runs here
            raise
        return engine

    def _on_batch(self, loaded: Loaded, texts: int, seconds: float, error: BaseException | None) -> None:
        self.metrics.batch_size.labels(loaded.model).observe(texts)
        self.metrics.batch_seconds.labels(loaded.model).observe(seconds)
        if error is None:
            self.admission.observe(texts, seconds, loaded.engine.concurrency)


async def free(loaded: Loaded) -> None:
    """Finish every request queued on ``loaded``, then free its model."""
    await loaded.batcher.close()  # finishes every request queued on the old version
    try:
        await loaded.engine.close()
    except Exception as exc:  # freeing must not fail the swap
        log.warning("closing model %s version %d: %s", loaded.model, loaded.version, exc)
    log.info("unloaded model %s version %d", loaded.model, loaded.version)
