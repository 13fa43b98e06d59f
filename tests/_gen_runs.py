"""Tiny generative runs for the Generator and `lmforge predict` tests: the contract `lmforge train`
writes for `task: generate` (``model/lmforge_model.json`` + weights or a LoRA adapter + tokenizer),
built by hand on the tiny causal LM of ``tests/_tiny_lm.py``, with a manifest so a run verifies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lmforge.predict import base_model_digest
from lmforge.rundir import MODEL_META, RunDir
from tests._tiny_lm import CHAT_TEMPLATE, build_tiny_lm

SYSTEM = "you are a helpful bot"


def build_peaky_lm(folder: Path, *, seed: int = 0) -> Path:
    """The tiny LM with its weights scaled up 20x: random but decisive logits, so greedy answers
    differ from prompt to prompt, some end with ``<|im_end|>`` and some run to the limit."""
    import torch
    import transformers

    build_tiny_lm(folder, seed=seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.mul_(20.0)
    model.save_pretrained(folder)
    return folder


def _meta(base: Path, method: str, fmt: str, system: str | None) -> dict[str, object]:
    return {
        "kind": "causal-lm", "task": "generate", "method": method, "format": fmt, "base_model": str(base),
        "base_model_path": str(base), "base_model_sha256": base_model_digest(base), "max_length": 64,
        "system": system, "chat_template": CHAT_TEMPLATE,
    }


def full_run(root: Path, base: Path, *, system: str | None = SYSTEM) -> Path:
    """A run whose ``model/`` holds full weights (``format: transformers``)."""
    model_dir = RunDir(root).model_dir
    shutil.copytree(base, model_dir)
    (model_dir / MODEL_META).write_text(json.dumps(_meta(base, "full", "transformers", system)), encoding="utf-8")
    RunDir(root).update_manifest(train={"task": "generate"})
    return root


def lora_run(root: Path, base: Path, *, system: str | None = SYSTEM) -> Path:
    """A run whose ``model/`` holds a LoRA adapter of ``base`` with non-zero weights (so it changes answers)."""
    import peft
    import torch
    import transformers

    model_dir = RunDir(root).model_dir
    torch.manual_seed(1)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft.get_peft_model(model, config).save_pretrained(model_dir)
    transformers.AutoTokenizer.from_pretrained(base).save_pretrained(model_dir)
    (model_dir / MODEL_META).write_text(json.dumps(_meta(base, "lora", "peft-adapter", system)), encoding="utf-8")
    RunDir(root).update_manifest(train={"task": "generate"})
    return root
