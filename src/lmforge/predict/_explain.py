"""Why a classifier said what it said: per-word attributions toward a label.

Two methods, one output (:class:`Explanation`: the words of the text in order, each with the
share of the label's probability it accounts for):

- ``integrated-gradients`` (a :class:`~lmforge.predict._torch.TorchPredictor`): the gradient of
  the label's probability with respect to the input embeddings, averaged along the straight path
  from a baseline (every real token's embedding replaced by the padding token's; the special
  tokens kept) to the text, times the difference of the two (Sundararajan et al., 2017), summed
  over the embedding dimension. A midpoint Riemann sum of ``steps`` points, batched; the
  attributions of a text sum to about p(label | text) - p(label | baseline) (completeness).
- ``occlusion`` (any predictor, e.g. an ONNX variant with no gradients): each word's weight is
  the drop of the label's probability when that word is deleted; one batched call of N + 1 texts.

Attributions are computed on tokens and summed per word (whitespace-separated spans of the
original text, via the tokenizer's character offsets), so a word split into sub-words gets one
number. Words past the model's ``max_length`` get 0 and set ``truncated``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.errors import ConfigError

__all__ = ["EXPLAIN_METHODS", "Explanation", "WordAttribution", "explain"]

EXPLAIN_METHODS = ("auto", "integrated-gradients", "occlusion")
"""``auto``: integrated gradients for a torch model, occlusion otherwise."""

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class WordAttribution:
    """One word of the text, where it is (``text[start:end]``), and how much it pushed toward the label."""

    word: str
    start: int
    end: int
    weight: float


@dataclass(frozen=True)
class Explanation:
    """The attributions of one text toward ``label`` (the predicted one unless asked for another)."""

    text: str
    label: str
    score: float
    """p(label | text)."""
    method: str
    words: list[WordAttribution] = field(default_factory=list)
    truncated: bool = False
    """Some words lay beyond the model's ``max_length`` (weight 0: the model never saw them)."""

    def top(self, k: int) -> list[WordAttribution]:
        """The ``k`` words that pushed hardest toward the label (largest weight first)."""
        return sorted(self.words, key=lambda w: -w.weight)[:k]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """JSON-ready: every word in text order, or with ``top`` only the ``top`` strongest, strongest first."""
        words = self.words if top is None else self.top(top)
        return {
            "label": self.label,
            "score": round(self.score, 6),
            "method": self.method,
            "truncated": self.truncated,
            "tokens": [{"token": w.word, "start": w.start, "end": w.end, "attribution": round(w.weight, 6)}
                       for w in words],
        }


def explain(
    predictor: Any,
    texts: Sequence[str],
    *,
    label: str | None = None,
    method: str = "auto",
    steps: int = 32,
) -> list[Explanation]:
    """Per-word attributions of each text toward ``label`` (default: its predicted label).

    Raises:
        ConfigError: an unknown ``method`` or ``label``, ``steps`` < 1, or integrated gradients
            asked of a predictor without a torch model.
    """
    if method not in EXPLAIN_METHODS:
        raise ConfigError(f"Unknown explanation method {method!r}; choose one of {', '.join(EXPLAIN_METHODS)}.")
    if steps < 1:
        raise ConfigError(f"Integrated gradients need at least 1 step, got {steps}.")
    labels: list[str] = list(predictor.labels)
    if label is not None and label not in labels:
        raise ConfigError(f"Unknown label {label!r}; the model's labels are {', '.join(labels)}.")
    torch_model = getattr(predictor, "backend", None) == "torch"
    if method == "auto":
        method = "integrated-gradients" if torch_model else "occlusion"
    if method == "integrated-gradients" and not torch_model:
        raise ConfigError(
            f"Integrated gradients need a torch model; this is the {getattr(predictor, 'backend', '?')} backend "
            "(use --variant fp32, or the occlusion method)."
        )
    proba = predictor.predict_proba(list(texts), batch_size=64)
    targets = [labels.index(label) if label is not None else int(np.argmax(row)) for row in proba]
    out = []
    for text, row, target in zip(texts, proba, targets, strict=True):
        if method == "occlusion":
            words, truncated = _occlusion(predictor, text, target, float(row[target]))
        else:
            words, truncated = _integrated_gradients(predictor, text, target, steps)
        out.append(Explanation(text, labels[target], float(row[target]), method, words, truncated))
    return out


