"""The continuous-batching decode scheduler on its own (no server): sequences that join and leave a
running batch get exactly the predict layer's answers, greedy and seeded; stop-string hold-back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests._gen_runs import build_peaky_lm, full_run

from lmforge.serve._decode import DecodeParams, DecodeScheduler, Sequence, safe_end

PROMPTS = ["how do i cancel my order", "hello", "track refund please", "reset password", "yes no thanks",
           "open account", "please call us"]


@pytest.fixture(scope="module")
def gen(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from lmforge.predict import load_generator

    root = tmp_path_factory.mktemp("decode")
    return load_generator(full_run(root / "bot", build_peaky_lm(root / "base")))


async def _answers(gen: Any, params: list[DecodeParams], max_batch: int, stagger: float) -> list[tuple[str, str, int]]:
    scheduler = DecodeScheduler(gen, max_batch=max_batch)
    scheduler.start()
    loop = asyncio.get_running_loop()

    async def one(i: int, prompt: str) -> tuple[str, str, int]:
        await asyncio.sleep(stagger * i)  # later ones join a batch already decoding
        seq = Sequence(gen.encode_prompt(prompt), params[i], time.monotonic() + 60, loop)
        scheduler.submit(seq)
        parts = []
        while True:
            kind, value = await seq.events.get()
            if kind != "delta":
                return "".join(parts), value, len(seq.tokens)
            parts.append(value)

    try:
        return await asyncio.gather(*(one(i, p) for i, p in enumerate(PROMPTS)))
    finally:
        await asyncio.to_thread(scheduler.close)


@pytest.mark.parametrize("max_batch", [1, 3, 8])
def test_joining_and_leaving_a_batch_changes_no_greedy_answer(gen: Any, max_batch: int) -> None:
    want = gen.generate(PROMPTS, max_new_tokens=20)
    got = asyncio.run(_answers(gen, [DecodeParams(20)] * len(PROMPTS), max_batch, stagger=0.003))
    assert got == [(g.text, g.finish_reason, g.completion_tokens) for g in want]
    assert {g.finish_reason for g in want} == {"stop", "length"}  # rows leave early and run to the end


def test_seeded_sampling_equals_the_generator_under_the_same_seed(gen: Any) -> None:
    params = [DecodeParams(16, temperature=0.9, top_p=0.8, seed=40 + i) for i in range(len(PROMPTS))]
    got = asyncio.run(_answers(gen, params, 4, stagger=0.002))
    for i, prompt in enumerate(PROMPTS):
        (g,) = gen.generate([prompt], max_new_tokens=16, temperature=0.9, top_p=0.8, seed=40 + i)
        assert got[i] == (g.text, g.finish_reason, g.completion_tokens), prompt


def test_safe_end_holds_back_a_possible_stop_start_and_a_broken_character() -> None:
    assert safe_end("hello wor", ["world"]) == len("hello ")
    assert safe_end("hello wor", ["xyz"]) == len("hello wor")
    assert safe_end("ab\ufffd", []) == 2
    assert safe_end("a##", ["###", "#!"]) == 1  # the longest pending prefix decides
    assert safe_end("", ["x"]) == 0
