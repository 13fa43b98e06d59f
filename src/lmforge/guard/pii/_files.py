"""Redact a JSONL or CSV file record by record: ``lmforge redact INPUT --output OUT``.

Each output record keeps all its fields; the text field is redacted and an ``entities``
field lists ``{"type", "start", "end"}`` spans on the original text (a JSON string in a
CSV cell). The output is written to a temporary file and renamed into place, so a failure
leaves no half-redacted file behind.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lmforge._jsonl import iter_text_records
from lmforge.errors import DataError
from lmforge.guard.pii._redact import PrivacyPolicy, redact
from lmforge.rundir import atomic_open

__all__ = ["RedactFileSummary", "redact_file"]

_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"PAR1", "Parquet"), (b"%PDF", "PDF"),
          (b"\x89PNG", "PNG"), (b"SQLite format 3", "SQLite"))
_SNIFF = 8192


@dataclass(frozen=True)
class RedactFileSummary:
    """What a redaction run did (counts only: no PII)."""

    input: str
    output: str
    format: str
    mode: str
    records: int
    records_with_pii: int
    entity_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "output": self.output, "format": self.format, "mode": self.mode,
                "records": self.records, "records_with_pii": self.records_with_pii,
                "entity_counts": dict(self.entity_counts)}


def _format_of(path: Path, fmt: str | None, role: str) -> str | None:
    if fmt is not None:
        if fmt not in ("jsonl", "csv"):
            raise DataError(f"Unknown format {fmt!r} for {role}. Use jsonl or csv.")
        return fmt
    return _FORMATS.get(path.suffix.lower())


def _check_text_file(path: Path, encoding: str, shown: str) -> None:
    """Refuse binary files up front, and name the first byte that is not ``encoding`` (called ``shown``)."""
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            raise DataError(
                f"{path} is a {kind} file, not text. `lmforge redact` reads UTF-8 JSONL or CSV; "
                "export the records to one of those first."
            )
    nul = head.find(b"\x00")
    if nul >= 0:
        hint = " (UTF-16 text? convert it: iconv -f UTF-16 -t UTF-8)" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(
            f"{path} looks binary: NUL byte at offset {nul}{hint}. `lmforge redact` reads UTF-8 JSONL or CSV text."
        )
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    offset = line = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad = offset + exc.start
                line_no = line + block[: exc.start].count(b"\n") + 1
                raise DataError(
                    f"{path} is not valid {shown} text: byte 0x{block[exc.start]:02x} at offset {bad} "
                    f"(line {line_no}). Convert it (e.g. iconv -f GBK -t UTF-8 {path.name} > fixed.{path.suffix[1:]}) "
                    "or pass --encoding with the file's real encoding."
                ) from None
            offset += len(block)
            line += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(f"{path} ends in the middle of a {shown} character; the file is truncated.") from None


def redact_file(
    source: str | Path,
    output: str | Path,
    policy: PrivacyPolicy | None = None,
    *,
    text_field: str = "text",
    fmt: str | None = None,
    encoding: str = "utf-8",
) -> RedactFileSummary:
    """Redact the text field of every record of a JSONL or CSV file into ``output``.

    Args:
        source: A ``.jsonl`` or ``.csv`` file (or any name, with ``fmt``).
        output: Where to write the redacted records, same format.
        policy: What to redact and how (mask every type when None).
        text_field: Field (JSONL) or column (CSV) holding the text.
        fmt: ``jsonl`` or ``csv``; taken from the file extension when None.
        encoding: Text encoding of ``source`` (the output is always UTF-8).

    Raises:
        DataError: missing, binary or wrongly encoded input, a bad record (named by line),
            a missing text field.
        CryptoKeyError: ``hash`` mode without its key.
    """
    src, dst = Path(source), Path(output)
    policy = policy or PrivacyPolicy()
    salt = policy.salt() if policy.mode == "hash" else None
    if not src.is_file():
        raise DataError(f"Input file not found: {src}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError(f"Unknown text encoding {encoding!r}; use e.g. utf-8, gbk, latin-1.") from None
    kind = _format_of(src, fmt, "the input")
    if kind is None:
        raise DataError(f"Cannot tell the format of {src} from its extension; pass --format jsonl or --format csv.")
    out_kind = _format_of(dst, None, "the output")
    if out_kind is not None and out_kind != kind:
        raise DataError(f"The output {dst} must have the input's format ({kind}); name it *.{kind}.")
    read_encoding = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
    _check_text_file(src, read_encoding, encoding)

    counts: Counter[str] = Counter()
    records = with_pii = 0

    def _redact(record: dict[str, Any]) -> list[dict[str, Any]]:
        nonlocal records, with_pii
        result = redact(record[text_field], policy, salt=salt)
        records += 1
        with_pii += bool(result.entities)
        counts.update(e.type for e in result.entities)
        record[text_field] = result.text
        return [e.to_dict() for e in result.entities]

    with open(src, encoding=read_encoding, newline="" if kind == "csv" else None) as fh:
        if kind == "jsonl":
            with atomic_open(dst, newline="\n") as out:
                for record in iter_text_records(fh, src, text_field):
                    record["entities"] = _redact(record)
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            _redact_csv(fh, src, dst, text_field, _redact)
    return RedactFileSummary(str(src), str(dst), kind, policy.mode, records, with_pii, dict(sorted(counts.items())))


def _redact_csv(fh: TextIO, src: Path, dst: Path, text_field: str, redact_record: Any) -> None:
    reader = csv.DictReader(fh)
    try:
        columns = reader.fieldnames
    except csv.Error as exc:
        raise DataError(f"{src} is not a readable CSV file ({exc}).") from None
    if not columns:
        raise DataError(f"{src} is empty: a CSV file needs a header row naming its columns.")
    if len(set(columns)) != len(columns):
        dup = sorted({c for c in columns if columns.count(c) > 1})
        raise DataError(f"{src} has duplicate column names {dup}; rename them.")
    if text_field not in columns:
        raise DataError(f"{src} has no column '{text_field}' (columns: {', '.join(columns)}). Use --text-field.")
    out_columns = list(columns) + ([] if "entities" in columns else ["entities"])
    with atomic_open(dst, newline="") as out:
        writer = csv.DictWriter(out, fieldnames=out_columns)
        writer.writeheader()
        try:
            for row in reader:
                if None in row:
                    raise DataError(
                        f"{src} line {reader.line_num} has more fields than the header ({len(columns)}); "
                        "quote texts that contain commas."
                    )
                if row[text_field] is None:
                    raise DataError(f"{src} line {reader.line_num} has fewer fields than the header.")
                row["entities"] = json.dumps(redact_record(row), ensure_ascii=False)
                writer.writerow(row)
        except csv.Error as exc:
            raise DataError(f"{src} line {reader.line_num} is not valid CSV ({exc}).") from None
