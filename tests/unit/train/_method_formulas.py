"""Each registered fine-tuning method's trainable-parameter count, from the model's shapes alone.

``FORMULAS[name](model, cfg)`` takes the base classifier before the method wraps it (a
``*ForSequenceClassification`` with its fresh head) and the ``train`` section, and counts what
the method trains, module by module, the way its paper describes it; the contract test
(``test_method_contract.py``) checks the stage's ``trainable_parameters`` against it. Written
for BERT-style encoders (``query``/``key``/``value``/``dense`` linear layers), as the tiny BERT
the test builds. A method registered without a formula here fails the contract test.

The methods that do not merge (bottleneck adapters, prefix, prompt) count from the config alone
(hidden size ``H``, ``L`` layers, ``C`` labels), derived from the papers, not from the code:

- head (BERT's ``classifier``): ``H * C + C``;
- one bottleneck adapter of width ``b = H // reduction_factor``: down ``H * b + b``, up ``b * H + H``;
- Houlsby: two adapters per layer, plus every LayerNorm (embeddings' and two per layer, ``2 H`` each);
- Pfeiffer: one adapter per layer;
- prefix: a key and a value vector of width ``H`` per virtual token and layer: ``2 L P H``;
- prompt: ``P`` embeddings of width ``H``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import torch

from lmforge.config import TrainConfig

__all__ = ["CONFIG_FORMULAS", "FORMULAS"]

# The linear layers LoRA and AdaLoRA adapt by default in a BERT: every projection of attention and
# FFN, and the pooler's dense layer (its name ends in "dense" too); never the classifier.
_LORA_LEAVES = ("query", "key", "value", "dense")
_FFN_OUT = re.compile(r".*\.layer\.\d+\.output\.dense$")  # BERT's FFN output (not attention.output.dense)


def _linears(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Linear]]:
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "classifier" not in name:
            yield name, module


def _head(model: torch.nn.Module) -> int:
    """The classifier head: it starts random, so every peft method trains it fully."""
    classifier = model.get_submodule("classifier")
    return sum(p.numel() for p in classifier.parameters())


def _full(model: torch.nn.Module, cfg: TrainConfig) -> int:
    total = sum(p.numel() for p in model.parameters())
    frozen = model.get_input_embeddings().weight.numel() if cfg.freeze_embeddings else 0
    return total - frozen


def _lora(model: torch.nn.Module, cfg: TrainConfig) -> int:
    # W (out x in) gains B (out x r) A (r x in).
    r = cfg.lora.r
    adapted = [m for name, m in _linears(model) if name.rsplit(".", 1)[-1] in _LORA_LEAVES]
    return sum(r * (m.in_features + m.out_features) for m in adapted) + _head(model)


def _adalora(model: torch.nn.Module, cfg: TrainConfig) -> int:
    # W gains P (out x r) diag(E) (r singular values) Q (r x in), r = init_r: pruned triplets are
    # masked to zero, not removed, so every one stays a trainable parameter.
    r = cfg.adalora.init_r
    adapted = [m for name, m in _linears(model) if name.rsplit(".", 1)[-1] in _LORA_LEAVES]
    return sum(r * (m.in_features + m.out_features + 1) for m in adapted) + _head(model)


def _ia3(model: torch.nn.Module, cfg: TrainConfig) -> int:
    # One vector per adapted layer: keys and values rescaled at their output (out_features), the FFN
    # output projection at its input (in_features: the FFN's inner activations).
    count = 0
    for name, m in _linears(model):
        if name.rsplit(".", 1)[-1] in ("key", "value"):
            count += m.out_features
        elif _FFN_OUT.fullmatch(name):
            count += m.in_features
    return count + _head(model)

def _bert_head(config: Any, num_labels: int) -> int:
    return config.hidden_size * num_labels + num_labels


def _adapter(config: Any, train_cfg: Any) -> int:
    h = config.hidden_size
    b = max(1, h // train_cfg.adapter.reduction_factor)
    return (h * b + b) + (b * h + h)


def _houlsby(config: Any, num_labels: int, train_cfg: Any) -> int:
    layers, h = config.num_hidden_layers, config.hidden_size
    layer_norms = (1 + 2 * layers) * 2 * h
    return 2 * layers * _adapter(config, train_cfg) + layer_norms + _bert_head(config, num_labels)


def _pfeiffer(config: Any, num_labels: int, train_cfg: Any) -> int:
    return config.num_hidden_layers * _adapter(config, train_cfg) + _bert_head(config, num_labels)


def _prefix(config: Any, num_labels: int, train_cfg: Any) -> int:
    p = train_cfg.prefix.num_virtual_tokens
    return 2 * config.num_hidden_layers * p * config.hidden_size + _bert_head(config, num_labels)


def _prompt(config: Any, num_labels: int, train_cfg: Any) -> int:
    return train_cfg.prompt.num_virtual_tokens * config.hidden_size + _bert_head(config, num_labels)


CONFIG_FORMULAS: dict[str, Callable[[Any, int, Any], int]] = {
    "adapter-houlsby": _houlsby,
    "adapter-pfeiffer": _pfeiffer,
    "prefix": _prefix,
    "prompt": _prompt,
}
"""The methods that do not merge, as formulas of ``(config, num_labels, train_cfg)``."""


def _on_config(formula: Callable[[Any, int, Any], int]) -> Callable[[torch.nn.Module, TrainConfig], int]:
    """A formula of ``(config, num_labels, train_cfg)`` as one of ``(model, cfg)``."""
    return lambda model, cfg: formula(model.config, model.config.num_labels, cfg)


FORMULAS: dict[str, Callable[[torch.nn.Module, TrainConfig], int]] = {
    "adalora": _adalora,
    "adapter-houlsby": _on_config(CONFIG_FORMULAS["adapter-houlsby"]),
    "adapter-pfeiffer": _on_config(CONFIG_FORMULAS["adapter-pfeiffer"]),
    "full": _full,
    "ia3": _ia3,
    "lora": _lora,
    "prefix": _on_config(CONFIG_FORMULAS["prefix"]),
    "prompt": _on_config(CONFIG_FORMULAS["prompt"]),
}
