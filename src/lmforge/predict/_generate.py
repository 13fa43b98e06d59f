"""Decoding for a causal LM in PyTorch: batched, KV-cached, greedy or seeded sampling, stop sequences.

The loop is written here rather than left to ``model.generate`` for three reasons the
:class:`~lmforge.predict.Generator` contract needs:

- Sampling draws from one ``torch.Generator`` per prompt, seeded with ``seed + i`` for the
  i-th prompt of the call, so a prompt's answer under a seed does not depend on which other
  prompts share its batch (or on ``batch_size``); ``generate`` draws a whole batch from the
  global generator.
- Stop sequences end each row on its own and are cut from the text; the finish reason says
  whether the model stopped (end-of-sequence, a stop sequence) or ran out of tokens.
- :meth:`TorchGenerator.stream` is the same loop for one prompt, yielding text as it grows.

Prompts are left-padded (so every row's next token sits in the last column), positions count
real tokens only, and the KV cache (:func:`lmforge.predict.growing_cache`: each step writes its
column into spare room rather than re-concatenating) keeps each step to one token per row. The
prompt is rendered by :func:`lmforge.predict.render_prompt`, the same function training
renders with, and tokenized without extra special tokens (the template writes them); a
response is tokenized on its own and followed by the end-of-sequence token, as training
appends it.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmforge._extras import require
from lmforge.errors import ConfigError, DataError
from lmforge.predict._chat import render_prompt
from lmforge.predict._kvcache import growing_cache
from lmforge.predict._protocol import Generation, PromptLike

__all__ = ["TorchGenerator", "read_answer", "top_p_filter"]

LOGIT_BUDGET = 2**27
"""Most logits (rows x length x vocabulary) one scoring forward pass may hold: 512 MB as float32,
about three times that at its peak (the logits, their log-softmax, the gathered picks). The 59
test pairs of the packaged support-answers run, scored in one pass, peaked at 9.4 GB RSS; within
the budget at 2.7 GB, with the same sums."""


@dataclass(frozen=True)
class _Settings:
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None


def _settings(max_new_tokens: int, temperature: float, top_p: float, stop: Sequence[str],
              seed: int | None) -> _Settings:
    """Checked decoding settings; every problem is named at once."""
    problems = []
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        problems.append(f"max_new_tokens must be an integer of at least 1, got {max_new_tokens!r}")
    if not isinstance(temperature, int | float) or not temperature >= 0:
        problems.append(f"temperature must be 0 (greedy) or more, got {temperature!r}")
    if not isinstance(top_p, int | float) or not 0 < top_p <= 1:
        problems.append(f"top_p must be in (0, 1], got {top_p!r}")
    if isinstance(stop, str) or not all(isinstance(s, str) and s for s in stop):
        problems.append(f"stop must be a list of non-empty strings, got {stop!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        problems.append(f"seed must be an integer or None, got {seed!r}")
    if problems:
        raise ConfigError("; ".join(problems) + ".")
    return _Settings(max_new_tokens, float(temperature), float(top_p), tuple(stop), seed)


@dataclass
class _Row:
    """One prompt's answer as it is decoded."""

    prompt_ids: list[int]
    generator: Any
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: str | None = None



def top_p_filter(probs: Any, top_p: float) -> Any:
    """``probs`` (``(..., V)``) with the tokens outside the top-``top_p`` mass zeroed (nucleus
    sampling; unnormalized, as ``torch.multinomial`` takes it). A token stays when the mass
    before it is below ``top_p``, so the most likely one always does."""
    if top_p >= 1:
        return probs
    sorted_p, index = probs.sort(dim=-1, descending=True)
    drop = (sorted_p.cumsum(dim=-1) - sorted_p) >= top_p
    return probs.new_zeros(probs.shape).scatter(-1, index, sorted_p.masked_fill(drop, 0.0))


def read_answer(tokenizer: Any, tokens: Sequence[int], eos: Collection[int], stop: Sequence[str],
                max_new_tokens: int) -> tuple[str, str | None]:
    """The answer so far and why it ended (``"stop"``, ``"length"``, or None while it goes on).

    ``tokens`` are the generated ids, the newest last: an end-of-sequence id ends the answer
    (and is not part of its text); so does the first stop string, cut from the text.
    """
    if tokens and tokens[-1] in eos:
        return tokenizer.decode(list(tokens[:-1]), skip_special_tokens=True), "stop"
    text = tokenizer.decode(list(tokens), skip_special_tokens=True)
    cuts = [i for i in (text.find(s) for s in stop) if i >= 0]
    if cuts:
        return text[: min(cuts)], "stop"
    return text, "length" if len(tokens) >= max_new_tokens else None

