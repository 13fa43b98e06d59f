"""`lmforge redact` over JSONL and CSV: round trips, spans on the original text, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from lmforge.cli.__main__ import main
from lmforge.errors import DataError
from lmforge.guard.pii import PrivacyPolicy, redact_file

RECORDS = [
    {"id": 1, "text": "call me at 13812345678 please", "label": "neg", "meta": {"src": "app"}},
    {"id": 2, "text": "no pii in this one", "label": "pos", "meta": None},
    {"id": 3, "text": "邮箱 li@example.com，卡号 4111 1111 1111 1111", "label": "neg", "meta": {"src": "web"}},
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_csv(path: Path, records: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
        writer.writeheader()
        for r in records:
            writer.writerow({k: r[k] for k in ("id", "text", "label")})
    return path


def check_spans(original: list[dict], redacted: list[dict], entities: list[list[dict]]) -> None:
    for orig, ents in zip(original, entities, strict=True):
        for e in ents:
            assert set(e) == {"type", "start", "end"}
            assert 0 <= e["start"] < e["end"] <= len(orig["text"])
    assert [len(e) for e in entities] == [1, 0, 2]
    assert original[0]["text"][entities[0][0]["start"] : entities[0][0]["end"]] == "13812345678"


def test_jsonl_round_trip_keeps_fields(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    summary = redact_file(src, tmp_path / "out.jsonl")
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in out] == ["call me at [PHONE] please", "no pii in this one", "邮箱 [EMAIL]，卡号 [BANK_CARD]"]
    for before, after in zip(RECORDS, out, strict=True):
        assert {k: v for k, v in after.items() if k not in ("text", "entities")} == {
            k: v for k, v in before.items() if k != "text"}
    check_spans(RECORDS, out, [r["entities"] for r in out])
    assert (summary.records, summary.records_with_pii) == (3, 2)
    assert summary.entity_counts == {"BANK_CARD": 1, "EMAIL": 1, "PHONE": 1}
    assert not list(tmp_path.glob(".*.tmp"))


def test_csv_round_trip_keeps_columns(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", RECORDS)
    redact_file(src, tmp_path / "out.csv", PrivacyPolicy(mode="drop"))
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "text", "label", "entities"]
    assert [r["id"] for r in rows] == ["1", "2", "3"] and [r["label"] for r in rows] == ["neg", "pos", "neg"]
    assert rows[0]["text"] == "call me at  please"
    check_spans(RECORDS, rows, [json.loads(r["entities"]) for r in rows])


def test_csv_with_bom_and_gbk_encoding(tmp_path: Path) -> None:
    (tmp_path / "bom.csv").write_bytes("\ufefftext,label\n13812345678,a\n".encode())
    redact_file(tmp_path / "bom.csv", tmp_path / "o1.csv")
    assert (tmp_path / "o1.csv").read_text(encoding="utf-8").startswith("text,label,entities\n[PHONE],a,")
    (tmp_path / "gbk.csv").write_bytes("text,label\n手机13812345678,负面\n".encode("gbk"))
    with pytest.raises(DataError, match=r"not valid utf-8 text: byte 0x\w\w at offset \d+ \(line 2\).*--encoding"):
        redact_file(tmp_path / "gbk.csv", tmp_path / "o2.csv")
    assert not (tmp_path / "o2.csv").exists()
    redact_file(tmp_path / "gbk.csv", tmp_path / "o2.csv", encoding="gbk")
    assert "手机[PHONE],负面" in (tmp_path / "o2.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"\x00\x01\x02binary\x00", "looks binary: NUL byte at offset 0"),
        (b"PK\x03\x04rest-of-a-zip", "is a zip file, not text"),
        (b"\x1f\x8b\x08\x00gzip", "is a gzip file"),
        ("text\n".encode("utf-16"), "UTF-16"),
        (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "byte 0xe9 at offset 28 (line 2)"),
    ],
)
def test_binary_or_non_utf8_input_says_so(tmp_path: Path, payload: bytes, fragment: str) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(payload)
    with pytest.raises(DataError) as exc:
        redact_file(src, tmp_path / "out.jsonl")
    assert fragment in str(exc.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_bad_records_are_named_by_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 has no string field 'text'.*--text-field"):
        redact_file(src, tmp_path / "out.jsonl")
    src.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        redact_file(src, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()
    (tmp_path / "in.csv").write_text("body,label\nx,y\n", encoding="utf-8")
    with pytest.raises(DataError, match="no column 'text' \\(columns: body, label\\)"):
        redact_file(tmp_path / "in.csv", tmp_path / "out.csv")
    with pytest.raises(DataError, match="must have the input's format"):
        redact_file(tmp_path / "in.csv", tmp_path / "out.jsonl")
    with pytest.raises(DataError, match="not found"):
        redact_file(tmp_path / "missing.jsonl", tmp_path / "out.jsonl")


def test_cli_redact_and_its_audit_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    log = tmp_path / "audit.jsonl"
    code = main(["redact", str(src), "--output", str(tmp_path / "out.jsonl"), "--entities", "phone,email",
                 "--audit-log", str(log)])
    assert code == 0
    assert "redacted 3 records (2 with PII: EMAIL 1, PHONE 1)" in capsys.readouterr().out
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert "4111 1111 1111 1111" in out[2]["text"]  # BANK_CARD was not asked for
    (record,) = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert record["action"] == "data.redact" and record["details"]["entity_counts"] == {"EMAIL": 1, "PHONE": 1}
    assert "13812345678" not in log.read_text(encoding="utf-8")  # counts only, never the PII

    (tmp_path / "bin.jsonl").write_bytes(b"\x00\xff")
    assert main(["redact", str(tmp_path / "bin.jsonl"), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "looks binary" in capsys.readouterr().err
    assert main(["redact", str(src), "--output", str(tmp_path / "o.jsonl"), "--entities", "SSN"]) == 2
    assert "Unknown PII entity type(s) 'SSN'" in capsys.readouterr().err
