"""`data.read_frame`: the apps' side files (FAQ, items, interactions) as frames of strings, every format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.data import read_frame
from lmforge.errors import DataError

ROWS = [{"question": "Where is my parcel?", "answer": "Track it at {{url}}.", "n": 3},
        {"question": "NA", "answer": "", "n": None}]
EXPECTED = [{"question": "Where is my parcel?", "answer": "Track it at {{url}}.", "n": "3"},
            {"question": "NA", "answer": "", "n": ""}]


def _write(path: Path) -> Path:
    if path.suffix in (".csv", ".tsv"):
        sep = "\t" if path.suffix == ".tsv" else ","
        lines = [sep.join(ROWS[0])] + [sep.join("" if v is None else str(v) for v in r.values()) for r in ROWS]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif path.suffix in (".jsonl", ".json"):
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    else:
        import pandas as pd

        pd.DataFrame(ROWS).astype({"n": "Int64"}).to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_every_format_reads_as_strings_with_missing_values_empty(tmp_path: Path, suffix: str) -> None:
    frame = read_frame(_write(tmp_path / f"faq{suffix}"), "bot.faq.path")
    assert list(frame.columns) == ["question", "answer", "n"]
    assert frame.to_dict("records") == EXPECTED  # "NA" is text, not a missing value


def test_errors_name_the_key_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        read_frame(tmp_path / "nope.csv", "recommend.items.path")
    assert str(info.value) == (f"recommend.items.path file not found: {tmp_path / 'nope.csv'}. Set recommend.items.path "
                               "to an existing CSV, TSV, JSONL or Parquet file.")
    (tmp_path / "faq.xlsx").write_text("x", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_frame(tmp_path / "faq.xlsx", "bot.faq.path")
    assert str(info.value) == (f"bot.faq.path {tmp_path / 'faq.xlsx'} has the extension '.xlsx'; "
                               "use .csv, .tsv, .jsonl or .parquet.")
    (tmp_path / "bad.jsonl").write_text('{"question": "a"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_frame(tmp_path / "bad.jsonl", "bot.faq.path")
    assert str(info.value) == f"bot.faq.path: {tmp_path / 'bad.jsonl'} line 2 is not valid JSON (Expecting value)."
    (tmp_path / "bad.csv").write_bytes(b"question,answer\n\xff\xfe,x\n")
    with pytest.raises(DataError, match=r"^bot\.faq\.path .*bad\.csv cannot be read as CSV: "):
        read_frame(tmp_path / "bad.csv", "bot.faq.path")
