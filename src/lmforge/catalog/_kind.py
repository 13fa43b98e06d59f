"""What a model folder holds, read from its ``config.json``: an encoder or a causal LM.

The kind decides the task when a spec leaves ``task`` unset (an encoder classifies, a causal
LM generates) and catches a spec that points one task at the other kind of model before any
weights load. Only the JSON is read: no torch, no transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from lmforge.errors import ConfigError

__all__ = ["CAUSAL_MODEL_TYPES", "ModelKind", "model_kind"]

ModelKind = Literal["encoder", "causal-lm"]

# Decoder-only families by config ``model_type``, for configs that list no ``architectures``.
CAUSAL_MODEL_TYPES = frozenset({
    "bloom", "falcon", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_bigcode", "gpt_neo", "gpt_neox", "gptj",
    "llama", "mistral", "mixtral", "olmo", "olmo2", "opt", "phi", "phi3", "qwen2", "qwen2_moe", "qwen3",
    "qwen3_moe", "smollm3", "stablelm", "starcoder2",
})


def model_kind(path: str | Path) -> ModelKind:
    """``causal-lm`` when ``path/config.json`` names a ``*ForCausalLM`` / ``*LMHeadModel``
    architecture or a decoder-only ``model_type``; else ``encoder``.

    Raises:
        ConfigError: the folder has no readable ``config.json``.
    """
    config = Path(path) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read {config} ({exc}); model.name must point at a Hugging Face save_pretrained folder."
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{config} must hold a JSON object; the model folder is damaged.")
    architectures = data.get("architectures") or []
    if any(isinstance(a, str) and a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal-lm"
    if not architectures and data.get("model_type") in CAUSAL_MODEL_TYPES:
        return "causal-lm"
    return "encoder"
