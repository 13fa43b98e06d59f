"""Trainable-parameter counts of the methods that do not merge, as formulas of the model's shape.

For the method contract test (``test_method_contract.py``): ``FORMULAS[name](config, num_labels,
train_cfg)`` is the number of parameters that train when ``name`` wraps a BERT-family
``*ForSequenceClassification`` with ``config`` (a transformers config: hidden size ``H``, ``L``
layers, intermediate size), a ``num_labels``-way head and the method settings of ``train_cfg``
(an ``lmforge.config.TrainConfig``). Derived from the papers, not from the code:

- head (BERT's ``classifier``): ``H * C + C``;
- one bottleneck adapter of width ``b = H // reduction_factor``: down ``H * b + b``, up ``b * H + H``;
- Houlsby: two adapters per layer, plus every LayerNorm (embeddings' and two per layer, ``2 H`` each);
- Pfeiffer: one adapter per layer;
- prefix: a key and a value vector of width ``H`` per virtual token and layer: ``2 L P H``;
- prompt: ``P`` embeddings of width ``H``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["FORMULAS"]


def _head(config: Any, num_labels: int) -> int:
    return config.hidden_size * num_labels + num_labels


def _adapter(config: Any, train_cfg: Any) -> int:
    h = config.hidden_size
    b = max(1, h // train_cfg.adapter.reduction_factor)
    return (h * b + b) + (b * h + h)


def _houlsby(config: Any, num_labels: int, train_cfg: Any) -> int:
    layers, h = config.num_hidden_layers, config.hidden_size
    layer_norms = (1 + 2 * layers) * 2 * h
    return 2 * layers * _adapter(config, train_cfg) + layer_norms + _head(config, num_labels)


def _pfeiffer(config: Any, num_labels: int, train_cfg: Any) -> int:
    return config.num_hidden_layers * _adapter(config, train_cfg) + _head(config, num_labels)


def _prefix(config: Any, num_labels: int, train_cfg: Any) -> int:
    p = train_cfg.prefix.num_virtual_tokens
    return 2 * config.num_hidden_layers * p * config.hidden_size + _head(config, num_labels)


def _prompt(config: Any, num_labels: int, train_cfg: Any) -> int:
    return train_cfg.prompt.num_virtual_tokens * config.hidden_size + _head(config, num_labels)


FORMULAS: dict[str, Callable[[Any, int, Any], int]] = {
    "adapter-houlsby": _houlsby,
    "adapter-pfeiffer": _pfeiffer,
    "prefix": _prefix,
    "prompt": _prompt,
}
