"""Monitoring a generative model: every answer stored with its prompt PII-masked, token counts in the store
and in /metrics, feedback (thumbs or a corrected answer) per prediction id, and a canary PII string sent in
prompts and corrections never in clear in the store, the state folder or the server's output. The served
version is the run's int8 variant (`lmforge compress`), which answers as `load_generator` loads it.
The canary judge's length-stop rule is tested on its own below."""

from __future__ import annotations

import asyncio
import collections
import re
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
from tests._gen_runs import build_peaky_lm, full_run
from tests._serve import create_keys, serve_process

from lmforge.compress import CompressOptions, compress
from lmforge.predict import load_generator
from lmforge.serve._canary import CanaryJudge
from lmforge.serve._settings_sections import CanarySettings
from lmforge.serve._slots import Loaded, Slot

CANARIES = {"EMAIL": "zed.canary.7731@example.org", "PHONE": "13812345678", "BANK_CARD": "4111111111111111"}
PII = f"mail me at {CANARIES['EMAIL']} or call {CANARIES['PHONE']}, card {CANARIES['BANK_CARD']}"


def _metric(text: str, name: str) -> float:
    match = re.search(rf'^{name}\{{model="bot",version="1"\}} (\S+)$', text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_generations_are_stored_masked_counted_and_take_feedback(tmp_path: Path) -> None:
    (tmp_path / "bot" / "data").mkdir(parents=True)
    (tmp_path / "bot" / "data" / "test.jsonl").write_text('{"prompt": "hello", "response": "hello thanks"}\n')
    run = full_run(tmp_path / "bot", build_peaky_lm(tmp_path / "base"))
    compress(run, CompressOptions(only=("torch-int8-dynamic",), gen_max_test=1, gen_max_new_tokens=4,
                                  gen_timing_tokens=2, gen_repeats=1, warmup=0))
    int8 = load_generator(run, "torch-int8-dynamic").generate([f"hello {PII}"], max_new_tokens=6)[0]
    state = tmp_path / "state"
    tokens = create_keys(state)
    config = {"registry_poll_s": 0, "drain_s": 0.2, "generation": {"max_new_tokens": 6},
              "monitor": {"flush_interval_s": 0.2}}
    auth = {"Authorization": f"Bearer {tokens['predict']}"}
    with serve_process(tmp_path, run, "--allow-unsigned", "--state", str(state), "--monitor", "--access-log",
                       "--variant", "torch-int8-dynamic", config=config, tokens=tokens) as server:
        plain = httpx.post(f"{server.url}/v1/generate", json={"prompt": f"hello {PII}"}, headers=auth, timeout=60)
        assert plain.status_code == 200, plain.text
        first = plain.json()
        assert (first["text"], first["finish_reason"]) == (int8.text, int8.finish_reason)
        with httpx.stream("POST", f"{server.url}/v1/chat/completions", headers=auth, timeout=60,
                          json={"messages": [{"role": "user", "content": f"track refund {PII}"}], "stream": True}) as r:
            assert r.status_code == 200
            body = r.read().decode()
        chat_id = re.search(r'"prediction_id": "([0-9a-f]{32})"', body).group(1)
        answers = [first["prediction_id"], chat_id]
        thumbs = httpx.post(f"{server.url}/v1/feedback", json={"prediction_id": answers[0], "label": "down"},
                            headers=auth, timeout=30)
        assert thumbs.status_code == 200 and thumbs.json() == {"prediction_id": answers[0], "label": "down",
                                                               "correct": False}
        fixed = httpx.post(f"{server.url}/v1/feedback", headers=auth, timeout=30,
                           json={"prediction_id": answers[1], "correction": f"please call us, {PII}"})
        assert fixed.status_code == 200 and fixed.json()["label"] == "corrected", fixed.text
        wrong = httpx.post(f"{server.url}/v1/feedback", json={"prediction_id": answers[0], "label": "positive"},
                           headers=auth, timeout=30)
        assert wrong.status_code == 422 and "up, down, or a correction" in wrong.text
        metrics = httpx.get(f"{server.url}/metrics", headers=auth, timeout=30).text
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        versions = httpx.get(f"{server.url}/v1/models/bot/versions", headers=admin, timeout=30).json()["versions"]
        assert [v["variant"] for v in versions] == ["torch-int8-dynamic"]
        httpx.get(f"{server.url}/v1/monitor/summary", headers=admin, timeout=30)  # let the writer catch up
        time.sleep(0.5)
        summary = httpx.get(f"{server.url}/v1/monitor/summary", headers=admin, timeout=30).json()
        page = httpx.get(f"{server.url}/dashboard", headers=admin, timeout=30).text
        assert server.stop() == 0
        output = server.output()

    with sqlite3.connect(state / "monitor.db") as conn:
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT id, text, output, label, prompt_tokens, completion_tokens FROM predictions")}
        feedback = dict(conn.execute("SELECT prediction_id, label || '|' || coalesce(correction, '') FROM feedback"))
    assert sorted(rows) == sorted(answers)
    text, out, label, prompt_tokens, completion_tokens = rows[answers[0]]
    assert text.startswith("hello mail me at [EMAIL] or call [PHONE], card [BANK_CARD]"), text
    assert (out, label, prompt_tokens, completion_tokens) == (first["text"], first["finish_reason"],
                                                             first["prompt_tokens"], first["completion_tokens"])
    assert rows[answers[1]][0].startswith("user: track refund mail me at [EMAIL]")
    assert feedback == {answers[0]: "down|", answers[1]: "corrected|please call us, mail me at [EMAIL] or call "
                                                          "[PHONE], card [BANK_CARD]"}
    stored_prompt = sum(r[3] for r in rows.values())
    assert _metric(metrics, "lmforge_prompt_tokens_total") == stored_prompt
    assert _metric(metrics, "lmforge_generated_tokens_total") == sum(r[4] for r in rows.values())
    assert _metric(metrics, "lmforge_generation_tokens_per_second") > 0
    (version,) = summary["models"]
    assert (version["prompt_tokens"], version["completion_tokens"]) == (stored_prompt, sum(r[4] for r in rows.values()))
    assert version["tokens_per_s"] > 0 and version["feedback"] == 2
    assert f"{stored_prompt:,} / {version['completion_tokens']:,}, " in page

    assert "POST /v1/generate" in output  # the access log was on, and is scanned below
    haystacks = {str(p): p.read_bytes() for p in state.rglob("*") if p.is_file()}
    haystacks["server output"] = output.encode()
    for name, data in haystacks.items():
        for kind, value in CANARIES.items():
            assert value.encode() not in data, f"{kind} canary in clear in {name}"


def _loaded(version: int, stops: list[bool]) -> Loaded:
    info = SimpleNamespace(model="bot", version=version)
    return Loaded(info, None, None, collections.deque(), length_stops=collections.deque(stops))  # type: ignore[arg-type]


def test_canary_judge_rolls_back_on_length_stops() -> None:
    judge = CanaryJudge(CanarySettings(min_requests=10, length_margin=0.1), SimpleNamespace(monitor=None))
    stable = _loaded(1, [True] * 2 + [False] * 8)  # 20 % cut at the limit
    slot = Slot("bot", stable=stable, canary=_loaded(2, [True] * 4 + [False] * 6), percent=50)
    assert asyncio.run(judge.verdict(slot)) == ("40.0% of 10 answers cut at the token limit vs stable 20.0% "
                                                "(margin 10.0%)")
    slot.canary = _loaded(2, [True] * 3 + [False] * 7)  # 30 %: within the margin
    assert asyncio.run(judge.verdict(slot)) is None
    slot.canary = _loaded(2, [True] * 9)  # too few answers to judge
    assert asyncio.run(judge.verdict(slot)) is None
