"""`lmforge watch replay` and `eval`: alert lines, timeline, report, webhook, bad inputs, and one real run.

Most tests score with a keyword classifier written here (it is the model, not the code under
test: the windows, detectors, outputs and deliveries are); one replays through the CLI with the
tiny trained run every predict/serve test shares (``trained_full``).
"""

from __future__ import annotations

import csv
import json
import math
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from lmforge.apps.watch import Scorer, evaluate_watch, replay, score_alerts
from lmforge.cli.__main__ import main
from lmforge.config import WatchConfig
from lmforge.errors import ConfigError, DataError
from lmforge.predict import load_predictor, to_predictions

HOUR = 3600.0


class Keywords:
    """A classifier by keyword: the first label whose word is in the text, else the last label."""

    def __init__(self, words: dict[str, str], labels: list[str]) -> None:
        self.words, self.labels, self.max_length = words, labels, 64

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.full((len(texts), len(self.labels)), 0.1 / (len(self.labels) - 1), dtype=np.float32)
        for i, text in enumerate(texts):
            label = next((lab for word, lab in self.words.items() if word in text), self.labels[-1])
            out[i, self.labels.index(label)] = 0.9
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> list[dict[str, Any]]:
        return to_predictions(self.labels, self.predict_proba(texts))


SENTIMENT = Keywords({"slump": "Bearish", "rally": "Bullish"}, ["Bearish", "Bullish", "Neutral"])
TOPIC = Keywords({"gold": "Gold", "oil": "Oil"}, ["Gold", "Oil", "Other"])


