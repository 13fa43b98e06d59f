"""The serving runtime: loaded model versions, routing, hot swap, canary judgement, registry sync.

One :class:`Runtime` per app, owned by the lifespan. For each served model it holds a
:class:`Slot` with the stable version and an optional canary, each a :class:`Loaded` (engine
+ micro-batcher + recent outcomes).

Hot swap: a new version is loaded and verified completely, then the slot's reference is
replaced in one assignment; the old version's batcher is then closed, which finishes every
request already queued or running on it. Requests are routed and queued without an
``await`` in between, so none can land on a batcher that is closing.

Canary: ``percent`` % of a model's requests go to the canary. A canary call that fails is
retried on the stable version (the caller still gets an answer) and counted against the
canary. Every ``canary.check_interval_s`` the canary is judged: error rate above the stable
one's by ``canary.error_margin`` (after ``canary.min_requests``), or live accuracy from
feedback labels below the stable one's by ``canary.accuracy_margin`` (after
``canary.min_feedback``, via the monitoring hook), rolls it back in the registry.

The registry is the source of truth: every ``registry_poll_s`` the runtime reconciles with
it, so ``lmforge registry activate`` (another process, or another server sharing a
PostgreSQL registry) takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.serve._admission import Admission
from lmforge.serve._batcher import BatcherClosed, DeadlineExceeded, MicroBatcher
from lmforge.serve._engines import ModelOutputError
from lmforge.serve._errors import ConflictError, NotFoundError, ServeError
from lmforge.serve._registry import ModelInfo, ModelRegistry, VersionInfo, manifest_sha256

__all__ = ["Loaded", "ModelFailed", "PredictOutcome", "Runtime", "Slot"]

log = logging.getLogger("lmforge.serve")
_RETRY_FAILED_LOAD_S = 60.0


class ModelFailed(Exception):
    """The model call failed for a request (after the canary fallback, if any)."""


@dataclass(eq=False)
class Loaded:
    """One model version ready to serve."""

    info: VersionInfo
    engine: Any
    batcher: MicroBatcher
    outcomes: collections.deque[bool]
    """Recent request outcomes, True for a failed model call."""
    loaded_at: float = field(default_factory=time.time)

    @property
    def model(self) -> str:
        return self.info.model

    @property
    def version(self) -> int:
        return self.info.version

    @property
    def labels(self) -> list[str]:
        return list(self.engine.labels)

    def error_rate(self) -> float:
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else 0.0


@dataclass(eq=False)
class Slot:
    """What serves one model name."""

    name: str
    stable: Loaded | None = None
    canary: Loaded | None = None
    percent: float = 0.0
    load_error: str | None = None

    def pick(self) -> Loaded | None:
        if self.canary is not None and self.percent > 0 and random.random() * 100 < self.percent:
            return self.canary
        return self.stable


@dataclass
class PredictOutcome:
    """What answered a predict request."""

    loaded: Loaded
    proba: np.ndarray
    latency_ms: float


class Runtime:
    """Everything a running app holds. Built by :func:`lmforge.serve._app.build_runtime`."""

    def __init__(
        self,
        settings: Any,
        *,
        engine: Any,
        registry: ModelRegistry,
        keys: Any,
        backend: Any,
        metrics: Any,
        monitor: Any = None,
    ) -> None:
        self.settings = settings
        self.db = engine
        self.registry = registry
        self.keys = keys
        self.backend = backend
        self.metrics = metrics
        self.monitor = monitor
        limits = settings.limits
        self.admission = Admission(limits.max_in_flight, limits.max_queued_texts, limits.request_timeout_s)
        self.slots: dict[str, Slot] = {}
        self.draining = False
        self._lock = asyncio.Lock()
        self._spare: dict[tuple[str, int], Loaded] = {}
        self._failed: dict[tuple[str, int], tuple[str, float]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._retiring: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every active model and start the registry poller and the canary judge."""
        await self.reconcile()
        loop = asyncio.get_running_loop()
        if self.settings.registry_poll_s > 0:
            self._tasks.append(loop.create_task(self._poll(), name="lmforge-registry-poll"))
        self._tasks.append(loop.create_task(self._judge_canaries(), name="lmforge-canary-judge"))

    async def close(self) -> None:
        """Stop background tasks, then finish every queued request and free the models."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks.clear()
        loaded = [x for slot in self.slots.values() for x in (slot.stable, slot.canary) if x is not None]
        loaded += list(self._spare.values())
        self.slots.clear()
        self._spare.clear()
        await asyncio.gather(*(self._free(x) for x in loaded), *self._retiring)
        await asyncio.to_thread(self.backend.close)
        self.db.dispose()

    @property
    def ready(self) -> bool:
        """At least one model can answer and the server is not draining."""
        return not self.draining and any(s.stable is not None for s in self.slots.values())

    def queued_texts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for slot in self.slots.values():
            out[slot.name] = sum(x.batcher.queued_texts for x in (slot.stable, slot.canary) if x is not None)
        return out

    # -- prediction ------------------------------------------------------------------------------
    def resolve(self, name: str | None) -> Slot:
        """The slot a request for ``name`` (or the default model) goes to.

        Raises:
            ServeError: no model named while several are served.
            NotFoundError: no such model is being served.
        """
        served = sorted(n for n, s in self.slots.items() if s.stable is not None)
        if name is None:
            name = self.settings.default_model
            if name is None:
                if len(served) == 1:
                    name = served[0]
                elif not served:
                    raise NotFoundError(
                        "No model is being served yet; register and activate one "
                        "(lmforge registry register NAME RUN --activate)."
                    )
                else:
                    raise ServeError(f"Several models are served ({', '.join(served)}); name one in 'model'.")
        slot = self.slots.get(name)
        if slot is None or slot.stable is None:
            raise NotFoundError(
                f"No model named {name[:80]!r} is being served. Served: {', '.join(served) or 'none'}."
            )
        return slot

    async def predict(self, name: str | None, texts: list[str]) -> PredictOutcome:
        """Probabilities for ``texts`` from the model's stable version or, for a share of requests, its canary.

        Raises:
            DeadlineExceeded: the request ran out of time (``queued`` says where).
            ModelFailed: the model call failed (after falling back from a failing canary).
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.settings.limits.request_timeout_s
        slot = self.resolve(name)
        target = slot.pick()
        if target is None:  # resolve() returns only slots with a stable version
            raise NotFoundError(f"Model {slot.name!r} has no version loaded.")
        try:
            proba = await self._on(target, texts, deadline)
        except DeadlineExceeded:
            raise
        except Exception as exc:
            self._model_error(target, exc)
            stable = slot.stable
            if target is stable or stable is None:
                raise ModelFailed(str(exc)) from exc
            target = stable  # the canary failed: answer from the stable version
            try:
                proba = await self._on(target, texts, deadline)
            except DeadlineExceeded:
                raise
            except Exception as exc2:
                self._model_error(target, exc2)
                raise ModelFailed(str(exc2)) from exc2
        target.outcomes.append(False)
        self.metrics.predictions.labels(target.model, str(target.version)).inc(len(texts))
        return PredictOutcome(target, proba, (loop.time() - start) * 1e3)

    async def _on(self, target: Loaded, texts: list[str], deadline: float) -> np.ndarray:
        try:
            ticket = target.batcher.submit(texts, deadline)
        except BatcherClosed:  # swapped out between routing and now: cannot happen without an await
            stable = self.resolve(target.model).stable
            if stable is None:
                raise NotFoundError(f"Model {target.model!r} has no version loaded.") from None
            ticket = stable.batcher.submit(texts, deadline)
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(asyncio.shield(ticket.future), timeout=max(remaining, 0.0))
        except TimeoutError:
            if not ticket.started:
                ticket.cancel()
                raise DeadlineExceeded(queued=True) from None
            raise DeadlineExceeded(queued=False) from None

    def _model_error(self, target: Loaded, exc: BaseException) -> None:
        target.outcomes.append(True)
        self.metrics.model_errors.labels(target.model, str(target.version)).inc()
        if self.monitor is not None:
            self.monitor.record_error(target.model, str(target.version), 500)
        # Our own output checks say what was wrong; other exceptions may quote the input, so only their type.
        detail = (
            str(exc)[:200] if isinstance(exc, ModelOutputError) else "(message withheld: it may quote input)"
        )
        log.error(
            "model %s version %d failed: %s: %s", target.model, target.version, type(exc).__name__, detail
        )

    def record(self, outcome: PredictOutcome, texts: list[str], predictions: list[dict[str, Any]]) -> None:
        """Hand the answered predictions to monitoring (non-blocking); never fails the request."""
        if self.monitor is None:
            return
        try:
            from lmforge.monitor import PredictionRecord

            ts = time.time()
            per_text = outcome.latency_ms
            records = [
                PredictionRecord(
                    id=p["prediction_id"],
                    ts=ts,
                    model=outcome.loaded.model,
                    version=str(outcome.loaded.version),
                    text=text,
                    label=p["label"],
                    confidence=p["score"],
                    scores=p["scores"],
                    latency_ms=per_text,
                )
                for text, p in zip(texts, predictions, strict=True)
            ]
            self.monitor.record_many(records)
        except Exception as exc:  # monitoring must never break serving; the text is not logged
            log.warning("monitoring could not record %d predictions: %s", len(texts), type(exc).__name__)

    @staticmethod
    def to_predictions(loaded: Loaded, proba: np.ndarray) -> list[dict[str, Any]]:
        labels = loaded.labels
        out = []
        for row in proba:
            best = int(row.argmax())
            out.append(
                {
                    "prediction_id": uuid.uuid4().hex,
                    "label": labels[best],
                    "score": float(row[best]),
                    "scores": {label: float(p) for label, p in zip(labels, row, strict=True)},
                    "model": loaded.model,
                    "version": loaded.version,
                }
            )
        return out

    # -- registry actions (admin API) -------------------------------------------------------------
    async def register(
        self, name: str, run: str, variant: str | None, *, activate: bool, actor: str
    ) -> VersionInfo:
        s = self.settings
        info = await asyncio.to_thread(
            self.registry.register,
            name,
            run,
            variant=variant,
            public_key=s.public_key,
            allow_unsigned=s.allow_unsigned,
            actor=actor,
        )
        if activate:
            await self.activate(name, info.version, actor=actor)
            info = await asyncio.to_thread(self.registry.get_version, name, info.version)
        return info

    async def activate(self, name: str, version: int, *, actor: str) -> ModelInfo:
        """Load ``version`` completely, then record it as active and swap it in."""
        async with self._lock:
            await asyncio.to_thread(self.registry.get_version, name, version)  # 404 before any work
            await self._preload(name, version)
            info = await asyncio.to_thread(self.registry.activate, name, version, actor=actor)
            await self._apply(info)
            return info

    async def set_canary(self, name: str, version: int, percent: float, *, actor: str) -> ModelInfo:
        async with self._lock:
            await asyncio.to_thread(self.registry.get_version, name, version)
            if percent > 0:
                current = await asyncio.to_thread(self.registry.get_model, name)
                if current.active_version is not None and current.active_version != version:
                    await self._preload(name, version)
            info = await asyncio.to_thread(self.registry.set_canary, name, version, percent, actor=actor)
            await self._apply(info)
            return info

    async def rollback(
        self, name: str, *, actor: str, reason: str = "requested"
    ) -> tuple[ModelInfo, dict[str, Any]]:
        async with self._lock:
            target = await asyncio.to_thread(self.registry.rollback_target, name)
            if target is not None:
                await self._preload(name, target)
            result = await asyncio.to_thread(self.registry.rollback, name, actor=actor, reason=reason)
            if result is None:  # only with only_canary, which is not given here
                raise ConflictError(f"Model {name!r} has nothing to roll back.")
            await self._apply(result[0])
            return result

    async def _preload(self, name: str, version: int) -> None:
        slot = self.slots.get(name)
        have = [x for x in (slot.stable, slot.canary) if x is not None] if slot else []
        if any(x.version == version for x in have) or (name, version) in self._spare:
            return
        self._failed.pop((name, version), None)  # an explicit request retries a failed load
        self._spare[(name, version)] = await self._load(name, version)

    # -- reconciliation with the registry ---------------------------------------------------------
    async def reconcile(self) -> None:
        """Bring the loaded versions in line with the registry (load, swap, unload)."""
        async with self._lock:
            models = await asyncio.to_thread(self.registry.list_models)
            for info in models:
                await self._apply(info)
            for stale in set(self._spare):  # preloaded for an action that then failed
                await self._free(self._spare.pop(stale))

    async def _apply(self, info: ModelInfo) -> None:
        slot = self.slots.setdefault(info.name, Slot(info.name))
        try:
            if info.active_version is not None and (
                slot.stable is None or slot.stable.version != info.active_version
            ):
                new = await self._obtain(slot, info.active_version)
                old, slot.stable = slot.stable, new
                if slot.canary is new:
                    slot.canary = None
                self._retire(old, slot)
            want = info.canary_version if info.canary_percent > 0 else None
            if want is None:
                old, slot.canary = slot.canary, None
                slot.percent = 0.0
                self._retire(old, slot)
            elif slot.canary is None or slot.canary.version != want:
                new = await self._obtain(slot, want)
                old, slot.canary = slot.canary, new
                slot.percent = info.canary_percent
                self._retire(old, slot)
            else:
                slot.percent = info.canary_percent
            slot.load_error = None
        except LmforgeError as exc:
            slot.load_error = str(exc)
            log.error("model %s: %s", info.name, exc)
        self._publish_loaded()

    async def _obtain(self, slot: Slot, version: int) -> Loaded:
        for candidate in (slot.stable, slot.canary):
            if candidate is not None and candidate.version == version:
                return candidate
        spare = self._spare.pop((slot.name, version), None)
        return spare if spare is not None else await self._load(slot.name, version)

    async def _load(self, name: str, version: int) -> Loaded:
        """Verify and load one version (in a worker thread), and start its batcher."""
        failed = self._failed.get((name, version))
        if failed is not None and time.monotonic() - failed[1] < _RETRY_FAILED_LOAD_S:
            raise ServeError(failed[0])
        info = await asyncio.to_thread(self.registry.get_version, name, version)
        try:
            engine = await asyncio.to_thread(self._load_blocking, info)
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
        from lmforge.guard import IntegrityError, trust_run

        s = self.settings
        run = Path(info.run_path)
        trust_run(run, s.public_key, allow_unsigned=s.allow_unsigned)
        if manifest_sha256(run) != info.manifest_sha256:
            raise IntegrityError(
                f"{run} changed since it was registered as {info.model} version {info.version} "
                "(its manifest differs); register it again as a new version."
            )
        return self.backend.load(info.model, info.version, run, info.variant)

    def _on_batch(self, loaded: Loaded, texts: int, seconds: float, error: BaseException | None) -> None:
        self.metrics.batch_size.labels(loaded.model).observe(texts)
        self.metrics.batch_seconds.labels(loaded.model).observe(seconds)
        if error is None:
            self.admission.observe(texts, seconds, loaded.engine.concurrency)

    def _retire(self, old: Loaded | None, slot: Slot) -> None:
        """Free a version the slot no longer uses, once its queued requests are answered."""
        if old is None or old is slot.stable or old is slot.canary:
            return
        task = asyncio.get_running_loop().create_task(self._free(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _free(self, loaded: Loaded) -> None:
        await loaded.batcher.close()  # finishes every request queued on the old version
        try:
            await loaded.engine.close()
        except Exception as exc:  # freeing must not fail the swap
            log.warning("closing model %s version %d: %s", loaded.model, loaded.version, exc)
        log.info("unloaded model %s version %d", loaded.model, loaded.version)

    def _publish_loaded(self) -> None:
        gauge = self.metrics.models_loaded
        gauge.clear()
        for slot in self.slots.values():
            for role, x in (("stable", slot.stable), ("canary", slot.canary)):
                if x is not None:
                    gauge.labels(slot.name, str(x.version), role).set(1)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.registry_poll_s)
            try:
                await self.reconcile()
            except Exception as exc:  # a database hiccup must not stop the poller
                log.warning("registry sync failed: %s", str(exc).splitlines()[0][:200])

    # -- canary judgement -------------------------------------------------------------------------
    async def _judge_canaries(self) -> None:
        while True:
            await asyncio.sleep(self.settings.canary.check_interval_s)
            for slot in list(self.slots.values()):
                canary = slot.canary
                if canary is None or slot.stable is None:
                    continue
                try:
                    reason = await self.canary_verdict(slot)
                    if reason is not None:
                        await self._auto_rollback(slot.name, canary.version, reason)
                except Exception as exc:
                    log.warning("judging the canary of %s failed: %s", slot.name, str(exc)[:200])

    async def canary_verdict(self, slot: Slot) -> str | None:
        """Why the slot's canary should be rolled back, or None while it does well enough."""
        c, s = slot.canary, slot.stable
        if c is None or s is None:
            return None
        cfg = self.settings.canary
        if len(c.outcomes) >= cfg.min_requests:
            # A stable version without enough recent traffic (canary at 100 %) is held to 0 errors.
            stable_rate = s.error_rate() if len(s.outcomes) >= cfg.min_requests else 0.0
            if c.error_rate() > stable_rate + cfg.error_margin:
                return (
                    f"error rate {c.error_rate():.1%} over {len(c.outcomes)} requests vs stable "
                    f"{stable_rate:.1%} (margin {cfg.error_margin:.1%})"
                )
        if self.monitor is not None:
            live_c = await asyncio.to_thread(
                self.monitor.live_metrics, slot.name, str(c.version), window=cfg.window
            )
            live_s = await asyncio.to_thread(
                self.monitor.live_metrics, slot.name, str(s.version), window=cfg.window
            )
            acc_c, acc_s = live_c.get("accuracy"), live_s.get("accuracy")
            if (
                acc_c is not None
                and acc_s is not None
                and live_c.get("n", 0) >= cfg.min_feedback
                and live_s.get("n", 0) >= cfg.min_feedback
                and acc_c < acc_s - cfg.accuracy_margin
            ):
                return (
                    f"live accuracy {acc_c:.3f} over {live_c['n']} feedback labels vs stable {acc_s:.3f} "
                    f"(margin {cfg.accuracy_margin:.3f})"
                )
        return None

    async def _auto_rollback(self, name: str, version: int, reason: str) -> None:
        async with self._lock:
            result = await asyncio.to_thread(
                self.registry.rollback,
                name,
                actor="lmforge-serve (automatic)",
                reason=f"canary {version}: {reason}",
                only_canary=version,
            )
            if result is None:
                return
            # Counted as soon as the registry has committed: that is when other readers see it.
            self.metrics.canary_rollbacks.labels(name).inc()
            await self._apply(result[0])
        log.warning("rolled back canary %s version %d: %s", name, version, reason)
