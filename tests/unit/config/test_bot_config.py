"""The spec's ``bot:`` section: defaults, every key, and one clear error per bad value (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmforge.cli.__main__ import main
from lmforge.config import spec_from_dict, spec_to_dict
from lmforge.errors import ConfigError


def test_defaults_and_every_key_round_trip() -> None:
    bot = spec_from_dict({}).bot
    assert (bot.oos.path, bot.oos.method, bot.oos.target_in_scope_recall, bot.oos.label) == (None, "auto", 0.95, "oos")
    assert (bot.faq.path, bot.generator.run, bot.sentiment.run, bot.placeholders) == (None, None, None, {})
    assert (bot.escalate.intents, bot.escalate.after_failures) == ([], 3)
    raw = {"bot": {"oos": {"path": "oos.csv", "method": "mahalanobis", "target_in_scope_recall": 0.9, "label": "none"},
                   "faq": {"path": "faq.csv", "question_column": "instruction", "answer_column": "response"},
                   "generator": {"run": "runs/gen"}, "placeholders": {"Website Name": "shop.example", "Days": 5},
                   "escalate": {"intents": ["contact_human_agent"], "after_failures": 2},
                   "sentiment": {"run": "runs/sentiment", "labels": ["negative"]}}}
    spec = spec_from_dict(raw)
    assert spec.bot.placeholders == {"Website Name": "shop.example", "Days": "5"}  # numbers become text
    assert spec_from_dict(spec_to_dict(spec)) == spec
    assert spec.bot.escalate.intents == ["contact_human_agent"] and spec.bot.sentiment.run == "runs/sentiment"


@pytest.mark.parametrize(("bot", "message"), [
    ({"placeholders": ["Website Name", "shop.example"]}, "bot.placeholders must be a mapping"),
    ({"placeholders": "shop.example"}, "bot.placeholders must be a mapping"),
    ({"placeholders": {"Website": ["a", "b"]}}, "bot.placeholders must map slot names to text"),
    ({"oos": {"method": "maxprob"}}, "Did you mean 'max-prob'"),
    ({"oos": {"target_in_scope_recall": 1.2}}, "bot.oos.target_in_scope_recall must be in [0.5, 1]"),
    ({"oos": {"knn_k": 0}}, "bot.oos.knn_k must be at least 1, got 0."),
    ({"oos": {"method": "knn"}}, "bot.oos.method knn compares questions with out-of-scope examples: set bot.oos.path"),
    ({"faq": {"top_k": 0}}, "bot.faq.top_k must be at least 1"),
    ({"faq": {"embedding_weight": 2}}, "bot.faq.embedding_weight must be in [0, 1]"),
    ({"escalate": {"after_failures": -1}}, "bot.escalate.after_failures must be >= 0"),
    ({"generator": {"min_overlap": 0}}, "bot.generator.min_overlap must be in (0, 1]"),
    ({"sentiment": {"labels": []}}, "bot.sentiment.labels must name at least one label"),
    ({"escalat": {}}, "Unknown key 'bot.escalat'. Did you mean 'escalate'?"),
])
def test_bad_values_are_refused_by_key(bot: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        spec_from_dict({"bot": bot})
    assert message in str(err.value)


def test_validate_exits_2_with_one_line_for_a_placeholder_list(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "bot.yaml"
    spec.write_text(yaml.safe_dump({"bot": {"placeholders": ["Website Name"]}}), encoding="utf-8")
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bot.placeholders must be a mapping" in err[0]
