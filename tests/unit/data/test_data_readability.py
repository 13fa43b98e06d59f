"""The readability check: unknown-token share, truncation share and script, on a hand-made mixed set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests._tiny_bert import ZH_NEG, ZH_POS, build_tiny_bert

from lmforge.config import spec_from_dict
from lmforge.data import (
    check_or_raise,
    readability,
    readability_decision,
    script_shares,
    unknown_characters,
)
from lmforge.errors import DataError

MIXED = ["the food is good", "这家餐厅的菜很好", "very bad 服务"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="module")
def tokenizer(tiny: Path):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(tiny)


def test_numbers_on_a_mixed_english_chinese_set(tokenizer) -> None:
    # Tokens: 4 + 8 + 4 = 16; unknown: 6 of the 8 Chinese characters (的 and 好 are known) + 服 务 = 8.
    stats = readability(tokenizer, MIXED, max_length=8)
    assert stats["tokens"] == 16
    assert stats["unknown_tokens"] == 8
    assert stats["unknown_rate"] == 0.5
    # With [CLS] and [SEP] the second text is 10 tokens, over max_length 8; the others are 6.
    assert (stats["truncated"], stats["texts"], stats["truncated_share"]) == (1, 3, 0.333333)
    assert stats["unknown_token"] == "[UNK]"
    # Letters: 13 + 7 Latin, 8 + 2 Han.
    assert stats["shares"] == {"Latin": 0.6667, "Han": 0.3333}
    assert (stats["script"], stats["han_share"]) == ("Latin", 0.3333)


def test_script_shares_ignore_digits_punctuation_and_emoji() -> None:
    assert script_shares(["好的，123！😀 ok"]) == {"script": "Han", "han_share": 0.5,
                                                  "shares": {"Han": 0.5, "Latin": 0.5}}
    assert script_shares(["123 !!"]) == {"script": "unknown", "han_share": 0.0, "shares": {}}


def test_unknown_characters_most_frequent_first_seen_twice(tokenizer) -> None:
    texts = ["菜菜菜服", "服务", "务", "吃"]
    # 菜 x3, then 务 (U+52A1) and 服 (U+670D) x2 each, by code point; 吃 was seen once: left out.
    assert unknown_characters(tokenizer, texts, limit=10) == ["菜", "务", "服"]
    assert unknown_characters(tokenizer, texts, limit=1) == ["菜"]
    assert unknown_characters(tokenizer, ["的的的 good good"], limit=10) == []  # all known
    # 'g' alone is unknown to the tiny vocabulary, but it is inside the known word "good": adding
    # it would split "good"; "ggg" stays unknown instead.
    assert unknown_characters(tokenizer, ["ggg good", "ggg 菜菜"], limit=10) == ["菜"]


def _spec(**model: object) -> object:
    return spec_from_dict({"data": {"path": "x.csv"}, "model": {"name": "minilm-l6", **model}})


def test_decisions_around_the_thresholds() -> None:
    low, mid, high = {"unknown_rate": 0.01}, {"unknown_rate": 0.2}, {"unknown_rate": 0.64}
    assert [readability_decision(s, _spec()) for s in (low, mid, high)] == ["ok", "warn", "extend"]
    assert [readability_decision(s, _spec(extend_vocab=False)) for s in (low, mid, high)] == ["ok", "warn", "stop"]
    assert [readability_decision(s, _spec(extend_vocab=True)) for s in (low, mid, high)] == ["extend"] * 3


def test_stop_says_what_and_how_to_fix(tokenizer) -> None:
    stats = readability(tokenizer, ["这家餐厅的菜很好吃"], max_length=32)  # 7 of 9 unknown
    with pytest.raises(DataError) as err:
        check_or_raise(stats, _spec(extend_vocab=False))
    assert str(err.value) == (
        "minilm-l6 cannot read 78% of the tokens of this data (script: Han); use a model whose vocabulary "
        "covers it, or set model.extend_vocab: true (or data.max_unknown_rate_stop: 1.0 to train on it anyway)."
    )
    override = spec_from_dict({"data": {"path": "x.csv", "max_unknown_rate_stop": 1.0},
                               "model": {"extend_vocab": False}})
    assert check_or_raise(stats, override) == "warn"


def _prepare(tmp_path: Path, tiny: Path, *sets: str) -> subprocess.CompletedProcess[str]:
    csv = tmp_path / "zh.csv"
    rows = [(t, "pos") for t in ZH_POS] + [(t, "neg") for t in ZH_NEG]
    csv.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows * 3 if "，" not in t),
                   encoding="utf-8")
    env = {**os.environ, "LMFORGE_AUTO_SIGN": "0"}
    args = ["--set", f"data.path={csv}", "--set", f"model.name={tiny}", "--set", "data.dedupe=false",
            "--set", "data.min_per_class=2"]
    for item in sets:
        args += ["--set", item]
    return subprocess.run([sys.executable, "-m", "lmforge.cli", "prepare", "--out", str(tmp_path / "run"), *args],
                          capture_output=True, text=True, env=env, check=False)


def test_prepare_exits_2_above_the_stop_threshold_and_the_override_passes(tmp_path: Path, tiny: Path) -> None:
    stopped = _prepare(tmp_path, tiny, "model.extend_vocab=false")
    assert stopped.returncode == 2, stopped.stderr
    lines = [line for line in stopped.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"error: {tiny} cannot read ") and "(script: Han)" in lines[-1], lines
    assert "Traceback" not in stopped.stderr
    assert not (tmp_path / "run").exists()

    passed = _prepare(tmp_path, tiny, "model.extend_vocab=false", "data.max_unknown_rate_stop=1.0")
    assert passed.returncode == 0, passed.stderr
    report = json.loads((tmp_path / "run" / "data" / "data_report.json").read_text(encoding="utf-8"))
    readable = report["readability"]
    assert readable["decision"] == "warn" and readable["model"] == str(tiny)
    assert readable["unknown_rate"] > 0.3 and readable["script"] == "Han"
    assert report["language"]["script"] == "Han" and report["language"]["han_share"] == 1.0
    assert any("maps" in w and "model.extend_vocab: true" in w for w in report["warnings"])
