"""The serving runtime: loaded model versions, routing and hot swap.

One :class:`Runtime` per app, owned by the lifespan. For each served model it holds a
:class:`~lmforge.serve._slots.Slot` with the stable version and an optional canary, each a
:class:`~lmforge.serve._slots.Loaded` (engine + micro-batcher + recent outcomes).

Hot swap: a new version is loaded and verified completely, then the slot's reference is
replaced in one assignment; the old version's batcher is then closed, which finishes every
request already queued or running on it. Requests are routed and queued without an
``await`` in between, so none can land on a batcher that is closing.

Canary: ``percent`` % of a model's requests go to the canary. A canary call that fails is
retried on the stable version (the caller still gets an answer) and counted against the
canary; :mod:`lmforge.serve._canary` judges it and this runtime rolls it back.

The registry is the source of truth: :mod:`lmforge.serve._poller` has the runtime reconcile
with it every ``registry_poll_s``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np

from lmforge.errors import LmforgeError
from lmforge.predict import CAUSAL_LM
from lmforge.serve._admission import Admission
from lmforge.serve._batcher import BatcherClosed, DeadlineExceeded
from lmforge.serve._canary import CanaryJudge
from lmforge.serve._engines import ModelOutputError
from lmforge.serve._errors import ConflictError, NotFoundError, ServeError
from lmforge.serve._generation import TokenBudget
from lmforge.serve._keys import KeyStore
from lmforge.serve._loading import VersionLoader, free
from lmforge.serve._metrics import ServeMetrics
from lmforge.serve._poller import RegistryPoller
from lmforge.serve._predictions import PredictOutcome
from lmforge.serve._registry import ModelRegistry
from lmforge.serve._registry_queries import ModelInfo, VersionInfo
from lmforge.serve._settings import ServeSettings
from lmforge.serve._slots import Loaded, Slot

__all__ = ["ModelFailed", "Runtime"]

log = logging.getLogger("lmforge.serve")


class ModelFailed(Exception):
    """The model call failed for a request (after the canary fallback, if any)."""


class Runtime:
    """Everything a running app holds. Built by :func:`lmforge.serve._app.build_runtime`."""

    def __init__(
        self,
        settings: ServeSettings,
        *,
        engine: Any,
        registry: ModelRegistry,
        keys: KeyStore,
        backend: Any,
        metrics: ServeMetrics,
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
        self.tokens = TokenBudget(settings.generation.token_budget)
        """Tokens reserved by generation requests (:mod:`lmforge.serve._generation`)."""
        self.slots: dict[str, Slot] = {}
        self.draining = False
        self._loader = VersionLoader(
            settings, registry=registry, backend=backend, admission=self.admission, metrics=metrics
        )
        self._lock = asyncio.Lock()
        self._spare: dict[tuple[str, int], Loaded] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._retiring: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load every active model and start the registry poller and the canary judge."""
        await self.reconcile()
        loop = asyncio.get_running_loop()
        if self.settings.registry_poll_s > 0:
            poller = RegistryPoller(self.settings.registry_poll_s, self.reconcile)
            self._tasks.append(loop.create_task(poller.run(), name="lmforge-registry-poll"))
        judge = CanaryJudge(self.settings.canary, self)
        self._tasks.append(loop.create_task(judge.run(), name="lmforge-canary-judge"))

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
        await asyncio.gather(*(free(x) for x in loaded), *self._retiring)
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
        if getattr(target.engine, "kind", None) == CAUSAL_LM:
            raise ServeError(f"Model {slot.name!r} generates text; POST /v1/generate or /v1/chat/completions.")
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

    async def rollback_canary(self, name: str, version: int, reason: str) -> None:
        """Roll back canary ``version`` of ``name`` as the canary judge decided (unless it changed since)."""
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

    async def _preload(self, name: str, version: int) -> None:
        slot = self.slots.get(name)
        have = [x for x in (slot.stable, slot.canary) if x is not None] if slot else []
        if any(x.version == version for x in have) or (name, version) in self._spare:
            return
        self._loader.forget_failure(name, version)  # an explicit request retries a failed load
        self._spare[(name, version)] = await self._loader.load(name, version)

    # -- reconciliation with the registry (hot swap) ----------------------------------------------
    async def reconcile(self) -> None:
        """Bring the loaded versions in line with the registry (load, swap, unload)."""
        async with self._lock:
            models = await asyncio.to_thread(self.registry.list_models)
            for info in models:
                await self._apply(info)
            for stale in set(self._spare):  # preloaded for an action that then failed
                await free(self._spare.pop(stale))

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
        return spare if spare is not None else await self._loader.load(slot.name, version)

    def _retire(self, old: Loaded | None, slot: Slot) -> None:
        """Free a version the slot no longer uses, once its queued requests are answered."""
        if old is None or old is slot.stable or old is slot.canary:
            return
        task = asyncio.get_running_loop().create_task(free(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _publish_loaded(self) -> None:
        gauge = self.metrics.models_loaded
        gauge.clear()
        for slot in self.slots.values():
            for role, x in (("stable", slot.stable), ("canary", slot.canary)):
                if x is not None:
                    gauge.labels(slot.name, str(x.version), role).set(1)
