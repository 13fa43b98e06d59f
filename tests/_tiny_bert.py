"""A tiny BERT built in the test: one layer, random weights, an English WordPiece vocabulary.

Its vocabulary knows a few English words and two Chinese characters (的, 好), so Chinese text
is mostly ``[UNK]`` to it, like the packaged minilm-l6's uncased English vocabulary: the
readability check and vocabulary extension tests train it through the real train stage in
about a second.
"""

from __future__ import annotations

import json
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "food", "good", "bad", "very", "service", "is", "not", "的", "好", "，", "。", "!"]

ZH_POS = ["这家餐厅的菜很好吃", "服务很好，推荐", "质量很好，很满意", "味道不错，还会再来", "物流很快，包装完整",
          "老板很热情，菜也香", "性价比高，值得买", "环境干净，服务周到"]
ZH_NEG = ["菜太咸了，很难吃", "服务差，等了很久", "质量太差，退货了", "味道一般，不会再来", "物流太慢，包装破了",
          "老板态度恶劣", "价格贵，不值", "环境很脏，很吵"]


def build_tiny_bert(folder: str | Path, *, seed: int = 0) -> Path:
    """Write a random-weight ``BertModel`` (safetensors) and its WordPiece tokenizer to ``folder``."""
    import torch
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {token: i for i, token in enumerate([*SPECIALS, *WORDS])}
    tokenizer = transformers.BertTokenizerFast(vocab=vocab, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=len(SPECIALS) + len(WORDS), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=64,
    )
    transformers.BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def write_zh_prepared(root: Path, copies: int = 3) -> Path:
    """A prepared run folder (``data/``) with the hand-written Chinese two-class task."""
    data = root / "data"
    data.mkdir(parents=True)
    rows = [{"text": t, "label": "pos"} for t in ZH_POS] + [{"text": t, "label": "neg"} for t in ZH_NEG]
    for split, part in (("train", rows * copies), ("val", rows[::2]), ("test", rows[1::2])):
        (data / f"{split}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8"
        )
    (data / "labels.json").write_text(json.dumps({"labels": ["neg", "pos"]}), encoding="utf-8")
    return root


EN_POS = ["the food is good", "very good service", "the service is very good", "good food !", "the food is very good"]
EN_NEG = ["the food is bad", "very bad service", "the service is not good", "bad food !", "the food is not very good"]


def write_en_prepared(root: Path, copies: int = 3) -> Path:
    """A prepared run folder (``data/``) of a two-class task in the tiny BERT's own words (no ``[UNK]``)."""
    data = root / "data"
    data.mkdir(parents=True)
    rows = [{"text": t, "label": "pos"} for t in EN_POS] + [{"text": t, "label": "neg"} for t in EN_NEG]
    for split, part in (("train", rows * copies), ("val", rows[::2]), ("test", rows[1::2] + rows[::3])):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    (data / "labels.json").write_text(json.dumps({"labels": ["neg", "pos"]}), encoding="utf-8")
    return root
