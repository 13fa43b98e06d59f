"""What a loaded model offers the stages above it, and the helpers every backend shares.

:class:`Predictor` is the interface of a text classifier, whatever runs it (PyTorch or ONNX
Runtime); :class:`Generator` is the interface of a causal LM that writes answers, and
:class:`Generation` one answer it wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

__all__ = ["Generation", "Generator", "Predictor", "PromptLike", "batched_proba", "softmax", "to_predictions",
           "unit_rows"]

PromptLike = str | Sequence[Mapping[str, Any]]
"""A plain prompt (one user turn), or chat turns ``[{"role", "content"}, ...]``."""


@runtime_checkable
class Predictor(Protocol):
    """A text classifier ready to predict: what ``lmforge predict``, evaluation and serving use."""

    labels: list[str]
    """Class names, in the column order of :meth:`predict_proba`."""
    max_length: int
    """Longest token sequence the model sees; longer texts are truncated."""

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Probabilities of shape (N, C); rows sum to 1, columns in ``labels`` order."""
        ...

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        """Per text: ``label``, ``score`` and ``scores`` (every label's probability)."""
        ...


@dataclass(frozen=True)
class Generation:
    """One answer a :class:`Generator` wrote."""

    text: str
    """The answer, without the end-of-sequence token and cut before the first stop sequence."""
    finish_reason: Literal["stop", "length"]
    """``stop``: the model ended it (end-of-sequence) or a stop sequence did; ``length``:
    ``max_new_tokens`` ran out first."""
    prompt_tokens: int
    """Tokens of the rendered prompt (chat template and system prompt included)."""
    completion_tokens: int
    """Tokens the model generated for this answer (an end-of-sequence token included)."""


@runtime_checkable
class Generator(Protocol):
    """A causal LM ready to answer prompts: what ``lmforge predict``, evaluation and serving use.

    Prompts are rendered with the model's chat template by :func:`lmforge.predict.render_prompt`
    (the same function training uses), with :attr:`system` as the system turn unless the
    prompt's turns start with their own.
    """

    tokenizer: Any
    """The model's tokenizer (a transformers tokenizer with the chat template)."""
    max_length: int
    """The model's context: prompt and answer tokens together never exceed it."""
    system: str | None
    """The system prompt the model was fine-tuned with (None: the template's own default)."""

    def generate(self, prompts: Sequence[PromptLike], *, max_new_tokens: int = 128, temperature: float = 0.0,
                 top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None) -> list[Generation]:
        """One :class:`Generation` per prompt, in input order (greedy when ``temperature`` is 0)."""
        ...

    def stream(self, prompt: PromptLike, *, max_new_tokens: int = 128, temperature: float = 0.0,
               top_p: float = 1.0, stop: Sequence[str] = (), seed: int | None = None) -> Iterator[str]:
        """The answer to one prompt as text deltas; joined, they are ``generate([prompt])[0].text``."""
        ...

    def loglikelihood(self, prompts: Sequence[PromptLike], responses: Sequence[str]) -> list[tuple[float, int]]:
        """Per pair: the summed natural-log probability of the response's tokens and the
        end-of-sequence token after the rendered prompt, and how many tokens that is."""
        ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (B, C) logits, in float32."""
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Each row of (N, H) ``x`` scaled to unit L2 length (an all-zero row stays zero), in float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = x / np.maximum(norms, 1e-12)
    return out


def batched_proba(texts: Sequence[str], n_labels: int, batch_size: int, progress: bool,
                  run_batch: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Apply ``run_batch`` (texts -> (B, C) probabilities) over length-sorted batches; input order out.

    Sorting by length keeps each batch's padding small; results go back to input order.
    """
    texts = list(texts)
    out = np.zeros((len(texts), n_labels), dtype=np.float32)
    if not texts:
        return out
    order = np.argsort([len(t) for t in texts], kind="stable")[::-1]
    starts: Any = range(0, len(texts), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="predict", unit="batch", dynamic_ncols=True)
    for start in starts:
        idx = order[start : start + batch_size]
        out[idx] = run_batch([texts[i] for i in idx])
    return out


def to_predictions(labels: list[str], proba: np.ndarray) -> list[dict[str, Any]]:
    """``predict`` output from a (N, C) probability matrix."""
    return [
        {
            "label": labels[int(row.argmax())],
            "score": float(row.max()),
            "scores": {label: float(p) for label, p in zip(labels, row, strict=True)},
        }
        for row in proba
    ]
