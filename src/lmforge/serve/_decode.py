"""Continuous batching for a causal LM: concurrent requests share decode steps.

One :class:`DecodeScheduler` per loaded generative version runs its model on a thread of its
own, so the event loop never waits on a model call. Between two steps, sequences join and
leave the running batch:

- a new sequence is prefilled alone (its prompt through the model with a fresh KV cache), so
  its first token is exactly what it gets with no neighbours, then its cache is left-padded
  to the batch's width and stacked under the others (one re-pack per join; between joins each
  step writes its column into the cache's spare room, :mod:`lmforge.serve._kvcache`);
- every step feeds the last token of each running row, with the attention mask hiding the
  padding and each row's own position, so the batch never changes a row's answer
  (greedy outputs equal a lone request's);
- a sequence that ends (end-of-sequence, a stop string, ``max_new_tokens``, its deadline,
  a cancel when its client went away) leaves at once: its cache rows are dropped and the
  leading columns no remaining row uses are cut, so its place is free for the next request.

Text goes back to the event loop as deltas through :meth:`Sequence.events`, holding back
what could still become a stop string (or an incomplete multi-byte character): no fragment
of a stop string is ever sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any

from lmforge._extras import require
from lmforge.predict import growing_cache, read_answer, top_p_filter
from lmforge.serve._kvcache import Packed

__all__ = ["DecodeParams", "DecodeScheduler", "SchedulerClosed", "Sequence"]

log = logging.getLogger("lmforge.serve")


class SchedulerClosed(Exception):
    """The version is being unloaded and takes no new sequences."""


@dataclass(frozen=True)
class DecodeParams:
    """How one sequence is decoded (checked by the route before it is submitted)."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(eq=False)
