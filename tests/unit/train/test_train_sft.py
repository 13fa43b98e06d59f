"""Supervised fine-tuning of a causal LM on the tiny Llama of ``tests/_tiny_lm.py``: the exact
prompt mask, EOS, the context limit, packing that cannot leak across examples, padding, and a
real (short) generative run with its model folder and a bit-exact resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file
from tests._tiny_lm import build_tiny_lm

from lmforge.config import load_spec
from lmforge.errors import DataError
from lmforge.pipeline import prepare_run
from lmforge.rundir import RunDir
from lmforge.train import IGNORE, encode_example, sft_collator, train

# The tiny tokenizer's ids: <pad> 0, <unk> 1, <|im_start|> 2, <|im_end|> 3 (EOS), then the words
# (its whitespace pre-tokenizer drops the template's line breaks).
START, END = 2, 3
USER, ASSISTANT, SYSTEM = 6, 7, 5
HOW, DO, I_, CANCEL, MY, ORDER = 13, 14, 15, 16, 17, 18
PLEASE, CALL, US = 26, 27, 28
YOU, ARE, A, HELPFUL, BOT = 8, 9, 10, 11, 12


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def tokenizer(tiny_lm: Path) -> transformers.PreTrainedTokenizerBase:
    return transformers.AutoTokenizer.from_pretrained(tiny_lm)


def test_hand_made_example_masks_the_prompt_and_ends_with_eos(tokenizer: transformers.PreTrainedTokenizerBase) -> None:
    ids, labels, prompt_cut, answer_cut = encode_example(
        tokenizer, "how do i cancel my order", "please call us", system=None, limit=64
    )
    prompt = [START, USER, HOW, DO, I_, CANCEL, MY, ORDER, END, START, ASSISTANT]
    assert ids == [*prompt, PLEASE, CALL, US, END]
    assert labels == [IGNORE] * 11 + [PLEASE, CALL, US, END]
    assert ids[-1] == tokenizer.eos_token_id == END
    assert (prompt_cut, answer_cut) == (False, False)


def test_system_prompt_and_chat_turns_are_in_the_masked_part(tokenizer: transformers.PreTrainedTokenizerBase) -> None:
    turns = [{"role": "user", "content": "how do i cancel my order"}]
    ids, labels, _, _ = encode_example(tokenizer, turns, "please call us", system="you are a helpful bot", limit=64)
    system = [START, SYSTEM, YOU, ARE, A, HELPFUL, BOT, END]
    user = [START, USER, HOW, DO, I_, CANCEL, MY, ORDER, END, START, ASSISTANT]
    assert ids == [*system, *user, PLEASE, CALL, US, END]
    assert labels == [IGNORE] * (len(system) + len(user)) + [PLEASE, CALL, US, END]


def test_a_prompt_over_the_limit_is_an_error_naming_tokens_and_limit(
    tokenizer: transformers.PreTrainedTokenizerBase,
) -> None:
    with pytest.raises(DataError) as info:
        encode_example(tokenizer, "how do i cancel my order", "please", system=None, limit=10, where="row 7 of x.csv")
    assert str(info.value) == (
        "row 7 of x.csv: the prompt is 11 tokens with the chat template, and the limit is 10 (model.max_length), "
        "which leaves no room for the answer. Shorten it, raise model.max_length, or set data.truncate: left to cut "
        "its oldest tokens."
    )


def test_truncate_left_keeps_the_newest_prompt_tokens(tokenizer: transformers.PreTrainedTokenizerBase) -> None:
    ids, labels, prompt_cut, answer_cut = encode_example(
        tokenizer, "how do i cancel my order", "please call us", system=None, limit=12, truncate="left"
    )
    # 12 - min(4 answer tokens, 12 // 2) = 8 prompt tokens kept: the last 8 of the rendered prompt.
    assert ids == [DO, I_, CANCEL, MY, ORDER, END, START, ASSISTANT, PLEASE, CALL, US, END]
    assert labels == [IGNORE] * 8 + [PLEASE, CALL, US, END]
    assert (prompt_cut, answer_cut) == (True, False)


def test_an_answer_that_does_not_fit_is_cut_and_loses_eos(tokenizer: transformers.PreTrainedTokenizerBase) -> None:
    ids, labels, prompt_cut, answer_cut = encode_example(
        tokenizer, "how do i cancel my order", "please call us", system=None, limit=13
    )
    assert ids == [START, USER, HOW, DO, I_, CANCEL, MY, ORDER, END, START, ASSISTANT, PLEASE, CALL]
    assert labels == [IGNORE] * 11 + [PLEASE, CALL]
    assert (prompt_cut, answer_cut) == (False, True)


def _example(tokenizer: transformers.PreTrainedTokenizerBase, prompt: str, answer: str) -> dict[str, list[int]]:
    ids, labels, _, _ = encode_example(tokenizer, prompt, answer, system=None, limit=64)
    return {"input_ids": ids, "labels": labels}


def test_packing_keeps_attention_inside_each_example(
    tiny_lm: Path, tokenizer: transformers.PreTrainedTokenizerBase
) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_lm, dtype=torch.float32).eval()
    first = _example(tokenizer, "how do i cancel my order", "please call us")
    second = _example(tokenizer, "reset password", "open account yes")
    batch = sft_collator(tokenizer, packing=True)([first, second])
    n1, n2 = len(first["input_ids"]), len(second["input_ids"])
    assert "attention_mask" not in batch
    assert batch["input_ids"].tolist() == [first["input_ids"] + second["input_ids"]]
    assert batch["position_ids"].tolist() == [list(range(n1)) + list(range(n2))]
    assert batch["labels"].tolist() == [[IGNORE, *first["labels"][1:], IGNORE, *second["labels"][1:]]]
    # As in training (train_sft turns the KV cache off): transformers reads packing from the
    # position ids only when no cache is passed.
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([second["input_ids"]]), use_cache=False).logits[0]
        leaky = model(input_ids=batch["input_ids"], position_ids=torch.arange(n1 + n2)[None], use_cache=False).logits[0]
    torch.testing.assert_close(packed[n1:], alone, rtol=0, atol=1e-5)
    # The control: without restarting positions the second example attends to the first and changes.
    assert (leaky[n1:] - alone).abs().max() > 1e-3


def test_without_packing_batches_are_padded_and_padding_is_masked(
    tokenizer: transformers.PreTrainedTokenizerBase,
) -> None:
    first = _example(tokenizer, "how do i cancel my order", "please call us")
    second = _example(tokenizer, "reset password", "yes")
    batch = sft_collator(tokenizer, packing=False)([first, second])
    pad = len(first["input_ids"]) - len(second["input_ids"])
    assert batch["input_ids"].tolist() == [first["input_ids"], second["input_ids"] + [0] * pad]
    assert batch["labels"].tolist() == [first["labels"], second["labels"] + [IGNORE] * pad]
    assert batch["attention_mask"].tolist() == [[1] * len(first["input_ids"]),
                                                [1] * len(second["input_ids"]) + [0] * pad]


def _pairs(path: Path, n: int = 40) -> Path:
    words = "how do i cancel my order track refund reset password open account".split()
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            prompt = " ".join(words[(i * 7 + k * 3) % len(words)] for k in range(4 + i % 3))
            fh.write(json.dumps({"prompt": f"{prompt} {i}", "response": "please call us thanks"}) + "\n")
    return path


def _run(tmp_path: Path, tiny_lm: Path, name: str, *extra: str) -> tuple[RunDir, object]:
    spec = load_spec(None, ["task=generate", f"model.name={tiny_lm}", f"data.path={_pairs(tmp_path / 'pairs.jsonl')}",
                            "model.max_length=48", "train.batch_size=4", "train.max_steps=6", "train.eval_steps=3",
                            "train.logging_steps=1", "train.early_stopping_patience=null", "train.threads=1",
                            "train.learning_rate=0.01", *extra])
    run, _report = prepare_run(spec, tmp_path / name)
    return run, spec


@pytest.mark.slow
def test_a_generative_run_resumes_bit_exactly(tmp_path: Path, tiny_lm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMFORGE_KEEP_CHECKPOINTS", "1")
    run, spec = _run(tmp_path, tiny_lm, "run", "train.packing=true")
    straight = train(spec, run, progress=False)  # type: ignore[arg-type]
    weights = load_file(run.model_dir / "adapter_model.safetensors")
    meta = json.loads(run.model_meta_path.read_text(encoding="utf-8"))
    assert meta == {
        "method": "lora", "base_model": str(tiny_lm), "base_model_path": str(tiny_lm),
        "base_model_sha256": straight["base_model_sha256"], "max_length": 48, "format": "peft-adapter",
        "kind": "causal-lm", "task": "generate", "system": None,
        "chat_template": transformers.AutoTokenizer.from_pretrained(tiny_lm).chat_template,
    }
    assert straight["steps"] == 6 and straight["train_tokens"] > 0 and straight["tokens_per_second"] > 0
    assert straight["best_val_loss"] is not None and "best_val_macro_f1" not in straight
    assert not (run.model_dir / "labels.json").exists()

    shutil.rmtree(run.checkpoints_dir / "checkpoint-6")
    shutil.rmtree(run.model_dir)
    resumed = train(spec, run, resume=True, progress=False)  # type: ignore[arg-type]
    assert resumed["resumed_from"] == "checkpoint-3"
    again = load_file(run.model_dir / "adapter_model.safetensors")
    assert again.keys() == weights.keys()
    for key, tensor in weights.items():
        assert torch.equal(again[key], tensor), key
    assert resumed["train_tokens"] == straight["train_tokens"]


@pytest.mark.slow
def test_full_fine_tuning_saves_a_transformers_folder(tmp_path: Path, tiny_lm: Path) -> None:
    run, spec = _run(tmp_path, tiny_lm, "full", "train.method=full", "train.max_steps=2", "data.system=you are a bot")
    train(spec, run, progress=False)  # type: ignore[arg-type]
    names = sorted(p.name for p in run.model_dir.iterdir())
    assert "model.safetensors" in names and "config.json" in names and "adapter_config.json" not in names
    meta = json.loads(run.model_meta_path.read_text(encoding="utf-8"))
    assert (meta["format"], meta["method"], meta["system"], meta["kind"]) == (
        "transformers", "full", "you are a bot", "causal-lm")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(run.model_dir)
    assert type(reloaded).__name__ == "LlamaForCausalLM"


def test_evaluation_rows_of_a_causal_lm_never_exceed_the_training_batch(tmp_path: Path, tiny_lm: Path) -> None:
    # The classifier's default eval_batch_size (128) would gather 128 x length x vocab logits: an
    # OOM kill at SmolLM2's size. The Trainer must evaluate at most a training batch at a time.
    seen: dict[str, int] = {}

    class Probe(transformers.TrainerCallback):
        def on_evaluate(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            seen["eval_rows"] = args.per_device_eval_batch_size
            seen["evaluations"] = seen.get("evaluations", 0) + 1

    run, spec = _run(tmp_path, tiny_lm, "rows", "train.max_steps=3")
    assert spec.train.eval_batch_size == 128 and spec.train.batch_size == 4  # type: ignore[attr-defined]
    train(spec, run, progress=False, callbacks=[Probe()])  # type: ignore[arg-type]
    assert seen == {"eval_rows": 4, "evaluations": 1}

    run, spec = _run(tmp_path, tiny_lm, "rows-2", "train.max_steps=3", "train.eval_batch_size=2")
    train(spec, run, progress=False, callbacks=[Probe()])  # type: ignore[arg-type]
    assert seen["eval_rows"] == 2  # a smaller one the user set is kept
