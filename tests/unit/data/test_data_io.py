"""Loading user files: formats, encodings and the errors a user sees for bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lmforge.config import spec_from_dict
from lmforge.data import load_frame
from lmforge.data._io import read_table
from lmforge.errors import ConfigError, DataError

ROWS = [
    ("great flight, thanks", "positive"),
    ("lost my bag again", "negative"),
    ("Café crème très bon", "positive"),
]


def data_cfg(**data):
    return spec_from_dict({"data": data}).data


def write_csv(path, rows=ROWS, header=("text", "label"), encoding="utf-8"):
    frame = pd.DataFrame(rows, columns=list(header))
    frame.to_csv(path, index=False, encoding=encoding)
    return path


def test_csv_loads_with_string_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv")
    frame = load_frame(data_cfg(path=str(path)))
    assert list(frame.columns) == ["text", "label"]
    assert frame["text"].tolist() == [r[0] for r in ROWS]
    assert frame["label"].tolist() == [r[1] for r in ROWS]
    assert frame.attrs["encoding"] == "utf-8"


def test_csv_custom_columns_and_numeric_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("review,stars,extra\nnice,5,x\nbad,1,y\n", encoding="utf-8")
    frame = load_frame(data_cfg(path=str(path), text_column="review", label_column="stars"))
    assert frame["label"].tolist() == ["5", "1"]
    assert frame["text"].tolist() == ["nice", "bad"]


def test_csv_keeps_na_like_text_as_text(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,label\nNA,x\nnull,y\nok,\n", encoding="utf-8")
    frame = load_frame(data_cfg(path=str(path)))
    assert frame["text"].tolist() == ["NA", "null", "ok"]
    assert frame["label"].isna().tolist() == [False, False, True]


def test_tsv_extension(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_text("text\tlabel\nhello, world\ta\n", encoding="utf-8")
    assert load_frame(data_cfg(path=str(path)))["text"].tolist() == ["hello, world"]


def test_jsonl_loads_and_converts_values(tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [
        {"text": "a\u2028b", "label": 1},
        {"text": "c", "label": None},
        {"text": "d"},
        {"text": "e", "label": "x"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\n\n", encoding="utf-8")
    frame = load_frame(data_cfg(path=str(path)))
    assert frame["text"].tolist() == ["a\u2028b", "c", "d", "e"]  # U+2028 does not split a record
    assert frame["label"].tolist()[0] == "1"
    assert frame["label"].isna().tolist() == [False, True, True, False]


def test_jsonl_bad_line_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 is not valid JSON"):
        load_frame(data_cfg(path=str(path)))


def test_parquet_loads(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"body": ["x y", "z"], "y": [0, 1], "other": [1.5, 2.5]}).to_parquet(path)
    frame = load_frame(data_cfg(path=str(path), text_column="body", label_column="y", encoding="latin-1"))
    assert frame["text"].tolist() == ["x y", "z"]
    assert frame["label"].tolist() == ["0", "1"]
    assert frame.attrs["encoding"] is None  # encoding is ignored for parquet


def test_format_overrides_extension(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("text,label\nhi,a\n", encoding="utf-8")
    assert load_frame(data_cfg(path=str(path), format="csv"))["label"].tolist() == ["a"]


def test_unknown_extension_lists_supported(tmp_path):
    path = tmp_path / "d.xlsx"
    path.write_bytes(b"whatever")
    with pytest.raises(DataError, match=r"\.xlsx") as err:
        load_frame(data_cfg(path=str(path)))
    assert ".csv" in str(err.value) and ".jsonl" in str(err.value) and ".parquet" in str(err.value)
    assert "data.format" in str(err.value)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="not found") as err:
        load_frame(data_cfg(path=str(path)))
    assert str(path) in str(err.value)


def test_missing_columns_lists_found_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", header=("tweet", "sentiment"))
    with pytest.raises(DataError) as err:
        load_frame(data_cfg(path=str(path)))
    message = str(err.value)
    assert "'tweet'" in message and "'sentiment'" in message
    assert "data.text_column" in message and "data.label_column" in message


def test_missing_label_column_only_and_suggestion(tmp_path):
    path = write_csv(tmp_path / "d.csv", header=("text", "labels"))
    with pytest.raises(DataError) as err:
        load_frame(data_cfg(path=str(path)))
    assert "data.label_column" in str(err.value) and "data.text_column is" not in str(err.value)
    assert "Did you mean 'labels'" in str(err.value)


def test_parquet_missing_column_lists_columns(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"body": ["x"], "y": ["a"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"'body', 'y'"):
        load_frame(data_cfg(path=str(path)))


def test_latin1_bytes_fail_with_offset_and_hint(tmp_path):
    path = tmp_path / "d.csv"
    raw = "text,label\nfine,a\ncaf\u00e9 au lait,b\n".encode("latin-1")
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        load_frame(data_cfg(path=str(path)))
    message = str(err.value)
    offset = raw.index("\u00e9".encode("latin-1"))
    assert str(path) in message
    assert f"byte offset {offset}" in message
    assert "line 3" in message
    assert "utf-8" in message
    assert "data.encoding" in message and "latin-1" in message


def test_explicit_encoding_reads_latin1(tmp_path):
    path = write_csv(tmp_path / "d.csv", encoding="latin-1")
    frame = load_frame(data_cfg(path=str(path), encoding="latin-1"))
    assert frame["text"].tolist()[2] == "Café crème très bon"
    assert frame.attrs["encoding"] == "latin-1"


def test_unknown_encoding_is_a_config_error(tmp_path):
    path = write_csv(tmp_path / "d.csv")
    with pytest.raises(ConfigError, match="data.encoding"):
        load_frame(data_cfg(path=str(path), encoding="no-such-codec"))


@pytest.mark.parametrize(("codec", "detected"), [("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16")])
def test_bom_is_detected(tmp_path, codec, detected):
    path = write_csv(tmp_path / "d.csv", encoding=codec)
    table = read_table(data_cfg(path=str(path)))
    assert table.encoding == detected
    assert table.texts == [r[0] for r in ROWS]  # the BOM does not leak into the header


def test_catalog_dataset_when_no_path(monkeypatch):
    import lmforge.data._io

    fake = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    monkeypatch.setattr(lmforge.data._io, "load_dataset", lambda name: fake)
    table = read_table(data_cfg(dataset="whatever"))
    assert table.source == "catalog:whatever"
    assert table.texts == ["a", "b"] and table.labels == ["x", "y"]


def test_utf16_without_bom_is_explained(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\nhello,a\n".encode("utf-16-le"))
    with pytest.raises(DataError, match="data.encoding to utf-16-le"):
        load_frame(data_cfg(path=str(path)))
    frame = load_frame(data_cfg(path=str(path), encoding="utf-16-le"))
    assert frame["text"].tolist() == ["hello"]