class Sequence:
    """One request being decoded, shared by the event loop (which reads its events) and the decode thread.

    Events, in order: ``("delta", text)`` any number of times, then one ``("end", reason)`` where
    reason is ``stop``, ``length``, ``deadline`` or ``cancelled``, or ``("error", message)``.
    """

    prompt_ids: list[int]
    params: DecodeParams
    deadline: float
    """``time.monotonic()`` past which the sequence is stopped."""
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0
    finish: str | None = None
    cancelled: bool = False
    generator: Any = None
    on_end: Callable[[], None] | None = None
    """Called on the event loop once the sequence ended, whoever reads its events (or nobody: a stream
    whose client left before its first byte), so what it holds is always given back."""

    def cancel(self) -> None:
        """Stop decoding this sequence at the next step (its client went away)."""
        self.cancelled = True

    def post(self, kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
            if kind != "delta" and self.on_end is not None:
                self.loop.call_soon_threadsafe(self.on_end)


class DecodeScheduler:
    """Runs ``generator``'s model (a :class:`~lmforge.predict.TorchGenerator`) for every submitted sequence.

    Args:
        generator: the loaded generator (its ``model`` and ``tokenizer`` are used).
        max_batch: sequences decoded together; more wait in arrival order.
    """

    def __init__(self, generator: Any, *, max_batch: int) -> None:
        self.generator = generator
        self.model = generator.model
        self.prefill_kwargs = generator.prefill_kwargs  # the prompt's last logits only
        self.tokenizer = generator.tokenizer
        self.max_batch = max_batch
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        ids = {*(eos if isinstance(eos, list) else [eos]), self.tokenizer.eos_token_id} - {None}
        self.eos = frozenset(int(i) for i in ids)
        self.pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                       else generator.eos_token_id)
        self._incoming: collections.deque[Sequence] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lmforge-decode", daemon=True)
        self.running = 0
        """Sequences in the running batch now."""
        self.tokens_per_s = 0.0
        """Measured decode throughput (tokens of all rows per second of model time), for Retry-After."""

    # -- the event loop's side ---------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        """Queue ``seq``; it joins the batch at the next step with a free place."""
        with self._cv:
            if self._closed:
                raise SchedulerClosed("this model version is being unloaded")
            self._incoming.append(seq)
            self._cv.notify()

    @property
    def waiting(self) -> int:
        return len(self._incoming)

    def close(self) -> None:
        """Take no new sequences, finish the ones admitted, and stop the thread (blocking)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join()

    # -- the decode thread -------------------------------------------------------------------
    def _run(self) -> None:
        torch = require("torch", extra="train", purpose="Generation")
        rows: list[Sequence] = []
        state = Packed(self.model.config)
        try:
            with torch.inference_mode():
                while True:
                    with self._cv:
                        while not self._incoming and not rows and not self._closed:
                            self._cv.wait()
                        if self._closed and not self._incoming and not rows:
                            return
                        joining = [self._incoming.popleft()
                                   for _ in range(min(len(self._incoming), self.max_batch - len(rows)))]
                    for seq in joining:
                        if self._expired(seq):
                            continue
                        cache = self._prefill(seq)
                        if seq.finish is None:
                            state.join(torch, cache, len(seq.prompt_ids))
                            rows.append(seq)
                    keep = [i for i, seq in enumerate(rows) if not self._expired(seq)]
                    if len(keep) < len(rows):
                        state.select(torch, keep)
                        rows = [rows[i] for i in keep]
                    self.running = len(rows)
                    if rows:
                        self._step(torch, rows, state)
                        keep = [i for i, seq in enumerate(rows) if seq.finish is None]
                        if len(keep) < len(rows):
                            state.select(torch, keep)
                            rows = [rows[i] for i in keep]
                    self.running = len(rows)
        except Exception as exc:  # a model failure ends every sequence with an error, never silently
            log.error("decode loop failed: %s (message withheld: it may quote input)", type(exc).__name__)
            with self._cv:
                pending = [*rows, *self._incoming]
                self._incoming.clear()
                self._closed = True
            for seq in pending:
                if seq.finish is None:
                    seq.finish = "error"
                    seq.post("error", "the model failed on this request; the server log has the details")
            self.running = 0

    def _expired(self, seq: Sequence) -> bool:
        """End ``seq`` if it was cancelled or its deadline passed; whether it ended."""
        if seq.finish is not None:
            return True
        if seq.cancelled or time.monotonic() > seq.deadline:
            seq.finish = "cancelled" if seq.cancelled else "deadline"
            seq.post("end", seq.finish)
            return True
        return False

    def _prefill(self, seq: Sequence) -> Any:
        """Run ``seq``'s prompt alone with a fresh cache, choose its first token; the cache."""
        torch = require("torch", extra="train", purpose="Generation")
        p = seq.params
        if p.temperature > 0:
            seed = p.seed if p.seed is not None else secrets.randbits(62)
            seq.generator = torch.Generator(device="cpu").manual_seed(seed)
        n = len(seq.prompt_ids)
        ids = torch.tensor([seq.prompt_ids], dtype=torch.long)
        cache = growing_cache(self.model.config)
        start = time.perf_counter()
        out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=torch.arange(n).unsqueeze(0),
                         past_key_values=cache, use_cache=True, **self.prefill_kwargs)
        self._advance(seq, self._choose(torch, out.logits[0, -1, :].float(), seq))
        self._observe(1, time.perf_counter() - start)
        return out.past_key_values

    def _step(self, torch: Any, rows: list[Sequence], state: Packed) -> None:
        """One token for every running row."""
        ids = torch.tensor([[seq.tokens[-1]] for seq in rows], dtype=torch.long)
        positions = torch.tensor([[len(seq.prompt_ids) + len(seq.tokens) - 1] for seq in rows], dtype=torch.long)
        mask = state.step(torch)
        start = time.perf_counter()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         past_key_values=state.cache, use_cache=True)
        state.cache = out.past_key_values
        logits = out.logits[:, -1, :].float()
        for i, seq in enumerate(rows):
            self._advance(seq, self._choose(torch, logits[i], seq))
        self._observe(len(rows), time.perf_counter() - start)

    def _observe(self, tokens: int, seconds: float) -> None:
        if seconds > 0:
            rate = tokens / seconds
            self.tokens_per_s = rate if self.tokens_per_s == 0 else 0.9 * self.tokens_per_s + 0.1 * rate

    @staticmethod
    def _choose(torch: Any, logits: Any, seq: Sequence) -> int:
        """Argmax, or a top-p draw at the sequence's temperature from its own seeded generator."""
        p = seq.params
        if p.temperature == 0:
            return int(logits.argmax())
        probs = top_p_filter(torch.softmax(logits / p.temperature, dim=-1), p.top_p)
        return int(torch.multinomial(probs, 1, generator=seq.generator))

    def _advance(self, seq: Sequence, token: int) -> None:
        """Append ``token``, cut a stop string, post what is safe to send (and the end)."""
        p = seq.params
        seq.tokens.append(token)
        seq.text, seq.finish = read_answer(self.tokenizer, seq.tokens, self.eos, p.stop, p.max_new_tokens)
        end = len(seq.text) if seq.finish else safe_end(seq.text, p.stop)
        if end > seq.sent:
            seq.post("delta", seq.text[seq.sent : end])
            seq.sent = end
        if seq.finish:
            seq.post("end", seq.finish)


def safe_end(text: str, stop: Seq[str]) -> int:
    """How much of ``text`` may be sent while decoding goes on: everything before a suffix that could
    begin a stop string, and before a trailing incomplete character (decoded as U+FFFD)."""
    end = len(text)
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                end = min(end, len(text) - k)
                break
    while end > 0 and text[end - 1] == "\ufffd":
        end -= 1
    return end
