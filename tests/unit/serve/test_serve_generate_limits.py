"""Limits of generation serving on a real server: 429 + Retry-After under the token budget, a client
that goes away frees its tokens and batch place at once, and the request deadline stops a sequence.

The model is the tiny LM made wider (4 layers of 256, a 4096-token context) with its unscaled random
weights, which never says end-of-sequence early: an answer of 3000 tokens takes far longer than the
4 s deadline (over a minute here), so what ends it is the deadline or the client leaving.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tests._gen_runs import full_run
from tests._serve import Server, create_keys, metric_value, serve_process
from tests._tiny_lm import build_tiny_lm

BUDGET = 4000
DEADLINE_S = 4.0
LONG = 3000


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("gen-limits")
    run = full_run(tmp / "long", build_tiny_lm(tmp / "base", max_positions=4096, hidden=256, layers=4))
    state = tmp / "state"
    tokens = create_keys(state)
    config = {"registry_poll_s": 0, "generation": {"max_new_tokens": 4000, "token_budget": BUDGET,
                                                   "request_timeout_s": DEADLINE_S, "max_batch": 4}}
    with serve_process(tmp, run, "--allow-unsigned", "--state", str(state), config=config, tokens=tokens) as server:
        yield server


def _h(srv: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.tokens['predict']}"}


def _metric(srv: Server, sample: str) -> float:
    text = httpx.get(f"{srv.url}/metrics", headers={"Authorization": f"Bearer {srv.tokens['admin']}"}, timeout=10).text
    return metric_value(text, sample)


def _ended(srv: Server, reason: str) -> float:
    return _metric(srv, f'lmforge_generations_total{{model="long",reason="{reason}",version="1"}}')


def _wait_reserved_zero(srv: Server, within: float) -> float:
    start = time.monotonic()
    while _metric(srv, "lmforge_generation_tokens_reserved") != 0:
        assert time.monotonic() - start < within, "the tokens were not given back"
        time.sleep(0.05)
    return time.monotonic() - start


def _body(max_new_tokens: int, stream: bool) -> dict[str, Any]:
    return {"prompt": "hello", "max_new_tokens": max_new_tokens, "stream": stream}


def test_429_with_retry_after_when_the_token_budget_is_full(srv: Server) -> None:
    _wait_reserved_zero(srv, 30)
    with httpx.stream("POST", f"{srv.url}/v1/generate", json=_body(LONG, True), headers=_h(srv), timeout=30) as first:
        assert first.status_code == 200
        lines = first.iter_lines()  # kept: a dropped line iterator closes the response
        assert next(lines).startswith('data: {"text": ')  # decoding: its prompt + 3000 tokens are reserved
        assert LONG < _metric(srv, "lmforge_generation_tokens_reserved") <= BUDGET
        refused = httpx.post(f"{srv.url}/v1/generate", json=_body(LONG, False), headers=_h(srv), timeout=30)
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        error = refused.json()["error"]
        assert error["code"] == "overloaded" and f"generation.token_budget = {BUDGET}" in error["message"]
        small = httpx.post(f"{srv.url}/v1/generate", json=_body(5, False), headers=_h(srv), timeout=30)
        assert small.status_code == 200 and small.json()["completion_tokens"] == 5  # what still fits is admitted
    whole = httpx.post(f"{srv.url}/v1/generate", json=_body(4000, False), headers=_h(srv), timeout=30)
    assert whole.status_code == 422 and whole.json()["error"]["code"] == "over_token_budget"  # can never fit


def test_a_client_that_goes_away_frees_its_slot(srv: Server) -> None:
    _wait_reserved_zero(srv, 30)
    cancelled, deadline = _ended(srv, "cancelled"), _ended(srv, "deadline")
    tokens_before = _metric(srv, 'lmforge_generated_tokens_total{model="long",version="1"}')
    start = time.monotonic()
    with httpx.stream("POST", f"{srv.url}/v1/generate", json=_body(LONG, True), headers=_h(srv), timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines).startswith('data: {"text": ')
    # The stream is closed: the next write fails and the sequence leaves the batch, well before its deadline.
    assert _wait_reserved_zero(srv, DEADLINE_S - 1) < DEADLINE_S - 1
    while _ended(srv, "cancelled") < cancelled + 1:
        assert time.monotonic() - start < DEADLINE_S - 0.5
        time.sleep(0.05)
    generated = _metric(srv, 'lmforge_generated_tokens_total{model="long",version="1"}') - tokens_before
    assert 1 <= generated < LONG
    # The freed budget admits the next long request at once.
    with httpx.stream("POST", f"{srv.url}/v1/generate", json=_body(LONG, True), headers=_h(srv), timeout=30) as again:
        assert again.status_code == 200
        again_lines = again.iter_lines()
        assert next(again_lines).startswith("data: ")
    # A plain (non-streamed) request whose client gives up is cancelled too.
    _wait_reserved_zero(srv, DEADLINE_S)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{srv.url}/v1/generate", json=_body(LONG, False), headers=_h(srv), timeout=1.0)
    _wait_reserved_zero(srv, DEADLINE_S - 1.5)
    assert _ended(srv, "cancelled") == cancelled + 3 and _ended(srv, "deadline") == deadline


def test_the_deadline_stops_a_sequence(srv: Server) -> None:
    _wait_reserved_zero(srv, 30)
    before = _ended(srv, "deadline")
    start = time.monotonic()
    reply = httpx.post(f"{srv.url}/v1/generate", json=_body(LONG, False), headers=_h(srv), timeout=60)
    took = time.monotonic() - start
    assert reply.status_code == 504 and reply.json()["error"]["code"] == "deadline_exceeded"
    assert "generation.request_timeout_s" in reply.json()["error"]["message"]
    assert DEADLINE_S <= took < DEADLINE_S + 20
    with httpx.stream("POST", f"{srv.url}/v1/chat/completions", headers=_h(srv), timeout=60,
                      json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": LONG, "temperature": 0,
                            "stream": True}) as r:
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2][6:])["error"]["code"] == "deadline_exceeded"
    assert _ended(srv, "deadline") == before + 2
    _wait_reserved_zero(srv, 5)
