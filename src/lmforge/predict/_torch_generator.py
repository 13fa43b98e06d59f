"""Load a causal LM folder as a :class:`~lmforge.predict._generate.TorchGenerator`.

Three kinds of folder, safetensors only (no pickle):

- a run's ``model/`` with ``format: transformers``: full fine-tuned weights, loaded directly;
- a run's ``model/`` with ``format: peft-adapter`` (LoRA, AdaLoRA, IA3): the base model (``base_model``, through the
  catalog) is checked against the digest recorded at training (``base_model_sha256``; the base
  lies outside the signed run), loaded, and the adapter merged in, so decoding pays nothing for
  the adapter;
- a plain ``save_pretrained`` folder without ``lmforge_model.json`` (a catalog model, any local
  causal LM): the base model as it is, the baseline an evaluation compares a fine-tune with;
- a compressed variant (``lmforge compress``): full weights kept in the ``dtype`` its
  ``lmforge_model.json`` names (``bfloat16``), or int8 weights (``quantization.method``
  ``torch-dynamic-int8``, :mod:`lmforge.predict._int8`).

A run's folder supplies the system prompt and the chat template training used
(``lmforge_model.json``); its tokenizer is the one saved beside the weights. Weights are
copied into memory of their own after loading (as for the classifier), so the files can be
re-checked against the run's verification and later writes cannot reach the running model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lmforge._extras import require
from lmforge.catalog import resolve_model
from lmforge.errors import RunDirError
from lmforge.guard import FileStamps, IntegrityError
from lmforge.predict._generate import TorchGenerator
from lmforge.predict._int8 import INT8_DYNAMIC, load_int8_causal_lm
from lmforge.predict._meta import read_generator_meta
from lmforge.predict._torch import _check_base, _own_memory, _quiet, merge_adapter
from lmforge.rundir import ADAPTER_CONFIG, MODEL_META, WEIGHTS, is_adapter_dir

__all__ = ["load"]


def _is_causal_lm_config(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(architectures, list) and any(str(a).endswith("ForCausalLM") for a in architectures)


def _from_pretrained(transformers: Any, torch: Any, folder: Path) -> Any:
    if not any(folder.glob("*.safetensors")):
        raise RunDirError(f"{folder} holds no safetensors weights ({WEIGHTS}); lmforge loads no other format.")
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)


def _merged_adapter(transformers: Any, torch: Any, folder: Path, meta: dict[str, Any]) -> Any:
    base = resolve_model(meta["base_model"])
    stamps = FileStamps(base)
    _check_base(base, meta, folder, stamps)
    model = _from_pretrained(transformers, torch, base)
    model = merge_adapter(model, folder)
    if changed := stamps.changed():
        raise IntegrityError(f"The base model {base} changed while it was loaded ({', '.join(changed)}); "
                             "nothing loaded from it is used. Load again.")
    return model


def load(folder: Path) -> TorchGenerator:
    """The generator of one folder: a run's causal-LM ``model/``, or a plain causal LM folder.

    Raises:
        RunDirError: the folder is no causal LM, its ``lmforge_model.json`` breaks the contract,
            or it holds no safetensors weights.
        IntegrityError: an adapter's base model changed since training.
    """
    torch = require("torch", extra="train", purpose="Generation")
    transformers = require("transformers", extra="train", purpose="Generation")
    _quiet(transformers)
    if (folder / MODEL_META).is_file():
        meta: dict[str, Any] | None = read_generator_meta(folder)
    elif _is_causal_lm_config(folder):
        meta = None
    else:
        raise RunDirError(f"{folder} is no causal LM: it has neither {MODEL_META} (a trained run's model) nor a "
                          "config.json naming a *ForCausalLM architecture.")
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    if meta is not None and meta.get("chat_template"):
        tokenizer.chat_template = meta["chat_template"]  # exactly the template training rendered with
    if meta is not None and (meta["format"] == "peft-adapter") != is_adapter_dir(folder):
        raise RunDirError(f"{folder / MODEL_META} says format {meta['format']!r}, but the folder "
                          f"{'holds' if is_adapter_dir(folder) else 'has no'} {ADAPTER_CONFIG}; re-run `lmforge train`.")
    quantization = (meta or {}).get("quantization") or {}
    if meta is not None and meta["format"] == "peft-adapter":
        model = _merged_adapter(transformers, torch, folder, meta)
    elif quantization:
        if quantization.get("method") != INT8_DYNAMIC or not isinstance(quantization.get("modules"), list):
            raise RunDirError(f"{folder / MODEL_META} names quantization {quantization.get('method')!r}; this "
                              f"version loads {INT8_DYNAMIC!r} with its list of modules. Re-run `lmforge compress`.")
        model = load_int8_causal_lm(folder, [str(m) for m in quantization["modules"]])
    else:
        model = _own_memory(_from_pretrained(transformers, torch, folder))
    dtype = torch.bfloat16 if (meta or {}).get("dtype") == "bfloat16" else torch.float32
    model = model.to(dtype).eval()
    if not quantization and torch.cuda.is_available() and os.environ.get("LMFORGE_PREDICT_DEVICE", "auto") != "cpu":
        model.to("cuda")
    context = getattr(model.config, "max_position_embeddings", None) or int((meta or {}).get("max_length", 2048))
    system = meta.get("system") if meta is not None else None
    return TorchGenerator(model, tokenizer, int(context), system=system)
