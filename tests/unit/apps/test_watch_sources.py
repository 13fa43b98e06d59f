"""Timestamps of every supported form, windows, and the stream sources with their bad inputs."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from pathlib import Path

import pytest

from lmforge.apps.watch import aggregate, iso, parse_time, read_stream, window_start
from lmforge.errors import DataError


def _utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(("value", "expected"), [
    ("2013-04-15", _utc(2013, 4, 15)),
    ("2013-04-15T09:30:00", _utc(2013, 4, 15, 9, 30)),
    ("2013-04-15T09:30:00Z", _utc(2013, 4, 15, 9, 30)),
    ("2013-04-15 09:30:00+02:00", _utc(2013, 4, 15, 7, 30)),
    ("2013-04-15T09:30:00.250000+00:00", _utc(2013, 4, 15, 9, 30) + 0.25),
    ("15-04-2013", _utc(2013, 4, 15)),   # gold news, dd-mm-yyyy
    ("05-01-2016", _utc(2016, 1, 5)),    # day first: 5 January, not 1 May
    ("5/1/2016", _utc(2016, 1, 5)),      # gold news, d/m/yyyy
    ("28/01/2016", _utc(2016, 1, 28)),
    ("15.04.2013", _utc(2013, 4, 15)),   # dd.mm.yyyy
    ("2016/01/28", _utc(2016, 1, 28)),
    (1366000000, 1366000000.0),          # epoch seconds as a JSON number
    (1366000000.5, 1366000000.5),
])
def test_every_supported_timestamp_form(value: object, expected: float) -> None:
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", ["0201-04-27", "0200-09-30", "31-02-2013", "13/13/2013", "yesterday", "20130415",
                                   "2013-W15", "", None, True, [2013], float("nan"), "15.04.13"])
def test_malformed_timestamps_are_none(value: object) -> None:
    assert parse_time(value) is None


def test_windows_are_aligned_to_monday_utc() -> None:
    week = 7 * 86400
    assert iso(window_start(_utc(2013, 4, 17, 12), week)) == "2013-04-15T00:00:00+00:00"  # a Wednesday -> Monday
    assert iso(window_start(_utc(2013, 4, 21, 23, 59), week)) == "2013-04-15T00:00:00+00:00"  # Sunday night
    assert iso(window_start(_utc(2013, 4, 22), week)) == "2013-04-22T00:00:00+00:00"
    assert iso(window_start(_utc(2013, 4, 22, 10, 59), 3600)) == "2013-04-22T10:00:00+00:00"


def test_aggregate_counts_per_topic_and_window() -> None:
    day = 86400.0
    times = [0.5 * day, 0.6 * day, 1.2 * day, 0.1 * day, 5.5 * day]
    windows = aggregate(times, [True, False, True, True, False], [0.9, 0.2, 0.8, 0.7, 0.1],
                        ["a", "a", "a", "b", "a"], day)
    assert sorted(windows) == ["a", "b"]
    a = windows["a"]
    assert [(w.start, w.n, w.negative, w.rows) for w in a] == [(0.0, 2, 1, [0, 1]), (day, 1, 1, [2]),
                                                               (5 * day, 1, 0, [4])]  # no empty windows
    assert a[0].share == 0.5 and a[0].mean_score == pytest.approx(0.55) and a[0].value("negative_count") == 1.0
    assert windows["b"][0].value("mean_score") == pytest.approx(0.7)


def _write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_rows_are_read_in_time_order(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "s.jsonl", [{"time": "2024-01-02", "text": "later"},
                                               {"time": "2024-01-01T10:00:00Z", "text": "first", "id": 7}])
    stream = read_stream(path)
    assert stream.texts == ["first", "later"] and stream.times == [_utc(2024, 1, 1, 10), _utc(2024, 1, 2)]
    assert (stream.total, stream.bad) == (2, 0)


def test_the_gold_news_layout_tab_separated_csv_with_day_first_dates(tmp_path: Path) -> None:
    path = tmp_path / "gold.csv"
    path.write_text("Dates\tURL\tNews\tPrice Sentiment\r\n"
                    "28-01-2016\thttp://x/1\t\"april gold down 20 cents to settle at $1,116.10/oz\"\tnegative\r\n"
                    "5/1/2016\thttp://x/2\tgold edges up\tpositive\r\n", encoding="utf-8")
    stream = read_stream(path, time_field="Dates", text_field="News")
    assert stream.texts == ["gold edges up", "april gold down 20 cents to settle at $1,116.10/oz"]
    assert stream.times == [_utc(2016, 1, 5), _utc(2016, 1, 28)]


def test_stdin_is_one_json_object_per_line() -> None:
    stdin = io.StringIO('{"time": "2024-01-01", "text": "a"}\n\n{"time": "2024-01-01T01:00:00", "text": "b"}\n')
    stream = read_stream("-", stdin=stdin)
    assert stream.source == "stdin" and stream.texts == ["a", "b"]


def test_malformed_rows_are_counted_and_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows: list[object] = [{"time": f"2024-01-{d:02d}", "text": f"t{d}"} for d in range(1, 21)]
    rows[3] = {"time": "0201-04-27", "text": "bad date"}
    path = _write_jsonl(tmp_path / "s.jsonl", rows)
    with caplog.at_level(logging.WARNING):
        stream = read_stream(path, max_bad_share=0.05)
    assert (stream.total, stream.bad, len(stream.rows)) == (20, 1, 19)
    assert stream.bad_examples == ["line 4: time='0201-04-27'"]
    assert f"{path}: skipped 1 of 20 rows without a parseable timestamp or a text" in caplog.text


def test_too_many_bad_timestamps_stop_the_stream(tmp_path: Path) -> None:
    rows: list[object] = [{"time": "2024-01-01", "text": "ok"}] * 8 + [{"time": "Feb 1 2024", "text": "x"},
                                                                       "not json", {"time": "2024-01-01"}]
    path = _write_jsonl(tmp_path / "s.jsonl", rows)
    with pytest.raises(DataError) as info:
        read_stream(path, max_bad_share=0.05)
    assert str(info.value).startswith(
        f"3 of 11 rows of {path} (27.3%) have no parseable timestamp in 'time' or no text in 'text' (e.g. line 9: "
        "time='Feb 1 2024'; line 10: not a JSON object or too few columns; line 11: no text in 'text'), more than "
        "watch.max_bad_share (5.0%).")
    assert len(read_stream(path, max_bad_share=0.3).rows) == 8


def test_no_timestamp_column_lists_the_columns_found(tmp_path: Path) -> None:
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("date,headline\n2024-01-01,hello\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_stream(csv_path, text_field="headline")
    assert str(info.value) == (f"{csv_path} has no timestamp column 'time' (watch.time_field). Found: 'date', "
                               "'headline'. Set watch.time_field to one of them.")
    jsonl = _write_jsonl(tmp_path / "s.jsonl", [{"ts": "2024-01-01", "text": "a"}, {"ts": "2024-01-02", "body": "b"}])
    with pytest.raises(DataError, match=r"has no timestamp column 'time' \(watch.time_field\)\. Found: 'body', "
                                        r"'text', 'ts'\."):
        read_stream(jsonl)
    with pytest.raises(DataError, match=r"has no text column 'body' \(watch.text_field\)\. Found: 'date', 'headline'"):
        read_stream(csv_path, time_field="date", text_field="body")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Stream file not found"):
        read_stream(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="holds no rows"):
        read_stream(tmp_path / "empty.jsonl")
    (tmp_path / "latin.jsonl").write_bytes('{"time": "2024-01-01", "text": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        read_stream(tmp_path / "latin.jsonl")


@pytest.mark.shared
def test_the_real_gold_news_file_parses_with_its_165_malformed_dates(shared_datasets: Path) -> None:
    stream = read_stream(shared_datasets / "gold_news_sinha_khandait" / "gold-dataset-sinha-khandait.csv",
                         time_field="Dates", text_field="News")
    assert (stream.total, stream.bad, len(stream.rows)) == (10570, 165, 10405)
    assert (iso(stream.rows[0].time), iso(stream.rows[-1].time)) == ("2000-02-15T00:00:00+00:00",
                                                                     "2019-02-01T00:00:00+00:00")
