"""``prefix`` (P-tuning v2) and ``prompt`` (soft prompt): virtual tokens, written in lmforge.

peft 0.21's prefix tuning runs on a transformers 5 BERT classifier, but its ONNX export does
not: the traced graph bakes in the batch size of the tracing inputs (measured here: logits off
by 1.6e-3 at another batch size and length), and issue 14 reports it failing with gradient
checkpointing. lmforge's own (``lmforge.predict``'s ``_modules.py``) gives each
self-attention P key/value vectors (no reparameterization MLP: P-tuning v2 found it helps only
some tasks), and the soft prompt P embeddings before the text's, both traced with dynamic batch
and length. The base model is frozen; the virtual tokens and the classifier head train.

Virtual tokens count against ``model.max_length`` (``_module_methods.virtual_token_problem``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmforge.train._methods import register_method
from lmforge.train._module_methods import ModulesMethod

if TYPE_CHECKING:
    from lmforge.config import TrainConfig

__all__ = ["PrefixTuning", "PromptTuning"]


@register_method("prefix")
class PrefixTuning(ModulesMethod):
    """``train.prefix.num_virtual_tokens`` trainable keys and values in every self-attention layer."""

    name = "prefix"

    def layout(self, cfg: TrainConfig) -> dict[str, Any]:
        return {"kind": "prefix", "num_virtual_tokens": cfg.prefix.num_virtual_tokens}


@register_method("prompt")
class PromptTuning(ModulesMethod):
    """``train.prompt.num_virtual_tokens`` trainable input embeddings before the text."""

    name = "prompt"

    def layout(self, cfg: TrainConfig) -> dict[str, Any]:
        return {"kind": "prompt", "num_virtual_tokens": cfg.prompt.num_virtual_tokens}
