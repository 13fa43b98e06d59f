"""EDA augmentation and the built-in synonym table."""

from __future__ import annotations

import numpy as np

from lmforge.data import augment, eda
from lmforge.data._augment import synonyms

TEXTS = [
    "The flight was delayed and the staff were very rude to us",
    "Great service, thanks so much for the quick help!",
    "这本书的内容很好看",
    "ok",
]
LABELS = ["negative", "positive", "pos", "neutral"]


def test_synonym_table_is_substantial_and_symmetric():
    table = synonyms()
    assert len(table) >= 300
    for word in ("good", "bad", "delayed", "rude", "refund", "help", "thanks"):
        assert word in table, word
    assert "great" in table["good"] and "good" in table["great"]
    assert all(word not in others for word, others in table.items())


def test_augment_is_deterministic_and_seeded():
    a = augment(TEXTS, LABELS, copies=2, alpha=0.2, seed=1)
    assert a == augment(TEXTS, LABELS, copies=2, alpha=0.2, seed=1)
    assert a != augment(TEXTS, LABELS, copies=2, alpha=0.2, seed=2)


def test_augment_keeps_labels_and_changes_texts():
    texts, labels = augment(TEXTS, LABELS, copies=3, alpha=0.2, seed=0)
    assert len(texts) == len(labels) > len(TEXTS)
    originals = dict(zip(TEXTS, LABELS, strict=True))
    assert not set(texts) & set(originals)  # every variant differs from its source
    assert set(labels) <= set(LABELS)


def test_eda_word_operations_touch_few_words():
    rng = np.random.default_rng(0)
    source = TEXTS[0].split()
    for _ in range(20):
        words = eda(TEXTS[0], alpha=0.1, rng=rng).split()
        assert abs(len(words) - len(source)) <= 2
        assert len(set(words) ^ set(source)) <= 6


def test_chinese_is_augmented_per_character_by_swap_or_delete():
    rng = np.random.default_rng(0)
    source = TEXTS[2]
    for _ in range(20):
        variant = eda(source, alpha=0.2, rng=rng)
        assert variant != source
        assert " " not in variant
        assert set(variant) <= set(source)  # no new characters: only swaps and deletions


def test_mentions_and_links_are_not_replaced_or_deleted():
    rng = np.random.default_rng(0)
    text = "@united my bag is lost again http://t.co/x #fail"
    for _ in range(30):
        variant = eda(text, alpha=0.5, rng=rng)
        for token in ("@united", "http://t.co/x", "#fail"):
            assert token in variant


def test_synonym_keeps_capitalization_and_punctuation():
    rng = np.random.default_rng(0)
    seen = {eda("Terrible!", alpha=0.5, rng=rng) for _ in range(30)}
    replaced = {v for v in seen if " " not in v and v != "Terrible!"}
    assert replaced  # one-word text: only synonym replacement can change it
    assert all(v[0].isupper() and v.endswith("!") for v in replaced)


def test_cjk_units_keep_latin_words_and_numbers_whole():
    from lmforge.data._augment import _CJK_UNIT, _mostly_cjk

    source = "这款iPhone很好用，推荐 New York 买 128G"
    assert _CJK_UNIT.findall(source) == ["这", "款", "iPhone", "很", "好", "用", "，", "推", "荐", " New", " York",
                                         " 买", " 128G"]
    assert _mostly_cjk(source) and not _mostly_cjk("I love 北京 a lot")
    rng = np.random.default_rng(3)
    for _ in range(20):
        variant = eda(source, alpha=0.2, rng=rng)
        assert variant != source
        # Every Latin word or number is still whole: swaps and deletions move units, never letters.
        words = [w for w in __import__("re").findall(r"[A-Za-z0-9]+", variant)]
        assert set(words) <= {"iPhone", "New", "York", "128G"}, variant
