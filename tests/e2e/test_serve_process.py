"""`lmforge serve` as a real process on loopback: round trip, overload, hot swap under load, SIGTERM
under load, signed and refused runs."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests._runs import copy_run
from tests._serve import (
    LMFORGE,
    REPO,
    Connection,
    Reply,
    Server,
    create_keys,
    hammer,
    metric_value,
    one_request,
    serve_env,
    serve_process,
    wait_for_state,
)

# Small queue so a burst overloads it; a long deadline so admitted requests never time out on a busy CI box.
CONFIG = {
    "limits": {"max_in_flight": 32, "max_queued_texts": 128, "max_texts": 16, "request_timeout_s": 60},
    "batching": {"threads": 1},
    "registry_poll_s": 0,
    "drain_s": 1.0,
    "auth": {"rate_per_s": None},  # these tests measure admission control, not the per-key rate
}
HANG = 120.0  # seconds: only bounds a hang (the load, the swap, the drain), never a measurement
ANSWERED_PREDICTS = 'lmforge_http_requests_total{route="/v1/predict",method="POST",status="200"}'


@pytest.fixture(scope="module")
def server(trained_full: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-e2e")
    run = copy_run(trained_full, tmp / "sentiment").root
    tokens = create_keys(tmp / "state")
    with serve_process(
        tmp, run, "--allow-unsigned", "--state", str(tmp / "state"), config=CONFIG, tokens=tokens
    ) as srv:
        srv.tmp = tmp  # type: ignore[attr-defined]
        srv.run = run  # type: ignore[attr-defined]
        yield srv


def statuses(replies: list[Reply | BaseException]) -> dict[object, int]:
    out: dict[object, int] = {}
    for r in replies:
        key: object = r.status if isinstance(r, Reply) else type(r).__name__
        out[key] = out.get(key, 0) + 1
    return out


def test_round_trip_with_the_client_and_the_cli(server: Server, tmp_path: Path) -> None:
    from lmforge.client import ApiError, Client

    with Client(server.url, server.tokens["admin"]) as client:
        preds = client.predict(["great flight, thank you", "lost my bag again, terrible"])
        assert [p["label"] for p in preds] == ["positive", "negative"]
        assert all(abs(sum(p["scores"].values()) - 1) < 1e-4 and p["version"] == 1 for p in preds)
        assert client.health()["ready"] is True
        assert client.models()[0]["name"] == "sentiment"
    with Client(server.url, "lmf_0123456789ab_" + "A" * 43) as client, pytest.raises(ApiError) as err:
        client.predict(["x"])
    assert err.value.status == 401 and err.value.code == "unauthorized"
    env = {**serve_env(tmp_path), "LMFORGE_API_KEY": server.tokens["predict"]}
    proc = subprocess.run(
        [*LMFORGE, "predict", "--url", server.url, "--text", "best airline ever, thanks"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["label"] == "positive"


def test_overload_burst_gets_429_with_retry_after_and_no_5xx(server: Server) -> None:
    token = server.tokens["predict"]

    async def burst() -> list[Reply | BaseException]:
        payload = {"texts": [f"delayed again {i}, worst airline" for i in range(16)]}
        tasks = [one_request(server.port, token, "POST", "/v1/predict", payload) for _ in range(150)]
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)

    replies = asyncio.run(burst())
    counts = statuses(replies)
    assert set(counts) <= {200, 429}, counts  # no 5xx, no dropped connection, no hang
    assert counts.get(200, 0) >= 8 and counts.get(429, 0) >= 50, counts
    for r in replies:
        if isinstance(r, Reply) and r.status == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "overloaded"
    after = asyncio.run(one_request(server.port, token, "POST", "/v1/predict", {"texts": ["on time"]}))
    assert after.status == 200  # and it recovers at once


def test_bad_requests_over_the_wire(server: Server) -> None:
    token = server.tokens["predict"]

    async def send(body: bytes, content_type: str = "application/json") -> Reply:
        conn = Connection(server.port, token)
        try:
            return await conn.request("POST", "/v1/predict", raw=body, headers={"Content-Type": content_type})
        finally:
            await conn.close()

    too_big = asyncio.run(send(b'{"texts": ["' + b"x" * 2_000_000 + b'"]}'))
    assert too_big.status == 413 and too_big.json()["error"]["code"] == "payload_too_large"
    too_many = asyncio.run(send(json.dumps({"texts": ["a"] * 17}).encode()))
    assert too_many.status == 422 and "limits.max_texts = 16" in too_many.json()["error"]["message"]
    malformed = asyncio.run(send(b'{"texts": ["a",'))
    assert malformed.status == 400 and malformed.json()["error"]["code"] == "invalid_json"
    form = asyncio.run(send(b"texts=a", "application/x-www-form-urlencoded"))
    assert form.status == 415


class VersionTally:
    """How many replies of a growing list each model version answered (read incrementally)."""

    def __init__(self, replies: list[Reply | BaseException]) -> None:
        self.replies = replies
        self.read = 0
        self.by_version: dict[int, int] = {}

    def count(self, version: int) -> int:
        for r in self.replies[self.read :]:
            if isinstance(r, Reply) and r.status == 200:
                v = r.json()["version"]
                self.by_version[v] = self.by_version.get(v, 0) + 1
        self.read = len(self.replies)
        return self.by_version.get(version, 0)


def test_hot_swap_under_load_loses_no_request(server: Server) -> None:
    from lmforge.client import Client

    v2 = copy_run(server.run, server.tmp / "sentiment-v2").root  # type: ignore[attr-defined]

    def swap() -> dict:
        with Client(server.url, server.tokens["admin"], timeout=60) as client:
            return client.register("sentiment", str(v2), activate=True)

    async def scenario() -> tuple[list[Reply | BaseException], dict]:
        # The load runs from before the swap until version 2 has answered a few of its requests:
        # driven by what the replies say, not by a fixed window.
        stop, replies = asyncio.Event(), []
        tally = VersionTally(replies)
        load = asyncio.ensure_future(hammer(server.port, server.tokens["predict"], clients=6, stop=stop,
                                            results=replies))
        try:
            await wait_for_state(lambda: tally.count(1) >= 5, timeout=HANG, what="5 replies from version 1", task=load)
            info = await asyncio.to_thread(swap)
            await wait_for_state(lambda: tally.count(2) >= 5, timeout=HANG, what="5 replies from version 2", task=load)
        finally:
            stop.set()
        await asyncio.wait_for(load, HANG)
        return replies, info

    replies, info = asyncio.run(scenario())
    assert info["version"] == 2 and info["status"] == "active"
    counts = statuses(replies)
    assert counts == {200: len(replies)}, counts  # no request lost, failed or refused across the swap
    versions = [r.json()["version"] for r in replies if isinstance(r, Reply)]
    assert versions[0] == 1 and versions[-1] == 2 and versions.count(2) >= 5, versions
    assert set(versions) == {1, 2}


@pytest.fixture
def signed_run(trained_full: Path, tmp_path: Path) -> tuple[Path, Path]:
    from lmforge.guard import generate_signing_key, sign_run

    run = copy_run(trained_full, tmp_path / "signed")
    key = tmp_path / "keys" / "signing.key"
    generate_signing_key(key)
    sign_run(run, key)
    return run.root, Path(str(key) + ".pub")


def test_sigterm_under_load_answers_every_inflight_request(
    signed_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, public_key = signed_run
    tokens = create_keys(tmp_path / "state")
    config = {
        **CONFIG,
        "drain_s": 2.0,
        "limits": {**CONFIG["limits"], "max_in_flight": 256, "max_queued_texts": 4096},
    }
    with serve_process(
        tmp_path,
        run,
        "--public-key",
        str(public_key),
        "--state",
        str(tmp_path / "state"),
        config=config,
        tokens=tokens,
    ) as srv:
        token = tokens["predict"]

        async def admitted() -> tuple[float, float]:
            """(in flight, answered) predict requests, as the server counts them."""
            text = (await one_request(srv.port, token, "GET", "/metrics")).body.decode()
            return (metric_value(text, "lmforge_in_flight_requests"),
                    metric_value(text, ANSWERED_PREDICTS))

        async def scenario() -> tuple[list[Reply | BaseException], Reply, Reply]:
            payload = {"texts": [f"stuck on the tarmac {i} for hours" for i in range(16)]}
            inflight = [
                asyncio.ensure_future(one_request(srv.port, token, "POST", "/v1/predict", payload))
                for _ in range(48)
            ]
            # SIGTERM once the server holds all 48, most still in flight (48 x 16 texts take seconds on one thread).
            deadline = asyncio.get_running_loop().time() + HANG
            while True:
                in_flight, answered = await admitted()
                if in_flight > 0 and in_flight + answered == 48:
                    break
                assert asyncio.get_running_loop().time() < deadline, (
                    f"never all 48 admitted with some in flight: {in_flight} in flight, {answered} answered")
                await asyncio.sleep(0.02)
            srv.proc.send_signal(signal.SIGTERM)
            ready = await one_request(srv.port, None, "GET", "/readyz")
            while ready.status == 200:  # until the signal is handled
                assert asyncio.get_running_loop().time() < deadline, "/readyz never went to 503 after SIGTERM"
                await asyncio.sleep(0.02)
                ready = await one_request(srv.port, None, "GET", "/readyz")
            during = await one_request(srv.port, token, "POST", "/v1/predict", {"texts": ["still served"]})
            return await asyncio.gather(*inflight, return_exceptions=True), ready, during

        replies, ready, during = asyncio.run(scenario())
        assert ready.status == 503 and ready.json()["error"]["code"] == "draining"
        assert during.status == 200  # the drain period still serves
        assert statuses(replies) == {200: 48}
        assert srv.proc.wait(60) == 0
    assert "draining" in srv.output()


def test_unsigned_or_tampered_runs_are_refused(trained_full: Path, tmp_path: Path) -> None:
    run = copy_run(trained_full, tmp_path / "unsigned").root
    env = serve_env(tmp_path)
    base = [*LMFORGE, "serve", str(run), "--state", str(tmp_path / "state"), "--port", "9"]
    proc = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "unsigned" in proc.stderr and "Traceback" not in proc.stderr
    (run / "model" / "config.json").write_text("{}", encoding="utf-8")
    proc = subprocess.run(
        [*base, "--allow-unsigned"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "tampered file: model/config.json" in proc.stderr, proc.stderr


def test_binds_loopback_by_default(server: Server) -> None:
    out = server.output()
    assert f"http://127.0.0.1:{server.port}" in out
    assert "0.0.0.0" not in out
    assert all(token not in out for token in server.tokens.values())
    assert "great flight" not in out and "stuck on the tarmac" not in out