def _stream(path: Path, surge_hour: int = 12, hours: int = 16) -> Path:
    """Per hour 10 gold and 10 oil texts, 1 of each 10 negative; at ``surge_hour`` 8 of the 10 gold texts are."""
    rows = []
    for h in range(hours):
        for i in range(10):
            minute = f"{h:02d}:{i * 5:02d}"
            neg_gold = i < (8 if h == surge_hour else 1)
            rows.append({"time": f"2024-03-04T{minute}:00Z",
                         "text": "gold slump, mail ann@example.com" if neg_gold else "gold steady"})
            rows.append({"time": f"2024-03-04T{minute}:30Z", "text": "oil slump" if i < 1 else "oil rally"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(**kw: Any) -> WatchConfig:
    base: dict[str, Any] = {"sentiment_run": "unused", "negative_label": "Bearish", "window": "1h", "min_count": 5,
                            "actions": []}
    return WatchConfig(**{**base, **kw})


def test_replay_writes_one_alert_line_per_incident_in_the_contract_form(tmp_path: Path) -> None:
    result = replay(_cfg(), _stream(tmp_path / "s.jsonl"), tmp_path / "alerts.jsonl", tmp_path / "report",
                    scorer=Scorer(SENTIMENT, "Bearish", TOPIC))
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines == result.alerts
    assert len(lines) == 1
    alert = lines[0]
    assert list(alert) == ["time", "window_start", "topic", "detector", "metric", "value", "baseline", "score", "n"]
    # the baseline: calm hours at 10 %, no spread, so sigma is the sampling noise of 10 texts on the
    # stabilized scale (1 / 10.5) and the uncertainty of the 8-window baseline's median
    def scaled(k: int) -> float:
        return 2 * math.asin(math.sqrt((k + 3 / 8) / (10 + 3 / 4)))

    score = (scaled(8) - scaled(1)) / math.sqrt(1 / 10.5 + math.pi / 2 * (1 / 10.5) / 8)
    assert alert == {"time": "2024-03-04T13:00:00+00:00", "window_start": "2024-03-04T12:00:00+00:00",
                     "topic": "Gold", "detector": "zscore", "metric": "negative_share", "value": 0.8,
                     "baseline": pytest.approx(0.1), "score": pytest.approx(score), "n": 10}
    assert result.summary["topics"] == 2 and result.summary["windows"] == 32 and result.summary["texts"] == 320


def test_the_timeline_has_a_row_per_topic_and_window(tmp_path: Path) -> None:
    replay(_cfg(), _stream(tmp_path / "s.jsonl"), tmp_path / "a.jsonl", tmp_path / "r",
           scorer=Scorer(SENTIMENT, "Bearish", TOPIC))
    with (tmp_path / "r" / "timeline.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["window_start", "window_end", "topic", "n", "negative", "negative_share",
                             "mean_negative_score", "baseline", "score", "anomalous", "alert"]
    assert [r["topic"] for r in rows] == ["Gold"] * 16 + ["Oil"] * 16
    surge = rows[12]
    assert (surge["window_start"], surge["n"], surge["negative"], surge["negative_share"], surge["alert"]) == (
        "2024-03-04T12:00:00+00:00", "10", "8", "0.8", "1")
    assert rows[0]["baseline"] == "" and rows[0]["score"] == ""  # the baseline is still being built
    assert sum(r["alert"] == "1" for r in rows) == 1


def test_the_report_is_self_contained_with_a_chart_per_topic_and_redacted_texts(tmp_path: Path) -> None:
    replay(_cfg(), _stream(tmp_path / "s.jsonl"), tmp_path / "a.jsonl", tmp_path / "r",
           scorer=Scorer(SENTIMENT, "Bearish", TOPIC))
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert html.count('data-chart="watch-trend"') == 2
    assert 'data-topic="Gold"' in html and 'data-topic="Oil"' in html
    assert html.count('data-alert="alert"') == 1 and 'data-window="2024-03-04T12:00:00+00:00"' in html
    assert '<div class="value" id="alert-count">1</div>' in html
    assert "gold slump, mail [EMAIL]" in html and "ann@example.com" not in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_without_a_topic_run_every_text_is_topic_all(tmp_path: Path) -> None:
    result = replay(_cfg(min_count=10), _stream(tmp_path / "s.jsonl"), tmp_path / "a.jsonl",
                    scorer=Scorer(SENTIMENT, "Bearish"))
    assert list(result.verdicts) == ["all"]
    assert [(a["topic"], a["window_start"], a["n"], a["value"]) for a in result.alerts] == [
        ("all", "2024-03-04T12:00:00+00:00", 20, 0.45)]
    assert not (tmp_path / "timeline.csv").exists()  # no --report, no timeline


def test_a_negative_label_the_run_lacks_is_refused_with_its_labels() -> None:
    with pytest.raises(ConfigError) as info:
        Scorer(SENTIMENT, "negative")
    assert str(info.value) == ("watch.negative_label 'negative' is not a label of the sentiment run; its labels are: "
                               "Bearish, Bullish, Neutral. Set watch.negative_label to one of them.")


def test_an_unknown_detector_and_a_missing_sentiment_run_are_refused(tmp_path: Path) -> None:
    stream = _stream(tmp_path / "s.jsonl")
    with pytest.raises(ConfigError, match="Unknown watch.detector 'spike'"):
        replay(_cfg(detector="spike"), stream, tmp_path / "a.jsonl", scorer=Scorer(SENTIMENT, "Bearish"))
    with pytest.raises(ConfigError, match="watch.sentiment_run is required"):
        replay(_cfg(sentiment_run=None), stream, tmp_path / "a.jsonl")
    assert not (tmp_path / "a.jsonl").exists()


class _Receiver:
    """A webhook receiver on 127.0.0.1 recording the JSON bodies it is posted."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                events.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def test_alerts_go_through_the_monitor_webhook_and_log_once_per_incident(
        tmp_path: Path, receiver: _Receiver, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(actions=["log", "webhook"], webhook_url=receiver.url)
    with caplog.at_level("WARNING", logger="lmforge.apps.watch._replay"):
        result = replay(cfg, _stream(tmp_path / "s.jsonl"), tmp_path / "a.jsonl",
                        scorer=Scorer(SENTIMENT, "Bearish", TOPIC))
    assert len(receiver.events) == 1
    event = receiver.events[0]
    assert {k: event[k] for k in result.alerts[0]} == result.alerts[0]
    assert (event["status"], event["rule"]) == ("firing", "watch zscore")
    assert caplog.text.count("WATCH ALERT Gold: negative_share 0.800 over 10 texts") == 1


def test_eval_scores_every_detector_against_labelled_incidents(tmp_path: Path) -> None:
    incidents = tmp_path / "incidents.jsonl"
    incidents.write_text(json.dumps({"topic": "Gold", "start": "2024-03-04T12:10:00Z", "end": "2024-03-04T13:00:00Z"})
                         + "\n" + json.dumps({"topic": "Oil", "start": "2024-03-04T03:00:00Z",
                                              "end": "2024-03-04T04:00:00Z"}) + "\n", encoding="utf-8")
    result = evaluate_watch(_cfg(), _stream(tmp_path / "s.jsonl"), incidents=incidents,
                            scorer=Scorer(SENTIMENT, "Bearish", TOPIC))
    assert sorted(result["detectors"]) == ["cusum", "ewma", "fixed", "page-hinkley", "zscore"]
    z = result["detectors"]["zscore"]
    assert (z["alerts"], z["true_alerts"], z["precision"], z["detected"], z["recall"]) == (1, 1, 1.0, 1, 0.5)
    assert z["mean_delay_s"] == 50 * 60 and z["within_one_window"] == 0.5
    assert result["incidents"] == 2 and result["texts"] == 320


def test_score_alerts_counts_true_and_false_alerts_and_delays() -> None:
    def alert(start: str, end: str, topic: str = "all") -> dict[str, Any]:
        return {"window_start": start, "time": end, "topic": topic}

    incidents = [{"topic": "all", "start": 0.0, "end": 2 * HOUR}, {"topic": "x", "start": 10 * HOUR, "end": 11 * HOUR}]
    alerts = [alert("1970-01-01T01:00:00+00:00", "1970-01-01T02:00:00+00:00", "y"),  # in the first (topic all)
              alert("1970-01-01T05:00:00+00:00", "1970-01-01T06:00:00+00:00"),  # in none
              alert("1970-01-01T10:00:00+00:00", "1970-01-01T11:00:00+00:00", "z")]  # right time, wrong topic
    scores = score_alerts(alerts, incidents, HOUR)
    assert scores == {"alerts": 3, "true_alerts": 1, "false_alerts": 2, "incidents": 2, "detected": 1,
                      "precision": 1 / 3, "recall": 0.5, "mean_delay_s": 2 * HOUR, "mean_delay_windows": 2.0,
                      "max_delay_windows": 2.0, "within_one_window": 0.0}


def test_eval_injects_seeded_surges_into_a_calm_stream(tmp_path: Path) -> None:
    calm = tmp_path / "calm.jsonl"
    rows = [{"time": f"2024-03-{1 + h // 24:02d}T{h % 24:02d}:{m * 3:02d}:00Z", "text": "gold slump" if m < 2 else "gold"}
            for h in range(96) for m in range(20)]
    calm.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": f"gold slump {i}"}) + "\n" for i in range(50)), encoding="utf-8")
    first = evaluate_watch(_cfg(), calm, inject=pool, surges=6, seed=3, scorer=Scorer(SENTIMENT, "Bearish"))
    again = evaluate_watch(_cfg(), calm, inject=pool, surges=6, seed=3, scorer=Scorer(SENTIMENT, "Bearish"))
    assert first["detectors"] == again["detectors"] and first["injected"] == again["injected"] > 6 * 5
    assert first["incidents"] == 6
    z = first["detectors"]["zscore"]
    # 5 of the 6 fire in their own window. The smallest surges are not surges at the default z 3: 6 texts
    # on 20 make 8 of 26 negative against 10 %, a 1.6 % binomial tail, 2.3 sigmas on the stabilized scale
    assert (z["precision"], z["recall"], z["max_delay_windows"]) == (1.0, 5 / 6, 1.0)
    with pytest.raises(DataError, match="fit only"):
        evaluate_watch(_cfg(), calm, inject=pool, surges=60, seed=3, scorer=Scorer(SENTIMENT, "Bearish"))
    with pytest.raises(DataError, match="needs either --incidents FILE"):
        evaluate_watch(_cfg(), calm, scorer=Scorer(SENTIMENT, "Bearish"))


def _spec(tmp_path: Path, run: Path, **watch: Any) -> Path:
    spec = tmp_path / "watch.yaml"
    spec.write_text(yaml.safe_dump({"watch": {"sentiment_run": str(run), "negative_label": "negative",
                                              "window": "1h", "min_count": 5, "actions": [], **watch}}),
                    encoding="utf-8")
    return spec


@pytest.mark.slow
def test_a_real_replay_end_to_end_with_the_tiny_trained_run(
        tmp_path: Path, trained_full: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI on a stream of the run's own task: 12 calm hours (2 of 12 negative), then 10 of 12."""
    from tests._runs import NEG, POS

    rows, texts = [], []
    for h in range(14):
        k = 10 if h == 12 else 2
        for i in range(12):
            text = NEG[i % len(NEG)] if i < k else POS[i % len(POS)]
            rows.append({"time": f"2024-03-04T{h:02d}:{i * 5:02d}:00Z", "text": text})
            texts.append(text)
    stream = tmp_path / "stream.jsonl"
    stream.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    predicted = [p["label"] == "negative" for p in load_predictor(trained_full).predict(texts)]
    expected = [t in NEG for t in texts]
    assert np.mean(np.equal(predicted, expected)) >= 0.9, "the shared tiny run no longer learns its own task"
    surge = sum(predicted[12 * 12:13 * 12])

    code = main(["watch", "replay", str(_spec(tmp_path, trained_full)), "--input", str(stream), "--output",
                 str(tmp_path / "alerts.jsonl"), "--report", str(tmp_path / "report"), "--allow-unsigned"])
    out = capsys.readouterr().out
    assert code == 0
    assert "watch: 168 texts (0 skipped), 1 topic(s), 14 windows, 1 alert(s) by zscore" in out
    (alert,) = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (alert["time"], alert["window_start"], alert["topic"], alert["n"]) == (
        "2024-03-04T13:00:00+00:00", "2024-03-04T12:00:00+00:00", "all", 12)
    assert alert["value"] == surge / 12 and alert["baseline"] < 0.3 < alert["score"]
    assert (tmp_path / "report" / "report.html").is_file() and (tmp_path / "report" / "timeline.csv").is_file()

    incidents = tmp_path / "incidents.jsonl"
    incidents.write_text(json.dumps({"topic": "all", "start": "2024-03-04T12:00:00Z", "end": "2024-03-04T13:00:00Z"})
                         + "\n", encoding="utf-8")
    code = main(["watch", "eval", str(_spec(tmp_path, trained_full)), "--input", str(stream), "--incidents",
                 str(incidents), "--detectors", "zscore,fixed", "--output", str(tmp_path / "eval.json"),
                 "--allow-unsigned"])
    capsys.readouterr()
    evaluation = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert code == 0 and sorted(evaluation["detectors"]) == ["fixed", "zscore"]
    z = evaluation["detectors"]["zscore"]
    assert (z["precision"], z["recall"], z["mean_delay_windows"]) == (1.0, 1.0, 1.0)

    # calibrated to no alert at all on this stream, the fixed rule's threshold is the first 0.005 step
    # at or above the surge window's negative share (a share must exceed it to alert)
    code = main(["watch", "calibrate", str(_spec(tmp_path, trained_full)), "--input", str(stream), "--rate", "0",
                 "--detectors", "zscore,fixed", "--output", str(tmp_path / "calibrated.json"), "--allow-unsigned"])
    capsys.readouterr()
    calibrated = json.loads((tmp_path / "calibrated.json").read_text(encoding="utf-8"))
    assert code == 0 and sorted(calibrated["detectors"]) == ["fixed", "zscore"] and calibrated["texts"] == 168
    fixed = calibrated["detectors"]["fixed"]
    assert (fixed["alerts"], fixed["windows_judged"]) == (0, 14)
    assert fixed["threshold"] == pytest.approx(math.ceil(surge / 12 / 0.005 - 1e-9) * 0.005)
    assert calibrated["detectors"]["zscore"]["alerts"] == 0

    bad = main(["watch", "replay", str(_spec(tmp_path, trained_full, negative_label="Bearish")), "--input",
                str(stream), "--output", str(tmp_path / "b.jsonl"), "--allow-unsigned"])
    err = capsys.readouterr().err
    assert bad == 2 and err == ("error: watch.negative_label 'Bearish' is not a label of the sentiment run; its labels "
                                "are: negative, positive. Set watch.negative_label to one of them.\n")


def test_stdin_is_watched_live_with_the_same_alerts_as_a_file_replay(tmp_path: Path) -> None:
    import io

    stream = _stream(tmp_path / "s.jsonl")
    from_file = replay(_cfg(), stream, tmp_path / "file.jsonl", scorer=Scorer(SENTIMENT, "Bearish", TOPIC))
    lines = sorted(stream.read_text(encoding="utf-8").splitlines(), key=lambda x: json.loads(x)["time"])
    live = replay(_cfg(batch_size=7), "-", tmp_path / "live.jsonl", tmp_path / "r",
                  scorer=Scorer(SENTIMENT, "Bearish", TOPIC), stdin=io.StringIO("\n".join(lines) + "\n"))
    assert live.alerts == from_file.alerts and len(live.alerts) == 1
    assert (tmp_path / "live.jsonl").read_text(encoding="utf-8") == (tmp_path / "file.jsonl").read_text(
        encoding="utf-8")
    assert live.summary["windows"] == 32 and live.summary["texts"] == 320
    assert 'data-alert="alert"' in (tmp_path / "r" / "report.html").read_text(encoding="utf-8")


def test_a_live_watch_alerts_when_the_window_closes_and_skips_late_rows() -> None:
    from lmforge.apps.watch import LiveWatch, StreamRow

    fired: list[dict[str, Any]] = []
    watch = LiveWatch(_cfg(), Scorer(SENTIMENT, "Bearish"), fired.append)
    for h in range(12):  # 12 calm hours, 1 of 10 negative
        watch.feed([StreamRow(h * HOUR + i, "gold slump" if i == 0 else "gold") for i in range(10)])
    assert watch.feed([StreamRow(12 * HOUR + i, "gold slump" if i < 8 else "gold") for i in range(10)]) == []
    assert fired == []  # hour 12 is still open
    assert watch.feed([StreamRow(5 * HOUR, "gold slump")]) == []  # late: hour 5 closed long ago
    assert watch.late == 1
    closing = watch.feed([StreamRow(13 * HOUR, "gold")])  # the first row of hour 13 closes hour 12
    assert [a["window_start"] for a in closing] == ["1970-01-01T12:00:00+00:00"] and fired == closing
    assert watch.close() == [] and [len(v) for v in watch.verdicts.values()] == [14]


def test_stdin_without_the_timestamp_field_names_the_fields_found(tmp_path: Path) -> None:
    import io

    with pytest.raises(DataError, match=r"stdin has no timestamp column 'time' \(watch.time_field\)\. Found: "
                                        r"'ts', 'text'\."):
        replay(_cfg(), "-", tmp_path / "a.jsonl", scorer=Scorer(SENTIMENT, "Bearish"),
               stdin=io.StringIO('{"ts": "2024-01-01", "text": "a"}\n'))


def test_bad_incident_files_are_refused(tmp_path: Path) -> None:
    from lmforge.apps.watch import read_incidents

    path = tmp_path / "incidents.jsonl"
    with pytest.raises(DataError, match="Incidents file not found"):
        read_incidents(path)
    path.write_text('{"topic": "Gold", "start": "2024-03-04T13:00:00Z", "end": "2024-03-04T12:00:00Z"}\n',
                    encoding="utf-8")
    with pytest.raises(DataError, match="incident 1 needs a start before its end"):
        read_incidents(path)
    path.write_text('[{"start": "04-03-2024", "end": "05-03-2024"}]', encoding="utf-8")
    assert read_incidents(path) == [{"topic": "all", "start": 1709510400.0, "end": 1709596800.0}]