def _spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in _WORD.finditer(text)]


def _occlusion(predictor: Any, text: str, target: int, full: float) -> tuple[list[WordAttribution], bool]:
    spans = _spans(text)
    if not spans:
        return [], False
    variants = [(text[:s] + text[e:]).strip() for s, e in spans]
    proba = predictor.predict_proba(variants, batch_size=64)
    # A word the tokenizer cuts off cannot change the output: the model reads the same tokens without
    # it, so its weight is 0 (set, not computed: a batch of another size can differ in the last bits).
    seen = _seen_chars(predictor, text)
    cut = [seen is not None and s >= seen for s, _ in spans]
    words = [WordAttribution(text[s:e], s, e, 0.0 if off else full - float(p[target]))
             for (s, e), p, off in zip(spans, proba, cut, strict=True)]
    return words, any(cut)


def _seen_chars(predictor: Any, text: str) -> int | None:
    """The end of the last character the model reads of ``text`` (None: unknown or everything)."""
    tokenizer = getattr(predictor, "tokenizer", None)
    if tokenizer is None:  # a predictor that only answers probabilities
        return None
    if hasattr(tokenizer, "offsets"):  # the ONNX backend's FastTokenizer
        offsets = tokenizer.offsets(text)
    else:  # a transformers tokenizer
        enc = tokenizer(text, truncation=True, max_length=predictor.max_length, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
    ends = [end for start, end in offsets if end > start]
    return max(ends) if ends and max(ends) < len(text.rstrip()) else None


def _integrated_gradients(predictor: Any, text: str, target: int, steps: int) -> tuple[list[WordAttribution], bool]:
    """Token attributions by integrated gradients, summed per word."""
    torch = require("torch", extra="train", purpose="Explaining a prediction")
    model, tokenizer = predictor.model, predictor.tokenizer
    model.eval()
    enc = tokenizer(text, truncation=True, max_length=predictor.max_length, return_offsets_mapping=True,
                    return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    enc = enc.to(model.device)
    ids = enc["input_ids"]
    embeddings = model.get_input_embeddings()
    with torch.no_grad():
        x = embeddings(ids).float()  # (1, T, H)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        x0 = embeddings(torch.full_like(ids, pad_id)).float()
        special = torch.tensor([end <= start for start, end in offsets], device=x.device)  # [CLS], [SEP]
        x0[0, special] = x[0, special]
    alphas = (torch.arange(steps, dtype=torch.float32, device=x.device) + 0.5) / steps
    total = torch.zeros_like(x[0])  # (T, H): the sum of the gradients along the path
    extra = {k: v for k, v in enc.items() if k not in ("input_ids",)}
    dtype = next(model.parameters()).dtype
    for chunk in alphas.split(16):
        path = (x0 + chunk.view(-1, 1, 1) * (x - x0)).to(dtype).requires_grad_(True)  # (S, T, H)
        batch = {k: v.expand(len(chunk), -1) for k, v in extra.items()}
        with torch.enable_grad():
            logits = model(inputs_embeds=path, **batch).logits.float()
            prob = torch.softmax(logits, dim=-1)[:, target].sum()
            (grad,) = torch.autograd.grad(prob, path)
        total += grad.float().sum(0)
    per_token = ((x[0] - x0[0]) * total / steps).sum(-1).tolist()  # (T,)
    spans = _spans(text)
    weights = [0.0] * len(spans)
    seen_end = 0
    for (start, end), value in zip(offsets, per_token, strict=True):
        if end <= start:
            continue
        seen_end = max(seen_end, end)
        for i, (s, e) in enumerate(spans):
            if s <= start < e:
                weights[i] += value
                break
    words = [WordAttribution(text[s:e], s, e, w) for (s, e), w in zip(spans, weights, strict=True)]
    return words, any(s >= seen_end for s, _ in spans)
