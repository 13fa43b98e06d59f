"""Helpers of the serving tests: runs that are deliberately worse, API keys, a real server process,
and a minimal HTTP/1.1 load client.

The load client speaks raw HTTP/1.1 over asyncio streams: httpx's async pool tops out near
100 requests/s on this machine, far below the server, so it would measure itself. Every
request and response goes through the real server over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.rundir import RunDir
from tests._runs import NEG, POS, copy_run

LMFORGE = [sys.executable, "-m", "lmforge.cli.__main__"]
REPO = Path(__file__).resolve().parents[1]


# -- runs ------------------------------------------------------------------------------------------
def edit_classifier(src: Path, dst: Path, how: str) -> RunDir:
    """A copy of ``src`` whose classifier head is ``flipped`` (rows swapped: every label inverted) or
    ``nan`` (NaN weights: every call fails), re-hashed into its manifest like a real new run."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    run = copy_run(src, dst)
    (run.root / "signature.json").unlink(missing_ok=True)
    path = run.model_dir / "model.safetensors"
    tensors = load_file(path)
    if how == "flipped":
        tensors["classifier.weight"] = np.ascontiguousarray(tensors["classifier.weight"][::-1])
        tensors["classifier.bias"] = np.ascontiguousarray(tensors["classifier.bias"][::-1])
    elif how == "nan":
        tensors["classifier.weight"] = np.full_like(tensors["classifier.weight"], np.nan)
    else:
        raise ValueError(how)
    save_file(tensors, str(path), metadata={"format": "pt"})
    run.update_manifest()
    return run


def labeled_texts() -> list[tuple[str, str]]:
    """The tiny task's texts with their true labels (what feedback reports)."""
    return [(t, "positive") for t in POS] + [(t, "negative") for t in NEG]


def create_keys(state_dir: Path) -> dict[str, str]:
    """An admin and a predict token in the registry of ``state_dir``."""
    from lmforge.serve import ServeSettings, create_key, open_stores

    with open_stores(ServeSettings(state_dir=str(state_dir))) as stores:
        admin, _ = create_key(stores, "test-admin", "admin", actor="tests")
        predict, _ = create_key(stores, "test-predict", "predict", actor="tests")
    return {"admin": admin, "predict": predict}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HOME=str(tmp_path / "home"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


# -- a real server process --------------------------------------------------------------------------
@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise AssertionError(f"server not ready after {timeout} s:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


@contextlib.contextmanager
def serve_process(
    tmp_path: Path,
    target: str | Path,
    *args: str,
    config: dict[str, Any] | None = None,
    tokens: dict[str, str] | None = None,
    ready: bool = True,
) -> Iterator[Server]:
    """``lmforge serve TARGET ARGS`` on a free loopback port; stopped (SIGTERM) on exit."""
    port = free_port()
    extra = list(args)
    if config:
        import yaml

        path = tmp_path / f"serve-{port}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        extra += ["--config", str(path)]
    log = tmp_path / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*LMFORGE, "serve", str(target), "--port", str(port), *extra],
            cwd=REPO,
            env=serve_env(tmp_path),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, port, log, dict(tokens or {}))
    try:
        if ready:
            server.wait_ready()
        yield server
    finally:
        server.stop()


# -- raw HTTP/1.1 load client ------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One keep-alive HTTP/1.1 connection (requests one at a time)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        payload: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        """Send one request (``payload`` as JSON, or ``raw`` bytes as they are) and read the reply."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        body = raw if raw is not None else b"" if payload is None else json.dumps(payload).encode()
        headers = dict(headers or {})
        lines = [
            f"{method} {path} HTTP/1.1",
            "Host: 127.0.0.1",
            f"Content-Length: {len(body)}",
            f"Content-Type: {headers.pop('Content-Type', 'application/json')}",
        ]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        start = time.perf_counter()
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        head: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            head[key.strip().lower()] = value.strip()
        data = await self.reader.readexactly(int(head.get("content-length", "0")))
        if head.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, head, data, time.perf_counter() - start)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def one_request(port: int, token: str | None, method: str, path: str, payload: Any = None) -> Reply:
    """A request on a fresh connection (closed afterwards)."""
    conn = Connection(port, token)
    try:
        return await conn.request(method, path, payload)
    finally:
        await conn.close()


async def hammer(
    port: int,
    token: str,
    *,
    clients: int,
    stop: asyncio.Event,
    results: list[Reply | BaseException] | None = None,
    texts: int = 1,
    honor_retry_after: bool = True,
) -> list[Reply | BaseException]:
    """``clients`` connections sending predict requests back to back until ``stop`` is set.

    Every reply (or connection error) is appended to ``results`` as it arrives, so the caller can
    wait for a state of the load (say, replies from a new version) before setting ``stop``; a
    request already sent when ``stop`` is set is still answered and recorded.
    """
    results = [] if results is None else results

    async def client(i: int) -> None:
        conn = Connection(port, token)
        payload = {"texts": [f"flight {i}.{k} was late again, awful service" for k in range(texts)]}
        try:
            while not stop.is_set():
                try:
                    reply = await conn.request("POST", "/v1/predict", payload)
                except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
                    results.append(exc)
                    await conn.close()
                    continue
                results.append(reply)
                if reply.status == 429 and honor_retry_after:
                    await asyncio.sleep(min(float(reply.headers.get("retry-after", "1")), 1.0) / 10)
        finally:
            await conn.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    return results


async def wait_for_state(predicate: Any, *, timeout: float, what: str, task: asyncio.Future[Any] | None = None) -> None:
    """Poll ``predicate()`` on the event loop until it holds; ``timeout`` only bounds a hang.

    Raises AssertionError naming ``what`` after ``timeout`` seconds, or when ``task`` (the load
    being watched) ended first.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if task is not None and task.done():
            task.result()  # its error, if it failed
            raise AssertionError(f"the load ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        await asyncio.sleep(0.02)


def metric_value(text: str, sample: str) -> float:
    """The value of one Prometheus sample line (``name{labels}``) in ``/metrics`` text; 0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
