"""Dequantize a packaged GGUF causal LM into a float32 safetensors ``save_pretrained`` folder.

transformers reads a GGUF file directly (``from_pretrained(folder, gguf_file=...)``), but that
dequantizes every tensor on each load (about 20 s for SmolLM2-135M on two cores against
about 0.5 s for safetensors) and the model it returns refuses ``save_pretrained`` ("quantized
with gguf and is not serializable"): its config still carries the GGUF ``quantization_config``.
So the conversion loads the GGUF once, builds a plain model of the same architecture from the
config without that entry, copies the dequantized weights in (``strict``: every key and shape
must match; tied embeddings stay tied, the output head is not saved twice) and saves it with
the tokenizer, whose chat template and end-of-sequence token come from the GGUF metadata.
The result is cached by :func:`lmforge.catalog._cache.converted`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.errors import LmforgeError

__all__ = ["convert_gguf"]

_DROP = ("quantization_config", "_name_or_path")
"""Config entries of the GGUF load that must not reach the saved folder."""


def _plain_config(config: Any) -> Any:
    """The config without its GGUF quantization entry (the saved model is plain float32)."""
    data = config.to_dict()
    for key in _DROP:
        data.pop(key, None)
    data["dtype"] = "float32"
    return type(config).from_dict(data)


def convert_gguf(folder: Path, sources: list[Path]) -> None:
    """Write the GGUF model ``sources[0]`` (and its tokenizer) to ``folder`` as float32 safetensors.

    Raises:
        MissingExtraError: ``gguf`` (the ``assets`` extra) or transformers is not installed.
        LmforgeError: the file is no GGUF causal LM transformers can read.
    """
    torch = require("torch", extra="train", purpose="Converting a GGUF model")
    transformers = require("transformers", extra="train", purpose="Converting a GGUF model")
    require("gguf", extra="assets", purpose="Converting a GGUF model")
    source = sources[0]
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    if not getattr(tokenizer, "chat_template", None):
        raise LmforgeError(f"{source} carries no chat template; it cannot serve as a chat model.")
    model = transformers.AutoModelForCausalLM.from_config(_plain_config(loaded.config), dtype=torch.float32)
    state = loaded.state_dict()
    model.load_state_dict(state, strict=True)
    if model.config.tie_word_embeddings:
        model.tie_weights()
    del loaded, state
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
