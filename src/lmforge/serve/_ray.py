"""The Ray Serve backend: each model version is a Ray Serve application with N replicas.

Why the ingress stays lmforge's FastAPI app (with a deployment handle called from the
batcher) rather than moving the app into Ray with ``@serve.ingress``: authentication, rate
limits, admission control, the registry, canary routing, metrics and monitoring then run
the same code on both backends, and the ``ray`` backend only changes *where the model runs*.
The micro-batcher already merges concurrent requests, so each handle call carries a full
batch; it keeps ``2 x replicas`` calls in flight so every replica has the next batch waiting
while it finishes the current one. Ray's own HTTP proxy is disabled (``proxy_location=
"Disabled"``): nothing but this process can reach the replicas.

Replicas load the run with :func:`lmforge.predict.load_predictor` from the same path, so
the run directory must be readable on every node (one machine, or a shared filesystem). The
ingress verifies the run before deploying it, but each replica is a process of its own that
reads the files again, maybe much later (a restarted replica) or on another node: so every
replica verifies the run itself, with the ingress's public key (sent as PEM bytes, so the node
needs no key file) and policy, refuses a manifest other than the registered one, and checks
after loading that no file changed since it verified.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.guard import IntegrityError, trusted_public_key, verify_run
from lmforge.predict import load_predictor
from lmforge.serve._engines import check_output, set_threads
from lmforge.serve._runs import manifest_sha256

__all__ = ["RayBackend", "RayEngine"]

log = logging.getLogger(__name__)
_PURPOSE = "The Ray Serve backend (lmforge serve --backend ray)"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class PredictorReplica:
    """One Ray Serve replica: a predictor loaded from a run directory it verifies itself.

    Args:
        run: the run directory (the same path on every node).
        variant: the version's pinned variant.
        threads: intra-op threads of the model, or None.
        public_key: PEM bytes of the key the ingress verifies with; None when it has none.
        allow_unsigned: the ingress's policy for unsigned runs.
        manifest_sha256: the registered manifest's SHA-256; a run whose manifest differs is refused.

    Raises:
        IntegrityError: the run fails verification, its manifest is not the registered one, or a
            file changed while the replica loaded it.
    """

    def __init__(self, run: str, variant: str, threads: int | None, public_key: bytes | None,
                 allow_unsigned: bool, manifest_sha256: str) -> None:
        check = verify_run(run, public_key, allow_unsigned=allow_unsigned)
        if check.manifest_sha256 != manifest_sha256:
            raise IntegrityError(f"{run} changed since it was registered (its manifest differs); "
                                 "register it again as a new version.")
        self.predictor = load_predictor(run, variant=variant)
        if threads:
            set_threads(self.predictor, threads)
        check.check_unchanged()  # after set_threads, which reopens an ONNX session

    def labels(self) -> list[str]:
        return list(self.predictor.labels)

    def predict_proba(self, texts: list[str]) -> np.ndarray:  # Ray runs sync methods in a thread
        proba: np.ndarray = self.predictor.predict_proba(texts, batch_size=max(len(texts), 1))
        return proba


class RayEngine:
    """A deployed version, called through its deployment handle."""

    def __init__(self, handle: Any, app_name: str, labels: list[str], concurrency: int) -> None:
        self.handle = handle
        self.app_name = app_name
        self.labels = labels
        self.concurrency = concurrency

    async def infer(self, texts: list[str]) -> np.ndarray:
        proba = await self.handle.predict_proba.remote(texts)
        return check_output(proba, len(texts), len(self.labels))

    async def close(self) -> None:
        serve = require("ray.serve", extra="ray", purpose=_PURPOSE)
        await asyncio.to_thread(serve.delete, self.app_name)


class RayBackend:
    """Starts (or joins) Ray and Serve; deploys one application per model version."""

    name = "ray"

    def __init__(self, settings: Any) -> None:
        ray = require("ray", extra="ray", purpose=_PURPOSE)
        serve = require("ray.serve", extra="ray", purpose=_PURPOSE)
        self.settings = settings
        self._started_ray = False
        if not ray.is_initialized():
            # ray.init replaces the SIGTERM handler with one that exits at once; keep the server's,
            # which drains first.
            previous = signal.getsignal(signal.SIGTERM) if _main_thread() else None
            try:
                if settings.ray_address:
                    ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(num_cpus=settings.ray_num_cpus, include_dashboard=False, log_to_driver=False)
                    self._started_ray = True
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)
        serve.start(proxy_location="Disabled")

    def load(self, model: str, version: int, run: Path, variant: str) -> RayEngine:
        """Deploy ``run`` as application ``lmforge-MODEL-vVERSION`` and wait until it is ready (blocking)."""
        serve = require("ray.serve", extra="ray", purpose=_PURPOSE)
        s = self.settings
        app_name = f"lmforge-{model}-v{version}"
        deployment = serve.deployment(PredictorReplica).options(
            name="predictor",
            num_replicas=s.replicas,
            ray_actor_options={"num_cpus": s.ray_replica_cpus},
            max_ongoing_requests=4,
        )
        key = trusted_public_key(s.public_key)
        handle = serve.run(
            deployment.bind(str(run), variant, s.batching.threads, key.read_bytes() if key else None,
                            bool(s.allow_unsigned), manifest_sha256(run)),
            name=app_name,
            route_prefix=None,
        )
        labels = list(handle.labels.remote().result())
        log.info("deployed %s with %d replica(s)", app_name, s.replicas)
        return RayEngine(handle, app_name, labels, concurrency=2 * s.replicas)

    def close(self) -> None:
        ray = require("ray", extra="ray", purpose=_PURPOSE)
        if self._started_ray:
            serve = require("ray.serve", extra="ray", purpose=_PURPOSE)
            serve.shutdown()
            ray.shutdown()
