"""Serving a generative run: /v1/generate, OpenAI's /v1/chat/completions (raw SSE and the official
``openai`` client), stop strings never leaked, the max_new_tokens cap, continuous batching that
changes no greedy answer, auth on every new route, /v1/models in OpenAI's shape, the /chat page.

One real ``lmforge serve`` process on loopback serves the tiny peaky LM of ``tests/_gen_runs.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests._chromium import MISSING, Browser, chromium_installed
from tests._gen_runs import build_peaky_lm, full_run
from tests._serve import Server, create_keys, serve_process

PROMPTS = ["how do i cancel my order", "hello", "track refund please", "reset password", "yes no thanks",
           "open account", "please call us", "is it open", "thanks bot"]
CAP = 12


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gen-serve")
    return full_run(root / "bot", build_peaky_lm(root / "base"))


@pytest.fixture(scope="module")
def srv(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("gen-server")
    state = tmp / "state"
    tokens = create_keys(state)
    config = {"registry_poll_s": 0, "generation": {"max_new_tokens": CAP, "max_batch": 3}}
    with serve_process(tmp, run, "--allow-unsigned", "--state", str(state), config=config, tokens=tokens) as server:
        yield server


@pytest.fixture(scope="module")
def reference(run: Path) -> dict[str, Any]:
    """What the predict layer's own generator answers for each prompt, greedy, capped like the server."""
    from lmforge.predict import load_generator

    generator = load_generator(run)
    return {p: g for p, g in zip(PROMPTS, generator.generate(PROMPTS, max_new_tokens=CAP), strict=True)}


def _h(srv: Server, role: str = "predict") -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.tokens[role]}"}


