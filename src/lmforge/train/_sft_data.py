"""Supervised fine-tuning examples: rendered, tokenized and masked, and the batches they make.

One example is ``render_prompt(tokenizer, prompt, system)`` (the model's own chat template, the
same function generation uses) followed by the answer and ``eos_token``, tokenized as the prompt's
ids then the answer's ids with no special tokens added (the template already holds every marker
it needs). The labels are ``-100`` on the prompt, so the loss is on the answer and the EOS only:
the model learns to answer, and to stop.

Length: ``model.max_length`` (or the model's own context, when smaller) bounds prompt + answer.
A prompt that leaves no room for an answer is an error naming its row; with
``data.truncate: left`` a prompt too long to leave its answer room (up to half the context)
loses its oldest tokens instead, with a warning. An answer that still does not fit after its
prompt is cut on the right and loses its EOS (counted in the warnings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.catalog import resolve_model
from lmforge.config import Spec
from lmforge.data import ExampleCheck, example_prompt, example_response
from lmforge.errors import DataError
from lmforge.predict import render_prompt

__all__ = ["IGNORE", "Encoded", "context_limit", "cut_warnings", "encode_example", "encode_examples",
           "load_tokenizer", "prompt_length_check", "sft_collator"]

IGNORE = -100
"""The label that ``CrossEntropyLoss`` (and every HF causal LM) leaves out of the loss."""


@dataclass
class Encoded:
    """Token ids and labels of examples (unpadded), and what had to be cut to fit."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    prompts_cut: int = 0
    answers_cut: int = 0


def context_limit(spec: Spec, model_path: Path) -> int:
    """Tokens of prompt + answer: ``model.max_length``, or the model's ``max_position_embeddings`` when smaller."""
    try:
        config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    positions = config.get("max_position_embeddings") if isinstance(config, dict) else None
    return min(spec.model.max_length, positions) if isinstance(positions, int) and positions > 0 else spec.model.max_length


def encode_example(tokenizer: Any, prompt: str | list[dict[str, str]], response: str, *, system: str | None,
                   limit: int, truncate: str = "error", where: str = "an example") -> tuple[list[int], list[int], bool, bool]:
    """``(input_ids, labels, prompt_cut, answer_cut)`` of one example (see the module docstring).

    Raises:
        DataError: the rendered prompt is ``limit`` tokens or longer and ``truncate`` is ``error``.
    """
    text = render_prompt(tokenizer, prompt, system)
    prompt_ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    answer_ids = [*tokenizer(response, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    prompt_cut = answer_cut = False
    if len(prompt_ids) >= limit and truncate != "left":
        raise DataError(
            f"{where}: the prompt is {len(prompt_ids)} tokens with the chat template, and the limit is {limit} "
            "(model.max_length), which leaves no room for the answer. Shorten it, raise model.max_length, "
            "or set data.truncate: left to cut its oldest tokens."
        )
    # `left`: the answer keeps up to half the context; the prompt gives up its oldest tokens for it.
    room = limit - min(len(answer_ids), limit // 2)
    if truncate == "left" and len(prompt_ids) > room:
        prompt_ids = prompt_ids[-room:]
        prompt_cut = True
    if len(prompt_ids) + len(answer_ids) > limit:
        answer_ids = answer_ids[: limit - len(prompt_ids)]
        answer_cut = True
    return prompt_ids + answer_ids, [IGNORE] * len(prompt_ids) + answer_ids, prompt_cut, answer_cut


def encode_examples(tokenizer: Any, records: list[dict[str, Any]], *, system: str | None, limit: int,
                    truncate: str = "error", wheres: list[str] | None = None) -> Encoded:
    """:func:`encode_example` over prepared records (``{"prompt", "response"}`` or ``{"messages"}``)."""
    out = Encoded([], [])
    for i, record in enumerate(records):
        where = wheres[i] if wheres else f"example {i + 1}"
        ids, labels, prompt_cut, answer_cut = encode_example(
            tokenizer, example_prompt(record), example_response(record), system=system, limit=limit,
            truncate=truncate, where=where,
        )
        out.input_ids.append(ids)
        out.labels.append(labels)
        out.prompts_cut += prompt_cut
        out.answers_cut += answer_cut
    return out


def cut_warnings(encoded: Encoded, limit: int) -> list[str]:
    """The warnings a cut prompt or answer earns (the caller logs them)."""
    notes = []
    if encoded.prompts_cut:
        notes.append(f"{encoded.prompts_cut} prompts were longer than {limit} tokens and lost their oldest tokens "
                     "(data.truncate: left).")
    if encoded.answers_cut:
        notes.append(f"{encoded.answers_cut} answers did not fit in {limit} tokens after their prompt and were cut "
                     "(without their end-of-sequence token); raise model.max_length to keep them whole.")
    return notes


def load_tokenizer(path: Path) -> Any:
    """The model's tokenizer, with a padding token (its EOS when it has none: padding is masked anyway)."""
    transformers = require("transformers", extra="train", purpose="Fine-tuning a causal LM")
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prompt_length_check(spec: Spec) -> ExampleCheck:
    """The prepare stage's pre-write check for ``task: generate``: every prompt fits the context."""

    def check(records: list[dict[str, Any]], wheres: list[str]) -> list[str]:
        path = resolve_model(spec.model.name)
        limit = context_limit(spec, path)
        encoded = encode_examples(load_tokenizer(path), records, system=spec.data.system, limit=limit,
                                  truncate=spec.data.truncate, wheres=wheres)
        return cut_warnings(encoded, limit)

    return check


def sft_collator(tokenizer: Any, packing: bool) -> Any:
    """Batches of examples: packed into one unpadded row, or padded to the batch's longest.

    Packed: ``DataCollatorWithFlattening`` concatenates the batch into one row with
    ``position_ids`` restarting at 0 per example and no attention mask, from which transformers
    builds a block-diagonal causal mask (``masking_utils.find_packed_sequence_indices``): no token
    attends across an example boundary. Its separator label replaces the first label of each
    example, which is a prompt token (already ``-100``).
    """
    transformers = require("transformers", extra="train", purpose="Fine-tuning a causal LM")
    if packing:
        return transformers.DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)
    return transformers.DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE)
