"""The tiny bot's data: a 1-layer BERT of its own vocabulary, four intents, an FAQ, out-of-scope texts.

The intents' words are the whole vocabulary, so an out-of-scope question (words the tokenizer
has never seen, read as [UNK]) lands far from every intent's embeddings: the planted
out-of-scope set is separable, as a real one is for a real encoder.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
INTENTS = {
    "refund": ["refund", "money", "back", "return", "charge"],
    "delivery": ["delivery", "parcel", "shipping", "arrive", "track"],
    "password": ["password", "login", "reset", "account", "locked"],
    "human": ["human", "agent", "person", "talk", "operator"],
}
FILLER = ["i", "want", "my", "the", "please", "where", "is", "how", "to", "a", "can", "you"]
OOS_TEXTS = ["zebra quantum violin", "purple elephant sings opera", "volcano recipe lasagna",
             "jupiter moons orbit", "knitting sweater wool", "guitar chords melody", "chess opening gambit",
             "tulip garden spring", "saxophone jazz club", "penguin glacier ice", "marathon sneakers sweat",
             "origami crane paper"]
FAQ = [  # questions worded like the training texts (three intent words, two fillers)
    {"question": "refund my money back please", "answer": "Refunds go back to your card within 5 days on {{Website}}.",
     "intent": "refund"},
    {"question": "track my parcel delivery please", "answer": "Track your parcel on the delivery page.",
     "intent": "delivery"},
    {"question": "can you arrive shipping", "answer": "Shipping takes three days.", "intent": "delivery"},
    {"question": "reset my password login please", "answer": "Use the reset link on the login page of {{Website}}.",
     "intent": "password"},
    {"question": "reset locked account {{Account Id}}", "answer": "Account {{Account Id}} is reset.",
     "intent": "password"},
    {"question": "talk to a human agent", "answer": "An agent will take over shortly.", "intent": "human"},
]


def intent_text(rng: random.Random, intent: str) -> str:
    words = rng.sample(INTENTS[intent], 3) + rng.sample(FILLER, 2)
    rng.shuffle(words)
    return " ".join(words)


def build_vocab_bert(folder: Path) -> Path:
    import torch
    import transformers

    folder.mkdir(parents=True)
    words = sorted({w for ws in INTENTS.values() for w in ws} | set(FILLER) | {"do", "get", "for", "of", "on"})
    tokenizer = transformers.BertTokenizerFast(vocab={t: i for i, t in enumerate([*SPECIALS, *words])},
                                               do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(SPECIALS) + len(words), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def bot_spec(root: Path, **bot: object) -> dict:
    """A spec dict for the tiny bot in ``root`` (which holds model/, intents.jsonl, faq.jsonl, oos.jsonl)."""
    section = {"faq": {"path": str(root / "faq.jsonl")}, "oos": {"path": str(root / "oos.jsonl"),
               "method": "mahalanobis", "knn_k": 2}, "placeholders": {"Website": "shop.example"},
               "escalate": {"intents": ["human"], "after_failures": 2, "min_confidence": 0.0}}
    section.update(bot)
    return {"name": "tiny-bot", "data": {"path": str(root / "intents.jsonl"), "dedupe": False, "val_fraction": 0.25,
                                         "test_fraction": 0.15, "seed": 0},
            "model": {"name": str(root / "model"), "max_length": 16},
            "train": {"max_steps": 60, "batch_size": 16, "learning_rate": 1e-2, "scheduler": "constant", "dropout": 0.0, "warmup_ratio": 0.0, "track": [],
                      "early_stopping_patience": None, "eval_steps": 60, "freeze_embeddings": False,
                      "precision": "fp32", "threads": 1},
            "bot": section}


