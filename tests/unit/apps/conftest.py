"""A tiny bot built once per session (see ``tests/_bot_data.py``); copy it before writing into it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from tests._bot_data import FAQ, INTENTS, OOS_TEXTS, bot_spec, build_vocab_bert, intent_text, write_jsonl


@pytest.fixture(scope="session")
def bot_inputs(tmp_path_factory: pytest.TempPathFactory, _home: Path) -> Path:
    root = tmp_path_factory.mktemp("bot-inputs")
    build_vocab_bert(root / "model")
    rng = random.Random(0)
    rows = [{"text": intent_text(rng, i), "label": i} for i in INTENTS for _ in range(40)]
    write_jsonl(root / "intents.jsonl", rows)
    write_jsonl(root / "faq.jsonl", FAQ)
    write_jsonl(root / "oos.jsonl", [{"text": t} for t in OOS_TEXTS[:6]])
    return root


@pytest.fixture(scope="session")
def tiny_bot(bot_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bot directory built by `lmforge bot build` (so its run is signed with the session's key)."""
    import yaml

    from lmforge.cli.__main__ import main

    work = tmp_path_factory.mktemp("bot")
    spec = work / "bot.yaml"
    spec.write_text(yaml.safe_dump(bot_spec(bot_inputs)), encoding="utf-8")
    assert main(["bot", "build", str(spec), "--out", str(work / "bot"), "--no-progress"]) == 0
    return work / "bot"
