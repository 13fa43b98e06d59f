"""The built tiny bot: calibration, out-of-scope flags, retrieval, placeholders, escalation, grounding."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests._bot_data import INTENTS, OOS_TEXTS, intent_text, write_jsonl

from lmforge.apps.support import BOT_MANIFEST, REPLY_KEYS, Bot, Neighbours, evaluate_bot, overlap


@pytest.fixture(scope="module")
def bot(tiny_bot: Path) -> Bot:
    return Bot.load(tiny_bot)


def test_manifest_records_the_calibration(tiny_bot: Path) -> None:
    manifest = json.loads((tiny_bot / BOT_MANIFEST).read_text(encoding="utf-8"))
    oos = manifest["oos"]
    assert oos["method"] == "mahalanobis" and oos["requested"] == "mahalanobis"
    assert set(oos["methods"]) == {"max-prob", "energy", "mahalanobis", "knn"}  # knn: there is an OOS file
    for row in oos["methods"].values():
        assert row["val_in_scope_recall"] >= 0.95
    assert oos["threshold"] == oos["methods"]["mahalanobis"]["threshold"]
    assert manifest["labels"] == sorted(INTENTS) and manifest["faq"]["entries"] == 6
    assert (tiny_bot / "oos.safetensors").is_file() and (tiny_bot / "faq" / "faq_embeddings.safetensors").is_file()


def test_knn_flags_questions_like_the_out_of_scope_examples(tiny_bot: Path) -> None:
    bot = Bot.load(tiny_bot, method="knn")
    assert bot.method == "knn" and bot.threshold == bot.manifest["oos"]["methods"]["knn"]["threshold"]
    assert isinstance(bot.detector, Neighbours) and bot.detector.k == 2  # the spec's bot.oos.knn_k, saved and loaded
    rng = random.Random(7)  # the calibration's out-of-scope examples reworded, and in-scope texts it never saw
    reworded = [f"please {t} now" for t in OOS_TEXTS[:6]]
    held_out = [intent_text(rng, intent) for intent in INTENTS for _ in range(10)]
    replies = bot.ask(reworded + held_out)
    assert [r["out_of_scope"] for r in replies[:6]] == [True] * 6
    assert np.mean([not r["out_of_scope"] for r in replies[6:]]) >= 0.9


def test_threshold_keeps_the_target_in_scope_recall_on_a_held_out_split(bot: Bot) -> None:
    rng = random.Random(123)  # texts the build never saw
    held_out = [intent_text(rng, intent) for intent in INTENTS for _ in range(25)]
    turns = bot.turns(held_out)
    kept = np.mean([not t.out_of_scope for t in turns])
    assert kept >= 0.9  # target 0.95 on validation; 100 held-out texts


def test_a_planted_out_of_scope_set_is_flagged(bot: Bot) -> None:
    replies = bot.ask(OOS_TEXTS[6:])  # the six the calibration did not see
    assert [r["out_of_scope"] for r in replies] == [True] * 6
    for reply in replies:
        assert tuple(reply) == REPLY_KEYS
        assert reply["intent"] is None and reply["answer"] is None and reply["sources"] == []
        assert reply["reason"] == "out_of_scope" and reply["escalate"] is False


def test_retrieval_finds_the_planted_entry_with_its_placeholder_filled(bot: Bot) -> None:
    parcel, password = bot.ask(["track my parcel delivery please", "reset my password login please"])
    assert (parcel["intent"], parcel["out_of_scope"], parcel["reason"]) == ("delivery", False, "answered")
    assert parcel["answer"] == "Track your parcel on the delivery page."
    assert parcel["sources"][0]["question"] == "track my parcel delivery please"
    assert password["answer"] == "Use the reset link on the login page of shop.example."
    # the entry whose slot has no value ({{Account Id}}) is never sent, not even as a source
    assert all("{{" not in s["answer"] and "{{" not in s["question"] for s in password["sources"])
    assert len(password["sources"]) == 1
    assert isinstance(parcel["confidence"], float) and 0.25 < parcel["confidence"] <= 1.0


def test_an_unfilled_placeholder_escalates(tiny_bot: Path) -> None:
    bot = Bot.load(tiny_bot)
    bot.cfg["placeholders"] = {}  # the refund answer's {{Website}} now has no value
    (reply,) = bot.ask(["refund my money back please"])
    assert reply["intent"] == "refund"
    assert (reply["answer"], reply["escalate"], reply["reason"], reply["sources"]) == (
        None, True, "unfilled_placeholder", [])


def test_escalation_intent_and_after_n_failures_in_one_session(bot: Bot) -> None:
    bot.reset()
    (human,) = bot.ask(["talk to a human agent"])
    assert (human["intent"], human["escalate"], human["reason"]) == ("human", True, "escalate_intent")
    texts = [OOS_TEXTS[6], OOS_TEXTS[7], "track my parcel delivery please", OOS_TEXTS[8], OOS_TEXTS[9], OOS_TEXTS[10]]
    sessions = ["a", "b", "a", "a", "a", "b"]
    replies = bot.ask(texts, sessions)
    # a: fail, success (resets), fail, fail -> escalates at its second consecutive failure
    # b: fail, ..., fail -> escalates at its second (the turns of a do not count for b)
    assert [r["escalate"] for r in replies] == [False, False, False, False, True, True]
    assert [r["reason"] for r in replies][4:] == ["repeated_failures", "repeated_failures"]
    (fresh,) = bot.ask([OOS_TEXTS[11]], ["a"])  # the counter restarts after an escalation
    assert fresh["escalate"] is False
    (alone,) = bot.ask([OOS_TEXTS[11]])  # no session: never counted
    assert alone["escalate"] is False


def test_the_grounding_check_replaces_an_unfounded_rewrite(tiny_bot: Path, tmp_path: Path) -> None:
    from tests._gen_runs import build_peaky_lm, full_run

    gen = full_run(tmp_path / "gen", build_peaky_lm(tmp_path / "lm"))
    bot = Bot.load(tiny_bot)
    from lmforge.predict import load_generator

    bot.generator = load_generator(gen)
    bot.cfg["generator"].update(run=str(gen), max_new_tokens=8, min_overlap=1.0)
    (turn,) = bot.turns(["track my parcel delivery please"])
    assert turn.rewrite is not None and turn.rewrite != turn.retrieved
    assert overlap(turn.rewrite, [s["answer"] for s in turn.sources] + [s["question"] for s in turn.sources]) < 1.0
    assert (turn.answer, turn.reason) == ("Track your parcel on the delivery page.", "not_grounded")


def test_eval_writes_the_metrics_and_the_report(tiny_bot: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bot"
    shutil.copytree(tiny_bot, folder)
    rng = random.Random(7)
    rows = [{"text": intent_text(rng, i), "intent": i} for i in ("refund", "delivery", "password") for _ in range(5)]
    rows += [{"text": t, "intent": "oos"} for t in OOS_TEXTS[6:]]
    rows += [{"text": "track my parcel delivery please", "intent": "delivery", "answer": "Track your parcel on the delivery page."}]
    labeled = write_jsonl(tmp_path / "labeled.jsonl", rows)
    metrics = evaluate_bot(folder, labeled)
    assert (metrics["n"], metrics["n_in_scope"], metrics["n_oos"]) == (22, 16, 6)
    assert metrics["oos_recall"] == 1.0 and metrics["oos_auroc"] is not None and metrics["oos_auroc"] > 0.9
    assert 0.0 <= metrics["in_scope_accuracy"] <= 1.0 and metrics["n_faq"] == 16
    assert metrics["faq_mrr"] >= metrics["faq_hit_at_1"] > 0.5
    assert metrics["n_answer_refs"] == 16 and 0.0 <= metrics["answer_rouge_l"] <= 1.0
    assert metrics["reasons"]["out_of_scope"] == 6
    on_disk = json.loads((folder / "eval" / "bot_metrics.json").read_text(encoding="utf-8"))
    assert on_disk == metrics
    report = (folder / "eval" / "bot_report.html").read_text(encoding="utf-8")
    assert report.startswith("<!doctype html>") and "in_scope_accuracy" in report and "<script" not in report


def test_a_sentiment_run_that_says_angry_escalates(tiny_bot: Path) -> None:
    from lmforge.predict import load_predictor

    bot = Bot.load(tiny_bot)
    # A real classifier run stands in for a sentiment model: its "refund" label plays "negative".
    bot.sentiment = load_predictor(tiny_bot / "run")
    bot.cfg["sentiment"] = {"run": str(tiny_bot / "run"), "labels": ["refund"], "min_score": 0.5}
    angry, calm = bot.ask(["refund my money back please", "track my parcel delivery please"])
    assert (angry["escalate"], angry["reason"]) == (True, "negative_sentiment")
    assert angry["answer"] is not None  # the answer still goes with the hand-over
    assert (calm["escalate"], calm["reason"]) == (False, "answered")


def test_knn_with_a_single_out_of_scope_example_is_refused_before_training(tmp_path: Path) -> None:
    from lmforge.apps.support import check_bot_inputs
    from lmforge.config import spec_from_dict
    from lmforge.errors import ConfigError

    write_jsonl(tmp_path / "oos.jsonl", [{"text": OOS_TEXTS[0]}])
    spec = spec_from_dict({"bot": {"oos": {"path": str(tmp_path / "oos.jsonl"), "method": "knn"}}})
    with pytest.raises(ConfigError) as info:
        check_bot_inputs(spec)
    assert str(info.value) == (f"bot.oos.method knn needs at least two out-of-scope examples in bot.oos.path "
                               f"{tmp_path / 'oos.jsonl'}; it has 1. Add examples, or pick another method.")
