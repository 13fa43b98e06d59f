"""`lmforge bot build | ask | eval` through the CLI: the output contract and every bad input (exit 2, one line)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from tests._bot_data import OOS_TEXTS, bot_spec, write_jsonl

from lmforge.apps.support import REPLY_KEYS
from lmforge.cli.__main__ import main


def _spec(tmp_path: Path, inputs: Path, **bot: object) -> str:
    path = tmp_path / "bot.yaml"
    path.write_text(yaml.safe_dump(bot_spec(inputs, **bot)), encoding="utf-8")
    return str(path)


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_faq_without_question_and_answer_columns(tmp_path: Path, bot_inputs: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    faq = write_jsonl(tmp_path / "faq.jsonl", [{"instruction": "q", "response": "a", "intent": "refund"}])
    spec = _spec(tmp_path, bot_inputs, faq={"path": str(faq)})
    assert main(["bot", "build", spec, "--out", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "no 'question' and no 'answer' column" in line and "found: instruction, response, intent" in line
    assert not (tmp_path / "out" / "run").exists()  # refused before training


def test_oos_file_without_the_text_column(tmp_path: Path, bot_inputs: Path, capsys: pytest.CaptureFixture) -> None:
    oos = write_jsonl(tmp_path / "oos.jsonl", [{"question": t} for t in OOS_TEXTS])
    spec = _spec(tmp_path, bot_inputs, oos={"path": str(oos)})
    assert main(["bot", "build", spec, "--out", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "bot.oos.path" in line and "no 'text' column" in line and "found: question" in line


def test_generator_run_that_is_not_generative(tmp_path: Path, bot_inputs: Path, tiny_bot: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    spec = _spec(tmp_path, bot_inputs, generator={"run": str(tiny_bot / "run")})
    assert main(["bot", "build", spec, "--out", str(tmp_path / "out")]) == 2
    assert "is not a generative run" in _one_error_line(capsys)


def test_placeholder_map_that_is_not_a_mapping(tmp_path: Path, bot_inputs: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    spec = _spec(tmp_path, bot_inputs, placeholders=["Website", "shop.example"])
    assert main(["bot", "build", spec, "--out", str(tmp_path / "out")]) == 2
    assert "bot.placeholders must be a mapping" in _one_error_line(capsys)


def test_ask_text_prints_exactly_the_contract(tiny_bot: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["bot", "ask", str(tiny_bot), "--text", "track my parcel delivery please"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert tuple(reply) == REPLY_KEYS
    assert reply["intent"] == "delivery" and reply["answer"] == "Track your parcel on the delivery page."


def test_ask_file_keeps_sessions_and_order(tiny_bot: Path, tmp_path: Path) -> None:
    turns = write_jsonl(tmp_path / "in.jsonl", [
        {"text": OOS_TEXTS[6], "session_id": "s1"}, {"text": "track my parcel delivery please", "session_id": "s2"},
        {"text": OOS_TEXTS[7], "session_id": "s1"}, {"text": "refund my money back please"}])
    out = tmp_path / "out.jsonl"
    assert main(["bot", "ask", str(tiny_bot), "--input", str(turns), "--output", str(out)]) == 0
    replies = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in replies] == [OOS_TEXTS[6], "track my parcel delivery please", OOS_TEXTS[7], "refund my money back please"]
    assert [r["escalate"] for r in replies] == [False, False, True, False]  # s1's second failure (after_failures 2)
    assert replies[2]["reason"] == "repeated_failures"
    assert all(tuple(r) == REPLY_KEYS for r in replies)


def test_ask_verifies_the_intent_run(tiny_bot: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert (tiny_bot / "run" / "signature.json").is_file()  # bot build signed it
    folder = tmp_path / "bot"
    shutil.copytree(tiny_bot, folder)
    (folder / "run" / "signature.json").unlink()
    assert main(["bot", "ask", str(folder), "--text", "hi"]) == 2
    assert "the run is unsigned" in capsys.readouterr().err  # guard's verification lists its problems
    assert main(["bot", "ask", str(tmp_path / "nowhere"), "--text", "hi"]) == 2
    assert "is not a bot directory" in _one_error_line(capsys)


def test_eval_cli_writes_metrics(tiny_bot: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "bot"
    shutil.copytree(tiny_bot, folder)
    labeled = write_jsonl(tmp_path / "l.jsonl", [{"text": "track my parcel delivery please", "intent": "delivery"},
                                                  {"text": OOS_TEXTS[8], "intent": "oos"}])
    assert main(["bot", "eval", str(folder), "--input", str(labeled)]) == 0
    metrics = json.loads((folder / "eval" / "bot_metrics.json").read_text(encoding="utf-8"))
    assert (metrics["in_scope_accuracy"], metrics["oos_recall"], metrics["oos_precision"]) == (1.0, 1.0, 1.0)
    assert "in-scope accuracy 1.0" in capsys.readouterr().out
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "track my parcel delivery please"}])
    assert main(["bot", "eval", str(folder), "--input", str(bad), "--allow-unsigned"]) == 2
    assert "no string field 'intent'" in _one_error_line(capsys)
