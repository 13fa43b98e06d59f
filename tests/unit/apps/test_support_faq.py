"""FAQ retrieval (BM25, hybrid), placeholders and the grounding check, without a model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lmforge.apps.support import (
    BM25,
    FaqEntry,
    FaqIndex,
    fill_placeholders,
    grounded,
    overlap,
    rewrite_prompt,
)
from lmforge.errors import RunDirError

DOCS = ["reset my password", "track my parcel", "password password login"]


def test_bm25_matches_the_okapi_formula() -> None:
    bm25 = BM25().fit(DOCS)
    scores = bm25.scores("password")
    n, df, avgdl = 3, 2, (3 + 3 + 3) / 3
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))

    def one(tf: int, dl: int) -> float:
        return idf * tf * 2.5 / (tf + 1.5 * (1 - 0.75 + 0.75 * dl / avgdl))

    np.testing.assert_allclose(scores, [one(1, 3), 0.0, one(2, 3)], rtol=1e-6)
    assert bm25.scores("nothing here").tolist() == [0.0, 0.0, 0.0]
    again = BM25.from_json(bm25.to_json())
    np.testing.assert_array_equal(again.scores("password login"), bm25.scores("password login"))


def _index() -> FaqIndex:
    entries = [FaqEntry("reset my password", "Use the link.", "password"),
               FaqEntry("track my parcel", "See the delivery page.", "delivery"),
               FaqEntry("where is my refund", "Refunds take 5 days.", "refund")]
    emb = np.eye(3, dtype=np.float32)  # each entry its own direction
    return FaqIndex.build(entries, emb)


def test_hybrid_search_finds_the_planted_entry_and_respects_the_intent() -> None:
    index = _index()
    query = np.array([0.0, 1.0, 0.0], dtype=np.float32)  # the parcel entry's direction
    assert index.search(query, "parcel", 0.5, 1)[0][0] == 1
    # BM25 alone follows the words, embeddings alone the direction
    assert index.search(query, "refund", 0.0, 1)[0][0] == 2
    assert index.search(query, "refund", 1.0, 1)[0][0] == 1
    hybrid = index.scores(query, "parcel", 0.5)
    assert hybrid[1] == pytest.approx(0.5 * 1.0 + 0.5 * 1.0)  # cosine 1, BM25 at its max
    only = index.search(query, "parcel", 0.5, 3, intent="refund")
    assert [i for i, _ in only] == [2]
    assert len(index.search(query, "parcel", 0.5, 3, intent="unknown-intent")) == 3  # no entry of it: all


def test_index_round_trips_through_safetensors_and_json_only(tmp_path: Path) -> None:
    index = _index()
    index.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faq.json", "faq_bm25.json", "faq_embeddings.safetensors"]
    again = FaqIndex.load(tmp_path)
    assert again.entries == index.entries
    query = np.array([0.6, 0.8, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(again.scores(query, "my password", 0.3), index.scores(query, "my password", 0.3))
    (tmp_path / "faq.json").write_text("[{}]", encoding="utf-8")
    with pytest.raises(RunDirError, match="missing or damaged"):
        FaqIndex.load(tmp_path)


def test_placeholders_are_filled_or_the_answer_is_withheld() -> None:
    assert fill_placeholders("Go to {{Website Name}} now", {"Website Name": "shop.example"}) == "Go to shop.example now"
    assert fill_placeholders("Call {{ Phone }} or {{Website}}", {"Phone": "123", "Website": "w"}) == "Call 123 or w"
    assert fill_placeholders("Order {{Order Number}} ships", {"Website": "w"}) is None
    assert fill_placeholders("no slots", {}) == "no slots"


def test_grounding_rejects_an_answer_with_no_overlap() -> None:
    sources = ["Refunds go back to your card within 5 days."]
    assert overlap("zebra violin opera", sources) == 0.0
    assert not grounded("zebra violin opera", sources, 0.5)
    assert overlap("refunds go back to your bank", sources) == pytest.approx(5 / 6)
    assert grounded("Refunds go back to your card.", sources, 0.5)
    assert not grounded("Refunds go back to {{Website}}", sources, 0.1)  # a slot is never sent
    prompt = rewrite_prompt("where is my money", [FaqEntry("q1", "raw {{x}}")], ["filled"])
    assert "FAQ 1 answer: filled" in prompt and "{{x}}" not in prompt and prompt.endswith("Customer: where is my money")