class TorchGenerator:
    """A causal LM in PyTorch behind the :class:`~lmforge.predict.Generator` Protocol.

    Args:
        model: a transformers ``*ForCausalLM`` in eval mode.
        tokenizer: its tokenizer (with the chat template).
        max_length: the context; prompt plus ``max_new_tokens`` must fit in it.
        system: the system prompt applied to every prompt that has none of its own.
        batch_size: prompts decoded together (sorted by length, so padding stays small).
    """

    backend = "torch"

    def __init__(self, model: Any, tokenizer: Any, max_length: int, system: str | None = None,
                 batch_size: int = 8) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.system = system
        self.batch_size = batch_size
        eos = getattr(model.generation_config, "eos_token_id", None)
        ids = {*(eos if isinstance(eos, list) else [eos]), tokenizer.eos_token_id} - {None}
        if not ids:
            raise ConfigError("The model's tokenizer has no end-of-sequence token; it cannot end an answer.")
        self._eos: frozenset[int] = frozenset(int(i) for i in ids)
        self.eos_token_id = int(tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(ids))
        pad = tokenizer.pad_token_id
        self._pad = int(pad) if pad is not None else self.eos_token_id
        self.prefill_kwargs: dict[str, int] = last_logits_only(model)
        """Extra arguments of a decoding forward pass: ``{"logits_to_keep": 1}`` where the model
        takes it, so a prompt's prefill computes the last position's logits only."""

    def set_threads(self, threads: int, *, spinning: bool = True) -> None:
        """Use ``threads`` intra-op threads (process-wide in torch; ``spinning`` has no meaning here)."""
        torch = require("torch", extra="train", purpose="Generation")
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    # -- encoding ----------------------------------------------------------------------------

    def encode_prompt(self, prompt: PromptLike) -> list[int]:
        """Token ids of the rendered prompt (chat template, system prompt), as the model sees it."""
        text = render_prompt(self.tokenizer, prompt, self.system)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode_all(self, prompts: Sequence[PromptLike], reserve: int) -> list[list[int]]:
        if isinstance(prompts, str):
            raise DataError("prompts must be a list of prompts, not one string.")
        encoded = [self.encode_prompt(p) for p in prompts]
        for i, ids in enumerate(encoded):
            if len(ids) + reserve > self.max_length:
                raise DataError(
                    f"Prompt {i} has {len(ids)} tokens; with {reserve} more that exceeds the model's context of "
                    f"{self.max_length} tokens. Shorten the prompt" + (" or lower max_new_tokens." if reserve > 1 else ".")
                )
        return encoded

    # -- decoding ----------------------------------------------------------------------------

    def generate(self, prompts: Sequence[PromptLike], *, max_new_tokens: int = 128, temperature: float = 0.0,
                 top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None) -> list[Generation]:
        """One :class:`Generation` per prompt, in input order.

        Greedy when ``temperature`` is 0; otherwise sampled at that temperature from the
        smallest set of tokens whose probability reaches ``top_p``, with the i-th prompt drawing
        from a generator seeded ``seed + i`` (random when ``seed`` is None).

        Raises:
            ConfigError: a setting out of range.
            DataError: a prompt is malformed, or too long for the context with ``max_new_tokens``.
        """
        settings = _settings(max_new_tokens, temperature, top_p, stop, seed)
        encoded = self._encode_all(prompts, settings.max_new_tokens)
        rows = [_Row(ids, self._row_generator(settings, i)) for i, ids in enumerate(encoded)]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i].prompt_ids))
        for start in range(0, len(order), self.batch_size):
            batch = [rows[i] for i in order[start : start + self.batch_size]]
            for _ in self._decode(batch, settings):
                pass
        return [Generation(r.text, "stop" if r.finish == "stop" else "length", len(r.prompt_ids), len(r.tokens))
                for r in rows]

    def stream(self, prompt: PromptLike, *, max_new_tokens: int = 128, temperature: float = 0.0,
               top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None) -> Iterator[str]:
        """The answer to one prompt as text deltas, as it is decoded; joined, they equal
        ``generate([prompt], ...)[0].text`` with the same settings.

        Text that could be the start of a stop sequence, or an incomplete multi-byte character,
        is held back until the next token decides it.
        """
        settings = _settings(max_new_tokens, temperature, top_p, stop, seed)
        row = _Row(self._encode_all([prompt], settings.max_new_tokens)[0], self._row_generator(settings, 0))
        hold = max((len(s) for s in settings.stop), default=1) - 1
        sent = 0
        for _ in self._decode([row], settings):
            end = len(row.text) if row.finish else len(row.text) - hold
            while not row.finish and end > sent and row.text[end - 1] == "\ufffd":
                end -= 1
            if end > sent:
                yield row.text[sent:end]
                sent = end

    def _row_generator(self, settings: _Settings, index: int) -> Any:
        if settings.temperature == 0:
            return None
        torch = require("torch", extra="train", purpose="Generation")
        seed = settings.seed + index if settings.seed is not None else secrets.randbits(62)
        return torch.Generator(device="cpu").manual_seed(seed)

    def _decode(self, rows: list[_Row], settings: _Settings) -> Iterator[None]:
        """Decode ``rows`` together, one token per row per step; yields after every step."""
        torch = require("torch", extra="train", purpose="Generation")
        device = self.model.device
        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row.prompt_ids):] = torch.tensor(row.prompt_ids, dtype=torch.long)
            mask[i, width - len(row.prompt_ids):] = 1
        ids, mask = ids.to(device), mask.to(device)  # (B, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding shifts no position
        cache = growing_cache(self.model.config)  # each step writes into spare room, no re-concatenation
        with torch.inference_mode():
            for _ in range(settings.max_new_tokens):
                out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                 past_key_values=cache, use_cache=True, **self.prefill_kwargs)
                cache = out.past_key_values
                chosen = self._choose(out.logits[:, -1, :].float(), rows, settings)  # (B,)
                for row, token in zip(rows, chosen, strict=True):
                    if row.finish is None:
                        self._advance(row, token, settings)
                yield None
                if all(row.finish for row in rows):
                    return
                ids = torch.tensor([[t if r.finish is None else self._pad] for r, t in zip(rows, chosen, strict=True)],
                                   dtype=torch.long, device=device)  # (B, 1)
                mask = torch.cat([mask, torch.ones_like(ids)], dim=-1)
                positions = positions[:, -1:] + 1
        for row in rows:
            if row.finish is None:
                row.finish = "length"

    def _choose(self, logits: Any, rows: list[_Row], settings: _Settings) -> list[int]:
        """The next token of every row: argmax, or a draw from its own generator."""
        torch = require("torch", extra="train", purpose="Generation")
        if settings.temperature == 0:
            return [int(t) for t in logits.argmax(dim=-1).tolist()]
        probs = top_p_filter(torch.softmax(logits / settings.temperature, dim=-1).cpu(), settings.top_p)  # (B, V)
        return [int(torch.multinomial(p, 1, generator=row.generator)) for p, row in zip(probs, rows, strict=True)]

    def _advance(self, row: _Row, token: int, settings: _Settings) -> None:
        row.tokens.append(token)
        row.text, row.finish = read_answer(self.tokenizer, row.tokens, self._eos, settings.stop,
                                           settings.max_new_tokens)

    # -- scoring -----------------------------------------------------------------------------

    def loglikelihood(self, prompts: Sequence[PromptLike], responses: Sequence[str],
                      batch_size: int | None = None) -> list[tuple[float, int]]:
        """Per pair: the summed natural-log probability of the response's tokens and the
        end-of-sequence token after the rendered prompt, and how many tokens that is.

        Perplexity over a test set is ``exp(-sum(logprob) / sum(count))``. Pairs are scored
        ``batch_size`` (default: the generator's) to a forward pass, fewer where their logits would
        pass :data:`LOGIT_BUDGET`.

        Raises:
            DataError: the lists differ in length, a response is not text, or a pair exceeds the context.
        """
        torch = require("torch", extra="train", purpose="Scoring responses")
        if len(prompts) != len(responses):
            raise DataError(f"loglikelihood got {len(prompts)} prompts and {len(responses)} responses; "
                            "give one response per prompt.")
        pairs: list[tuple[list[int], list[int]]] = []
        for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
            if not isinstance(response, str):
                raise DataError(f"Response {i} must be text, got {type(response).__name__}.")
            answer = [*self.tokenizer(response, add_special_tokens=False)["input_ids"], self.eos_token_id]
            pairs.append((self._encode_all([prompt], len(answer))[0], answer))
        out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -sum(map(len, pairs[i])))
        step = batch_size or self.batch_size
        vocab = int(getattr(self.model.config, "vocab_size", 0) or len(self.tokenizer))
        start = 0
        with torch.inference_mode():
            while start < len(order):
                width = sum(map(len, pairs[order[start]]))  # the longest left: ``order`` is longest first
                rows = max(1, min(step, LOGIT_BUDGET // (width * vocab)))
                chunk = order[start : start + rows]
                for i, value in zip(chunk, self._score([pairs[i] for i in chunk]), strict=True):
                    out[i] = value
                start += rows
        return out

    def _score(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, int]]:
        torch = require("torch", extra="train", purpose="Scoring responses")
        width = max(len(p) + len(r) for p, r in pairs)
        ids = torch.full((len(pairs), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(pairs), width), dtype=torch.long)
        for i, (prompt, answer) in enumerate(pairs):  # right padding: positions start at 0 as they are
            ids[i, : len(prompt) + len(answer)] = torch.tensor(prompt + answer, dtype=torch.long)
            mask[i, : len(prompt) + len(answer)] = 1
        device = self.model.device
        logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, T-1, V): position t predicts token t+1
        picked = logprobs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, T-1)
        scores = []
        for i, (prompt, answer) in enumerate(pairs):
            first = len(prompt) - 1  # the logit at the prompt's last token predicts the answer's first
            scores.append((float(picked[i, first : first + len(answer)].double().sum()), len(answer)))
        return scores


def last_logits_only(model: Any) -> dict[str, int]:
    """``{"logits_to_keep": 1}`` where ``model`` (or the base model of a peft wrapper) takes that
    argument (transformers' causal LMs do), else ``{}``: decoding needs the last position's logits
    only, and a prefill of T prompt tokens otherwise computes T x vocabulary of them (the LM head
    is a fifth of SmolLM2-135M's weights)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        params = inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}
