"""A tiny recommender task built in the test: users who like one or two genres, items described
in a tiny BERT's own words, and a spec pointing at both.

Item ``i`` has genre ``GENRES[i % 6]`` and a second word; user ``u`` likes genres ``u % 6`` and
``(u + 1) % 6``, rates 6 + u % 5 of their items (in time order) 5, except every fourth one (2), so
``min_rating: 4`` drops a quarter of the rows and users have 5 to 8 positives.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import yaml

GENRES = ["action", "comedy", "drama", "horror", "romance", "space"]
EXTRA = ["robot", "music", "war", "school", "family"]
N_ITEMS = 36
N_USERS = 24


def build_tiny_encoder(folder: Path, *, seed: int = 0) -> Path:
    """A random 1-layer BERT (safetensors) with a WordPiece vocabulary of the task's words."""
    import torch
    import transformers

    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *GENRES, *EXTRA, "item", "|", ".", "no"]
    words += [str(i) for i in range(N_ITEMS)]
    tokenizer = transformers.BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=128)
    transformers.BertModel(config).save_pretrained(folder, safe_serialization=True)
    return folder


def item_genre(i: int) -> str:
    return GENRES[i % len(GENRES)]


def write_task(root: Path, *, no_text: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """``interactions.csv`` (user,movie,stars,ts) and ``items.csv`` (movie,title,genre) under ``root``.

    The items ``no_text`` are left out of ``items.csv``; ids are written with leading zeros
    (``u03``, ``m007``) so a test can see they come back verbatim.
    """
    root.mkdir(parents=True, exist_ok=True)
    inter = root / "interactions.csv"
    rows = []
    ts = 1000
    for u in range(N_USERS):
        liked = [i for i in range(N_ITEMS) if item_genre(i) in (GENRES[u % 6], GENRES[(u + 1) % 6])]
        for n, i in enumerate(liked[(u // 6) % 2 :][: 6 + u % 5]):
            ts += 1
            rows.append({"user": f"u{u:02d}", "movie": f"m{i:03d}", "stars": "2" if n % 4 == 3 else "5", "ts": str(ts)})
    rows.append(dict(rows[0]))  # a duplicate (user, item)
    with inter.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["user", "movie", "stars", "ts"])
        writer.writeheader()
        writer.writerows(rows)
    items = root / "items.csv"
    with items.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["movie", "title", "genre"])
        for i in range(N_ITEMS):
            if f"m{i:03d}" not in no_text:
                writer.writerow([f"m{i:03d}", f"item {i} {EXTRA[i % len(EXTRA)]}", item_genre(i)])
    return inter, items


def write_spec(root: Path, encoder: Path, **recommend: Any) -> Path:
    """A spec for the tiny task (a few contrastive steps); ``recommend`` keys override the section."""
    inter, items = root / "interactions.csv", root / "items.csv"
    section: dict[str, Any] = {
        "interactions": {"path": str(inter), "user_column": "user", "item_column": "movie",
                         "rating_column": "stars", "time_column": "ts"},
        "items": {"path": str(items), "id_column": "movie", "text_columns": ["genre", "title"]},
        "min_rating": 4, "seed": 7, "max_k": 20,
        "text": {"max_pairs": 64, "history_items": 3},
    }
    section.update(recommend)
    spec = {"name": "tiny-rec", "model": {"name": str(encoder), "max_length": 32},
            "train": {"batch_size": 16, "max_steps": 6, "learning_rate": 1e-3, "track": [], "threads": 1},
            "recommend": section}
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path
