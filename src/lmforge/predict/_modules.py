"""The modules lmforge adds to a pretrained encoder classifier and keeps apart from its weights.

Three kinds, each attached by giving an existing module of the model a subclass of its own
class that adds parameters and extends ``forward``:

- ``bottleneck`` (Houlsby et al., 2019; Pfeiffer et al., 2021): an output projection
  (``nn.Linear``) becomes :class:`AdaptedLinear`, ``y = W x + b`` then ``y + up(act(down(y)))``,
  so the adapter sits after the attention output and/or FFN output, before the residual and
  LayerNorm, as in the papers. ``up`` starts at zero: the wrapped model starts as the base.
- ``prefix`` (P-tuning v2, Liu et al., 2022): every self-attention attends over ``P`` trainable
  key/value vectors before the text's own (its mask extended so the prefix is always seen).
- ``prompt`` (Lester et al., 2021): ``P`` trainable vectors prepended to the input embeddings
  (the attention mask and token types extended to match).

Why a class swap rather than a wrapper module or forward hooks: every original parameter keeps
its name (the base weights load by their names, the new ones are exactly the added keys), the
model stays the transformers class (``config``, ``base_model``, ``save_pretrained``, the
compressors' layer walks all keep working), and the TorchScript ONNX exporter traces the new
``forward`` like any other (hooks it would skip or bake in). Every shape the exporter sees is
derived from the input tensors (broadcasting, ``size()``), so batch and length stay dynamic.

torch is imported at this module's top: it is loaded only through ``_modules_io``'s functions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from lmforge.errors import ConfigError

__all__ = ["ACTIVATIONS", "AdaptedLinear", "Bottleneck", "attach"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "swish": nn.SiLU, "tanh": nn.Tanh}

# Output projections by the name ending they have in encoder (and causal-LM) families.
_ATTENTION_OUT = ("attention.output.dense", "attention.o", "attention.out_lin", "attention.dense",
                  "self_attn.o_proj", "self_attn.out_proj")
_FFN_OUT = ("output.dense", "ffn.lin2", "ffn_output", "mlp.down_proj", "mlp.fc2")


class Bottleneck(nn.Module):
    """down (H -> H / reduction_factor), non-linearity, up (back to H), plus the input (residual)."""

    def __init__(self, width: int, reduction_factor: int, non_linearity: str) -> None:
        super().__init__()
        size = max(1, width // reduction_factor)
        self.down = nn.Linear(width, size)
        self.act = ACTIVATIONS[non_linearity]()
        self.up = nn.Linear(size, width)
        nn.init.normal_(self.down.weight, std=0.02)  # BERT's own initializer range
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)  # zero: the adapter starts as the identity
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.up(self.act(self.down(x)))  # (B, T, H)
        return out


class AdaptedLinear(nn.Linear):
    """An output projection followed by its bottleneck adapter (``adapter`` is set by :func:`attach`)."""

    adapter: Bottleneck

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(super().forward(x))  # type: ignore[no-any-return]


class _Prefix:
    """Mixin for a BERT-style self-attention (``query``/``key``/``value``): P prefix keys and values.

    The prefix is broadcast over the batch (added to zeros shaped from the keys: nothing depends
    on the batch size as a number, so the exported graph keeps it dynamic) and concatenated
    before the text's keys and values, so both matmuls multiply activations: dynamic int8
    quantization leaves them alone (a constant prefix operand of a MatMul is taken for a weight
    and quantized per channel, which ONNX Runtime's kernel then rejects).
    """

    prefix_key: nn.Parameter
    prefix_value: nn.Parameter

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                past_key_values: Any = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        me: Any = self
        batch, length = hidden_states.shape[:2]
        heads, size = me.num_attention_heads, me.attention_head_size
        scaling = getattr(me, "scaling", 1.0 / math.sqrt(size))
        q = me.query(hidden_states).view(batch, length, heads, size).transpose(1, 2)  # (B, h, T, d)
        k = me.key(hidden_states).view(batch, length, heads, size).transpose(1, 2)
        v = me.value(hidden_states).view(batch, length, heads, size).transpose(1, 2)
        like = torch.zeros_like(k[:, :, :1, :1])  # (B, h, 1, 1): the batch, as a tensor
        pk = self.prefix_key.view(1, -1, heads, size).transpose(1, 2) + like  # (B, h, P, d)
        pv = self.prefix_value.view(1, -1, heads, size).transpose(1, 2) + like
        n = pk.shape[2]
        k, v = torch.cat([pk, k], dim=2), torch.cat([pv, v], dim=2)  # (B, h, P+T, d)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scaling  # (B, h, T, P+T)
        if attention_mask is not None:
            seen = attention_mask[..., :1]  # the prefix is seen from every position
            if attention_mask.dtype == torch.bool:  # sdpa masks: True where attention is allowed
                mask = torch.cat([torch.ones_like(seen).expand(*seen.shape[:-1], n), attention_mask], dim=-1)
                scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
            else:  # eager masks: 0 where allowed, a large negative number elsewhere
                scores = scores + torch.cat([torch.zeros_like(seen).expand(*seen.shape[:-1], n), attention_mask], -1)
        probs = me.dropout(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype))
        out = torch.matmul(probs, v)  # (B, h, T, d)
        return out.transpose(1, 2).reshape(batch, length, heads * size).contiguous(), probs


class _Prompt:
    """Mixin for a transformers base model: P soft-prompt vectors before the input embeddings."""

    soft_prompt: nn.Parameter

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, position_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
        me: Any = self
        if position_ids is not None:
            raise ValueError("prompt tuning sets the positions itself; do not pass position_ids")
        embeds: torch.Tensor = (
            inputs_embeds if inputs_embeds is not None else me.get_input_embeddings()(input_ids)  # (B, T, H)
        )
        first = embeds[:, :1, :1]  # (B, 1, 1): the batch dimension, as a tensor
        prompt = self.soft_prompt.unsqueeze(0) + torch.zeros_like(first)  # (B, P, H), broadcast
        ones = torch.ones_like(first[..., 0], dtype=torch.long).expand(-1, self.soft_prompt.shape[0])  # (B, P)
        if attention_mask is None:
            attention_mask = torch.ones_like(embeds[..., 0], dtype=torch.long)
        attention_mask = torch.cat([ones.to(attention_mask.dtype), attention_mask], dim=1)  # (B, P+T)
        if token_type_ids is not None:
            token_type_ids = torch.cat([torch.zeros_like(ones).to(token_type_ids.dtype), token_type_ids], dim=1)
        return super().forward(  # type: ignore[misc]
            inputs_embeds=torch.cat([prompt, embeds], dim=1), attention_mask=attention_mask,
            token_type_ids=token_type_ids, **kwargs,
        )


_SUBCLASSES: dict[tuple[type, type], type] = {}


def _swap(module: nn.Module, mixin: type) -> None:
    """Give ``module`` the class ``mixin + its class`` (one such class per pair, cached)."""
    base = type(module)
    key = (mixin, base)
    if key not in _SUBCLASSES:
        _SUBCLASSES[key] = type(f"{mixin.__name__.strip('_')}{base.__name__}", (mixin, base), {})
    module.__class__ = _SUBCLASSES[key]
    _keep_output_capture(module)


def _keep_output_capture(module: nn.Module) -> None:
    """Register a swapped transformers model class for output capture, as its original class was.

    transformers 5 records ``output_hidden_states``/``output_attentions`` only for the classes whose
    ``_can_record_outputs`` it registered (by class name) when the model was built; without an entry
    for the new class those outputs come back ``None`` (an out-of-scope detector's pooled states,
    the ONNX graph's ``pooled`` output). There is no public way to register; the pin in
    constraints.txt and the prompt-tuning tests guard this.
    """
    if not hasattr(module, "_can_record_outputs"):  # not a transformers model (a Linear, an attention)
        return
    from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

    model: Any = module
    _CAN_RECORD_REGISTRY[model] = model._can_record_outputs


def _output_projections(model: nn.Module, placement: str) -> list[str]:
    """Names of the attention-output and/or FFN-output linear layers of every layer."""
    found = []
    for name, mod in model.named_modules():
        if type(mod) is not nn.Linear:
            continue
        attention = name.endswith(_ATTENTION_OUT)
        ffn = name.endswith(_FFN_OUT) and not attention
        if ffn or (attention and placement == "attention+ffn"):
            found.append(name)
    return found


def _self_attentions(model: nn.Module) -> list[str]:
    return [name for name, mod in model.named_modules()
            if all(isinstance(getattr(mod, part, None), nn.Linear) for part in ("query", "key", "value"))
            and hasattr(mod, "num_attention_heads") and hasattr(mod, "attention_head_size")
            and "crossattention" not in name]


def _resolve_targets(model: nn.Module, layout: dict[str, Any]) -> list[str]:
    kind = layout["kind"]
    if kind == "bottleneck":
        targets = _output_projections(model, layout["placement"])
    elif kind == "prefix":
        targets = _self_attentions(model)
    else:
        targets = [str(getattr(model, "base_model_prefix", ""))]
    if not targets or not all(targets):
        raise ConfigError(
            f"train.method {layout['method']}: found no {_WHAT[kind]} in this {type(model).__name__}; "
            "lmforge attaches it to BERT-family encoders (BERT, MiniLM, RoBERTa, XLM-R, ELECTRA). "
            "Use train.method lora or full for this model."
        )
    return targets


_WHAT = {"bottleneck": "attention/FFN output projections", "prefix": "BERT-style self-attention (query/key/value)",
         "prompt": "base model to prepend a soft prompt to"}


def _vocab_rows(model: nn.Module, n: int) -> torch.Tensor:
    """``n`` rows of the word embeddings, sampled with the global RNG (seeded by training)."""
    weight = model.get_input_embeddings().weight  # type: ignore[operator]
    return weight[torch.randint(weight.shape[0], (n,))].detach().clone()  # type: ignore[no-any-return]


def attach(model: nn.Module, layout: dict[str, Any]) -> list[str]:
    """Add the modules ``layout`` describes to ``model`` in place; returns the added parameters' names.

    ``layout["targets"]`` (module names) is filled in when absent, so the layout a model was
    trained with re-attaches the modules at exactly the same places.
    """
    before = {name for name, _ in model.named_parameters()}
    targets = layout.get("targets") or _resolve_targets(model, layout)
    modules = dict(model.named_modules())
    missing = [t for t in targets if t not in modules]
    if missing:
        raise ConfigError(f"train.method {layout['method']}: this model has no module {missing[0]!r}; "
                          "the modules were trained on another architecture.")
    for target in targets:
        mod = modules[target]
        if layout["kind"] == "bottleneck":
            mod.__class__ = AdaptedLinear
            mod.adapter = Bottleneck(mod.out_features, int(layout["reduction_factor"]),
                                     str(layout["non_linearity"]))
        elif layout["kind"] == "prefix":
            n = int(layout["num_virtual_tokens"])
            rows = _vocab_rows(model, n)
            with torch.no_grad():  # keys and values of real token embeddings: the scale attention expects
                mod.prefix_key = nn.Parameter(mod.key(rows))  # (P, h * d)
                mod.prefix_value = nn.Parameter(mod.value(rows))
            _swap(mod, _Prefix)
        else:
            mod.soft_prompt = nn.Parameter(_vocab_rows(model, int(layout["num_virtual_tokens"])))  # (P, H)
            _swap(mod, _Prompt)
    layout["targets"] = list(targets)
    return sorted(name for name, _ in model.named_parameters() if name not in before)
