"""The text model's inputs: history texts, training pairs and history windows (no model needed)."""

from __future__ import annotations

import numpy as np

from lmforge.apps.recommend import TextTower, history_text, training_pairs
from lmforge.config import spec_from_dict

TEXTS = ["a", "b", "", "d", "e"]  # item 2 has no text


def test_history_text_is_the_last_items_most_recent_first_skipping_empty() -> None:
    assert history_text(TEXTS, [0, 1, 2, 3], 3) == "d | b"  # last three: 1, 2 (no text), 3
    assert history_text(TEXTS, [], 3) == ""


def test_training_pairs_predict_each_next_item_with_text_from_its_history() -> None:
    histories = [np.array([0, 1, 2, 3]), np.array([4])]
    queries, docs, keys = training_pairs(TEXTS, histories, 2, 100, np.random.default_rng(0))
    # user 0: 1 from [0]; 2 has no text; 3 from [1, 2] (2 empty); user 1 has no second item
    assert list(zip(queries, docs, keys, strict=True)) == [("a", "b", "1"), ("b", "d", "3")]
    sampled = training_pairs(TEXTS, histories, 2, 1, np.random.default_rng(0))
    assert len(sampled[0]) == 1 and sampled[0][0] in ("a", "b")


class _OneHot:
    """Embeds a text containing 'a' as (1, 0), anything else as (0, 1); records what it was asked."""

    dim = 2

    def __init__(self) -> None:
        self.asked: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.asked += texts
        return np.array([[1.0, 0.0] if "a" in t else [0.0, 1.0] for t in texts], dtype=np.float32)


def test_a_user_vector_averages_consecutive_history_windows() -> None:
    spec = spec_from_dict({"recommend": {"text": {"history_items": 2, "history_windows": 3}}})
    tower = TextTower(spec, ["a", "b", "c", "d", "e"], model_dir=None)  # type: ignore[arg-type]
    tower.embedder_ = _OneHot()  # type: ignore[assignment]
    tower.item_embeddings_ = np.zeros((5, 2), dtype=np.float32)
    vectors = tower.user_vectors([np.array([0, 1, 2, 3, 4]), np.array([], dtype=np.int64), np.array([1])])
    assert tower.embedder_.asked == ["e | d", "c | b", "a", "b"]
    np.testing.assert_allclose(vectors, [[1 / np.sqrt(5), 2 / np.sqrt(5)], [0.0, 0.0], [0.0, 1.0]], rtol=1e-6)