def _generate(srv: Server, **body: Any) -> dict[str, Any]:
    reply = httpx.post(f"{srv.url}/v1/generate", json=body, headers=_h(srv), timeout=60)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _events(srv: Server, path: str, body: dict[str, Any]) -> tuple[str, list[Any]]:
    """The raw SSE body of a streamed request and its parsed events (``[DONE]`` as the string)."""
    with httpx.stream("POST", f"{srv.url}{path}", json=body, headers=_h(srv), timeout=60) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        raw = reply.read().decode("utf-8")
    assert raw.endswith("data: [DONE]\n\n")
    frames = raw.split("\n\n")
    assert frames[-1] == ""
    events: list[Any] = []
    for frame in frames[:-1]:
        assert frame.startswith("data: ") and "\n" not in frame, frame
        data = frame[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    assert events.count("[DONE]") == 1 and events[-1] == "[DONE]"
    return raw, events[:-1]


def test_generate_answers_what_the_generator_answers(srv: Server, reference: dict[str, Any]) -> None:
    for prompt in PROMPTS[:3]:
        out = _generate(srv, prompt=prompt)
        ref = reference[prompt]
        assert (out["text"], out["finish_reason"]) == (ref.text, ref.finish_reason)
        assert (out["prompt_tokens"], out["completion_tokens"]) == (ref.prompt_tokens, ref.completion_tokens)
        assert out["model"] == "bot" and out["version"] == 1
    chat = _generate(srv, messages=[{"role": "user", "content": PROMPTS[0]}])
    assert chat["text"] == reference[PROMPTS[0]].text  # one user turn is the same prompt


def test_generate_stream_framing(srv: Server, reference: dict[str, Any]) -> None:
    _raw, events = _events(srv, "/v1/generate", {"prompt": PROMPTS[1], "stream": True})
    *deltas, last = events
    assert all(set(e) == {"text"} and e["text"] for e in deltas)
    assert "".join(e["text"] for e in deltas) == reference[PROMPTS[1]].text
    assert last["text"] == "" and last["finish_reason"] == reference[PROMPTS[1]].finish_reason
    assert last["completion_tokens"] == reference[PROMPTS[1]].completion_tokens


def test_chat_completions_sse_in_openai_chunks(srv: Server, reference: dict[str, Any]) -> None:
    body = {"model": "bot", "messages": [{"role": "user", "content": PROMPTS[0]}], "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    _raw, events = _events(srv, "/v1/chat/completions", body)
    first, *middle, final, usage = events
    assert {e["id"] for e in events} == {first["id"]} and first["id"].startswith("chatcmpl-")
    assert all(e["object"] == "chat.completion.chunk" and e["model"] == "bot" for e in events)
    assert first["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                 "finish_reason": None}]
    assert all(e["choices"][0]["finish_reason"] is None for e in middle)
    assert "".join(e["choices"][0]["delta"]["content"] for e in middle) == reference[PROMPTS[0]].text
    assert final["choices"][0]["delta"] == {} and final["choices"][0]["finish_reason"] == "length"
    ref = reference[PROMPTS[0]]
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": ref.prompt_tokens, "completion_tokens": ref.completion_tokens,
        "total_tokens": ref.prompt_tokens + ref.completion_tokens}


def test_the_openai_client_works_unchanged(srv: Server, reference: dict[str, Any]) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=srv.tokens["predict"], max_retries=0)
    assert [m.id for m in client.models.list()] == ["bot"]
    messages = [{"role": "user", "content": PROMPTS[2]}]
    done = client.chat.completions.create(model="bot", messages=messages, temperature=0)  # type: ignore[arg-type]
    ref = reference[PROMPTS[2]]
    assert done.choices[0].message.content == ref.text and done.choices[0].finish_reason == ref.finish_reason
    assert done.usage is not None and done.usage.completion_tokens == ref.completion_tokens
    stream = client.chat.completions.create(model="bot", messages=messages, temperature=0,  # type: ignore[arg-type]
                                            stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ref.text
    assert chunks[-1].choices[0].finish_reason == ref.finish_reason
    # Errors come in OpenAI's shape, so the client raises its own typed exceptions with our message.
    with pytest.raises(openai.NotFoundError, match="No model named 'nope'"):
        client.chat.completions.create(model="nope", messages=messages)  # type: ignore[arg-type]
    bad = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="lmf_0123456789ab_" + "A" * 43, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="bot", messages=messages)  # type: ignore[arg-type]


def test_max_new_tokens_is_capped_by_the_server(srv: Server, reference: dict[str, Any]) -> None:
    long = [p for p in PROMPTS if reference[p].finish_reason == "length"]
    assert long, "a prompt the tiny LM answers to the limit"
    out = _generate(srv, prompt=long[0], max_new_tokens=10_000)
    assert out["completion_tokens"] == CAP and out["finish_reason"] == "length"
    assert _generate(srv, prompt=long[0], max_new_tokens=3)["completion_tokens"] == 3


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_stop_strings_split_across_tokens_never_leak(srv: Server, reference: dict[str, Any], data: Any) -> None:
    prompt = data.draw(st.sampled_from(PROMPTS))
    full = reference[prompt].text
    # A stop string cut from the answer anywhere (across word and token boundaries), or made up.
    start = data.draw(st.integers(0, max(len(full) - 1, 0)))
    stop = data.draw(st.one_of(st.text(alphabet="abcdefhilmnoprstuy \n", min_size=1, max_size=8),
                               st.just(full[start : start + data.draw(st.integers(1, 9))]).filter(bool)))
    expected = full[: full.find(stop)] if stop in full else full
    _raw, events = _events(srv, "/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}],
                                                          "temperature": 0, "stop": [stop], "stream": True})
    sent = ""
    for event in events[1:-1]:
        sent += event["choices"][0]["delta"]["content"]
        assert stop not in sent and full.startswith(sent)  # never a fragment past the cut, even for a moment
    assert sent == expected
    assert events[-1]["choices"][0]["finish_reason"] == ("stop" if stop in full else reference[prompt].finish_reason)


def test_concurrent_requests_get_exactly_what_they_get_alone(srv: Server, reference: dict[str, Any]) -> None:
    alone = {p: _generate(srv, prompt=p) for p in PROMPTS}

    async def all_at_once() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=srv.url, headers=_h(srv), timeout=60) as client:
            async def one(prompt: str, stream: bool) -> dict[str, Any]:
                if not stream:
                    return dict((await client.post("/v1/generate", json={"prompt": prompt})).json())
                text = ""
                async with client.stream("POST", "/v1/generate", json={"prompt": prompt, "stream": True}) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            event = json.loads(line[6:])
                            text += event["text"]
                            last = event
                return {**last, "text": text}

            return await asyncio.gather(*(one(p, i % 2 == 1) for i, p in enumerate(PROMPTS * 2)))

    together = asyncio.run(all_at_once())
    for prompt, out in zip(PROMPTS * 2, together, strict=True):
        want = alone[prompt]
        assert (out["text"], out["finish_reason"], out["completion_tokens"]) == (
            want["text"], want["finish_reason"], want["completion_tokens"]), prompt
        assert out["text"] == reference[prompt].text
    metrics = httpx.get(f"{srv.url}/metrics", headers=_h(srv, "admin"), timeout=10).text
    assert "lmforge_generation_tokens_reserved 0.0" in metrics  # every request gave its tokens back


