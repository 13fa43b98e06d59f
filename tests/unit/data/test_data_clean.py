"""Text normalization and row cleaning."""

from __future__ import annotations

import logging

import pytest

from lmforge.data import clean_text
from lmforge.data._clean import clean_rows
from lmforge.errors import DataError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("\uff28\uff45\uff4c\uff4c\uff4f \ufb01ne", "Hello fine"),  # NFKC: full-width, ligature
        ("caf\u0065\u0301", "caf\u00e9"),  # NFKC composes e + combining acute
        ("<p>Great <b>flight</b></p><br/>thanks", "Great flight thanks"),
        ("Tom &amp; Jerry &lt;3 &quot;x&quot;", 'Tom & Jerry <3 "x"'),
        ("I <3 it, a < b > c", "I <3 it, a < b > c"),  # not tags: left alone
        ("<!-- hidden --> shown", "shown"),
        ("bell\x07 null\x00 esc\x1b", "bell null esc"),
        ("line\nbreak\r\nand\ttab", "line break and tab"),
        ("zero\u200bwidth\ufeff soft\u00adhyphen", "zerowidth softhyphen"),
        ("  many    spaces\u00a0here  ", "many spaces here"),
        ("emoji \U0001f469\u200d\U0001f4bb kept", "emoji \U0001f469\u200d\U0001f4bb kept"),  # ZWJ kept
    ],
)
def test_clean_text(raw, expected):
    assert clean_text(raw) == expected


def test_clean_rows_drops_missing_labels_and_empty_texts():
    out = clean_rows(
        ["a", "b", "   ", "<br>", None, "c"], ["x", None, "y", "y", "y", "z"], max_chars=100, source="f.csv"
    )
    assert out.texts == ["a", "c"]
    assert out.labels == ["x", "z"]
    assert out.missing_label == 1
    assert out.empty_text == 3
    assert any("no label" in w for w in out.warnings)
    assert any("empty text" in w for w in out.warnings)


def test_all_labels_missing_is_an_error():
    with pytest.raises(DataError, match="data.label_column"):
        clean_rows(["a", "b"], [None, None], max_chars=100, source="f.csv")


def test_all_texts_empty_is_an_error():
    with pytest.raises(DataError, match="(?i)all texts are empty"):
        clean_rows(["", "  ", "<b></b>"], ["x", "y", "x"], max_chars=100, source="f.csv")


def test_truncation_counted_and_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="lmforge.data"):
        out = clean_rows(["x" * 50, "short"], ["a", "b"], max_chars=10, source="f.csv")
    assert out.texts == ["x" * 10, "short"]
    assert out.truncated == 1
    assert "data.max_chars=10" in caplog.text


def test_ten_megabyte_text_is_cut_to_what_cleaning_it_in_full_gives():
    # How fast this is (the fast path cleans only what can survive the cut): bench/text_speed.py.
    unit = "word <b>bold</b> &amp; more\n"
    out = clean_rows([unit * 400_000], ["a"], max_chars=10_000, source="f.csv")  # ~11 MB
    in_full = clean_rows([unit * 1_000], ["a"], max_chars=10**9, source="f.csv").texts[0]  # 17,000 chars, uncut
    assert in_full == " ".join(["word bold & more"] * 1_000)
    assert out.texts == [in_full[:10_000]]
    assert out.truncated == 1


def test_markup_heavy_long_text_still_cleaned_in_full():
    # Cleaning shrinks this 20x; the result must not be cut short by the fast path.
    text = ("<span class='x'>" * 20 + "w ") * 5_000
    out = clean_rows([text], ["a"], max_chars=5_000, source="f.csv")
    assert len(out.texts[0]) == 5_000 - 1  # "w w w ..." cut at 5000 and right-stripped
    assert out.truncated == 1
