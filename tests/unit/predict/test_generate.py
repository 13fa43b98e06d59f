"""The Generator on tiny causal LMs: batching, sampling, stops, scoring, and loading runs and plain folders."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from tests._gen_runs import SYSTEM, build_peaky_lm, full_run, lora_run

from lmforge.errors import ConfigError, DataError, RunDirError
from lmforge.guard import IntegrityError, trust_run
from lmforge.predict import (
    Generation,
    Generator,
    TorchGenerator,
    load_generator,
    load_predictor,
    read_model_meta,
    render_prompt,
    run_kind,
)

PROMPTS = [
    "how do i cancel my order",
    "hello",
    [{"role": "user", "content": "reset password please"}],
    "track my refund thanks you are a bot",
    "open account",
    [{"role": "system", "content": "no"}, {"role": "user", "content": "yes"}],
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_peaky_lm(tmp_path_factory.mktemp("base") / "tiny-lm")


@pytest.fixture(scope="module")
def full(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return full_run(tmp_path_factory.mktemp("full") / "run", base)


@pytest.fixture(scope="module")
def gen(full: Path) -> TorchGenerator:
    loaded = load_generator(full)
    assert isinstance(loaded, TorchGenerator)
    return loaded


def _token_ids(gen: TorchGenerator, text: str) -> list[int]:
    return list(gen.tokenizer(text, add_special_tokens=False)["input_ids"])


def _forward_logprobs(gen: TorchGenerator, ids: list[int]):
    import torch

    with torch.inference_mode():
        logits = gen.model(input_ids=torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(logits, dim=-1)  # (T, V)


def test_a_run_loads_with_its_system_prompt_and_template(gen: TorchGenerator, full: Path) -> None:
    assert isinstance(gen, Generator)
    assert (gen.system, gen.max_length, gen.tokenizer.eos_token) == (SYSTEM, 256, "<|im_end|>")
    assert run_kind(full) == "causal-lm"
    prompt = render_prompt(gen.tokenizer, "hello", SYSTEM)
    assert prompt == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    out = gen.generate(["hello"], max_new_tokens=4)[0]
    assert out.prompt_tokens == len(_token_ids(gen, prompt)) > 10
    # the prompt's own system turn wins over the run's
    assert gen.encode_prompt(PROMPTS[5]) == _token_ids(gen, render_prompt(gen.tokenizer, PROMPTS[5]))


def test_batched_greedy_equals_one_prompt_at_a_time(gen: TorchGenerator) -> None:
    together = gen.generate(PROMPTS, max_new_tokens=16)
    alone = [gen.generate([p], max_new_tokens=16)[0] for p in PROMPTS]
    assert together == alone
    assert len({g.text for g in together}) == len(PROMPTS)  # the answers differ: a real check
    assert {g.finish_reason for g in together} == {"stop", "length"}


def _hand_greedy(gen: TorchGenerator, prompt: object, n: int) -> list[int]:
    """Greedy decoding the slow way: the whole sequence through the model at every step, no cache."""
    ids = gen.encode_prompt(prompt)  # type: ignore[arg-type]
    tokens: list[int] = []
    for _ in range(n):
        tokens.append(int(_forward_logprobs(gen, ids + tokens)[-1].argmax()))
        if tokens[-1] == gen.tokenizer.eos_token_id:
            break
    return tokens


def _text(gen: TorchGenerator, tokens: list[int]) -> str:
    return str(gen.tokenizer.decode(tokens, skip_special_tokens=True))


def test_greedy_decoding_with_the_cache_equals_the_slow_way_and_eos_stops(gen: TorchGenerator) -> None:
    answers = gen.generate(PROMPTS, max_new_tokens=16)
    eos = gen.tokenizer.eos_token_id
    for prompt, answer in zip(PROMPTS, answers, strict=True):
        tokens = _hand_greedy(gen, prompt, 16)
        assert answer.completion_tokens == len(tokens)
        if tokens[-1] == eos:
            assert (answer.text, answer.finish_reason) == (_text(gen, tokens[:-1]), "stop")
            assert len(tokens) < 16 and "<|im_end|>" not in answer.text
        else:
            assert (answer.text, answer.finish_reason) == (_text(gen, tokens), "length")
    assert {a.finish_reason for a in answers} == {"stop", "length"}  # both cases were checked


def test_max_new_tokens_ends_with_length(gen: TorchGenerator) -> None:
    for prompt, answer in zip(PROMPTS, gen.generate(PROMPTS, max_new_tokens=3), strict=True):
        tokens = _hand_greedy(gen, prompt, 3)
        if tokens[-1] != gen.tokenizer.eos_token_id:
            assert (answer.text, answer.finish_reason, answer.completion_tokens) == (_text(gen, tokens), "length", 3)


def test_a_stop_sequence_is_cut_and_ends_the_answer(gen: TorchGenerator) -> None:
    answers = gen.generate(PROMPTS, max_new_tokens=16)
    index = next(i for i, g in enumerate(answers) if g.finish_reason == "length" and len(g.text) > 12)
    text = answers[index].text
    stop = text[6:9]
    cut = text[: text.find(stop)]
    tokens = _hand_greedy(gen, PROMPTS[index], 16)
    needed = next(k for k in range(1, 17) if stop in _text(gen, tokens[:k]))  # the token that completes it
    stopped = gen.generate([PROMPTS[index]], max_new_tokens=16, stop=["never-said", stop])[0]
    assert (stopped.text, stopped.finish_reason, stopped.completion_tokens) == (cut, "stop", needed)
    assert needed < answers[index].completion_tokens
    assert "".join(gen.stream(PROMPTS[index], max_new_tokens=16, stop=[stop])) == cut


def test_sampling_is_deterministic_under_a_seed_whatever_the_batch(gen: TorchGenerator) -> None:
    first = gen.generate(PROMPTS, max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    gen.batch_size = 2
    try:
        again = gen.generate(PROMPTS, max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    finally:
        gen.batch_size = 8
    assert again == first
    other = gen.generate(PROMPTS, max_new_tokens=12, temperature=1.0, top_p=0.9, seed=8)
    assert other != first
    greedy = gen.generate(PROMPTS, max_new_tokens=12)
    assert first != greedy
    # the first prompt draws from seed + 0, alone or with others
    assert "".join(gen.stream(PROMPTS[0], max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)) == first[0].text


def test_a_tiny_top_p_is_greedy(gen: TorchGenerator) -> None:
    assert gen.generate(PROMPTS, max_new_tokens=10, temperature=1.5, top_p=1e-6, seed=3) == gen.generate(
        PROMPTS, max_new_tokens=10
    )


def test_stream_joins_to_the_greedy_answer(gen: TorchGenerator) -> None:
    for prompt in PROMPTS:
        deltas = list(gen.stream(prompt, max_new_tokens=16))
        assert "".join(deltas) == gen.generate([prompt], max_new_tokens=16)[0].text
        assert all(deltas)


def test_loglikelihood_is_the_hand_computed_sum_with_eos(gen: TorchGenerator) -> None:
    responses = ["yes", "please call us", "it is open", "no thanks", "reset your password", "hello"]
    scores = gen.loglikelihood(PROMPTS, responses)
    for prompt, response, (logprob, count) in zip(PROMPTS, responses, scores, strict=True):
        prompt_ids = gen.encode_prompt(prompt)
        answer = [*_token_ids(gen, response), gen.tokenizer.eos_token_id]
        logprobs = _forward_logprobs(gen, prompt_ids + answer)
        expected = sum(float(logprobs[len(prompt_ids) - 1 + k, token]) for k, token in enumerate(answer))
        assert count == len(response.split()) + 1
        assert logprob == pytest.approx(expected, abs=1e-4)
    one_by_one = gen.loglikelihood(PROMPTS, responses, batch_size=1)
    assert [n for _, n in one_by_one] == [n for _, n in scores]
    assert [v for v, _ in one_by_one] == pytest.approx([v for v, _ in scores], abs=1e-4)
    perplexity = math.exp(-sum(s for s, _ in scores) / sum(n for _, n in scores))
    assert perplexity > 1


def test_loglikelihood_keeps_each_pass_within_the_logit_budget(gen: TorchGenerator,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import lmforge.predict._generate as generate_module

    responses = ["yes", "please call us", "it is open", "no thanks", "reset your password", "hello"]
    whole = gen.loglikelihood(PROMPTS, responses, batch_size=64)
    vocab = gen.model.config.vocab_size
    longest = max(len(gen.encode_prompt(p)) + len(_token_ids(gen, r)) + 1
                  for p, r in zip(PROMPTS, responses, strict=True))
    monkeypatch.setattr(generate_module, "LOGIT_BUDGET", 2 * longest * vocab)  # two rows of the longest
    widths: list[tuple[int, int]] = []
    forward = gen.model.forward

    def spy(*args, **kwargs):
        widths.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(gen.model, "forward", spy)
    split = gen.loglikelihood(PROMPTS, responses, batch_size=64)
    assert all(rows * width * vocab <= 2 * longest * vocab for rows, width in widths), widths
    assert widths[0][0] == 2 and sum(rows for rows, _ in widths) == len(PROMPTS)
    assert [n for _, n in split] == [n for _, n in whole]
    assert [v for v, _ in split] == pytest.approx([v for v, _ in whole], abs=1e-4)


def test_a_prompt_prefill_computes_the_last_positions_logits_only(gen: TorchGenerator,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert gen.prefill_kwargs == {"logits_to_keep": 1}
    expected = gen.generate(PROMPTS[:3], max_new_tokens=5)
    shapes: list[tuple[int, int]] = []  # (positions in, positions of logits out) per forward pass
    forward = gen.model.forward

    def spy(*args, **kwargs):
        out = forward(*args, **kwargs)
        shapes.append((kwargs["input_ids"].shape[1], out.logits.shape[1]))
        return out

    monkeypatch.setattr(gen.model, "forward", spy)
    again = gen.generate(PROMPTS[:3], max_new_tokens=5)
    kept, shapes[:] = list(shapes), []
    monkeypatch.setattr(gen, "prefill_kwargs", {})
    every = gen.generate(PROMPTS[:3], max_new_tokens=5)
    assert kept[0][0] > 1 and kept[0][1] == 1  # a prompt of several tokens, one position of logits
    assert shapes[0] == (kept[0][0], kept[0][0])  # without the argument: a row of logits per position
    assert [(a.text, a.finish_reason) for a in again] == [(a.text, a.finish_reason) for a in expected]
    assert [(a.text, a.finish_reason) for a in every] == [(a.text, a.finish_reason) for a in expected]


def test_bad_settings_and_inputs_are_named(gen: TorchGenerator) -> None:
    with pytest.raises(ConfigError, match=r"max_new_tokens must be an integer of at least 1, got 0; "
                                          r"temperature must be 0 \(greedy\) or more, got -1; top_p must be in"):
        gen.generate(["hello"], max_new_tokens=0, temperature=-1, top_p=0)
    with pytest.raises(ConfigError, match="stop must be a list of non-empty strings"):
        gen.generate(["hello"], stop="bot")
    with pytest.raises(DataError, match=r"Prompt 1 has 33 tokens; with 230 more that exceeds the model's context "
                                        r"of 256 tokens. Shorten the prompt or lower max_new_tokens."):
        gen.generate(["hello", " ".join(["hello"] * 20)], max_new_tokens=230)
    with pytest.raises(DataError, match="loglikelihood got 2 prompts and 1 responses"):
        gen.loglikelihood(["a", "b"], ["c"])
    with pytest.raises(DataError, match="messages is empty"):
        gen.generate([[]])
    with pytest.raises(DataError, match="prompts must be a list of prompts, not one string"):
        gen.generate("hello")  # type: ignore[arg-type]


def test_a_plain_causal_lm_folder_loads_as_its_base(base: Path, gen: TorchGenerator) -> None:
    plain = load_generator(base)
    assert plain.system is None
    assert run_kind(base) == "encoder"  # no lmforge_model.json: no trained run
    expected = TorchGenerator(gen.model, gen.tokenizer, 256).generate(PROMPTS, max_new_tokens=8)
    assert all(isinstance(g, Generation) for g in expected)
    assert plain.generate(PROMPTS, max_new_tokens=8) == expected  # same weights, no system prompt
    assert expected != gen.generate(PROMPTS, max_new_tokens=8)  # the run's system prompt matters


def test_a_lora_run_is_merged_into_its_base(base: Path, tmp_path: Path) -> None:
    import peft
    import torch
    import transformers

    run = lora_run(tmp_path / "run", base)
    loaded = load_generator(run, verified=trust_run(run, allow_unsigned=True))
    assert isinstance(loaded, TorchGenerator)
    assert type(loaded.model).__name__ == "LlamaForCausalLM"  # merged: no PEFT wrapper left
    reference = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(base), run / "model")
    ids = torch.tensor([loaded.encode_prompt("how do i cancel my order")])
    with torch.inference_mode():
        ours, theirs = loaded.model(input_ids=ids).logits, reference.eval()(input_ids=ids).logits
        plain = load_generator(base).model(input_ids=ids).logits  # type: ignore[attr-defined]
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert not torch.allclose(ours, plain, atol=1e-2)  # the adapter changes the model


def test_a_changed_base_model_is_refused(base: Path, tmp_path: Path) -> None:
    moved = tmp_path / "base"
    shutil.copytree(base, moved)
    run = lora_run(tmp_path / "run", moved)
    config = json.loads((moved / "config.json").read_text(encoding="utf-8"))
    config["rms_norm_eps"] = 1e-5
    (moved / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(IntegrityError, match=rf"The base model {moved} of the lora adapter in {run / 'model'} "
                                             "changed since training"):
        load_generator(run)


def test_meta_breaking_the_contract_and_kind_mixups_are_refused(full: Path, tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="holds a generative model \\(kind causal-lm\\), not a classifier"):
        read_model_meta(full / "model")
    with pytest.raises(RunDirError, match="holds a generative model"):
        load_predictor(full)
    run = tmp_path / "run"
    shutil.copytree(full, run)
    meta_path = run / "model" / "lmforge_model.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update(format="gguf", system=3)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(RunDirError, match="is no causal-LM model description: format is 'gguf', not one of "
                                          "peft-adapter, transformers; system must be text or null, got int"):
        load_generator(run)
    meta.update(format="peft-adapter", system=None)
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(RunDirError, match="says format 'peft-adapter', but the folder has no adapter_config.json"):
        load_generator(run)
    with pytest.raises(RunDirError, match="has no trained model"):
        load_generator(tmp_path)
    with pytest.raises(ConfigError, match="The verification passed is of"):
        load_generator(run, verified=trust_run(full, allow_unsigned=True))
