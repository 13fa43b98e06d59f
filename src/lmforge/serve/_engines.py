"""Inference engines: what runs a batch of texts through one loaded model version.

An engine has ``labels``, ``concurrency`` (model calls worth running at once) and
``async infer(texts) -> (N, C) probabilities``; ``close()`` frees it. Backends build them
("first match wins" by name): ``local`` runs the predictor in this process on a small thread
pool, so the event loop never blocks on a model call; ``ray`` (:mod:`lmforge.serve._ray`)
deploys the same predictor as a Ray Serve application. A generative run (``causal-lm``) loads,
on the local backend only, as a :class:`GeneratorEngine`: the generator and its continuous-batching
decode scheduler (:mod:`lmforge.serve._decode`), which the generation routes submit to.
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lmforge.predict import CAUSAL_LM, load_generator, load_predictor, run_kind
from lmforge.serve._decode import DecodeScheduler

__all__ = ["Engine", "GeneratorEngine", "LocalBackend", "LocalEngine", "ModelOutputError", "build_backend"]


class ModelOutputError(RuntimeError):
    """The model returned something that is not a probability matrix (wrong shape, NaN, inf)."""


class Engine(Protocol):
    labels: list[str]
    concurrency: int

    async def infer(self, texts: list[str]) -> np.ndarray: ...

    async def close(self) -> None: ...


def check_output(proba: Any, n: int, n_labels: int) -> np.ndarray:
    """``proba`` as a float32 (n, n_labels) array of finite values, or :class:`ModelOutputError`."""
    arr = np.asarray(proba, dtype=np.float32)
    if arr.shape != (n, n_labels):
        raise ModelOutputError(f"the model returned shape {arr.shape}, expected ({n}, {n_labels})")
    if not np.isfinite(arr).all():
        raise ModelOutputError("the model returned non-finite probabilities (NaN or inf)")
    return arr


def default_threads(workers: int, backend: str | None = None) -> int:
    """Intra-op threads per inference worker, shared by the workers.

    torch: every usable core but one. Its OpenMP threads spin while idle, and the spare core runs
    the event loop (HTTP parsing, auth, validation, serialization): measured on 2 shared cores at
    64 clients, 2 torch threads served 48 requests/s, 1 thread 178, because the starved event loop
    could not feed the model large batches.

    ONNX Runtime: every usable core, with spinning off (:func:`set_threads`), so idle threads
    sleep and leave the cores to the event loop. Measured on 2 cores at 64 clients with the
    airline run's distilled-pruned-int8 variant: 1 thread spinning 282 requests/s, 2 spinning
    352, 2 not spinning 419.
    """
    cores = _usable_cores()
    spare = 0 if backend == "onnxruntime" else 1
    return max(1, (cores - spare) // max(workers, 1))


def generation_threads() -> int:
    """Intra-op threads of a generative version: every usable core.

    Unlike the classifier path, decoding leaves the event loop little to do (a text delta per
    token), so no core is kept for it. Measured on 2 cores with ``bench/generate_load.py``
    (SmolLM2-135M bf16, 15 s per level): 1 thread 20.6 tokens/s at 1 stream and 173 at 16;
    2 threads 29.9 and 259.
    """
    return _usable_cores()


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(predictor: Any, threads: int) -> None:
    """Give the predictor's backend ``threads`` intra-op threads (torch: process-wide; ONNX Runtime: its
    session, rebuilt with idle threads sleeping rather than spinning, as a server wants)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if hasattr(predictor, "set_threads"):
        predictor.set_threads(threads, spinning=False)


class LocalEngine:
    """A predictor in this process; ``workers`` threads run model calls (torch and ORT release the GIL)."""

    def __init__(self, predictor: Any, *, workers: int, batch_size: int) -> None:
        self.predictor = predictor
        self.labels = list(predictor.labels)
        self.concurrency = workers
        self.batch_size = batch_size
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lmforge-infer")

    async def infer(self, texts: list[str]) -> np.ndarray:
        loop = asyncio.get_running_loop()
        proba = await loop.run_in_executor(self._pool, self._call, texts)
        return check_output(proba, len(texts), len(self.labels))

    def _call(self, texts: list[str]) -> np.ndarray:
        proba: np.ndarray = self.predictor.predict_proba(texts, batch_size=max(self.batch_size, 1))
        return proba

    async def close(self) -> None:
        await asyncio.to_thread(self._pool.shutdown, wait=True)
        self.predictor = None


class GeneratorEngine:
    """A generative version in this process; answers ``/v1/generate`` and ``/v1/chat/completions``."""

    kind = CAUSAL_LM
    concurrency = 1

    def __init__(self, generator: Any, *, max_batch: int) -> None:
        self.generator = generator
        self.labels: list[str] = []
        self.scheduler = DecodeScheduler(generator, max_batch=max_batch)
        self.scheduler.start()

    async def infer(self, texts: list[str]) -> Any:
        raise ModelOutputError("this model generates text; it has no class probabilities")

    async def close(self) -> None:
        await asyncio.to_thread(self.scheduler.close)


class LocalBackend:
    """Loads predictors into this process."""

    name = "local"

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def load(self, model: str, version: int, run: Path, variant: str) -> LocalEngine | GeneratorEngine:
        """Load (blocking; call from a worker thread): a :class:`GeneratorEngine` for a generative run."""
        b = self.settings.batching
        if run_kind(run) == CAUSAL_LM:
            generator = load_generator(run, variant)
            set_threads(generator, b.threads if b.threads is not None else generation_threads())
            return GeneratorEngine(generator, max_batch=self.settings.generation.max_batch)
        predictor = load_predictor(run, variant=variant)
        backend = getattr(predictor, "backend", None)
        set_threads(predictor, b.threads if b.threads is not None else default_threads(b.workers, backend))
        return LocalEngine(predictor, workers=b.workers, batch_size=b.max_batch_size)

    def close(self) -> None:
        pass


BACKENDS = {"local": "lmforge.serve._engines:LocalBackend", "ray": "lmforge.serve._ray:RayBackend"}


def build_backend(settings: Any) -> Any:
    """The backend named by ``settings.backend``."""
    import importlib

    module, _, cls = BACKENDS[settings.backend].partition(":")
    return getattr(importlib.import_module(module), cls)(settings)