def test_every_new_route_needs_a_key(srv: Server) -> None:
    chat = {"messages": [{"role": "user", "content": "hello"}]}
    routes = [("POST", "/v1/generate", {"prompt": "hello"}), ("POST", "/v1/chat/completions", chat),
              ("GET", "/v1/models", None)]
    for method, path, body in routes:
        for headers in ({}, {"Authorization": "Bearer lmf_0123456789ab_" + "A" * 43}, {"X-API-Key": "nope"}):
            reply = httpx.request(method, f"{srv.url}{path}", json=body, headers=headers, timeout=10)
            assert reply.status_code == 401, (path, headers)
            assert reply.json()["error"]["code"] == "unauthorized"
        for role in ("predict", "admin"):
            assert httpx.request(method, f"{srv.url}{path}", json=body, headers=_h(srv, role),
                                 timeout=30).status_code == 200, (path, role)
    denied = httpx.post(f"{srv.url}/v1/chat/completions", json=chat, timeout=10).json()["error"]
    assert denied["type"] == "authentication_error" and denied["param"] is None  # OpenAI's error shape
    assert "type" not in httpx.post(f"{srv.url}/v1/generate", json={"prompt": "x"}, timeout=10).json()["error"]
    assert httpx.get(f"{srv.url}/chat", timeout=10).status_code == 200  # the page holds no data; its calls send a key


def test_models_lists_the_registry_and_openai_shape(srv: Server) -> None:
    body = httpx.get(f"{srv.url}/v1/models", headers=_h(srv), timeout=10).json()
    assert [m["name"] for m in body["models"]] == ["bot"] and body["models"][0]["active_version"] == 1
    assert body["object"] == "list"
    (entry,) = body["data"]
    assert entry["id"] == "bot" and entry["object"] == "model" and entry["owned_by"] == "lmforge"
    assert abs(entry["created"] - time.time()) < 3600


def test_bad_generation_requests_are_named(srv: Server) -> None:
    def post(path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{srv.url}{path}", json=body, headers=_h(srv), timeout=30)

    both = post("/v1/generate", {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}]})
    assert both.status_code == 422 and "exactly one of 'prompt'" in both.json()["error"]["message"]
    too_long = post("/v1/generate", {"prompt": "hello " * 300})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
    stops = post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5})
    assert stops.status_code == 422 and stops.json()["error"]["type"] == "invalid_request_error"
    classify = post("/v1/predict", {"texts": ["hello"]})
    assert classify.status_code == 422 and "generates text" in classify.json()["error"]["message"]


def test_the_chat_page_streams_an_answer_in_chromium(srv: Server, reference: dict[str, Any], tmp_path: Path) -> None:
    if not chromium_installed():
        pytest.skip(MISSING)
    page = httpx.get(f"{srv.url}/chat", timeout=10)
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    with Browser(tmp_path / "profile") as browser:
        browser.goto(f"{srv.url}/chat")
        browser.type("#key", srv.tokens["predict"])
        browser.type("#temperature", "0")
        browser.type("#prompt", PROMPTS[1])
        browser.eval("document.querySelector('#send').click()")
        deadline = time.monotonic() + 30
        while browser.eval("document.querySelector('.assistant[data-finish]') !== null") is not True:
            assert time.monotonic() < deadline, browser.html()[-2000:]
            time.sleep(0.1)
        answer = browser.eval("document.querySelector('.assistant').textContent")
        assert answer == reference[PROMPTS[1]].text
        assert browser.eval("document.querySelector('.assistant').dataset.finish") == reference[PROMPTS[1]].finish_reason
        assert browser.eval("document.querySelector('.user').textContent") == PROMPTS[1]
        # A wrong key: the page shows the server's message, not an answer.
        browser.type("#key", "wrong")
        browser.type("#prompt", "hello")
        browser.eval("document.querySelector('#send').click()")
        while browser.eval("document.querySelector('.error') !== null") is not True:
            assert time.monotonic() < deadline + 30, browser.html()[-2000:]
            time.sleep(0.1)
        assert "API key" in browser.eval("document.querySelector('.error').textContent")
