"""The watch: section: its keys, defaults, durations, and one clear error per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmforge.cli.__main__ import main
from lmforge.config import WatchConfig, parse_duration, spec_from_dict
from lmforge.errors import ConfigError


def test_the_contract_keys_and_their_defaults() -> None:
    watch = spec_from_dict({"watch": {"sentiment_run": "runs/sent", "topic_run": "runs/topic",
                                      "negative_label": "Bearish", "window": "7d", "detector": "cusum",
                                      "threshold": 4.5, "min_count": 5, "cooldown": "14d", "time_field": "Dates",
                                      "text_field": "News"}}).watch
    assert (watch.sentiment_run, watch.topic_run, watch.negative_label) == ("runs/sent", "runs/topic", "Bearish")
    assert (watch.window_s, watch.detector, watch.threshold, watch.min_count) == (7 * 86400, "cusum", 4.5, 5)
    assert (watch.cooldown_s, watch.time_field, watch.text_field) == (14 * 86400, "Dates", "News")
    default = spec_from_dict({}).watch
    assert (default.time_field, default.text_field, default.window, default.threshold) == ("time", "text", "1d", None)
    assert default.sentiment_run is None and default.topic_run is None and default.cooldown_s == 0.0


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("90s", 90), ("1h", 3600), ("1d", 86400),
                                               ("7d", 604800), ("2w", 1209600), ("1.5h", 5400), (" 15min ", 900)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_cooldown_in_windows_is_a_multiple_of_the_window() -> None:
    assert WatchConfig(window="1h", cooldown=3).cooldown_s == 3 * 3600


@pytest.mark.parametrize("bad", ["weekly", "7", "0d", "-1h", "1y", "7 days"])
def test_a_window_that_does_not_parse_is_one_clear_problem(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec_from_dict({"watch": {"window": bad}})
    assert info.value.problems == [
        f"watch.window must be a duration such as 30m, 1h, 1d or 7d (a positive number and a unit: s, m, h, d, w), "
        f"got {bad!r}."
    ]


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        spec_from_dict({"watch": {"min_count": 0, "cooldown": "soon", "max_bad_share": 1.5, "actions": ["page"]}})
    assert len(info.value.problems) == 4
    assert "watch.cooldown must be a duration" in info.value.problems[0]
    assert info.value.problems[1] == "watch.min_count must be at least 1, got 0."
    with pytest.raises(ConfigError, match="watch.webhook_url is not an http"):
        spec_from_dict({"watch": {"actions": ["webhook"]}})
    with pytest.raises(ConfigError, match=r"Unknown key 'watch.windw'\. Did you mean 'window'\?"):
        spec_from_dict({"watch": {"windw": "1d"}})


def test_the_cli_exits_2_with_one_line_for_a_bad_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "watch.yaml"
    spec.write_text(yaml.safe_dump({"watch": {"sentiment_run": str(tmp_path), "window": "fortnight"}}),
                    encoding="utf-8")
    stream = tmp_path / "s.jsonl"
    stream.write_text('{"time": "2024-01-01", "text": "x"}\n', encoding="utf-8")
    code = main(["watch", "replay", str(spec), "--input", str(stream), "--output", str(tmp_path / "a.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == ("error: watch.window must be a duration such as 30m, 1h, 1d or 7d (a positive number and a unit: "
                   "s, m, h, d, w), got 'fortnight'.\n")
    assert not (tmp_path / "a.jsonl").exists()
