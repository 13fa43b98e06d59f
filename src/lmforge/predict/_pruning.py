"""Structured pruning of BERT-style encoders: remove whole attention heads and FFN neurons.

Removing a head drops its rows from the query/key/value projections and its columns from
the attention output projection; removing an FFN neuron drops a row of the intermediate
projection and a column of the output projection. The result is a smaller dense model
(not a masked one), so it runs faster everywhere, ONNX included. BERT's attention reshapes
with ``-1`` heads, so layers may keep different numbers of heads.

The kept sizes are saved in ``pruning.json`` next to the safetensors; :func:`apply_pruning_shapes`
rebuilds the same shapes before the weights are loaded. The compress stage decides *what* to
prune; this module, beside the loader that must rebuild the shapes, owns *how*. torch is
imported when a function runs, so models, layers and tensors are typed ``Any`` here.
"""

from __future__ import annotations

from typing import Any

from lmforge._extras import require
from lmforge.errors import ConfigError

__all__ = [
    "PRUNABLE_TYPES",
    "apply_pruning_shapes",
    "check_prunable",
    "encoder_layers",
    "head_size",
    "prune_layer",
    "pruning_shapes",
]

PRUNABLE_TYPES = ("bert", "camembert", "electra", "roberta", "xlm-roberta")
"""Model types whose layers have BERT's layout (attention.self.query/key/value, attention.output.dense,
intermediate.dense, output.dense)."""


def check_prunable(model_type: str, what: str, variant: str) -> None:
    """Raise :class:`ConfigError` naming the supported types when ``model_type`` lacks BERT's layout.

    Args:
        model_type: The run's ``config.model_type``.
        what: What needs the layout, for the message (e.g. "Structured pruning").
        variant: The compressor to leave out with ``--only``.
    """
    if model_type not in PRUNABLE_TYPES:
        raise ConfigError(
            f"{what} supports model types {', '.join(PRUNABLE_TYPES)}; this run's model is "
            f"'{model_type}'. Leave out {variant} with --only."
        )


def encoder_layers(model: Any) -> list[Any]:
    """The transformer layers of a BERT-style classifier.

    Raises:
        ConfigError: the model does not have BERT's layer layout.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", "?")
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    ok = layers is not None and all(
        hasattr(layer, "attention") and hasattr(layer.attention, "self") and hasattr(layer, "intermediate")
        for layer in layers
    )
    if not ok or model_type not in PRUNABLE_TYPES:
        raise ConfigError(
            f"Structured pruning and distillation support model types {', '.join(PRUNABLE_TYPES)}; "
            f"this run's model is '{model_type}'. Leave out pruned/distilled with --only."
        )
    return list(layers or [])


def head_size(model: Any) -> int:
    """Width of one attention head: hidden size over the number of heads."""
    config = model.config
    return int(config.hidden_size // config.num_attention_heads)


def _keep_rows(linear: Any, index: Any) -> Any:
    torch = require("torch", extra="train", purpose="Structured pruning")
    new = torch.nn.Linear(linear.in_features, len(index), bias=linear.bias is not None,
                          dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        new.weight.copy_(linear.weight[index])
        if linear.bias is not None:
            new.bias.copy_(linear.bias[index])
    return new


def _keep_cols(linear: Any, index: Any) -> Any:
    torch = require("torch", extra="train", purpose="Structured pruning")
    new = torch.nn.Linear(len(index), linear.out_features, bias=linear.bias is not None,
                          dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        new.weight.copy_(linear.weight[:, index])
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    return new


def prune_layer(layer: Any, heads: list[int], neurons: list[int], size: int) -> None:
    """Keep only ``heads`` (head indices) and ``neurons`` (FFN indices) of one layer, in place."""
    torch = require("torch", extra="train", purpose="Structured pruning")
    attn = layer.attention.self
    rows = torch.cat([torch.arange(h * size, (h + 1) * size) for h in sorted(heads)])
    attn.query = _keep_rows(attn.query, rows)
    attn.key = _keep_rows(attn.key, rows)
    attn.value = _keep_rows(attn.value, rows)
    attn.num_attention_heads = len(heads)
    attn.all_head_size = len(heads) * size
    layer.attention.output.dense = _keep_cols(layer.attention.output.dense, rows)
    keep = torch.tensor(sorted(neurons), dtype=torch.long)
    layer.intermediate.dense = _keep_rows(layer.intermediate.dense, keep)
    layer.output.dense = _keep_cols(layer.output.dense, keep)


def pruning_shapes(model: Any) -> dict[str, Any]:
    """What ``pruning.json`` records: kept heads and FFN neurons per layer."""
    size = head_size(model)
    layers = encoder_layers(model)
    return {
        "head_size": size,
        "heads_per_layer": [int(layer.attention.self.query.out_features // size) for layer in layers],
        "neurons_per_layer": [int(layer.intermediate.dense.out_features) for layer in layers],
    }


def apply_pruning_shapes(model: Any, pruning: dict[str, Any]) -> None:
    """Shrink a freshly built model to the sizes in ``pruning.json`` (weights are loaded after)."""
    layers = encoder_layers(model)
    heads, neurons = pruning["heads_per_layer"], pruning["neurons_per_layer"]
    if len(heads) != len(layers) or len(neurons) != len(layers):
        raise ConfigError(
            f"pruning.json describes {len(heads)} layers but the model config has {len(layers)}; "
            "re-run `lmforge compress --only pruned`."
        )
    size = int(pruning["head_size"])
    for layer, h, n in zip(layers, heads, neurons, strict=True):
        prune_layer(layer, list(range(int(h))), list(range(int(n))), size)
